"""Step 3, evaluate: every planned task's protocol over the stored predictions of its splits.

A pure step: it reads the ``SplitWork`` that ``execute`` filled and returns an ``Evaluation`` (one
``TaskOutcome`` per task, the metric records of results.json, per-sample outcomes, timings and store keys for
the manifest); it writes nothing. A protocol that raises fails its own task (exit code 1); the others' results
are kept. When no task was evaluated the exit code is 3 (``EXIT_NOTHING_EVALUATED``).
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from facebench.errors import EXIT_NOTHING_EVALUATED, EXIT_OK, EXIT_TASK_FAILED
from facebench.pipeline.counts import sample_counts
from facebench.pipeline.plan import PlannedTask, SplitWork
from facebench.pipeline.reuse import EvaluationReuse, evaluation_key, reusable
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.records import TaskOutcome
from facebench.report.figure_index import as_stored


@dataclass
class Evaluation:
    """What the evaluate step returns; ``outcomes`` in the suite's task order."""

    outcomes: list[TaskOutcome] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # results.json ``records``
    samples: dict = field(default_factory=dict)  # task -> per-sample outcomes (samples.npz)
    timings: dict = field(default_factory=dict)  # task -> seconds (manifest)
    store_keys: dict = field(default_factory=dict)  # task -> store key (manifest)
    exit_code: int = EXIT_OK


def debug_traceback() -> str:
    """The current exception's traceback under ``FACEBENCH_DEBUG=1``, else '' (users see one line)."""
    return f"\n{traceback.format_exc()}" if os.environ.get("FACEBENCH_DEBUG") == "1" else ""


def evaluate_tasks(planned: list[PlannedTask], work: dict[str, SplitWork], adapter, model: str, defaults: dict,
                   log: Callable[[str], None], reuse: EvaluationReuse | None = None) -> Evaluation:
    """Evaluate every runnable task of ``model`` (its name in the records); skipped tasks get their
    ``skipped`` outcome. With ``reuse``, a task whose inputs, parameters and code are unchanged reads its
    protocol result back (``facebench.pipeline.reuse``) instead of computing it again."""
    result = Evaluation()
    for item in planned:
        if item.status != "ok":
            result.outcomes.append(TaskOutcome(item.task.to_dict(), "skipped", item.reason))
            continue
        t0 = time.perf_counter()
        outcome, records, samples, reused = _evaluate_task(item, work, adapter, model, defaults, log, reuse)
        result.outcomes.append(outcome)
        result.records += records
        if samples is not None:
            result.samples[item.task.name] = samples
        if outcome.status == "failed":
            result.exit_code = EXIT_TASK_FAILED
        _account(result, item, work, time.perf_counter() - t0, reused)
    if result.exit_code == EXIT_OK and not any(o.status == "ok" for o in result.outcomes):
        result.exit_code = EXIT_NOTHING_EVALUATED  # the run folder is still written: it records why
        log("nothing was evaluated: every task was skipped ("
            + "; ".join(f"{o.task['name']}: {o.reason}" for o in result.outcomes) + ")")
    return result


