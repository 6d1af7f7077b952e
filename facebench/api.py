"""The one-call Python API.

    import facebench.api as fb
    outcome = fb.run("suites/demo.yaml", model="synth-cnn")
    print(outcome.leaderboard)
"""

from __future__ import annotations

from pathlib import Path

from facebench.runner import RunOutcome, run_suite


def run(suite: str | Path, model: str | None = None, model_args: dict | None = None, *,
        out: str | Path | None = None, force: bool = False, cache_dir: str | Path | None = None,
        progress: bool = True, figures: bool = True, **overrides) -> RunOutcome:
    """Run ``suite`` on ``model``; ``overrides`` are suite defaults (batch_size, device, seed, bootstrap, ...);
    ``figures`` draws each task's figures into ``<out>/figures``."""
    return run_suite(suite, model=model, model_args=model_args, overrides=overrides, out=out, force=force,
                     cache_dir=cache_dir, progress=progress, figures=figures)
