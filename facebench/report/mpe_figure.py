"""The figure of a label-free AUROC estimate (``facebench.metrics.mpe``): one unlabelled test set's score
histogram decomposed into its estimated in-distribution part ``(1 - pi) F_id`` and OOD part ``pi F_ood``.

Drawn in :mod:`facebench.report.figures`' paper style (PNG + PDF, deterministic bytes). The parts are read off
the estimate's bin grid and spread over ``bins`` equal-width display bins by linear interpolation of their CDFs
inside a grid bin; the test histogram is the test scores' own. The ID threshold at 95% TPR is marked; the title
carries the estimated AUROC, OOD fraction and their intervals, or the reason the estimate is unidentifiable (the
decomposition at the raw estimate of ``pi`` is then drawn hatched, for inspection only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from facebench.metrics import mpe
from facebench.report import figures as F


def decomposition_title(identifiable: bool, reason: str, n_test: int, method: str, auroc, auroc_ci, pi,
                        pi_ci) -> str:
    """The figure's title: the estimate with its intervals (left out where there are none), or the reason
    there is none."""
    if not identifiable:
        return f"{reason}; n={n_test}"

    def interval(ci, digits: int) -> str:
        ok = ci is not None and len(ci) == 2 and all(v is not None and np.isfinite(v) for v in ci)
        return f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ok else ""

    return (f"estimated AUROC {auroc:.3f}{interval(auroc_ci, 3)}, OOD fraction {pi:.2f}{interval(pi_ci, 2)} "
            f"({method})")


def _title(report: mpe.MPEReport) -> str:
    return decomposition_title(report.identifiable, report.reason, report.n_test, report.method, report.auroc,
                               report.intervals["auroc"], report.pi, report.intervals["pi"])


def decomposition_figure(hist: Mapping, stem, title: str, identifiable: bool, n_test: int,
                         xlabel: str = "detector score (higher = in-distribution)") -> list[Path]:
    """Write ``<stem>.png`` / ``.pdf`` from :func:`facebench.metrics.mpe.decomposition_histogram`'s ``hist``: the
    test-score histogram (outline) over the stacked estimated ID and OOD parts (hatched when unidentifiable)."""
    edges = np.asarray(hist["edges"], np.float64)
    id_part, ood_part = np.asarray(hist["id_part"], np.float64), np.asarray(hist["ood_part"], np.float64)

    def draw(fig):
        ax = fig.add_subplot()
        width = np.diff(edges)
        hatch = None if identifiable else "//"
        ax.bar(edges[:-1], id_part, width, align="edge", color=F._color(0), alpha=0.75, hatch=hatch,
               label="estimated in-distribution part")
        ax.bar(edges[:-1], ood_part, width, bottom=id_part, align="edge", color=F._color(1), alpha=0.75,
               hatch=hatch, label="estimated OOD part")
        ax.stairs(np.asarray(hist["test_mass"], np.float64), edges, color="black", linewidth=1.0,
                  label=f"test scores (n={n_test})")
        ax.axvline(float(hist["id_threshold_tpr95"]), color="0.3", linestyle="--", linewidth=0.8,
                   label="ID threshold at 95% TPR")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of test set")
        ax.set_title(title)
        ax.legend(loc="best", fontsize=6)

    return F._render(stem, F.SINGLE_COLUMN, 2.6, draw)


def mpe_decomposition_figure(s_id, s_test, stem, report: mpe.MPEReport | None = None, bins: int = 40,
                             xlabel: str = "detector score (higher = in-distribution)", **estimate) -> list[Path]:
    """Write ``<stem>.png`` / ``.pdf``: the test-score histogram (outline) over the stacked estimated ID and OOD
    parts. ``report``: an :func:`facebench.metrics.mpe.estimate_ood_auroc` result for these scores (computed
    with ``**estimate`` when None). Returns the two paths."""
    s_id, s_test = np.asarray(s_id, np.float64), np.asarray(s_test, np.float64)
    report = report if report is not None else mpe.estimate_ood_auroc(s_id, s_test, **estimate)
    hist = mpe.decomposition_histogram(report, s_id, s_test, bins)
    return decomposition_figure(hist, stem, _title(report), report.identifiable, report.n_test, xlabel)
