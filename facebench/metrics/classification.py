"""Closed-set classification metrics (pure NumPy).

Conventions
-----------
* Labels are integer class indices ``0..C-1``; the protocol layer maps class
  names to indices.
* Confusion matrices follow scikit-learn: ``cm[t, p]`` counts samples whose
  true class is ``t`` and predicted class is ``p`` (rows = true, columns =
  predicted).
* The ``*_from_cm`` functions accept any leading batch dimensions
  ``(..., C, C)`` so that they vectorise over bootstrap resamples (see
  :func:`facebench.metrics.bootstrap.bootstrap_confusion_matrices`).
* All computations are float64.
"""

from __future__ import annotations

import numpy as np

from facebench.errors import MetricInputError

from ._threads import map_ranges, row_threads

from ._validation import (
    check_classes,
    check_confusion_matrix,
    check_consistent_length,
    check_labels,
    check_n_classes,
    check_probs,
)

__all__ = [
    "confusion_matrix",
    "accuracy_from_cm",
    "per_class_recall_from_cm",
    "per_class_precision_from_cm",
    "mean_class_accuracy_from_cm",
    "macro_f1_from_cm",
    "accuracy",
    "mean_class_accuracy",
    "macro_f1",
    "negative_log_likelihood",
    "per_sample_nll",
    "softmax",
    "top1",
]


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, NaN where ``den == 0`` (no warnings)."""
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _diag(cm: np.ndarray) -> np.ndarray:
    return np.diagonal(cm, axis1=-2, axis2=-1)


# --------------------------------------------------------------------------- #
# confusion-matrix level
# --------------------------------------------------------------------------- #
def confusion_matrix(y_true, y_pred, n_classes) -> np.ndarray:
    """Confusion matrix ``cm[t, p] = #{i : y_true[i] = t and y_pred[i] = p}``.

    Shape ``(C, C)``, dtype int64, rows = true class, columns = predicted
    class (scikit-learn convention; equals
    ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=range(C))``).
    Classes absent from both vectors give all-zero rows/columns.
    """
    c = check_n_classes(n_classes)
    yt = check_labels(y_true, "y_true", n_classes=c)
    yp = check_labels(y_pred, "y_pred", n_classes=c)
    check_consistent_length(y_true=yt, y_pred=yp)
    return np.bincount(yt * c + yp, minlength=c * c).reshape(c, c).astype(np.int64, copy=False)


def accuracy_from_cm(cm) -> np.ndarray:
    """Overall accuracy ``trace(cm) / sum(cm)`` over the last two axes; shape ``(...)``.

    Raises ``MetricInputError`` if any matrix is empty (sum 0).
    """
    m = check_confusion_matrix(cm)
    total = m.sum(axis=(-2, -1))
    if np.any(total == 0):
        raise MetricInputError("accuracy is undefined for an empty confusion matrix (total count 0)")
    return _diag(m).sum(axis=-1) / total


def per_class_recall_from_cm(cm) -> np.ndarray:
    """Per-class recall ``R_c = cm[c, c] / sum_p cm[c, p]`` (diag / row sums); shape ``(..., C)``.

    NaN where the row sum (the class support) is 0.
    """
    m = check_confusion_matrix(cm)
    return _safe_divide(_diag(m), m.sum(axis=-1))


def per_class_precision_from_cm(cm) -> np.ndarray:
    """Per-class precision ``P_c = cm[c, c] / sum_t cm[t, c]`` (diag / column sums); shape ``(..., C)``.

    NaN where the column sum (number of predictions of class c) is 0.
    """
    m = check_confusion_matrix(cm)
    return _safe_divide(_diag(m), m.sum(axis=-2))


def mean_class_accuracy_from_cm(cm, classes=None) -> np.ndarray:
    """Mean class accuracy ``mA = (1/|S|) * sum_{c in S} R_c`` with ``R_c`` the recall of class c.

    ``S`` = ``classes`` (class indices; default all ``0..C-1``). This is the
    unweighted mean of per-class accuracies used by Mine-Extra-Knowledge
    ("mean accuracy") and equals ``sklearn.metrics.balanced_accuracy_score``
    when every class is present in ``y_true``.

    Empty classes:
    * a single (unbatched) ``(C, C)`` matrix in which a class of ``S`` has
      zero support raises ``MetricInputError`` naming that class (restrict
      ``classes`` to the classes present);
    * with leading batch dims (bootstrap resamples) a resample in which a
      class of ``S`` has zero support yields NaN for that resample; count
      them with :func:`facebench.metrics.bootstrap.nan_fraction`.
    """
    m = check_confusion_matrix(cm)
    cls = check_classes(classes, m.shape[-1])
    support = m.sum(axis=-1)[..., cls]
    if m.ndim == 2 and np.any(support == 0):
        empty = cls[support == 0].tolist()
        raise MetricInputError(
            f"mean class accuracy is undefined: class(es) {empty} have no samples in y_true (support 0); "
            "pass classes=... listing only the classes present in the evaluation set"
        )
    recall = _safe_divide(_diag(m)[..., cls], support)
    return recall.mean(axis=-1)


def macro_f1_from_cm(cm, classes=None) -> np.ndarray:
    """Macro F1 ``(1/|S|) * sum_{c in S} F1_c`` with ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``.

    ``TP_c = cm[c, c]``, ``FP_c`` = column sum - TP, ``FN_c`` = row sum - TP.
    ``F1_c = 0`` when ``2 TP_c + FP_c + FN_c == 0`` (class neither present nor
    predicted), matching scikit-learn's ``zero_division=0`` convention, so
    this equals ``f1_score(average="macro", labels=S, zero_division=0)``.
    Shape ``(...)``.
    """
    m = check_confusion_matrix(cm)
    cls = check_classes(classes, m.shape[-1])
    tp = _diag(m)
    fp = m.sum(axis=-2) - tp
    fn = m.sum(axis=-1) - tp
    num = 2.0 * tp[..., cls]
    den = num + fp[..., cls] + fn[..., cls]
    f1 = np.zeros(den.shape, dtype=np.float64)
    np.divide(num, den, out=f1, where=den != 0)
    return f1.mean(axis=-1)


# --------------------------------------------------------------------------- #
# array-level wrappers
# --------------------------------------------------------------------------- #
def accuracy(y_true, y_pred) -> float:
    """Accuracy ``(1/N) * sum_i [y_true[i] == y_pred[i]]``."""
    yt = check_labels(y_true, "y_true")
    yp = check_labels(y_pred, "y_pred")
    check_consistent_length(y_true=yt, y_pred=yp)
    return float(np.mean(yt == yp))


def mean_class_accuracy(y_true, y_pred, n_classes, classes=None) -> float:
    """Mean class accuracy (unweighted mean of per-class recall); see :func:`mean_class_accuracy_from_cm`.

    Raises ``MetricInputError`` if a class in ``classes`` (default all) has no samples in ``y_true``.
    """
    return float(mean_class_accuracy_from_cm(confusion_matrix(y_true, y_pred, n_classes), classes=classes))


def macro_f1(y_true, y_pred, n_classes, classes=None) -> float:
    """Macro F1 over ``classes`` (default all) with ``F1_c = 2TP/(2TP+FP+FN)``, 0 when undefined.

    See :func:`macro_f1_from_cm`.
    """
    return float(macro_f1_from_cm(confusion_matrix(y_true, y_pred, n_classes), classes=classes))


def per_sample_nll(y_true, probs, eps=1e-15) -> np.ndarray:
    """Per-sample negative log-likelihood ``-log(clip(probs[i, y_true[i]], eps, 1))``; shape ``(N,)``.

    ``probs`` is ``(N, C)`` with rows summing to 1 within 1e-6; ``y_true`` in ``0..C-1``.
    """
    p = check_probs(probs)
    yt = check_labels(y_true, "y_true", n_classes=p.shape[1])
    check_consistent_length(y_true=yt, probs=p)
    eps = float(eps)
    if not (0.0 < eps < 1.0):
        raise MetricInputError(f"eps must be in (0, 1), got {eps!r}")
    picked = p[np.arange(yt.size), yt]
    return -np.log(np.clip(picked, eps, 1.0))


def negative_log_likelihood(y_true, probs, eps=1e-15) -> float:
    """Mean negative log-likelihood ``(1/N) * sum_i -log(clip(probs[i, y_true[i]], eps, 1))`` (natural log).

    Equals ``sklearn.metrics.log_loss(y_true, probs, labels=range(C))`` for rows summing to 1
    (up to the clipping of probabilities below ``eps``).
    """
    return float(np.mean(per_sample_nll(y_true, probs, eps=eps)))


def softmax(logits, axis=-1) -> np.ndarray:
    """Numerically stable softmax ``exp(z - max z) / sum exp(z - max z)`` along ``axis``, float64."""
    z = np.asarray(logits, dtype=np.float64)
    if z.size == 0:
        raise MetricInputError("logits is empty")
    if np.isnan(z).any():
        raise MetricInputError("logits contains NaN")
    zmax = np.max(z, axis=axis, keepdims=True)
    if not np.isfinite(zmax).all():
        raise MetricInputError("logits contains +inf, or a slice that is entirely -inf; softmax is undefined there")
    e = z - zmax  # one working array, exponentiated and normalised in place
    np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def checked_top1(probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probs, max, argmax)``: :func:`check_probs` and :func:`top1` in one pass over the matrix."""
    p = np.asarray(probs)
    if p.dtype != np.float64 or p.ndim != 2:
        p = check_probs(p)
        return (p, *top1(p))
    arg = np.empty(p.shape[0], np.int64)
    top = np.empty(p.shape[0], np.float64)

    def each_block(first: int, stop: int, block: np.ndarray) -> None:
        if block.shape[1] <= _COLUMN_TOP1:
            _column_top1(block, top[first:stop], arg[first:stop])
            return
        arg[first:stop] = block.argmax(axis=1)
        top[first:stop] = np.take_along_axis(block, arg[first:stop, None], axis=1)[:, 0]

    return check_probs(p, each_block=each_block), top, arg


