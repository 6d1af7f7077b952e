"""Steps shared by the protocols that score a classification head on labelled samples (closed-set,
imbalanced, fairness): the head matched to the split's labels, the confusion matrix with its bootstrap
resamples, percentile CIs and the two headline accuracy records.

Conventions: CIs are percentile intervals at ``ctx.confidence`` over ``ctx.n_resamples`` resamples
(None when ``n_resamples`` is 0); the confusion matrix has rows = true, columns = predicted.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facebench.errors import MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import classification as cls
from facebench.protocols._labels import MatchedLabels, match_labels
from facebench.protocols.base import EvalContext, MetricRecord


def matched_head(ctx: EvalContext, protocol: str, unsupported: str, extra: str) -> MatchedLabels:
    """The task split's class-name labels matched to the head's logits (``match_labels``);
    MetricInputError when the split has no labels."""
    ds = ctx.dataset
    if ds.labels is None:
        raise MetricInputError(f"{protocol} needs labels; dataset {ds.name}/{ds.split} has none")
    return match_labels(ctx.predictions.outputs[ctx.head], ds.labels, ds.classes, ctx.head_labels,
                        unsupported, extra, f"{ds.name}/{ds.split}")


def dropped_warning(m: MatchedLabels) -> list[str]:
    """The warning for samples left out because the model cannot predict their class (none when none were)."""
    if not m.dropped:
        return []
    return [f"{m.dropped} samples of classes the model cannot predict ({m.unsupported}) were dropped"]


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, ctx: EvalContext):
    """(confusion matrix, its bootstrap resamples over samples or None without bootstrap)."""
    cm = cls.confusion_matrix(y_true, y_pred, n_classes)
    cms = (bs.bootstrap_confusion_matrices(y_true, y_pred, n_classes, n_resamples=ctx.n_resamples, seed=ctx.seed)
           if ctx.n_resamples > 0 else None)
    return cm, cms


def percentile_ci(ctx: EvalContext) -> Callable:
    """``ci(samples)``: the percentile interval of bootstrap ``samples``, None for None or without bootstrap."""

    def ci(samples):
        if samples is None or ctx.n_resamples <= 0:
            return None
        return bs.percentile_interval(samples, confidence=ctx.confidence)

    return ci


def sample_bootstrap(ctx: EvalContext) -> dict:
    """The conventions of a bootstrap that resamples single samples."""
    return {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=sample,seed={ctx.seed}",
            "confidence": ctx.confidence}


def accuracy_records(cm: np.ndarray, cms, m: MatchedLabels, conv: dict, ci: Callable) -> list[MetricRecord]:
    """The headline ``accuracy`` (micro) and ``mean_class_accuracy`` (unweighted mean of the recall of the
    dataset classes with samples) records, their CIs from the confusion-matrix resamples ``cms``."""
    n = len(m.y_true)
    evaluated = [m.label_space[i] for i in m.eval_classes]
    boot_acc = None if cms is None else cls.accuracy_from_cm(cms)
    boot_mean = None if cms is None else cls.mean_class_accuracy_from_cm(cms, m.eval_classes)
    return [
        MetricRecord("accuracy", float(cls.accuracy_from_cm(cm)), ci(boot_acc), n,
                     {**conv, "definition": "micro: #correct / N"}, headline=True,
                     higher_is_better=True, unit="fraction"),
        MetricRecord("mean_class_accuracy", float(cls.mean_class_accuracy_from_cm(cm, m.eval_classes)),
                     ci(boot_mean), n, {**conv, "definition": "unweighted mean of per-class recall",
                                        "classes": evaluated}, headline=True,
                     higher_is_better=True, unit="fraction"),
    ]
