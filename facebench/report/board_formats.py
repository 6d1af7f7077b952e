"""The models x tasks boards (:mod:`facebench.report.boards`) as Markdown, LaTeX, HTML and a long CSV.

Conventions shared by every format: values as in the run leaderboards (percent for fraction units, see
:func:`facebench.report.leaderboard.display_scale`); ``ci``: ``"brackets"`` (``81.05 [79.25, 82.75]``),
``"pm"`` (``81.05 ± 0.88``, half the 95% CI width) or ``None``; best per column in bold, second
underlined (Markdown: ``<ins>``, LaTeX: ``\\underline``, HTML: ``<u>``); ``baseline`` (a row label): a
``*`` after each value whose 95% CI does not overlap the baseline's in that column (conservative,
non-paired). The Mean carries no CI; the mean rank is lower-better.

LaTeX: :func:`to_latex_fragment` is a bare booktabs ``tabular`` (no preamble, ``%`` comments with the
legend) to ``\\input`` into a paper (``\\usepackage{booktabs}``); :func:`latex_wrapper` is a standalone
document that ``\\input``s every fragment from ``tables/`` and compiles with pdflatex from the report folder.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from html import escape
from typing import Sequence

from facebench.report.boards import CI_ONLY_CONVENTIONS, Board, _data_fp, _digest, marks, run_cut
from facebench.report.leaderboard import display_scale, md_escape
from facebench.report.tables import _ci, _format, _normalise_runs, _overlap, _value, csv_cell, latex_escape

CI_LEGEND = {"brackets": "95% CIs in brackets", "pm": "± is half the 95% CI width", None: "no CIs shown"}


@dataclass(frozen=True)
class Cell:
    text: str
    mark: str = ""  # "best", "second" or ""
    sort: float | None = None
    star: bool = False  # CI does not overlap the baseline's


def headers(board: Board) -> list[tuple[str, str]]:
    """(title, metric) per column: the task columns, then Mean and Mean rank where the board has them."""
    out = [(c.title, c.metric_name) for c in board.columns]
    if board.mean is not None:
        out.append(("Mean", board.columns[0].metric_name))
    if board.ranks is not None:
        out.append(("Mean rank", "lower is better"))
    return out


def grid(board: Board, ci: str | None = "brackets", baseline: str | None = None) -> list[tuple[str, list[Cell]]]:
    """Each row's cells in :func:`headers` order, formatted and marked."""
    columns = []
    for i, col in enumerate(board.columns):
        values = {row: _value(board.cells.get((row, i))) for row in board.rows}
        best, second = marks(values, col.higher_is_better)
        columns.append([_cell(board, row, i, ci, baseline, best, second) for row in board.rows])
    if board.mean is not None:
        scale, digits = display_scale({"unit": board.columns[0].unit})
        columns.append(_derived(board.mean, board.rows, board.mean_higher_is_better, lambda v: f"{v * scale:.{digits}f}"))
    if board.ranks is not None:
        columns.append(_derived(board.ranks, board.rows, False, lambda v: f"{v:.2f}"))
    return [(row, [col[j] for col in columns]) for j, row in enumerate(board.rows)]


def _cell(board: Board, row: str, i: int, ci, baseline, best: set, second: set) -> Cell:
    record = board.cells.get((row, i))
    mark = "best" if row in best else "second" if row in second else ""
    star = False
    if baseline is not None and record is not None and row != baseline:
        mine, base = _ci(record), _ci(board.cells.get((baseline, i)) or {})
        star = mine is not None and base is not None and not _overlap(mine, base)
    return Cell(_format(record, ci), mark, _value(record), star)


def _derived(values: dict, rows: list[str], higher: bool | None, fmt) -> list[Cell]:
    best, second = marks(values, higher)
    return [Cell("–" if values.get(r) is None else fmt(values[r]),
                 "best" if r in best else "second" if r in second else "", values.get(r)) for r in rows]


def legend(ci: str | None, baseline: str | None) -> str:
    text = (f"Percent for accuracy-like metrics; {CI_LEGEND[ci]}; best per column in bold, second underlined "
            "(direction from each metric's records); – = not reported.")
    if baseline is not None:
        text += f" *: 95% CI does not overlap the CI of baseline {baseline} (conservative, non-paired)."
    return text


def _board_notes(board: Board) -> list[str]:
    return [n for n in [board.mean_note] + board.notes if n]


# ----------------------------------------------------------------------------------------------- Markdown

