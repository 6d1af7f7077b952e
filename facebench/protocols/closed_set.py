"""Closed-set expression recognition.

Prediction = argmax of the head's logits over the model classes in use (no test-time
augmentation). Metrics: overall (micro) accuracy = #correct / N; mean class accuracy = unweighted
mean of per-class recall over the dataset classes that have samples (Mine-Extra-Knowledge;
sklearn's balanced accuracy); macro-F1 over the same classes; per-class recall and precision;
confusion matrix (rows = true, columns = predicted); NLL = mean -log softmax(logits)[true]; ECE
with equal-width bins over the max probability. Bootstrap percentile CIs resample samples
(the confusion-matrix resamples are shared by accuracy, mean accuracy, macro-F1 and per-class recall).

Label spaces are matched by class name. Two explicit policies:
* ``unsupported_classes``: dataset classes the model cannot predict: ``drop`` those samples
  (default) or count them as ``error`` (always wrong; excluded from NLL).
* ``extra_model_classes``: model classes the dataset lacks (e.g. contempt on a 7-class set):
  ``restrict`` the argmax and softmax to the shared classes (default) or ``keep`` them, so that
  predicting one counts as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.metrics import bootstrap as bs
from facebench.metrics import calibration as cal
from facebench.metrics import classification as cls
from facebench.protocols._labels import match_labels
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice


class ClosedSetProtocol(Protocol):
    """Closed-set expression recognition: accuracy, mean class accuracy, macro-F1, NLL, ECE, bootstrap CIs"""

    name = "closed_set"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        unsupported_classes: str = choice("drop", ("drop", "error"))
        extra_model_classes: str = choice("restrict", ("restrict", "keep"))
        ece_bins: int = 15

    RANGES = {"ece_bins": (1, None)}

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        ds = ctx.dataset
        if ds.labels is None:
            raise ValueError(f"closed_set needs labels; dataset {ds.name}/{ds.split} has none")
        m = match_labels(ctx.predictions.outputs[ctx.head], ds.labels, ds.classes, ctx.head_labels,
                         p.unsupported_classes, p.extra_model_classes, f"{ds.name}/{ds.split}")
        warnings = []
        if m.empty:
            warnings.append(f"classes without samples in {ds.name}/{ds.split} are left out of class means: {m.empty}")
        if m.dropped:
            warnings.append(f"{m.dropped} samples of classes the model cannot predict ({m.unsupported}) were dropped")
        label_space, used, unsupported, empty, dropped = m.label_space, m.used, m.unsupported, m.empty, m.dropped
        probs = cls.softmax(m.logits, axis=1)
        y_true, y_pred = m.y_true, probs.argmax(axis=1).astype(np.int64)
        n, n_classes = len(y_true), len(label_space)
        eval_classes = m.eval_classes

        cm = cls.confusion_matrix(y_true, y_pred, n_classes)
        conv_common = {
            "unsupported_classes": p.unsupported_classes,
            "extra_model_classes": p.extra_model_classes,
            "prediction": "argmax",
        }
        cms = (bs.bootstrap_confusion_matrices(y_true, y_pred, n_classes, n_resamples=ctx.n_resamples, seed=ctx.seed)
               if ctx.n_resamples > 0 else None)

        def ci(samples):
            if samples is None or ctx.n_resamples <= 0:
                return None
            return bs.percentile_interval(samples, confidence=ctx.confidence)

        def on_boot(fn, *args):
            """``fn`` over the bootstrap confusion matrices, or None without bootstrap."""
            return None if cms is None else fn(cms, *args)

        boot = {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=sample,seed={ctx.seed}",
                "confidence": ctx.confidence}
        records = [
            MetricRecord("accuracy", float(cls.accuracy_from_cm(cm)), ci(on_boot(cls.accuracy_from_cm)), n,
                         {**conv_common, **boot, "definition": "micro: #correct / N"}, headline=True,
                         higher_is_better=True, unit="fraction"),
            MetricRecord("mean_class_accuracy", float(cls.mean_class_accuracy_from_cm(cm, eval_classes)),
                         ci(on_boot(cls.mean_class_accuracy_from_cm, eval_classes)), n,
                         {**conv_common, **boot, "definition": "unweighted mean of per-class recall",
                          "classes": [label_space[i] for i in eval_classes]}, headline=True,
                         higher_is_better=True, unit="fraction"),
            MetricRecord("macro_f1", float(cls.macro_f1_from_cm(cm, eval_classes)),
                         ci(on_boot(cls.macro_f1_from_cm, eval_classes)), n,
                         {**conv_common, **boot, "definition": "mean F1 over dataset classes; F1=0 when undefined",
                          "classes": [label_space[i] for i in eval_classes]},
                         higher_is_better=True, unit="fraction"),
        ]

        nll_mask = y_true < len(used)
        nll_values = cls.per_sample_nll(y_true[nll_mask], probs[nll_mask])
        records.append(MetricRecord(
            "nll", float(nll_values.mean()) if len(nll_values) else float("nan"),
            ci(bs.bootstrap_sample_means(nll_values, n_resamples=ctx.n_resamples, seed=ctx.seed))
            if len(nll_values) and ctx.n_resamples > 0 else None,
            int(nll_mask.sum()), {**conv_common, **boot, "definition": "mean -log softmax(logits)[true], eps=1e-15",
                                  "softmax_over": used},
            higher_is_better=False, unit="score"))

        # ECE over all evaluated samples; an unsupported true class is never predicted correctly.
        confidence = probs.max(axis=1)
        correct = (y_pred == y_true).astype(np.float64)
        ece_key = f"ece[{cal.ece_convention(p.ece_bins)}]"
        ece_value = cal.ece_from_confidence(confidence, correct, p.ece_bins)
        ece_ci = None
        if ctx.n_resamples > 0:
            ece_ci = ci(bs.bootstrap_statistic(cal.ece_statistic_from_confidence(confidence, correct, p.ece_bins),
                                               n, n_resamples=ctx.n_resamples, seed=ctx.seed))
        records.append(MetricRecord(ece_key, ece_value, ece_ci, n, {**conv_common, **boot},
                                    higher_is_better=False, unit="rate"))

        recall = cls.per_class_recall_from_cm(cm)
        precision = cls.per_class_precision_from_cm(cm)
        recall_boot = on_boot(cls.per_class_recall_from_cm)
        per_class = []
        for i, name in enumerate(label_space):
            support = int(cm[i].sum())
            if support:
                records.append(MetricRecord(f"recall[{name}]", float(recall[i]), ci(None if recall_boot is None else recall_boot[:, i]), support,
                                            {**conv_common, **boot}, higher_is_better=True, unit="fraction"))
            if name in used and int(cm[:, i].sum()):
                records.append(MetricRecord(f"precision[{name}]", float(precision[i]), None, int(cm[:, i].sum()),
                                            conv_common, higher_is_better=True, unit="fraction"))
            per_class.append({"class": name, "support": support,
                              "recall": None if not support else float(recall[i]),
                              "precision": None if not np.isfinite(precision[i]) else float(precision[i])})
        details = {
            "label_space": label_space,
            "confusion_matrix": cm.tolist(),
            "per_class": per_class,
            "dropped_samples": dropped,
            "unsupported_classes": unsupported,
            "classes_without_samples": empty,
            "reliability": _jsonable(cal.reliability_from_confidence(confidence, correct, p.ece_bins)),
        }
        samples = {"ids": ds.ids[m.keep], "y_true": y_true, "y_pred": y_pred}
        return TaskResult(records, details, warnings, samples)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        arr = np.asarray(v, dtype=np.float64)
        out[k] = [None if not np.isfinite(x) else float(x) for x in arr.tolist()]
    return out
