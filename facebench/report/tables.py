"""Multi-run leaderboards: merge several run folders into one table (Markdown, CSV, LaTeX, HTML).

Rows are runs (one per model run, labelled by the model name, made unique with ``-2``, ``-3``);
columns are ``(task, metric)`` pairs of the chosen metrics (the headline metrics by default).

**Column rule -- numbers that do not mean the same thing never share a column.** A column is keyed
by ``(task name, metric, protocol fingerprint, dataset fingerprint)``. When two runs report the
same task and metric under different protocol or dataset fingerprints (a changed protocol
parameter, another dataset version or split), the column is split into one column per
fingerprint pair, each labelled with a short fingerprint suffix such as
``accuracy % · rafdb-test [a1b2]`` (the shortest prefix, at least 4 hex digits, that tells the
columns apart; ``p:``/``d:`` prefixes appear when both fingerprints vary), and a note says which
runs went where. With ``strict=True`` :func:`build_table` refuses instead and raises
:class:`ReportError` naming the task and the differing fingerprints. Nothing is ever merged
silently.

Values are printed as in the single-run leaderboard (:func:`facebench.report.leaderboard.format_value`):
percentages for accuracy-like metrics, plain numbers otherwise; the CSV keeps raw values.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Iterable, Sequence

from facebench.errors import ReportError  # noqa: F401 - re-exported: it lived here
from facebench.report.leaderboard import _column_name, display_scale, format_value, md_escape
from facebench.report.results import read_results


# ----------------------------------------------------------------------------------------------- loading

def load_runs(paths: Iterable[str | Path]) -> list[dict]:
    """Read run folders (or ``results.json`` files) into ``{"path", "label", "results"}`` dicts.

    ``label`` is the model name, made unique in the given order with ``-2``, ``-3``, ...
    Raises :class:`ReportError` (a ``ValueError``) for a path without a readable results.json.
    """
    loaded = []
    for raw in paths:
        path = Path(raw)
        file = path if path.is_file() else path / "results.json"
        if not file.is_file():
            what = "does not exist" if not path.exists() else "has no results.json"
            raise ReportError(f"Run folder {str(path)!r} {what}. Pass folders written by 'facebench run' "
                              f"(they contain results.json) or the results.json files themselves.")
        try:
            results = read_results(json.loads(file.read_text(encoding="utf-8")))  # older schemas upgraded
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ReportError(f"Cannot read {str(file)!r}: {exc}. Re-run the benchmark to rewrite it.") from exc
        if not isinstance(results, dict) or "records" not in results:
            raise ReportError(f"{str(file)!r} is not a facebench results.json (no 'records').")
        loaded.append({"path": str(file.parent), "results": results})
    return _label(loaded)


def _label(runs: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    taken = set()
    for run in runs:
        base = str(run.get("label") or (run["results"].get("model") or {}).get("name") or "run")
        count = seen.get(base, 0) + 1
        label = base if count == 1 else f"{base}-{count}"
        while label in taken:
            count += 1
            label = f"{base}-{count}"
        seen[base] = count
        taken.add(label)
        run["label"] = label
    return runs


def _normalise_runs(runs: Sequence[dict]) -> list[dict]:
    """Accept load_runs output or bare results dicts (labelled like load_runs does)."""
    out = []
    for i, run in enumerate(runs):
        if "results" in run:
            out.append({**run, "results": read_results(run["results"])})
        elif "records" in run:
            out.append({"path": None, "results": read_results(run)})
        else:
            raise ReportError(f"Run #{i + 1} is neither a load_runs() entry nor a results dict.")
    if all("label" in r for r in out) and len({r["label"] for r in out}) == len(out):
        return out
    for r in out:
        r.pop("label", None)
    return _label(out)


# ----------------------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Column:
    """One leaderboard column: a task's metric under one protocol and dataset fingerprint."""

    task: str
    metric: str
    protocol_fp: str | None
    dataset_fp: str | None
    label: str  # e.g. "accuracy % · rafdb-test" or "accuracy % · rafdb-test [a1b2]" when split
    suffix: str = ""  # "[a1b2]" when the (task, metric) was split by fingerprint, else ""
    header: str = ""  # the metric's readable name alone ("accuracy %")
    #: from the column's records (set by the protocol): None when they do not say, so nothing is ranked
    higher_is_better: bool | None = None
    unit: str | None = None


