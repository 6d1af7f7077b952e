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

from ._validation import check_consistent_length, check_labels, check_positive_int, check_probs

__all__ = [
    "ece_convention",
    "ECE_CONVENTION",
    "bin_edges",
    "expected_calibration_error",
    "reliability_bins",
    "make_ece_statistic",
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
    """Bin index b with ``edges[b] < conf <= edges[b+1]``; conf 0 -> bin 0 (and > 1 clipped to last)."""
    n_bins = edges.size - 1
    idx = np.searchsorted(edges, confidence, side="left") - 1
    return np.clip(idx, 0, n_bins - 1)


def _per_sample(y_true, probs, n_bins):
    p = check_probs(probs)
    yt = check_labels(y_true, "y_true", n_classes=p.shape[1])
    check_consistent_length(y_true=yt, probs=p)
    edges = bin_edges(n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == yt).astype(np.float64)
    return conf, correct, _assign_bins(conf, edges), edges


def reliability_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS) -> dict:
    """Per-bin statistics from per-sample confidence (in [0, 1]) and correctness (0/1).

    Used directly when correctness is not ``argmax == label`` (e.g. a true class the model cannot
    predict counts as incorrect). Same binning as :func:`reliability_bins`.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if conf.ndim != 1 or conf.shape != correct.shape:
        raise MetricInputError("confidence and correct must be 1-D arrays of the same length")
    edges = bin_edges(n_bins)
    bins = _assign_bins(conf, edges)
    n = edges.size - 1
    counts = np.bincount(bins, minlength=n)
    sum_correct = np.bincount(bins, weights=correct, minlength=n)
    sum_conf = np.bincount(bins, weights=conf, minlength=n)
    acc = np.full(n, np.nan)
    mconf = np.full(n, np.nan)
    nz = counts > 0
    acc[nz] = sum_correct[nz] / counts[nz]
    mconf[nz] = sum_conf[nz] / counts[nz]
    return {"edges": edges, "counts": counts.astype(np.int64), "accuracy": acc, "confidence": mconf}


def ece_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS) -> float:
    """ECE ``sum_b (n_b / N) |acc_b - conf_b|`` from per-sample confidence and correctness."""
    rb = reliability_from_confidence(confidence, correct, n_bins)
    counts = rb["counts"]
    nz = counts > 0
    if not nz.any():
        raise MetricInputError("ECE of an empty set is undefined")
    w = counts[nz] / counts.sum()
    return float(np.sum(w * np.abs(rb["accuracy"][nz] - rb["confidence"][nz])))


def reliability_bins(y_true, probs, n_bins=DEFAULT_N_BINS) -> dict:
    """Per-bin statistics of the reliability diagram (convention in the module docstring).

    Returns a dict with
    * ``edges``: ``(n_bins + 1,)`` bin edges ``b / n_bins``;
    * ``counts``: ``(n_bins,)`` int64 number of samples per bin;
    * ``accuracy``: ``(n_bins,)`` fraction correct per bin (NaN for empty bins);
    * ``confidence``: ``(n_bins,)`` mean max-probability per bin (NaN for empty bins).
    """
    conf, correct, _, _ = _per_sample(y_true, probs, n_bins)
    return reliability_from_confidence(conf, correct, n_bins)


def expected_calibration_error(y_true, probs, n_bins=DEFAULT_N_BINS) -> float:
    """Expected calibration error ``sum_b (n_b / N) |acc_b - conf_b|``.

    Confidence = max probability, prediction = argmax (first max on ties),
    ``n_bins`` equal-width right-closed bins over [0, 1] (bin b holds
    ``(b/n_bins, (b+1)/n_bins]``; confidence 0 goes to bin 0). See the module
    docstring and :func:`ece_convention`.
    """
    rb = reliability_bins(y_true, probs, n_bins)
    counts = rb["counts"]
    nz = counts > 0
    w = counts[nz] / counts.sum()
    return float(np.sum(w * np.abs(rb["accuracy"][nz] - rb["confidence"][nz])))


def make_ece_statistic(y_true, probs, n_bins=DEFAULT_N_BINS) -> Callable[[np.ndarray], np.ndarray]:
    """Vectorised ECE over resamples, for :func:`facebench.metrics.bootstrap.bootstrap_statistic`.

    Returns ``stat_fn(indices)`` mapping an integer array of resampled sample
    indices of shape ``(b, m)`` to the ``(b,)`` ECE of each resample (same
    convention as :func:`expected_calibration_error`).
    """
    conf, correct, _, _ = _per_sample(y_true, probs, n_bins)
    return ece_statistic_from_confidence(conf, correct, n_bins)


def ece_statistic_from_confidence(confidence, correct, n_bins=DEFAULT_N_BINS) -> Callable[[np.ndarray], np.ndarray]:
    """Like :func:`make_ece_statistic`, from per-sample confidence and correctness.

    Uses ``(n_b / m) |acc_b - conf_b| = |sum_{i in b} correct_i - sum_{i in b} conf_i| / m``
    and one ``bincount`` over (resample, bin) pairs, so no Python loop over resamples.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = bin_edges(n_bins)
    bins = _assign_bins(conf, edges)
    n_b = edges.size - 1
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
