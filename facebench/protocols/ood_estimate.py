"""Label-free OOD estimate on one unlabelled test set (issue 23; ``facebench.metrics.mpe``).

The task's split is the unlabelled test set (labels, if any, are not read); ``reference`` names in-distribution
data the model was meant for (e.g. the validation split of its training set). On the task's own dataset it takes
the task's ``path`` and ``dataset_args`` unless it names its own, except the perturbations ``transform`` and
``attack`` (``base.split_ref``): the reference stays clean. The detector's scores on both (``detector``: a logit
score, ``msp`` by default; higher = in-distribution) make the test set a mixture
``F_test = (1 - pi) F_id + pi F_ood`` with ``F_id`` known from the reference: ``method`` (``bbe`` by default)
estimates the OOD fraction ``pi``, the OOD score distribution is deconvolved, and the detector's AUROC,
FPR@95 and AUPR on this test set follow, with percentile bootstrap intervals (``resamples``, by default the
task's ``bootstrap``; resampling both the reference and the test scores; the task's ``confidence``).

Assumption (irreducibility): some score range holds ID data and no OOD data, i.e. the top ID scores are ID only.
When it fails (OOD scored like ID: near-OOD), or the test set is too small, or ``pi`` is indistinguishable
from 0, the estimate is **unidentifiable**: the records' values are null and ``details.reason`` says why;
no number is made up. Records: ``estimated_auroc`` (headline), ``estimated_ood_fraction``,
``estimated_fpr@95``, ``estimated_aupr_in`` / ``_out``. Details: the estimate's one-line ``summary`` and the
decomposition of the test scores' histogram into its estimated ID and OOD parts (the ``decomposition`` figure).

``method: feature`` (``facebench.metrics.feature_mpe``) takes the mixture apart in the model's feature space
instead (the reference's and the test set's stored ``features``; ``feature_shrinkage`` as in ``label_free``): it
identifies near-OOD data that the detector scores like ID, where the score-space methods say "unidentifiable".
Its records are ``estimated_auroc`` and ``estimated_ood_fraction`` (FPR@95 and AUPR are not estimated by it);
the decomposition splits each test score by its sample's estimated OOD posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import ConfigError
from facebench.metrics import feature_mpe as fmpe
from facebench.metrics import mpe
from facebench.metrics import ood_scores as osc
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice, split_ref
from facebench.records import Requirements

RECORDS = (("estimated_auroc", "auroc", True, True), ("estimated_ood_fraction", "pi", False, False),
           ("estimated_fpr@95", "fpr95", False, False), ("estimated_aupr_in", "aupr_in", False, True),
           ("estimated_aupr_out", "aupr_out", False, True))


class OodEstimateProtocol(Protocol):
    """Label-free estimate of a detector's AUROC and the OOD fraction on one unlabelled test set, against ID reference data"""

    name = "ood_estimate"
    version = "1"

    @dataclass
    class Params:
        reference: object = None
        head: str | None = None
        detector: str = choice("msp", tuple(sorted(osc.LOGIT_SCORES)))
        temperature: float = 1.0
        method: str = choice("bbe", (*mpe.ESTIMATORS, "feature"))
        resamples: int | None = None
        bins: int = 40
        feature_shrinkage: float = 1.0

    RANGES = {"temperature": (1e-12, None), "resamples": (0, None), "bins": (2, 1000), "feature_shrinkage": (0, None)}

    def requirements(self, task=None) -> Requirements:
        return Requirements(head_name=self.params.head, labels=False, features=self.params.method == "feature")

    def requires(self, task) -> dict:
        if self.params.reference is None:
            raise ConfigError(f"task {task.name!r}: ood_estimate needs `reference`: in-distribution data the model "
                              f"was meant for, e.g. `reference: {{dataset: fer2013-images, split: val}}`.")
        ref = split_ref(self.params.reference, f"task {task.name!r}: reference", task, predictions=True,
                        features=self.params.method == "feature")
        return {"reference": ref}  # on the task's dataset: clean (split_ref drops its perturbations)

    def _scores(self, preds, ctx: EvalContext) -> np.ndarray:
        logits = np.asarray(preds.outputs[ctx.head], np.float64)
        return osc.logit_score(self.params.detector, logits, temperature=self.params.temperature)

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        ref = ctx.extras["reference"]
        s_id = self._scores(ref.predictions.align(ref.dataset.ids), ctx)
        s_test = self._scores(ctx.predictions, ctx)
        resamples = ctx.n_resamples if p.resamples is None else p.resamples
        if p.method == "feature":
            return self._evaluate_features(ctx, ref, s_id, s_test, resamples)
        report = mpe.estimate_ood_auroc(s_id, s_test, method=p.method, n_resamples=resamples,
                                        confidence=ctx.confidence, seed=ctx.seed)
        conv = {"detector": p.detector, "temperature": p.temperature, "method": p.method, "resamples": resamples,
                "n_id": report.n_id,
                "reference": f"{ref.dataset.name}/{ref.dataset.split}", "confidence": ctx.confidence,
                "assumption": "irreducibility: the top ID scores hold no OOD data",
                "interval": "percentile bootstrap over reference and test scores"}
        records = []
        for metric, key, headline, higher in RECORDS:
            value = getattr(report, key) if report.identifiable else None
            ci = report.intervals[key] if report.identifiable and resamples > 0 else None
            records.append(MetricRecord(metric, value, ci, report.n_test,
                                        {**conv, **({} if report.identifiable else {"unidentifiable": report.reason})},
                                        headline=headline, higher_is_better=higher, unit="rate" if key != "auroc"
                                        else "score"))
        details = {"identifiable": report.identifiable, "reason": report.reason, "summary": report.summary(),
                   "method": p.method, "detector": p.detector, "n_test": report.n_test, "n_id": report.n_id,
                   "pi_raw": _finite(report.pi_raw), "estimate": {k: _finite(getattr(report, k)) for _, k, _, _ in RECORDS},
                   "intervals": {k: [_finite(x) for x in v] for k, v in report.intervals.items()},
                   "decomposition": mpe.decomposition_histogram(report, s_id, s_test, p.bins)}
        warnings = [] if report.identifiable else [f"no label-free estimate: {report.reason}"]
        return TaskResult(records, details, warnings)


    def _evaluate_features(self, ctx: EvalContext, ref, s_id, s_test, resamples: int) -> TaskResult:
        """``method: feature``: the estimate of :func:`facebench.metrics.feature_mpe.estimate`."""
        p = self.params
        ref_x = np.asarray(ref.predictions.align(ref.dataset.ids).outputs["features"], np.float64)
        est = fmpe.estimate(fmpe.whitening(ref_x, p.feature_shrinkage), s_id,
                            np.asarray(ctx.predictions.outputs["features"], np.float64), s_test, n_resamples=resamples,
                            confidence=ctx.confidence, seed=ctx.seed)
        ok = est["status"] == mpe.STATUS_OK
        conv = {"detector": p.detector, "temperature": p.temperature, "method": "feature", "resamples": resamples,
                "n_id": len(s_id), "reference": f"{ref.dataset.name}/{ref.dataset.split}", "confidence": ctx.confidence,
                "feature_shrinkage": p.feature_shrinkage,
                "assumption": "irreducibility in feature space: some ID mass lies apart from the OOD along the "
                              "discriminant direction", "interval": "percentile bootstrap redoing the estimate"}
        if not ok:
            conv["unidentifiable"] = est["status"]
        records = []
        for metric, key, headline, higher in (RECORDS[0], RECORDS[1]):
            ci = est[key + "_ci"] if ok and resamples > 0 else None
            records.append(MetricRecord(metric, est[key] if ok else None, ci, len(s_test), conv, headline=headline,
                                        higher_is_better=higher, unit="rate" if key != "auroc" else "score"))
        summary = mpe.summary_line(ok, est["status"], "feature", len(s_test), len(s_id), ctx.confidence, est["auroc"],
                                   est["auroc_ci"], est["pi"], est["pi_ci"])
        details = {"identifiable": ok, "reason": est["status"], "summary": summary, "method": "feature",
                   "detector": p.detector, "n_test": len(s_test), "n_id": len(s_id), "pi_raw": _finite(est["pi"]),
                   "estimate": {"auroc": _finite(est["auroc"]), "pi": _finite(est["pi"]) if ok else None},
                   "intervals": {k: [_finite(x) for x in est[k + "_ci"]] for k in ("auroc", "pi")},
                   "decomposition": fmpe.decomposition_histogram(s_id, s_test, est["ood_weight"], p.bins)}
        warnings = [] if ok else [f"no label-free estimate: {est['status']}"]
        return TaskResult(records, details, warnings)


def _finite(x) -> float | None:
    """A float for JSON: None for NaN or an infinity."""
    return float(x) if np.isfinite(x) else None
