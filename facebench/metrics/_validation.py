"""Argument checks for the metric layer, each defined once (scikit-learn style).

Every public metric funnels its inputs through these helpers so that bad input fails early with a
:class:`facebench.errors.MetricInputError` (a ``ValueError`` too) whose message names the argument, says
what was wrong and how to fix it. Array helpers return validated NumPy arrays in the dtype the metrics
compute with (int64 for labels and counts, float64 for probabilities, scores and values); scalar helpers
return plain Python values. Metric modules keep no private copies of these checks.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from facebench.errors import MetricInputError

from ._threads import map_ranges, row_threads

#: Rows of a probability matrix must sum to 1 within this absolute tolerance.
PROB_SUM_ATOL = 1e-6

_MISSING_HINT = "give every sample a value (e.g. map missing to 'unknown')"


# --------------------------------------------------------------------------- scalars


def check_bool(value, name: str) -> bool:
    """``True`` or ``False`` (a NumPy bool too), never a 0/1 stand-in."""
    if not isinstance(value, (bool, np.bool_)):
        raise MetricInputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(value, allowed: tuple[str, ...], name: str) -> str:
    """One of the strings ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise MetricInputError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")
    return value


def check_callable(value, name: str, usage: str) -> Callable:
    """A callable; ``usage`` says how it is called (e.g. ``"(y_true, y_pred) -> float"``)."""
    if not callable(value):
        raise MetricInputError(f"{name} must be callable: {usage}; got {type(value).__name__}")
    return value


def not_fitted(owner: str, call: str = "fit(...)") -> MetricInputError:
    """The error to raise when ``owner`` (an estimator) is used before ``call`` fitted it."""
    return MetricInputError(f"{owner} is not fitted yet; call {call} before using it")


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_real(value, name: str) -> float:
    """A real number (not a bool, not NaN; +-inf allowed) as a float."""
    if not _is_real(value) or np.isnan(float(value)):
        raise MetricInputError(f"{name} must be a real number (not NaN), got {value!r}")
    return float(value)


def check_positive_real(value, name: str, meaning: str = "") -> float:
    """A finite real number > 0 as a float; ``meaning`` (e.g. ``" (inverse L2 strength)"``) follows the rule."""
    if not _is_real(value) or not (np.isfinite(float(value)) and float(value) > 0):
        raise MetricInputError(f"{name} must be a positive finite number{meaning}, got {value!r}")
    return float(value)


def check_fraction(value, name: str, interval: str = "[0, 1]", example: str = "0.95 not 95") -> float:
    """A number in ``interval``: ``"[0, 1]"``, ``"(0, 1]"``, ``"[0, 1)"`` or ``"(0, 1)"``."""
    if not _is_real(value):
        raise MetricInputError(f"{name} must be a number in {interval}, got {value!r}")
    v = float(value)
    low_ok = v > 0.0 if interval[0] == "(" else v >= 0.0
    high_ok = v < 1.0 if interval[-1] == ")" else v <= 1.0
    if not (low_ok and high_ok):
        raise MetricInputError(f"{name} must be in {interval} (a fraction, e.g. {example}), got {value!r}")
    return v


def check_int_at_least(value, name: str, minimum: int) -> int:
    """An integer (not a bool) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise MetricInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise MetricInputError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as a Python int >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise MetricInputError(f"{name} must be a positive integer, got {value!r}")
    v = int(value)
    if v < 1:
        raise MetricInputError(f"{name} must be >= 1, got {v}")
    return v


def check_n_classes(n_classes, name: str = "n_classes") -> int:
    """Return ``n_classes`` as a positive Python int."""
    return check_positive_int(n_classes, name)


def check_confidence(confidence) -> float:
    """Confidence level strictly between 0 and 1."""
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise MetricInputError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    return c


# --------------------------------------------------------------------------- array building blocks


def as_array(x, name: str, allow_object: bool = False) -> np.ndarray:
    """``np.asarray(x)``; object arrays (ragged lists, mixed types) are refused unless ``allow_object``."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise MetricInputError(f"{name} could not be converted to a NumPy array: {exc}") from exc
    if arr.dtype == object and not allow_object:
        raise MetricInputError(
            f"{name} has dtype object; pass a numeric array (ragged lists or mixed types are not supported)"
        )
    return arr


