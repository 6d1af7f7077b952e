"""Face verification on pair lists (LFW View 2, RFW, any CSV of pairs), with verification fairness.

Embeddings are the model's features; with ``flip: true`` (default) the embedding of the mirrored
image is added before L2 normalisation (insightface's flip-sum; the mirrored split is predicted
once like any other). Two 10-fold conventions are reported side by side, because papers use both:

* ``accuracy[10fold,insightface]``: squared L2 distance of normalised embeddings, thresholds
  0..4 step 0.01, the accuracy-maximising threshold of the other 9 folds, mean and std (ddof 0);
* ``accuracy[10fold,facexzoo]``: cosine similarity, 1000 thresholds over the training folds'
  score range, Youden's J, mean and standard error (ddof 1 / sqrt(10)).

Folds: the fold ids of the pairs (LFW: 1..10, pairs.txt's blocks). Only the folds with at least one
complete pair are evaluated, each with thresholds from the other folds evaluated; their number is a
headline record (``folds_evaluated``) and ``accuracy_std[10fold,insightface]`` their spread. Pairs
whose image is absent (pair loaders with ``missing_images: skip``) are counted per fold, genuine and
impostor apart (``pairs_missing``, details ``folds`` and ``coverage``, and a warning); a fold without a
complete pair is listed as absent.

``tar@far<x>``: TAR at the largest FAR <= x on the cosine ROC, with a percentile bootstrap CI (pairs
resampled within the genuine and within the impostor pairs); a FAR the impostor count cannot resolve
(x < 1 / n_impostor) is reported as unresolved with the reason. ROC and DET points go to the task
details. Models that report face detection (a ``face_detected`` output, e.g. dlib-resnet, sface)
get ``no_face_images``: images where no face was found and the model embedded its fallback.

When pairs carry a group (RFW's race): per-group 10-fold accuracy with **per-group thresholds**
(the RFW convention, labelled so) with Avg, STD (ddof 0 and 1) and SER; and per-group FMR and FNMR
at **one global threshold** set for ``fmr_target`` on all impostor pairs (NIST FRVT), with the
max/min and max/geometric-mean ratios and the Fairness Discrepancy Rate (``fdr_alpha``); CIs
resample whole subjects (the identity of the pair's first image) within each group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.data.pairs import describe_missing
from facebench.errors import MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import fairness as fm
from facebench.metrics import verification as vm
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, flipped_ref
from facebench.records import Requirements


def _far_tag(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


class VerificationProtocol(Protocol):
    """Face verification: 10-fold accuracy (insightface and FaceX-Zoo conventions), TAR@FAR, per-group rates at a global threshold"""

    name = "verification"
    version = "2"

    @dataclass
    class Params:
        flip: bool = True
        far_targets: list = field(default_factory=lambda: [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
        fmr_target: float = 1e-3
        fdr_alpha: float = 0.5
        min_group_size: int = 30

    RANGES = {"fmr_target": (0, 1), "fdr_alpha": (0, 1), "min_group_size": (1, None)}
    ROLE_NEEDS = {"flipped": {"pairs"}}

    def requirements(self, task=None) -> Requirements:
        return Requirements(head=False, features=True, labels=False, pairs=True)

    def requires(self, task) -> dict:
        if not self.params.flip:
            return {}
        return {"flipped": flipped_ref(task, "verification")}

    def _embeddings(self, ctx: EvalContext) -> np.ndarray:
        emb = np.asarray(ctx.predictions.outputs["features"], dtype=np.float64)
        if self.params.flip:
            flipped = ctx.extras["flipped"].predictions.align(ctx.dataset.ids)
            return vm.flip_sum_embeddings(emb, np.asarray(flipped.outputs["features"], dtype=np.float64))
        return vm.l2_normalize(emb)

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p, ds = self.params, ctx.dataset
        if ds.pairs is None:
            raise MetricInputError(f"{ds.name}/{ds.split} has no pair list; verification needs a pairs dataset "
                             f"(lfw, rfw, pairs-csv)")
        same, folds = ds.pairs["same"].astype(bool), ds.pairs["fold"].astype(int)
        if len(np.unique(folds)) < 2:
            raise MetricInputError(f"{ds.name}/{ds.split}: the pairs evaluated lie in {len(np.unique(folds))} fold; "
                                   f"cross-validated thresholds need at least 2 (for lfw select at least 2 folds "
                                   f"with `dataset_args: {{folds: [...]}}`)")
        emb = self._embeddings(ctx)
        a, b = ds.pairs["a"], ds.pairs["b"]
        cos = vm.pair_scores(emb[a], emb[b], "cosine")
        dist = vm.pair_scores(emb[a], emb[b], "sqeuclidean")
        conv = {"embedding": "L2-normalise(f(x) + f(hflip x))" if p.flip else "L2-normalise(f(x))",
                "pairs": int(len(same)), "genuine": int(same.sum()), "impostor": int((~same).sum())}
        fold_rows, coverage = fold_table(ds, same, folds)
        conv_folds = {**conv, "n_folds": coverage["n_folds"], "folds_absent": coverage["folds_absent"]}
        records, fold_acc = self._accuracy_records(dist, cos, same, folds, conv_folds)
        for row in fold_rows:
            row.update(fold_acc.get(row["fold"], {}))
        tar_records, tars = self._tar_records(ctx, cos, same, conv)
        records += tar_records + coverage_records(coverage, conv)
        far, tar, _ = vm.roc_points(cos, same)
        details = {"roc": _thin(far, tar), "det": _thin(*vm.det_points(cos, same)), "folds": fold_rows,
                   "coverage": coverage, "tar_at_far": {_far_tag(k): v for k, v in tars.items()}}
        warnings = [f"{ds.name}/{ds.split}: {coverage['summary']}"] if coverage["missing"] or \
            coverage["folds_absent"] else []
        face_records, details["no_face"], face_warnings = no_face_report(ctx, a, b, conv)
        records += face_records
        warnings += face_warnings
        if "group" in ds.pairs:
            group_records, group_details, group_warnings = self._groups(ctx, ds, cos, dist, same, folds, conv)
            records += group_records
            details["groups"] = group_details
            warnings += group_warnings
        return TaskResult(records, details, warnings)

    @staticmethod
    def _accuracy_records(dist, cos, same, folds, conv) -> tuple[list, dict]:
        """The two 10-fold accuracies (mean over the folds present, their spread) and, per fold id, the
        held-out accuracy and threshold of each convention."""
        ins = vm.insightface_10fold(dist, same, folds)
        fxz = vm.facexzoo_10fold(cos, same, folds)
        ids = np.unique(folds).tolist()
        per_fold = {f: {"accuracy": float(ins["fold_accuracies"][i]), "threshold_sqL2": float(ins["thresholds"][i]),
                        "accuracy_facexzoo": float(fxz["fold_accuracies"][i]),
                        "threshold_cosine": float(fxz["thresholds"][i])} for i, f in enumerate(ids)}
        ins_conv = {**conv, "score": "squared L2", "rule": "argmax accuracy, grid 0..4 step 0.01",
                    "std_ddof0": ins["accuracy_std"], "folds": ins["fold_accuracies"].tolist(), "fold_ids": ids}
        records = [
            MetricRecord("accuracy[10fold,insightface]", ins["accuracy_mean"], None, len(same), ins_conv,
                         headline=True, higher_is_better=True, unit="fraction"),
            MetricRecord("accuracy_std[10fold,insightface]", ins["accuracy_std"], None, len(same),
                         {**ins_conv, "spread": "np.std over the folds present (ddof 0)"},
                         higher_is_better=False, unit="fraction"),
            MetricRecord("accuracy[10fold,facexzoo]", fxz["accuracy_mean"], None, len(same),
                         {**conv, "score": "cosine", "rule": "Youden J, 1000 thresholds in (min, max]",
                          "sem": fxz["accuracy_sem"], "folds": fxz["fold_accuracies"].tolist(), "fold_ids": ids},
                         headline=True, higher_is_better=True, unit="fraction"),
        ]
        xq = vm.xqlfw_10fold(cos, same, folds)  # XQLFW's published evaluator (facebench.data.lrfr)
        records.append(MetricRecord("accuracy[10fold,xqlfw]", xq["accuracy_mean"], None, len(same),
                                    {**conv, "score": "cosine distance", "rule": xq["convention"],
                                     "folds": xq["fold_accuracies"].tolist(), "fold_ids": ids},
                                    higher_is_better=True, unit="fraction"))
        return records, per_fold

    def _tar_records(self, ctx: EvalContext, cos, same, conv) -> tuple[list, dict]:
        """TAR@FAR per target on the cosine ROC, with percentile bootstrap CIs (pairs resampled within the
        genuine and the impostor pairs; :func:`facebench.metrics.verification.bootstrap_tar_at_far`), and
        ``tar_at_far``'s rows."""
        targets = tuple(self.params.far_targets)
        tars = vm.tar_at_far(cos, same, targets)
        boots = vm.bootstrap_tar_at_far(cos, same, targets, n_resamples=ctx.n_resamples, seed=ctx.seed) \
            if ctx.n_resamples > 0 else {}
        ci_conv = {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=pair,stratified=genuine/impostor,"
                                f"seed={ctx.seed}"} if boots else {}
        records = []
        for target, row in tars.items():
            samples = boots.get(target)
            ci = bs.percentile_interval(samples, ctx.confidence) if samples is not None else None
            records.append(MetricRecord(f"tar@far{_far_tag(target)}", row.get("tar"), ci, int(same.sum()),
                                        {**conv, "score": "cosine", "rule": "largest FAR <= target",
                                         "far": row.get("far"), "threshold": row.get("threshold"),
                                         **(ci_conv if ci is not None else {}),
                                         **({"reason": row["reason"]} if not row.get("resolved") else {})},
                                        headline=abs(target - 1e-3) < 1e-15, higher_is_better=True, unit="rate"))
        return records, tars

    def _groups(self, ctx, ds, cos, dist, same, folds, conv):
        p = self.params
        groups = ds.pairs["group"].astype(str)
        subjects = np.asarray(ds.attributes["subject"])[ds.pairs["a"]] if "subject" in ds.attributes else None
        names = sorted(set(groups.tolist()))
        records, warnings = [], []
        acc = {}
        for g in names:
            m = groups == g
            res = vm.insightface_10fold(dist[m], same[m], folds[m])
            acc[g] = res["accuracy_mean"]
            records.append(MetricRecord(f"accuracy[10fold,insightface,group={g}]", acc[g], None, int(m.sum()),
                                        {**conv, "thresholds": "per group (RFW convention)",
                                         "std_ddof0": res["accuracy_std"]}, higher_is_better=True, unit="fraction"))
        stats = fm.summary_stats([acc[g] for g in names])
        gconv = {"thresholds": "per group (RFW convention)", "groups": names}
        for key, name in (("avg", "accuracy[group_avg]"), ("std_ddof0", "accuracy_std[ddof=0]"),
                          ("std_ddof1", "accuracy_std[ddof=1]"), ("ser", "accuracy_ser")):
            records.append(MetricRecord(name, stats[key], None, len(same), gconv, headline=key in ("avg", "ser"),
                                        higher_is_better=key == "avg", unit="ratio" if key == "ser" else "fraction"))
        # one global threshold for the whole population (NIST FRVT)
        try:
            threshold = vm_threshold = fm.threshold_at_fmr(cos[~same], p.fmr_target, higher_is_same=True)
        except ValueError as err:
            warnings.append(f"global threshold: {err}")
            return records, {"accuracy": acc}, warnings
        rates = fm.group_error_rates(cos, same, groups, threshold, higher_is_same=True)
        tconv = {"threshold": f"global, FMR={p.fmr_target:g} over all impostor pairs", "value": float(vm_threshold),
                 "bootstrap": f"percentile,resamples={ctx.n_resamples},stratified=group,unit="
                              f"{'subject' if subjects is not None else 'pair'},seed={ctx.seed}"}
        fmr_g = {g: rates[g]["fmr"] if isinstance(rates.get(g), dict) else rates["fmr"][g] for g in names}
        fnmr_g = {g: rates[g]["fnmr"] if isinstance(rates.get(g), dict) else rates["fnmr"][g] for g in names}
        for kind, mask, value_of in (("fmr", ~same, lambda s: (s >= threshold).astype(float)),
                                     ("fnmr", same, lambda s: (s < threshold).astype(float))):
            vals = value_of(cos[mask])
            boots = None
            if ctx.n_resamples > 0:
                boots = fm.grouped_bootstrap(vals, groups[mask], n_resamples=ctx.n_resamples, seed=ctx.seed,
                                             clusters=None if subjects is None else subjects[mask])
            for j, g in enumerate(names):
                point = fmr_g[g] if kind == "fmr" else fnmr_g[g]
                ci = None
                if boots is not None and g in boots["groups"]:
                    ci = bs.percentile_interval(boots["by_group"][:, list(boots["groups"]).index(g)], ctx.confidence)
                n_g = int((mask & (groups == g)).sum())
                records.append(MetricRecord(f"{kind}[group={g}]", point, ci, n_g, tconv, higher_is_better=False,
                                            unit="rate"))
                if n_g < p.min_group_size:
                    warnings.append(f"group {g!r}: only {n_g} {'impostor' if kind == 'fmr' else 'genuine'} pairs")
        diff = fm.demographic_differentials(fmr_g, fnmr_g)
        for key, value in diff.items():
            records.append(MetricRecord(key, value, None, len(same), tconv, higher_is_better=False, unit="ratio"))
        fdr = fm.fairness_discrepancy_rate(fmr_g, fnmr_g, alpha=p.fdr_alpha)
        records.append(MetricRecord(f"fdr[alpha={p.fdr_alpha:g}]", fdr, None, len(same), tconv, headline=True,
                                    higher_is_better=True, unit="score"))
        details = {"accuracy": acc, "fmr": fmr_g, "fnmr": fnmr_g, "threshold": float(threshold), **stats}
        return records, details, warnings


