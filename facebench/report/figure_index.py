"""Figures drawn once and reused: each task's figures are keyed by a fingerprint of what they are drawn from.

A folder of figures holds ``index.json``: ``{"version": 1, "code": C, "tasks": {task name: {"key": K, "files":
[{"name": file name, "blake2b": digest of its bytes}, ...]}}}``, the files in the order ``task_figures`` returns
them. ``C`` is the figure code version (the bytes of ``figures.py``, ``names.py`` and of this module,
matplotlib's and NumPy's versions); ``K`` hashes ``C`` with the task's row and records as results.json holds them
(NaN as null, tuples as lists) and the figure width mode (``figures.figure_width``; "auto" hashes as before), so
a figure drawn from the run's memory and one drawn from its results.json share their key.

``draw_figures`` copies the files of a task whose key a source folder's index holds, with the same bytes (the
run folder, for ``facebench report``; the run folder being replaced, for ``facebench run --force``), and draws
the others -- in worker processes where that pays (:data:`MIN_SHARED` figures or more to draw, two cores or more;
about 0.2 s a figure, PNG and PDF, against about 0.9 s for a worker to start Python, NumPy and matplotlib). A run
starts one worker ahead (:func:`warm_up`), which loads matplotlib while the run computes and then draws a
share at no start cost. The same data and code give the same bytes in any process
(``facebench.report.figures``), so a copied figure is the figure that would have been drawn. Nothing here
imports matplotlib: a report whose figures are all up to date never loads it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

INDEX = "index.json"
INDEX_VERSION = 1
FIGURE_WIDTHS = ("auto", "single", "double")  # figure width modes (facebench.report.figures.figure_width)

# the figure kinds each protocol declares, in drawing order (``facebench.report.figures`` draws them)
FIGURES_BY_PROTOCOL: dict[str, tuple[str, ...]] = {
    "closed_set": ("confusion_matrix", "per_class_recall", "reliability"),
    "imbalanced": ("confusion_matrix", "per_class_recall"),
    "open_set": ("roc", "oscr", "per_class_auroc"),
    "cross_domain": ("heatmap",),
    "fairness": ("group_bars",),
    "verification": ("roc", "det"),
    "label_free": ("scatter_accuracy", "scatter_auroc"),
    "age_estimation": (),
    "attributes": (),
    "landmarks": ("ced", "worst_cases"),
    "adversarial": ("budget_curve", "perturbation"),
    "corruption": ("severity_curves",),
    "resolution": ("resolution_curve",),
    "identification": ("cmc",),
    "ood_estimate": ("decomposition",),
}


class FigureJob(NamedTuple):
    """One task's figures: its results.json row and records, the folder they go to, the folder whose
    ``index.json`` may already hold them (None: draw), and the width mode ("single", "double"; None: auto)."""

    row: Mapping
    records: Sequence[Mapping]
    out_dir: Path
    reuse_from: Path | None = None
    width: str | None = None


@lru_cache(maxsize=1)
def code_version() -> str:
    """The figure code version: the bytes of figures.py and of this module, matplotlib's and NumPy's versions."""
    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent
    for name in ("figures.py", "figure_index.py", "names.py"):
        h.update((here / name).read_bytes())
    for version in (_version("matplotlib"), np.__version__):
        h.update(version.encode())
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:  # pragma: no cover - a declared dependency
        return "absent"


def as_stored(obj: Any) -> Any:
    """``obj`` as results.json holds it and a reader gets it back (non-finite floats as null, NumPy values as
    Python ones, tuples as lists, every mapping's keys sorted, which orders e.g. a scatter's series): the
    conversions of ``facebench.report.results.to_json``, without its indentation (the C encoder: 10x faster)."""
    from facebench.report.results import _clean_nans, _default

    return json.loads(json.dumps(_clean_nans(obj), sort_keys=True, default=_default, allow_nan=False))


def task_key(row: Mapping, records: Sequence[Mapping], width: str | None = None) -> str:
    """The fingerprint of a task's figures: the code version, the task's row and records (as stored), the
    width mode."""
    return _key(as_stored(row), as_stored(list(records)), width)


def _key(stored_row: Any, stored_records: Any, width: str | None = None) -> str:
    content = {"row": stored_row, "records": stored_records}
    if width not in (None, "auto"):
        content["width"] = width
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(f"{code_version()}\n{text}".encode(), digest_size=16).hexdigest()


def figure_kinds(row: Mapping) -> tuple[str, ...]:
    """The kinds ``task_figures`` may draw for ``row``: its protocol's, for an evaluated task with details."""
    if not isinstance(row, Mapping) or row.get("status") != "ok" or not row.get("details"):
        return ()
    return FIGURES_BY_PROTOCOL.get(str(row.get("protocol", "")), ())


