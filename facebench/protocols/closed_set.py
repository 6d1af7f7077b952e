"""Closed-set expression recognition.

Prediction = argmax of the head's logits over the model classes in use (no test-time
augmentation). Metrics: overall (micro) accuracy = #correct / N; mean class accuracy = unweighted
mean of per-class recall over the dataset classes that have samples (Mine-Extra-Knowledge;
sklearn's balanced accuracy); macro-F1 over the same classes; per-class recall and precision;
confusion matrix (rows = true, columns = predicted); NLL = mean -log softmax(logits)[true]; ECE
with equal-width bins over the max probability. Bootstrap percentile CIs resample samples
(the confusion-matrix resamples are shared by accuracy, mean accuracy, macro-F1 and per-class recall);
every bootstrap draws counts (multinomial over confusion cells, over strata of the per-sample NLL, over
strata of the (bin, correct) cells of the ECE; see ``facebench.metrics.bootstrap``), never a
(resamples x samples) array: O(N log N + resamples x strata) time.

Label spaces are matched by class name. Two explicit policies:
* ``unsupported_classes``: dataset classes the model cannot predict: ``drop`` those samples
  (default) or count them as ``error`` (always wrong; excluded from NLL).
* ``extra_model_classes``: model classes the dataset lacks (e.g. contempt on a 7-class set):
  ``restrict`` the argmax and softmax to the shared classes (default) or ``keep`` them, so that
  predicting one counts as an error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dataclasses import dataclass

import numpy as np

from facebench.metrics import bootstrap as bs
from facebench.metrics import calibration as cal
from facebench.metrics import classification as cls
from facebench.protocols._classify import (accuracy_records, confusion, dropped_warning, matched_head,
                                           percentile_ci, sample_bootstrap)
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
        p, ds = self.params, ctx.dataset
        m = matched_head(ctx, self.name, p.unsupported_classes, p.extra_model_classes)
        warnings = dropped_warning(m)
        if m.empty:
            warnings.insert(0, f"classes without samples in {ds.name}/{ds.split} are left out of class means: "
                               f"{m.empty}")
        probs = cls.softmax(m.logits, axis=1)
        confidence, y_pred = cls.top1(probs)
        cm, cms = confusion(m.y_true, y_pred, len(m.label_space), ctx)
        common = {"unsupported_classes": p.unsupported_classes, "extra_model_classes": p.extra_model_classes,
                  "prediction": "argmax"}
        conv, ci = {**common, **sample_bootstrap(ctx)}, percentile_ci(ctx)
        records = accuracy_records(cm, cms, m, conv, ci)
        records.append(MetricRecord("macro_f1", float(cls.macro_f1_from_cm(cm, m.eval_classes)),
                                    ci(None if cms is None else cls.macro_f1_from_cm(cms, m.eval_classes)),
                                    len(y_pred), {**conv, "definition": "mean F1 over dataset classes; F1=0 when "
                                                                        "undefined",
                                                  "classes": [m.label_space[i] for i in m.eval_classes]},
                                    higher_is_better=True, unit="fraction"))
        correct = y_pred == m.y_true
        reliability = cal.reliability_from_confidence(confidence, correct, p.ece_bins)
        with ThreadPoolExecutor(max_workers=2) as pool:  # two independent seeded bootstraps whose multinomial
            # draws release the GIL: the same bits as one after the other, in about half the time on 2 cores
            nll = pool.submit(self._nll_record, m, probs, conv, ctx)
            ece = pool.submit(self._ece_record, confidence, correct, reliability, conv, ctx)
            records += [nll.result(), ece.result()]
        class_records, per_class = self._per_class(cm, cms, m, common, conv, ci)
        details = {
            "label_space": m.label_space,
            "confusion_matrix": cm.tolist(),
            "per_class": per_class,
            "dropped_samples": m.dropped,
            "unsupported_classes": m.unsupported,
            "classes_without_samples": m.empty,
            "reliability": _jsonable(reliability),
        }
        samples = {"ids": ds.ids if m.keep.all() else ds.ids[m.keep], "y_true": m.y_true, "y_pred": y_pred}
        return TaskResult(records + class_records, details, warnings, samples)

    @staticmethod
    def _nll_record(m, probs: np.ndarray, conv: dict, ctx: EvalContext) -> MetricRecord:
        """Mean -log softmax(logits)[true] over the samples whose true class the model has (an unsupported
        class counted as an error has no probability)."""
        nll_mask = m.y_true < len(m.used)
        nll_values = (cls.per_sample_nll(m.y_true, probs) if nll_mask.all() else
                      cls.per_sample_nll(m.y_true[nll_mask], probs[nll_mask]))
        ci = percentile_ci(ctx)
        return MetricRecord(
            "nll", float(nll_values.mean()) if len(nll_values) else float("nan"),
            ci(bs.bootstrap_sample_means(nll_values, n_resamples=ctx.n_resamples, seed=ctx.seed))
            if len(nll_values) and ctx.n_resamples > 0 else None,
            int(nll_mask.sum()), {**conv, "definition": "mean -log softmax(logits)[true], eps=1e-15",
                                  "softmax_over": m.used},
            higher_is_better=False, unit="score")

    def _ece_record(self, confidence: np.ndarray, correct: np.ndarray, reliability: dict, conv: dict,
                    ctx: EvalContext) -> MetricRecord:
        """ECE over all evaluated samples (equal-width bins; ``reliability`` holds their per-bin statistics); an
        unsupported true class is never predicted correctly."""
        bins, n = self.params.ece_bins, len(confidence)
        ece_ci = None
        if ctx.n_resamples > 0:
            ece_ci = percentile_ci(ctx)(cal.bootstrap_ece_from_confidence(
                confidence, correct, bins, n_resamples=ctx.n_resamples, seed=ctx.seed))
        return MetricRecord(f"ece[{cal.ece_convention(bins)}]", cal.ece_from_reliability(reliability),
                            ece_ci, n, conv, higher_is_better=False, unit="rate")

    @staticmethod
    def _per_class(cm: np.ndarray, cms, m, common: dict, conv: dict, ci) -> tuple[list[MetricRecord], list[dict]]:
        """Recall (with CI) of each class with samples, precision of each predicted model class in use, and
        the per-class table of the details."""
        recall = cls.per_class_recall_from_cm(cm)
        precision = cls.per_class_precision_from_cm(cm)
        recall_boot = None if cms is None else cls.per_class_recall_from_cm(cms)
        records, per_class = [], []
        for i, name in enumerate(m.label_space):
            support = int(cm[i].sum())
            if support:
                records.append(MetricRecord(f"recall[{name}]", float(recall[i]),
                                            ci(None if recall_boot is None else recall_boot[:, i]), support, conv,
                                            higher_is_better=True, unit="fraction"))
            if name in m.used and int(cm[:, i].sum()):
                records.append(MetricRecord(f"precision[{name}]", float(precision[i]), None, int(cm[:, i].sum()),
                                            common, higher_is_better=True, unit="fraction"))
            per_class.append({"class": name, "support": support,
                              "recall": None if not support else float(recall[i]),
                              "precision": None if not np.isfinite(precision[i]) else float(precision[i])})
        return records, per_class


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        arr = np.asarray(v, dtype=np.float64)
        out[k] = [None if not np.isfinite(x) else float(x) for x in arr.tolist()]
    return out
