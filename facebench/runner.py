"""Run a suite through the four steps of ``facebench.pipeline``: plan (every task's data, parameters and
requirements checked, every split screened, before the model loads), execute (the model once, each split
predicted once into the store), evaluate (every task from the stored predictions) and write (the run folder).
``rescore_run`` re-evaluates a finished run from the store through the same steps, with no model loaded."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from facebench.content import set_cache_root as set_hash_cache_root
from facebench.errors import EXIT_OK, ConfigError, OutputError
from facebench.suite import Suite, _check_kwargs, check_name, load_suite


@dataclass
class RunOutcome:
    out_dir: Path
    results: dict
    manifest: dict
    leaderboard: str
    exit_code: int = EXIT_OK


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def make_model(name: str, model_args: dict):
    from facebench.registry import MODELS

    factory = MODELS.get(name)
    _check_kwargs(factory, model_args, f"model {name!r} (--model-args)")
    return factory(**model_args)


def run_suite(suite_path: str | Path, model: str | None = None, model_args: dict | None = None,
              overrides: dict | None = None, out: str | Path | None = None, force: bool = False,
              cache_dir: str | Path | None = None, progress: bool = True,
              log: Callable[[str], None] = _stderr, adapter=None, figures: bool | str = False) -> RunOutcome:
    """Run ``suite_path`` on ``model`` (or on a ready ``adapter``, e.g. ``StoredModel``) through the four steps
    of ``facebench.pipeline``: plan (everything checked and every split screened before the model loads),
    execute, evaluate, write. ``figures`` (True or a width mode) draws each task's figures in ``<out>/figures/``.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank runs this: all ranks share the inference of
    each split (see ``facebench.engine.distributed``); only rank 0 evaluates the tasks, writes the run
    folder, draws figures and logs. Other ranks return a ``RunOutcome`` with exit code 0, no results,
    no files and an empty leaderboard (``manifest`` holds only ``rank``, ``world_size``, ``total_s``).
    """
    from facebench.engine import distributed as fdist
    from facebench.engine.device import select_device
    from facebench.engine.store import PredictionStore, reset_cache_warnings
    from facebench.pipeline import evaluate as evaluate_step, execute as execute_step, plan as plan_step
    from facebench.pipeline import preload, write as write_step
    from facebench.pipeline.reuse import EvaluationReuse
    from facebench.report.figure_index import warm_up as warm_up_figures

    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    set_hash_cache_root(cache_dir)  # the content hashes' stat cache lives beside the store (None: default)
    suite = plan_step.select_tasks(load_suite(suite_path, overrides))  # --tasks GLOB: the suite cut to those
    d = suite.defaults
    model = _model_name(adapter, model, d)
    model_args = {**(d.get("model_args") or {}), **(model_args or {})}
    dist_ctx = fdist.init_from_env(d["device"])
    if not dist_ctx.is_main:  # quiet: rank 0 speaks for the job
        log, progress = (lambda msg: None), False
    out_dir = choose_out_dir(suite, model, out, force, log)
    if figures and dist_ctx.is_main:
        warm_up_figures(out_dir)  # a figure worker loads matplotlib while the run computes
    fdist.barrier()  # every rank has checked the out folder before rank 0 may write into it

    planned = plan_step.plan_tasks(suite, log)  # 1. plan: everything that can fail cheaply fails first
    screened = plan_step.screen(planned, d["on_bad_image"], log, d["limit"])
    adapter = adapter if adapter is not None else make_model(model, model_args)
    plan_step.resolve_heads(planned, adapter, suite.name, model, log)
    work = plan_step.split_work(planned, screened)
    store = PredictionStore(cache_dir)  # 2. execute: the store filled, one inference per split
    reset_cache_warnings()  # one warning per cache problem and run
    with preload.during(figures=figures):  # SciPy (and matplotlib) imported while the model runs
        execute_step.execute(work, adapter, store, execute_step.inference_settings(d, progress), d["on_bad_image"], log)
    if not dist_ctx.is_main:
        return RunOutcome(out_dir, {}, {"rank": dist_ctx.rank, "world_size": dist_ctx.world_size,
                                        "total_s": round(time.perf_counter() - t0, 3)}, "", 0)

    reuse = EvaluationReuse(store.root / "evaluations", log) if d["reuse_evaluations"] else None
    evaluation = evaluate_step.evaluate_tasks(planned, work, adapter, model, d, log, reuse)  # 3. evaluate
    results = write_step.results_document(suite, adapter.describe(), evaluation)  # 4. write
    leaderboard = write_step.render_leaderboard(results, evaluation, log)
    distributed = ({"world_size": dist_ctx.world_size, "backend": dist_ctx.backend} if dist_ctx.distributed
                   else None)
    manifest = write_step.manifest_document(
        suite, model, model_args, evaluation, device=str(select_device(d["device"])), cache_dir=str(store.root),
        started_utc=started.isoformat(timespec="seconds"), total_s=time.perf_counter() - t0,
        distributed=distributed)
    write_step.write_run(out_dir, results, manifest, leaderboard, evaluation, figures=figures, replace=force, log=log)
    return RunOutcome(out_dir, results, manifest, leaderboard, evaluation.exit_code)


def _model_name(adapter, model: str | None, defaults: dict) -> str:
    """The run's model name: the ready adapter's, else ``--model``, else the suite's ``defaults: {model}``."""
    name = adapter.name if adapter is not None else (model or defaults.get("model"))
    if not name:
        raise ConfigError("No model given: pass --model NAME (see `facebench list models`), or set "
                          "`defaults: {model: NAME}` in the suite.")
    return check_name(name, "model name")  # it names the default run folder


def rescore_run(run_dir: str | Path, suite_path: str | Path | None = None, overrides: dict | None = None,
                out: str | Path | None = None, force: bool = False, cache_dir: str | Path | None = None,
                log: Callable[[str], None] = _stderr, figures: bool | str = False) -> RunOutcome:
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