@dataclass
class Table:
    columns: list[Column]
    rows: list[str]
    cells: dict[tuple[str, int], dict | None]
    notes: list[str] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    #: (row, task) -> "skipped: reason" for tasks a run did not complete
    status: dict[tuple[str, str], str] = field(default_factory=dict)

    def column_groups(self) -> list[tuple[str, list[int]]]:
        """Consecutive columns of the same task (and fingerprint suffix): [(group title, [indices])]."""
        groups: list[tuple[str, list[int]]] = []
        last = None
        for i, c in enumerate(self.columns):
            key = (c.task, c.protocol_fp, c.dataset_fp)
            if key != last:
                groups.append((c.task + (f" {c.suffix}" if c.suffix else ""), []))
                last = key
            groups[-1][1].append(i)
        return groups


#: The fingerprints of the data a task read: its split, the other splits, their attributes and pairs.
DATA_FINGERPRINTS = ("dataset", "extra_datasets", "annotations", "extra_annotations")


def data_fingerprint(fps: dict) -> str | None:
    """The data side of a column key: the dataset fingerprint, followed (``:``) by a short digest of the other
    :data:`DATA_FINGERPRINTS` when the task recorded any (another pair list or corrected attributes over the same
    images are other data)."""
    rest = {k: fps[k] for k in DATA_FINGERPRINTS[1:] if fps.get(k)}
    if not rest:
        return fps.get("dataset")
    return f"{fps.get('dataset')}:" + hashlib.sha1(json.dumps(rest, sort_keys=True).encode("utf-8")).hexdigest()[:8]


def _fps(record: dict, task_row: dict | None) -> tuple[str | None, str | None]:
    fps = {**((task_row or {}).get("fingerprints") or {}), **(record.get("fingerprints") or {})}
    return fps.get("protocol"), data_fingerprint(fps)


def _wanted(record: dict, metrics) -> bool:
    if metrics == "headline":
        return bool(record.get("headline"))
    if metrics == "all":
        return True
    if isinstance(metrics, str):
        metrics = [metrics]
    return any(fnmatch.fnmatchcase(record["metric"], m) for m in metrics)


def _short(values: list[str | None]) -> list[str]:
    """Shortest common prefix length (>= 4) that keeps the distinct fingerprints apart. Data fingerprints that
    share their dataset part (``dataset:rest``, :func:`data_fingerprint`) are told apart by the rest ("none"
    where a run recorded none)."""
    texts = ["none" if v is None else str(v) for v in values]
    if len({t.split(":", 1)[0] for t in texts}) == 1 and any(":" in t for t in texts):
        texts = [t.split(":", 1)[1] if ":" in t else "none" for t in texts]
    longest = max((len(t) for t in texts), default=4)
    for k in range(4, longest + 1):
        if len({t[:k] for t in texts}) == len(set(texts)):
            return [t[:k] for t in texts]
    return texts


def _collect(runs: Sequence[dict], metrics) -> tuple[list[tuple], dict, dict]:
    """The wanted records of every run: column keys (task, metric, protocol fp, dataset fp) in first-seen
    order, ``found[key][run label] = record``, and ``status[(run label, task)]`` of tasks that did not run."""
    keys: list[tuple] = []
    found: dict[tuple, dict[str, dict]] = {}
    status: dict[tuple[str, str], str] = {}
    for run in runs:
        results = run["results"]
        task_rows = {t.get("name"): t for t in results.get("tasks", [])}
        for t in results.get("tasks", []):
            if t.get("status", "ok") != "ok":
                status[(run["label"], t.get("name"))] = f"{t.get('status')}: {t.get('reason', '')}".strip()
        for record in results.get("records", []):
            if not _wanted(record, metrics):
                continue
            key = (record["task"], record["metric"], *_fps(record, task_rows.get(record["task"])))
            if key not in found:
                keys.append(key)
                found[key] = {}
            found[key].setdefault(run["label"], record)
    return keys, found, status


