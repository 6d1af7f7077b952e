"""Corruption robustness (ImageNet-C style, spec ``robustness.md`` 1.4-1.5) for any face task.

Each (corruption, severity) variant of the task's split is an extra split (role ``corrupt:<name>@<s>``) made by
the ``imagenet_c.<name>`` transform (``data.transforms``: ``data.corruptions.corrupt`` after the loader's face
crop and before the model's resize, seed ``variant_seed(seed, sample index, name, s)``, constant ``table`` named
or ``auto`` = by the image's short side), so each variant is predicted once into the store and re-scoring needs
no model. The ``inner`` protocol scores the clean split and every variant with its own code:

* ``closed_set``: accuracy, error E = 1 - accuracy;
* ``verification`` (no flip-sum): 10-fold accuracy (insightface convention, thresholds re-fitted on the
  variant's training folds), E = 1 - that; plus the accuracy at the clean pairs' per-fold thresholds
  (``accuracy_at_clean_threshold``: thresholds fitted on corrupted data hide degradation, spec 1.5);
* ``landmarks``: NME (its headline normaliser) is the error.

Records: the metric per corruption x severity (``<m>[<c>@<s>]``, with the inner protocol's CI over samples
when ``variant_cis``, the default, and the inner protocol gives one: accuracy and NME do, 10-fold accuracy
does not), per corruption mean (``<m>[<c>]``), clean (``<m>[clean]`` with the inner protocol's CI, and
``error[clean]``), ``u-mce`` = 100 * mean_c mean_s E (%, no
reference: ``metrics.robustness.unnormalized_mce`` when all five severities are evaluated; over the severities
evaluated otherwise, marked so). With ``reference`` = a reference model's corruption run (its results.json;
``reference_task`` names the task when the run has several), ``mce[ref]`` and ``relative_mce[ref]`` against
that named run (``metrics.robustness``; all five severities needed on both sides; corruptions the reference
lacks or whose relative denominator is <= 0 are excluded with the reason). Without a reference, CE is not
reported and the details say why: no AlexNet table is ever implied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facebench.data.corruptions import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, REGISTRY, SEVERITIES, TABLES
from facebench.data.transforms import AUTO_TABLE, IMAGENET_C_PREFIX, imagenet_c_table
from facebench.errors import ConfigError
from facebench.metrics import robustness as rb
from facebench.protocols import _variants as var
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice
from facebench.records import Requirements

ROLE_PREFIX = "corrupt:"
TABLE_PROBES = 16  #: images whose short side is read to record the table an ``auto`` run used


def role(corruption: str, severity: int) -> str:
    return f"{ROLE_PREFIX}{corruption}@{severity}"


class CorruptionProtocol(Protocol):
    """ImageNet-C corruption robustness: an inner protocol's metric per corruption x severity, u-mCE, CE / relative mCE against a named reference run"""

    name = "corruption"
    version = "1"

    @dataclass
    class Params:
        corruptions: list = field(default_factory=lambda: list(BENCHMARK_CORRUPTIONS))
        severities: list = field(default_factory=lambda: list(SEVERITIES))
        seed: int = 0
        table: str = choice(AUTO_TABLE, (AUTO_TABLE, *TABLES))
        inner: str = choice("closed_set", var.INNERS)
        inner_params: dict = field(default_factory=dict)
        reference: str | None = None
        reference_task: str | None = None
        variant_cis: bool = True

    RANGES = {"seed": (0, None)}

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        _check_list("corruptions", p.corruptions, ALL_CORRUPTIONS)
        _check_list("severities", p.severities, SEVERITIES)
        self.inner = var.make_inner(p.inner, p.inner_params, self.name)
        self.reference = load_reference(p.reference, p.reference_task, p.inner) if p.reference else None

    def requirements(self, task=None) -> Requirements:
        return self.inner.requirements(task)

    def split_needs(self, role_name: str) -> frozenset:
        return self.inner.requirements().capabilities() if role_name.startswith(ROLE_PREFIX) else frozenset()

    def requires(self, task) -> dict:
        p, features = self.params, self.inner.requirements(task).features
        return {role(c, s): var.variant_ref(task, {"name": IMAGENET_C_PREFIX + c, "severity": int(s),
                                                   "seed": p.seed, "table": p.table}, features)
                for c in p.corruptions for s in p.severities}

    def fingerprint(self) -> str:
        """Name, version, parameters and the reference file's bytes (its errors enter the results)."""
        digest = self.reference["digest"] if self.reference else None
        from facebench.fingerprint import hash_object

        return hash_object({"base": super().fingerprint(), "reference": digest})

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        clean = self.inner.evaluate(ctx)
        metric, clean_value = var.headline_value(clean, p.inner)
        table = self._score_variants(ctx, clean)
        key, lower_better = _short_metric(p.inner), var.INNER_METRIC[p.inner][1]
        errors = {c: [_error(table[c, s]["value"], lower_better) for s in p.severities] for c in p.corruptions}
        clean_error = _error(clean_value, lower_better)
        conv = {"inner": p.inner, "inner_metric": metric, "seed": p.seed, "severities": list(p.severities),
                "error": "NME" if lower_better else "1 - " + metric}
        records = _variant_records(key, table, p.corruptions, p.severities, conv, lower_better, len(ctx.dataset))
        records += _clean_records(key, clean, metric, clean_value, clean_error, conv, lower_better)
        summary, warnings = self._summaries(errors, clean_error, conv)
        records += summary["records"]
        details = {"inner": p.inner, "metric": key, "inner_metric": metric, "higher_is_better": not lower_better,
                   "corruptions": list(p.corruptions), "severities": list(p.severities), "seed": p.seed,
                   "table": table_record(ctx.dataset, p.table), "clean_value": clean_value,
                   "clean_error": clean_error, "errors": errors,
                   "rows": [{"corruption": c, "severity": s, **table[c, s]} for c in p.corruptions
                            for s in p.severities],
                   "curves": {c: {"x": [0, *p.severities], "y": [clean_value, *[table[c, s]["value"]
                                                                                for s in p.severities]]}
                              for c in p.corruptions},
                   "implementation": {c: {"exact": REGISTRY[c].exact, "note": REGISTRY[c].note}
                                      for c in p.corruptions},
                   "clean": {"details": clean.details}, **summary["details"]}
        if len(set(details["table"]["observed"].values())) > 1:
            warnings.append(f"images of different sizes used different corruption tables "
                            f"({details['table']['observed']}); fix `table` to use one")
        return TaskResult(records, details, clean.warnings + warnings, clean.samples)

    def _score_variants(self, ctx: EvalContext, clean) -> dict:
        """{(corruption, severity): {"value", "ci", ["accuracy_at_clean_threshold"]}} from the inner protocol (its
        CI with the task's bootstrap when ``variant_cis``)."""
        p, out = self.params, {}
        fixed = _CleanThresholds(ctx) if p.inner == "verification" else None
        cis = p.variant_cis and p.inner != "verification"  # 10-fold accuracy has no CI: no bootstrap to waste
        for c in p.corruptions:
            for s in p.severities:
                vctx = var.inner_context(ctx, ctx.extras[role(c, s)], bootstrap=cis)
                rec = var.headline_record(self.inner.evaluate(vctx), p.inner)
                out[c, s] = {"value": float(rec.value), "ci": None if rec.ci is None else list(rec.ci)}
                if var.no_face_count(vctx.predictions) is not None:
                    out[c, s]["no_face_images"] = var.no_face_count(vctx.predictions)
                if fixed is not None:
                    out[c, s]["accuracy_at_clean_threshold"] = fixed.accuracy(vctx)
        return out

    def _summaries(self, errors: dict, clean_error: float, conv: dict) -> tuple[dict, list]:
        """u-mCE (and, with a reference, mCE and relative mCE) records and details."""
        p = self.params
        full = sorted(p.severities) == list(SEVERITIES)
        per_sev = {c: [errors[c][p.severities.index(s)] for s in sorted(p.severities)] for c in p.corruptions}
        if full:
            u = rb.unnormalized_mce(per_sev, unit="fraction", corruptions=p.corruptions)
        else:
            u = 100.0 * float(np.mean([np.mean(v) for v in per_sev.values()]))
        uconv = {**conv, "definition": "100 * mean over corruptions of the mean error over severities",
                 "corruptions": list(p.corruptions),
                 **({} if full else {"note": "over the severities evaluated only: not the 5-severity u-mCE"})}
        records = [MetricRecord("u-mce", u, None, None, uconv, headline=True, higher_is_better=False, unit="percent")]
        details = {"u_mce": u}
        if self.reference is None:
            details["reference"] = {"used": None, "reason": "CE and relative mCE need a reference model's corruption "
                                    "run (params.reference: its results.json); none was given"}
            return {"records": records, "details": details}, []
        ref_records, details["reference"], warnings = reference_records(per_sev, clean_error, self.reference, full,
                                                                        conv)
        return {"records": records + ref_records, "details": details}, warnings