def as_float64(arr: np.ndarray, name: str, what: str = "numeric", allow_bool: bool = True) -> np.ndarray:
    """``arr`` as float64 when its dtype is integer, floating (or bool); ``what`` names the expected content."""
    numeric = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer) \
        or (allow_bool and arr.dtype == np.bool_)
    if not numeric:
        raise MetricInputError(f"{name} must be {what}, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_finite(arr: np.ndarray, name: str, what: str = "values") -> np.ndarray:
    """Raise on NaN or inf in a float array of any shape, naming the first one and the count; return ``arr``."""
    finite = np.isfinite(arr)
    if not finite.all():
        flat = np.flatnonzero(~finite.ravel())
        bad = int(flat[0])
        kind = "NaN" if np.isnan(arr.ravel()[bad]) else "inf"
        where = f"index {bad}" if arr.ndim == 1 else f"flat index {bad}"
        raise MetricInputError(
            f"{name} contains {kind} at {where} ({flat.size} non-finite value(s)); "
            f"{what} must be finite -- drop or impute them first"
        )
    return arr


def check_finite_rows(arr: np.ndarray, name: str) -> np.ndarray:
    """Raise on NaN or inf in a 2-D float array, naming the first row that has one; return ``arr``.

    A finite minimum and maximum prove every entry finite (NaN propagates through both), in two
    reductions that allocate nothing; only a failing array is scanned for the row to name."""
    if arr.size == 0 or (np.isfinite(arr.min()) and np.isfinite(arr.max())):
        return arr
    if np.isnan(arr).any():
        r = int(np.flatnonzero(np.isnan(arr).any(axis=1))[0])
        raise MetricInputError(f"{name} contains NaN (first in row {r})")
    if not np.isfinite(arr).all():
        r = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise MetricInputError(f"{name} contains inf (first in row {r})")
    return arr


def check_vector(x, name: str, per: str = "entry", empty_hint: str = "need at least one sample",
                 allow_empty: bool = False, allow_object: bool = False) -> np.ndarray:
    """A 1-D array (one ``per`` per sample), non-empty unless ``allow_empty``; any dtype but object."""
    arr = as_array(x, name, allow_object=allow_object)
    if arr.ndim != 1:
        raise MetricInputError(f"{name} must be 1-D (one {per} per sample), got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise MetricInputError(f"{name} is empty; {empty_hint}")
    return arr


def check_matrix(x, name: str, min_rows: int = 1, min_cols: int = 1,
                 shape: str = "(n_samples, n_dims)") -> np.ndarray:
    """A finite numeric 2-D array with at least ``min_rows`` rows and ``min_cols`` columns, as float64."""
    arr = as_array(x, name)
    if arr.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D {shape} array, got shape {arr.shape}")
    arr = as_float64(arr, name)
    if arr.shape[0] < min_rows:
        raise MetricInputError(f"{name} has {arr.shape[0]} row(s) (shape {arr.shape}); need at least {min_rows}")
    if arr.shape[1] < min_cols:
        raise MetricInputError(
            f"{name} has {arr.shape[1]} column(s) (shape {arr.shape}); need at least {min_cols}"
        )
    return check_finite_rows(arr, name)


# --------------------------------------------------------------------------- vectors


def check_values(values, name: str = "values", allow_inf: bool = True) -> np.ndarray:
    """A non-empty 1-D vector of numbers without NaN (e.g. per-sample NLL) as float64; inf only if allowed."""
    arr = _reject_nan(as_float64(check_vector(values, name, per="value"), name), name)
    if not allow_inf and not np.isfinite(arr).all():
        raise MetricInputError(f"{name} contains inf at index {int(np.flatnonzero(~np.isfinite(arr))[0])}")
    return arr


def check_score_vector(x, name: str, empty_hint: str = "need at least one sample",
                       allow_empty: bool = False) -> np.ndarray:
    """A finite, 1-D numeric vector as float64 (no copy when already float64), non-empty unless allowed.

    Errors name the first non-finite index and the count, and say what the vector is for
    (``empty_hint``, e.g. "OOD metrics need at least one known and one unknown sample")."""
    arr = check_vector(x, name, per="score", empty_hint=empty_hint, allow_empty=allow_empty)
    return check_finite(as_float64(arr, name, "numeric scores"), name, "scores")


def check_binary_flags(x, n: int, name: str, meaning: str) -> np.ndarray:
    """A 1-D vector of ``n`` booleans or 0/1 values as bool; ``meaning`` says what 1 stands for."""
    arr = check_vector(x, name, per="flag", allow_empty=True)
    if arr.shape[0] != n:
        raise MetricInputError(f"{name} has {arr.shape[0]} entries but there are {n} scores (length mismatch)")
    if arr.dtype != np.bool_:
        as_float64(arr, name, f"boolean or 0/1 ({meaning})")
        ok = np.isin(arr, (0, 1))
        if not ok.all():
            bad = int(np.flatnonzero(~ok)[0])
            raise MetricInputError(
                f"{name} must hold only 0/1 or True/False values ({meaning}); {name}[{bad}] = {arr[bad]!r}"
            )
        arr = arr.astype(bool)
    return arr


def check_labels(y, name: str = "y", n_classes: int | None = None) -> np.ndarray:
    """Validate a 1-D vector of integer class indices and return it as int64.

    Integer dtypes are accepted as is; float arrays are accepted only when every value is integral
    (e.g. ``[0., 2., 1.]``). NaN, non-integral values, negative values and (when ``n_classes`` is given)
    values ``>= n_classes`` raise ``MetricInputError``.
    """
    arr = check_vector(y, name, per="label", empty_hint="metrics need at least one sample")
    if np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int64, copy=False)
    elif np.issubdtype(arr.dtype, np.floating):
        out = _integral_floats(arr, name)
    else:
        raise MetricInputError(
            f"{name} must hold integer class indices 0..C-1, got dtype {arr.dtype} "
            "(map class names to indices first)"
        )
    if out.min() < 0:
        bad = int(np.flatnonzero(out < 0)[0])
        raise MetricInputError(
            f"{name} contains a negative label {out[bad]} at index {bad}; labels must be in 0..C-1"
        )
    if n_classes is not None and out.max() >= n_classes:
        bad = int(np.flatnonzero(out >= n_classes)[0])
        raise MetricInputError(
            f"{name} contains label {out[bad]} at index {bad}, out of range for n_classes={n_classes} "
            f"(valid labels are 0..{n_classes - 1})"
        )
    return out


def _reject_nan(arr: np.ndarray, name: str) -> np.ndarray:
    if np.isnan(arr).any():
        raise MetricInputError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}")
    return arr


