"""Imbalanced FER: overall vs mean class accuracy (Mine-Extra-Knowledge, NeurIPS 2023, spec §3).

* overall accuracy = #correct / N; mean class accuracy = (1/K) sum_k recall_k over the K dataset
  classes with test samples; ``gap`` = overall - mean (percentage points when x100). CIs come from
  one shared multinomial bootstrap of the confusion matrix.
* per-class recall; shot groups by **training** frequency (the ``train_split``'s labels; only
  labels are read, the model does not run on it): ``groups: terciles`` (default) splits the
  classes sorted by training count, most frequent first, into three near-equal groups
  (``np.array_split``; many / medium / few); ``groups: thresholds`` uses the long-tail convention
  many > ``many_shot_min`` >= medium >= ``few_shot_max`` > few training samples. Group accuracy =
  mean recall of the group's classes.
* imbalance ratio rho = max_k n_k / min_k n_k, on the test split and on the training split.
* optional re-sampled test sets at chosen imbalance factors rho (seeded): class r (rank by training
  frequency, 0 = most frequent) keeps n_r = floor(n_0 * rho^(-r/(K-1))) test samples drawn without
  replacement, with n_0 the largest head size every class can supply; reported as the mean over
  ``resample_repeats`` draws of overall, mean and gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import classification as cls
from facebench.protocols._classify import (accuracy_records, confusion, dropped_warning, matched_head,
                                           percentile_ci, sample_bootstrap)
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice, split_ref
from facebench.records import Requirements

GROUP_NAMES = ("many", "medium", "few")


def imbalance_ratio(counts) -> float:
    """max / min of the positive class counts (inf when a class has none)."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0] if np.any(counts > 0) else counts
    return float(counts.max() / counts.min()) if len(counts) and counts.min() > 0 else float("inf")


def shot_groups(train_counts: dict[str, int], rule: str = "terciles", many_shot_min: int = 100,
                few_shot_max: int = 20) -> dict[str, list[str]]:
    """Class names per shot group (see module docstring); ties in count keep the given class order."""
    names = sorted(train_counts, key=lambda c: -train_counts[c])
    if rule == "terciles":
        parts = np.array_split(np.arange(len(names)), 3)
        return {g: [names[i] for i in part] for g, part in zip(GROUP_NAMES, parts)}
    return {"many": [c for c in names if train_counts[c] > many_shot_min],
            "medium": [c for c in names if few_shot_max <= train_counts[c] <= many_shot_min],
            "few": [c for c in names if train_counts[c] < few_shot_max]}


def resample_profile(available, rho: float) -> np.ndarray:
    """Per-rank sample counts n_r = floor(n_0 rho^(-r/(K-1))) with the largest n_0 such that
    n_r <= available[r] for every rank r (``available`` ordered head first)."""
    available = np.asarray(available, dtype=np.float64)
    k = len(available)
    if rho < 1:
        raise MetricInputError(f"imbalance factor must be >= 1, got {rho}")
    decay = rho ** (-np.arange(k) / max(k - 1, 1))
    n0 = np.floor(np.min(available / decay) + 1e-9)
    return np.floor(n0 * decay + 1e-9).astype(np.int64)