class _CleanThresholds:
    """Verification at the clean pairs' per-fold insightface thresholds (each fitted on the other clean folds)."""

    def __init__(self, ctx: EvalContext):
        a, b, self.same, self.folds = var.pair_arrays(ctx.dataset)
        emb = var.embeddings(ctx)
        self.thresholds = var.clean_fold_thresholds(_sq_l2(emb[a], emb[b]), self.same, self.folds)

    def accuracy(self, vctx: EvalContext) -> float:
        a, b, _, _ = var.pair_arrays(vctx.dataset)
        emb = var.embeddings(vctx)
        return var.accuracy_at_thresholds(_sq_l2(emb[a], emb[b]), self.same, self.folds, self.thresholds)


def _sq_l2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum((x - y) ** 2, axis=1)


def _check_list(key: str, values, allowed) -> None:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"Protocol 'corruption': {key} must be a non-empty list; got {values!r}.")
    bad = [v for v in values if isinstance(v, bool) or v not in allowed]
    if bad:
        raise ConfigError(f"Protocol 'corruption': {key} has {bad[0]!r}; choose from {', '.join(map(str, allowed))}.")
    if len(set(values)) != len(values):
        raise ConfigError(f"Protocol 'corruption': {key} lists a value twice: {values!r}.")


def _short_metric(inner: str) -> str:
    return {"closed_set": "accuracy", "verification": "verification_accuracy", "landmarks": "nme"}[inner]


