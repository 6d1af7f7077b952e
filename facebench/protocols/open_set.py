"""Open-set FER: can the model tell expressions it knows from ones it does not?

Two modes (``mode``):

* ``unknown_classes`` -- the model is used as it is. Known = samples of the task split whose class
  the model's head has; unknown = samples of the other dataset classes (``unknown_classes``
  overrides the list; e.g. contempt on CK+, AffectNet-8, FERPlus-8) plus every sample of the
  ``unknowns`` splits (other datasets, RAF-DB compound expressions, non-faces). Known samples count
  as correct when the argmax of the head's logits is their class.
* ``leave_one_out`` -- the open-set FER paper's one-class protocol (AAAI 2024, spec §4): for each
  class k, a linear probe (multinomial logistic regression, ``probe_C``) is fitted on the frozen
  features of the ``fit_split`` without class k; the pool is the task split plus the ``fit_split``
  samples of class k (``pool: test+train_k``, the paper's transductive pool; ``pool: test`` uses
  the task split alone). Known = pool samples of the other classes, unknown = those of class k;
  per k: AUROC, FPR@TPR95 in both conventions, OSCR and the probe's closed-set accuracy on the
  known samples; then the Mean row (arithmetic mean over k, as the paper's table). Large runs (pool
  rows x resamples x classes >= ``PROCESS_WORK``) evaluate the classes in forked worker processes on
  Linux: each class's numbers come from its own inputs and seed, so they are the same bits.

Scores (``score``, higher = known): ``msp``, ``max_logit``, ``energy`` (``temperature``),
``entropy`` (negative entropy) of the logits (the head's, or the probe's in ``leave_one_out``);
or feature detectors fitted on the ``fit_split``'s stored features of known classes:
``mahalanobis`` (class means, shared covariance) and ``knn`` (cosine, ``knn_k``); in
``leave_one_out`` also ``vim`` (virtual-logit matching with the probe as the classifier, on its
standardised features).

Metrics name their conventions in the key: ``auroc``; ``fpr@tpr95[pos=known,rule=interp]`` (the
``ood_metrics`` rule that the open-set FER paper used); ``fpr@tpr95[pos=unknown,rule=first]``
(OpenOOD v1.5, pytorch-ood); ``aupr[pos=...,method=ap|trapezoid]`` (trapezoid = OpenOOD-compatible);
``detection_error``; ``oscr`` and ``ccr@fpr<x>`` (Dhamija et al. 2018). CIs: percentile bootstrap
that resamples known and unknown samples separately (stratified, so no resample lacks a group).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import ood
from facebench.metrics import ood_scores as osc
from facebench.metrics._threads import map_blocks
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice, split_ref
from facebench.records import Requirements

LOGIT_SCORES = tuple(osc.LOGIT_SCORES)
_SCORE_ROWS = 1 << 14  # logit rows scored at once
FEATURE_SCORES = ("mahalanobis", "knn")
PROBE_SCORES = ("vim",)  # need a linear classifier on the features: the leave-one-out probe


def _fpr_tag(x: float) -> str:
    return f"ccr@fpr{x:g}"


def metric_kind(key: str) -> dict:
    """Direction and unit of a key of :func:`open_set_metrics` (this protocol names its own metrics):
    AUROC / AUPR / OSCR are areas (higher is better), FPR@TPR and detection error are error rates (lower
    is better), CCR@FPR a rate (higher is better), closed-set accuracy a fraction (higher is better)."""
    if key == "closed_set_accuracy":
        return {"higher_is_better": True, "unit": "fraction"}
    if key.startswith(("fpr@", "detection_error")):
        return {"higher_is_better": False, "unit": "rate"}
    if key.startswith("ccr@"):
        return {"higher_is_better": True, "unit": "rate"}
    if key.startswith(("auroc", "aupr", "oscr")):
        return {"higher_is_better": True, "unit": "score"}
    raise KeyError(f"open_set: no direction and unit declared for metric {key!r}")


def open_set_metrics(known, known_correct, unknown, tpr: float = 0.95, ccr_fprs=()) -> dict[str, float]:
    """Every open-set metric of one known/unknown split of scores (keys carry the conventions)."""
    return _scored(known, known_correct, unknown, tpr, ccr_fprs)[0]


def _scored(known, known_correct, unknown, tpr, ccr_fprs, curves=False) -> tuple[dict[str, float], dict]:
    """:func:`open_set_metrics` and (``curves``) the thinned ROC and OSCR curves for the details, all from one
    sort (the sorted data is dropped on return, before any bootstrap)."""
    ranking = ood.rank_scores(known, unknown, known_correct)
    out = ood.ranking_metrics(ranking, tpr)
    out["oscr"] = ranking.oscr()
    for x in ccr_fprs:
        out[_fpr_tag(x)] = ranking.ccr_at_fpr(x)
    out["closed_set_accuracy"] = float(np.mean(known_correct))
    if not curves:
        return out, {}
    return out, {"roc": _curve(ranking.roc("known")), "oscr_curve": _curve(ranking.oscr_curve())}


class OpenSetProtocol(Protocol):
    """Open-set FER: known vs unknown expressions (unknown classes or leave-one-class-out), AUROC, FPR@95, OSCR"""

    name = "open_set"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        mode: str = choice("unknown_classes", ("unknown_classes", "leave_one_out"))
        score: str = choice("msp", LOGIT_SCORES + FEATURE_SCORES + PROBE_SCORES)
        temperature: float = 1.0
        knn_k: int = 50
        fit_split: Any = "train"
        unknown_classes: list | None = None
        unknowns: list = field(default_factory=list)
        open_classes: list | None = None
        pool: str = choice("test+train_k", ("test+train_k", "test"))
        probe_C: float = 1.0
        tpr: float = 0.95
        ccr_fprs: list = field(default_factory=lambda: [0.01, 0.1])

    def _feature_based(self) -> bool:
        return self.params.mode == "leave_one_out" or self.params.score in FEATURE_SCORES

    RANGES = {"temperature": (1e-12, None), "knn_k": (1, None), "probe_C": (1e-12, None), "tpr": (0, 1)}
    ROLE_NEEDS = {"fit": {"labels"}}  # detectors and probes fit on known classes; unknown splits need no labels

    def requirements(self, task=None) -> Requirements:
        p = self.params
        if p.mode == "leave_one_out":
            unknowns = "leave-one-out"
        elif p.unknowns:
            unknowns = "splits"
        elif p.unknown_classes is None:
            unknowns = "dataset-classes"  # the task's classes that the head lacks (facebench.compat checks them)
        else:
            unknowns = "classes" if p.unknown_classes else "none"
        named = tuple(str(c) for c in (p.open_classes if p.mode == "leave_one_out" else p.unknown_classes) or ())
        return Requirements(head_name=p.head, features=self._feature_based(), fit_split=self._feature_based(),
                            unknowns=unknowns, unknown_classes=named)

    def requires(self, task) -> dict:
        p = self.params
        refs = {}
        if self._feature_based():
            if p.fit_split is None:
                raise ConfigError(f"task {task.name!r}: open_set with mode {p.mode!r} and score {p.score!r} needs a "
                                  f"`fit_split` (the training split whose stored features it fits on).")
            refs["fit"] = split_ref(p.fit_split, f"task {task.name!r}: fit_split", task, predictions=True,
                                    features=True)
        if p.score in PROBE_SCORES and p.mode != "leave_one_out":
            raise ConfigError(f"task {task.name!r}: score {p.score!r} needs a linear classifier on the features; it is "
                              f"available with mode: leave_one_out (the probe), not with the model's own head.")
        if p.mode == "leave_one_out" and p.unknowns:
            raise ConfigError(f"task {task.name!r}: `unknowns` applies to mode unknown_classes only.")
        if not isinstance(p.unknowns, list):
            raise ConfigError(f"task {task.name!r}: `unknowns` must be a list of {{dataset, split, ...}}.")
        for i, ref in enumerate(p.unknowns):
            refs[f"unknown:{i}"] = split_ref(ref, f"task {task.name!r}: unknowns[{i}]", None, predictions=True,
                                             features=self._feature_based())
        return refs

    # -- scoring ----------------------------------------------------------------------------------
    def _logit_scores(self, logits) -> np.ndarray:
        """The score of each row of ``logits``, ``_SCORE_ROWS`` rows at a time (bounds the softmax's temporaries),
        the blocks in threads (large inputs); the scores are row-wise, so the values are those of one call; an
        error names the row in the whole array."""
        p, logits = self.params, np.asarray(logits)
        if logits.ndim != 2 or logits.shape[0] <= _SCORE_ROWS:
            return osc.logit_score(p.score, logits, temperature=p.temperature)
        try:
            return np.concatenate(map_blocks(lambda lo, hi: osc.logit_score(p.score, logits[lo:hi],
                                                                            temperature=p.temperature),
                                             logits.shape[0], _SCORE_ROWS))
        except MetricInputError:
            return osc.logit_score(p.score, logits, temperature=p.temperature)  # raises with the global row

    def _detector(self, features: np.ndarray, labels: np.ndarray):
        if self.params.score == "mahalanobis":
            return osc.Mahalanobis().fit(features, labels)
        k = min(self.params.knn_k, len(features))
        return osc.KNNScore(k=k).fit(features, labels)

    def _conventions(self, ctx: EvalContext) -> dict:
        p = self.params
        conv = {"mode": p.mode, "score": p.score, "higher_is": "known",
                "bootstrap": f"percentile,resamples={ctx.n_resamples},stratified=known|unknown,seed={ctx.seed}",
                "confidence": ctx.confidence}
        if p.score == "energy":
            conv["temperature"] = p.temperature
        if p.score == "knn":
            conv["knn"] = f"k={p.knn_k},cosine"
        return conv

    def _records(self, prefix_tag: str, known, correct, unknown, ctx, conv, seed_offset=0, headline=False):
        p = self.params
        values, curves = _scored(known, correct, unknown, p.tpr, p.ccr_fprs, curves=headline)
        boots = (ood.bootstrap_open_set(known, correct, unknown, p.tpr, ctx.n_resamples, ctx.seed + seed_offset)
                 if ctx.n_resamples > 0 else {})
        n = len(known) + len(unknown)
        records = []
        for key, value in values.items():
            name = _tag(key, prefix_tag)
            ci = bs.percentile_interval(boots[key], ctx.confidence) if key in boots else None
            records.append(MetricRecord(name, value, ci, len(known) if key == "closed_set_accuracy" else n,
                                        {**conv, "n_known": len(known), "n_unknown": len(unknown)},
                                        headline=headline and key in ("auroc", "fpr@tpr95[pos=known,rule=interp]"),
                                        **metric_kind(key)))
        return values, boots, records, curves

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, ctx: EvalContext) -> TaskResult:
        if ctx.dataset.labels is None:
            raise MetricInputError(f"open_set needs labels; dataset {ctx.dataset.name}/{ctx.dataset.split} has none")
        if self.params.mode == "leave_one_out":
            return self._leave_one_out(ctx)
        return self._unknown_classes(ctx)

    def _unknown_classes(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        ds, model_classes = ctx.dataset, tuple(ctx.head_labels)
        unknown_classes = list(p.unknown_classes) if p.unknown_classes is not None else \
            [c for c in ds.classes if c not in model_classes]
        bad = [c for c in unknown_classes if c not in ds.classes]
        if bad:
            raise ConfigError(f"unknown_classes {bad} are not classes of {ds.name} ({', '.join(ds.classes)})")
        labels = ds.labels
        masks = {c: labels == c for c in dict.fromkeys([*unknown_classes, *model_classes])}  # one pass per class
        is_unknown = _any_class(masks, unknown_classes, len(labels))
        is_known = ~is_unknown & _any_class(masks, model_classes, len(labels))
        logits = np.asarray(ctx.predictions.outputs[ctx.head])  # scored in row blocks, as float64
        feats = ctx.predictions.outputs.get("features")
        unknown_parts = [("task", int(is_unknown.sum()))]

        if p.score in FEATURE_SCORES:
            fit = ctx.extras["fit"]
            fit_known = np.isin(fit.dataset.labels, model_classes) & ~np.isin(fit.dataset.labels, unknown_classes)
            fit_y = np.array([model_classes.index(c) for c in fit.dataset.labels[fit_known]])
            detector = self._detector(np.asarray(fit.predictions.outputs["features"], np.float64)[fit_known], fit_y)
            scores = detector.score(np.asarray(feats, np.float64))
        else:
            scores = self._logit_scores(logits)
        unknown_scores = [scores[is_unknown]]
        for role, extra in ctx.extras.items():
            if role.startswith("unknown:"):
                out = extra.predictions.outputs
                s = detector.score(np.asarray(out["features"], np.float64)) if p.score in FEATURE_SCORES else \
                    self._logit_scores(out[ctx.head])
                unknown_scores.append(s)
                unknown_parts.append((f"{extra.dataset.name}/{extra.dataset.split}", len(s)))
        unknown = np.concatenate(unknown_scores)
        known = scores[is_known]
        if len(known) == 0 or len(unknown) == 0:
            raise MetricInputError(f"open_set needs known and unknown samples; got {len(known)} known and "
                                   f"{len(unknown)} unknown (unknown classes {unknown_classes}, {len(p.unknowns)} "
                                   f"unknown splits). Name the unknown classes with `unknown_classes` or add "
                                   f"`unknowns` splits.")
        correct = _argmax_is_label(logits, labels, model_classes, masks)[is_known]
        conv = {**self._conventions(ctx), "unknown_classes": unknown_classes,
                "unknown_sources": [s for s, _ in unknown_parts],
                "known": "task samples of classes the head has", "correct": "argmax of the head == true class"}
        values, _, records, curves = self._records("", known, correct, unknown, ctx, conv, headline=True)
        details = {"n_known": int(len(known)), "n_unknown": int(len(unknown)), "unknown_classes": unknown_classes,
                   "unknown_sources": [{"source": s, "n": n} for s, n in unknown_parts],
                   "metrics": values,
                   **curves}
        return TaskResult(records, details, [])

    def _leave_one_out(self, ctx: EvalContext) -> TaskResult:
        job = self._loo_setup(ctx)
        outs = _per_open_class(self, ctx, job)  # [(row, records, bootstrap, warning)], open_classes order
        rows = [row for row, _, _, _ in outs]
        mean, mean_records = self._loo_mean(rows, [boots for _, _, boots, _ in outs], job, ctx)
        records = [rec for _, recs, _, _ in outs for rec in recs] + mean_records
        details = {"table": rows + [{"open_class": "Mean", **mean}], "open_classes": job.open_classes}
        return TaskResult(records, details, [warning for *_, warning in outs if warning])

    def _loo_setup(self, ctx: EvalContext) -> "_LeaveOneOut":
        """The checked inputs of the leave-one-out mode: float64 features, labels, classes and conventions."""
        p = self.params
        ds, fit = ctx.dataset, ctx.extras["fit"]
        if "features" not in ctx.predictions.outputs:
            raise MetricInputError("leave_one_out needs the model's features; this adapter exposes none")
        if fit.dataset.labels is None:
            raise MetricInputError(f"fit_split {fit.dataset.name}/{fit.dataset.split} has no labels")
        test_x = np.asarray(ctx.predictions.outputs["features"], np.float64)
        train_x = np.asarray(fit.predictions.outputs["features"], np.float64)
        test_y, train_y = ds.labels, fit.dataset.labels
        classes = [c for c in ds.classes if np.any(test_y == c) or np.any(train_y == c)]
        open_classes = list(p.open_classes) if p.open_classes is not None else classes
        bad = [c for c in open_classes if c not in classes]
        if bad:
            raise ConfigError(f"open_classes {bad} have no samples in {ds.name} (classes: {', '.join(classes)})")
        conv = {**self._conventions(ctx), "pool": p.pool, "probe": f"multinomial logistic regression, C={p.probe_C},"
                f" standardised features, L-BFGS", "fit_split": f"{fit.dataset.name}/{fit.dataset.split}"}
        return _LeaveOneOut(test_x, train_x, test_y, train_y, classes, open_classes, conv)

    def _open_class(self, ctx: EvalContext, job: "_LeaveOneOut", j: int) -> tuple[dict, list, dict, str | None]:
        """Open class ``job.open_classes[j]``: its table row, records, bootstrap arrays and warning (or None)."""
        p, k = self.params, job.open_classes[j]
        closed = [c for c in job.classes if c != k]
        index = {c: i for i, c in enumerate(closed)}
        tr = (job.train_y != k) & np.isin(job.train_y, closed)
        fit_x, fit_y = job.train_x[tr], np.array([index[c] for c in job.train_y[tr]])
        probe = osc.LinearProbe(C=p.probe_C).fit(fit_x, fit_y, n_classes=len(closed))
        warning = None if probe.converged else f"open class {k}: the linear probe did not converge"
        pool_x = job.test_x if p.pool == "test" else np.concatenate([job.test_x, job.train_x[job.train_y == k]])
        pool_y = job.test_y if p.pool == "test" else np.concatenate([job.test_y, job.train_y[job.train_y == k]])
        logits = probe.logits(pool_x)
        if p.score in FEATURE_SCORES:
            scores = self._detector(fit_x, fit_y).score(pool_x)
        elif p.score == "vim":  # on the probe's standardised feature space, with its weights
            vim = osc.ViM().fit(probe._transform(fit_x), probe.coef_, probe.intercept_)
            scores = vim.score(probe._transform(pool_x))
        else:
            scores = self._logit_scores(logits)
        is_unknown = pool_y == k
        is_known = np.isin(pool_y, closed)
        correct = _argmax_is_label(logits, pool_y, closed)[is_known]
        values, boots, recs, _ = self._records(f"open={k}", scores[is_known], correct, scores[is_unknown], ctx,
                                               {**job.conv, "open_class": k}, seed_offset=j)
        row = {"open_class": k, "n_known": int(is_known.sum()), "n_unknown": int(is_unknown.sum()), **values}
        return row, recs, boots, warning

    def _loo_mean(self, rows: list, boot_rows: list, job: "_LeaveOneOut", ctx: EvalContext) -> tuple[dict, list]:
        """The Mean row (arithmetic mean over the open classes) and its records; a CI from the mean of the
        classes' bootstrap arrays (same resample index) where every class has one."""
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key not in
                ("open_class", "n_known", "n_unknown")}
        records = []
        for key, value in mean.items():
            ci = None
            if boot_rows and all(key in b for b in boot_rows):
                ci = bs.percentile_interval(np.mean(np.stack([b[key] for b in boot_rows]), axis=0), ctx.confidence)
            records.append(MetricRecord(_tag(key, "mean"), value, ci, None,
                                        {**job.conv, "definition": "arithmetic mean over the open classes",
                                         "open_classes": job.open_classes},
                                        headline=key in ("auroc", "fpr@tpr95[pos=known,rule=interp]"),
                                        **metric_kind(key)))
        return mean, records


