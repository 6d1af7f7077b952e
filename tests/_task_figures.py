"""Test helper: the figures each task of a finished run draws, with every warning an error."""

from __future__ import annotations

import warnings


def drawn_figures(results: dict, folder) -> dict:
    """``{task name: [file names]}`` from ``report.figures.task_figures`` for every task of ``results``."""
    from facebench.report.figures import task_figures

    drawn = {}
    for row in results["tasks"]:
        records = [r for r in results["records"] if r["task"] == row["name"]]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            drawn[row["name"]] = [p.name for p in task_figures(row, records, folder)]
    return drawn
