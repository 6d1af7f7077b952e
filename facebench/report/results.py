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

from facebench.atomic import atomic_write_text

#: 2: every record carries ``higher_is_better`` and ``unit`` (set by its protocol). 1: without them;
#: :func:`read_results` upgrades it. The JSON Schema of each version: ``facebench/schema/results-v<N>.json``.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)


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


#: module name -> distribution name, for the versions of libraries a run has not imported
_DISTRIBUTIONS = {"torch": "torch", "numpy": "numpy", "scipy": "scipy", "sklearn": "scikit-learn",
                  "pandas": "pandas", "PIL": "pillow", "yaml": "PyYAML"}


def library_versions() -> dict:
    """Python, platform and the versions of the libraries that can change a result: ``__version__`` of
    a module already imported, else the installed distribution's version (read from its metadata: no
    import, which for scikit-learn or pandas would cost a second); absent libraries are left out."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name, distribution in _DISTRIBUTIONS.items():
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
            continue
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_samples(path: Path, samples: dict[str, dict]) -> None:
    """Per-task per-sample outcomes as one NPZ: ``<task>/ids``, ``<task>/y_true``, ``<task>/y_pred``."""
    from facebench.atomic import atomic_save_npz

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
    results = read_results(_read_json_object(run_dir / "results.json", run_dir))
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



# -- reading results.json of any schema version ---------------------------------------------------------------

def schema_path(version: int = SCHEMA_VERSION) -> Path:
    """The JSON Schema of results.json at ``version`` (shipped with the package)."""
    return Path(__file__).resolve().parent.parent / "schema" / f"results-v{version}.json"


def read_results(results):
    """The one reader of a parsed results.json: a schema-1 object is upgraded to the current schema (a new
    dict; the input is left alone); the current schema, an unknown version or something that is not a
    results object come back unchanged (the caller judges ``schema_version`` against
    ``SCHEMA_VERSION``)."""
    if isinstance(results, dict) and results.get("schema_version") == 1:
        return upgrade_v1(results)
    return results


def upgrade_v1(results: dict) -> dict:
    """Schema 1 -> 2: every record gains ``higher_is_better`` and ``unit``, looked up in
    :func:`_v1_direction_and_unit`; values, CIs, conventions and everything else are unchanged."""
    records = results.get("records")
    if isinstance(records, list):
        records = [_upgrade_v1_record(r) for r in records]
    return {**results, "schema_version": 2, "records": records}


def _upgrade_v1_record(record):
    if not isinstance(record, dict) or not isinstance(record.get("metric"), str):
        return record  # malformed: left for the caller's checks to name
    higher, unit = _v1_direction_and_unit(record["metric"])
    return {**record, "higher_is_better": record.get("higher_is_better", higher), "unit": record.get("unit", unit)}


# LEGACY -- the schema-1 upgrade only. Schema-1 records did not say which way is better nor what unit they
# are in, so the upgrade looks them up by metric name in this table of the names the schema-1 protocols
# emitted (the directions and units those protocols now set themselves). Nothing else may infer direction
# or unit from a name: reports and compare read the records' own fields.
_V1_EXACT = {  # base name (before "[") -> (higher_is_better, unit)
    "accuracy": (True, "fraction"), "mean_class_accuracy": (True, "fraction"), "macro_f1": (True, "fraction"),
    "recall": (True, "fraction"), "precision": (True, "fraction"), "group_accuracy": (True, "fraction"),
    "closed_set_accuracy": (True, "fraction"), "mean_attribute_accuracy": (True, "fraction"),
    "age_bin_accuracy": (True, "fraction"), "gap": (False, "fraction"),
    "nll": (False, "score"), "ece": (False, "rate"), "detection_error": (False, "rate"),
    "auroc": (True, "score"), "aupr": (True, "score"), "oscr": (True, "score"),
    "mae": (False, "years"), "rmse": (False, "score"), "epsilon_error": (False, "score"),
    "best_mae": (False, "score"), "best_spearman": (True, "score"), "r2": (True, "score"),
    "pearson": (True, "score"), "spearman": (True, "score"), "kendall": (True, "score"),
    "imbalance_ratio": (False, "ratio"), "fmr": (False, "rate"), "fnmr": (False, "rate"), "fdr": (True, "score"),
    "fmr_max_min_ratio": (False, "ratio"), "fnmr_max_min_ratio": (False, "ratio"),
    "fmr_max_geomean_ratio": (False, "ratio"), "fnmr_max_geomean_ratio": (False, "ratio"),
    "tpr_difference": (False, "rate"), "fpr_difference": (False, "rate"),
    "equalized_odds_difference": (False, "rate"), "equalized_odds_ratio": (True, "score"),
}
_V1_PREFIX = {"cs@": (True, "fraction"), "ccr@": (True, "rate"), "fpr@": (False, "rate"), "tar@": (True, "rate")}
# fairness disparities of a metric M: M_difference / M_std (lower, M's unit), M_ratio (min/max: higher, score),
# M_ser (lower, ratio)
_V1_DISPARITY = {"_difference": False, "_std": False, "_ratio": True, "_ser": False}
_V1_LOWER_WORDS = ("nll", "ece", "mae", "rmse", "fpr", "detection_error", "fmr", "fnmr", "gap", "difference", "std",
                   "ser", "eps")  # the schema-1 report's rule, for a name this table does not list


def _v1_direction_and_unit(metric: str) -> tuple[bool, str]:
    """(higher_is_better, unit) of a schema-1 record, from its name (see the table above)."""
    base, _, tags = metric.partition("[")
    if base in ("mae", "rmse") and "target=" in tags:
        return False, "score"  # label_free: the error of a predicted metric
    if base in _V1_EXACT:
        return _V1_EXACT[base]
    for prefix, kind in _V1_PREFIX.items():
        if base.startswith(prefix):
            return kind
    for suffix, higher in _V1_DISPARITY.items():
        stem = base[: -len(suffix)] if base.endswith(suffix) else None
        if stem in _V1_EXACT:
            if suffix == "_ratio":
                return True, "score"
            return False, "ratio" if suffix == "_ser" else _V1_EXACT[stem][1]
    lower = any(base.lower().startswith(w) or f"_{w}" in base.lower() for w in _V1_LOWER_WORDS)
    return not lower, "score"