def _integral_floats(arr: np.ndarray, name: str) -> np.ndarray:
    _reject_nan(arr, name)
    if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0]
        raise MetricInputError(
            f"{name} must hold integer class indices; {name}[{bad}] = {arr[bad]!r} is not an integer "
            "(map class names to indices 0..C-1 first)"
        )
    return arr.astype(np.int64)


def check_consistent_length(**arrays) -> int:
    """Check that all given arrays have the same first dimension; return it."""
    lengths = {name: int(np.shape(a)[0]) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise MetricInputError(f"inputs have inconsistent numbers of samples: {desc}")
    return next(iter(lengths.values()))


def check_no_missing(arr: np.ndarray, name: str, fill_hint: str = _MISSING_HINT) -> np.ndarray:
    """Raise when a float or object array holds NaN or None, naming the first index; return ``arr``."""
    if arr.dtype.kind == "f":
        missing = np.isnan(arr)
    elif arr.dtype == object:
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in arr.tolist()], dtype=bool)
    else:
        return arr
    if missing.any():
        raise MetricInputError(
            f"{name} contains a missing value (None/NaN) at index {int(np.flatnonzero(missing)[0])}; {fill_hint}"
        )
    return arr


def check_groups(groups, n: int, name: str = "groups", fill_hint: str = _MISSING_HINT) -> tuple[list, np.ndarray]:
    """Per-sample group (or cluster) ids of any sortable dtype, ``n`` of them, none missing.

    Returns ``(sorted distinct ids, inverse)`` with ``inverse[i]`` (int64) the index of sample i's id.
    """
    arr = check_vector(groups, name, per="id", allow_object=True)
    if arr.shape[0] != n:
        raise MetricInputError(f"{name} has {arr.shape[0]} entries but there are {n} samples (length mismatch)")
    check_no_missing(arr, name, fill_hint)
    try:
        ids, inverse = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise MetricInputError(
            f"{name} ids must be mutually comparable (e.g. all str or all int; fairness.group_keys() joins "
            f"attributes into str): {exc}"
        ) from exc
    return ids.tolist(), inverse.reshape(-1).astype(np.int64, copy=False)


def check_clusters(clusters, n_samples: int, name: str = "clusters") -> tuple[np.ndarray, int]:
    """Map per-sample cluster ids (any sortable dtype) to ``0..K-1``.

    Returns ``(inverse, K)`` where ``inverse[i]`` is the cluster index of sample i.
    """
    ids, inverse = check_groups(clusters, n_samples, name, fill_hint="give every sample a cluster id")
    return inverse, len(ids)


# --------------------------------------------------------------------------- matrices


