"""Seeded, vectorised bootstrap for classification metrics, with percentile intervals.

Three entry points cover the metric layer:

* :func:`bootstrap_confusion_matrices` -- resampled confusion matrices
  ``(B, C, C)``; feed them to the ``*_from_cm`` metrics of
  :mod:`facebench.metrics.classification`, which broadcast over the batch axis.
* :func:`bootstrap_sample_means` -- resampled means of per-sample values
  (e.g. per-sample NLL).
* :func:`bootstrap_statistic` -- any statistic of resampled indices (e.g. ECE
  via :func:`facebench.metrics.calibration.make_ece_statistic`).

Each accepts ``clusters`` (one id per sample, e.g. the subject id) to resample
whole clusters instead of samples: K distinct clusters are drawn K times with
replacement and the resample consists of all samples of the drawn clusters
(counted with multiplicity). All randomness comes from
``np.random.default_rng(seed)``, so a given seed reproduces the output exactly.
Intervals are plain percentile intervals (:func:`percentile_interval`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from facebench.errors import MetricInputError

from ._validation import (
    check_callable,
    check_clusters,
    check_confidence,
    check_consistent_length,
    check_labels,
    check_n_classes,
    check_positive_int,
    check_values,
)

__all__ = [
    "bootstrap_confusion_matrices",
    "bootstrap_sample_means",
    "bootstrap_statistic",
    "percentile_interval",
    "nan_fraction",
    "ConfidenceInterval",
    "MAX_NAN_FRACTION",
]

#: Working-memory budget for one chunk of resamples (bytes).
_CHUNK_BYTES = 64 * 2**20

#: Suggested threshold for callers: an interval whose resamples are NaN more
#: often than this (see :func:`nan_fraction`) deserves a warning in reports.
MAX_NAN_FRACTION = 0.01


def _rows_per_chunk(bytes_per_row: int, requested: int | None = None) -> int:
    if requested is not None:
        return check_positive_int(requested, "chunk")
    return max(1, _CHUNK_BYTES // max(1, bytes_per_row))


def _cluster_weights(rng: np.random.Generator, k: int, b: int) -> np.ndarray:
    """``(b, k)`` int64 weights ``W ~ Multinomial(k, 1/k)``: how often each cluster is drawn."""
    return rng.multinomial(k, np.full(k, 1.0 / k), size=b)


def bootstrap_confusion_matrices(
    y_true, y_pred, n_classes, n_resamples=1000, seed=0, clusters=None
) -> np.ndarray:
    """Bootstrap-resampled confusion matrices, shape ``(B, C, C)``, int64.

    Sample level (``clusters=None``): drawing N rows with replacement puts
    each draw in confusion cell ``(t, p)`` independently with probability
    ``cm[t, p] / N``, so the resampled cell counts are *exactly*
    ``Multinomial(N, cm.ravel() / N)``. They are drawn directly with
    ``rng.multinomial(N, p_cells, size=B)`` over the C*C cells: O(B * C^2)
    work and memory, no (B, N) index matrix. (Distributionally identical to
    index resampling, but not draw-for-draw identical for a given seed.)

    Cluster level (``clusters`` = one id per sample): with K distinct
    clusters, draw weights ``W ~ Multinomial(K, 1/K)`` of shape (B, K) (the
    number of times each cluster is picked in K draws with replacement), in
    chunks bounded to ~64 MB; with ``M`` the (K, C^2) per-cluster cell counts,
    the resampled cells are ``W @ M``.

    ``rng = np.random.default_rng(seed)``. Apply e.g. ``accuracy_from_cm`` or
    ``mean_class_accuracy_from_cm`` to the result; the latter is NaN for
    resamples in which a class has no samples.
    """
    # local import keeps module import order simple (classification imports nothing from here)
    from .classification import confusion_matrix

    c = check_n_classes(n_classes)
    yt = check_labels(y_true, "y_true", n_classes=c)
    yp = check_labels(y_pred, "y_pred", n_classes=c)
    n = check_consistent_length(y_true=yt, y_pred=yp)
    b_total = check_positive_int(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    cc = c * c

    if clusters is None:
        cells = confusion_matrix(yt, yp, c).ravel()
        p = cells / n
        return rng.multinomial(n, p, size=b_total).astype(np.int64, copy=False).reshape(b_total, c, c)

    inv, k = check_clusters(clusters, n)
    m = np.bincount(inv * cc + yt * c + yp, minlength=k * cc).reshape(k, cc).astype(np.float64)
    out = np.empty((b_total, cc), dtype=np.int64)
    step = _rows_per_chunk(k * 16)
    for start in range(0, b_total, step):
        b = min(step, b_total - start)
        w = _cluster_weights(rng, k, b).astype(np.float64)
        # integer-valued float matmul is exact below 2**53 and uses BLAS
        out[start:start + b] = np.rint(w @ m).astype(np.int64)
    return out.reshape(b_total, c, c)


def bootstrap_sample_means(values, n_resamples=1000, seed=0, clusters=None, chunk=None) -> np.ndarray:
    """Bootstrap distribution of the mean of per-sample ``values``, shape ``(B,)``, float64.

    Sample level: each resample draws N indices with replacement
    (``rng.integers``) and averages ``values`` over them. Cluster level: with
    per-cluster sums ``S_k`` and sizes ``n_k`` and weights
    ``W ~ Multinomial(K, 1/K)``, the resampled mean is
    ``(W @ S) / (W @ n)`` -- the mean over all samples of the drawn clusters.

    ``chunk`` = resamples generated at once; by default chosen so a chunk
    needs about 64 MB (N or K values per resample, 16 bytes each).
    """
    v = check_values(values)
    n = v.size
    b_total = check_positive_int(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    out = np.empty(b_total, dtype=np.float64)

    if clusters is None:
        step = _rows_per_chunk(n * 16, chunk)
        for start in range(0, b_total, step):
            b = min(step, b_total - start)
            idx = rng.integers(0, n, size=(b, n))
            out[start:start + b] = v[idx].mean(axis=1)
        return out

    inv, k = check_clusters(clusters, n)
    sums = np.bincount(inv, weights=v, minlength=k)
    sizes = np.bincount(inv, minlength=k).astype(np.float64)
    step = _rows_per_chunk(k * 16, chunk)
    for start in range(0, b_total, step):
        b = min(step, b_total - start)
        w = _cluster_weights(rng, k, b).astype(np.float64)
        out[start:start + b] = (w @ sums) / (w @ sizes)
    return out


def bootstrap_statistic(
    stat_fn: Callable[[np.ndarray], np.ndarray], n, n_resamples=1000, seed=0, clusters=None, chunk=64
) -> np.ndarray:
    """Bootstrap distribution of a generic statistic, shape ``(B,)``, float64.

    ``stat_fn(indices)`` receives an int64 array of resampled sample indices
    of shape ``(b, m)`` (b resamples of m indices each) and must return the
    ``(b,)`` statistic values. Indices are generated ``chunk`` resamples at a
    time.

    Sample level: ``m = n`` and every row holds n indices drawn uniformly
    with replacement from ``0..n-1``. Cluster level (``clusters`` = one id per
    sample, length n): each resample draws K clusters with replacement and
    holds the indices of all their samples, so its size m varies when
    clusters differ in size; resamples of equal size are batched into one
    call, and ``stat_fn`` must therefore accept any ``m``.
    """
    n = check_positive_int(n, "n")
    b_total = check_positive_int(n_resamples, "n_resamples")
    step = check_positive_int(chunk, "chunk")
    check_callable(stat_fn, "stat_fn", "indices (b, m) -> values (b,)")
    rng = np.random.default_rng(seed)
    out = np.empty(b_total, dtype=np.float64)

    def _call(idx: np.ndarray) -> np.ndarray:
        vals = np.asarray(stat_fn(idx), dtype=np.float64)
        if vals.shape != (idx.shape[0],):
            raise MetricInputError(
                f"stat_fn must return one value per resample, shape ({idx.shape[0]},); got {vals.shape}"
            )
        return vals

    if clusters is None:
        for start in range(0, b_total, step):
            b = min(step, b_total - start)
            out[start:start + b] = _call(rng.integers(0, n, size=(b, n)))
        return out

    inv, k = check_clusters(clusters, n)
    order = np.argsort(inv, kind="stable")  # samples grouped by cluster
    sizes = np.bincount(inv, minlength=k)
    starts = np.cumsum(sizes) - sizes  # first position of each cluster in `order`
    for start in range(0, b_total, step):
        b = min(step, b_total - start)
        draws = rng.integers(0, k, size=(b, k))  # K clusters per resample, with replacement
        lengths = sizes[draws].sum(axis=1)
        vals = np.empty(b, dtype=np.float64)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            d = draws[rows].ravel()
            ls = sizes[d]
            offs = np.cumsum(ls) - ls
            pos = np.arange(ls.sum()) - np.repeat(offs, ls) + np.repeat(starts[d], ls)
            vals[rows] = _call(order[pos].reshape(rows.size, int(length)))
        out[start:start + b] = vals
    return out


def nan_fraction(samples) -> float:
    """Fraction of NaN entries among the bootstrap ``samples``."""
    s = np.asarray(samples, dtype=np.float64)
    if s.size == 0:
        raise MetricInputError("samples is empty")
    return float(np.mean(np.isnan(s)))


def percentile_interval(samples, confidence=0.95) -> tuple[float, float]:
    """Percentile bootstrap interval ``(q_{(1-c)/2}, q_{1-(1-c)/2})`` of ``samples``.

    Percentiles use NumPy's default (linear) interpolation via
    ``np.nanpercentile``, so NaN resamples (e.g. mean class accuracy of a
    resample missing a class) are ignored. The interval is returned whatever
    the NaN share; callers should check :func:`nan_fraction` (e.g. against
    :data:`MAX_NAN_FRACTION` = 1%). All-NaN samples give ``(nan, nan)``.
    """
    c = check_confidence(confidence)
    s = np.asarray(samples, dtype=np.float64).ravel()
    if s.size == 0:
        raise MetricInputError("samples is empty; run the bootstrap with n_resamples >= 1")
    if np.isnan(s).all():
        return float("nan"), float("nan")
    alpha = (1.0 - c) / 2.0
    with np.errstate(invalid="ignore"):  # inf resamples (e.g. a ratio over a zero error) are legitimate
        lo, hi = np.nanpercentile(s, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


@dataclass(frozen=True)
class ConfidenceInterval:
    """A bootstrap confidence interval.

    ``unit`` names what was resampled (``"sample"`` or e.g. ``"subject"`` for a
    cluster bootstrap); ``method`` the interval construction.
    """

    low: float
    high: float
    confidence: float
    n_resamples: int
    method: str = "percentile"
    unit: str = "sample"

    def to_dict(self) -> dict:
        """Plain-dict form (JSON-serialisable: floats, int, str)."""
        d = asdict(self)
        d["low"] = float(d["low"])
        d["high"] = float(d["high"])
        d["confidence"] = float(d["confidence"])
        d["n_resamples"] = int(d["n_resamples"])
        return d

    @classmethod
    def from_samples(cls, samples, confidence=0.95, unit="sample") -> "ConfidenceInterval":
        """Percentile interval of bootstrap ``samples`` (NaNs ignored; see :func:`percentile_interval`)."""
        lo, hi = percentile_interval(samples, confidence)
        return cls(low=lo, high=hi, confidence=float(confidence), n_resamples=int(np.size(samples)),
                   method="percentile", unit=unit)
