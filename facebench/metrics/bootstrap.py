"""Seeded, vectorised bootstrap for classification metrics, with percentile intervals.

Entry points of the metric layer:

* :func:`bootstrap_confusion_matrices` -- resampled confusion matrices
  ``(B, C, C)``; feed them to the ``*_from_cm`` metrics of
  :mod:`facebench.metrics.classification`, which broadcast over the batch axis.
* :func:`bootstrap_sample_means` -- resampled means of per-sample values
  (e.g. per-sample NLL).
* :func:`bootstrap_statistic` -- any statistic of resampled indices (e.g. ECE
  via :func:`facebench.metrics.calibration.make_ece_statistic`).
* :func:`stratify` and :func:`strata_sums` -- resampled per-column sums of
  per-sample values drawn as counts over strata (the sample-level mean above
  and :func:`facebench.metrics.calibration.bootstrap_ece_from_confidence`).

Each of the first three accepts ``clusters`` (one id per sample, e.g. the subject id) to resample
whole clusters instead of samples: K distinct clusters are drawn K times with
replacement and the resample consists of all samples of the drawn clusters
(counted with multiplicity). All randomness comes from
``np.random.default_rng(seed)``, so a given seed reproduces the output exactly.
Intervals are plain percentile intervals (:func:`percentile_interval`).

Memory: resamples are generated in chunks whose working arrays stay within
:data:`MEMORY_BUDGET` bytes (about 256 MB). At sample level the confusion
matrices, means and strata sums are drawn as counts (no array with one entry
per sample and resample); only the generic :func:`bootstrap_statistic` builds
(resamples x samples) indices, one chunk at a time. At cluster level the
(resamples x clusters) weights are built one chunk at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    "Strata",
    "stratify",
    "strata_sums",
    "percentile_interval",
    "nan_fraction",
    "ConfidenceInterval",
    "MAX_NAN_FRACTION",
    "MEMORY_BUDGET",
    "MAX_STRATA",
]

#: Working-memory budget for one chunk of resamples (bytes).
MEMORY_BUDGET = 256 * 2**20

#: Strata of the count bootstrap (:func:`stratify`) when the values have more distinct values than this.
MAX_STRATA = 1024

#: Bytes per index of :func:`bootstrap_statistic`'s chunks: the int64 index and the statistic's temporaries.
_BYTES_PER_INDEX = 8 * 4

#: Suggested threshold for callers: an interval whose resamples are NaN more
#: often than this (see :func:`nan_fraction`) deserves a warning in reports.
MAX_NAN_FRACTION = 0.01


def _rows_per_chunk(bytes_per_row: int, requested: int | None = None) -> int:
    if requested is not None:
        return check_positive_int(requested, "chunk")
    return max(1, MEMORY_BUDGET // max(1, bytes_per_row))


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
    chunks bounded by :data:`MEMORY_BUDGET`; with ``M`` the (K, C^2) per-cluster cell counts,
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

    Sample level: the resampled sum is drawn by :func:`strata_sums` over
    :func:`stratify` (values) -- exactly the distribution of N draws with
    replacement when ``values`` has at most :data:`MAX_STRATA` distinct values,
    else exact over strata of near-equal size (by rank) with each stratum's
    within sum drawn from the normal law of the same mean and variance, so the
    resampled mean has the exact mean and variance. Cluster level: with
    per-cluster sums ``S_k`` and sizes ``n_k`` and weights
    ``W ~ Multinomial(K, 1/K)``, the resampled mean is
    ``(W @ S) / (W @ n)`` -- the mean over all samples of the drawn clusters.

    ``chunk`` = resamples generated at once; by default as many as fit in
    :data:`MEMORY_BUDGET`.
    """
    v = check_values(values)
    n = v.size
    b_total = check_positive_int(n_resamples, "n_resamples")
    if chunk is not None:
        check_positive_int(chunk, "chunk")
    rng = np.random.default_rng(seed)

    if clusters is None:
        return strata_sums(stratify(v), b_total, rng, chunk)[:, 0] / n

    out = np.empty(b_total, dtype=np.float64)
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
    stat_fn: Callable[[np.ndarray], np.ndarray], n, n_resamples=1000, seed=0, clusters=None, chunk=None
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

    ``chunk`` = resamples per call; by default as many as keep the index
    array and the statistic's temporaries (counted as 32 bytes per index)
    within :data:`MEMORY_BUDGET`. This generic path costs O(B * n); prefer
    counts (:func:`strata_sums`) for large n.
    """
    n = check_positive_int(n, "n")
    b_total = check_positive_int(n_resamples, "n_resamples")
    step = _rows_per_chunk(n * _BYTES_PER_INDEX, chunk)
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


@dataclass(frozen=True)
class Strata:
    """Samples grouped for the count bootstrap (built by :func:`stratify`).

    Stratum g holds ``sizes[g]`` samples, all of output column ``column[g]``;
    ``mean[g]`` and ``var[g]`` are the mean and population variance (ddof 0)
    of their values (``var`` is 0 when the stratum holds one distinct value,
    and for a stratum of +inf or -inf, whose ``mean`` is that infinity).
    """

    sizes: np.ndarray
    column: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    n_columns: int
    n: int = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "n", int(self.sizes.sum()))

    @property
    def exact(self) -> bool:
        """True when every stratum holds a single distinct value (the count bootstrap is then exact)."""
        return not bool(np.any(self.var > 0))


def _stratum_starts(vs: np.ndarray, cs: np.ndarray, n_columns: int, max_strata: int) -> np.ndarray:
    """Bool per sorted sample: it opens a new stratum (see :func:`stratify`)."""
    n = vs.size
    new = np.ones(n, dtype=bool)
    new[1:] = cs[1:] != cs[:-1]
    distinct = new.copy()
    distinct[1:] |= vs[1:] != vs[:-1]
    if int(distinct.sum()) <= max_strata:
        return distinct
    n_c = np.bincount(cs, minlength=n_columns)
    per_col = -(-n_c * max_strata // n)  # ceil(n_c * max_strata / n) groups of near-equal size per column
    rank = np.arange(n) - (np.cumsum(n_c) - n_c)[cs]
    group = rank * per_col[cs] // n_c[cs]
    new[1:] |= group[1:] != group[:-1]
    finite = np.isfinite(vs)
    new[1:] |= (finite[1:] != finite[:-1]) | (~finite[1:] & distinct[1:])  # each infinity its own stratum
    return new


def _sorted_by_column_and_value(v: np.ndarray, cols: np.ndarray, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, columns) ordered by column, then value: a radix sort of the columns, then one sort per column."""
    if n_columns == 1:
        return np.sort(v), cols
    order = np.argsort(cols.astype(np.int16) if n_columns < 2**15 else cols, kind="stable")
    vs, cs = v[order], cols[order]
    ends = np.cumsum(np.bincount(cs, minlength=n_columns))
    for a, b in zip(ends - np.bincount(cs, minlength=n_columns), ends):
        vs[a:b].sort()
    return vs, cs


