"""Cross-domain FER (Generalizable-FER / CAFE, ECCV 2024, spec §5.1): one model, no adaptation,
evaluated on its source test split and on several target datasets.

Each target's classes are mapped onto the model's label space by canonical class name (classes
missing on either side are listed per column; samples of classes the model cannot predict follow
``unsupported_classes``; model classes a target lacks follow ``extra_model_classes``). Metric per
column: overall top-1 accuracy (``metric: mean_class_accuracy`` for the class-mean), with a
per-column bootstrap CI. **Mean = arithmetic mean over all columns, source column included**, as
the published tables compute it; its CI resamples every column independently. With
``missing_data: skip`` a target whose data is absent is left out (the Mean then covers fewer
columns: its ``columns`` convention lists them), not the whole task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import classification as cls
from facebench.protocols._labels import match_labels
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice, split_ref


class CrossDomainProtocol(Protocol):
    """Cross-domain FER: one model on its source test split and several target datasets, with the Mean over columns"""

    name = "cross_domain"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        targets: list = field(default_factory=list)
        metric: str = choice("accuracy", ("accuracy", "mean_class_accuracy"))
        source_name: str | None = None
        unsupported_classes: str = choice("drop", ("drop", "error"))
        extra_model_classes: str = choice("restrict", ("restrict", "keep"))

    ROLE_NEEDS = {"target": {"labels"}}

    def _columns(self, task) -> list[tuple[str, object]]:
        if not isinstance(self.params.targets, list) or not self.params.targets:
            raise ConfigError(f"task {task.name!r}: cross_domain needs `targets`, a list of "
                              f"{{dataset, split[, name, path, dataset_args]}}.")
        columns, seen = [], {self.params.source_name or task.dataset}
        for i, target in enumerate(self.params.targets):
            ref = split_ref(target, f"task {task.name!r}: targets[{i}]", None, optional=True)
            name = str(target.get("name") or ref.dataset)
            if name in seen:
                raise ConfigError(f"task {task.name!r}: column name {name!r} is used twice; give targets a `name`.")
            seen.add(name)
            columns.append((name, ref))
        return columns

    def requires(self, task) -> dict:
        return {f"target:{name}": ref for name, ref in self._columns(task)}

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        splits = [(p.source_name or ctx.dataset.name, ctx.dataset, ctx.predictions)]
        for role, extra in ctx.extras.items():
            if role.startswith("target:"):
                splits.append((role[len("target:"):], extra.dataset, extra.predictions))
        conv = {"metric": p.metric, "mapping": "by canonical class name",
                "unsupported_classes": p.unsupported_classes, "extra_model_classes": p.extra_model_classes,
                "bootstrap": f"percentile,resamples={ctx.n_resamples},unit=sample,seed={ctx.seed}",
                "confidence": ctx.confidence}
        records, columns, warnings, boots = [], [], [], []
        for j, (name, ds, preds) in enumerate(splits):
            if ds.labels is None:
                raise MetricInputError(f"cross_domain column {name!r} ({ds.name}/{ds.split}) has no labels")
            m = match_labels(preds.outputs[ctx.head], ds.labels, ds.classes, ctx.head_labels,
                             p.unsupported_classes, p.extra_model_classes, f"{ds.name}/{ds.split}")
            k = len(m.label_space)
            cm = cls.confusion_matrix(m.y_true, m.y_pred, k)
            fn = cls.accuracy_from_cm if p.metric == "accuracy" else (
                lambda c, e=m.eval_classes: cls.mean_class_accuracy_from_cm(c, e))
            value = float(fn(cm))
            boot = None
            if ctx.n_resamples > 0:
                cms = bs.bootstrap_confusion_matrices(m.y_true, m.y_pred, k, n_resamples=ctx.n_resamples,
                                                      seed=ctx.seed + j)
                boot = fn(cms)
            boots.append(boot)
            role = "source" if j == 0 else "target"
            records.append(MetricRecord(f"{p.metric}[{role}={name}]", value,
                                        None if boot is None else bs.percentile_interval(boot, ctx.confidence),
                                        len(m.y_true), {**conv, "dataset": f"{ds.name}/{ds.split}"}, headline=True,
                                        higher_is_better=True, unit="fraction"))
            missing_in_model = [c for c in ds.classes if c not in ctx.head_labels]
            missing_in_data = [c for c in ctx.head_labels if c not in ds.classes]
            if m.dropped:
                warnings.append(f"{name}: {m.dropped} samples of classes the model cannot predict "
                                f"({m.unsupported}) were dropped")
            columns.append({"column": name, "role": role, "dataset": ds.name, "split": ds.split, "value": value,
                            "n": int(len(m.y_true)), "dropped": m.dropped,
                            "classes_missing_in_model": missing_in_model,
                            "model_classes_missing_in_dataset": missing_in_data,
                            "classes_without_samples": m.empty})
        mean = float(np.mean([c["value"] for c in columns]))
        mean_ci = None
        if all(b is not None for b in boots):
            mean_ci = bs.percentile_interval(np.mean(np.stack(boots), axis=0), ctx.confidence)
        records.append(MetricRecord(f"{p.metric}[mean]", mean, mean_ci, sum(c["n"] for c in columns),
                                    {**conv, "definition": "arithmetic mean over columns, source included",
                                     "columns": [c["column"] for c in columns]}, headline=True,
                                    higher_is_better=True, unit="fraction"))
        details = {"columns": columns, "mean": mean, "metric": p.metric}
        return TaskResult(records, details, warnings)
