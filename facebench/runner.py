"""Run a suite: check every task's data, load the model once, predict each split once into the
store, evaluate every task from the stored predictions, and write the run folder."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import facebench
from facebench.errors import ConfigError, DatasetNotFoundError, FacebenchError
from facebench.fingerprint import hash_object
from facebench.suite import Suite, _check_kwargs, load_suite, make_loader, make_protocol


@dataclass
class RunOutcome:
    out_dir: Path
    results: dict
    manifest: dict
    leaderboard: str
    exit_code: int = 0


@dataclass
class _Planned:
    task: Any
    protocol: Any
    loader: Any = None
    status: str = "ok"
    reason: str = ""
    head: str | None = None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def default_out_dir(suite: Suite, model: str, root: Path = Path("reports")) -> Path:
    return root / suite.name / model


def choose_out_dir(suite: Suite, model: str, out: str | Path | None, force: bool,
                   log: Callable[[str], None] = _stderr) -> Path:
    """An explicit --out that holds results is refused unless --force; the default folder moves
    on to ``<model>-2``, ``<model>-3`` ... so that an earlier run is never overwritten silently."""
    if out is not None:
        out = Path(out)
        if (out / "results.json").exists() and not force:
            raise ConfigError(f"{out}/results.json exists from an earlier run. Pass --force to overwrite it, "
                              f"or choose another --out folder.")
        return out
    base = default_out_dir(suite, model)
    if force or not (base / "results.json").exists():
        return base
    k = 2
    while (base.parent / f"{base.name}-{k}" / "results.json").exists():
        k += 1
    chosen = base.parent / f"{base.name}-{k}"
    log(f"note: {base} holds an earlier run; writing to {chosen} (use --force to overwrite, or --out DIR)")
    return chosen


def make_model(name: str, model_args: dict):
    from facebench.registry import MODELS

    factory = MODELS.get(name)
    _check_kwargs(factory, model_args, f"model {name!r} (--model-args)")
    return factory(**model_args)


def run_suite(suite_path: str | Path, model: str | None = None, model_args: dict | None = None,
              overrides: dict | None = None, out: str | Path | None = None, force: bool = False,
              cache_dir: str | Path | None = None, progress: bool = True,
              log: Callable[[str], None] = _stderr) -> RunOutcome:
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.engine.store import PredictionStore
    from facebench.protocols.base import EvalContext
    from facebench.report.leaderboard import leaderboard_markdown
    from facebench.report.results import SCHEMA_VERSION, git_commit, library_versions, write_run_folder

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    suite = load_suite(suite_path, overrides)
    d = suite.defaults
    model = model or d.get("model")
    if not model:
        raise ConfigError("No model given: pass --model NAME (see `facebench list models`), or set "
                          "`defaults: {model: NAME}` in the suite.")
    model_args = {**(d.get("model_args") or {}), **(model_args or {})}
    out_dir = choose_out_dir(suite, model, out, force, log)

    # 1. everything that can fail cheaply fails before the model is loaded
    planned: list[_Planned] = []
    for task in suite.tasks:
        protocol = make_protocol(task)
        loader = make_loader(task, d.get("data_root"))
        item = _Planned(task, protocol, loader)
        try:
            loader.check(task.split)
        except DatasetNotFoundError as err:
            if d["missing_data"] != "skip":
                raise DatasetNotFoundError(f"task {task.name!r}: {err}\n(nothing was run; set "
                                           f"`defaults: {{missing_data: skip}}` to skip tasks whose data is absent)") from None
            item.status, item.reason = "skipped", str(err).splitlines()[0]
            log(f"skip {task.name}: {item.reason}")
        planned.append(item)

    # 2. the model, once
    adapter = make_model(model, model_args)
    for item in planned:
        item.head = adapter.resolve_heads([item.protocol.params.head] if getattr(item.protocol.params, "head", None)
                                          else None)[0]
    store = PredictionStore(cache_dir)
    settings = InferenceSettings(batch_size=d["batch_size"], device=d["device"], amp=d["amp"],
                                 num_workers=d["num_workers"], shard_size=d["shard_size"],
                                 progress=progress)

    # 3. one prediction per dataset split, shared by every task that needs it
    groups: dict[str, list[_Planned]] = {}
    for item in planned:
        if item.status == "ok":
            key = hash_object([item.task.dataset, item.task.path, item.task.dataset_args, item.task.split])
            groups.setdefault(key, []).append(item)
    task_rows, records, timings, store_keys = {}, [], {}, {}
    exit_code = 0
    for items in groups.values():
        first = items[0].task
        t_load = time.perf_counter()
        try:
            dataset = items[0].loader.load(first.split)
            heads = tuple(sorted({it.head for it in items}))
            features = any(it.protocol.needs().get("features") for it in items)
            preds, report = run_inference(adapter, dataset, store, heads=heads, features=features, settings=settings)
        except FacebenchError:
            raise
        except KeyboardInterrupt:
            log("interrupted: predictions computed so far are kept in the store; run again to resume")
            raise
        for it in items:
            t_eval = time.perf_counter()
            ctx = EvalContext(dataset=dataset, predictions=preds, head=it.head,
                              head_labels=adapter.heads[it.head].labels, seed=d["seed"],
                              n_resamples=d["bootstrap"], confidence=d["confidence"])
            fps = {"dataset": dataset.fingerprint(), "model": adapter.fingerprint(),
                   "protocol": it.protocol.fingerprint(), "preprocess": adapter.input_spec.fingerprint()}
            row = {**it.task.to_dict(), "status": "ok", "head": it.head, "fingerprints": fps, "n": len(dataset)}
            try:
                result = it.protocol.evaluate(ctx)
            except Exception as err:  # keep the other tasks' results
                exit_code = 1
                row.update(status="failed", reason=f"{type(err).__name__}: {err}")
                log(f"task {it.task.name} failed: {err}\n{traceback.format_exc()}")
            else:
                row.update(details=result.details, warnings=result.warnings)
                for w in result.warnings:
                    log(f"warning ({it.task.name}): {w}")
                for rec in result.records:
                    records.append({"task": it.task.name, "dataset": dataset.name, "split": dataset.split,
                                    "protocol": it.task.protocol, "model": model, **rec.to_dict(),
                                    "fingerprints": fps})
            task_rows[it.task.name] = row
            timings[it.task.name] = {"inference_s": round(report.seconds, 3), "reused": report.reused,
                                     "resumed_samples": report.resumed_samples,
                                     "computed_samples": report.computed_samples,
                                     "load_s": round(t_eval - t_load, 3) if it is items[0] else 0.0,
                                     "evaluate_s": round(time.perf_counter() - t_eval, 3)}
            store_keys[it.task.name] = report.key
            if report.reused:
                log(f"{it.task.name}: reused stored predictions ({report.key})")
    for item in planned:
        if item.status != "ok":
            task_rows[item.task.name] = {**item.task.to_dict(), "status": item.status, "reason": item.reason}
    results = {
        "schema_version": SCHEMA_VERSION,
        "facebench_version": facebench.__version__,
        "suite": {"name": suite.name, "fingerprint": hash_object(suite.to_dict())},
        "model": adapter.describe(),
        "settings": {"seed": d["seed"], "bootstrap": d["bootstrap"], "confidence": d["confidence"]},
        "tasks": [task_rows[t.name] for t in suite.tasks],
        "records": records,
        "manifest": "manifest.json",
    }
    leaderboard = leaderboard_markdown(results)
    manifest = {
        "suite_as_run": suite.to_dict(),
        "suite_file": suite.file,
        "command": sys.argv,
        "model": model,
        "model_args": model_args,
        "facebench_version": facebench.__version__,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": str(__import__("facebench.engine.device", fromlist=["x"]).select_device(d["device"])),
        "seeds": {"bootstrap": d["seed"]},
        "cache_dir": str(store.root),
        "store_keys": store_keys,
        "timings": timings,
        "started_utc": started.isoformat(timespec="seconds"),
        "total_s": round(time.perf_counter() - t0, 3),
    }
    write_run_folder(out_dir, results, manifest, leaderboard)
    return RunOutcome(out_dir, results, manifest, leaderboard, exit_code)
