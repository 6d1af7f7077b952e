"""Run a suite: check every task's data, load the model once, predict each split once into the
store, evaluate every task from the stored predictions, and write the run folder."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import facebench
from facebench.errors import (EXIT_NOTHING_EVALUATED, EXIT_OK, EXIT_TASK_FAILED, ConfigError, DatasetNotFoundError,
                              OutputError)
from facebench.fingerprint import hash_object
from facebench.content import set_cache_root as set_hash_cache_root
from facebench.data.scan import predict_screened, screen_splits
from facebench.suite import Suite, _check_kwargs, check_name, check_requirements, load_suite, make_loader, make_protocol


@dataclass
class RunOutcome:
    out_dir: Path
    results: dict
    manifest: dict
    leaderboard: str
    exit_code: int = EXIT_OK


@dataclass
class _Planned:
    task: Any
    protocol: Any
    loader: Any = None
    status: str = "ok"
    reason: str = ""
    head: str | None = None
    refs: dict = field(default_factory=dict)  # role -> SplitRef (other splits the protocol needs)
    ref_loaders: dict = field(default_factory=dict)
    skipped_refs: dict = field(default_factory=dict)  # role -> why (optional splits whose data is absent)


@dataclass
class _Unit:
    """One dataset split to load (and predict, when some task needs its predictions)."""

    ref: Any
    loader: Any
    heads: set = field(default_factory=set)
    predictions: bool = False
    features: bool = False
    dataset: Any = None
    preds: Any = None
    report: Any = None
    load_s: float = 0.0
    bad_images: dict | None = None  # unreadable files left out (on_bad_image: skip)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _debug_traceback() -> str:
    """The current exception's traceback under ``FACEBENCH_DEBUG=1``, else '' (users see one line)."""
    import os

    return f"\n{traceback.format_exc()}" if os.environ.get("FACEBENCH_DEBUG") == "1" else ""


def default_out_dir(suite: Suite, model: str, root: Path = Path("reports")) -> Path:
    return root / suite.name / model


def choose_out_dir(suite: Suite, model: str, out: str | Path | None, force: bool,
                   log: Callable[[str], None] = _stderr) -> Path:
    """Where the run folder goes (the marker rule: ``facebench.outdir``). A file, or a non-empty folder
    that is not a facebench run folder, is always refused; an explicit --out holding an earlier run is
    refused unless --force. The default folder moves on to ``<model>-2``, ``<model>-3`` ... past any
    non-empty folder, so nothing is overwritten silently; with --force it replaces an earlier run."""
    from facebench.outdir import RUN, check_target, is_empty_dir

    if out is not None:
        out = Path(out)
        if check_target(out, RUN) and not force:
            raise OutputError(f"{out} holds an earlier run (results.json exists). Pass --force to replace it, "
                              f"or choose another --out folder.")
        return out
    base = default_out_dir(suite, model)
    if force:
        check_target(base, RUN)
        return base

    def free(path: Path) -> bool:
        return (not path.exists() and not path.is_symlink()) or is_empty_dir(path)

    if free(base):
        check_target(base, RUN)  # fails now, before the model runs, when the folder cannot be created
        return base
    k = 2
    while not free(base.parent / f"{base.name}-{k}"):
        k += 1
    chosen = base.parent / f"{base.name}-{k}"
    check_target(chosen, RUN)
    log(f"note: {base} holds an earlier run; writing to {chosen} (use --force to overwrite, or --out DIR)")
    return chosen


def _split_key(ref) -> str:
    """One key per dataset split (task or extra role): each is loaded, scanned and predicted once."""
    return hash_object([ref.dataset, ref.path, ref.dataset_args, ref.split])


def make_model(name: str, model_args: dict):
    from facebench.registry import MODELS

    factory = MODELS.get(name)
    _check_kwargs(factory, model_args, f"model {name!r} (--model-args)")
    return factory(**model_args)


