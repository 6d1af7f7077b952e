"""Label-free evaluation (Gscore-style): can a detector's performance, or a model's accuracy, be read
off unlabelled data? Judged on a meta-benchmark of many test sets whose truth is known.

**Meta-benchmark** (seeded; every set is described in the task details). In-distribution = the
task's split. OOD sources (``ood_sources``: other face datasets, corrupted copies of the task's
data through ``transform``, non-faces, noise, synthetic faces) and, with ``class_families``, each
expression class of the task split held out as "unknown" against the others (near-OOD, AUROC near
0.5 for a model that knows the class). For each source, ``sets_per_source`` unlabelled mixtures of
sizes ``sizes`` and OOD fractions ``ood_fractions``; the truth of a set is the AUROC of the
detector score computed with the hidden ID/OOD labels, for each of the ``detectors`` (logit scores
``msp``, ``max_logit``, ``energy``, ``entropy``, or ``mahalanobis`` / ``knn`` fitted on the stored
features of ``fit_split``; higher = in-distribution), as Gbench varies the detection method.

**Indicators of AUROC** (from the set's scores only; ``facebench.metrics.label_free``): the AUROC
implied by a two-component 1-D Gaussian mixture (``gmm_auroc``, also used directly), Ashman's D, the
bimodality coefficient, the mixture overlap, and the trivial baselines mean score and score spread;
plus learned maps from the score-distribution feature vector (``linear``, and ``mlp``, a small
neural network, as the Gscore journal abstract describes). These are Gscore-*style*: the paper's
exact formulas are not published.

**Accuracy estimators** (with ``fit_split``, a labelled source split): temperature scaling fitted
on it (recorded), then AC, DoC, ATC-MC, ATC-NE and COT used directly, and the nuclear-norm score
through a learned linear map; their test sets are subsamples of the task split and of the labelled
``shifts`` (e.g. corruptions), with the true accuracy as the target.

**Mixture-proportion estimation** (with ``fit_split`` and ``mpe: true``, the default; ``facebench.metrics.mpe``):
each set is an unlabelled mixture of the ID reference (the detector's scores on ``fit_split``; feature detectors
are cross-fitted there, ``mpe_folds`` folds, so the reference scores are out-of-sample as the test sets' are) and
an unknown OOD part. ``mpe_<method>`` (``mpe_methods``: bbe, scott, tail, bbe_any) estimate the OOD fraction and the AUROC
directly, with bootstrap intervals (``mpe_resamples``) or the "unidentifiable" diagnosis; beside them the shift
indicators (``shift_<name>``: KS, Wasserstein, energy, fraction below the ID TPR-95 threshold, mixture AUROC,
their mean) through leave-one-family-out linear maps; with ``combined: true`` also ``combined`` / ``forest``, a
random forest over every one of these features at once (:func:`combined_features`), leave-one-family-out;
with ``feature_mpe: true``, ``mpe_feature`` (direct): the mixture taken apart in the model's feature space
(``facebench.metrics.feature_mpe``: a cross-fitted discriminant direction between the set and the ``fit_split``'s
features, whitened with ``feature_shrinkage``), the detector's AUROC read off the estimated OOD part, with a
bootstrap interval or the "unidentifiable" diagnosis.
Judged on the sets each estimator answers (``answered``), with ``coverage`` = how often the true AUROC lies in
the estimator's own interval at the task's confidence (95% by default; sampling noise only) and ``conformal_coverage`` / ``conformal_width`` = the same for leave-one-family-out
conformal intervals, whose half-width is the family-weighted quantile of the absolute errors on the other
families at that confidence (``meta_eval.lofo_conformal_intervals``: bias on unseen shifts included). Coverage is
to be read against the nominal level (a [0, 1] interval covers everything), with the width beside it.
Their records are not headline ones.

**Judging** (``facebench.metrics.meta_eval``): every map is fitted leave-one-family-out (a family
= one source) and evaluated on the held-out family; MAE, RMSE, R^2, Pearson, Spearman and Kendall
against the truth over all sets, with bootstrap CIs over test sets (stratified by family); the raw
indicators also get their rank correlations. ``best_*`` records name the winner per target (and per detector: AUROC indicators are judged
separately for each detector, whose score scales differ).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from facebench.errors import ConfigError, MetricInputError
from facebench.fingerprint import hash_object
from facebench.metrics import bootstrap as bs
from facebench.metrics import feature_mpe as fmpe
from facebench.metrics import label_free as lf
from facebench.metrics import meta_eval as me
from facebench.metrics import mpe
from facebench.metrics import ood
from facebench.metrics import ood_scores as osc
from facebench.protocols._labels import match_labels
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, split_ref
from facebench.records import Requirements

STATS = ("mae", "rmse", "r2", "pearson", "spearman", "kendall")
#: errors of a predicted metric are lower-is-better; R2 and correlations higher-is-better; all are plain
#: numbers on the target metric's [0, 1] scale (unit "score")
LOWER_STATS = ("mae", "rmse")


@dataclass
class MetaSet:
    """One unlabelled test set: indices into the ID pool and into one source's pool."""

    family: str
    source: str
    id_index: np.ndarray
    other_index: np.ndarray