def to_markdown(boards: Sequence[Board], ci: str | None = "brackets", baseline: str | None = None,
                title: str = "Leaderboard: models x tasks") -> str:
    """Every board as a ``## protocol — metric`` section; every header and cell through ``md_escape``."""
    lines = [f"# {md_escape(title)}", "", md_escape(legend(ci, baseline)), ""]
    if not boards:
        lines += ["No records to show.", ""]
    for board in boards:
        heads = headers(board)
        same = board.same_metric
        names = ["model"] + [md_escape(t if same or t.startswith("Mean") else f"{t} ({m})") for t, m in heads]
        lines += [f"## {md_escape(board.title)}", "", "| " + " | ".join(names) + " |",
                  "|" + "|".join(["---"] + ["---:"] * len(heads)) + "|"]
        for row, cells in grid(board, ci, baseline):
            lines.append("| " + " | ".join([md_escape(row)] + [_md_cell(c) for c in cells]) + " |")
        lines += [""] + [md_escape(n) for n in _board_notes(board)] + [""]
    return "\n".join(lines)


def _md_cell(cell: Cell) -> str:
    text = md_escape(cell.text) + ("\\*" if cell.star else "")
    return f"**{text}**" if cell.mark == "best" else f"<ins>{text}</ins>" if cell.mark == "second" else text


# ----------------------------------------------------------------------------------------------- LaTeX

def _tex_safe(ch: str) -> bool:
    return ord(ch) < 0x80 or ("\u00c0" <= ch <= "\u00ff" and ch not in "\u00d7\u00f7")


def tex_text(text) -> str:
    """:func:`facebench.report.tables.latex_escape`, then every character but ASCII and the Latin-1 letters
    as ``?`` (what pdflatex sets with any font encoding), so that a fragment always compiles; ``$`` as the
    math ``$\\$$`` (the text ``\\$`` takes a TS1 font that the default OT1 encoding draws as a bitmap)."""
    return "".join(_tex_char(ch) for ch in str(text))


def _tex_char(ch: str) -> str:
    if ch == "$":
        return "$\\$$"
    escaped = latex_escape(ch)  # the specials (and the dashes, ±, ·) have their own LaTeX
    return escaped if escaped != ch or _tex_safe(ch) else "?"