def check_probs(probs, name: str = "probs", atol: float = PROB_SUM_ATOL, each_block=None) -> np.ndarray:
    """Validate an (N, C) matrix of class probabilities and return it as float64.

    Raises when it is not 2-D, is empty, contains NaN/inf or negative values,
    or when any row does not sum to 1 within ``atol``. ``each_block(first, stop, rows)``, when given, is
    called on every checked block of a float64 input while it is in cache (one pass over memory for the
    check and the caller's per-row work); it is not called for other dtypes.
    """
    arr = as_array(probs, name)
    if arr.dtype == np.float64 and arr.ndim == 2 and arr.size and _rows_are_distributions(arr, atol, each_block):
        return arr
    arr = check_logits(probs, name)
    if arr.min() < 0:
        r = int(np.flatnonzero((arr < 0).any(axis=1))[0])
        raise MetricInputError(
            f"{name} contains negative probabilities (first in row {r}); did you pass logits? use softmax()"
        )
    sums = np.einsum("ij->i", arr)  # row sums, ~3x faster than sum(axis=1) over few columns (no BLAS threads)
    bad = np.abs(sums - 1.0) > atol
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise MetricInputError(
            f"{name} rows must sum to 1 within {atol:g}; row {r} sums to {sums[r]!r} "
            f"({int(bad.sum())} bad row(s)); normalise the rows or apply softmax() to logits"
        )
    return arr


def _rows_are_distributions(arr: np.ndarray, atol: float, each_block=None) -> bool:
    """True when every entry of a float64 (N, C) array is finite and >= 0 and every row sums to 1 within
    ``atol``: per block of rows, a non-negative minimum (NaN fails it) and row sums within ``atol`` of 1
    (an inf fails it); thread ranges of cache-sized blocks. False sends the array to the checks that name
    the first bad row."""
    ok = []

    def rows(first: int, stop: int) -> None:
        good = True
        for lo in range(first, stop, _CACHE_ROWS):
            hi = min(lo + _CACHE_ROWS, stop)
            block = arr[lo:hi]
            good = good and bool(block.min() >= 0 and (np.abs(np.einsum("ij->i", block) - 1.0) <= atol).all())
            if good and each_block is not None:
                each_block(lo, hi, block)
        ok.append(good)

    map_ranges(rows, arr.shape[0], row_threads(arr.shape[0]))
    return all(ok)


#: Rows per block of a fused per-row pass (a few hundred KB: stays in cache between its steps).
_CACHE_ROWS = 16384


def check_logits(logits, name: str = "logits", min_classes: int = 1) -> np.ndarray:
    """A finite (N, C) score matrix (N >= 1, C >= ``min_classes``) as float64 (no bool dtype)."""
    arr = as_array(logits, name)
    if arr.ndim == 2 and 0 in arr.shape:
        raise MetricInputError(f"{name} is empty (shape {arr.shape}); need at least one sample (row) and one class")
    if min_classes >= 2 and arr.ndim == 2 and arr.shape[1] == 1:
        raise MetricInputError(
            f"{name} has a single column (shape {arr.shape}); these scores need C >= {min_classes} classes "
            "(for a binary sigmoid output pass np.column_stack([0*z, z]))"
        )
    if arr.dtype == np.bool_:
        raise MetricInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    return check_matrix(arr, name, min_cols=min_classes, shape="(n_samples, n_classes)")


def check_classes(classes, n_classes: int, name: str = "classes") -> np.ndarray:
    """Validate a subset of class indices; ``None`` means all classes ``0..n_classes-1``."""
    if classes is None:
        return np.arange(n_classes, dtype=np.int64)
    arr = check_labels(np.atleast_1d(np.asarray(classes)), name=name, n_classes=n_classes)
    if np.unique(arr).size != arr.size:
        raise MetricInputError(f"{name} contains duplicate class indices {arr.tolist()}; each class may appear once")
    return arr


def check_confusion_matrix(cm, name: str = "cm") -> np.ndarray:
    """Validate a confusion matrix with optional leading batch dims ``(..., C, C)``.

    Returns it as float64 (counts are exact in float64 up to 2**53).
    """
    arr = as_array(cm, name)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise MetricInputError(f"{name} must have shape (..., C, C) with square trailing dims, got {arr.shape}")
    if arr.shape[-1] == 0:
        raise MetricInputError(f"{name} has zero classes (shape {arr.shape})")
    arr = as_float64(arr, name, "numeric counts", allow_bool=False)
    if np.isnan(arr).any():
        raise MetricInputError(f"{name} contains NaN; confusion matrices hold counts")
    if (arr < 0).any():
        raise MetricInputError(f"{name} contains negative counts")
    return arr