def build_table(runs: Sequence[dict], metrics="headline", strict: bool = False) -> Table:
    """Merge runs into one leaderboard.

    ``runs``: :func:`load_runs` output (or results dicts). ``metrics``: ``"headline"`` (default),
    ``"all"``, or metric names / glob patterns (``["accuracy*", "nll"]``). ``strict``: raise
    :class:`ReportError` instead of splitting a column whose runs disagree on fingerprints.
    """
    runs = _normalise_runs(runs)
    rows = [r["label"] for r in runs]
    keys, found, status = _collect(runs, metrics)

    # which (task, metric) pairs need splitting
    by_pair: dict[tuple[str, str], list[tuple]] = {}
    for key in keys:
        by_pair.setdefault(key[:2], []).append(key)
    split_pairs = {pair: ks for pair, ks in by_pair.items() if len(ks) > 1}

    if strict and split_pairs:
        raise ReportError("Runs disagree on fingerprints, so their numbers are not comparable "
                          "(strict mode refuses to split columns):\n"
                          + "\n".join(_describe(pair, ks, found) for pair, ks in split_pairs.items()))

    suffix: dict[tuple, str] = {}
    notes: list[str] = []
    noted: set = set()
    for pair, ks in split_pairs.items():
        p_vary = len({k[2] for k in ks}) > 1
        d_vary = len({k[3] for k in ks}) > 1
        p_short = dict(zip(ks, _short([k[2] for k in ks])))
        d_short = dict(zip(ks, _short([k[3] for k in ks])))
        for k in ks:
            if p_vary and d_vary:
                suffix[k] = f"[p:{p_short[k]} d:{d_short[k]}]"
            else:
                suffix[k] = f"[{(p_short if p_vary else d_short)[k]}]"
        what = " and ".join(w for w, v in (("protocol", p_vary), ("data (dataset, other splits, attributes or "
                                                                 "pairs)", d_vary)) if v)
        parts = "; ".join(f"{suffix[k]} = {', '.join(found[k])}" for k in ks)
        note_key = (pair[0], tuple(suffix[k] for k in ks), parts)
        if note_key in noted:
            continue
        noted.add(note_key)
        notes.append(f"Task '{pair[0]}': {what} fingerprints differ between runs, so its columns are split: {parts}.")
    # merge notes of one task that repeat for each metric
    notes = _dedupe_task_notes(notes)

    # order: task first appearance, then fingerprint group, then metric first appearance
    task_order: dict[str, int] = {}
    group_order: dict[tuple, int] = {}
    for key in keys:
        task_order.setdefault(key[0], len(task_order))
        group_order.setdefault((key[0], key[2], key[3]), len(group_order))
    ordered = sorted(keys, key=lambda k: (task_order[k[0]], group_order[(k[0], k[2], k[3])]))

    columns = []
    cells: dict[tuple[str, int], dict | None] = {}
    for i, key in enumerate(ordered):
        task, metric, pfp, dfp = key
        header = _column_name(metric)
        label = f"{header} · {task}" + (f" {suffix[key]}" if key in suffix else "")
        higher, unit = _kind(key, found[key])
        columns.append(Column(task, metric, pfp, dfp, label, suffix.get(key, ""), header, higher, unit))
        for row in rows:
            cells[(row, i)] = found[key].get(row)
    return Table(columns, rows, cells, notes, runs, status)


def _kind(key: tuple, records: dict[str, dict]) -> tuple[bool | None, str | None]:
    """(higher_is_better, unit) that the column's records declare; ReportError when runs disagree (their
    numbers would not mean the same thing); None where no record says (no ranking, plain numbers)."""
    kinds = {(r.get("higher_is_better") if isinstance(r.get("higher_is_better"), bool) else None,
              r.get("unit") if isinstance(r.get("unit"), str) else None) for r in records.values()}
    if len(kinds) > 1:
        said = ", ".join(f"{run}: higher_is_better={rec.get('higher_is_better')}, unit={rec.get('unit')}"
                         for run, rec in records.items())
        raise ReportError(f"Task '{key[0]}', metric '{key[1]}': the runs' records disagree on its direction or unit "
                          f"({said}); their numbers are not comparable in one column.")
    return kinds.pop()


