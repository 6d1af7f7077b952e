"""Argument checks for the metric layer, kept in one place (scikit-learn style).

Every public metric funnels its inputs through these helpers so that bad
input fails early with a :class:`ValueError` whose message says what was
wrong and how to fix it. All helpers return fresh/validated NumPy arrays in
the dtype the metrics compute with (int64 for labels and counts, float64 for
probabilities and values).
"""

from __future__ import annotations

import numbers

import numpy as np

#: Rows of a probability matrix must sum to 1 within this absolute tolerance.
PROB_SUM_ATOL = 1e-6


def _as_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to a NumPy array: {exc}") from exc
    if arr.dtype == object:
        raise ValueError(
            f"{name} has dtype object; pass a numeric array (ragged lists or mixed types are not supported)"
        )
    return arr


def check_n_classes(n_classes, name: str = "n_classes") -> int:
    """Return ``n_classes`` as a positive Python int."""
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {n_classes!r}")
    n = int(n_classes)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as a Python int >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    v = int(value)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return v


def check_labels(y, name: str = "y", n_classes: int | None = None) -> np.ndarray:
    """Validate a 1-D vector of integer class indices and return it as int64.

    Integer dtypes are accepted as is; float arrays are accepted only when every
    value is integral (e.g. ``[0., 2., 1.]``). NaN, non-integral values,
    negative values and (when ``n_classes`` is given) values ``>= n_classes``
    raise ``ValueError``.
    """
    arr = _as_array(y, name)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class indices, got shape {arr.shape}; "
            "flatten it (e.g. np.ravel) or pass one label per sample"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample")
    if np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int64, copy=False)
    elif np.issubdtype(arr.dtype, np.floating):
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}")
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0]
            raise ValueError(
                f"{name} must hold integer class indices; {name}[{bad}] = {arr[bad]!r} is not an integer "
                "(map class names to indices 0..C-1 first)"
            )
        out = arr.astype(np.int64)
    else:
        raise ValueError(
            f"{name} must hold integer class indices 0..C-1, got dtype {arr.dtype} "
            "(map class names to indices first)"
        )
    if out.min() < 0:
        bad = int(np.flatnonzero(out < 0)[0])
        raise ValueError(f"{name} contains a negative label {out[bad]} at index {bad}; labels must be in 0..C-1")
    if n_classes is not None and out.max() >= n_classes:
        bad = int(np.flatnonzero(out >= n_classes)[0])
        raise ValueError(
            f"{name} contains label {out[bad]} at index {bad}, out of range for n_classes={n_classes} "
            f"(valid labels are 0..{n_classes - 1})"
        )
    return out


def check_consistent_length(**arrays) -> int:
    """Check that all given arrays have the same first dimension; return it."""
    lengths = {name: int(np.shape(a)[0]) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"inputs have inconsistent numbers of samples: {desc}")
    return next(iter(lengths.values()))


def check_finite_rows(arr: np.ndarray, name: str) -> np.ndarray:
    """Raise on NaN or inf in a 2-D float array, naming the first row that has one; return ``arr``."""
    if np.isnan(arr).any():
        r = int(np.flatnonzero(np.isnan(arr).any(axis=1))[0])
        raise ValueError(f"{name} contains NaN (first in row {r})")
    if not np.isfinite(arr).all():
        r = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise ValueError(f"{name} contains inf (first in row {r})")
    return arr


def check_probs(probs, name: str = "probs", atol: float = PROB_SUM_ATOL) -> np.ndarray:
    """Validate an (N, C) matrix of class probabilities and return it as float64.

    Raises when it is not 2-D, is empty, contains NaN/inf or negative values,
    or when any row does not sum to 1 within ``atol``.
    """
    arr = _as_array(probs, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n_samples, n_classes) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); need at least one sample and one class")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = check_finite_rows(arr.astype(np.float64, copy=False), name)
    if (arr < 0).any():
        r = int(np.flatnonzero((arr < 0).any(axis=1))[0])
        raise ValueError(f"{name} contains negative probabilities (first in row {r}); did you pass logits? use softmax()")
    sums = arr.sum(axis=1)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} rows must sum to 1 within {atol:g}; row {r} sums to {sums[r]!r} "
            f"({int(bad.sum())} bad row(s)); normalise the rows or apply softmax() to logits"
        )
    return arr


