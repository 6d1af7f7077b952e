"""Calibration metrics: expected calibration error (ECE) and reliability bins.

Convention (identified by :func:`ece_convention`, e.g.
``"bins=15,equal-width,right-closed,conf=max-prob"``):

* confidence of sample i = ``max_c probs[i, c]``; prediction = ``argmax_c
  probs[i, c]`` (the first maximum on ties, as ``np.argmax``); a sample is
  correct when the prediction equals ``y_true[i]``;
* ``n_bins`` equal-width bins over [0, 1] with edges ``e_b = b / n_bins``
  (``b = 0..n_bins``); bin ``b`` (0-based) holds confidences in
  ``(e_b, e_{b+1}]`` (right-closed), and a confidence of exactly 0 goes to
  bin 0 (a confidence of exactly 1 is in the last bin);
* ``ECE = sum_b (n_b / N) * |acc_b - conf_b|`` where ``n_b`` is the number
  of samples in bin b, ``acc_b`` their accuracy and ``conf_b`` their mean
  confidence (empty bins contribute 0).

Bootstrap: :func:`bootstrap_ece` resamples counts, not indices -- see
:func:`bootstrap_ece_from_confidence`; :func:`make_ece_statistic` serves the
generic index bootstrap (:func:`facebench.metrics.bootstrap.bootstrap_statistic`).

Floating point: the edges are computed as ``np.arange(n_bins + 1) / n_bins``,
i.e. each edge is the float64 nearest to the exact fraction ``b / n_bins``
(a correctly rounded division). Hence a confidence written as the decimal
literal of an edge -- ``0.2`` with 5 bins, ``0.6`` with 15 bins -- compares
equal to that edge and falls in the *lower* bin. Edges such as ``0.25``
with 4 bins are exactly representable and need no such care.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facebench.errors import MetricInputError

from . import bootstrap as bs
from ._threads import map_blocks
from ._validation import check_consistent_length, check_labels, check_positive_int, check_probs
from .classification import checked_top1

__all__ = [
    "ece_convention",
    "ECE_CONVENTION",
    "bin_edges",
    "expected_calibration_error",
    "reliability_bins",
    "make_ece_statistic",
    "bootstrap_ece",
    "bootstrap_ece_from_confidence",
]

DEFAULT_N_BINS = 15


def ece_convention(n_bins: int = DEFAULT_N_BINS) -> str:
    """Short string identifying the ECE convention, e.g. ``"bins=15,equal-width,right-closed,conf=max-prob"``."""
    n = check_positive_int(n_bins, "n_bins")
    return f"bins={n},equal-width,right-closed,conf=max-prob"


#: Convention string of the default ECE (15 bins).
ECE_CONVENTION = ece_convention(DEFAULT_N_BINS)


def bin_edges(n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Equal-width bin edges ``b / n_bins`` for ``b = 0..n_bins`` (float64, correctly rounded)."""
    n = check_positive_int(n_bins, "n_bins")
    return np.arange(n + 1, dtype=np.float64) / n