def to_latex_fragment(board: Board, ci: str | None = "pm", baseline: str | None = None) -> str:
    """A booktabs ``tabular`` for ``\\input`` (needs ``\\usepackage{booktabs}``; no preamble)."""
    heads = headers(board)
    lines = [f"% facebench: {' '.join(board.title.splitlines())} (models x tasks; requires \\usepackage{{booktabs}})",
             "% " + legend(ci, baseline).replace("\n", " ")]
    lines += [f"% note: {' '.join(n.splitlines())}" for n in _board_notes(board)]
    lines += ["\\begin{tabular}{l" + "r" * len(heads) + "}", "\\toprule",
              " & ".join(["Model"] + [tex_text(t) for t, _ in heads]) + " \\\\"]
    if not board.same_metric:
        lines.append(" & ".join([""] + [tex_text(m) if not t.startswith("Mean") else "" for t, m in heads]) + " \\\\")
    lines.append("\\midrule")
    for row, cells in grid(board, ci, baseline):
        lines.append(" & ".join([tex_text(row)] + [_tex_cell(c) for c in cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def _tex_cell(cell: Cell) -> str:
    text = tex_text(cell.text)
    text = f"\\textbf{{{text}}}" if cell.mark == "best" else f"\\underline{{{text}}}" if cell.mark == "second" else text
    return text + ("\\textsuperscript{*}" if cell.star else "")


def fragment_names(boards: Sequence[Board]) -> list[str]:
    """A unique ``<slug>.tex`` file name per board (``-2``, ``-3`` where two slugs collide)."""
    names, seen = [], set()
    for board in boards:
        name, k = board.slug, 1
        while name in seen:
            k += 1
            name = f"{board.slug}-{k}"
        seen.add(name)
        names.append(f"{name}.tex")
    return names


def latex_wrapper(boards: Sequence[Board], names: Sequence[str], folder: str = "tables", ci: str | None = "pm",
                  baseline: str | None = None) -> str:
    """A standalone article that ``\\input``s ``folder/<name>`` for each board, each in a captioned ``table``
    float, scaled down to the text width when wider; compile it from the folder that holds ``folder``."""
    lines = ["% facebench report: every models x tasks table; compile with pdflatex from this folder.",
             "% Default OT1 encoding on purpose: its Computer Modern fonts are Type 1 in every TeX installation",
             "% (T1 needs cm-super or lmodern, else pdflatex draws bitmap Type 3 fonts).",
             "\\documentclass{article}", "\\usepackage[utf8]{inputenc}", "\\usepackage{booktabs}",
             "\\usepackage{graphicx}",
             "\\usepackage[margin=2cm]{geometry}", "\\begin{document}"]
    if not boards:
        lines.append("No records to show.")
    for board, name in zip(boards, names):
        caption = " ".join([board.title + ".", legend(ci, baseline)] + _board_notes(board))
        lines += ["\\begin{table}[htbp]", "\\centering", f"\\caption{{{tex_text(caption)}}}",
                  "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{"
                  f"\\input{{{folder}/{name}}}}}", "\\end{table}"]
    lines += ["\\end{document}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- HTML

def to_html(boards: Sequence[Board], ci: str | None = "brackets", baseline: str | None = None) -> str:
    """An ``<h2>`` and a sortable ``<table class="leaderboard">`` per board (``data-sort`` on every cell)."""
    out = [f'<p class="muted">{escape(legend(ci, baseline))}</p>']
    for board in boards:
        heads = headers(board)
        out += [f"<h2>{escape(board.title)}</h2>", '<table class="leaderboard">', "<thead><tr>",
                '<th class="sortable" data-col="0" data-type="text">model</th>']
        for i, (title, metric) in enumerate(heads):
            higher = _direction(board, i)
            out.append(f'<th class="sortable" data-col="{i + 1}" data-type="number" data-direction='
                       f'"{"asc" if higher is False else "desc"}" title="{escape(metric)}">{escape(title)}</th>')
        out.append("</tr></thead><tbody>")
        for row, cells in grid(board, ci, baseline):
            out.append(f'<tr><td data-sort="{escape(row)}">{escape(row)}</td>' + "".join(_html_cell(c) for c in cells)
                       + "</tr>")
        out.append("</tbody></table>")
        out += [f'<p class="muted">{escape(n)}</p>' for n in _board_notes(board)]
    return "\n".join(out) + "\n"


def _direction(board: Board, i: int) -> bool | None:
    if i < len(board.columns):
        return board.columns[i].higher_is_better
    return board.mean_higher_is_better if board.mean is not None and i == len(board.columns) else False


def _html_cell(cell: Cell) -> str:
    text = escape(cell.text) + ("*" if cell.star else "")
    text = f"<u>{text}</u>" if cell.mark == "second" else text
    cls = ' class="best"' if cell.mark == "best" else ""
    return f'<td data-sort="{"" if cell.sort is None else escape(repr(cell.sort))}"{cls}>{text}</td>'


# ----------------------------------------------------------------------------------------------- long CSV

LONG_FIELDS = ("run", "model", "protocol", "task", "dataset", "split", "metric", "value", "ci_low", "ci_high", "n",
               "unit", "higher_is_better", "headline", "cut", "protocol_fp", "dataset_fp", "data_fp",
               "conventions_fp")


def to_long_csv(runs: Sequence[dict]) -> str:
    """One line per run x task x metric (every record of every run), raw unscaled values, for pandas:
    ``cut`` is ``""`` for full runs or ``limit N``; ``data_fp`` covers the task's extra splits too and
    ``conventions_fp`` its conventions without the CI's (what :mod:`facebench.report.boards` splits on)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LONG_FIELDS)
    for run in _normalise_runs(runs):
        results = run["results"]
        tasks = {t.get("name"): t for t in results.get("tasks", [])}
        for rec in results.get("records", []):
            writer.writerow([csv_cell(v) for v in _long_row(run, results, tasks.get(rec.get("task")) or {}, rec)])
    return buf.getvalue()


def _long_row(run: dict, results: dict, task: dict, rec: dict) -> list:
    fps = {**(task.get("fingerprints") or {}), **(rec.get("fingerprints") or {})}
    interval, value = _ci(rec), _value(rec)
    conventions = {k: v for k, v in (rec.get("conventions") or {}).items() if k not in CI_ONLY_CONVENTIONS}
    higher = rec.get("higher_is_better")
    return [run["label"], (results.get("model") or {}).get("name", ""), rec.get("protocol", task.get("protocol", "")),
            rec.get("task", ""), rec.get("dataset", ""), rec.get("split", ""), rec.get("metric", ""),
            "" if value is None else repr(value), "" if interval is None else repr(interval[0]),
            "" if interval is None else repr(interval[1]), "" if rec.get("n") is None else rec["n"],
            rec.get("unit") or "", "" if not isinstance(higher, bool) else str(higher).lower(),
            str(bool(rec.get("headline"))).lower(), run_cut(results), fps.get("protocol") or "",
            fps.get("dataset") or "", _data_fp(task, rec) or "", _digest(conventions)]

