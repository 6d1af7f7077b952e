"""Age estimation: MAE, CS@t and (when the dataset has per-image annotation spreads) the ChaLearn
LAP 2015 epsilon-error, from a regression head that outputs the expected age per image.

The dataset gives per-sample ``age`` (and optionally ``age_std``) attributes. Faceptor's own
fixed-sigma variant of the epsilon-error is available with ``fixed_sigma`` (its evaluator uses 3.0);
it is a different number from the LAP metric and is keyed separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import regression as reg
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult
from facebench.records import Requirements


class AgeEstimationProtocol(Protocol):
    """Age estimation: MAE, cumulative score CS@5 and the LAP 2015 epsilon-error, with bootstrap CIs"""

    name = "age_estimation"
    version = "1"

    @dataclass
    class Params:
        head: str | None = "age"
        cs_threshold: float = 5.0
        fixed_sigma: float | None = None

    RANGES = {"cs_threshold": (0, None), "fixed_sigma": (1e-12, None)}

    def requirements(self, task=None) -> Requirements:
        return Requirements(head_name=self.params.head, labels=False, attributes=True, attribute_names=("age",))

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        ds = ctx.dataset
        if "age" not in ds.attributes:
            raise MetricInputError(f"age_estimation needs an `age` attribute; dataset {ds.name}/{ds.split} has "
                             f"{sorted(ds.attributes)}")
        pred = np.asarray(ctx.predictions.outputs[ctx.head], dtype=np.float64)
        if pred.ndim == 2:
            if pred.shape[1] != 1:
                raise MetricInputError(f"head {ctx.head!r} must output one value (the expected age) per image, "
                                 f"got shape {pred.shape}")
            pred = pred[:, 0]
        true = ds.attributes["age"].astype(np.float64)
        errors = reg.absolute_errors(true, pred)
        boot = {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=sample,seed={ctx.seed}",
                "confidence": ctx.confidence}

        def mean_ci(values):
            if ctx.n_resamples <= 0:
                return None
            return bs.percentile_interval(bs.bootstrap_sample_means(values, n_resamples=ctx.n_resamples,
                                                                   seed=ctx.seed), ctx.confidence)

        n = len(errors)
        within = (errors <= self.params.cs_threshold).astype(np.float64)
        records = [
            MetricRecord("mae", float(errors.mean()), mean_ci(errors), n,
                         {**boot, "definition": "mean |pred - true| (years)"}, headline=True,
                         higher_is_better=False, unit="years"),
            MetricRecord(f"cs@{self.params.cs_threshold:g}", float(within.mean()), mean_ci(within), n,
                         {**boot, "definition": f"fraction with |pred - true| <= {self.params.cs_threshold:g}"},
                         headline=True, higher_is_better=True, unit="fraction"),
        ]
        if "age_std" in ds.attributes:
            eps = reg.per_sample_epsilon(pred, true, ds.attributes["age_std"].astype(np.float64))
            records.append(MetricRecord("epsilon_error[sigma=per-image]", float(eps.mean()), mean_ci(eps), n,
                                        {**boot, "definition": "1 - mean exp(-(pred-mu)^2/(2 sigma_i^2)), LAP 2015"},
                                        headline=True, higher_is_better=False, unit="score"))
        if self.params.fixed_sigma:
            eps = reg.per_sample_epsilon(pred, true, np.full(n, float(self.params.fixed_sigma)))
            records.append(MetricRecord(f"epsilon_error[sigma={self.params.fixed_sigma:g}]", float(eps.mean()),
                                        mean_ci(eps), n, {**boot, "definition": "fixed-sigma variant (Faceptor)"},
                                        higher_is_better=False, unit="score"))
        details = {"mean_true_age": float(true.mean()), "mean_predicted_age": float(pred.mean())}
        return TaskResult(records, details)