def _assign_bins(confidence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index b with ``edges[b] < conf <= edges[b+1]``; conf <= 0 -> bin 0, conf > 1 -> last bin.

    ``floor(conf * n_bins)`` (clipped to the bins) is off by at most one from that bin (rounding of the
    product, and a confidence on an edge), so one comparison with each neighbouring edge settles it (the
    same bins as ``searchsorted(edges, conf) - 1``). Runs over cache-sized blocks.
    """
    n_bins = edges.size - 1
    lower, upper = edges[:-1].copy(), edges[1:].copy()
    lower[0], upper[-1] = -np.inf, np.inf  # nothing leaves the first bin downwards or the last upwards
    idx = np.empty(confidence.shape[0], dtype=np.intp)
    scaled = np.empty(min(confidence.shape[0], _BIN_ROWS))
    for first in range(0, confidence.shape[0], _BIN_ROWS):
        conf, out = confidence[first:first + _BIN_ROWS], idx[first:first + _BIN_ROWS]
        s = scaled[:conf.shape[0]]
        np.multiply(conf, n_bins, out=s)
        np.clip(s, 0.0, float(n_bins - 1), out=s)
        out[:] = s  # truncation: floor of a non-negative value
        out -= conf <= lower[out]
        out += conf > upper[out]
    return idx


#: Confidences binned at once by :func:`_assign_bins` (their temporaries stay in cache).
_BIN_ROWS = 1 << 16


def _per_sample(y_true, probs, n_bins):
    p, conf, pred = checked_top1(probs)
    yt = check_labels(y_true, "y_true", n_classes=p.shape[1])
    check_consistent_length(y_true=yt, probs=p)
    return conf, pred == yt


def _check_confidence_pairs(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """(confidence as float64, correct as bool): 1-D, same length, confidence finite, correct 0/1 (or bool)."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct)
    if conf.ndim != 1 or conf.shape != corr.shape:
        raise MetricInputError("confidence and correct must be 1-D arrays of the same length")
    if not np.isfinite(conf).all():
        i = int(np.flatnonzero(~np.isfinite(conf))[0])
        raise MetricInputError(f"confidence must be finite (a probability); index {i} holds {conf[i]!r}")
    if corr.dtype != np.bool_:
        bad = (corr != 0) & (corr != 1)
        if bad.any():
            raise MetricInputError(f"correct must hold 0/1 (or bool); index {int(np.flatnonzero(bad)[0])} holds "
                                   f"{corr[np.flatnonzero(bad)[0]]!r}")
        corr = corr == 1
    return conf, corr


def _bin_sums(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: (count, number correct, sum of confidence); row blocks binned and counted in threads."""
    edges = bin_edges(n_bins)

    def rows(first: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        bins = _assign_bins(conf[first:stop], edges)
        return (np.bincount(2 * bins + correct[first:stop], minlength=2 * n_bins),  # (bin, correct)
                np.bincount(bins, weights=conf[first:stop], minlength=n_bins))

    parts = map_blocks(rows, conf.shape[0])
    cells = sum(c for c, _ in parts).reshape(n_bins, 2)
    sum_conf = parts[0][1]
    for _, partial in parts[1:]:  # in block order: the same bits on any number of CPUs
        sum_conf = sum_conf + partial
    return cells.sum(axis=1), cells[:, 1], sum_conf


def reliability_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS) -> dict:
    """Per-bin statistics from per-sample confidence and correctness (0/1 or bool; NaN or inf refused).

    Used directly when correctness is not ``argmax == label`` (e.g. a true class the model cannot
    predict counts as incorrect). Same binning and keys as :func:`reliability_bins`.
    """
    conf, corr = _check_confidence_pairs(confidence, correct)
    return _reliability(conf, corr, check_positive_int(n_bins, "n_bins"))


def _reliability(conf: np.ndarray, corr: np.ndarray, n: int) -> dict:
    """:func:`reliability_from_confidence` of checked float64 confidence and bool correctness."""
    counts, n_correct, sum_conf = _bin_sums(conf, corr, n)
    acc = np.full(n, np.nan)
    mconf = np.full(n, np.nan)
    nz = counts > 0
    acc[nz] = n_correct[nz] / counts[nz]
    mconf[nz] = sum_conf[nz] / counts[nz]
    return {"edges": bin_edges(n), "counts": counts.astype(np.int64), "accuracy": acc, "confidence": mconf}


def ece_from_reliability(rb: dict) -> float:
    """ECE ``sum_b (n_b / N) |acc_b - conf_b|`` from :func:`reliability_bins` output (empty bins add 0)."""
    counts = rb["counts"]
    nz = counts > 0
    if not nz.any():
        raise MetricInputError("ECE of an empty set is undefined")
    w = counts[nz] / counts.sum()
    return float(np.sum(w * np.abs(rb["accuracy"][nz] - rb["confidence"][nz])))


def ece_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS) -> float:
    """ECE ``sum_b (n_b / N) |acc_b - conf_b|`` from per-sample confidence and correctness."""
    return ece_from_reliability(reliability_from_confidence(confidence, correct, n_bins))


def reliability_bins(y_true, probs, n_bins=DEFAULT_N_BINS) -> dict:
    """Per-bin statistics of the reliability diagram (convention in the module docstring).

    Returns a dict with
    * ``edges``: ``(n_bins + 1,)`` bin edges ``b / n_bins``;
    * ``counts``: ``(n_bins,)`` int64 number of samples per bin;
    * ``accuracy``: ``(n_bins,)`` fraction correct per bin (NaN for empty bins);
    * ``confidence``: ``(n_bins,)`` mean max-probability per bin (NaN for empty bins).
    """
    conf, correct = _per_sample(y_true, probs, n_bins)
    return _reliability(conf, correct, check_positive_int(n_bins, "n_bins"))


def expected_calibration_error(y_true, probs, n_bins=DEFAULT_N_BINS) -> float:
    """Expected calibration error ``sum_b (n_b / N) |acc_b - conf_b|``.

    Confidence = max probability, prediction = argmax (first max on ties),
    ``n_bins`` equal-width right-closed bins over [0, 1] (bin b holds
    ``(b/n_bins, (b+1)/n_bins]``; confidence 0 goes to bin 0). See the module
    docstring and :func:`ece_convention`.
    """
    return ece_from_reliability(reliability_bins(y_true, probs, n_bins))


def make_ece_statistic(y_true, probs, n_bins=DEFAULT_N_BINS) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised ECE over resamples, for :func:`facebench.metrics.bootstrap.bootstrap_statistic`.

    Returns ``stat_fn(indices)`` mapping an integer array of resampled sample
    indices of shape ``(b, m)`` to the ``(b,)`` ECE of each resample (same
    convention as :func:`expected_calibration_error`).
    """
    conf, correct = _per_sample(y_true, probs, n_bins)
    return ece_statistic_from_confidence(conf, correct, n_bins)


def ece_statistic_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS) -> Callable[[np.ndarray], np.ndarray]:
    """Like :func:`make_ece_statistic`, from per-sample confidence and correctness.

    Uses ``(n_b / m) |acc_b - conf_b| = |sum_{i in b} correct_i - sum_{i in b} conf_i| / m``
    and one ``bincount`` over (resample, bin) pairs, so no Python loop over resamples.
    """
    conf, corr = _check_confidence_pairs(confidence, correct)
    correct = corr.astype(np.float64)
    n_b = check_positive_int(n_bins, "n_bins")
    bins = _assign_bins(conf, bin_edges(n_b))
    n = conf.size

    def stat_fn(indices) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise MetricInputError(f"indices must have shape (b, m) with m >= 1, got {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise MetricInputError(f"indices must be in 0..{n - 1}")
        b, m = idx.shape
        key = (np.arange(b, dtype=np.int64)[:, None] * n_b + bins[idx]).ravel()
        diff = np.bincount(key, weights=(correct[idx] - conf[idx]).ravel(), minlength=b * n_b)
        return np.abs(diff.reshape(b, n_b)).sum(axis=1) / m

    return stat_fn


def bootstrap_ece(y_true, probs, n_bins=DEFAULT_N_BINS, n_resamples=1000, seed=0) -> np.ndarray:
    """Sample-level bootstrap distribution of :func:`expected_calibration_error`, shape ``(B,)``.

    See :func:`bootstrap_ece_from_confidence` for how resamples are drawn.
    """
    conf, correct = _per_sample(y_true, probs, n_bins)
    return bootstrap_ece_from_confidence(conf, correct, n_bins, n_resamples, seed)


def bootstrap_ece_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS, n_resamples=1000, seed=0,
                                  max_strata=bs.MAX_STRATA) -> np.ndarray:
    """Sample-level bootstrap distribution of the ECE from per-sample confidence and correctness, ``(B,)``.

    With ``d_i = correct_i - conf_i``, a resample's ECE is ``sum_b |sum_{i in b} d_i| / N`` (sums over
    its draws). The per-(bin, correct) sums of ``d`` are drawn by
    :func:`facebench.metrics.bootstrap.strata_sums` over strata of ``d`` within each (bin, correct)
    cell: the counts of draws per cell (hence per bin and the number correct) follow the exact
    multinomial law; within a cell, the sorted confidences are cut into strata of near-equal size (about
    ``N / max_strata`` samples, all within the bin's width ``1 / n_bins``), whose counts are multinomial
    too, and the spread of confidence within a stratum is drawn from the normal law of the same mean and
    variance. The law is exact when there are at most ``max_strata`` distinct (bin, correct, confidence)
    triples; otherwise each per-bin sum still has the exact mean and variance.
    ``rng = np.random.default_rng(seed)``. Cost O(N log N + B * max_strata), memory O(N) plus one chunk
    within :data:`facebench.metrics.bootstrap.MEMORY_BUDGET`; no (B, N) array.
    """
    conf, corr = _check_confidence_pairs(confidence, correct)
    n_b = check_positive_int(n_bins, "n_bins")
    b_total = check_positive_int(n_resamples, "n_resamples")
    if conf.size == 0:
        raise MetricInputError("ECE of an empty set is undefined")
    cells = 2 * _assign_bins(conf, bin_edges(n_b)) + corr
    strata = bs.stratify(corr - conf, cells, 2 * n_b, max_strata)
    sums = bs.strata_sums(strata, b_total, np.random.default_rng(seed))
    return np.abs(sums[:, 0::2] + sums[:, 1::2]).sum(axis=1) / conf.size