#: Columns up to which :func:`checked_top1` finds the maximum column by column (NumPy's row-wise ``argmax``
#: over a few columns costs a loop per row).
_COLUMN_TOP1 = 16


def _column_top1(block: np.ndarray, top: np.ndarray, arg: np.ndarray) -> None:
    """``max`` and first ``argmax`` of every row of a block of probability rows (finite, each row's maximum
    positive) into ``top`` and ``arg``, column by column: a running maximum (``np.maximum`` returns one of its
    operands, so the values are the entries themselves), and the last column that changed it, i.e. was strictly
    greater than every column before it: ``max_c (c * [p_c > max(p_0..p_{c-1})])``, the first maximum on ties,
    as ``argmax``. Each column is read once (strided); the rest works on contiguous vectors."""
    running, updated = block[:, 0].copy(), np.empty(block.shape[0])
    changed = np.empty(block.shape[0], dtype=np.bool_)
    column = np.zeros(block.shape[0], dtype=np.uint8)
    candidate = np.empty_like(column)
    for c in range(1, block.shape[1]):
        np.maximum(running, block[:, c], out=updated)
        np.not_equal(updated, running, out=changed)  # p_c > running maximum (-0.0 == 0.0: not a change)
        np.multiply(changed.view(np.uint8), np.uint8(c), out=candidate)
        np.maximum(column, candidate, out=column)
        running, updated = updated, running
    top[:] = running
    arg[:] = column


def top1(probs) -> tuple[np.ndarray, np.ndarray]:
    """``(max_c probs[:, c], argmax_c probs[:, c])`` of an (N, C) score matrix; argmax is the first maximum on ties.

    The maximum is read at the argmax (one row-wise reduction instead of two): the same values as
    ``probs.max(axis=1)`` and ``probs.argmax(axis=1)`` (int64 indices). From ``2**18`` rows on, row blocks
    go to the usable CPUs (NumPy's ``argmax`` releases the GIL); every row's result is the same.
    """
    p = np.asarray(probs)
    if p.ndim != 2 or 0 in p.shape:
        raise MetricInputError(f"probs must be a non-empty (n_samples, n_classes) matrix, got shape {p.shape}")
    n = p.shape[0]
    arg = np.empty(n, np.int64)
    top = np.empty(n, p.dtype)

    def rows(first: int, stop: int) -> None:
        block = p[first:stop]
        arg[first:stop] = block.argmax(axis=1)
        top[first:stop] = np.take_along_axis(block, arg[first:stop, None], axis=1)[:, 0]

    map_ranges(rows, n, row_threads(n))
    return top, arg