def stratify(values, columns=None, n_columns: int = 1, max_strata: int = MAX_STRATA) -> Strata:
    """Group samples into strata of the count bootstrap.

    ``values``: one real value per sample (NaN not allowed; +-inf allowed);
    ``columns``: the output column of each sample (ints ``0..n_columns-1``;
    default all 0). Samples are ordered by (column, value). When there are at
    most ``max_strata`` distinct (column, value) pairs, each pair is a stratum
    (the bootstrap is then exact); otherwise each column's sorted run is cut
    into ``ceil(n_c * max_strata / n)`` strata of near-equal size, each
    infinity kept apart, so about ``max_strata + n_columns`` strata in all.
    """
    v = check_values(values)
    max_strata = check_positive_int(max_strata, "max_strata")
    n_columns = check_positive_int(n_columns, "n_columns")
    cols = np.zeros(v.size, np.int64) if columns is None else check_labels(columns, "columns", n_classes=n_columns)
    check_consistent_length(values=v, columns=cols)
    vs, cs = _sorted_by_column_and_value(v, cols, n_columns)
    new = _stratum_starts(vs, cs, n_columns, max_strata)
    sid = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    last = np.append(first[1:], vs.size) - 1
    sizes = np.diff(np.append(first, vs.size))
    finite = np.isfinite(vs[first])
    with np.errstate(invalid="ignore"):
        mean = np.bincount(sid, weights=np.where(np.isfinite(vs), vs, 0.0)) / sizes
        dev = np.where(np.isfinite(vs), vs - mean[sid], 0.0)
    var = np.bincount(sid, weights=dev * dev) / sizes
    const = vs[first] == vs[last]
    mean = np.where(const | ~finite, vs[first], mean)  # one distinct value: its exact value
    var[const | ~finite] = 0.0
    return Strata(sizes.astype(np.int64), cs[first], mean, var, n_columns)


def _column_sums(strata: Strata, weighted: np.ndarray) -> np.ndarray:
    """(b, n_columns) sums of the (b, G) per-stratum ``weighted`` over the strata of each column.

    Strata are ordered by column, so each column's are contiguous: one ``reduceat`` (row by row, in
    stratum order; no BLAS, so the result does not depend on the chunking).
    """
    out = np.zeros((weighted.shape[0], strata.n_columns))
    present, starts = np.unique(strata.column, return_index=True)
    out[:, present] = np.add.reduceat(weighted, starts, axis=1)
    return out


def strata_sums(strata: Strata, n_resamples: int, rng: np.random.Generator, chunk=None) -> np.ndarray:
    """Resampled per-column sums of the values, shape ``(B, n_columns)``, float64.

    A resample of n draws with replacement puts ``k ~ Multinomial(n, sizes / n)``
    draws in the strata (exact); the sum of stratum g's draws is ``k_g mean_g``
    plus, when ``var_g > 0``, a normal term of variance ``k_g var_g`` (the
    variance of k_g draws from the stratum), one per column and resample.
    Every resampled sum thus has the exact mean and variance of index
    resampling, and the exact law when :attr:`Strata.exact`. Randomness: the
    counts from ``rng.multinomial``, the normal terms (inexact strata only)
    from a child generator ``rng.spawn(1)[0]``, so the result does not depend
    on ``chunk`` = resamples at once (default: by :data:`MEMORY_BUDGET`).
    A stratum of +-inf adds its infinity to every resample that draws it.
    """
    b_total = check_positive_int(n_resamples, "n_resamples")
    g = strata.sizes.size
    step = _rows_per_chunk(8 * (3 * g + 4 * strata.n_columns), chunk)
    p = strata.sizes / strata.n
    finite = np.isfinite(strata.mean)
    means = np.where(finite, strata.mean, 0.0)
    noise = None if strata.exact else rng.spawn(1)[0]
    out = np.empty((b_total, strata.n_columns))
    for start in range(0, b_total, step):
        b = min(step, b_total - start)
        counts = rng.multinomial(strata.n, p, size=b)
        sums = _column_sums(strata, counts * means)
        with np.errstate(invalid="ignore"):  # +inf and -inf drawn together: NaN, as the mean of such a resample
            for j in np.flatnonzero(~finite):
                sums[:, strata.column[j]] += np.where(counts[:, j] > 0, strata.mean[j], 0.0)
        if noise is not None:
            sums += np.sqrt(_column_sums(strata, counts * strata.var)) * noise.standard_normal((b, strata.n_columns))
        out[start:start + b] = sums
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