def _dedupe_task_notes(notes: list[str]) -> list[str]:
    out = []
    for n in notes:
        if n not in out:
            out.append(n)
    return out


def _describe(pair: tuple[str, str], keys: list[tuple], found: dict) -> str:
    lines = [f"  task '{pair[0]}', metric '{pair[1]}':"]
    for k in keys:
        lines.append(f"    protocol fingerprint {k[2]}, dataset fingerprint {k[3]}: runs {', '.join(found[k])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- helpers

def _scale(record: dict) -> tuple[float, int]:
    return display_scale(record)


def _ci(record: dict) -> tuple[float, float] | None:
    ci = record.get("ci")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in ci):
        return None
    return float(ci[0]), float(ci[1])


def _value(record: dict | None) -> float | None:
    if record is None:
        return None
    v = record.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return None  # absent, non-finite, or not a number at all (a hand-edited results.json)
    return float(v)


def best_rows(table: Table, index: int) -> set[str]:
    """Rows holding the best value of column ``index`` (ties all count); empty with < 2 values."""
    values = {row: _value(table.cells.get((row, index))) for row in table.rows}
    values = {r: v for r, v in values.items() if v is not None}
    if len(values) < 2:
        return set()
    higher = table.columns[index].higher_is_better
    if higher is None:
        return set()  # the records do not say which way is better: nothing is marked
    pick = max if higher else min
    best = pick(values.values())
    return {r for r, v in values.items() if v == best}


def _format(record: dict | None, ci: str | None, pm: str = "±") -> str:
    if record is None or record.get("value") is None:
        return "n/a" if record is not None else "–"
    if ci == "brackets":
        return format_value(record, with_ci=True)
    text = format_value(record, with_ci=False)
    interval = _ci(record)
    if ci == "pm" and interval is not None:
        scale, digits = _scale(record)
        text += f" {pm} {(interval[1] - interval[0]) / 2 * scale:.{digits}f}"
    return text


# ----------------------------------------------------------------------------------------------- Markdown / CSV

_md_escape = md_escape  # one rule for every Markdown cell: facebench.report.leaderboard.md_escape


def to_markdown(table: Table, ci: str | None = "brackets") -> str:
    """A Markdown table (runs as rows), best value per column in bold, then the notes.

    ``ci``: ``"brackets"`` (``81.05 [79.25, 82.75]``), ``"pm"`` (``81.05 ± 0.88``) or ``None``.
    """
    header = ["run"] + [_md_escape(c.label) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    best = [best_rows(table, i) for i in range(len(table.columns))]
    for row in table.rows:
        cells = [_md_escape(row)]
        for i, _ in enumerate(table.columns):
            text = _format(table.cells.get((row, i)), ci)
            cells.append(f"**{text}**" if row in best[i] else text)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    legend = ("Percentages for accuracy-like metrics; "
              + {"brackets": "95% CIs in brackets; ", "pm": "± is half the 95% CI width; "}.get(ci or "", "")
              + "best per column in bold (direction from the records); – = not reported.")
    lines.append(legend)
    if table.status:
        lines += ["", "Tasks not completed: " + md_escape("; ".join(f"{row} / {task}: {s.rstrip('.')}" for (row, task), s
                                                                    in sorted(table.status.items()))) + "."]
    if table.notes:
        lines += [""] + [f"- {_md_escape(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV field that a spreadsheet will not run (OWASP CSV injection): text beginning with
    ``= + - @``, tab or carriage return gets a leading ``'``; numbers (and numeric text such as
    ``-0.5``) pass unchanged."""
    if not isinstance(value, str) or not value.startswith(CSV_FORMULA_START):
        return value
    try:
        float(value)
        return value if value == value.strip() else "'" + value
    except ValueError:
        return "'" + value


CSV_FIELDS = ("run", "task", "metric", "value", "ci_low", "ci_high", "n", "protocol_fp", "dataset_fp")


def to_csv(table: Table) -> str:
    """One line per (run, column) with raw (unscaled) values; empty fields where a run lacks the column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in table.rows:
        for i, c in enumerate(table.columns):
            rec = table.cells.get((row, i))
            interval = _ci(rec) if rec else None
            value = _value(rec)
            writer.writerow([csv_cell(v) for v in (
                row, c.task, c.metric, "" if value is None else repr(value),
                "" if interval is None else repr(interval[0]),
                "" if interval is None else repr(interval[1]),
                "" if not rec or rec.get("n") is None else rec["n"],
                c.protocol_fp or "", c.dataset_fp or "")])
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- LaTeX

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "[": "{[}", "]": "{]}", "|": r"\textbar{}", "·": r"$\cdot$", "–": "--",
          "—": "---", "±": r"$\pm$", "\n": " "}


