"""Models x tasks leaderboards across runs: one table ("board") per protocol, chosen metric and run cut.

Conventions:

* **Rows are runs** (labelled by model name, made unique with ``-2``, ``-3`` like
  :func:`facebench.report.tables.load_runs`); **columns are tasks** of the protocol, each showing one metric:
  the task's headline metric (its first headline record; ``accuracy[mean]`` for cross_domain) by default, or, with ``metrics=[NAME, ...]``, the
  first record of the task whose metric equals or glob-matches NAME (one board per NAME).
* **Never averaged across what differs.** A column is keyed by (task, metric, protocol fingerprint, data
  fingerprint -- the task's split and its extra splits --, conventions digest -- the record's
  ``conventions`` without the CI-only ``bootstrap`` and ``confidence``). Runs that disagree on any of them get
  separate, labelled columns (``synth-closed-set [a1b2]``) and a note; ``strict=True`` raises
  :class:`ReportError` instead.
* **Run cuts.** Runs made with ``--limit N`` (``results.json`` ``partial.limit``) are never put in a board
  with full runs or with another limit: each cut gets its own boards, titled ``(partial: limit N)``;
  ``strict=True`` refuses a mix. Runs cut with ``--tasks`` only hold unchanged task numbers: they share the
  board and a note names them (their missing tasks have no value, so no Mean).
* **Mean** (over the board's task columns) only where the protocol defines one (``MEAN_OVER_TASKS``: e.g.
  mean accuracy over closed-set tasks) and only for rows with a value in every column; a board says why it
  has none. **Mean rank**: each ranked column (direction known from the records' ``higher_is_better``, at
  least two values) ranks its rows 1 = best, ties sharing the average rank; a row's mean rank is over every
  ranked column (rows missing one get none); shown with two or more ranked columns.
* **Best** (bold) and **second** (underlined) per column follow each metric's direction; columns whose
  records do not say are not marked. The Mean follows its metric's direction, the mean rank is lower-better.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Sequence

from facebench.errors import ReportError
from facebench.report.leaderboard import _column_name
from facebench.report.tables import _kind, _normalise_runs, _short, _value, data_fingerprint

#: protocol -> metric base names (before ``[``) whose mean over the protocol's tasks is reported
MEAN_OVER_TASKS = {
    "closed_set": ("accuracy", "mean_class_accuracy", "macro_f1"),
    "imbalanced": ("accuracy", "mean_class_accuracy"),
    "cross_domain": ("accuracy", "mean_class_accuracy"),
    "open_set": ("auroc", "oscr", "fpr@tpr95"),
    "verification": ("accuracy",),
}
CI_ONLY_CONVENTIONS = ("bootstrap", "confidence")
#: protocol -> the headline metric a task column shows by default when the task has it (else its first headline)
HEADLINE_PREFERENCE = {"cross_domain": "accuracy[mean]"}


@dataclass(frozen=True)
class BoardColumn:
    """One task column of a board: ``key`` = (task, metric, protocol fp, data fp, conventions digest)."""

    task: str
    metric: str
    key: tuple
    suffix: str = ""  # "[a1b2]" when the task's runs disagree on fingerprints or conventions
    higher_is_better: bool | None = None
    unit: str | None = None

    @property
    def title(self) -> str:
        return self.task + (f" {self.suffix}" if self.suffix else "")

    @property
    def metric_name(self) -> str:
        """The readable metric name; ``accuracy[mean]`` reads ``accuracy % (mean)``, not a bare ``Mean %``."""
        name = _column_name(self.metric)
        if name.startswith("Mean") and "[" in self.metric:
            return f"{_column_name(_base(self.metric))} ({self.metric.partition('[')[2].rstrip(']')})"
        return name


@dataclass
class Board:
    """A models x tasks table; ``mean`` is None when the protocol defines no Mean (``mean_note`` says why)."""

    protocol: str
    cut: str  # "" for full runs, else e.g. "limit 200"
    choice: str | None  # the metric asked for (None: each task's headline metric)
    columns: list[BoardColumn]
    rows: list[str]
    cells: dict[tuple[str, int], dict]
    mean: dict[str, float | None] | None = None
    mean_note: str = ""
    ranks: dict[str, float | None] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def same_metric(self) -> bool:
        return len({c.metric for c in self.columns}) == 1

    @property
    def title(self) -> str:
        metric = self.columns[0].metric_name if self.same_metric else (self.choice or "headline metrics")
        return f"{self.protocol} — {metric}" + (f" (partial: {self.cut})" if self.cut else "")

    @property
    def slug(self) -> str:
        parts = [self.protocol] + ([self.choice] if self.choice else []) + ([self.cut] if self.cut else [])
        return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("._-") or "board"

    @property
    def mean_higher_is_better(self) -> bool | None:
        kinds = {c.higher_is_better for c in self.columns}
        return kinds.pop() if len(kinds) == 1 else None


# ----------------------------------------------------------------------------------------------- run cuts

def run_cut(results: dict) -> str:
    """``""`` for a full run (or one cut by ``--tasks`` only), ``"limit N"`` for a ``--limit N`` run."""
    partial = results.get("partial") or {}
    cut = {k: v for k, v in partial.items() if k != "tasks"} if isinstance(partial, dict) else {"partial": partial}
    return "; ".join(f"{k} {v}" for k, v in sorted(cut.items()))


def _by_cut(runs: list[dict], strict: bool) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run_cut(run["results"]), []).append(run)
    if strict and len(groups) > 1:
        said = "; ".join(f"{cut or 'full'}: {', '.join(r['label'] for r in rs)}" for cut, rs in groups.items())
        raise ReportError(f"Runs of different cuts (full runs and --limit runs are not comparable): {said}. "
                          "Report them separately, or drop --strict to get one set of tables per cut.")
    return groups


# ----------------------------------------------------------------------------------------------- building

def build_boards(runs: Sequence[dict], metrics: Sequence[str] | None = None, strict: bool = False) -> list[Board]:
    """Boards for ``runs`` (:func:`facebench.report.tables.load_runs` output or results dicts): per run cut,
    per protocol (first-seen order), per asked metric (``metrics``; None: the headline metric of each task).
    A protocol without any task holding an asked metric has no board for it."""
    runs = _normalise_runs(runs)
    _check_metrics(runs, metrics)
    boards = []
    for cut, group in _by_cut(runs, strict).items():
        protocols: list[str] = []
        for run in group:
            for task in run["results"].get("tasks", []):
                if task.get("protocol") not in protocols:
                    protocols.append(task.get("protocol"))
        for protocol in protocols:
            for choice in (list(metrics) if metrics else [None]):
                board = _board(group, protocol, cut, choice, strict)
                if board is not None:
                    boards.append(board)
    return boards


def _check_metrics(runs: list[dict], metrics: Sequence[str] | None) -> None:
    """ReportError for an asked metric that no record of any run has (a typo would give an empty report)."""
    names = list(dict.fromkeys(r["metric"] for run in runs for r in run["results"].get("records", [])))
    for choice in metrics or []:
        if not any(n == choice or fnmatch.fnmatchcase(n, choice) for n in names):
            shown = ", ".join(names[:25]) + (", ..." if len(names) > 25 else "")
            raise ReportError(f"--metric {choice!r} matches no record of these runs. Their metrics: {shown}.")


def _chosen_metric(records: list[dict], choice: str | None, protocol: str) -> str | None:
    """The metric a task column shows: the protocol's preferred headline (``HEADLINE_PREFERENCE``) or the
    task's first headline record's; or the asked name (exact, then the first glob match)."""
    if choice is None:
        headline = [r["metric"] for r in records if r.get("headline")]
        preferred = HEADLINE_PREFERENCE.get(protocol)
        return preferred if preferred in headline else next(iter(headline), None)
    if any(r["metric"] == choice for r in records):
        return choice
    return next((r["metric"] for r in records if fnmatch.fnmatchcase(r["metric"], choice)), None)


def _data_fp(task: dict, record: dict) -> str | None:
    return data_fingerprint({**((task or {}).get("fingerprints") or {}), **(record.get("fingerprints") or {})})


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _key(task: dict, record: dict) -> tuple:
    fps = {**(task.get("fingerprints") or {}), **(record.get("fingerprints") or {})}
    conventions = {k: v for k, v in (record.get("conventions") or {}).items() if k not in CI_ONLY_CONVENTIONS}
    return (task.get("name"), record["metric"], fps.get("protocol"), _data_fp(task, record), _digest(conventions))


def _collect(group: list[dict], protocol: str, choice: str | None) -> tuple[list[tuple], dict, list[str]]:
    """Column keys in first-seen order, ``found[key][run label] = record``, and notes on skipped tasks."""
    chosen: dict[str, str] = {}  # task -> metric, fixed by the first run that has the task
    keys: list[tuple] = []
    found: dict[tuple, dict[str, dict]] = {}
    skipped = []
    for run in group:
        results = run["results"]
        for task in results.get("tasks", []):
            if task.get("protocol") != protocol:
                continue
            if task.get("status", "ok") != "ok":
                skipped.append(f"{run['label']} / {task.get('name')}: {task.get('status')}")
                continue
            records = [r for r in results.get("records", []) if r.get("task") == task.get("name")]
            metric = chosen.setdefault(task.get("name"), _chosen_metric(records, choice, protocol))
            record = next((r for r in records if r["metric"] == metric), None)
            if record is None:
                continue
            key = _key(task, record)
            if key not in found:
                keys.append(key)
                found[key] = {}
            found[key].setdefault(run["label"], record)
    return keys, found, skipped


def _suffixes(keys: list[tuple], found: dict, strict: bool) -> tuple[dict[tuple, str], list[str]]:
    """``[a1b2]`` suffixes for tasks whose runs disagree (strict: ReportError), and the notes saying so."""
    by_task: dict[tuple, list[tuple]] = {}
    for key in keys:
        by_task.setdefault(key[:2], []).append(key)
    split = {pair: ks for pair, ks in by_task.items() if len(ks) > 1}
    if strict and split:
        raise ReportError("Runs disagree on fingerprints or conventions, so their numbers are not comparable "
                          "(strict mode refuses to split columns): " + "; ".join(
                              f"task '{pair[0]}', metric '{pair[1]}': " + ", ".join(
                                  f"protocol fingerprint {k[2]}, data fingerprint {k[3]}, conventions {k[4]} "
                                  f"({', '.join(found[k])})" for k in ks) for pair, ks in split.items()))
    suffix, notes = {}, []
    for pair, ks in split.items():
        varies = [i for i in (2, 3, 4) if len({k[i] for k in ks}) > 1]
        shorts = {i: dict(zip(ks, _short([k[i] for k in ks]))) for i in varies}
        for k in ks:
            suffix[k] = "[" + " ".join(("" if len(varies) == 1 else "pdc"[i - 2] + ":") + shorts[i][k]
                                       for i in varies) + "]"
        what = " and ".join({2: "protocol fingerprints", 3: "data fingerprints", 4: "conventions"}[i] for i in varies)
        parts = "; ".join(f"{suffix[k]} = {', '.join(found[k])}" for k in ks)
        notes.append(f"Task '{pair[0]}': {what} differ between runs, so its column is split and never "
                     f"averaged: {parts}.")
    return suffix, notes


def _board(group: list[dict], protocol: str, cut: str, choice: str | None, strict: bool) -> Board | None:
    keys, found, skipped = _collect(group, protocol, choice)
    if not keys:
        return None
    suffix, notes = _suffixes(keys, found, strict)
    order = {}
    for key in keys:
        order.setdefault(key[0], len(order))
    keys = sorted(keys, key=lambda k: order[k[0]])  # a split task's columns side by side
    rows = [run["label"] for run in group]
    columns, cells = [], {}
    for i, key in enumerate(keys):
        higher, unit = _kind(key, found[key])
        columns.append(BoardColumn(key[0], key[1], key, suffix.get(key, ""), higher, unit))
        cells.update({(row, i): rec for row, rec in found[key].items()})
    board = Board(protocol, cut, choice, columns, rows, cells, notes=notes)
    if skipped:
        board.notes.append("Tasks not completed: " + "; ".join(skipped) + ".")
    subset = [r["label"] for r in group if isinstance(r["results"].get("partial"), dict)
              and r["results"]["partial"].get("tasks")]
    if subset:
        board.notes.append(f"Run(s) {', '.join(subset)} ran part of the suite (--tasks): tasks they left out have "
                           "no value, so no Mean or mean rank.")
    board.mean, board.mean_note = _means(board)
    board.ranks = _mean_ranks(board)
    return board


# ----------------------------------------------------------------------------------------------- Mean and ranks

def _base(metric: str) -> str:
    return metric.partition("[")[0]


def _means(board: Board) -> tuple[dict[str, float | None] | None, str]:
    """Per row, the mean of its column values (None when it misses one), or None and the reason."""
    allowed = MEAN_OVER_TASKS.get(board.protocol)
    if allowed is None:
        return None, f"No Mean: the {board.protocol} protocol defines no mean over tasks."
    bases = {_base(c.metric) for c in board.columns}
    if not bases <= set(allowed) or len(bases) > 1 or len({c.unit for c in board.columns}) > 1:
        return None, (f"No Mean: {board.protocol} defines a mean over tasks only of one of "
                      f"{', '.join(allowed)} at a time, not of {', '.join(sorted(bases))}.")
    if len(board.columns) < 2:
        return None, "No Mean: a single task column."
    means = {}
    for row in board.rows:
        values = [_value(board.cells.get((row, i))) for i in range(len(board.columns))]
        means[row] = None if any(v is None for v in values) else sum(values) / len(values)
    note = f"Mean: unweighted mean over the {len(board.columns)} task columns"
    if any(v is None for v in means.values()):
        note += "; rows without a value in every column have none"
    return means, note + "."


def column_ranks(values: dict[str, float | None], higher: bool | None) -> dict[str, float]:
    """Rank 1 = best by direction ``higher``; ties share their average rank; {} when not rankable."""
    present = {r: v for r, v in values.items() if v is not None}
    if higher is None or len(present) < 2:
        return {}
    ordered = sorted(present.values(), reverse=higher)
    ranks = {}
    for row, v in present.items():
        first = ordered.index(v)
        ranks[row] = first + (ordered.count(v) + 1) / 2
    return ranks


def _mean_ranks(board: Board) -> dict[str, float | None] | None:
    per_column = [column_ranks({row: _value(board.cells.get((row, i))) for row in board.rows}, c.higher_is_better)
                  for i, c in enumerate(board.columns)]
    per_column = [ranks for ranks in per_column if ranks]
    if len(per_column) < 2:
        return None
    return {row: (sum(r[row] for r in per_column) / len(per_column) if all(row in r for r in per_column) else None)
            for row in board.rows}


def marks(values: dict[str, float | None], higher: bool | None) -> tuple[set[str], set[str]]:
    """(best rows, second-best rows) by direction; ties all marked; nothing with < 2 values or no direction."""
    present = {r: v for r, v in values.items() if v is not None}
    if higher is None or len(present) < 2:
        return set(), set()
    distinct = sorted(set(present.values()), reverse=higher)
    best = {r for r, v in present.items() if v == distinct[0]}
    second = {r for r, v in present.items() if len(distinct) > 1 and v == distinct[1]}
    return best, second
