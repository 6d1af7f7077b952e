"""Figures that compare models, drawn by ``facebench report`` from two or more runs (``figures/models/``).

* :func:`forest_figure`: one panel per task, one row per model: the task's headline metric with its 95% CI
  (whiskers), the best value (by the metric's direction) marked by a dotted line.
* :func:`models_heatmap_figure`: models x tasks, each cell annotated with the headline value; its colour is the
  cell's standing within its column (1 = the column's best, 0 = its worst, by the metric's direction; 0.5 when
  the column has one value or no direction), so columns of different metrics and scales share one colour map.
* :func:`reliability_overlay_figure`: per closed-set task, each model's accuracy per confidence bin against the
  bin's mean confidence (empty bins left out), the diagonal, each model's ECE (and CI) in its legend entry.
* :func:`group_comparison_figure`: per fairness task, the groups side by side, one bar per model with CI
  whiskers, the value axis zoomed to the data, each model's gap (largest minus smallest group) in its legend entry.

The headline of a task in a run is its first headline record (cross_domain: ``accuracy[mean]`` when present).
Values of records whose unit is a fraction are shown in percent. Sizes, style and text fitting are those of
:mod:`facebench.report.figures` (``figure_width`` applies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from facebench.errors import ReportError
from facebench.report import figures as F
from facebench.report import names as N

__all__ = ["forest_figure", "models_heatmap_figure", "reliability_overlay_figure", "group_comparison_figure",
           "headline_records", "comparison_figures", "HEADLINE_PREFERENCE"]

#: protocol -> the metric preferred as a task's headline when the task has it
HEADLINE_PREFERENCE = {"cross_domain": "accuracy[mean]"}


def _percent(record: Mapping | None) -> bool:
    from facebench.records import PERCENT_DISPLAY

    return isinstance(record, Mapping) and record.get("unit") in PERCENT_DISPLAY


def _value_ci(record: Mapping | None, scale: float) -> tuple[float, tuple[float, float] | None]:
    """(value, CI) of a record in display units (NaN / None when absent)."""
    if not isinstance(record, Mapping) or record.get("value") is None:
        return float("nan"), None
    ci = record.get("ci")
    ci = (float(ci[0]) * scale, float(ci[1]) * scale) if F._valid_ci(ci) else None
    return float(record["value"]) * scale, ci


# ------------------------------------------------------------------------------------------- forest plot
def forest_figure(panels: Sequence[Mapping], models: Sequence[str], stem) -> list[Path]:
    """``panels``: [{"title", "xlabel", "higher_is_better" (bool or None), "values": {model: (value, (lo, hi) or
    None)}}] in display units; one panel per entry, models top to bottom in the given order."""
    if not panels or not models:
        raise ReportError("forest plot: no panels or no models")
    ncols = 1 if len(panels) == 1 else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    width = F.SINGLE_COLUMN if ncols == 1 else F.DOUBLE_COLUMN
    height = nrows * (0.55 + 0.2 * len(models)) + 0.3

    def draw(fig):
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            _forest_panel(ax, panel, list(models))
        for ax in axes[len(panels):]:
            ax.set_visible(False)

    return F._render(stem, width, height, draw)


def _forest_panel(ax, panel: Mapping, models: list[str]) -> None:
    y = np.arange(len(models))[::-1]
    values = panel["values"]
    for i, (model, yi) in enumerate(zip(models, y)):
        value, ci = values.get(model, (float("nan"), None))
        if not np.isfinite(value):
            ax.text(0.02, yi, "n/a", transform=ax.get_yaxis_transform(), va="center", fontsize=6, color=F.NEUTRAL)
            continue
        xerr = None if ci is None else [[max(value - ci[0], 0.0)], [max(ci[1] - value, 0.0)]]
        ax.errorbar([value], [yi], xerr=xerr, fmt=F.MARKERS[i % len(F.MARKERS)], color=F._color(i), ms=3.5,
                    elinewidth=0.9, capsize=2, zorder=3)
    finite = [v for v, _ in values.values() if np.isfinite(v)]
    higher = panel.get("higher_is_better")
    if finite and higher is not None:
        ax.axvline(max(finite) if higher else min(finite), ls=":", color=F.NEUTRAL, lw=0.8, zorder=1)
    ax.set_yticks(y, labels=models)
    ax.set_ylim(-0.6, len(models) - 0.4)
    ax.set_xlabel(panel["xlabel"])
    ax.set_title(panel["title"], fontsize=8)
    ax.xaxis.grid(True)
    ax.set_axisbelow(True)


# ---------------------------------------------------------------------------------------------- heatmap
def models_heatmap_figure(models: Sequence[str], columns: Sequence[str], values, directions: Sequence,
                          stem, digits: Sequence[int] | None = None) -> list[Path]:
    """Models (rows) x columns (tasks) heat map: ``values[i][j]`` in display units (None: empty cell),
    ``directions[j]`` True / False / None (higher better, lower better, unknown), ``digits[j]`` decimals shown
    (default 1); see the module docstring."""
    digits = list(digits) if digits is not None else [1] * len(columns)
    data = np.array([F._as_float_array(row) for row in values], dtype=float).reshape(len(models), len(columns))
    standing = np.vstack([column_standing(data[:, j], directions[j]) for j in range(len(columns))]).T
    width = F.SINGLE_COLUMN if len(columns) <= 2 else F.DOUBLE_COLUMN  # rotated two-line task labels need room
    height = min(9.0, 1.3 + 0.28 * len(models))

    def draw(fig):
        ax = fig.add_subplot()
        im = F._heatmap(ax, standing, str, vmin=0.0, vmax=1.0, annotate=False)
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                colour = F._text_color(im.cmap(im.norm(standing[i, j])))
                ax.text(j, i, f"{v:.{digits[j]}f}", ha="center", va="center", fontsize=6.5, color=colour, in_layout=False)
        ax.set_xticks(np.arange(len(columns)), labels=list(columns))
        ax.set_yticks(np.arange(len(models)), labels=list(models))
        for t in ax.get_xticklabels():
            t.set(rotation=30, ha="right", rotation_mode="anchor")
        cb = fig.colorbar(im, ax=ax, pad=0.02, aspect=12, fraction=0.05)
        cb.set_label("standing in column\n(1 best, 0 worst)", fontsize=6)
        cb.ax.tick_params(labelsize=6, width=0.5, length=2)
        cb.outline.set_linewidth(0.5)

    return F._render(stem, width, height, draw)


def column_standing(values: np.ndarray, higher: bool | None) -> np.ndarray:
    """Each value's standing in its column: (v - worst) / (best - worst) by the direction; 0.5 for every value
    when there is no direction or no spread; NaN stays NaN."""
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    out = np.full(v.shape, np.nan)
    if finite.size == 0:
        return out
    lo, hi = float(finite.min()), float(finite.max())
    ok = np.isfinite(v)
    if higher is None or hi == lo:
        out[ok] = 0.5
    else:
        out[ok] = (v[ok] - lo) / (hi - lo) if higher else (hi - v[ok]) / (hi - lo)
    return out


# ----------------------------------------------------------------------------------- reliability overlay
def reliability_overlay_figure(curves: Mapping[str, Mapping], stem, title: str | None = None) -> list[Path]:
    """``curves = {model: {"reliability": {...as a closed_set task's details}, "ece": value, "ece_ci": (lo, hi)}}``:
    accuracy against mean confidence per non-empty bin, one marked line per model, and the diagonal."""
    if not curves:
        raise ReportError("reliability overlay: no models")

    def draw(fig):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], ls="--", color=F.NEUTRAL, lw=0.8, label="perfect calibration", zorder=1)
        for i, (model, entry) in enumerate(curves.items()):
            rel = entry["reliability"]
            conf, acc = F._as_float_array(rel["confidence"]), F._as_float_array(rel["accuracy"])
            ok = np.isfinite(conf) & np.isfinite(acc)
            ece = F.ece_text(entry.get("ece"), entry.get("ece_ci"))
            ax.plot(conf[ok], acc[ok], color=F._color(i), ls=F.LINESTYLES[i % len(F.LINESTYLES)],
                    marker=F.MARKERS[i % len(F.MARKERS)], ms=3, label=f"{model} ({ece})" if ece else model, zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("Confidence")
        ax.set_ylabel("Accuracy")
        ax.grid(True)
        ax.legend(loc="upper left", fontsize=6)
        if title:
            ax.set_title(title)

    return F._render(stem, F.SINGLE_COLUMN, 3.0, draw)


# ----------------------------------------------------------------------------------- per-group side by side
def group_comparison_figure(groups: Sequence[str], series: Mapping[str, tuple], stem, metric_label: str,
                            percent: bool = False, title: str | None = None) -> list[Path]:
    """``series = {model: (values, cis)}`` (one value / CI per group, None allowed; data units): groups on the
    x axis, one bar per model with CI whiskers, zoomed to the data; legend entries carry each model's gap."""
    names = [str(g) for g in groups]
    if not series or not names:
        raise ReportError("group comparison: no groups or no models")
    scale = 100.0 if percent else 1.0
    data = {m: (F._as_float_array(v), c) for m, (v, c) in series.items()}
    lo, hi = _joint_range(data.values())
    base, top = F._zoomed_limits(lo, hi, scale, share=percent)
    n = len(data)
    step = 0.8 / n

    def draw(fig):
        ax = fig.add_subplot()
        x = np.arange(len(names))
        for k, (model, (vals, cis)) in enumerate(data.items()):
            pos = x - 0.4 + step * (k + 0.5)
            finite = np.isfinite(vals)
            ax.bar(pos[finite], vals[finite] * scale - base, bottom=base, width=step * 0.9, color=F._color(k),
                   edgecolor="none", label=_gap_label(model, vals, percent), zorder=2)
            low, high = F._errorbars(vals, cis)
            has = finite & np.isfinite(low)
            if has.any():
                ax.errorbar(pos[has], vals[has] * scale, yerr=np.vstack([low[has], high[has]]) * scale, fmt="none",
                            ecolor="black", elinewidth=0.6, capthick=0.6, capsize=1.5, zorder=3)
        ax.set_xticks(x, labels=names)
        F._rotate_labels(ax, names)
        ax.set_ylim(base, top)
        ax.set_ylabel(metric_label + (" (%)" if percent else ""))
        ax.yaxis.grid(True)
        ax.set_axisbelow(True)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(n, 2), borderaxespad=0.2, fontsize=6)
        if title:
            ax.set_title(title, loc="left", pad=4 + 9 * -(-n // 2))

    return F._render(stem, F._bar_width(len(names) * max(1, n // 2)), 2.6, draw)


def _joint_range(series) -> tuple[float, float]:
    lows, highs = [], []
    for vals, cis in series:
        lo, hi = F._value_range(vals, cis)
        lows.append(lo)
        highs.append(hi)
    return min(lows), max(highs)


def _gap_label(model: str, vals: np.ndarray, percent: bool) -> str:
    finite = vals[np.isfinite(vals)]
    if finite.size < 2:
        return model
    gap = float(finite.max() - finite.min())
    return f"{model} (gap {gap * 100:.1f} pp)" if percent else f"{model} (gap {gap:.3g})"


# ---------------------------------------------------------------------------------------------- from runs
def headline_records(runs: Sequence[Mapping]) -> dict[str, dict[str, Mapping]]:
    """task -> {run label: the task's headline record in that run} over ``runs`` (``load_runs`` output: dicts
    with "label" and "results"), tasks in first-seen order; tasks no run has a headline for are left out."""
    out: dict[str, dict[str, Mapping]] = {}
    for run in runs:
        results = run["results"]
        protocols = {t.get("name"): t.get("protocol") for t in results.get("tasks") or []}
        by_task: dict[str, list[Mapping]] = {}
        for rec in results.get("records") or []:
            if rec.get("headline") and rec.get("value") is not None:
                by_task.setdefault(str(rec.get("task")), []).append(rec)
        for task, recs in by_task.items():
            preferred = HEADLINE_PREFERENCE.get(str(protocols.get(task)))
            pick = next((r for r in recs if r.get("metric") == preferred), recs[0])
            out.setdefault(task, {})[run["label"]] = pick
    return out


def _forest_panels(heads: Mapping[str, Mapping[str, Mapping]]) -> list[dict]:
    panels = []
    for task, by_run in heads.items():
        first = next(iter(by_run.values()))
        scale = 100.0 if _percent(first) else 1.0
        unit = " (%)" if scale == 100.0 else ""
        panels.append({"title": N.task_name(task), "xlabel": N.metric_name(first["metric"]) + unit,
                       "higher_is_better": first.get("higher_is_better"),
                       "values": {label: _value_ci(rec, scale) for label, rec in by_run.items()}})
    return panels


def _heatmap_args(heads: Mapping[str, Mapping[str, Mapping]], models: list[str]) -> tuple[list, list, list, list]:
    columns, values, directions, digits = [], [], [], []
    for task, by_run in heads.items():
        first = next(iter(by_run.values()))
        scale = 100.0 if _percent(first) else 1.0
        columns.append(f"{N.task_name(task)}\n{N.metric_name(first['metric'])}" + (" (%)" if scale == 100 else ""))
        values.append([_value_ci(by_run.get(m), scale)[0] for m in models])
        directions.append(first.get("higher_is_better"))
        digits.append(1 if scale == 100.0 else 3)
    return columns, [list(row) for row in zip(*values)], directions, digits


def _task_rows(runs: Sequence[Mapping], protocol: str) -> dict[str, dict[str, tuple[Mapping, list]]]:
    """task -> {run label: (task row, the task's records)} for evaluated tasks of ``protocol`` with details."""
    out: dict[str, dict[str, tuple[Mapping, list]]] = {}
    for run in runs:
        results = run["results"]
        for row in results.get("tasks") or []:
            if row.get("protocol") == protocol and row.get("status", "ok") == "ok" and row.get("details"):
                recs = [r for r in results.get("records") or [] if r.get("task") == row.get("name")]
                out.setdefault(str(row["name"]), {})[run["label"]] = (row, recs)
    return out


def _reliability_figures(runs, folder: Path) -> list[tuple[str, list[Path]]]:
    out = []
    for task, by_run in _task_rows(runs, "closed_set").items():
        curves = {}
        for label, (row, recs) in by_run.items():
            rel = row["details"].get("reliability")
            ece = next((r for r in recs if str(r.get("metric", "")).split("[")[0] == "ece"), {})
            if isinstance(rel, Mapping):
                curves[label] = {"reliability": rel, "ece": ece.get("value"), "ece_ci": ece.get("ci")}
        if len(curves) >= 2:
            stem = folder / f"reliability-{F.sanitise_filename(task)}"
            out.append((f"Reliability, {task}", reliability_overlay_figure(curves, stem, title=N.task_name(task))))
    return out


def _group_figures(runs, folder: Path) -> list[tuple[str, list[Path]]]:
    out = []
    for task, by_run in _task_rows(runs, "fairness").items():
        first_row = next(iter(by_run.values()))[0]
        metric = str(first_row["details"].get("metric") or "value")
        groups = [str(g["group"]) for g in first_row["details"].get("groups") or []]
        series, percent = {}, False
        for label, (row, recs) in by_run.items():
            by_metric = {r.get("metric"): r for r in recs}
            values = {str(g["group"]): g.get("value") for g in row["details"].get("groups") or []}
            cis = [(by_metric.get(f"{metric}[group={g}]") or {}).get("ci") for g in groups]
            series[label] = ([values.get(g) for g in groups], cis)
            percent = percent or _percent(by_metric.get(f"{metric}[overall]"))
        if groups and len(series) >= 2:
            stem = folder / f"groups-{F.sanitise_filename(task)}"
            out.append((f"Per-group {N.metric_name(metric).lower()}, {task}", group_comparison_figure(
                [N.group_name(g) for g in groups], series, stem, N.metric_name(metric), percent=percent,
                title=N.task_name(task))))
    return out


def comparison_figures(runs: Sequence[Mapping], out_dir, width: str | None = None) -> list[tuple[str, list[Path]]]:
    """The cross-model figures of two or more runs in ``out_dir`` (PNG + PDF each): the forest plot and the
    heat map of every task's headline, a reliability overlay per closed-set task and a per-group comparison
    per fairness task that two runs or more evaluated. Returns (caption, [png, pdf]) pairs; [] for one run."""
    if len(runs) < 2:
        return []
    folder = Path(out_dir)
    models = [str(r["label"]) for r in runs]
    heads = {t: by_run for t, by_run in headline_records(runs).items() if len(by_run) >= 1}
    out: list[tuple[str, list[Path]]] = []
    with F.figure_width(width):
        if heads:
            out.append(("Headline metric per task (95% CI)", forest_figure(_forest_panels(heads), models,
                                                                           folder / "forest")))
            columns, values, directions, digits = _heatmap_args(heads, models)
            out.append(("Models x tasks (colour: standing within each task)",
                        models_heatmap_figure(models, columns, values, directions, folder / "heatmap", digits)))
        out += _reliability_figures(runs, folder)
        out += _group_figures(runs, folder)
    return out
