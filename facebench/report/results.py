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


def _read_json_object(path: Path, run_dir: Path) -> dict:
    from facebench.errors import ConfigError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is not a run folder ({path.name} is missing); pass a folder written "
                          f"by `facebench run`.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} cannot be read ({type(err).__name__}: {err}); it was truncated or edited: "
                          f"run the suite again to rewrite the run folder.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a facebench {path.name} (a JSON object was expected); run the suite "
                          f"again to rewrite the run folder.")
    return data


def read_run_folder(run_dir: str | Path) -> tuple[dict, dict]:
    """(results, manifest) of a run folder, with the fields a re-evaluation needs checked: ``results``
    holds ``model`` (an object with ``name`` and ``heads``), ``tasks`` and ``records`` (lists); ``manifest``
    holds ``suite_as_run`` (an object with ``name`` and a ``tasks`` list). Raises ``ConfigError`` naming
    the file and the field otherwise."""
    from facebench.errors import ConfigError

    run_dir = Path(run_dir)
    results = _read_json_object(run_dir / "results.json", run_dir)
    manifest = _read_json_object(run_dir / "manifest.json", run_dir)
    checks = [("results.json", "model", results.get("model"), dict), ("results.json", "tasks", results.get("tasks"), list),
              ("results.json", "records", results.get("records"), list),
              ("manifest.json", "suite_as_run", manifest.get("suite_as_run"), dict)]
    model, suite = results.get("model"), manifest.get("suite_as_run")
    if isinstance(model, dict):
        checks += [("results.json", "model.name", model.get("name"), str),
                   ("results.json", "model.heads", model.get("heads"), dict)]
    if isinstance(suite, dict):
        checks += [("manifest.json", "suite_as_run.name", suite.get("name"), str),
                   ("manifest.json", "suite_as_run.tasks", suite.get("tasks"), list)]
    for file, name, value, kind in checks:
        if not isinstance(value, kind):
            raise ConfigError(f"{run_dir / file} has no valid {name!r} ({kind.__name__} expected); it was edited or "
                              f"written by another tool: run the suite again to rewrite the run folder.")
    return results, manifest