def _error(value: float, lower_better: bool) -> float:
    return float(value) if lower_better else 1.0 - float(value)


def _variant_records(key, table, corruptions, severities, conv, lower_better, n) -> list:
    unit = "score" if lower_better else "fraction"
    records = []
    for c in corruptions:
        values = [table[c, s]["value"] for s in severities]
        for s, v in zip(severities, values):
            ci = table[c, s].get("ci")
            records.append(MetricRecord(f"{key}[{c}@{s}]", v, None if ci is None else tuple(ci), n,
                                        {**conv, "corruption": c, "severity": s},
                                        higher_is_better=not lower_better, unit=unit))
            fixed = table[c, s].get("accuracy_at_clean_threshold")
            if fixed is not None:
                records.append(MetricRecord(f"accuracy_at_clean_threshold[{c}@{s}]", fixed, None, n,
                                            {**conv, "corruption": c, "severity": s, "thresholds": "per fold, "
                                             "fitted on the other clean folds (insightface squared L2)"},
                                            higher_is_better=True, unit="fraction"))
        records.append(MetricRecord(f"{key}[{c}]", float(np.mean(values)), None, n,
                                    {**conv, "corruption": c, "definition": "mean over severities"},
                                    higher_is_better=not lower_better, unit=unit))
    return records


def _clean_records(key, clean, metric, value, error, conv, lower_better) -> list:
    rec = next(r for r in clean.records if r.metric == metric)
    return [MetricRecord(f"{key}[clean]", value, rec.ci, rec.n, {**conv, **rec.conventions}, headline=True,
                         higher_is_better=not lower_better, unit=rec.unit),
            MetricRecord("error[clean]", error, None, rec.n, {**conv, "definition": conv["error"] + " on clean"},
                         higher_is_better=False, unit="score" if lower_better else "fraction")]


def table_record(dataset, table: str) -> dict:
    """The constant table asked for and, for up to ``TABLE_PROBES`` evenly spaced images, the one used by size."""
    n = len(dataset)
    idx = sorted(set(np.linspace(0, n - 1, min(n, TABLE_PROBES)).round().astype(int).tolist())) if n else []
    observed = {}
    for i in idx:
        shape = np.shape(dataset.images.load(i))
        observed[f"{shape[0]}x{shape[1]}"] = imagenet_c_table(table, shape)
    rule = "by short side: >= 96 px imagenet-c-224, 48-95 tiny-imagenet-c-64, 32-47 cifar-10-c-32"
    return {"requested": table, "rule": rule if table == AUTO_TABLE else "fixed", "observed": observed,
            "probed_images": len(idx)}


