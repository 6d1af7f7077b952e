"""Paired significance tests for comparing two runs on the same samples (pure NumPy/SciPy).

``facebench compare`` asks whether a new run is worse than a baseline. When
both runs have per-sample predictions on the *same* samples (aligned, sample
``i`` of one run is sample ``i`` of the other), a paired test is far more
sensitive than comparing two independent confidence intervals:

* :func:`mcnemar_exact` -- exact McNemar test on paired correct/wrong outcomes
  (accuracy);
* :func:`paired_bootstrap` -- paired bootstrap of ``metric(new) - metric(base)``
  for any metric; :func:`paired_bootstrap_classification` is its vectorised
  fast path for accuracy, mean class accuracy and macro F1, giving *identical*
  numbers for the same seed;
* :func:`holm` -- Holm-Bonferroni step-down adjustment of the p-values of
  several comparisons.

Conventions: ``difference`` is always ``new - base`` (positive = the new run
scores higher). ``p_worse`` is the one-sided p-value for H0 "the new run is
not worse" against H1 "the new run is worse" (small = evidence of a
regression); ``p_value`` is the two-sided p-value for "the runs differ".
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

from facebench.errors import MetricInputError

from ._validation import (
    check_binary_flags,
    check_callable,
    check_choice,
    check_classes,
    check_confidence,
    check_consistent_length,
    check_labels,
    check_n_classes,
    check_positive_int,
    check_vector,
)
from .bootstrap import _rows_per_chunk, nan_fraction, percentile_interval

__all__ = [
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_bootstrap_classification",
    "paired_resample_indices",
    "classification_metric",
    "holm",
    "PAIRED_CLASSIFICATION_METRICS",
    "CLASSIFICATION_METRICS",
]

#: Metrics supported by :func:`paired_bootstrap_classification`.
PAIRED_CLASSIFICATION_METRICS = ("accuracy", "mean_class_accuracy", "macro_f1")
#: Alias kept for callers of the first version of this module.
CLASSIFICATION_METRICS = PAIRED_CLASSIFICATION_METRICS


# --------------------------------------------------------------------------- #
# exact McNemar
# --------------------------------------------------------------------------- #
def mcnemar_exact(correct_base, correct_new) -> dict:
    """Exact (binomial) McNemar test on paired binary outcomes.

    ``correct_base[i]`` / ``correct_new[i]`` say whether the baseline / new
    run got sample ``i`` right (bool or 0/1, same length, same samples in the
    same order). Only discordant pairs carry information:

    * ``b = #{i : base correct, new wrong}``,
    * ``c = #{i : base wrong, new correct}``, ``n = b + c``.

    Under H0 (both runs equally accurate) ``b | n ~ Binomial(n, 1/2)``.

    * ``p_value`` (two-sided) ``= min(1, 2 * P(X <= min(b, c)))`` with
      ``X ~ Bin(n, 1/2)``; equals
      ``scipy.stats.binomtest(b, n, 0.5, alternative="two-sided").pvalue``
      (the distribution is symmetric, so "as or less likely than b" is both
      tails beyond ``min(b, c)`` / ``max(b, c)``).
    * ``p_worse`` (one-sided, H1 "new is worse", i.e. b large)
      ``= P(X >= b)``; equals ``binomtest(b, n, 0.5, alternative="greater")``.
    * ``n = 0`` (no discordant pair, e.g. identical outcomes): both p = 1.

    Returns ``{"b", "c", "n_discordant", "p_value", "p_worse",
    "accuracy_base", "accuracy_new", "difference"}`` with ``difference =
    accuracy_new - accuracy_base = (c - b) / N`` (N = number of samples).
    Ints are Python ints, the rest Python floats.
    """
    base_arr = check_vector(correct_base, "correct_base", per="outcome",
                            empty_hint="the McNemar test needs at least one paired sample")
    n_samples = int(base_arr.shape[0])
    new_arr = np.asarray(correct_new)
    if new_arr.ndim == 1 and new_arr.shape[0] != n_samples:
        raise MetricInputError(
            f"correct_base has {n_samples} entries but correct_new has {new_arr.shape[0]}; "
            "the McNemar test needs the same samples, in the same order, for both runs"
        )
    cb = check_binary_flags(base_arr, n_samples, "correct_base", "1 = the baseline got the sample right")
    cn = check_binary_flags(new_arr, n_samples, "correct_new", "1 = the new run got the sample right")
    b = int(np.count_nonzero(cb & ~cn))
    c = int(np.count_nonzero(~cb & cn))
    n = b + c
    if n == 0:
        p_two, p_worse = 1.0, 1.0
    else:
        p_two = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        p_worse = float(stats.binom.sf(b - 1, n, 0.5))  # P(X >= b)
        p_worse = min(1.0, max(0.0, p_worse))
    acc_b = float(np.count_nonzero(cb)) / n_samples
    acc_n = float(np.count_nonzero(cn)) / n_samples
    return {
        "b": b,
        "c": c,
        "n_discordant": n,
        "p_value": p_two,
        "p_worse": p_worse,
        "accuracy_base": acc_b,
        "accuracy_new": acc_n,
        "difference": (c - b) / n_samples,
    }


# --------------------------------------------------------------------------- #
# paired bootstrap
# --------------------------------------------------------------------------- #
def paired_resample_indices(n, n_resamples, seed=0, chunk=None):
    """Yield the bootstrap index resamples shared by both paired-bootstrap paths.

    ``rng = np.random.default_rng(seed)``; yields int64 arrays of shape
    ``(b, n)`` (``b`` resamples at a time, ``b`` chosen so one chunk needs at most
    :data:`bootstrap.MEMORY_BUDGET`, 256 MB, unless ``chunk`` is given), each row n indices drawn
    uniformly with replacement by ``rng.integers(0, n, size=(b, n))``. In
    total ``n_resamples`` rows. The same index row is applied to *both* runs
    (that is what makes the bootstrap paired). Both :func:`paired_bootstrap`
    and :func:`paired_bootstrap_classification` draw through this generator,
    which is why they agree exactly for the same seed.
    """
    n = check_positive_int(n, "n")
    b_total = check_positive_int(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    step = _rows_per_chunk(n * 16, chunk)
    for start in range(0, b_total, step):
        b = min(step, b_total - start)
        yield rng.integers(0, n, size=(b, n))


def _summarise(point_base: float, point_new: float, deltas: np.ndarray, confidence: float,
               return_deltas: bool) -> dict:
    """Turn the bootstrap deltas into the result dict (see :func:`paired_bootstrap`)."""
    b_total = int(deltas.size)
    valid = deltas[~np.isnan(deltas)]
    b_valid = int(valid.size)
    if b_valid == 0:
        p_worse = p_two = float("nan")
    else:
        ge = int(np.count_nonzero(valid >= 0))
        le = int(np.count_nonzero(valid <= 0))
        p_worse = (1.0 + ge) / (b_valid + 1.0)
        p_two = min(1.0, 2.0 * min(le, ge) / b_valid)
    lo, hi = percentile_interval(deltas, confidence)
    out = {
        "difference": float(point_new - point_base),
        "ci": (lo, hi),
        "p_worse": float(p_worse),
        "p_value": float(p_two),
        "n_resamples": b_total,
        "metric_base": float(point_base),
        "metric_new": float(point_new),
        "confidence": float(confidence),
        "nan_fraction": nan_fraction(deltas),
    }
    if return_deltas:
        out["deltas"] = deltas
    return out


def paired_bootstrap(metric_fn: Callable, y_true, pred_base, pred_new, n_resamples=2000, seed=0,
                     confidence=0.95, return_deltas=False, chunk=None) -> dict:
    """Paired bootstrap of ``delta = metric(new) - metric(base)`` for any metric.

    ``metric_fn(y_true_subset, pred_subset) -> float`` is called on
    ``y_true[idx]`` and ``pred[idx]`` (indexing along the first axis, so
    predictions may be labels, scores or ``(N, C)`` probabilities). Each
    resample draws N sample indices with replacement (see
    :func:`paired_resample_indices`) and uses the *same* indices for both
    runs. With ``delta_1..delta_B`` the resampled differences:

    * ``difference``: point estimate ``metric_fn(y_true, pred_new) -
      metric_fn(y_true, pred_base)`` on the full data;
    * ``ci``: ``(low, high)`` percentile interval of the deltas at
      ``confidence`` (default 95%, :func:`~facebench.metrics.bootstrap.percentile_interval`);
    * ``p_worse``: one-sided p for H0 "new is not worse" vs H1 "new is worse"
      (higher metric = better): ``(1 + #{delta_b >= 0}) / (B + 1)`` -- the
      add-one Monte-Carlo p-value, never 0. Its minimum ``1 / (B + 1)`` is
      reached when the new run is strictly *worse* on every resample (the
      baseline strictly better); a new run at least as good on every
      resample gives ``p_worse = 1``;
    * ``p_value``: two-sided ``min(1, 2 * min(#{delta_b <= 0}, #{delta_b >= 0}) / B)``
      (twice the smaller tail fraction; 1 when all deltas are 0);
    * ``n_resamples`` = B; extras: ``metric_base``, ``metric_new``,
      ``confidence``, ``nan_fraction`` and, with ``return_deltas=True``,
      ``deltas`` (shape ``(B,)``).

    NaN deltas (a metric undefined on a resample, e.g. mean class accuracy
    of a resample missing a class) are left out of the counts: B above is
    then the number of non-NaN deltas, and ``nan_fraction`` says how many
    were dropped. If every delta is NaN the p-values are NaN.

    The metric is called 2B + 2 times in Python; for accuracy, mean class
    accuracy and macro F1 use :func:`paired_bootstrap_classification`.
    """
    check_callable(metric_fn, "metric_fn", "(y_true_subset, pred_subset) -> float")
    yt = np.asarray(y_true)
    pb = np.asarray(pred_base)
    pn = np.asarray(pred_new)
    for name, arr in (("y_true", yt), ("pred_base", pb), ("pred_new", pn)):
        if arr.ndim < 1:
            raise MetricInputError(f"{name} must be an array with one entry per sample, got a scalar")
    n = check_consistent_length(y_true=yt, pred_base=pb, pred_new=pn)
    if n == 0:
        raise MetricInputError("y_true is empty; the paired bootstrap needs at least one sample")
    conf = check_confidence(confidence)
    point_base = float(metric_fn(yt, pb))
    point_new = float(metric_fn(yt, pn))
    deltas = np.empty(check_positive_int(n_resamples, "n_resamples"), dtype=np.float64)
    pos = 0
    for idx in paired_resample_indices(n, n_resamples, seed, chunk):
        for row in idx:
            y_s = yt[row]
            deltas[pos] = float(metric_fn(y_s, pn[row])) - float(metric_fn(y_s, pb[row]))
            pos += 1
    return _summarise(point_base, point_new, deltas, conf, return_deltas)


def _batched_cms(cells: np.ndarray, idx: np.ndarray, cc: int) -> np.ndarray:
    """Confusion-cell counts ``(b, cc)`` of index resamples ``idx`` ``(b, n)``; ``cells[i] = t_i * C + p_i``."""
    b = idx.shape[0]
    key = np.arange(b, dtype=np.int64)[:, None] * cc + cells[idx]
    return np.bincount(key.ravel(), minlength=b * cc).reshape(b, cc)


def _scores_from_cms(cms: np.ndarray, metric: str, classes) -> np.ndarray:
    """``metric`` of confusion matrices ``(b, C, C)`` -> ``(b,)``; the one formula both paths use.

    ``classes=None``: per matrix, the mean over the classes with support in
    that matrix (row sum > 0). Otherwise the fixed subset ``classes`` via the
    ``*_from_cm`` functions (NaN for a matrix in which a class of the subset
    has no support -- mean class accuracy only).
    """
    from . import classification as cls_mod  # local import, as in bootstrap.py

    if metric == "accuracy":
        return cls_mod.accuracy_from_cm(cms)
    if classes is not None:
        if metric == "mean_class_accuracy":
            return cls_mod.mean_class_accuracy_from_cm(cms, classes)
        return cls_mod.macro_f1_from_cm(cms, classes)
    m = cms.astype(np.float64, copy=False)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    support = m.sum(axis=-1)
    present = support > 0
    if metric == "mean_class_accuracy":
        per_class = tp / np.where(present, support, 1.0)
    else:  # macro_f1: F1_c = 2 TP / (2 TP + FP + FN); the denominator is >= support > 0 on present classes
        num = 2.0 * tp
        per_class = num / np.where(present, num + (m.sum(axis=-2) - tp) + (support - tp), 1.0)
    return np.where(present, per_class, 0.0).sum(axis=-1) / present.sum(axis=-1)


def classification_metric(name, n_classes, classes=None) -> Callable:
    """``fn(y_true, y_pred) -> float`` for ``name`` in {"accuracy", "mean_class_accuracy", "macro_f1"}.

    The generic-path twin of :func:`paired_bootstrap_classification`: it
    computes the metric with the very formula the fast path applies to its
    batched confusion matrices, so ``paired_bootstrap(classification_metric(m, C, S), ...)``
    and ``paired_bootstrap_classification(..., C, m, classes=S)`` give
    identical deltas for the same seed. ``classes=None``: mean over the
    classes with support in the ``y_true`` it is called on (for the full
    data, the classes present in the evaluation set -- the protocols'
    ``eval_classes``); a list: that fixed subset (mean class accuracy is then
    NaN on a subset of samples in which one of those classes is absent).
    """
    metric = check_choice(name, PAIRED_CLASSIFICATION_METRICS, "metric")
    c = check_n_classes(n_classes)
    sel = None if classes is None else check_classes(classes, c)

    def fn(y_true, y_pred) -> float:
        from .classification import confusion_matrix

        cm = confusion_matrix(y_true, y_pred, c)
        return float(_scores_from_cms(cm[None], metric, sel)[0])

    return fn


def paired_bootstrap_classification(y_true, pred_base, pred_new, n_classes, metric="accuracy",
                                    n_resamples=2000, seed=0, classes=None, confidence=0.95,
                                    return_deltas=False, chunk=None) -> dict:
    """Vectorised paired bootstrap for ``metric`` in {"accuracy", "mean_class_accuracy", "macro_f1"}.

    Labels are class indices ``0..n_classes-1``. Draws exactly the same
    index resamples as :func:`paired_bootstrap` (same seed, same
    :func:`paired_resample_indices`), but instead of calling a metric per
    resample it builds both runs' resampled confusion matrices at once:
    with ``cell_i = y_true[i] * C + pred[i]``, the counts of resample r are
    ``bincount(r * C^2 + cell[idx[r]])`` over a chunk of resamples
    (per-resample count vectors of the resampled indices, mapped to
    confusion cells), and the metric is evaluated on the whole batch. The
    result and its keys are those of :func:`paired_bootstrap`; for the same
    seed the deltas are *identical* to
    ``paired_bootstrap(classification_metric(metric, n_classes, classes), ...)``.

    (Drawing the cell counts directly from a multinomial, as
    :func:`~facebench.metrics.bootstrap.bootstrap_confusion_matrices` does,
    would be a little faster but cannot be made draw-for-draw equal to the
    generic path -- and the two runs' cells are not independent -- so index
    resampling is used: O(B * N) work, memory bounded by chunking.)

    ``classes`` (mean class accuracy and macro F1; ignored for accuracy):
    ``None`` = per resample, the mean over the classes with support in that
    resample (for the full-data point estimate: the classes present in
    ``y_true``, i.e. the protocols' ``eval_classes``), so no resample is
    undefined; a list = that fixed subset, the ``*_from_cm`` convention (a
    resample missing one of the classes gives a NaN mean class accuracy,
    which is left out -- see ``nan_fraction``; a class of the list absent
    from ``y_true`` altogether raises).
    """
    metric = check_choice(metric, PAIRED_CLASSIFICATION_METRICS, "metric")
    c = check_n_classes(n_classes)
    yt = check_labels(y_true, "y_true", n_classes=c)
    pb = check_labels(pred_base, "pred_base", n_classes=c)
    pn = check_labels(pred_new, "pred_new", n_classes=c)
    n = check_consistent_length(y_true=yt, pred_base=pb, pred_new=pn)
    conf = check_confidence(confidence)
    b_total = check_positive_int(n_resamples, "n_resamples")
    sel = None if classes is None else check_classes(classes, c)
    point_base, point_new = _full_data_points(yt, pb, pn, c, metric, sel)
    cells_b = yt * c + pb
    cells_n = yt * c + pn
    deltas = np.empty(b_total, dtype=np.float64)
    pos = 0
    for idx in paired_resample_indices(n, b_total, seed, chunk):
        b = idx.shape[0]
        score_b = _scores_from_cms(_batched_cms(cells_b, idx, c * c).reshape(b, c, c), metric, sel)
        score_n = _scores_from_cms(_batched_cms(cells_n, idx, c * c).reshape(b, c, c), metric, sel)
        deltas[pos:pos + b] = score_n - score_b
        pos += b
    return _summarise(point_base, point_new, deltas, conf, return_deltas)


def _full_data_points(yt, pb, pn, c: int, metric: str, sel) -> tuple[float, float]:
    """Both runs' metric on all samples; an explicit class absent from ``y_true`` raises here."""
    from .classification import confusion_matrix, mean_class_accuracy_from_cm

    cm_full_b = confusion_matrix(yt, pb, c)
    cm_full_n = confusion_matrix(yt, pn, c)
    if sel is not None and metric == "mean_class_accuracy":
        mean_class_accuracy_from_cm(cm_full_b, sel)
    return (float(_scores_from_cms(cm_full_b[None], metric, sel)[0]),
            float(_scores_from_cms(cm_full_n[None], metric, sel)[0]))


# --------------------------------------------------------------------------- #
# multiple comparisons
# --------------------------------------------------------------------------- #
def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order; float64 array.

    With ``m`` p-values sorted ascending ``p_(1) <= ... <= p_(m)``:
    ``adj_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))`` -- the step-down
    multiplier ``m - j + 1`` followed by a running maximum, so adjusted
    values are monotone in the raw ones (ties get equal adjusted values)
    and capped at 1. Rejecting H_i where ``adj_i < alpha`` is Holm's
    procedure at family-wise level alpha. Same as statsmodels'
    ``multipletests(p, method="holm")[1]``.

    Accepts any 1-D sequence of p-values in ``[0, 1]``; an empty input gives
    an empty array; NaN or out-of-range values raise ``MetricInputError``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise MetricInputError(f"p_values must be 1-D (one p-value per comparison), got shape {p.shape}")
    m = p.size
    if m == 0:
        return np.empty(0, dtype=np.float64)
    if np.isnan(p).any():
        raise MetricInputError(f"p_values contains NaN at index {int(np.flatnonzero(np.isnan(p))[0])}")
    if (p < 0).any() or (p > 1).any():
        bad = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise MetricInputError(f"p_values must lie in [0, 1]; p_values[{bad}] = {p[bad]!r}")
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m, dtype=np.float64)) * p[order]
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m, dtype=np.float64)
    out[order] = adj_sorted
    return out
