"""``facebench report RUN... --out DIR``: leaderboards in every format plus figures and a static site.

Writes ``leaderboard.md``, ``leaderboard.tex`` (a standalone booktabs document), ``leaderboard.csv``,
``figures/<run>/<task>-<kind>.{png,pdf}`` (copied from the run folder when their inputs are unchanged, see
``facebench.report.figure_index``) and ``site/index.html`` (one page per task, figures embedded,
no network assets), and the ``.facebench-report`` marker. Columns whose protocol or dataset
fingerprints differ between runs are split (or, with ``strict``, refused) -- see ``facebench.report.tables``.
"""

from __future__ import annotations

import re
from pathlib import Path

from facebench.report import tables


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def build_report(paths, out: str | Path, strict: bool = False, baseline: str | None = None, ci: str = "brackets",
                 figures: bool = True) -> Path:
    """Write the report folder ``out`` whole: into a temporary sibling, renamed into place. An earlier
    report folder (``.facebench-report`` marker) there is replaced; a file, or a non-empty folder
    without the marker, is refused (``OutputError``) before anything is written."""
    from facebench.outdir import REPORT, check_target, write_folder

    out = Path(out)
    check_target(out, REPORT)
    runs = tables.load_runs(paths)
    table = tables.build_table(runs, strict=strict)

    def write(folder: Path) -> None:
        _write_report(folder, runs, table, strict=strict, baseline=baseline, ci=ci, figures=figures)

    return write_folder(out, REPORT, write, replace=True)


def _write_report(out: Path, runs: list, table, *, strict: bool, baseline: str | None, ci: str,
                  figures: bool) -> None:
    from facebench.report.html import write_site

    (out / "leaderboard.md").write_text(tables.to_markdown(table))
    (out / "leaderboard.csv").write_text(tables.to_csv(table))
    (out / "leaderboard.tex").write_text(tables.to_latex_document(table, ci="pm" if ci == "pm" else "brackets",
                                                                  baseline=baseline))
    by_task: dict[str, list[str]] = {}
    if figures:
        for task, paths in _figures(out, runs):
            by_task.setdefault(task, []).extend(str(p) for p in paths if p.suffix == ".png")
    write_site(runs, out / "site", figures=by_task, strict=strict)


def _figures(out: Path, runs: list) -> list[tuple[str, list[Path]]]:
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
            jobs.append(FigureJob(task, recs, folder, Path(run["path"]) / "figures"))
            names.append(task["name"])
    return list(zip(names, draw_figures(jobs)))