def fold_table(ds, same: np.ndarray, folds: np.ndarray) -> tuple[list[dict], dict]:
    """One row per fold the pair list names (``content_tag["pairs_missing"]`` of the pair loaders, else the
    folds of the pairs evaluated): pairs listed, evaluated (genuine / impostor), missing, and whether the fold
    is evaluated or absent (no complete pair); plus the coverage summary."""
    report = ds.content_tag.get("pairs_missing") if isinstance(ds.content_tag, dict) else None
    listed = {r["fold"]: r for r in (report or {}).get("folds", [])}
    rows = []
    for f in sorted(set(listed) | set(np.unique(folds).tolist())):
        mine = folds == f
        miss = listed.get(f, {"listed": int(mine.sum()), "missing": 0, "genuine_missing": 0, "impostor_missing": 0})
        rows.append({"fold": int(f), "listed": miss["listed"], "evaluated": int(mine.sum()),
                     "genuine": int((mine & same).sum()), "impostor": int((mine & ~same).sum()),
                     "missing": miss["missing"], "genuine_missing": miss["genuine_missing"],
                     "impostor_missing": miss["impostor_missing"],
                     "status": "evaluated" if mine.any() else "absent"})
    present = [r for r in rows if r["status"] == "evaluated"]
    absent = [r for r in rows if r["status"] == "absent"]
    coverage = {"n_folds": len(present), "folds_evaluated": [r["fold"] for r in present],
                "folds_absent": [r["fold"] for r in absent], "listed": sum(r["listed"] for r in present),
                "evaluated": int(len(same)), "missing": sum(r["missing"] for r in present),
                "listed_in_absent_folds": sum(r["listed"] for r in absent)}
    coverage["summary"] = describe_missing({"folds": rows})
    return rows, coverage