def run_suite(suite_path: str | Path, model: str | None = None, model_args: dict | None = None,
              overrides: dict | None = None, out: str | Path | None = None, force: bool = False,
              cache_dir: str | Path | None = None, progress: bool = True,
              log: Callable[[str], None] = _stderr, adapter=None, figures: bool = False) -> RunOutcome:
    """Run ``suite_path`` on ``model`` (or on a ready ``adapter``, e.g. ``StoredModel``); with ``figures``
    each task's figures go to ``<out>/figures/`` (the command line does this by default).

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank runs this: all ranks share the inference of
    each split (see ``facebench.engine.distributed``); only rank 0 evaluates the tasks, writes the run
    folder, draws figures and logs. Other ranks return a ``RunOutcome`` with exit code 0, no results,
    no files and an empty leaderboard (``manifest`` holds only ``rank``, ``world_size``, ``total_s``).
    """
    from facebench.engine import distributed as fdist
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.engine.store import PredictionStore, reset_cache_warnings
    from facebench.protocols.base import EvalContext, ExtraSplit
    from facebench.report.leaderboard import leaderboard_markdown
    from facebench.report.results import SCHEMA_VERSION, git_commit, library_versions, write_run_folder
    from facebench.outdir import RUN, write_folder

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    set_hash_cache_root(cache_dir)  # the content hashes' stat cache lives beside the store (None: default)
    suite = load_suite(suite_path, overrides)
    d = suite.defaults
    model = adapter.name if adapter is not None else (model or d.get("model"))
    if not model:
        raise ConfigError("No model given: pass --model NAME (see `facebench list models`), or set "
                          "`defaults: {model: NAME}` in the suite.")
    check_name(model, "model name")  # it names the default run folder
    model_args = {**(d.get("model_args") or {}), **(model_args or {})}
    dist_ctx = fdist.init_from_env(d["device"])
    if not dist_ctx.is_main:  # quiet: rank 0 speaks for the job
        log, progress = (lambda msg: None), False
    out_dir = choose_out_dir(suite, model, out, force, log)
    fdist.barrier()  # every rank has checked the out folder before rank 0 may write into it

    # 1. everything that can fail cheaply fails before the model is loaded
    planned: list[_Planned] = []
    for task in suite.tasks:
        protocol = make_protocol(task)
        loader = make_loader(task, d.get("data_root"))
        item = _Planned(task, protocol, loader, refs=protocol.requires(task))
        check_requirements(task, protocol, loader)  # the protocol's needs against the dataset's capabilities
        item.ref_loaders = {role: make_loader(ref, d.get("data_root")) for role, ref in item.refs.items()}
        try:
            loader.check(task.split)
            for role, ref in list(item.refs.items()):
                try:
                    item.ref_loaders[role].check(ref.split)
                except DatasetNotFoundError as err:
                    if ref.optional and d["missing_data"] == "skip":
                        reason = str(err).splitlines()[0]
                        item.skipped_refs[role] = reason
                        del item.refs[role], item.ref_loaders[role]
                        log(f"{task.name}: leaving out {role} ({ref.dataset}/{ref.split}): {reason}")
                        continue
                    raise DatasetNotFoundError(f"{role} split ({ref.dataset}/{ref.split}): {err}") from None
        except DatasetNotFoundError as err:
            if d["missing_data"] != "skip":
                raise DatasetNotFoundError(f"task {task.name!r}: {err}\n(nothing was run; set "
                                           f"`defaults: {{missing_data: skip}}` to skip tasks whose data is absent)") from None
            item.status, item.reason = "skipped", str(err).splitlines()[0]
            log(f"skip {task.name}: {item.reason}")
        planned.append(item)
    # every split loaded and its image files scanned (on_bad_image), still before the model loads
    screened = screen_splits(((_split_key(ref), loader, ref.split) for item in planned if item.status == "ok"
                              for ref, loader in [(item.task, item.loader),
                                                  *((r, item.ref_loaders[k]) for k, r in item.refs.items())]),
                             d["on_bad_image"], log)

    # 2. the model, once
    if adapter is None:
        adapter = make_model(model, model_args)
    head_skips: list[_Planned] = []
    for item in planned:
        if item.status != "ok":
            continue
        if not item.protocol.needs().get("head", True):
            item.head = None  # features only (e.g. verification embeddings)
            continue
        try:
            item.head = adapter.resolve_heads([item.protocol.params.head] if getattr(item.protocol.params, "head", None)
                                              else None)[0]
        except ConfigError as err:  # a suite may hold tasks for several kinds of model
            item.status, item.reason = "skipped", str(err)
            head_skips.append(item)
            log(f"skip {item.task.name}: {err}")
    if head_skips and all(item.status != "ok" for item in planned):
        reasons = "; ".join(f"{i.task.name}: {i.reason}" for i in planned)
        raise ConfigError(f"no task of suite {suite.name!r} can run with model {model!r}: {reasons}")
    store = PredictionStore(cache_dir)
    reset_cache_warnings()  # one warning per cache problem and run
    settings = InferenceSettings(batch_size=d["batch_size"], device=d["device"], amp=d["amp"],
                                 num_workers=d["num_workers"], shard_size=d["shard_size"],
                                 decode_cache=d["decode_cache"], channels_last=d["channels_last"],
                                 compile=d["compile"], progress=progress)

    # 3. one prediction per dataset split, shared by every task (and every extra role) that needs it
    units: dict[str, _Unit] = {}

    def unit_for(ref, loader) -> _Unit:
        return units.setdefault(_split_key(ref), _Unit(ref, loader))

    for item in planned:
        if item.status != "ok":
            continue
        own = unit_for(item.task, item.loader)
        own.predictions = True
        if item.head is not None:
            own.heads.add(item.head)
        own.features |= bool(item.protocol.needs().get("features"))
        for role, ref in item.refs.items():
            unit = unit_for(ref, item.ref_loaders[role])
            if ref.predictions:
                unit.predictions = True
                if item.head is not None:
                    unit.heads.add(item.head)
                unit.features |= ref.features
    for unit in units.values():
        t_load = time.perf_counter()
        try:
            unit.dataset, unit.bad_images = screened[_split_key(unit.ref)]
            if unit.predictions:
                def predict(dataset, unit=unit):
                    return run_inference(adapter, dataset, store, heads=tuple(sorted(unit.heads)),
                                         features=unit.features, settings=settings)

                unit.dataset, unit.bad_images, (unit.preds, unit.report) = predict_screened(
                    predict, unit.dataset, unit.bad_images, d["on_bad_image"], log)
                if unit.report.reused:
                    log(f"{unit.dataset.name}/{unit.dataset.split}: reused stored predictions ({unit.report.key})")
        except KeyboardInterrupt:
            log("interrupted: predictions computed so far are kept in the store; run again to resume")
            raise
        unit.load_s = time.perf_counter() - t_load
    if not dist_ctx.is_main:
        return RunOutcome(out_dir, {}, {"rank": dist_ctx.rank, "world_size": dist_ctx.world_size,
                                        "total_s": round(time.perf_counter() - t0, 3)}, "", 0)

    task_rows, records, timings, store_keys, samples = {}, [], {}, {}, {}
    exit_code = EXIT_OK
    for it in planned:
        if it.status != "ok":
            continue
        own = unit_for(it.task, it.loader)
        dataset, preds, report = own.dataset, own.preds, own.report
        extras = {role: ExtraSplit(unit_for(ref, None).dataset, unit_for(ref, None).preds)
                  for role, ref in it.refs.items()}
        t_eval = time.perf_counter()
        ctx = EvalContext(dataset=dataset, predictions=preds, head=it.head,
                          head_labels=adapter.heads[it.head].labels if it.head else (), seed=d["seed"],
                          n_resamples=d["bootstrap"], confidence=d["confidence"], extras=extras)
        fps = {"dataset": dataset.fingerprint(), "model": adapter.fingerprint(),
               "protocol": it.protocol.fingerprint(), "preprocess": adapter.input_spec.fingerprint()}
        if extras:
            fps["extra_datasets"] = {role: e.dataset.fingerprint() for role, e in sorted(extras.items())}
        row = {**it.task.to_dict(), "status": "ok", "head": it.head, "fingerprints": fps, "n": len(dataset)}
        if it.refs:
            row["extra_splits"] = {role: {**ref.to_dict(), "n": len(extras[role].dataset)}
                                   for role, ref in it.refs.items()}
        if it.skipped_refs:
            row["skipped_extra_splits"] = dict(it.skipped_refs)
        if own.bad_images:
            row["bad_images"] = own.bad_images
        for role, ref in it.refs.items():
            if unit_for(ref, None).bad_images:
                row["extra_splits"][role]["bad_images"] = unit_for(ref, None).bad_images
        try:
            result = it.protocol.evaluate(ctx)
        except Exception as err:  # keep the other tasks' results
            exit_code = EXIT_TASK_FAILED
            row.update(status="failed", reason=f"{type(err).__name__}: {err}")
            log(f"task {it.task.name} failed: {type(err).__name__}: {err}{_debug_traceback()}")
        else:
            row.update(details=result.details, warnings=result.warnings)
            if result.samples is not None:
                samples[it.task.name] = result.samples
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
                                 "load_s": round(own.load_s, 3),
                                 "evaluate_s": round(time.perf_counter() - t_eval, 3)}
        store_keys[it.task.name] = report.key
        extra_keys = {role: unit_for(ref, None).report.key for role, ref in it.refs.items() if ref.predictions}
        if extra_keys:
            store_keys[f"{it.task.name}:extra"] = extra_keys
    for item in planned:
        if item.status != "ok":
            task_rows[item.task.name] = {**item.task.to_dict(), "status": item.status, "reason": item.reason}
    if exit_code == EXIT_OK and not any(row["status"] == "ok" for row in task_rows.values()):
        exit_code = EXIT_NOTHING_EVALUATED  # the run folder is still written: it records why
        log("nothing was evaluated: every task was skipped ("
            + "; ".join(f"{name}: {row.get('reason', '')}" for name, row in task_rows.items()) + ")")
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
    try:
        leaderboard = leaderboard_markdown(results)
    except Exception as err:  # never lose computed results to a rendering bug
        exit_code = EXIT_TASK_FAILED
        leaderboard = f"(the leaderboard could not be rendered: {type(err).__name__}: {err}; see results.json)"
        log(f"leaderboard failed: {type(err).__name__}: {err}{_debug_traceback()}")
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
        **({"distributed": {"world_size": dist_ctx.world_size, "backend": dist_ctx.backend}}
           if dist_ctx.distributed else {}),
        "started_utc": started.isoformat(timespec="seconds"),
        "total_s": round(time.perf_counter() - t0, 3),
    }
    def write(folder: Path) -> None:  # the temporary sibling; renamed into place once whole
        write_run_folder(folder, results, manifest, leaderboard, samples)
        if figures:
            try:
                from facebench.report.figures import run_figures

                run_figures(results, folder)
            except Exception as err:  # figures never cost the results
                log(f"figures could not be drawn: {type(err).__name__}: {err}")

    write_folder(out_dir, RUN, write, replace=force)
    return RunOutcome(out_dir, results, manifest, leaderboard, exit_code)


