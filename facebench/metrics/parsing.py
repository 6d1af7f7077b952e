"""Face-parsing metrics (pure NumPy) from one confusion matrix of pixel labels.

Conventions (``shared/spec/protocols.md`` §8.1, Faceptor's ``ParsingEvaluator``, FaRL's evaluator):

* The confusion matrix ``C[t, p]`` counts pixels of true class t predicted as p, accumulated over every
  scored pixel of the whole split (one histogram, not a mean of per-image scores). Pixels whose true label
  is ``ignore_index`` (or outside [0, n_classes)) are not scored; a predicted label outside the range is a
  MetricInputError (a model emitting ids the dataset does not have).
* Per-class F1_c = 2 C[c, c] / (sum_p C[c, p] + sum_t C[t, c]) = 2 TP / (#true + #pred);
  IoU_c = C[c, c] / (#true + #pred - C[c, c]). A class absent from both truth and prediction has no value
  (NaN) and is left out of every mean.
* ``mean_f1(..., exclude=(0,))``: the mean F1 over the foreground classes (the LaPa / CelebAMask-HQ
  headline "F1-mean", background left out); ``mean_iou`` over all classes with a value (mIoU as the
  segmentation papers on CelebAMask-HQ report it, background included) or with ``exclude`` given.
* Overall F1 (``overall_f1``): the F1 micro-averaged over a set of foreground classes,
  2 sum TP / (sum #true + sum #pred) over those classes (a pixel is a true positive only with its exact
  class). Default set: every class but background. The Helen papers' "overall" F1 uses the inner facial
  parts only (brows, eyes, nose, mouth): pass those ids as ``classes``.
* Bootstrap over images: per-image confusion matrices (N, C, C) summed with multinomial image weights
  W ~ Multinomial(N, 1/N) (percentile intervals are the caller's).
"""

from __future__ import annotations

import numpy as np

from facebench.errors import MetricInputError

__all__ = ["confusion_matrix", "per_class_f1", "per_class_iou", "mean_f1", "mean_iou", "overall_f1",
           "pixel_accuracy", "bootstrap_confusions", "DEFAULT_IGNORE"]

DEFAULT_IGNORE = 255  # the common "unlabelled" value of segmentation label maps


def confusion_matrix(true, pred, n_classes: int, ignore_index: int | None = DEFAULT_IGNORE) -> np.ndarray:
    """(C, C) int64 counts ``C[t, p]`` of the pixels of ``true`` and ``pred`` (same shape, integer labels),
    by one ``np.bincount`` over ``t * C + p``. True labels equal to ``ignore_index`` or outside [0, C) are
    skipped; a predicted label outside [0, C) is an error."""
    t = np.asarray(true)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise MetricInputError(f"parsing: label maps differ in shape: true {t.shape}, predicted {p.shape}")
    if int(n_classes) < 1:
        raise MetricInputError(f"parsing: n_classes must be >= 1, got {n_classes}")
    if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise MetricInputError(f"parsing: label maps must hold integer class ids (got {t.dtype}, {p.dtype})")
    c = int(n_classes)
    t = t.astype(np.int64).ravel()
    p = p.astype(np.int64).ravel()
    keep = (t >= 0) & (t < c)
    if ignore_index is not None:
        keep &= t != ignore_index
    bad = (p[keep] < 0) | (p[keep] >= c)
    if bad.any():
        raise MetricInputError(f"parsing: {int(bad.sum())} predicted pixels have labels outside [0, {c}) "
                               f"(e.g. {int(p[keep][bad][0])}); the model's classes do not match the dataset's")
    return np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)


def _check_cm(cm) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim < 2 or cm.shape[-1] != cm.shape[-2]:
        raise MetricInputError(f"parsing: a confusion matrix must be (..., C, C), got shape {cm.shape}")
    if (cm < 0).any():
        raise MetricInputError("parsing: a confusion matrix cannot hold negative counts")
    return cm


def _parts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TP, #true, #pred) per class, each (..., C)."""
    return np.diagonal(cm, axis1=-2, axis2=-1), cm.sum(axis=-1), cm.sum(axis=-2)