def coverage_records(coverage: dict, conv: dict) -> list:
    """Headline counts: pairs missing in the folds evaluated, and the number of folds evaluated."""
    cconv = {**conv, "folds_evaluated": coverage["folds_evaluated"], "folds_absent": coverage["folds_absent"],
             "pairs_in_absent_folds": coverage["listed_in_absent_folds"], "summary": coverage["summary"]}
    return [MetricRecord("pairs_missing", coverage["missing"], None, coverage["listed"],
                         {**cconv, "rule": "pairs of the folds evaluated with an absent image (left out)"},
                         headline=True, higher_is_better=False, unit="count"),
            MetricRecord("folds_evaluated", coverage["n_folds"], None, coverage["evaluated"],
                         {**cconv, "rule": "folds with at least one complete pair; thresholds of each from the "
                                           "other folds evaluated"},
                         headline=True, higher_is_better=True, unit="count")]


def no_face_report(ctx: EvalContext, a: np.ndarray, b: np.ndarray, conv: dict) -> tuple[list, dict, list]:
    """Images where the model found no face (its ``face_detected`` output, 0 = no face; models without it
    report nothing): counts on the images, on their mirrored copies and pairs touching one."""
    found = ctx.predictions.outputs.get("face_detected")
    if found is None:
        return [], {"reported": False, "reason": "the model does not report face detection"}, []
    ds = ctx.dataset
    none = np.asarray(found).reshape(-1) < 0.5
    pairs = int((none[a] | none[b]).sum())
    details = {"reported": True, "images": int(len(none)), "no_face_images": int(none.sum()),
               "pairs_with_a_no_face_image": pairs, "no_face_ids": ds.ids[none][:50].tolist()}
    flipped = ctx.extras.get("flipped")
    if flipped is not None and flipped.predictions is not None and "face_detected" in flipped.predictions.outputs:
        mirrored = np.asarray(flipped.predictions.align(ds.ids).outputs["face_detected"]).reshape(-1) < 0.5
        details["no_face_images_mirrored"] = int(mirrored.sum())
    fconv = {**conv, "rule": "images whose face detector found no face (the model then embeds its fallback)",
             **{k: v for k, v in details.items() if k not in ("reported", "no_face_ids")}}
    records = [MetricRecord("no_face_images", int(none.sum()), None, int(len(none)), fconv, headline=True,
                            higher_is_better=False, unit="count")]
    warnings = [f"{ds.name}/{ds.split}: no face found in {int(none.sum())} of {len(none)} images "
                f"({pairs} pairs use one); the model embedded its fallback"] if none.any() else []
    return records, details, warnings


def _thin(x, y, max_points: int = 512) -> dict:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) > max_points:
        keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y = x[keep], y[keep]
    return {"x": x.tolist(), "y": y.tolist()}