def open_set_mode(row: Mapping) -> str:
    """An open_set task's mode: its params' (rows without one: leave_one_out when its details hold a table)."""
    mode = (row.get("params") or {}).get("mode")
    return str(mode) if mode else ("leave_one_out" if "table" in (row.get("details") or {}) else "unknown_classes")


def _drawn_kinds(row: Mapping) -> tuple[str, ...]:
    """:func:`figure_kinds` less those of the other open-set mode (so that no process is given a kind that
    draws nothing)."""
    kinds = figure_kinds(row)
    if str(row.get("protocol")) == "open_set":
        loo = open_set_mode(row) == "leave_one_out"
        kinds = tuple(k for k in kinds if (k == "per_class_auroc") == loo)
    return kinds


def task_records(row: Mapping, records: Sequence[Mapping] | None) -> list[Mapping]:
    """The records of ``row``'s task, as ``task_figures`` selects them."""
    name = str(row.get("name", "task"))
    return [r for r in (records or []) if isinstance(r, Mapping) and r.get("task", name) == name]


def read_index(folder: Path | None) -> dict:
    """Task name -> index entry of ``folder``'s index.json; empty when absent, unreadable or of another version."""
    if folder is None:
        return {}
    try:
        index = json.loads((Path(folder) / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(index, dict) or index.get("version") != INDEX_VERSION or not isinstance(index.get("tasks"), dict):
        return {}
    return index["tasks"]


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _reused(entry: Any, key: str, source: Path, out_dir: Path) -> list[Path] | None:
    """The task's files copied from ``source`` into ``out_dir`` when ``entry`` holds ``key`` and every file is
    there with its recorded bytes; None otherwise (nothing copied)."""
    if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("files"), list):
        return None
    try:
        names = [(str(f["name"]), str(f["blake2b"])) for f in entry["files"]]
        if any(Path(n).name != n or not (source / n).is_file() or _digest(source / n) != d for n, d in names):
            return None
    except (OSError, KeyError, TypeError):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    if source.resolve() != out_dir.resolve():
        for name, _ in names:
            shutil.copyfile(source / name, out_dir / name)
    return [out_dir / name for name, _ in names]


#: Figures to draw from which new worker processes pay: a worker starts in about 0.9 s (this process, which draws
#: a share too, loads matplotlib in about 0.6 s), a figure takes 0.2 - 0.35 s; with 3 the two ways about tie.
MIN_SHARED = 4
# drawing time of a figure kind, in ROC figures (0.19 s; others 1), measured on the demo
_COST = {"confusion_matrix": 1.9, "reliability": 1.75, "group_bars": 1.7, "heatmap": 1.3, "per_class_auroc": 1.3,
         "scatter_accuracy": 1.3, "scatter_auroc": 1.3}
# matplotlib's import and a first figure's fonts in this process (0.6 s), in the same unit; a worker's reading
# its job and answering (0.2 s, measured); a new worker's Python and NumPy and its job, beyond that import
_IMPORT_COST = 3.0
_JOB_COST = 1.0
_WORKER_START = 1.5
_WARM: list = []  # the worker warm_up started, until a drawing takes it


def _worker_count(workers: int | None, units: int, warm: bool = False) -> int:
    """Processes to draw ``units`` figures with, this one included: ``workers``, or the cores when that pays
    (>= 2 cores and :data:`MIN_SHARED` figures); at least 2 with a warm worker (it costs nothing to start)."""
    if workers is not None:
        return max(1, min(int(workers), units))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = min(cores, units) if units >= MIN_SHARED and cores >= 2 else 1
    return max(count, 2) if warm else count


def _start_loads(count: int, warm: bool) -> list[float]:
    """Each process's time before and after its figures, in figures: this one's matplotlib import (none once
    imported), a warm worker's job, a new worker's start, imports and job."""
    here = 0.0 if "facebench.report.figures" in sys.modules else _IMPORT_COST
    return [here] + [_JOB_COST] * warm + [_IMPORT_COST + _WORKER_START] * (count - 1 - warm)


def _shares(units: list[tuple], loads: list[float]) -> list[list[int]]:
    """Unit indices split into ``len(loads)`` shares that end at about the same time, each share's process
    starting at its ``loads`` entry (:func:`_start_loads`): longest figures first, to the least loaded share."""
    loads = list(loads)
    shares: list[list[int]] = [[] for _ in loads]
    for i in sorted(range(len(units)), key=lambda i: -_COST.get(units[i][3], 1.0)):
        k = loads.index(min(loads))
        shares[k].append(i)
        loads[k] += _COST.get(units[i][3], 1.0)
    return shares


def _draw_here(units: list[tuple]) -> list[list[Path]]:
    """Each unit (row, records, out_dir, kind, width mode) drawn in this process."""
    from facebench.report.figures import figure_width, task_figures

    out = []
    for row, recs, folder, kind, width in units:
        with figure_width(width):
            out.append(task_figures(row, recs, folder, kinds=(kind,)))
    return out


def _draw_units(units: list[tuple], workers: int | None) -> list[list[Path]]:
    """The paths each unit (row, records, out_dir, kind, width mode) wrote: shares drawn by worker processes (``python -c``,
    so no caller's ``__main__`` is run again, nor a process holding threads forked; the first the warm one of
    :func:`warm_up`, if any) while this process draws the first share; a worker that fails has its share drawn
    here. Warnings come back as warnings."""
    warm = _take_warm()
    count = _worker_count(workers, len(units), warm is not None) if units else 1
    if count < 2:
        _close(warm)
        return _draw_here(units) if units else []
    shares = _shares(units, _start_loads(count, warm is not None))
    out: list[list[Path] | None] = [None] * len(units)
    with tempfile.TemporaryDirectory(prefix="facebench-figures-") as tmp:
        started = _start_shares(units, shares[1:], warm, Path(tmp))
        try:
            if shares[0]:
                for i, paths in zip(shares[0], _draw_here([units[i] for i in shares[0]])):
                    out[i] = paths
            for share, proc in started:
                for i, paths in zip(share, _finish_worker(proc, [units[i] for i in share])):
                    out[i] = paths
        finally:  # interrupted, or this process's drawing failed: no worker outlives the call
            for _, proc in started:
                if proc is not None and proc.poll() is None:
                    _close(proc)
    return out


def _start_shares(units: list[tuple], shares: list[list[int]], warm, folder: Path) -> list[tuple]:
    """(share, process) for each share with figures: the first handed to ``warm`` (ended when that share is
    empty), the others to new workers."""
    started = []
    for k, share in enumerate(shares):
        proc = warm if k == 0 else None
        if not share:
            _close(proc)
            continue
        job = folder / f"share-{k}.json"
        started.append((share, _start_worker([units[i] for i in share], job, *([proc] if proc else []))))
    return started


def _spawn_worker(warm: bool = False):
    """A worker process (:func:`worker_main`) that reads its job's path from stdin; None when none can start."""
    # this facebench, also when it is importable here only through a sys.path entry of the caller's (appended,
    # so that it shadows nothing)
    package_root = str(Path(__file__).resolve().parents[2])
    # the answer written, it leaves at once: a normal exit's garbage collection of matplotlib takes 0.3 s
    code = ("import os, sys; sys.path.append(sys.argv[1]); from facebench.report.figure_index import worker_main; "
            "worker_main(warm=sys.argv[2] == 'warm'); sys.stdout.flush(); sys.stderr.flush(); os._exit(0)")
    try:
        return subprocess.Popen([sys.executable, "-c", code, package_root, "warm" if warm else "cold"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError:  # no process can be started here (a sandbox, a full process table): drawn in this one
        return None


def _start_worker(units: list[tuple], job: Path, proc=None):
    """A process (``proc``, or a new one) drawing ``units``, described in ``job`` (JSON); None when none can
    be started."""
    job.write_text(json.dumps([[row, recs, str(out), kind, width] for row, recs, out, kind, width in units]),
                   encoding="utf-8")
    proc = proc if proc is not None else _spawn_worker()
    if proc is not None:
        try:
            proc.stdin.write(f"{job}\n")
            proc.stdin.flush()  # closed by communicate()
        except OSError:  # the worker is gone: _finish_worker draws its share here
            pass
    return proc


def warm_up(out_dir=None) -> bool:
    """Start a figure worker ahead of the figures, so that it imports matplotlib while a run computes (on a
    core the run leaves idle, it costs the run nothing): the next drawing in this process hands it a share,
    with no start to wait for. Not when ``out_dir/figures`` already has an index (a re-run, whose figures are
    likely reused); one at a time. A worker no drawing takes ends with the next drawing or with this process.
    True when a worker is waiting."""
    if _WARM and _WARM[-1].poll() is None:
        return True
    _WARM.clear()
    if out_dir is not None and (Path(out_dir) / "figures" / INDEX).is_file():
        return False
    proc = _spawn_worker(warm=True)
    if proc is not None:
        _WARM.append(proc)
    return proc is not None


def _take_warm():
    """The waiting worker of :func:`warm_up` (now this caller's), or None."""
    proc = _WARM.pop() if _WARM else None
    if proc is not None and proc.poll() is not None:
        proc.communicate()
        return None
    return proc


def _close(proc) -> None:
    """End a worker that got no share (it holds nothing: killed at once, not waited for)."""
    if proc is not None:
        proc.kill()
        proc.communicate()


@atexit.register
def _release_warm() -> None:
    """End a warm worker no drawing took (at this process's exit)."""
    _close(_take_warm())


def _finish_worker(proc, units: list[tuple]) -> list[list[Path]]:
    """The worker's paths (its warnings re-raised here); its units drawn here when it failed."""
    if proc is None:
        return _draw_here(units)
    stdout, stderr = proc.communicate()
    try:
        answer = json.loads(stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (ValueError, IndexError):
        answer = None
    if not isinstance(answer, dict) or len(answer.get("paths", ())) != len(units):
        warnings.warn(f"a figure worker failed (exit {proc.returncode}: {stderr.strip()[-300:]}); its figures are "
                      f"drawn in this process", stacklevel=3)
        return _draw_here(units)
    for message in answer.get("warnings", []):
        warnings.warn(message, stacklevel=3)
    return [[Path(p) for p in paths] for paths in answer["paths"]]


def worker_main(warm: bool = False) -> None:
    """A figure worker's body: import the figure code (``warm``: and draw a throwaway figure, see
    ``figures.prepare``), read a job file's path from stdin (none: exit), draw its units, print
    ``{"paths", "warnings"}`` as JSON."""
    from facebench.report import figures

    if warm:
        figures.prepare()
    job = sys.stdin.readline().strip()
    if not job:
        return
    units = [tuple(unit) for unit in json.loads(Path(job).read_text(encoding="utf-8"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = [[str(p) for p in drawn] for drawn in _draw_here(units)]
    print(json.dumps({"paths": paths, "warnings": [str(w.message) for w in caught]}))


def draw_figures(jobs: Sequence[FigureJob], workers: int | None = None) -> list[list[Path]]:
    """Each job's figures in its ``out_dir`` (PNG, then PDF, of each kind, in its protocol's order), copied
    from ``reuse_from`` when its index holds the task's key, else drawn (``workers`` processes; None: the
    cores, when that pays). Each ``out_dir`` gets an ``index.json`` of the tasks drawn or copied there."""
    for job in jobs:
        check_width(job.width)
    keyed = []  # (job, row and records as stored, key; None for a task without figures)
    for job in jobs:
        row, recs = as_stored(job.row), as_stored(task_records(job.row, job.records))
        keyed.append((job, row, recs, _key(row, recs, job.width) if figure_kinds(row) else None))
    results: list[list[Path] | None] = [None if key else [] for _, _, _, key in keyed]
    units, owners = [], []
    sources: dict[Path, dict] = {}
    for i, (job, row, recs, key) in enumerate(keyed):
        if key is None:
            continue
        if job.reuse_from is not None:
            source = Path(job.reuse_from)
            index = sources.setdefault(source, read_index(source))
            results[i] = _reused(index.get(str(row.get("name", "task"))), key, source, Path(job.out_dir))
        if results[i] is None:
            kinds = _drawn_kinds(row)
            units += [(row, recs, Path(job.out_dir), kind, job.width) for kind in kinds]
            owners += [i] * len(kinds)
    drawn: dict[int, list[Path]] = {}
    for owner, paths in zip(owners, _draw_units(units, workers)):
        drawn.setdefault(owner, []).extend(paths)
    results = [drawn.get(i, []) if r is None else r for i, r in enumerate(results)]
    _write_indexes(keyed, results)
    return results


def _write_indexes(keyed: list[tuple], results: list[list[Path]]) -> None:
    """index.json in every job's folder: each task with figures, its key and its files' digests."""
    folders: dict[Path, dict] = {}
    for (job, row, _, key), paths in zip(keyed, results):
        if key is None:
            continue
        entry = {"key": key, "files": [{"name": p.name, "blake2b": _digest(p)} for p in paths]}
        folders.setdefault(Path(job.out_dir), {})[str(row.get("name", "task"))] = entry
    for folder, tasks in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        index = {"version": INDEX_VERSION, "code": code_version(), "tasks": tasks}
        (folder / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def check_width(width: str | None) -> None:
    """Refuse a figure width mode other than :data:`FIGURE_WIDTHS` (None: auto), naming the choices."""
    if width not in (None, *FIGURE_WIDTHS):
        from facebench.errors import ReportError

        raise ReportError(f"figure width {width!r}: use 'single' (3.3 in, one column of a two-column paper), "
                          f"'double' (6.9 in, the full text width) or 'auto'")


def run_figures(results: Mapping, out_dir, reuse_from=None, workers: int | None = None,
                width: str | None = None) -> list[Path]:
    """Figures for every task of a run (``results.json`` as a dict) in ``out_dir/figures`` (``width``: "single" or
    "double" for every figure; None or "auto": each its own), reusing those of ``reuse_from/figures`` (an earlier
    run folder) whose inputs are unchanged."""
    by_task: dict[str, list[Mapping]] = {}
    for r in results.get("records") or []:
        by_task.setdefault(str(r.get("task")), []).append(r)
    fig_dir = Path(out_dir) / "figures"
    source = None if reuse_from is None else Path(reuse_from) / "figures"
    jobs = [FigureJob(row, by_task.get(str(row.get("name")), []), fig_dir, source, width)
            for row in results.get("tasks") or [] if isinstance(row, Mapping)]
    return [p for paths in draw_figures(jobs, workers) for p in paths]