def _one_line(text) -> str:
    return " ".join(str(text).splitlines())


def latex_escape(text) -> str:
    """Escape LaTeX special characters (``_ % & # $ { } ~ ^ \\ < > [ ] |``) in plain text."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def to_latex(table: Table, ci: str | None = "pm", bold_best: bool = True, baseline: str | None = None,
             significance: dict | None = None) -> str:
    """A booktabs ``tabular``: runs as rows, one column per (task, metric), tasks as spanning headers.

    Conventions (also written as ``%`` comments above the tabular):

    * values as in the Markdown leaderboard (percent for accuracy-like metrics);
    * ``ci="pm"``: ``81.05 $\\pm$ 0.88`` -- half the CI width, a symmetric approximation of a
      possibly asymmetric bootstrap interval; ``ci="brackets"``: ``81.05 [79.25, 82.75]``; ``None``: value only;
    * ``bold_best``: the best value of each column in ``\\textbf{}`` (ties all bold; direction from
      the records' ``higher_is_better``; nothing is bold when fewer than two runs have a value);
    * ``significance``: ``{(row label, column index): p value}`` -- a ``\\textsuperscript{\\dag}``
      after the cell when ``p < 0.05`` (e.g. a paired test against a baseline, computed elsewhere);
    * ``baseline`` given and ``significance`` None: ``\\textsuperscript{*}`` on cells whose CI does
      not overlap the baseline run's CI in that column -- a conservative, *non-paired* mark (two
      non-overlapping 95% intervals imply p < 0.05; overlapping ones do not imply the opposite).
    """
    if baseline is not None and baseline not in table.rows:
        raise ReportError(f"Baseline {baseline!r} is not one of the runs: {', '.join(table.rows)}.")
    ncol = len(table.columns)
    best = [best_rows(table, i) if bold_best else set() for i in range(ncol)]
    lines = [
        "% facebench multi-run leaderboard (requires \\usepackage{booktabs})",
        "% values: percent for accuracy-like metrics; "
        + {"pm": "+- is half the 95% CI width (symmetric approximation)",
           "brackets": "95% CI in brackets"}.get(ci or "", "no CI") + "; bold = best per column",
    ]
    if significance is not None:
        lines.append("% \\dag: p < 0.05 (significance given by the caller)")
    elif baseline is not None:
        lines.append(f"% *: CI does not overlap the CI of baseline {_one_line(baseline)} (conservative, non-paired)")
    lines += [f"% note: {_one_line(n)}" for n in table.notes]  # a line break would end the comment
    lines.append("\\begin{tabular}{l" + "r" * ncol + "}")
    lines.append("\\toprule")
    groups = table.column_groups()
    top = [""]
    rules = []
    for title, idx in groups:
        top.append(f"\\multicolumn{{{len(idx)}}}{{c}}{{{latex_escape(title)}}}")
        rules.append(f"\\cmidrule(lr){{{idx[0] + 2}-{idx[-1] + 2}}}")
    lines.append(" & ".join(top) + " \\\\")
    if rules:
        lines.append(" ".join(rules))
    lines.append(" & ".join(["Run"] + [latex_escape(c.header) for c in table.columns]) + " \\\\")
    lines.append("\\midrule")
    for row in table.rows:
        cells = [latex_escape(row) + (" (baseline)" if row == baseline else "")]
        for i, col in enumerate(table.columns):
            rec = table.cells.get((row, i))
            text = latex_escape(_format(rec, ci, pm="±"))
            if row in best[i]:
                text = f"\\textbf{{{text}}}"
            if rec is not None and row != baseline:
                if significance is not None:
                    p = significance.get((row, i))
                    if p is not None and p < 0.05:
                        text += "\\textsuperscript{\\dag}"
                elif baseline is not None:
                    mine, base = _ci(rec), _ci(table.cells.get((baseline, i)) or {})
                    if mine is not None and base is not None and not _overlap(mine, base):
                        text += "\\textsuperscript{*}"
            cells.append(text)
        lines.append(" & ".join(cells) + " \\\\")
    lines.append("\\bottomrule")
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def to_latex_document(table: Table, **kwargs) -> str:
    """A standalone article (booktabs, landscape-friendly small font) holding :func:`to_latex`'s table."""
    body = to_latex(table, **kwargs)
    legend = ["Percentages for accuracy-like metrics.",
              {"pm": "$\\pm$: half the 95\\% CI width.", "brackets": "Brackets: 95\\% CI."}.get(kwargs.get("ci", "pm")
                                                                                              or "", ""),
              "Bold: best per column." if kwargs.get("bold_best", True) else ""]
    if kwargs.get("significance") is not None:
        legend.append("\\dag: $p < 0.05$.")
    elif kwargs.get("baseline") is not None:
        legend.append(f"*: 95\\% CI does not overlap the baseline's ({latex_escape(kwargs['baseline'])}).")
    legend += [latex_escape(n) for n in table.notes]
    return "\n".join([
        "\\documentclass{article}",
        "\\usepackage[utf8]{inputenc}",
        "\\usepackage[T1]{fontenc}",
        "\\usepackage{textcomp}",
        "\\usepackage{booktabs}",
        "\\usepackage[margin=1.5cm,landscape]{geometry}",
        "\\begin{document}",
        "\\begin{table}[ht]",
        "\\centering",
        "\\small",
        body.rstrip("\n"),
        "\\caption{" + " ".join(x for x in legend if x) + "}",
        "\\end{table}",
        "\\end{document}",
        "",
    ])