def per_class_f1(cm) -> np.ndarray:
    """F1_c = 2 TP / (#true + #pred) per class (..., C); NaN for a class absent from truth and prediction."""
    tp, n_true, n_pred = _parts(_check_cm(cm))
    denom = n_true + n_pred
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), np.nan)


def per_class_iou(cm) -> np.ndarray:
    """IoU_c = TP / (#true + #pred - TP) per class (..., C); NaN for a class absent from both."""
    tp, n_true, n_pred = _parts(_check_cm(cm))
    denom = n_true + n_pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)


def _mean_over(values: np.ndarray, exclude) -> np.ndarray:
    """Mean over the last axis of the classes not in ``exclude``, ignoring NaN (NaN when none has a value)."""
    c = values.shape[-1]
    keep = np.ones(c, dtype=bool)
    for i in exclude or ():
        if not 0 <= int(i) < c:
            raise MetricInputError(f"parsing: excluded class {i} is outside [0, {c})")
        keep[int(i)] = False
    picked = values[..., keep]
    valid = ~np.isnan(picked)
    count = valid.sum(axis=-1)
    total = np.where(valid, picked, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def mean_f1(cm, exclude=(0,)):
    """Mean F1 over the classes not in ``exclude`` (default: background id 0 left out, the LaPa /
    CelebAMask-HQ "F1-mean"); classes without a value are skipped. A float for one matrix, else (...,)."""
    out = _mean_over(per_class_f1(cm), exclude)
    return float(out) if np.ndim(out) == 0 else out


def mean_iou(cm, exclude=()):
    """Mean IoU over the classes not in ``exclude`` (default: every class, background included)."""
    out = _mean_over(per_class_iou(cm), exclude)
    return float(out) if np.ndim(out) == 0 else out


def overall_f1(cm, classes=None, background: int = 0):
    """Micro F1 over ``classes`` (default: every class but ``background``): 2 sum TP / (sum #true +
    sum #pred) over them. NaN when none of them has a pixel in truth or prediction."""
    tp, n_true, n_pred = _parts(_check_cm(cm))
    c = tp.shape[-1]
    if classes is None:
        fg = np.arange(c) != int(background)
    else:
        idx = [int(i) for i in classes]
        if not idx or min(idx) < 0 or max(idx) >= c:
            raise MetricInputError(f"parsing: overall F1 classes {idx} must be non-empty ids in [0, {c})")
        fg = np.isin(np.arange(c), idx)
    num = 2.0 * tp[..., fg].sum(axis=-1)
    denom = n_true[..., fg].sum(axis=-1) + n_pred[..., fg].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)
    return float(out) if np.ndim(out) == 0 else out


def pixel_accuracy(cm):
    """Share of scored pixels whose predicted label equals the true one."""
    cm = _check_cm(cm)
    tp, n_true, _ = _parts(cm)
    total = n_true.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, tp.sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_confusions(per_image, n_resamples: int = 1000, seed: int = 0, chunk: int = 256) -> np.ndarray:
    """(B, C, C) float64 confusion matrices of B bootstrap resamples of the images: each resample sums the
    per-image matrices ``per_image`` (N, C, C) with weights W ~ Multinomial(N, 1/N) (N draws with
    replacement). ``chunk`` resamples are drawn at once."""
    m = np.asarray(per_image, dtype=np.float64)
    if m.ndim != 3 or m.shape[1] != m.shape[2] or len(m) == 0:
        raise MetricInputError(f"parsing: per-image confusion matrices must be (N >= 1, C, C), got {m.shape}")
    if int(n_resamples) < 1:
        raise MetricInputError(f"parsing: n_resamples must be >= 1, got {n_resamples}")
    n, c = m.shape[0], m.shape[1]
    flat = m.reshape(n, c * c)
    rng = np.random.default_rng(seed)
    out = np.empty((int(n_resamples), c * c), dtype=np.float64)
    for start in range(0, int(n_resamples), max(1, int(chunk))):
        b = min(max(1, int(chunk)), int(n_resamples) - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        out[start:start + b] = weights @ flat
    return out.reshape(-1, c, c)
