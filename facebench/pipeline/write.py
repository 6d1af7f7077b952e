"""Step 4, write: results.json, manifest.json, the leaderboard and figures of one run.

``results_document`` and ``manifest_document`` assemble the two JSON documents from the evaluation;
``render_leaderboard`` never loses results to a rendering bug; ``write_run`` writes the folder into a
temporary sibling and renames it into place once whole (``facebench.outdir``), so a run folder is either
complete or absent. Figures that fail to draw cost a log line, never the results.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import facebench
from facebench import settings
from facebench.errors import EXIT_TASK_FAILED
from facebench.fingerprint import hash_object
from facebench.pipeline.evaluate import Evaluation, debug_traceback
from facebench.report import results as results_file
from facebench.report.results import SCHEMA_VERSION, git_commit, library_versions
from facebench.suite import Suite


def results_document(suite: Suite, model_description: dict, evaluation: Evaluation) -> dict:
    """results.json: schema version, suite, model, settings, one row per task and the metric records."""
    d = suite.defaults
    return {
        "schema_version": SCHEMA_VERSION,
        "facebench_version": facebench.__version__,
        "suite": {"name": suite.name, "fingerprint": hash_object(suite.to_dict())},
        "model": model_description,
        "settings": {"seed": d["seed"], "bootstrap": d["bootstrap"], "confidence": d["confidence"]},
        **partial_mark(d),
        "tasks": [outcome.to_dict() for outcome in evaluation.outcomes],
        "records": evaluation.records,
        "manifest": "manifest.json",
    }


def partial_mark(defaults: dict) -> dict:
    """``{"partial": {"limit": N, "tasks": [...]}}`` for a run cut by ``limit`` or ``tasks``, else nothing."""
    cut = {k: defaults.get(k) for k in ("limit", "tasks") if defaults.get(k)}
    return {"partial": cut} if cut else {}


def manifest_document(suite: Suite, model: str, model_args: dict, evaluation: Evaluation, *, device: str,
                      cache_dir: str, started_utc: str, total_s: float, distributed: dict | None = None) -> dict:
    """manifest.json: what it takes to reproduce the run (suite as run, every setting as run from
    ``facebench.settings``, command, versions, device, seeds, store keys) and where the time went."""
    return {
        "suite_as_run": suite.to_dict(),
        "suite_file": suite.file,
        "command": sys.argv,
        "model": model,
        "model_args": model_args,
        "settings": settings.manifest_view({**suite.defaults, "model": model, "model_args": model_args}),
        "facebench_version": facebench.__version__,
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": device,
        "seeds": {"bootstrap": suite.defaults["seed"]},
        "cache_dir": cache_dir,
        "store_keys": evaluation.store_keys,
        "timings": evaluation.timings,
        **({"distributed": distributed} if distributed else {}),
        "started_utc": started_utc,
        "total_s": round(total_s, 3),
    }


def render_leaderboard(results: dict, evaluation: Evaluation, log: Callable[[str], None]) -> str:
    """The Markdown leaderboard; a rendering error marks the run failed (exit 1) and keeps the results."""
    from facebench.report.leaderboard import leaderboard_markdown

    try:
        return leaderboard_markdown(results)
    except Exception as err:  # never lose computed results to a rendering bug
        evaluation.exit_code = EXIT_TASK_FAILED
        log(f"leaderboard failed: {type(err).__name__}: {err}{debug_traceback()}")
        return f"(the leaderboard could not be rendered: {type(err).__name__}: {err}; see results.json)"


def write_run(out_dir: Path, results: dict, manifest: dict, leaderboard: str, evaluation: Evaluation, *,
              figures: bool | str, replace: bool, log: Callable[[str], None]) -> None:
    """The run folder, whole or not at all; with ``figures`` (True, or a width mode: "auto", "single", "double")
    each task's figures in ``figures/``."""
    from facebench.outdir import RUN, write_folder

    def write(folder: Path) -> None:  # the temporary sibling; renamed into place once whole
        results_file.write_run_folder(folder, results, manifest, leaderboard, evaluation.samples)
        if figures:
            try:
                from facebench.report.figure_index import run_figures  # no matplotlib when all are reused

                run_figures(results, folder, reuse_from=out_dir,  # figures of the run replaced, if unchanged
                            width=figures if isinstance(figures, str) else None)
            except Exception as err:  # figures never cost the results
                log(f"figures could not be drawn: {type(err).__name__}: {err}")

    write_folder(out_dir, RUN, write, replace=replace)