def check_classes(classes, n_classes: int, name: str = "classes") -> np.ndarray:
    """Validate a subset of class indices; ``None`` means all classes ``0..n_classes-1``."""
    if classes is None:
        return np.arange(n_classes, dtype=np.int64)
    arr = check_labels(np.atleast_1d(np.asarray(classes)), name=name, n_classes=n_classes)
    if np.unique(arr).size != arr.size:
        raise ValueError(f"{name} contains duplicate class indices {arr.tolist()}; each class may appear once")
    return arr


def check_confusion_matrix(cm, name: str = "cm") -> np.ndarray:
    """Validate a confusion matrix with optional leading batch dims ``(..., C, C)``.

    Returns it as float64 (counts are exact in float64 up to 2**53).
    """
    arr = _as_array(cm, name)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name} must have shape (..., C, C) with square trailing dims, got {arr.shape}")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} has zero classes (shape {arr.shape})")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be numeric counts, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; confusion matrices hold counts")
    if (arr < 0).any():
        raise ValueError(f"{name} contains negative counts")
    return arr


def check_values(values, name: str = "values") -> np.ndarray:
    """Validate a non-empty 1-D vector of finite float values (e.g. per-sample NLL)."""
    arr = _as_array(values, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per sample), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; need at least one sample")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}")
    return arr


def check_clusters(clusters, n_samples: int, name: str = "clusters") -> tuple[np.ndarray, int]:
    """Map per-sample cluster ids (any sortable dtype) to ``0..K-1``.

    Returns ``(inverse, K)`` where ``inverse[i]`` is the cluster index of sample i.
    """
    arr = np.asarray(clusters)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one cluster id per sample), got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n_samples} samples")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; give every sample a cluster id")
    if arr.dtype == object and any(c is None for c in arr):
        raise ValueError(f"{name} contains None; give every sample a cluster id")
    try:
        _, inverse = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"{name} ids must be mutually comparable (e.g. all str or all int): {exc}") from exc
    inverse = inverse.reshape(-1).astype(np.int64, copy=False)
    return inverse, int(inverse.max()) + 1


def check_confidence(confidence) -> float:
    """Confidence level strictly between 0 and 1."""
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    return c


def check_score_vector(x, name: str, empty_hint: str = "need at least one sample") -> np.ndarray:
    """A non-empty, finite, 1-D numeric vector as float64 (no copy when already float64).

    Errors name the first non-finite index and the count, and say what the vector is for
    (``empty_hint``, e.g. "OOD metrics need at least one known and one unknown sample")."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} could not be converted to a NumPy array: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores (one per sample), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; {empty_hint}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric scores, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        what = "NaN" if np.isnan(arr[bad]) else "inf"
        raise ValueError(
            f"{name} contains {what} at index {bad} ({int((~finite).sum())} non-finite value(s)); "
            "scores must be finite -- drop or impute them first"
        )
    return arr


def check_binary_flags(x, n: int, name: str, meaning: str) -> np.ndarray:
    """A 1-D vector of ``n`` booleans or 0/1 values as bool; ``meaning`` says what 1 stands for."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one flag per sample), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} scores (length mismatch)")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"{name} must be boolean or 0/1 ({meaning}), got dtype {arr.dtype}")
        ok = np.isin(arr, (0, 1))
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"{name} must hold only 0/1 or True/False values ({meaning}); {name}[{bad}] = {arr[bad]!r}")
        arr = arr.astype(bool)
    return arr


def check_int_at_least(value, name: str, minimum: int) -> int:
    """An integer (not a bool) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v