# -- the reference run ------------------------------------------------------------------------------------------
def load_reference(path: str, task_name: str | None, inner: str) -> dict:
    """A reference model's corruption errors from its run's results.json: {"name", "errors", "clean_error",
    "severities", "digest"}; ConfigError when the file or a matching corruption task is absent."""
    file = Path(path)
    if file.is_dir():
        file = file / "results.json"
    try:
        raw = file.read_bytes()
        doc = json.loads(raw)
    except (OSError, ValueError) as err:
        raise ConfigError(f"Protocol 'corruption': reference {path!r} is not a readable results.json ({err}); "
                          "give the results.json (or run folder) of the reference model's corruption run.") from None
    tasks = [t for t in doc.get("tasks", []) if isinstance(t, dict) and t.get("protocol") == "corruption"]
    rows = [t for t in tasks if t.get("status") == "ok" and (task_name is None or t.get("name") == task_name)]
    if len(rows) != 1:
        names = [t.get("name") for t in tasks]
        raise ConfigError(f"Protocol 'corruption': reference {str(file)!r} has {len(rows)} evaluated corruption "
                          f"tasks matching (corruption tasks: {names}); name one with reference_task.")
    details = rows[0]["details"]
    if details.get("inner") != inner:
        raise ConfigError(f"Protocol 'corruption': the reference task scored {details.get('inner')!r}, this task "
                          f"{inner!r}; CE compares the same error only.")
    model = doc.get("model") or {}
    name = f"{model.get('name', 'model?')} ({file}, task {rows[0].get('name')})"
    return {"name": name, "errors": details["errors"], "clean_error": details["clean_error"],
            "severities": details["severities"], "digest": hashlib.blake2b(raw, digest_size=16).hexdigest()}


def reference_records(per_sev: dict, clean_error: float, ref: dict, full: bool, conv: dict) -> tuple[list, dict, list]:
    """mCE and relative mCE against ``ref`` over the corruptions both runs evaluated at all five severities."""
    ref_full = sorted(ref["severities"]) == list(SEVERITIES)
    if not (full and ref_full):
        reason = "CE needs all five severities in this run and in the reference run"
        return [], {"used": ref["name"], "reason": reason}, [f"reference {ref['name']}: {reason}"]
    order = list(ref["severities"])
    excluded = {c: "the reference run has no errors for it" for c in per_sev if c not in ref["errors"]}
    kept = [c for c in per_sev if c not in excluded]
    if not kept:
        return [], {"used": ref["name"], "excluded": excluded}, [f"reference {ref['name']}: no corruption in common"]
    reference = rb.reference_errors(ref["name"], {c: [ref["errors"][c][order.index(s)] for s in SEVERITIES]
                                                  for c in kept}, unit="fraction", clean_error=ref["clean_error"])
    ce = rb.corruption_errors(per_sev, reference, unit="fraction", corruptions=kept)
    rel = rb.relative_mce(per_sev, clean_error, reference, unit="fraction", corruptions=kept)
    excluded_rel = {**excluded, **rel.excluded}
    rconv = {**conv, "reference": ref["name"], "corruptions": kept, "excluded": excluded}
    records = [MetricRecord("mce[ref]", 100.0 * float(np.mean(list(ce.values()))), None, None,
                            {**rconv, "definition": "100 * mean_c sum_s E / sum_s E_ref"}, headline=True,
                            higher_is_better=False, unit="percent"),
               MetricRecord("relative_mce[ref]", rel.value, None, None,
                            {**rconv, "excluded": excluded_rel,
                             "definition": "100 * mean_c sum_s (E - E_clean) / sum_s (E_ref - E_ref_clean)"},
                            headline=True, higher_is_better=False, unit="percent")]
    records += [MetricRecord(f"ce[ref,{c}]", v, None, None, rconv, higher_is_better=False, unit="ratio")
                for c, v in ce.items()]
    details = {"used": ref["name"], "errors": {c: ref["errors"][c] for c in kept}, "clean_error": ref["clean_error"],
               "ce": ce, "relative_ce": rel.per_corruption, "excluded": excluded_rel}
    warnings = [f"corruption {c} left out of the reference comparison: {why}" for c, why in excluded_rel.items()]
    return records, details, warnings
