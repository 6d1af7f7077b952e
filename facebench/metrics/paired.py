"""Paired tests between two runs on the same samples (the regression gate of ``facebench compare``).

* ``mcnemar_exact``: b = #(baseline right, new wrong), c = #(baseline wrong, new right); under H0 the
  b + c discordant pairs split Bin(b + c, 1/2). Two-sided p = min(1, 2 P(X <= min(b, c))); one-sided
  ``p_worse`` (H1: the new run is worse) = P(X >= b). No discordant pairs: both p = 1.
* ``paired_bootstrap`` / ``paired_bootstrap_classification``: the same resampled sample indices for
  both runs (paired); delta = metric(new) - metric(base) per resample; ``p_worse`` = (1 + #(delta >=
  0)) / (B + 1) (small when the new run is worse in nearly every resample); two-sided ``p_value`` =
  min(1, 2 min(#(delta <= 0), #(delta >= 0)) / B); ``ci`` = 95% percentile interval of delta. Indices
  are drawn as ``rng.integers(0, n, size=n)`` per resample from ``default_rng(seed)``, so both
  functions see identical resamples.
* ``holm``: Holm-Bonferroni step-down adjusted p-values (monotone, capped at 1), input order kept.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

from facebench.metrics import classification as cls

CLASSIFICATION_METRICS = ("accuracy", "mean_class_accuracy", "macro_f1")


def _flags(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of booleans (one per sample)")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans or 0/1")
        arr = arr.astype(bool)
    return arr


def mcnemar_exact(correct_base, correct_new) -> dict:
    """Exact McNemar test on paired correctness flags (see module docstring)."""
    a, b_ = _flags(correct_base, "correct_base"), _flags(correct_new, "correct_new")
    if a.shape != b_.shape:
        raise ValueError(f"correct_base and correct_new differ in length ({a.size} vs {b_.size}); pair the samples")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n = b + c
    if n == 0:
        p_two, p_worse = 1.0, 1.0
    else:
        p_two = float(min(1.0, 2.0 * stats.binom.cdf(min(b, c), n, 0.5)))
        p_worse = float(stats.binom.sf(b - 1, n, 0.5))  # P(X >= b)
    return {"b": b, "c": c, "n_discordant": n, "p_value": p_two, "p_worse": p_worse,
            "accuracy_base": float(a.mean()), "accuracy_new": float(b_.mean()),
            "difference": float(b_.mean() - a.mean())}


def _indices(n: int, n_resamples: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(int(n_resamples)):
        yield rng.integers(0, n, size=n)


def _summary(point: float, deltas: np.ndarray, confidence: float = 0.95) -> dict:
    b = len(deltas)
    lo, hi = np.percentile(deltas, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return {"difference": float(point), "ci": (float(lo), float(hi)),
            "p_worse": float((1 + np.sum(deltas >= 0)) / (b + 1)),
            "p_value": float(min(1.0, 2.0 * min(np.sum(deltas <= 0), np.sum(deltas >= 0)) / b)),
            "n_resamples": int(b)}


def paired_bootstrap(metric_fn: Callable, y_true, pred_base, pred_new, n_resamples=2000, seed=0) -> dict:
    """Generic paired bootstrap of ``metric_fn(y_true_subset, pred_subset)`` (see module docstring)."""
    y_true, pred_base, pred_new = (np.asarray(v) for v in (y_true, pred_base, pred_new))
    n = len(y_true)
    if n == 0 or len(pred_base) != n or len(pred_new) != n:
        raise ValueError("y_true, pred_base and pred_new must be non-empty and of equal length")
    point = metric_fn(y_true, pred_new) - metric_fn(y_true, pred_base)
    deltas = np.array([metric_fn(y_true[i], pred_new[i]) - metric_fn(y_true[i], pred_base[i])
                       for i in _indices(n, n_resamples, seed)])
    return _summary(point, deltas)


def classification_metric(name: str, n_classes: int) -> Callable:
    """``metric(y_true, y_pred)`` for accuracy, mean class accuracy or macro-F1 (classes with support)."""
    if name not in CLASSIFICATION_METRICS:
        raise ValueError(f"metric must be one of {', '.join(CLASSIFICATION_METRICS)}; got {name!r}")

    def fn(y_true, y_pred):
        cm = cls.confusion_matrix(y_true, y_pred, n_classes)
        present = [k for k in range(n_classes) if cm[k].sum() > 0]
        if name == "accuracy":
            return float(cls.accuracy_from_cm(cm))
        if name == "mean_class_accuracy":
            return float(cls.mean_class_accuracy_from_cm(cm, present))
        return float(cls.macro_f1_from_cm(cm, present))
    return fn


def paired_bootstrap_classification(y_true, pred_base, pred_new, n_classes: int, metric: str = "accuracy",
                                    n_resamples: int = 2000, seed: int = 0) -> dict:
    """Paired bootstrap of a classification metric; the same resamples as ``paired_bootstrap`` with the same
    seed, computed from per-resample confusion matrices (one ``bincount`` per run and resample)."""
    fn = classification_metric(metric, n_classes)
    y_true, pred_base, pred_new = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_base, pred_new))
    n = len(y_true)
    if n == 0 or len(pred_base) != n or len(pred_new) != n:
        raise ValueError("y_true, pred_base and pred_new must be non-empty and of equal length")
    point = fn(y_true, pred_new) - fn(y_true, pred_base)
    k2 = n_classes * n_classes
    cell_b = y_true * n_classes + pred_base
    cell_n = y_true * n_classes + pred_new
    deltas = np.empty(int(n_resamples))
    for r, idx in enumerate(_indices(n, n_resamples, seed)):
        cm_b = np.bincount(cell_b[idx], minlength=k2).reshape(n_classes, n_classes)
        cm_n = np.bincount(cell_n[idx], minlength=k2).reshape(n_classes, n_classes)
        present = [k for k in range(n_classes) if cm_b[k].sum() > 0]
        if metric == "accuracy":
            vb, vn = cls.accuracy_from_cm(cm_b), cls.accuracy_from_cm(cm_n)
        elif metric == "mean_class_accuracy":
            vb, vn = cls.mean_class_accuracy_from_cm(cm_b, present), cls.mean_class_accuracy_from_cm(cm_n, present)
        else:
            vb, vn = cls.macro_f1_from_cm(cm_b, present), cls.macro_f1_from_cm(cm_n, present)
        deltas[r] = float(vn) - float(vb)
    return _summary(point, deltas)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values: sort ascending, p_(i) * (m - i + 1) with a running maximum, cap 1."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p_values must be 1-D")
    if np.any((p < 0) | (p > 1)) or np.isnan(p).any():
        raise ValueError("p_values must lie in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out
