r"""``facebench report RUN... --out DIR``: leaderboards in every format plus figures and a static site.

Writes the models x tasks boards (:mod:`facebench.report.boards`: per protocol, models as rows, tasks as
columns, Mean and mean rank) as ``leaderboard.md``, ``tables/<protocol>[-<metric>][-<cut>].tex`` (bare booktabs
fragments to ``\input``), ``leaderboard.tex`` (a standalone document that ``\input``s them; compile it from
the report folder), ``leaderboard.csv`` (long format: one line per run x task x metric),
``figures/<run>/<task>-<kind>.{png,pdf}`` (copied from the run folder when their inputs are unchanged, see
``facebench.report.figure_index``) and ``site/index.html`` (one page per task, figures embedded,
no network assets; the boards on its index page), and the ``.facebench-report`` marker. Columns whose protocol
or data fingerprints or conventions differ between runs are split (or, with ``strict``, refused), and ``--limit``
runs never share a board with full runs -- see ``facebench.report.boards``.
"""

from __future__ import annotations

import re
from pathlib import Path

from facebench.errors import ReportError
from facebench.report import board_formats, tables
from facebench.report.boards import build_boards


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def build_report(paths, out: str | Path, strict: bool = False, baseline: str | None = None, ci: str = "brackets",
                 figures: bool = True, metrics: list[str] | None = None, figure_width: str | None = None) -> Path:
    """Write the report folder ``out`` whole: into a temporary sibling, renamed into place. An earlier
    report folder (``.facebench-report`` marker) there is replaced; a file, or a non-empty folder
    without the marker, is refused (``OutputError``) before anything is written. ``ci``: ``brackets``,
    ``pm`` or ``none`` (every table); ``metrics``: the boards' metric names or globs (None: headline);
    ``baseline``: a run label whose CIs the others' are checked against (``*``); ``figure_width``: "single" or
    "double" column for every figure (None / "auto": each its own); two runs or more also get the cross-model
    figures (``facebench.report.model_figures``) in ``figures/models`` and on the site's index."""
    from facebench.outdir import REPORT, check_target, write_folder

    out = Path(out)
    check_target(out, REPORT)
    runs = tables.load_runs(paths)
    tables.build_table(runs, strict=strict)  # strict refusals before anything is written
    boards = build_boards(runs, metrics=metrics, strict=strict)
    if baseline is not None and baseline not in [r["label"] for r in runs]:
        raise ReportError(f"Baseline {baseline!r} is not one of the runs: {', '.join(r['label'] for r in runs)}. "
                          "Pass one of these labels to --baseline.")

    def write(folder: Path) -> None:
        _write_report(folder, runs, boards, strict=strict, baseline=baseline, ci=None if ci == "none" else ci,
                      figures=figures, width=figure_width)

    return write_folder(out, REPORT, write, replace=True)


def _write_report(out: Path, runs: list, boards: list, *, strict: bool, baseline: str | None, ci: str | None,
                  figures: bool, width: str | None = None) -> None:
    from facebench.report.html import write_site

    (out / "leaderboard.md").write_text(board_formats.to_markdown(boards, ci=ci, baseline=baseline),
                                          encoding="utf-8")
    (out / "leaderboard.csv").write_text(board_formats.to_long_csv(runs), encoding="utf-8")
    names = board_formats.fragment_names(boards)
    (out / "tables").mkdir()
    for board, name in zip(boards, names):
        (out / "tables" / name).write_text(board_formats.to_latex_fragment(board, ci=ci, baseline=baseline),
                                           encoding="utf-8")
    (out / "leaderboard.tex").write_text(board_formats.latex_wrapper(boards, names, ci=ci, baseline=baseline),
                                          encoding="utf-8")
    by_task: dict[str, list[str]] = {}
    comparison: list[tuple[str, str]] = []
    if figures:
        for task, paths in _figures(out, runs, width):
            by_task.setdefault(task, []).extend(str(p) for p in paths if p.suffix == ".png")
        if len(runs) >= 2:  # imports matplotlib: a one-run report whose figures are reused never does
            from facebench.report.model_figures import comparison_figures

            comparison = [(caption, str(paths[0])) for caption, paths in
                          comparison_figures(runs, out / "figures" / "models", width)]
    write_site(runs, out / "site", figures=by_task, strict=strict,
               boards=board_formats.to_html(boards, ci=ci, baseline=baseline), comparison=comparison)


def _figures(out: Path, runs: list, width: str | None = None) -> list[tuple[str, list[Path]]]:
    """(task name, its figure files) for every task of every run, in ``out/figures/<run label>``: copied from
    the run folder's figures when their inputs are unchanged (``figures/index.json``), else drawn, all runs'
    figures shared by the same worker processes (``facebench.report.figure_index``)."""
    from facebench.report.figure_index import FigureJob, draw_figures

    jobs, names = [], []
    for run in runs:
        results = run["results"]
        folder = out / "figures" / _safe(run["label"])
        for task in results["tasks"]:
            recs = [r for r in results["records"] if r["task"] == task["name"]]
            jobs.append(FigureJob(task, recs, folder, Path(run["path"]) / "figures", width))
            names.append(task["name"])
    return list(zip(names, draw_figures(jobs)))