@dataclass
class _LeaveOneOut:
    """Inputs shared by the open classes of one leave-one-out evaluation."""

    test_x: np.ndarray
    train_x: np.ndarray
    test_y: np.ndarray
    train_y: np.ndarray
    classes: list
    open_classes: list
    conv: dict


#: Pool rows x bootstrap resamples (summed over the open classes) from which the open classes are evaluated in
#: forked worker processes; below it, starting them costs more than they save.
PROCESS_WORK = 5_000_000
_worker_state: tuple | None = None  # (protocol, ctx, job) in a worker process


def _per_open_class(proto: OpenSetProtocol, ctx: EvalContext, job: _LeaveOneOut) -> list:
    """``[proto._open_class(ctx, job, j) for each open class j]``, in forked worker processes (one per usable
    CPU, Linux only) when :func:`_class_processes` gives two or more, else here; also here when the workers
    cannot start or die. Each class's numbers come from its own inputs and seed, so they are the same bits
    either way."""
    jobs = range(len(job.open_classes))
    workers = _class_processes(ctx, job)
    if workers < 2:
        return [proto._open_class(ctx, job, j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:  # fork: the workers get the protocol, context and arrays without pickling them
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_set_worker_state, initargs=(proto, ctx, job))
    except (OSError, ValueError):  # no fork start method, no POSIX semaphores
        return [proto._open_class(ctx, job, j) for j in jobs]
    try:
        with warnings.catch_warnings():  # Python >= 3.12 warns on fork in a process with threads: the workers
            # run NumPy/SciPy on inherited arrays only, taking no lock another thread may hold
            warnings.filterwarnings("ignore", message=".*multi-threaded, use of fork", category=DeprecationWarning)
            futures = [pool.submit(_open_class_in_worker, j) for j in jobs]
        return [future.result() for future in futures]
    except (OSError, BrokenProcessPool):  # fork failed, or a worker died (e.g. killed): evaluate here
        return [proto._open_class(ctx, job, j) for j in jobs]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _class_processes(ctx: EvalContext, job: _LeaveOneOut) -> int:
    """Worker processes for the open classes: the usable CPUs (at most one per class) on Linux when the pool
    rows times the resamples reach :data:`PROCESS_WORK`; 0 in a daemonic process (it may have no children)."""
    import multiprocessing

    if not sys.platform.startswith("linux") or multiprocessing.current_process().daemon:
        return 0
    work = len(job.open_classes) * (len(job.test_x) + len(job.train_x) // max(1, len(job.classes))) \
        * max(1, ctx.n_resamples)
    return min(len(os.sched_getaffinity(0)), len(job.open_classes)) if work >= PROCESS_WORK else 0


def _set_worker_state(proto, ctx, job) -> None:
    global _worker_state
    _worker_state = (proto, ctx, job)


def _open_class_in_worker(j: int):
    proto, ctx, job = _worker_state
    return proto._open_class(ctx, job, j)


def _argmax_is_label(logits: np.ndarray, labels: np.ndarray, classes, masks: dict | None = None) -> np.ndarray:
    """Per row: is ``classes[argmax(logits)]`` the row's label (compared class by class: no string copies;
    ``masks[c]``, when given, is ``labels == c``)."""
    pred = logits.argmax(axis=1)
    hit = np.zeros(labels.shape[0], dtype=bool)
    for i, c in enumerate(classes):
        hit |= (pred == i) & (labels == c if masks is None else masks[c])
    return hit


def _any_class(masks: dict, classes, n: int) -> np.ndarray:
    """``np.isin(labels, classes)`` from the per-class masks ``labels == c``."""
    out = np.zeros(n, dtype=bool)
    for c in classes:
        out |= masks[c]
    return out


def _tag(key: str, tag: str) -> str:
    """Add a tag to a metric key: ``auroc`` -> ``auroc[open=fear]``; ``fpr@tpr95[pos=known,rule=interp]`` ->
    ``fpr@tpr95[pos=known,rule=interp,open=fear]``."""
    if not tag:
        return key
    return key[:-1] + f",{tag}]" if key.endswith("]") else f"{key}[{tag}]"


def _curve(arrays, max_points: int = 512) -> dict:
    """A curve for reports, thinned to at most ``max_points`` points (first and last kept); +-inf -> None."""
    x, y, t = (np.asarray(a, dtype=np.float64) for a in arrays)
    if len(x) > max_points:
        keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
        x, y, t = x[keep], y[keep], t[keep]
    clean = lambda a: [None if not np.isfinite(v) else float(v) for v in a.tolist()]  # noqa: E731
    return {"x": clean(x), "y": clean(y), "thresholds": clean(t)}