# ----------------------------------------------------------------------------------------------- HTML fragment

def to_html_table(table: Table, task_links: dict[str, str] | None = None) -> str:
    """A ``<table class="leaderboard">`` fragment; every cell has ``data-sort`` (raw value, "" when absent).

    ``task_links``: {task name: relative URL} to link each task's header group (used by the site).
    """
    best = [best_rows(table, i) for i in range(len(table.columns))]
    out = ['<table class="leaderboard">', "<thead>"]
    groups = table.column_groups()
    out.append("<tr><th></th>" + "".join(
        f'<th colspan="{len(idx)}" class="task">'
        + (f'<a href="{escape(task_links[table.columns[idx[0]].task])}">{escape(title)}</a>'
           if task_links and table.columns[idx[0]].task in task_links else escape(title))
        + "</th>" for title, idx in groups) + "</tr>")
    out.append('<tr><th class="sortable" data-col="0" data-type="text">run</th>' + "".join(
        f'<th class="sortable" data-col="{i + 1}" data-type="number" '
        f'data-direction="{"asc" if c.higher_is_better is False else "desc"}" title="{escape(c.label)}">'
        f"{escape(c.header)}</th>" for i, c in enumerate(table.columns)) + "</tr>")
    out.append("</thead>")
    out.append("<tbody>")
    for row in table.rows:
        cells = [f'<td data-sort="{escape(row)}">{escape(row)}</td>']
        for i, _ in enumerate(table.columns):
            rec = table.cells.get((row, i))
            value = _value(rec)
            cls = ' class="best"' if row in best[i] else ""
            sort = "" if value is None else repr(value)
            cells.append(f'<td data-sort="{escape(sort)}"{cls}>{escape(_format(rec, "brackets"))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody>")
    out.append("</table>")
    return "\n".join(out) + "\n"
