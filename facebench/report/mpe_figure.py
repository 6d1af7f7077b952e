"""The figure of a label-free AUROC estimate (``facebench.metrics.mpe``): one unlabelled test set's score
histogram decomposed into its estimated in-distribution part ``(1 - pi) F_id`` and OOD part ``pi F_ood``.

Drawn in :mod:`facebench.report.figures`' paper style (PNG + PDF, deterministic bytes). The parts are read off
the estimate's bin grid and spread over ``bins`` equal-width display bins by linear interpolation of their CDFs
inside a grid bin; the test histogram is the test scores' own. The ID threshold at 95% TPR is marked; the title
carries the estimated AUROC, OOD fraction and their intervals, or the reason the estimate is unidentifiable (the
decomposition at the raw estimate of ``pi`` is then drawn hatched, for inspection only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facebench.metrics import mpe
from facebench.report import figures as F


def _display_masses(report: mpe.MPEReport, pmf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mass of a grid pmf in each display bin (CDF known at the grid edges, interpolated inside a bin)."""
    cdf_at_grid = np.cumsum(pmf)[:-1]  # F(score < grid[j]) ... mass of bins below edge j
    cdf = np.interp(edges, report.grid, cdf_at_grid, left=0.0, right=1.0)
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


def _title(report: mpe.MPEReport) -> str:
    if not report.identifiable:
        return f"{report.reason}; n={report.n_test}"
    lo, hi = report.intervals["auroc"]
    plo, phi = report.intervals["pi"]
    return (f"estimated AUROC {report.auroc:.3f} [{lo:.3f}, {hi:.3f}], "
            f"OOD fraction {report.pi:.2f} [{plo:.2f}, {phi:.2f}] ({report.method})")


def mpe_decomposition_figure(s_id, s_test, stem, report: mpe.MPEReport | None = None, bins: int = 40,
                             xlabel: str = "detector score (higher = in-distribution)", **estimate) -> list[Path]:
    """Write ``<stem>.png`` / ``.pdf``: the test-score histogram (outline) over the stacked estimated ID and OOD
    parts. ``report``: an :func:`facebench.metrics.mpe.estimate_ood_auroc` result for these scores (computed
    with ``**estimate`` when None). Returns the two paths."""
    s_id, s_test = np.asarray(s_id, np.float64), np.asarray(s_test, np.float64)
    report = report if report is not None else mpe.estimate_ood_auroc(s_id, s_test, **estimate)
    lo, hi = float(min(s_id.min(), s_test.min())), float(max(s_id.max(), s_test.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    pi = report.pi_raw if np.isfinite(report.pi_raw) else 0.0
    id_part = (1.0 - pi) * _display_masses(report, report.p_id, edges)
    ood_part = pi * np.nan_to_num(_display_masses(report, report.p_ood, edges)) if pi > 0 else np.zeros(bins)
    test_mass = np.histogram(s_test, bins=edges)[0] / len(s_test)
    t95 = np.quantile(s_id, 0.05, method="inverted_cdf")

    def draw(fig):
        ax = fig.add_subplot()
        width = np.diff(edges)
        hatch = None if report.identifiable else "//"
        ax.bar(edges[:-1], id_part, width, align="edge", color=F._color(0), alpha=0.75, hatch=hatch,
               label="estimated in-distribution part")
        ax.bar(edges[:-1], ood_part, width, bottom=id_part, align="edge", color=F._color(1), alpha=0.75,
               hatch=hatch, label="estimated OOD part")
        ax.stairs(test_mass, edges, color="black", linewidth=1.0, label=f"test scores (n={report.n_test})")
        ax.axvline(t95, color="0.3", linestyle="--", linewidth=0.8, label="ID threshold at 95% TPR")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of test set")
        ax.set_title(_title(report))
        ax.legend(loc="best", fontsize=6)

    return F._render(stem, F.SINGLE_COLUMN, 2.6, draw)
