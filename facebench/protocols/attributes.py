"""Binary facial attributes (CelebA): per-attribute accuracy at threshold 0.5 and their mean.

The model head outputs one logit per attribute (predict 1 iff logit > 0, i.e. sigmoid >= 0.5 is
rounded as Faceptor's ``round(sigmoid)``: exactly 0.5 rounds to 0, so logit 0 predicts 0). The
dataset's ``classes`` are its attribute names and its ``attributes["targets"]`` an (n, K) 0/1
array; model and dataset attributes are matched by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import regression as reg
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult
from facebench.records import Requirements


class AttributesProtocol(Protocol):
    """Binary attributes: per-attribute accuracy at threshold 0.5 and the mean over attributes (mAcc)"""

    name = "attributes"
    version = "1"

    @dataclass
    class Params:
        head: str | None = "attributes"

    def requirements(self, task=None) -> Requirements:
        return Requirements(head_name=self.params.head, labels=False, attributes=True, attribute_names=("targets",))

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        ds = ctx.dataset
        if "targets" not in ds.attributes:
            raise MetricInputError(f"attributes needs an (n, K) `targets` attribute; dataset {ds.name}/{ds.split} "
                             f"has {sorted(ds.attributes)}")
        model_names = list(ctx.head_labels)
        shared = [a for a in ds.classes if a in model_names]
        if not shared:
            raise MetricInputError(f"model attributes {model_names[:5]}... and dataset attributes {list(ds.classes)[:5]}... "
                             f"share no name")
        logits = np.asarray(ctx.predictions.outputs[ctx.head], dtype=np.float64)
        logits = logits[:, [model_names.index(a) for a in shared]]
        targets = np.asarray(ds.attributes["targets"])[:, [list(ds.classes).index(a) for a in shared]]
        per_attr = reg.binary_attribute_accuracy(targets, logits)
        correct = ((logits > 0).astype(np.int64) == targets).astype(np.float64)  # (n, K)
        n = len(targets)
        boot = {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=sample,seed={ctx.seed}",
                "confidence": ctx.confidence, "threshold": "logit > 0 (sigmoid >= 0.5 rounds up only above 0.5)"}
        ci = None
        if ctx.n_resamples > 0:
            ci = bs.percentile_interval(
                bs.bootstrap_sample_means(correct.mean(axis=1), n_resamples=ctx.n_resamples, seed=ctx.seed),
                ctx.confidence)
        records = [MetricRecord("mean_attribute_accuracy", float(per_attr.mean()), ci, n,
                                {**boot, "definition": "mean over attributes of per-attribute accuracy",
                                 "attributes": len(shared)}, headline=True,
                                higher_is_better=True, unit="fraction")]
        records += [MetricRecord(f"accuracy[{a}]", float(v), None, n, {"threshold": boot["threshold"]},
                                 higher_is_better=True, unit="fraction")
                    for a, v in zip(shared, per_attr)]
        missing = [a for a in ds.classes if a not in model_names]
        warnings = [f"dataset attributes the model lacks: {missing}"] if missing else []
        return TaskResult(records, {"attributes": shared, "per_attribute_accuracy": per_attr.tolist()}, warnings)
