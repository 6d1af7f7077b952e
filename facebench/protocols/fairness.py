"""Bias and fairness: a per-sample metric disaggregated by demographic attributes.

The per-sample value is ``accuracy`` (1 when the argmax of a classification head names the target
class, matched case-insensitively), ``mae`` (absolute error of a regression head against a numeric
target, e.g. UTKFace age) or ``age_bin_accuracy`` (a regression head's value falls inside the
target's age bin, e.g. FairFace ``20-29``). Groups are the values of one attribute or, with
several ``by`` attributes, their intersections (``Black & female``).

Reported (fairlearn ``MetricFrame`` semantics): overall; per group with CIs; min and max;
``difference[between_groups]`` = max - min, ``difference[to_overall]`` = max |m_g - overall|;
``ratio[between_groups]`` = min / max, ``ratio[to_overall]`` = min_g min(m_g / overall, overall / m_g);
the STD of the group values with ddof 0 and 1 named; for accuracy also SER = max error / min error;
for a binary target with ``positive`` set, equalised-odds TPR / FPR gaps. CIs: percentile bootstrap
**stratified by group** (every resample keeps every group's size, so no resample misses a group)
and, with ``subject`` set, resampling whole subjects within their group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import fairness as fm
from facebench.protocols._classify import percentile_ci
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice
from facebench.records import Requirements

METRICS = ("auto", "accuracy", "mae", "age_bin_accuracy")
_BIN = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$|^\s*more than\s+(\d+)\s*$")


def age_bin_bounds(label: str) -> tuple[float, float]:
    """``"20-29"`` -> (20, 29); ``"more than 70"`` -> (70, inf); a bin contains ages in [low, high + 1)."""
    m = _BIN.match(str(label))
    if not m:
        raise MetricInputError(f"{label!r} is not an age bin like '20-29' or 'more than 70'")
    if m.group(3):
        return float(m.group(3)), float("inf")
    return float(m.group(1)), float(m.group(2))


class FairnessProtocol(Protocol):
    """Bias and fairness: a per-sample metric by demographic group, with disparities (difference, ratio, STD, SER) and group-stratified CIs"""

    name = "fairness"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        target: str | None = None
        by: list | str = field(default_factory=lambda: ["race"])
        metric: str = choice("auto", METRICS)
        positive: str | None = None
        subject: str | None = None
        groups: list | None = None
        min_group_size: int = 30

    RANGES = {"min_group_size": (1, None)}

    def requirements(self, task=None) -> Requirements:
        p = self.params
        names = tuple(b for b in (p.by if isinstance(p.by, list) else [p.by]) if isinstance(b, str))
        names += tuple(a for a in (p.target, p.subject) if a)
        return Requirements(head_name=p.head, labels=p.target is None, attributes=True, attribute_names=names)

    def _values(self, ctx: EvalContext) -> tuple[np.ndarray, np.ndarray, str, list[str], dict]:
        """(per-sample values, keep mask, metric name, warnings, extra arrays for equalised odds)."""
        p, ds = self.params, ctx.dataset
        if p.target is None:
            if ds.labels is None:
                raise MetricInputError(f"{ds.name}/{ds.split} has no labels; name the ground-truth attribute with `target` "
                                 f"(attributes: {', '.join(ds.attributes) or 'none'})")
            target = ds.labels
        else:
            if p.target not in ds.attributes:
                raise ConfigError(f"{ds.name}/{ds.split} has no attribute {p.target!r} (attributes: "
                                 f"{', '.join(ds.attributes) or 'none'})")
            target = np.asarray(ds.attributes[p.target])
        out = np.asarray(ctx.predictions.outputs[ctx.head], dtype=np.float64)
        labels = tuple(ctx.head_labels)
        metric = p.metric
        regression = out.shape[1] == 1 and len(labels) == 1
        if metric == "auto":
            if not regression:
                metric = "accuracy"
            else:
                metric = "mae" if _numeric(target) else "age_bin_accuracy"
        warnings, extra = [], {}
        if metric == "accuracy":
            index = {c.lower(): i for i, c in enumerate(labels)}
            t = np.array([str(v).lower() for v in target])
            keep = np.isin(t, list(index))
            if (~keep).any():
                warnings.append(f"{int((~keep).sum())} samples whose {p.target or 'label'} is not a class of the head "
                                f"({sorted(set(t[~keep].tolist()))[:5]}) were left out")
            pred = np.array([labels[i].lower() for i in out.argmax(axis=1)])
            values = (pred == t).astype(np.float64)
            extra = {"y_true": t, "y_pred": pred}
        elif metric == "mae":
            if not _numeric(target):
                raise MetricInputError(f"metric mae needs a numeric target; {p.target or 'labels'} holds e.g. {target[:3]}")
            y = np.asarray(target, dtype=np.float64)
            keep = np.isfinite(y)
            values = np.abs(out[:, 0] - np.where(keep, y, 0.0))
        else:
            bounds = np.array([age_bin_bounds(v) for v in target])
            keep = np.ones(len(target), dtype=bool)
            age = out[:, 0]
            values = ((age >= bounds[:, 0]) & (age < bounds[:, 1] + 1)).astype(np.float64)
        return values, keep, metric, warnings, extra

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p, ds = self.params, ctx.dataset
        by = [p.by] if isinstance(p.by, str) else list(p.by)
        missing = [a for a in by if a not in ds.attributes]
        if missing:
            raise ConfigError(f"{ds.name}/{ds.split} has no attribute {missing} to group by (attributes: "
                              f"{', '.join(ds.attributes) or 'none'})")
        values, keep, metric, warnings, extra = self._values(ctx)
        groups, clusters = self._groups(ds, by, keep)
        values, groups = values[keep], groups[keep]
        extra = {k: v[keep] for k, v in extra.items()}
        if len(values) == 0:
            raise MetricInputError(f"fairness: no samples of {ds.name}/{ds.split} left to evaluate")
        d = fm.disaggregate(values, groups, min_group_size=p.min_group_size)
        for g in d["small_groups"]:
            warnings.append(f"group {g!r} has only {d['n'][g]} samples (< {p.min_group_size}): its value and CI say "
                            f"little")
        boots, disp = None, {}
        if ctx.n_resamples > 0:
            boots = fm.grouped_bootstrap(values, groups, n_resamples=ctx.n_resamples, seed=ctx.seed, clusters=clusters)
            disp = fm.bootstrap_disparities(values, groups, n_resamples=ctx.n_resamples, seed=ctx.seed,
                                            clusters=clusters)
        unit = f"subject ({p.subject}) within group" if clusters is not None else "sample within group"
        conv = {"metric": metric, "by": by, "target": p.target or "labels",
                "bootstrap": f"percentile,resamples={ctx.n_resamples},stratified=group,unit={unit},seed={ctx.seed}",
                "confidence": ctx.confidence}
        order = list(boots["groups"]) if boots is not None else sorted(d["by_group"])
        records = self._records(metric, d, boots, disp, order, conv, percentile_ci(ctx), len(values))
        if p.positive is not None and metric == "accuracy":
            eo = fm.equalized_odds(extra["y_true"], extra["y_pred"], groups, str(p.positive).lower())
            for key in ("tpr_difference", "fpr_difference", "equalized_odds_difference", "equalized_odds_ratio"):
                records.append(MetricRecord(key, eo[key], None, len(values), {**conv, "positive": p.positive},
                                            higher_is_better=key.endswith("ratio"),
                                            unit="score" if key.endswith("ratio") else "rate"))
        details = {"groups": [{"group": g, "n": d["n"][g], "value": d["by_group"][g]} for g in order],
                   "overall": d["overall"], "metric": metric, "by": by, "small_groups": d["small_groups"]}
        return TaskResult(records, details, warnings)

    def _groups(self, ds, by: list[str], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(group key of every sample, subject clusters of the kept samples or None); ``keep`` is narrowed
        in place to the listed ``groups`` when they are given."""
        p = self.params
        groups = fm.group_keys(*[np.asarray(ds.attributes[a]) for a in by])
        if p.groups is not None:
            keep &= np.isin(groups, [str(g) for g in p.groups])
        if p.subject is None:
            return groups, None
        if p.subject not in ds.attributes:
            raise ConfigError(f"{ds.name}/{ds.split} has no attribute {p.subject!r} for subject clustering")
        return groups, np.asarray(ds.attributes[p.subject])[keep]

    @staticmethod
    def _records(metric: str, d: dict, boots, disp: dict, order: list, conv: dict, ci, n: int) -> list[MetricRecord]:
        """Overall, per-group and disparity records. Accuracy-like metrics are fractions (higher is better),
        mae is in years (lower is better); differences, STDs and SER are disparities (lower is better);
        ratios are min/max (1 = parity, higher is better)."""
        base_unit, base_higher = ("years", False) if metric == "mae" else ("fraction", True)
        direction = {"min": base_higher, "max": base_higher, "difference_between_groups": False,
                     "ratio_between_groups": True, "difference_to_overall": False, "ratio_to_overall": True,
                     "std_ddof0": False, "std_ddof1": False}
        records = [MetricRecord(f"{metric}[overall]", d["overall"], ci(None if boots is None else boots["overall"]), n,
                                conv, headline=True, higher_is_better=base_higher, unit=base_unit)]
        for j, g in enumerate(order):
            records.append(MetricRecord(f"{metric}[group={g}]", d["by_group"][g],
                                        ci(None if boots is None else boots["by_group"][:, j]), d["n"][g], conv,
                                        higher_is_better=base_higher, unit=base_unit))
        for key, name, headline in (("min", f"{metric}[min]", False), ("max", f"{metric}[max]", False),
                                    ("difference_between_groups", f"{metric}_difference[between_groups]", True),
                                    ("ratio_between_groups", f"{metric}_ratio[between_groups]", True),
                                    ("difference_to_overall", f"{metric}_difference[to_overall]", False),
                                    ("ratio_to_overall", f"{metric}_ratio[to_overall]", False),
                                    ("std_ddof0", f"{metric}_std[ddof=0]", False),
                                    ("std_ddof1", f"{metric}_std[ddof=1]", False)):
            records.append(MetricRecord(name, d[key], ci(disp.get(key)) if key in disp else None, n, conv,
                                        headline=headline, higher_is_better=direction[key],
                                        unit="score" if key.startswith("ratio") else base_unit))
        if metric in ("accuracy", "age_bin_accuracy"):
            ser = fm.skewed_error_ratio(list(d["by_group"].values()))
            records.append(MetricRecord(f"{metric}_ser", ser, ci(disp.get("ser")), n,
                                        {**conv, "definition": "max group error / min group error (inf when a group "
                                                               "has no error)"}, headline=True,
                                        higher_is_better=False, unit="ratio"))
        return records


def _numeric(values) -> bool:
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True