class ImbalancedProtocol(Protocol):
    """Imbalanced FER: overall vs mean class accuracy, shot groups by training frequency, re-sampled imbalance factors"""

    name = "imbalanced"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        train_split: Any = "train"
        groups: str = choice("terciles", ("terciles", "thresholds"))
        many_shot_min: int = 100
        few_shot_max: int = 20
        imbalance_factors: list = field(default_factory=list)
        resample_repeats: int = 10
        unsupported_classes: str = choice("drop", ("drop", "error"))
        extra_model_classes: str = choice("restrict", ("restrict", "keep"))

    RANGES = {"many_shot_min": (0, None), "few_shot_max": (0, None), "resample_repeats": (1, None)}
    ROLE_NEEDS = {"train": {"labels"}}  # the training split's class frequencies

    def __init__(self, **params):
        super().__init__(**params)
        bad = [f for f in self.params.imbalance_factors
               if isinstance(f, bool) or not isinstance(f, (int, float)) or not f >= 1]
        if bad:
            raise ConfigError(f"Protocol 'imbalanced': imbalance_factors must be numbers >= 1 (max / min class "
                              f"count of a re-sampled test set); got {bad}.")

    def requirements(self, task=None) -> Requirements:
        return Requirements(head_name=self.params.head, fit_split=self.params.train_split is not None)

    def requires(self, task) -> dict:
        if self.params.train_split is None:
            return {}
        return {"train": split_ref(self.params.train_split, f"task {task.name!r}: train_split", task,
                                   predictions=False)}

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p, ds = self.params, ctx.dataset
        m = matched_head(ctx, self.name, p.unsupported_classes, p.extra_model_classes)
        warnings = dropped_warning(m)
        y_true, y_pred = m.y_true, m.y_pred
        evaluated = [m.label_space[i] for i in m.eval_classes]
        cm, cms = confusion(y_true, y_pred, len(m.label_space), ctx)
        ci = percentile_ci(ctx)
        conv = {"unsupported_classes": p.unsupported_classes, "extra_model_classes": p.extra_model_classes,
                **sample_bootstrap(ctx)}
        records = accuracy_records(cm, cms, m, conv, ci)
        boot_gap = None if cms is None else \
            cls.accuracy_from_cm(cms) - cls.mean_class_accuracy_from_cm(cms, m.eval_classes)
        records.append(MetricRecord("gap[accuracy-mean_class_accuracy]", records[0].value - records[1].value,
                                    ci(boot_gap), len(y_true), conv, headline=True,
                                    higher_is_better=False, unit="fraction"))
        recall = cls.per_class_recall_from_cm(cm)
        boot_recall = None if cms is None else cls.per_class_recall_from_cm(cms)
        test_counts = {c: int(cm[m.label_space.index(c)].sum()) for c in evaluated}
        records += self._recall_records(recall, boot_recall, m, test_counts, conv, ci)
        train_counts, source, train_records = self._train_counts(ctx, evaluated, test_counts, warnings)
        records += train_records
        groups = shot_groups(train_counts, p.groups, p.many_shot_min, p.few_shot_max)
        records += self._group_records(groups, recall, boot_recall, m, test_counts,
                                       {**conv, "frequency_source": source}, ci)
        resampled = self._resample(y_true, y_pred, m, evaluated, train_counts, ctx.seed)
        records += self._resampled_records(resampled, ctx)
        details = {
            "label_space": m.label_space,
            "confusion_matrix": cm.tolist(),
            "per_class": [{"class": c, "test_count": test_counts[c], "train_count": train_counts.get(c),
                           "recall": float(recall[m.label_space.index(c)]),
                           "group": next(g for g in GROUP_NAMES if c in groups[g])} for c in evaluated],
            "groups": groups,
            "frequency_source": source,
            "resampled": resampled,
        }
        samples = {"ids": ds.ids[m.keep], "y_true": y_true, "y_pred": y_pred}
        return TaskResult(records, details, warnings, samples)

    @staticmethod
    def _recall_records(recall, boot_recall, m, test_counts: dict, conv: dict, ci) -> list[MetricRecord]:
        """Recall of each evaluated class, then the test split's imbalance ratio."""
        records = []
        for c, count in test_counts.items():
            i = m.label_space.index(c)
            records.append(MetricRecord(f"recall[{c}]", float(recall[i]),
                                        ci(None if boot_recall is None else boot_recall[:, i]), count, conv,
                                        higher_is_better=True, unit="fraction"))
        records.append(MetricRecord("imbalance_ratio[test]", imbalance_ratio(list(test_counts.values())), None,
                                    len(m.y_true), {"definition": "max_k n_k / min_k n_k over evaluated classes"},
                                    higher_is_better=False, unit="ratio"))
        return records

    @staticmethod
    def _train_counts(ctx: EvalContext, evaluated: list, test_counts: dict, warnings: list):
        """(class counts that order the classes by frequency, where they come from, the training imbalance
        record): the ``train`` split's labels, else the test counts (with a warning)."""
        train = ctx.extras.get("train")
        if train is None or train.dataset.labels is None:
            warnings.append("no training split: shot groups and resampling order use test-set frequencies")
            ds = ctx.dataset
            return dict(test_counts), f"{ds.name}/{ds.split} (test counts: no train_split)", []
        labels = train.dataset.labels
        train_counts = {c: int(np.sum(labels == c)) for c in evaluated}
        source = f"{train.dataset.name}/{train.dataset.split}"
        record = MetricRecord("imbalance_ratio[train]", imbalance_ratio(list(train_counts.values())), None,
                              len(labels), {"definition": "max_k n_k / min_k n_k", "split": source},
                              higher_is_better=False, unit="ratio")
        return train_counts, source, [record]

    def _group_records(self, groups: dict, recall, boot_recall, m, test_counts: dict, conv: dict,
                       ci) -> list[MetricRecord]:
        """Mean recall of each non-empty shot group (many, medium, few)."""
        p = self.params
        group_conv = {**conv, "rule": "terciles of classes sorted by training count" if p.groups == "terciles" else
                      f"many > {p.many_shot_min} >= medium >= {p.few_shot_max} > few (training samples)"}
        records = []
        for g in GROUP_NAMES:
            members = [m.label_space.index(c) for c in groups[g]]
            if not members:
                continue
            boot = None if boot_recall is None else np.nanmean(boot_recall[:, members], axis=1)
            records.append(MetricRecord(f"group_accuracy[{g}]", float(np.mean(recall[members])), ci(boot),
                                        int(sum(test_counts[c] for c in groups[g])),
                                        {**group_conv, "classes": groups[g], "definition": "mean recall of the group"},
                                        higher_is_better=True, unit="fraction"))
        return records

    def _resampled_records(self, resampled: list[dict], ctx: EvalContext) -> list[MetricRecord]:
        """accuracy, mean class accuracy and their gap of the re-sampled test sets, per imbalance factor."""
        records = []
        for row in resampled:
            tag = f"rho={row['factor']:g}"
            rconv = {"profile": "n_r = floor(n_0 rho^(-r/(K-1))), r = rank by training frequency",
                     "repeats": self.params.resample_repeats, "seed": ctx.seed, "std_over_repeats": row["std"]}
            records.append(MetricRecord(f"accuracy[{tag}]", row["accuracy"], None, row["n"], rconv,
                                        higher_is_better=True, unit="fraction"))
            records.append(MetricRecord(f"mean_class_accuracy[{tag}]", row["mean_class_accuracy"], None, row["n"],
                                        rconv, higher_is_better=True, unit="fraction"))
            records.append(MetricRecord(f"gap[{tag}]", row["gap"], None, row["n"], rconv,
                                        higher_is_better=False, unit="fraction"))
        return records

    def _resample(self, y_true, y_pred, m, evaluated, train_counts, seed) -> list[dict]:
        p = self.params
        if not p.imbalance_factors:
            return []
        order = sorted(evaluated, key=lambda c: -train_counts[c])  # head first
        idx = [np.flatnonzero(y_true == m.label_space.index(c)) for c in order]
        rng = np.random.default_rng(seed)
        out = []
        for factor in p.imbalance_factors:
            counts = resample_profile([len(i) for i in idx], float(factor))
            accs, means = [], []
            for _ in range(max(1, int(p.resample_repeats))):
                chosen = np.concatenate([rng.choice(i, size=c, replace=False) for i, c in zip(idx, counts)])
                cm = cls.confusion_matrix(y_true[chosen], y_pred[chosen], len(m.label_space))
                accs.append(float(cls.accuracy_from_cm(cm)))
                means.append(float(cls.mean_class_accuracy_from_cm(cm, m.eval_classes)))
            gaps = np.array(accs) - np.array(means)
            out.append({"factor": float(factor), "n": int(counts.sum()),
                        "counts": dict(zip(order, counts.tolist())),
                        "accuracy": float(np.mean(accs)), "mean_class_accuracy": float(np.mean(means)),
                        "gap": float(np.mean(gaps)), "std": {"accuracy": float(np.std(accs)),
                                                            "mean_class_accuracy": float(np.std(means))}})
        return out