def _evaluate_task(item: PlannedTask, work: dict[str, SplitWork], adapter, model: str, defaults: dict,
                   log: Callable[[str], None], reuse: EvaluationReuse | None
                   ) -> tuple[TaskOutcome, list[dict], dict | None, bool]:
    own = work[item.task.ref.key()]
    extras = {role: ExtraSplit(work[ref.key()].dataset, work[ref.key()].preds) for role, ref in item.refs.items()}
    ctx = EvalContext(dataset=own.dataset, predictions=own.preds, head=item.head,
                      head_labels=adapter.heads[item.head].labels if item.head else (), seed=defaults["seed"],
                      n_resamples=defaults["bootstrap"], confidence=defaults["confidence"], extras=extras,
                      input_size=tuple(adapter.input_spec.size),
                      head_scheme=getattr(adapter.heads[item.head], "scheme", None) if item.head else None)
    fps = _fingerprints(item, own, extras, adapter)
    described = dict(task=item.task.to_dict(), head=item.head, fingerprints=fps, n=len(own.dataset),
                     extra_splits=_extra_splits(item, work) or None,
                     skipped_extra_splits=dict(item.skipped_refs) or None, bad_images=own.bad_images,
                     detection=own.detection, sample_counts=sample_counts(own.dataset, own.preds, own.bad_images))
    reuse = reuse if reuse is not None and reusable(item.protocol) else None
    key = evaluation_key(item.protocol, ctx) if reuse is not None else None
    result = reuse.get(key) if reuse is not None else None
    reused = result is not None
    if result is None:
        try:
            result = item.protocol.evaluate(ctx)
        except Exception as err:  # keep the other tasks' results
            log(f"task {item.task.name} failed: {type(err).__name__}: {err}{debug_traceback()}")
            return TaskOutcome(status="failed", reason=f"{type(err).__name__}: {err}", **described), [], None, False
        result.details = as_stored(result.details)  # as results.json holds them: a reused result is the same
        if reuse is not None:
            reuse.put(key, result)
    warnings = [*result.warnings, *interval_warnings(result.records)]
    for w in warnings:
        log(f"warning ({item.task.name}): {w}")
    where = {"task": item.task.name, "dataset": own.dataset.name, "split": own.dataset.split,
             "protocol": item.task.protocol, "model": model}
    records = [{**where, **rec.to_dict(), "fingerprints": fps} for rec in result.records]
    outcome = TaskOutcome(status="ok", details=result.details, warnings=tuple(warnings), **described)
    return outcome, records, result.samples, reused


def interval_warnings(records) -> list[str]:
    """One warning per record whose value lies outside its own interval: an estimator biased at this sample size
    (ECE reads high on few samples, and its resamples higher still), whose percentile interval then shows the
    resampled statistic's spread, not a range for the value."""
    out = []
    for rec in records:
        if rec.ci is None or rec.value is None:
            continue
        lo, hi = rec.ci
        if all(math.isfinite(x) for x in (rec.value, lo, hi)) and not lo <= rec.value <= hi:
            out.append(f"{rec.metric} = {rec.value:.4g} lies outside its own interval [{lo:.4g}, {hi:.4g}]: the "
                       f"estimate is biased at this sample size, so the interval shows the resampled statistic's "
                       f"spread, not a range for the value; quote it with care")
    return out


def _fingerprints(item: PlannedTask, own: SplitWork, extras: dict, adapter) -> dict:
    fps = {"dataset": own.dataset.fingerprint(), "model": adapter.fingerprint(),
           "protocol": item.protocol.fingerprint(), "preprocess": adapter.input_spec.fingerprint()}
    if extras:
        fps["extra_datasets"] = {role: e.dataset.fingerprint() for role, e in sorted(extras.items())}
    annotations = own.dataset.annotations_fingerprint()  # attributes and pairs: absent when the split has none
    if annotations is not None:
        fps["annotations"] = annotations
    extra_annotations = {role: e.dataset.annotations_fingerprint() for role, e in sorted(extras.items())}
    if any(v is not None for v in extra_annotations.values()):
        fps["extra_annotations"] = {role: v for role, v in extra_annotations.items() if v is not None}
    return fps


def _extra_splits(item: PlannedTask, work: dict[str, SplitWork]) -> dict:
    """role -> the split read, its sample count and (when any) its left-out unreadable images."""
    out = {}
    for role, ref in item.refs.items():
        unit = work[ref.key()]
        out[role] = {**ref.to_dict(), "n": len(unit.dataset)}
        if unit.bad_images:
            out[role]["bad_images"] = unit.bad_images
    return out


def _account(result: Evaluation, item: PlannedTask, work: dict[str, SplitWork], evaluate_s: float,
             reused: bool) -> None:
    """The task's timings and store keys, for the manifest."""
    own = work[item.task.ref.key()]
    report = own.report
    result.timings[item.task.name] = {"inference_s": round(report.seconds, 3), "reused": report.reused,
                                      "resumed_samples": report.resumed_samples,
                                      "computed_samples": report.computed_samples, "load_s": round(own.load_s, 3),
                                      "evaluate_s": round(evaluate_s, 3), "evaluation_reused": reused}
    result.store_keys[item.task.name] = report.key
    extra_keys = {role: work[ref.key()].report.key for role, ref in item.refs.items() if ref.predictions}
    if extra_keys:
        result.store_keys[f"{item.task.name}:extra"] = extra_keys