def draw_sets(n_id: int, n_other: int, family: str, source: str, sets: int, fractions, sizes,
              rng: np.random.Generator) -> list[MetaSet]:
    """``sets`` mixtures: set k has size ``sizes[(k // len(fractions)) % len(sizes)]`` and OOD fraction
    ``fractions[k % len(fractions)]``, both capped by what the pools hold; drawn without replacement."""
    out = []
    for k in range(sets):
        frac = float(fractions[k % len(fractions)])
        size = int(sizes[(k // len(fractions)) % len(sizes)])
        m = min(n_other, max(1, int(round(size * frac))))
        n = min(n_id, max(1, size - m))
        out.append(MetaSet(family, source, rng.choice(n_id, n, replace=False), rng.choice(n_other, m, replace=False)))
    return out


class LabelFreeProtocol(Protocol):
    """Label-free (Gscore-style) evaluation: indicators of OOD AUROC and accuracy estimators, judged on a meta-benchmark of test sets"""

    name = "label_free"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        detectors: list = field(default_factory=lambda: ["msp"])
        temperature: float = 1.0
        knn_k: int = 50
        ood_sources: list = field(default_factory=list)
        class_families: bool = True
        shifts: list = field(default_factory=list)
        fit_split: object = None
        sets_per_source: int = 12
        ood_fractions: list = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75])
        sizes: list = field(default_factory=lambda: [300, 1000])
        min_class_samples: int = 30
        mpe: bool = True
        mpe_methods: list = field(default_factory=lambda: list(mpe.ESTIMATORS))
        mpe_resamples: int = 100  # the demo stays within its time budget; suites/gscore_mpe.yaml sets 200
        mpe_folds: int = 5
        combined: bool = False  # a random forest over every indicator, leave-one-family-out (seconds per detector)
        feature_mpe: bool = False  # MPE in the model's feature space (facebench.metrics.feature_mpe); needs features
        feature_shrinkage: float = 1.0

    # -- configuration ---------------------------------------------------------------------------
    def _named(self, items, kind: str, task) -> list[tuple[str, str, object]]:
        if not isinstance(items, list):
            raise ConfigError(f"task {task.name!r}: `{kind}` must be a list of {{dataset, split, name, family, ...}}")
        out, seen = [], set()
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ConfigError(f"task {task.name!r}: {kind}[{i}] must be a mapping; got {item!r}")
            item = dict(item)
            name = str(item.pop("name", None) or item.get("dataset"))
            family = str(item.pop("family", None) or name)
            if name in seen:
                raise ConfigError(f"task {task.name!r}: {kind} name {name!r} is used twice; give each a `name`.")
            seen.add(name)
            out.append((name, family, split_ref(item, f"task {task.name!r}: {kind}[{i}]", None, predictions=True,
                                                optional=True)))
        return out

    def _feature_detectors(self) -> list[str]:
        return [d for d in self.params.detectors if d in osc.FEATURE_DETECTORS]

    RANGES = {"temperature": (1e-12, None), "knn_k": (1, None), "sets_per_source": (1, None),
              "min_class_samples": (1, None), "mpe_resamples": (0, None), "mpe_folds": (2, None),
              "feature_shrinkage": (0, None)}
    ROLE_NEEDS = {"fit": {"labels"}, "shift": {"labels"}}  # ood sources need no labels

    MPE_PARAMS = ("mpe", "mpe_methods", "mpe_resamples", "mpe_folds", "combined", "feature_mpe", "feature_shrinkage")

    def fingerprint(self) -> str:
        """Name, version and parameters; the MPE parameters only where they differ from their defaults, so that
        runs made before them stay comparable (they change none of the earlier records; MPE records are added)."""
        params = dataclasses.asdict(self.params)
        defaults = dataclasses.asdict(self.Params())
        for key in self.MPE_PARAMS:
            if params[key] == defaults[key]:
                del params[key]
        return hash_object({"protocol": self.name, "version": self.version, "params": params})

    def _needs_features(self) -> bool:
        return bool(self._feature_detectors()) or bool(self.params.feature_mpe and self.params.fit_split is not None)

    def requirements(self, task=None) -> Requirements:
        p = self.params
        feats = self._needs_features()
        return Requirements(head_name=p.head, features=feats, fit_split=p.fit_split is not None,
                            unknowns="splits" if p.ood_sources else "not-needed")

    def requires(self, task) -> dict:
        p = self.params
        known = tuple(osc.LOGIT_SCORES) + tuple(osc.FEATURE_DETECTORS)
        if not isinstance(p.detectors, list) or not p.detectors or any(d not in known for d in p.detectors):
            raise ConfigError(f"task {task.name!r}: `detectors` must be a non-empty list of {', '.join(known)}; "
                              f"got {p.detectors!r}")
        if not isinstance(p.mpe_methods, list) or any(m not in mpe.ESTIMATORS for m in p.mpe_methods):
            raise ConfigError(f"task {task.name!r}: `mpe_methods` must be a list of {', '.join(mpe.ESTIMATORS)}; "
                              f"got {p.mpe_methods!r}")
        if p.feature_mpe and p.fit_split is None:
            raise ConfigError(f"task {task.name!r}: `feature_mpe` compares each test set with the features of a "
                              f"labelled `fit_split`; set one (e.g. `fit_split: val`).")
        feats = self._needs_features()
        if self._feature_detectors() and p.fit_split is None:
            raise ConfigError(f"task {task.name!r}: detectors {self._feature_detectors()} are fitted on stored "
                              f"features of a labelled `fit_split`; set one (e.g. `fit_split: val`).")
        refs = {}
        for name, _, ref in self._named(p.ood_sources, "ood_sources", task):
            refs[f"ood:{name}"] = dataclasses.replace(ref, features=feats)
        refs.update({f"shift:{name}": ref for name, _, ref in self._named(p.shifts, "shifts", task)})
        if p.fit_split is not None:
            refs["fit"] = split_ref(p.fit_split, f"task {task.name!r}: fit_split", task, predictions=True,
                                    features=feats)
        if not refs and not p.class_families:
            raise ConfigError(f"task {task.name!r}: label_free needs `ood_sources` or `class_families: true`")
        return refs

    def _families(self, key: str) -> dict[str, str]:
        items = self.params.ood_sources if key == "ood" else self.params.shifts
        return {str(i.get("name") or i.get("dataset")): str(i.get("family") or i.get("name") or i.get("dataset"))
                for i in items if isinstance(i, dict)}

    # -- evaluation ---------------------------------------------------------------------------
    def _scorer(self, detector: str, ctx: EvalContext):
        """predictions -> detector scores (higher = in-distribution); feature detectors are fitted on the
        ``fit_split``'s stored features of the classes the head has."""
        p = self.params
        if detector in osc.LOGIT_SCORES:
            return lambda preds: osc.logit_score(detector, np.asarray(preds.outputs[ctx.head], np.float64),
                                                 temperature=p.temperature)
        fit = ctx.extras["fit"]
        classes = list(ctx.head_labels)
        keep = np.isin(fit.dataset.labels, classes)
        x = np.asarray(fit.predictions.outputs["features"], np.float64)[keep]
        y = np.array([classes.index(c) for c in fit.dataset.labels[keep]])
        model = osc.Mahalanobis().fit(x, y) if detector == "mahalanobis" else \
            osc.KNNScore(k=min(p.knn_k, len(x))).fit(x, y)
        return lambda preds: model.score(np.asarray(preds.outputs["features"], np.float64))

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        """The meta-benchmark, judged; on one BLAS thread: its matrices (test sets x features, the MLP's layers)
        are small, and a second thread costs more than it saves (15x on a loaded 2-core machine)."""
        with threadpool_limits(limits=1, user_api="blas"):
            return self._evaluate(ctx)

    def _evaluate(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        rng = np.random.default_rng(ctx.seed)
        records, warnings, details = [], [], {}
        auroc_sets = self._auroc_sets(ctx, rng, warnings)
        details["auroc"] = {}
        for detector in p.detectors:  # judged per detector: score scales differ between detectors
            subset = [s for s in auroc_sets if s["detector"] == detector]
            if len({s["family"] for s in subset}) >= 2:
                recs, det = self._judge_auroc(subset, ctx, f"auroc,detector={detector}")
                records += recs
                details["auroc"][detector] = det
            else:
                warnings.append(f"AUROC indicators for {detector} need sets from at least two families "
                                f"(for leave-one-family-out)")
                continue
            if p.mpe and "fit" in ctx.extras:
                recs, det = self._judge_mpe(subset, self._reference_scores(detector, ctx), ctx,
                                            f"auroc,detector={detector}")
                records += recs
                details.setdefault("mpe", {})[detector] = det
        if "fit" in ctx.extras:
            acc_sets, temperature = self._accuracy_sets(ctx, rng, warnings)
            if len({s["family"] for s in acc_sets}) >= 2:
                recs, det = self._judge_accuracy(acc_sets, ctx)
                records += recs
                details["accuracy"] = {**det, "temperature": temperature}
            else:
                warnings.append("accuracy estimators need sets from at least two families: add `shifts`")
        details["sets"] = [{k: v for k, v in s.items() if not k.startswith("_")} for s in auroc_sets]
        return TaskResult(records, details, warnings)

    # AUROC: build the mixtures and their truth
    def _auroc_sets(self, ctx, rng, warnings) -> list[dict]:
        p, ds = self.params, ctx.dataset
        families = self._families("ood")
        out = []
        with_features = p.feature_mpe and "fit" in ctx.extras  # each set keeps its features' rows (step 5 of MPE)

        def features(preds):
            return np.asarray(preds.outputs["features"], np.float32) if with_features else None

        id_features = features(ctx.predictions)
        for detector in p.detectors:
            score = self._scorer(detector, ctx)
            id_scores = score(ctx.predictions)
            sources = []  # (family, name, ID pool (scores, features), other pool (scores, features))
            for role, extra in ctx.extras.items():
                if role.startswith("ood:"):
                    name = role[4:]
                    sources.append((families.get(name, name), name, (id_scores, id_features),
                                    (score(extra.predictions), features(extra.predictions))))
            if p.class_families and ds.labels is not None:
                for c in ds.classes:
                    mask = ds.labels == c
                    if mask.sum() >= p.min_class_samples and (~mask).sum() >= p.min_class_samples:
                        sources.append((f"class:{c}", f"held-out class {c}", _rows((id_scores, id_features), ~mask),
                                        _rows((id_scores, id_features), mask)))
            for family, name, pool_id, pool_other in sources:
                for s in draw_sets(len(pool_id[0]), len(pool_other[0]), family, name, p.sets_per_source,
                                   p.ood_fractions, p.sizes, rng):
                    a, b = pool_id[0][s.id_index], pool_other[0][s.other_index]
                    out.append({"family": family, "source": name, "detector": detector, "n_id": int(len(a)),
                                "n_ood": int(len(b)), "ood_fraction": round(len(b) / (len(a) + len(b)), 4),
                                "true_auroc": ood.auroc(a, b), "_scores": np.concatenate([a, b])})
                    if with_features:  # the rows, not a copy: 486 sets of 128-d features would take 0.3 GB
                        out[-1]["_features"] = (pool_id[1], s.id_index, pool_other[1], s.other_index)
        return out

    def _judge_auroc(self, sets, ctx, target: str) -> tuple[list, dict]:
        truth = np.array([s["true_auroc"] for s in sets])
        families = np.array([s["family"] for s in sets])
        rows, feats = lf.indicator_table([s["_scores"] for s in sets])  # the mixtures of all sets fitted at once
        raw = {name: np.ascontiguousarray(rows[:, j]) for j, name in enumerate(lf.INDICATORS)}
        for s, r in zip(sets, rows.tolist()):
            s["indicators"] = dict(zip(lf.INDICATORS, r))
        predictions = {("gmm_auroc", "direct"): raw["gmm_auroc"]}
        for name, values in raw.items():
            predictions[(name, "linear")] = me.leave_one_family_out(values, truth, families, me.LinearMap)
        predictions[("features", "linear")] = me.leave_one_family_out(feats, truth, families, me.LinearMap)
        predictions[("features", "mlp")] = me.leave_one_family_out(
            feats, truth, families, lambda: me.NonLinearMap(seed=ctx.seed))
        return self._judge(target, truth, families, raw, predictions, ctx)

    # mixture-proportion estimation and shift indicators (need the ID reference scores of the fit split)
    def _reference_scores(self, detector: str, ctx) -> tuple[np.ndarray, np.ndarray]:
        """The detector's scores on the ``fit_split`` and its labels: logit scores as they are; feature detectors
        cross-fitted (``mpe_folds`` interleaved folds, each scored by a model fitted on the others' head classes)
        so that, like the test sets' scores, they are not scores of the data the detector was fitted on."""
        fit = ctx.extras["fit"]
        labels = np.asarray(fit.dataset.labels) if fit.dataset.labels is not None else None
        if detector in osc.LOGIT_SCORES:
            return self._scorer(detector, ctx)(fit.predictions), labels
        classes = list(ctx.head_labels)
        x = np.asarray(fit.predictions.outputs["features"], np.float64)
        fold = np.arange(len(x)) % self.params.mpe_folds
        out = np.empty(len(x))
        for k in range(self.params.mpe_folds):
            train = (fold != k) & np.isin(labels, classes)
            y = np.array([classes.index(c) for c in labels[train]])
            model = osc.Mahalanobis() if detector == "mahalanobis" else \
                osc.KNNScore(k=min(self.params.knn_k, int(train.sum())))
            out[fold == k] = model.fit(x[train], y).score(x[fold == k])
        return out, labels

    def _mpe_predictions(self, sets, ref, ctx) -> dict:
        """(indicator, map) -> (predicted AUROC per set, NaN where unanswered; (S, 2) intervals or None)."""
        p = self.params
        truth = np.array([s["true_auroc"] for s in sets])
        families = np.array([s["family"] for s in sets])
        out = {}

        def estimate(k: int, method: str) -> dict:
            return _by_reference(sets, ref, lambda r, x: mpe.estimate_many(
                r, x, method=method, n_resamples=p.mpe_resamples, confidence=ctx.confidence, seed=ctx.seed + k))

        # one seeded generator per method: the same numbers in two threads (NumPy's draws and array work release
        # the GIL) as one after the other, in about 60% of the time on 2 cores
        with ThreadPoolExecutor(max_workers=2) as pool:
            estimates = list(pool.map(estimate, range(len(p.mpe_methods)), p.mpe_methods))
        for method, est in zip(p.mpe_methods, estimates):
            out[(f"mpe_{method}", "direct")] = (est["auroc"], est["auroc_ci"])
            ok = np.isfinite(est["auroc"])
            out[(f"mpe_{method}", "linear")] = (_lofo_subset(est["auroc"], truth, families, ok), None)
            for i, s in enumerate(sets):
                s.setdefault("mpe", {})[method] = {"pi": _num(est["pi_raw"][i]), "auroc": _num(est["auroc"][i]),
                                                   "auroc_ci": [_num(v) for v in est["auroc_ci"][i]],
                                                   "status": str(est["status"][i])}
        shift = _by_reference(sets, ref, lambda r, x: {"shift": mpe.shift_indicators_many(r, x)})["shift"]
        every = np.ones(len(sets), dtype=bool)
        for j, name in enumerate(mpe.SHIFT_INDICATORS):
            out[(f"shift_{name}", "linear")] = (_lofo_subset(shift[:, j], truth, families, every), None)
        out[("shift", "linear")] = (_lofo_subset(shift, truth, families, every), None)
        for s, row in zip(sets, shift.tolist()):
            s["shift"] = {k: round(v, 6) for k, v in zip(mpe.SHIFT_INDICATORS, row)}
        methods = list(p.mpe_methods)
        if p.feature_mpe:
            est = self._feature_estimates(sets, ref, ctx)
            out[("mpe_feature", "direct")] = (est["auroc"], est["auroc_ci"])
            methods.append("feature")
        if p.combined:
            x = np.nan_to_num(np.array([combined_features(s, methods) for s in sets], dtype=np.float64))
            out[("combined", "forest")] = (_lofo_subset(x, truth, families, every, lambda: _forest(ctx.seed)), None)
        return out

    def _feature_estimates(self, sets, ref, ctx) -> dict:
        """``facebench.metrics.feature_mpe`` on every set against the ``fit_split``'s features and the detector's
        reference scores (without class c for the family ``class:c``); each set's estimate goes into its details."""
        p = self.params
        scores, labels = ref
        fit_x = np.asarray(ctx.extras["fit"].predictions.outputs["features"], np.float64)
        options = fmpe.FeatureMPEOptions(folds=p.mpe_folds, shrinkage=p.feature_shrinkage)
        references: dict = {}
        for s in sets:
            held = _held_class(s, labels)
            if held not in references:
                keep = np.ones(len(scores), bool) if held is None else labels.astype(str) != held
                references[held] = (fmpe.whitening(fit_x[keep], p.feature_shrinkage), scores[keep])

        def one(i: int) -> dict:
            white, reference = references[_held_class(sets[i], labels)]
            return fmpe.estimate(white, reference, _set_features(sets[i]), sets[i]["_scores"],
                                 n_resamples=p.mpe_resamples, confidence=ctx.confidence, seed=ctx.seed + i,
                                 options=options)

        with ThreadPoolExecutor(max_workers=2) as pool:  # each set seeded by its index: the same in any order
            results = list(pool.map(one, range(len(sets))))
        for s, r in zip(sets, results):
            s.setdefault("mpe", {})["feature"] = {"pi": _num(r["pi"]), "pi_ci": [_num(v) for v in r["pi_ci"]],
                                                  "auroc": _num(r["auroc"]),
                                                  "auroc_ci": [_num(v) for v in r["auroc_ci"]], "status": r["status"]}
        return {"auroc": np.array([r["auroc"] for r in results]),
                "auroc_ci": np.array([r["auroc_ci"] for r in results], dtype=np.float64).reshape(len(sets), 2)}

    def _judge_mpe(self, sets, ref, ctx, target: str) -> tuple[list, dict]:
        """Non-headline records of the MPE estimators, shift indicators and (``combined``) the forest, on the sets
        each one answers: MAE .. Kendall (bootstrap CIs over sets, stratified by family), ``answered``,
        ``coverage`` (own intervals) and ``conformal_coverage`` / ``conformal_width``."""
        truth = np.array([s["true_auroc"] for s in sets])
        families = np.array([s["family"] for s in sets])
        conv = {"target": target, "n_sets": int(len(truth)), "fit": "leave-one-family-out (maps)",
                "reference": "fit_split scores (feature detectors cross-fitted)", "judged_on": "answered sets",
                "mpe_resamples": self.params.mpe_resamples, "confidence": ctx.confidence,
                "bootstrap": f"percentile,resamples={ctx.n_resamples},unit=test set,stratified=family,seed={ctx.seed}"}
        records, table = [], []
        for (indicator, mapping), (pred, ci) in self._mpe_predictions(sets, ref, ctx).items():
            row = _agreement_row(np.clip(pred, 0.0, 1.0), ci, truth, families, ctx)
            if row is None:
                continue
            row.update(indicator=indicator, map=mapping)
            table.append(row)
            name = f"[target={target},indicator={indicator},map={mapping}]"
            for stat in (*STATS, "answered", "coverage", "conformal_coverage", "conformal_width"):
                if row.get(stat) is not None:
                    records.append(MetricRecord(stat + name, row[stat], row.get(f"{stat}_ci"), row["n"], conv,
                                                higher_is_better=stat not in (*LOWER_STATS, "conformal_width"),
                                                unit="score"))
        ranked = sorted(table, key=lambda r: (np.inf if not np.isfinite(r["mae"]) else r["mae"]))
        if ranked:
            best = ranked[0]
            records.append(MetricRecord(f"best_mpe_mae[target={target}]", best["mae"], best.get("mae_ci"), best["n"],
                                        {**conv, "indicator": best["indicator"], "map": best["map"],
                                         "answered": best["answered"], "coverage": best.get("coverage"),
                                         "conformal_coverage": best.get("conformal_coverage"),
                                         "conformal_width": best.get("conformal_width"),
                                         "spearman": best["spearman"]}, higher_is_better=False, unit="score"))
        return records, {"table": [{k: v for k, v in r.items() if not k.endswith("_ci")} for r in ranked]}

    # accuracy: shifted labelled sets and the estimators
    def _accuracy_sets(self, ctx, rng, warnings) -> tuple[list[dict], float]:
        p = self.params
        fit = ctx.extras["fit"]

        def matched(ds, preds):
            m = match_labels(preds.outputs[ctx.head], ds.labels, ds.classes, ctx.head_labels)
            return m.logits, m.y_true

        src_logits, src_y = matched(fit.dataset, fit.predictions)
        temperature = lf.fit_temperature(src_logits, src_y)
        src_probs = lf.softmax_t(src_logits, temperature)
        src_correct = src_probs.argmax(1) == src_y
        marginal = np.bincount(src_y, minlength=src_logits.shape[1]) / len(src_y)
        pools = [("id", ctx.dataset.name + "/" + ctx.dataset.split, *matched(ctx.dataset, ctx.predictions))]
        families = self._families("shift")
        for role, extra in ctx.extras.items():
            if role.startswith("shift:") and extra.dataset.labels is not None:
                name = role[6:]
                pools.append((families.get(name, name), name, *matched(extra.dataset, extra.predictions)))
        drawn = []  # (family, source, probabilities, labels, COT seed) of each set, in the order drawn
        for family, name, logits, y in pools:
            probs = lf.softmax_t(logits, temperature)
            for k in range(p.sets_per_source):
                size = min(len(y), int(p.sizes[k % len(p.sizes)]))
                idx = rng.choice(len(y), size, replace=False)
                drawn.append((family, name, probs[idx], y[idx], int(rng.integers(1 << 31))))
        cot = lf.cot_estimates([d[2] for d in drawn], marginal, [d[4] for d in drawn])  # the slow one, in threads
        src_conf, src_ne = src_probs.max(1), lf.neg_entropy_scores(src_probs)
        out = []
        for (family, name, pr, yy, _), cot_value in zip(drawn, cot):
            est = {
                "AC": lf.average_confidence(pr),
                "DoC": lf.difference_of_confidences(src_probs, src_y, pr),
                "ATC-MC": lf.atc_estimate(src_conf, src_correct, pr.max(1)),
                "ATC-NE": lf.atc_estimate(src_ne, src_correct, lf.neg_entropy_scores(pr)),
                "COT": cot_value,
                "nuclear_norm": lf.nuclear_norm_score(pr),
            }
            out.append({"family": family, "source": name, "n": int(len(yy)),
                        "true_accuracy": float(np.mean(pr.argmax(1) == yy)), "estimates": est})
        return out, float(temperature)

    def _judge_accuracy(self, sets, ctx) -> tuple[list, dict]:
        truth = np.array([s["true_accuracy"] for s in sets])
        families = np.array([s["family"] for s in sets])
        raw = {name: np.array([s["estimates"][name] for s in sets]) for name in sets[0]["estimates"]}
        predictions = {(name, "direct"): raw[name] for name in raw if name != "nuclear_norm"}
        predictions[("nuclear_norm", "linear")] = me.leave_one_family_out(raw["nuclear_norm"], truth, families,
                                                                          me.LinearMap)
        recs, det = self._judge("accuracy", truth, families, raw, predictions, ctx)
        det["sets"] = [{k: v for k, v in s.items()} for s in sets]
        return recs, det

    # shared judging: agreement of predictions, rank correlation of raw indicators
    def _judge(self, target, truth, families, raw, predictions, ctx) -> tuple[list, dict]:
        conv = {"target": target, "n_sets": int(len(truth)), "families": sorted(set(families.tolist())),
                "fit": "leave-one-family-out", "predictions": "clipped to [0, 1]", "bootstrap": f"percentile,resamples={ctx.n_resamples},"
                f"unit=test set,stratified=family,seed={ctx.seed}", "confidence": ctx.confidence}
        records, table = [], []
        for (indicator, mapping), pred in predictions.items():
            pred = np.clip(pred, 0.0, 1.0)  # AUROC and accuracy live in [0, 1]; a map may overshoot
            predictions[(indicator, mapping)] = pred
            values = me.agreement_metrics(pred, truth)
            boots = (me.bootstrap_agreement(pred, truth, n_resamples=ctx.n_resamples, seed=ctx.seed, groups=families)
                     if ctx.n_resamples > 0 else {})
            row = {"indicator": indicator, "map": mapping, **values}
            for stat in STATS:
                ci = bs.percentile_interval(boots[stat], ctx.confidence) if stat in boots else None
                records.append(MetricRecord(f"{stat}[target={target},indicator={indicator},map={mapping}]",
                                            values[stat], ci, len(truth), conv,
                                            higher_is_better=stat not in LOWER_STATS, unit="score"))
                row[f"{stat}_ci"] = ci
            table.append(row)
        for indicator, values in raw.items():
            corr = me.correlation_metrics(values, truth)
            for stat, value in corr.items():
                records.append(MetricRecord(f"{stat}[target={target},indicator={indicator},map=raw]", value, None,
                                            len(truth), conv, higher_is_better=stat not in LOWER_STATS,
                                            unit="score"))
        ranked = sorted(table, key=lambda r: (np.inf if not np.isfinite(r["mae"]) else r["mae"]))
        best, second = ranked[0], ranked[1] if len(ranked) > 1 else None
        margin = None if second is None else second["mae"] - best["mae"]
        records.append(MetricRecord(f"best_mae[target={target}]", best["mae"], best.get("mae_ci"), len(truth),
                                    {**conv, "indicator": best["indicator"], "map": best["map"],
                                     "runner_up": None if second is None else f"{second['indicator']} ({second['map']})",
                                     "margin_mae": margin}, headline=True,
                                    higher_is_better=False, unit="score"))
        by_rho = max(table, key=lambda r: -np.inf if not np.isfinite(r["spearman"]) else r["spearman"])
        records.append(MetricRecord(f"best_spearman[target={target}]", by_rho["spearman"], by_rho.get("spearman_ci"),
                                    len(truth), {**conv, "indicator": by_rho["indicator"], "map": by_rho["map"]},
                                    headline=True, higher_is_better=True, unit="score"))
        scatter = {f"{r['indicator']}/{r['map']}": {"true": truth.tolist(),
                                                     "pred": np.asarray(predictions[(r["indicator"], r["map"])]).tolist()}
                   for r in ranked[:3]}
        truth_range = [float(truth.min()), float(truth.max())]
        return records, {"table": ranked, "scatter": scatter, "truth_range": truth_range,
                         "families": {f: int((families == f).sum()) for f in sorted(set(families.tolist()))}}


def _num(v) -> float | None:
    """A float for the details (None for NaN: JSON has no NaN)."""
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None


def _held_class(s: dict, labels) -> str | None:
    """The class a ``class:c`` family holds out (its sets' ID reference leaves c out), else None."""
    return s["family"][len("class:"):] if s["family"].startswith("class:") and labels is not None else None


def _rows(pool: tuple, mask: np.ndarray) -> tuple:
    """(scores, features or None) restricted to ``mask``."""
    scores, features = pool
    return scores[mask], None if features is None else features[mask]


def _set_features(s: dict) -> np.ndarray:
    """A set's feature rows, ID part then OOD part (the order of its scores)."""
    id_pool, id_index, other_pool, other_index = s["_features"]
    return np.concatenate([id_pool[id_index], other_pool[other_index]]).astype(np.float64)


def _by_reference(sets, ref, estimate) -> dict:
    """``estimate(reference scores, test score sets)`` (a dict of per-set arrays) merged over the sets' ID
    references: the whole ``fit_split`` for OOD sources, the ``fit_split`` without class c for the held-out-class
    family ``class:c`` (its test sets' ID part holds no c either)."""
    scores, labels = ref
    groups: dict = {}
    for i, s in enumerate(sets):
        groups.setdefault(_held_class(s, labels), []).append(i)
    merged: dict = {}
    for held, idx in groups.items():
        reference = scores if held is None else scores[labels.astype(str) != held]
        part = estimate(reference, [sets[i]["_scores"] for i in idx])
        for key, value in part.items():
            value = np.asarray(value)
            if key == "grid" or key.startswith("p_"):  # per-reference, not per-set
                continue
            if key not in merged:
                merged[key] = np.full((len(sets), *value.shape[1:]), np.nan, dtype=value.dtype if
                                      value.dtype == object else np.float64)
            merged[key][idx] = value
    return merged


def combined_features(s: dict, methods) -> list[float]:
    """One set's features for the ``combined`` map, all label-free: its score indicators and shift indicators
    (each sorted by name; a missing value as NaN), per MPE method its raw OOD fraction, its AUROC (0.5 when
    unanswered) and a 1/0 unanswered flag, and the log of the set's size."""
    values = sorted((s.get("indicators") or {}).items()) + sorted((s.get("shift") or {}).items())
    out = [np.nan if v is None else float(v) for _, v in values]
    for method in methods:
        e = (s.get("mpe") or {}).get(method) or {}
        out += [e.get("pi") or 0.0, 0.5 if e.get("auroc") is None else e["auroc"], float(e.get("auroc") is None)]
    return out + [float(np.log(s["n_id"] + s["n_ood"]))]


def _forest(seed: int):
    """The ``combined`` map: scikit-learn's random forest (200 trees, >= 5 sets per leaf, one thread, seeded)."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=200, min_samples_leaf=5, random_state=seed, n_jobs=1)


def _lofo_subset(x, truth, families, keep, model=me.LinearMap) -> np.ndarray:
    """Leave-one-family-out predictions of ``model()`` (a linear map by default) on the sets ``keep`` (NaN
    elsewhere, and everywhere when the kept sets span fewer than 2 families or a fold would train on fewer than
    2 sets)."""
    out = np.full(len(truth), np.nan)
    x = np.asarray(x, np.float64)
    if len(set(families[keep].tolist())) < 2:
        return out
    try:
        out[keep] = me.leave_one_family_out(x[keep], truth[keep], families[keep], model)
    except MetricInputError:
        pass
    return out


def _agreement_row(pred, ci, truth, families, ctx) -> dict | None:
    """Agreement of ``pred`` with the truth on the sets it answers, with bootstrap CIs, the answered fraction,
    (with intervals) their coverage of the truth, and the coverage and mean width of leave-one-family-out
    conformal intervals (``meta_eval.lofo_conformal_intervals``, clipped to [0, 1]; any predictor, with two or
    more families answered); None when fewer than 3 sets are answered."""
    ok = np.isfinite(pred)
    if ok.sum() < 3:
        return None
    row = {"n": int(ok.sum()), "answered": float(ok.mean()), **me.agreement_metrics(pred[ok], truth[ok])}
    if ci is not None:
        lo, hi = ci[ok, 0], ci[ok, 1]
        row["coverage"] = float(np.mean((lo <= truth[ok]) & (truth[ok] <= hi)))
        row["ci_width"] = float(np.mean(hi - lo))
    if len(set(families[ok].tolist())) >= 2:  # intervals calibrated on the other families' errors
        iv = np.clip(me.lofo_conformal_intervals(pred[ok], truth[ok], families[ok], ctx.confidence), 0.0, 1.0)
        row["conformal_coverage"] = float(np.mean((iv[:, 0] <= truth[ok]) & (truth[ok] <= iv[:, 1])))
        row["conformal_width"] = float(np.mean(iv[:, 1] - iv[:, 0]))
    if ctx.n_resamples > 0:
        boots = me.bootstrap_agreement(pred[ok], truth[ok], n_resamples=ctx.n_resamples, seed=ctx.seed,
                                       groups=families[ok])
        for stat in STATS:
            row[f"{stat}_ci"] = bs.percentile_interval(boots[stat], ctx.confidence)
    return row