def rescore_run(run_dir: str | Path, suite_path: str | Path | None = None, overrides: dict | None = None,
                out: str | Path | None = None, force: bool = False, cache_dir: str | Path | None = None,
                log: Callable[[str], None] = _stderr, figures: bool = False) -> RunOutcome:
    """Re-evaluate a finished run from the prediction store without loading its model: the run's
    suite (or ``suite_path``: other protocols or parameters on the same splits), new settings
    (e.g. more bootstrap resamples). Default output: ``<run_dir>-rescored`` (then ``-2``, ...)."""
    import tempfile

    import yaml

    from facebench.models.stored import StoredModel

    from facebench.report.results import read_run_folder

    run_dir = Path(run_dir)
    results, manifest = read_run_folder(run_dir)
    adapter = StoredModel(results["model"])
    run_amp = ((manifest.get("suite_as_run") or {}).get("defaults") or {}).get("amp")
    overrides = dict(overrides or {})
    if overrides.get("amp") is None and run_amp is not None:
        # the precision is part of the prediction key: look up what the run stored, even when the
        # rescoring suite's defaults name another precision
        overrides["amp"] = run_amp
    if cache_dir is None and manifest.get("cache_dir") and Path(manifest["cache_dir"]).is_dir():
        cache_dir = manifest["cache_dir"]  # the store the run wrote to
    if out is None:  # <run>-rescored; without --force the next free one (-2, ...) past any non-empty folder
        out = run_dir.parent / f"{run_dir.name}-rescored"
        k = 2
        while not force and out.exists() and not (out.is_dir() and not any(out.iterdir())):
            out = run_dir.parent / f"{run_dir.name}-rescored-{k}"
            k += 1
    if suite_path is not None:
        return run_suite(suite_path, overrides=overrides, out=out, force=force, cache_dir=cache_dir,
                         progress=False, log=log, adapter=adapter, figures=figures)
    with tempfile.TemporaryDirectory() as tmp:
        name = check_name(manifest["suite_as_run"]["name"], "the run's suite name")
        path = Path(tmp) / f"{name}.yaml"
        suite = dict(manifest["suite_as_run"])
        suite["defaults"] = {k: v for k, v in (suite.get("defaults") or {}).items() if v is not None}
        suite["tasks"] = [{k: v for k, v in t.items() if v is not None} for t in suite.get("tasks") or []]
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        return run_suite(path, overrides=overrides, out=out, force=force, cache_dir=cache_dir, progress=False,
                         log=log, adapter=adapter, figures=figures)
