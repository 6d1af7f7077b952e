"""The run folder: results.json (deterministic), manifest.json (environment, timings) and leaderboard.md.

results.json holds everything that follows from the inputs and seed, and nothing else, so the
same inputs give the same bytes; the timestamps, timings, host and versions live in manifest.json.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from facebench.engine.store import atomic_write_text

SCHEMA_VERSION = 1


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=_default, allow_nan=False) + "\n"


def _default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def _clean_nans(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_nans(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_nans(v) for v in obj]
    return obj


def git_commit() -> str | None:
    """The facebench source tree's commit, when it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("torch", "numpy", "scipy", "sklearn", "pandas", "PIL", "yaml"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", "?")
    return versions


def write_samples(path: Path, samples: dict[str, dict]) -> None:
    """Per-task per-sample outcomes as one NPZ: ``<task>/ids``, ``<task>/y_true``, ``<task>/y_pred``."""
    from facebench.engine.store import atomic_save_npz

    arrays = {}
    for task, s in samples.items():
        arrays[f"{task}/ids"] = np.asarray(s["ids"]).astype(str)
        arrays[f"{task}/y_true"] = np.asarray(s["y_true"], dtype=np.int64)
        arrays[f"{task}/y_pred"] = np.asarray(s["y_pred"], dtype=np.int64)
    atomic_save_npz(path, arrays)


def read_samples(path: Path) -> dict[str, dict]:
    """Inverse of ``write_samples`` (empty when the file is absent)."""
    if not Path(path).exists():
        return {}
    out: dict[str, dict] = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            task, _, field = key.rpartition("/")
            out.setdefault(task, {})[field] = z[key]
    return out


def write_run_folder(out_dir: Path, results: dict, manifest: dict, leaderboard: str,
                     samples: dict | None = None) -> None:
    """Write the run's files into ``out_dir`` (the runner passes a fresh temporary folder, see
    ``facebench.outdir.write_folder``), with the ``.facebench-run`` marker when it has none yet."""
    from facebench.outdir import RUN, read_marker, write_marker

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if read_marker(out_dir, RUN) is None:
        write_marker(out_dir, RUN)
    if samples:
        write_samples(out_dir / "samples.npz", samples)
    atomic_write_text(out_dir / "results.json", to_json(_clean_nans(results)))
    atomic_write_text(out_dir / "manifest.json", to_json(_clean_nans(manifest)))
    atomic_write_text(out_dir / "leaderboard.md", leaderboard)
