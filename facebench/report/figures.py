"""Paper figures (PNG + PDF) from benchmark results.

Every figure function takes plain data (lists / arrays / dicts) and an output path *stem*; it writes
``<stem>.png`` and ``<stem>.pdf`` and returns ``[png_path, pdf_path]``. :func:`task_figures` turns one
task row of ``results.json`` (plus that task's records) into the figures its protocol declares in
:data:`FIGURES_BY_PROTOCOL`; :func:`run_figures` does so for every task of a run, reusing the figures of an
earlier drawing whose inputs are unchanged (``facebench.report.figure_index``: ``figures/index.json``).

Style. One paper style (:data:`PAPER_STYLE`) applied with :func:`matplotlib.rc_context` around both
building and saving, so no global matplotlib state changes. Figures are built with
:class:`matplotlib.figure.Figure` + :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg` (no
pyplot, no interactive backend, nothing kept alive after the call). DejaVu Sans (bundled with
matplotlib, so the same font everywhere) at 7-9 pt; single-column figures are
:data:`SINGLE_COLUMN` = 3.3 in wide, wide ones :data:`DOUBLE_COLUMN` = 6.9 in (a two-column paper's column and
text widths); :func:`figure_width` ("single" / "double") sets every figure drawn inside it to one of the two
(heights grow with the width, up to 1.6x); constrained layout keeps margins tight without changing the figure
size (so a figure included at its natural width is not rescaled), and titles and axis labels too long for the
canvas are wrapped (:func:`texts_outside` lists any text that still leaves it). Labels are display names
(``facebench.report.names``: "FPR at 95% TPR", not the metric id). Colours: the Okabe-Ito palette (colour-blind
safe), and curves / series also differ by line style / marker so they stay distinguishable in greyscale; heat
maps use the single-hue ``Blues`` map. PDF fonts are embedded as TrueType (``pdf.fonttype`` 42, no Type 3 fonts).

Determinism. The same inputs give byte-identical files in any process: PNGs are written at a fixed
:data:`DPI` with the ``Software`` text chunk removed (matplotlib writes no timestamp in PNGs); PDFs
are written without ``Creator`` / ``Producer`` / ``CreationDate`` (so neither the clock nor
``SOURCE_DATE_EPOCH`` matters; matplotlib's PDF writer uses sequential object ids and no ``/ID``).
Nothing random is drawn, dict orders are the caller's, and text is laid out with the bundled font.
(Bytes are stable for a given matplotlib / FreeType / fontTools install; other versions may differ.)

Cost. A figure is laid out and drawn once per format (:func:`_write`: the bytes ``savefig`` writes, without its
extra layout pass), and a PDF's embedded font subset leaves out the OpenType layout tables no PDF reader
applies (:func:`_pdf_font_subset`). About 0.2 s a figure (PNG + PDF) on one core, against 0.37 s before.

Log axes. Curves drawn on log axes (verification ROC's FAR, DET's FMR and FNMR, optional log-x ROC /
OSCR) contain exact zeros. These are clipped to a *floor*: the largest power of ten strictly below
the smallest positive value plotted on that axis (e.g. smallest FAR 1/400 = 2.5e-3 -> floor 1e-3;
1e-2 -> 1e-3), or 1e-3 when the axis has no positive value; see :func:`log_floor`. Points at the
floor therefore mean "0" and the axis starts there.
"""

from __future__ import annotations

import io
import math
import textwrap
import threading
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable

import matplotlib
import matplotlib.image
import numpy as np
from fontTools import subset as font_subset
from matplotlib import font_manager
from matplotlib.backends import _backend_pdf_ps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import FigureCanvasPdf
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from facebench.errors import ReportError
from facebench.report import names as N
from facebench.report.names import sanitise_filename  # the figure files' task part; re-exported here
from facebench.report.figure_index import FIGURE_WIDTHS, FIGURES_BY_PROTOCOL, check_width, open_set_mode

__all__ = [
    "DPI", "SINGLE_COLUMN", "DOUBLE_COLUMN", "PAPER_STYLE", "PALETTE", "FIGURES_BY_PROTOCOL",
    "row_normalise", "log_floor", "sanitise_filename",
    "confusion_matrix_figure", "per_class_recall_figure", "reliability_figure", "roc_figure",
    "det_figure", "oscr_figure", "group_bars_figure", "cross_domain_heatmap", "scatter_figure",
    "ced_figure", "landmark_overlay_figure", "metric_curves_figure", "ece_text", "score_label", "curve_area",
    "task_figures", "run_figures", "figure_width", "captured_figures", "texts_outside", "FIGURE_WIDTHS",
]

DPI = 200
SINGLE_COLUMN = 3.3  # inches: one column of a two-column paper
DOUBLE_COLUMN = 6.9  # inches: the text width of a two-column paper
WIDTHS = {"single": SINGLE_COLUMN, "double": DOUBLE_COLUMN}  # figure_width() modes
MAX_HEIGHT_GROWTH = 1.6  # a figure widened by figure_width("double") grows in height by at most this factor
CMAP = "Blues"
EMPTY_CELL = "#eeeeee"  # colour of heat-map cells without a value (e.g. a true class with no samples)

PAPER_STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "errorbar.capsize": 2,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.h_pad": 0.02,
    "figure.constrained_layout.w_pad": 0.02,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.hashsalt": "facebench",
    "path.simplify": True,
    "text.usetex": False,
}

# Okabe & Ito's colour-blind-safe palette (Color Universal Design, 2008), its black last: blue, orange,
# bluish green, vermillion, reddish purple, sky blue, yellow, black
PALETTE: tuple[tuple[float, float, float], ...] = tuple(
    to_rgb(c) for c in ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"))
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
NEUTRAL = "#555555"
ABOVE_LEGEND_PAD = 18.0  # points between an axes and its title when a one-row legend sits between them

_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None}


# ------------------------------------------------------------------------------------------ helpers
def row_normalise(cm) -> np.ndarray:
    """Row-normalised confusion matrix: ``out[t, p] = cm[t, p] / sum_p cm[t, p]``.

    Rows are true classes, so each row with samples sums to 1; rows without samples are all NaN
    (drawn as empty cells).
    """
    a = np.asarray(cm, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ReportError(f"confusion matrix must be square 2-D, got shape {a.shape}")
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ReportError("confusion matrix must hold finite non-negative counts")
    sums = a.sum(axis=1, keepdims=True)
    out = np.full_like(a, np.nan)
    np.divide(a, sums, out=out, where=sums > 0)
    return out


def log_floor(values: Iterable[float], default: float = 1e-3) -> float:
    """The value zeros are clipped to on a log axis: the largest power of ten strictly below the
    smallest positive finite value (``default`` when there is none)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size == 0:
        return float(default)
    smallest = float(arr.min())
    floor = 10.0 ** (math.ceil(math.log10(smallest)) - 1)
    while floor >= smallest:
        floor /= 10.0
    return float(floor)


def _as_float_array(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _color(i: int):
    return PALETTE[i % len(PALETTE)]


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, stem) -> list[Path]:
    """Write ``<stem>.png`` then ``<stem>.pdf`` (:func:`_write`)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_name(stem.name + ".png")
    pdf = stem.with_name(stem.name + ".pdf")
    _write(fig, png, pdf)
    return [png, pdf]


def _write(fig: Figure, png, pdf) -> None:
    """The figure as PNG, then as PDF (paths or binary files), each laid out and drawn in one pass.

    ``Figure.savefig`` draws a figure with a layout engine twice per file (a pass that only lays it out, then
    one that renders it); here each format's renderer lays the figure out and renders it in the same pass.
    The files have the bytes ``savefig(png, dpi=DPI)`` then ``savefig(pdf)`` give under :data:`PAPER_STYLE`
    (whose figure and savefig face colours are both white), except that the PDF's fonts are subset by
    :func:`_pdf_font_subset` (tests/test_figures.py compares the two ways)."""
    fig.canvas.draw()
    matplotlib.image.imsave(png, fig.canvas.buffer_rgba(), format="png", origin="upper", dpi=fig.dpi,
                            metadata=_PNG_METADATA)
    agg = fig.canvas
    try:
        with _FONT_SUBSETS.active():
            FigureCanvasPdf(fig).print_pdf(pdf, metadata=_PDF_METADATA)
    finally:  # print_pdf leaves the figure at 72 dpi on its own canvas
        fig.set_canvas(agg)
        fig.dpi = DPI


def prepare() -> None:
    """Load what a process's first figure otherwise loads (the font list and font, the PNG writer, the font
    subsetter's tables, about 0.15 s) by drawing a small figure into memory; a figure worker started ahead of
    its figures does this while it waits (``facebench.report.figure_index.warm_up``)."""
    with matplotlib.rc_context(PAPER_STYLE):
        fig = _new_figure(1.5, 1.2)
        ax = fig.add_subplot()
        ax.plot([0.0, 1.0], [0.0, 1.0], label="0.5%")
        ax.set_xlabel("FPR")
        ax.legend()
        _write(fig, io.BytesIO(), io.BytesIO())


def _render(stem, width: float, height: float, draw) -> list[Path]:
    """Build a figure under the paper style (sized by :func:`figure_width` when set), let ``draw(fig)`` fill it,
    wrap texts too long for the canvas, write PNG + PDF."""
    width, height = _sized(width, height)
    with matplotlib.rc_context(PAPER_STYLE):
        fig = _new_figure(width, height)
        draw(fig)
        _fit_texts(fig)
        paths = _save(fig, stem)
    captured = _CAPTURE.get()
    if captured is not None:  # captured_figures(): kept for inspection; otherwise freed with its artists
        captured.append(fig)
    return paths


# ---------------------------------------------------------------------------- sizes and text fitting
_WIDTH_MODE: ContextVar[str | None] = ContextVar("facebench_figure_width", default=None)
_CAPTURE: ContextVar[list | None] = ContextVar("facebench_figure_capture", default=None)


@contextmanager
def figure_width(mode: str | None):
    """Inside the block every figure is ``mode`` wide: "single" (:data:`SINGLE_COLUMN`), "double"
    (:data:`DOUBLE_COLUMN`); "auto" or None: each figure its own width (double only for wide content)."""
    check_width(mode)
    token = _WIDTH_MODE.set(None if mode in (None, "auto") else mode)
    try:
        yield
    finally:
        _WIDTH_MODE.reset(token)


@contextmanager
def captured_figures():
    """``with captured_figures() as figs:`` every figure drawn inside is appended to ``figs`` once written, for
    tests and tools that inspect its artists (labels, legend entries, bars; see :func:`texts_outside`)."""
    figs: list = []
    token = _CAPTURE.set(figs)
    try:
        yield figs
    finally:
        _CAPTURE.reset(token)


def _sized(width: float, height: float) -> tuple[float, float]:
    """(width, height) under :func:`figure_width`: the mode's width; the height grows with a wider figure (at
    most :data:`MAX_HEIGHT_GROWTH` times) and stays when it narrows (the content needs the room)."""
    mode = _WIDTH_MODE.get()
    if mode is None:
        return width, height
    target = WIDTHS[mode]
    return target, height * min(max(target / width, 1.0), MAX_HEIGHT_GROWTH)


def _fit_texts(fig: Figure) -> None:
    """Wrap titles, the suptitle and axis labels longer than the room the laid-out canvas leaves them onto more
    lines (laid out first only when a text might not fit: longer than half the canvas)."""
    texts = [fig._suptitle] if getattr(fig, "_suptitle", None) is not None else []
    for ax in fig.axes:
        texts += [t for t in (ax._left_title, ax.title, ax._right_title, ax.xaxis.label, ax.yaxis.label)
                  if t.get_text()]
    renderer = fig.canvas.get_renderer()
    long = [t for t in texts if _long_side(t, renderer) > 0.5 * min(fig.bbox.width, fig.bbox.height)]
    if not long:
        return
    if fig.get_layout_engine() is not None:
        fig.get_layout_engine().execute(fig)
    for t in long:
        _wrap(t, renderer, _room(fig, t, renderer))


def _long_side(text, renderer) -> float:
    box = text.get_window_extent(renderer)
    return max(box.width, box.height)


def _room(fig: Figure, text, renderer) -> float:
    """Pixels ``text`` may span along its reading direction where it stands (the canvas less a 2% margin)."""
    box, canvas = text.get_window_extent(renderer), fig.bbox
    if box.height > box.width:  # a rotated (y axis) label: the canvas height
        return 0.92 * canvas.height
    margin = 0.02 * canvas.width
    ha = text.get_horizontalalignment()
    if ha == "left":
        return canvas.x1 - margin - max(box.x0, canvas.x0)
    if ha == "right":
        return min(box.x1, canvas.x1) - margin - canvas.x0
    centre = (box.x0 + box.x1) / 2
    return 2 * min(centre - canvas.x0, canvas.x1 - centre) - 2 * margin


def _wrap(text, renderer, room: float) -> None:
    """Break ``text`` (a Text artist) at spaces until its long side fits ``room`` pixels (at most 4 tries)."""
    content = text.get_text()
    for _ in range(4):
        long_side = _long_side(text, renderer)
        if not content or long_side <= room or " " not in content:
            return
        longest = max(len(line) for line in content.splitlines())
        chars = max(8, int(longest * room / long_side) - 1)
        content = "\n".join(textwrap.fill(line, chars) for line in content.splitlines())
        text.set_text(content)


def texts_outside(fig: Figure, tolerance: float = 1.0) -> list[str]:
    """The texts of a drawn figure whose bounding box leaves the canvas (by more than ``tolerance`` pixels):
    every visible, non-empty text, tick labels only of the ticks inside the axis limits (the ones drawn)."""
    with matplotlib.rc_context(PAPER_STYLE):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        canvas = fig.bbox
        out = []
        for t in _drawn_texts(fig):
            box = t.get_window_extent(renderer)
            if (box.x0 < canvas.x0 - tolerance or box.y0 < canvas.y0 - tolerance
                    or box.x1 > canvas.x1 + tolerance or box.y1 > canvas.y1 + tolerance):
                out.append(t.get_text())
    return out


def _drawn_texts(fig: Figure) -> list:
    """Visible, non-empty Text artists of ``fig`` that a drawing shows (tick labels of ticks in view only)."""
    from matplotlib.text import Text

    tick_labels: set[int] = set()
    shown: list = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in list(axis.majorTicks) + list(axis.minorTicks):
                tick_labels.update((id(tick.label1), id(tick.label2)))
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
            for locs, get in ((axis.get_majorticklocs(), axis.get_major_ticks),
                              (axis.get_minorticklocs(), axis.get_minor_ticks)):
                for tick, loc in zip(get(len(locs)), locs):
                    if lo - slack <= loc <= hi + slack and tick.get_visible():
                        shown += [lab for lab in (tick.label1, tick.label2) if lab.get_visible()]
    shown += [t for t in fig.findobj(Text) if id(t) not in tick_labels]
    return [t for t in shown if t.get_visible() and t.get_text().strip()]


# -------------------------------------------------------------------------------- PDF font subsets
# The tables of a font program a PDF reader uses for an embedded TrueType / OpenType font: outlines, metrics and
# hinting (ISO 32000-1, 9.9), and the cmap / name / OS/2 / post tables matplotlib's subsets carry.
_PDF_FONT_TABLES = frozenset({
    "head", "hhea", "hmtx", "maxp", "loca", "glyf", "cvt ", "fpgm", "prep", "gasp", "hdmx", "VDMX",
    "CFF ", "CFF2", "VORG", "vhea", "vmtx", "cmap", "name", "OS/2", "post"})


# Text a figure is likely to hold (Latin, Greek, punctuation, mathematical operators): each font's glyphs for these
# are subset once per process (:func:`_base_font`), and a PDF's subset is taken from that small font
_COMMON_TEXT = ((0x20, 0x7F), (0xA0, 0x180), (0x370, 0x3D0), (0x2010, 0x2070), (0x2200, 0x2300))
_BASE_FONTS: dict = {}  # (font file, face index) -> (subset bytes, {glyph id: its id there}), or None


def _pdf_font_subset(fontfile, glyphs):
    """matplotlib's font subset for a PDF (``pdf.fonttype`` 42) without the tables no PDF reader uses.

    The same glyphs, outlines, metrics, hinting and glyph names as matplotlib's own
    ``_backend_pdf_ps.get_glyphs_subset``, less the OpenType layout tables (GSUB, GPOS, GDEF, kern, MATH: a
    PDF places every glyph itself, so a reader never applies them) and tables fontTools cannot subset;
    subsetting those took about two thirds of a PDF's font time (DejaVu Sans: 0.14 s -> 0.04 s). Glyphs of
    common text are taken from the font's :func:`_base_font` (0.01 s; the same bytes, tests/test_figures.py)."""
    glyphs = set(glyphs)
    base = _base_font(fontfile)
    if base is None or not glyphs <= base[1].keys():
        return _lean_subset(fontfile, glyphs)._as_cm()
    data, ids = base
    subset = _lean_subset(io.BytesIO(data), {ids[g] for g in glyphs})
    return _backend_pdf_ps.SubsetResults(subset.font, {g: subset.glyph_index_map[ids[g]] for g in glyphs})._as_cm()


def _lean_subset(fontfile, glyphs):
    """``fontfile``'s glyphs ``glyphs`` (ids) and the tables of :data:`_PDF_FONT_TABLES`, as ``SubsetResults``."""
    options = font_subset.Options(glyph_names=True, recommended_glyphs=True)
    options.font_number = getattr(fontfile, "face_index", 0)
    font = font_subset.load_font(fontfile, options)
    options.drop_tables = sorted(set(font.keys()) - _PDF_FONT_TABLES - {"GlyphOrder"})
    subsetter = font_subset.Subsetter(options=options)
    subsetter.populate(gids=glyphs)
    subsetter.subset(font)
    return _backend_pdf_ps.SubsetResults(font, subsetter.glyph_index_map)


def _base_font(fontfile):
    """``fontfile``'s lean subset to the glyphs of :data:`_COMMON_TEXT`, made once per process: (its bytes,
    {glyph id in ``fontfile``: glyph id in it}); None when it cannot be made (then fonts are subset whole)."""
    key = (str(fontfile), getattr(fontfile, "face_index", 0))
    if key not in _BASE_FONTS:
        try:
            ft = font_manager.get_font(fontfile)
            common = {0} | {ft.get_char_index(c) for lo, hi in _COMMON_TEXT for c in range(lo, hi)}
            with _lean_subset(fontfile, common)._as_cm() as subset:
                data = _backend_pdf_ps.font_as_file(subset.font).getvalue()
                _BASE_FONTS[key] = (data, dict(subset.glyph_index_map))
        except Exception:  # noqa: BLE001 - any font fontTools or FreeType cannot read here is subset whole
            _BASE_FONTS[key] = None
    return _BASE_FONTS[key]


class _FontSubsetSwap:
    """Puts :func:`_pdf_font_subset` in place of matplotlib's PDF font subsetting while any writer needs it.

    Only where matplotlib has the interface it replaces (``get_glyphs_subset(fontfile, glyphs)`` giving a
    ``SubsetResults``, matplotlib 3.11); elsewhere matplotlib's own is used. Nested and concurrent writers
    share one replacement, removed when the last one leaves."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._original = None

    @staticmethod
    def supported() -> bool:
        results = getattr(_backend_pdf_ps, "SubsetResults", None)
        return hasattr(_backend_pdf_ps, "get_glyphs_subset") and hasattr(results, "_as_cm")

    @contextmanager
    def active(self):
        if not self.supported():
            yield
            return
        with self._lock:
            if self._users == 0:
                self._original = _backend_pdf_ps.get_glyphs_subset
                _backend_pdf_ps.get_glyphs_subset = _pdf_font_subset
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    _backend_pdf_ps.get_glyphs_subset = self._original
                    self._original = None


_FONT_SUBSETS = _FontSubsetSwap()


def _rotate_labels(ax, labels: Sequence[str]) -> None:
    if len(labels) > 5 or max((len(str(s)) for s in labels), default=0) > 7:
        for t in ax.get_xticklabels():
            t.set_rotation(40)
            t.set_ha("right")
            t.set_rotation_mode("anchor")


def _bar_width(n: int, base: float = 0.9, per_bar: float = 0.28, wide_after: int = 9) -> float:
    return DOUBLE_COLUMN if n > wide_after else max(SINGLE_COLUMN, min(DOUBLE_COLUMN, base + per_bar * n))


def _heatmap(ax, data: np.ndarray, fmt, vmin=0.0, vmax=1.0, fontsize=7.0, annotate=True) -> Any:
    masked = np.ma.masked_invalid(data)
    cmap = matplotlib.colormaps[CMAP].with_extremes(bad=EMPTY_CELL)
    im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    if annotate:
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                # a cell's label sits inside its cell: the layout makes room for ticks and labels, not for it
                ax.text(j, i, fmt(v), ha="center", va="center", fontsize=fontsize,
                        color=_text_color(cmap(im.norm(v))), in_layout=False)
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    return im


def _errorbars(values: np.ndarray, cis: Sequence | None) -> tuple[np.ndarray, np.ndarray]:
    """Lower / upper whisker lengths from CIs (NaN where a CI is missing)."""
    n = len(values)
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    for i, ci in enumerate(cis or [None] * n):
        if ci is None or len(ci) != 2 or ci[0] is None or ci[1] is None or not np.isfinite(values[i]):
            continue
        lo[i] = max(values[i] - float(ci[0]), 0.0)
        hi[i] = max(float(ci[1]) - values[i], 0.0)
    return lo, hi


def _bars(ax, names: Sequence[str], values: np.ndarray, cis, colors, percent: bool, base: float = 0.0) -> None:
    """Bars from ``base`` (in display units: % when ``percent``) with CI whiskers; "n/a" where a value is missing."""
    x = np.arange(len(names))
    scale = 100.0 if percent else 1.0
    finite = np.isfinite(values)
    ax.bar(x[finite], values[finite] * scale - base, bottom=base, width=0.7,
           color=[colors[i] for i in np.flatnonzero(finite)], edgecolor="none", zorder=2)
    lo, hi = _errorbars(values, cis)
    has = finite & np.isfinite(lo)
    if has.any():
        ax.errorbar(x[has], values[has] * scale, yerr=np.vstack([lo[has], hi[has]]) * scale, fmt="none",
                    ecolor="black", elinewidth=0.7, capthick=0.7, zorder=3)
    for i in np.flatnonzero(~finite):
        ax.text(x[i], base, "n/a", ha="center", va="bottom", fontsize=6, color=NEUTRAL)
    ax.set_xticks(x)
    ax.set_xticklabels([str(s) for s in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    _rotate_labels(ax, names)
    ax.yaxis.grid(True, zorder=0)
    ax.set_axisbelow(True)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))


def _value_range(values: np.ndarray, cis) -> tuple[float, float]:
    pts = [v for v in values if np.isfinite(v)]
    for ci in cis or []:
        if ci is not None and len(ci) == 2:
            pts += [float(c) for c in ci if c is not None and np.isfinite(c)]
    return (min(pts), max(pts)) if pts else (0.0, 1.0)


# ------------------------------------------------------------------------------------ figure kinds
def confusion_matrix_figure(cm, class_names: Sequence[str], stem, title: str | None = None) -> list[Path]:
    """Row-normalised confusion matrix (true classes = rows, predicted = columns), cells in %."""
    norm = row_normalise(cm)
    names = [str(c) for c in class_names]
    if len(names) != norm.shape[0]:
        raise ReportError(f"{len(names)} class names for a {norm.shape[0]}x{norm.shape[0]} confusion matrix")
    n = len(names)
    width = SINGLE_COLUMN if n <= 10 else DOUBLE_COLUMN
    height = max(2.2, min(7.5, 1.0 + 0.3 * n)) if n <= 10 else min(7.5, 1.4 + 0.22 * n)
    fontsize = 7.0 if n <= 8 else (6.0 if n <= 12 else 5.0)

    def draw(fig):
        ax = fig.add_subplot()
        im = _heatmap(ax, norm * 100.0, lambda v: f"{v:.0f}", vmin=0.0, vmax=100.0, fontsize=fontsize,
                      annotate=n <= 25)
        ax.set_xticks(np.arange(n), labels=names)
        ax.set_yticks(np.arange(n), labels=names)
        for t in ax.get_xticklabels():
            t.set_rotation(45)
            t.set_ha("right")
            t.set_rotation_mode("anchor")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02, aspect=25)
        cb.ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
        cb.ax.tick_params(labelsize=6, width=0.5, length=2)
        cb.outline.set_linewidth(0.5)
        if title:
            ax.set_title(title)

    return _render(stem, width, height, draw)


def per_class_recall_figure(names: Sequence[str], values: Sequence, cis: Sequence | None, stem,
                            title: str | None = None, groups: Sequence[str] | None = None,
                            ylabel: str = "recall") -> list[Path]:
    """Per-class recall bars with CI whiskers (``cis`` entries may be None; ``values`` may hold None).

    ``groups`` (optional, one label per class, e.g. many/medium/few) colours bars by group.
    """
    names = [str(s) for s in names]
    vals = _as_float_array(values)
    if len(vals) != len(names) or (cis is not None and len(cis) != len(names)):
        raise ReportError("names, values and cis must have the same length")
    if groups is not None:
        order = list(dict.fromkeys(str(g) for g in groups))
        colors = [_color(order.index(str(g))) for g in groups]
    else:
        order, colors = [], [_color(0)] * len(names)

    def draw(fig):
        ax = fig.add_subplot()
        _bars(ax, names, vals, cis, colors, percent=True)
        ax.set_ylim(0, 102)  # room for a whisker reaching 100%
        ax.set_ylabel(ylabel)
        if order:
            from matplotlib.patches import Patch
            ax.legend(handles=[Patch(color=_color(i), label=g) for i, g in enumerate(order)],
                      loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(order), borderaxespad=0.1,
                      handlelength=1.0, columnspacing=1.0)
        if title:  # above the legend row when there is one
            ax.set_title(title, loc="left", pad=ABOVE_LEGEND_PAD if order else None)

    return _render(stem, _bar_width(len(names)), 2.3, draw)


def reliability_figure(reliability: Mapping, stem, title: str | None = None, ece: float | None = None,
                       ece_ci: Sequence | None = None) -> list[Path]:
    """Reliability diagram from a closed_set ``details["reliability"]`` dict.

    ``reliability`` holds ``edges`` (B+1 bin edges), and per bin ``accuracy``, ``confidence`` (mean
    confidence; None for empty bins) and ``counts``. Top panel: accuracy per bin (bars) against the
    diagonal, with the gap to the bin's mean confidence outlined; bottom panel: samples per bin. ``ece`` (and
    its 95% CI ``ece_ci``) titles the legend, in percent.
    """
    edges = np.asarray(reliability["edges"], dtype=float)
    acc = _as_float_array(reliability["accuracy"])
    conf = _as_float_array(reliability["confidence"])
    counts = _as_float_array(reliability.get("counts", [0.0] * len(acc)))
    if not (len(edges) == len(acc) + 1 == len(conf) + 1 == len(counts) + 1):
        raise ReportError("reliability: edges must have one more entry than accuracy/confidence/counts")
    left, widths = edges[:-1], np.diff(edges)
    ok = np.isfinite(acc) & np.isfinite(conf)

    def draw(fig):
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        top.plot([edges[0], edges[-1]], [edges[0], edges[-1]], ls="--", color=NEUTRAL, lw=0.8,
                 label="perfect calibration", zorder=1)
        top.bar(left[ok], acc[ok], width=widths[ok], align="edge", color=_color(0), edgecolor="white",
                linewidth=0.5, label="accuracy", zorder=2)
        gap_bottom = np.minimum(acc, conf)[ok]
        top.bar(left[ok], np.abs(conf - acc)[ok], bottom=gap_bottom, width=widths[ok], align="edge",
                facecolor=(*_color(3), 0.25), edgecolor=_color(3), linewidth=0.5, label="gap to confidence",
                zorder=3)
        top.set_xlim(edges[0], edges[-1])
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.legend(loc="upper left", title=ece_text(ece, ece_ci), title_fontsize=7, alignment="left")
        bottom.bar(left, np.nan_to_num(counts), width=widths, align="edge", color=NEUTRAL,
                   edgecolor="white", linewidth=0.5)
        bottom.set_ylabel("samples")
        bottom.set_xlabel("confidence")
        bottom.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        bottom.yaxis.get_offset_text().set_fontsize(6)
        if title:
            top.set_title(title)

    return _render(stem, SINGLE_COLUMN, 3.2, draw)


def ece_text(ece: float | None, ci: Sequence | None = None) -> str | None:
    """"ECE = 3.10% [2.05, 4.40]" (percent; the CI when given), or None without a finite ECE."""
    if ece is None or not np.isfinite(ece):
        return None
    text = f"ECE = {100 * ece:.2f}%"
    if _valid_ci(ci):
        text += f" [{100 * float(ci[0]):.2f}, {100 * float(ci[1]):.2f}]"
    return text


def score_label(label: str, name: str, value: float | None, ci: Sequence | None = None, digits: int = 3) -> str:
    """A legend entry with a score: "model (AUROC 0.953 [0.941, 0.962])"; ``label`` alone without a value."""
    if value is None or not np.isfinite(value):
        return label
    text = f"{name} {value:.{digits}f}"
    if _valid_ci(ci):
        text += f" [{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"
    return f"{label} ({text})" if label else text


def curve_area(x, y) -> float | None:
    """The area under a curve given by points (trapezoids, points sorted by x); None with fewer than 2 points."""
    x, y = _as_float_array(x), _as_float_array(y)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return None
    order = np.argsort(x[keep], kind="stable")
    xs, ys = x[keep][order], y[keep][order]
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2.0))


def _valid_ci(ci) -> bool:
    return (ci is not None and len(ci) == 2 and all(c is not None and np.isfinite(float(c)) for c in ci))


def _curves(curves: Mapping) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for label, xy in curves.items():
        x, y = xy[0], xy[1]
        x, y = _as_float_array(x), _as_float_array(y)
        if len(x) != len(y):
            raise ReportError(f"curve {label!r}: x and y differ in length")
        keep = np.isfinite(x) & np.isfinite(y)
        out.append((str(label), x[keep], y[keep]))
    if not out:
        raise ReportError("no curves to draw")
    return out


def _line_figure(curves: Mapping, stem, xlabel: str, ylabel: str, log_x: bool, log_y: bool, diagonal: bool,
                 title: str | None, legend_loc: str) -> list[Path]:
    data = _curves(curves)
    fx = log_floor(np.concatenate([x for _, x, _ in data])) if log_x else None
    fy = log_floor(np.concatenate([y for _, _, y in data])) if log_y else None

    def draw(fig):
        ax = fig.add_subplot()
        for i, (label, x, y) in enumerate(data):
            if log_x:
                x = np.maximum(x, fx)
            if log_y:
                y = np.maximum(y, fy)
            ax.plot(x, y, color=_color(i), ls=LINESTYLES[i % len(LINESTYLES)], label=label, zorder=3,
                    drawstyle="default")
        lo_x = fx if log_x else 0.0
        lo_y = fy if log_y else 0.0
        if diagonal:
            d = np.geomspace(max(lo_x, lo_y), 1.0, 64) if (log_x or log_y) else np.array([0.0, 1.0])
            ax.plot(d, d, ls=":", color=NEUTRAL, lw=0.8, zorder=1)
        if log_x:
            ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlim(lo_x, 1.0)
        ax.set_ylim(lo_y, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major")
        if len(data) > 1 or data[0][0]:
            ax.legend(loc=legend_loc)
        if title:
            ax.set_title(title)

    return _render(stem, SINGLE_COLUMN, 2.7, draw)


def roc_figure(curves: Mapping, stem, xlabel: str = "FPR", ylabel: str = "TPR", log_x: bool = False,
               title: str | None = None) -> list[Path]:
    """ROC curves, ``curves = {label: (x, y)}``; with ``log_x`` zeros are clipped to :func:`log_floor`."""
    return _line_figure(curves, stem, xlabel, ylabel, log_x, False, diagonal=not log_x, title=title,
                        legend_loc="lower right")


def det_figure(curves: Mapping, stem, xlabel: str = "FMR", ylabel: str = "FNMR", title: str | None = None
               ) -> list[Path]:
    """DET curves (FMR vs FNMR) on log-log axes; ``curves = {label: (fmr, fnmr)}``. Zeros are clipped
    to :func:`log_floor` per axis; the dotted line marks FMR = FNMR (the EER points)."""
    return _line_figure(curves, stem, xlabel, ylabel, True, True, diagonal=True, title=title,
                        legend_loc="lower left")


def oscr_figure(curves: Mapping, stem, log_x: bool = False, xlabel: str = "FPR (unknowns accepted)",
                ylabel: str = "CCR", title: str | None = None) -> list[Path]:
    """Open-set classification rate curves: CCR vs FPR, ``curves = {label: (fpr, ccr)}``."""
    return _line_figure(curves, stem, xlabel, ylabel, log_x, False, diagonal=False, title=title,
                        legend_loc="lower right" if not log_x else "upper left")


def group_bars_figure(groups: Sequence[str], values: Sequence, cis: Sequence | None, stem, metric_label: str,
                      overall: float | None = None, title: str | None = None, percent: bool = False,
                      overall_label: str = "overall", zoom: bool = False, gap: bool = False) -> list[Path]:
    """Per-group bars with CI whiskers (entries may be None) and a dashed line at ``overall``.

    ``zoom``: the value axis spans the data (values, CIs, overall, with a margin) instead of starting at 0, and
    the bars start at its lower end, so that a 10-point gap is not flattened on a 0-100 axis. ``gap``: the
    largest minus the smallest group value is drawn as a double arrow right of the bars and labelled
    ("gap 10.2 pp" in percentage points, or in the metric's unit)."""
    names = [str(g) for g in groups]
    vals = _as_float_array(values)
    if len(vals) != len(names) or (cis is not None and len(cis) != len(names)):
        raise ReportError("groups, values and cis must have the same length")
    scale = 100.0 if percent else 1.0
    lo, hi = _value_range(vals, cis)
    if overall is not None and np.isfinite(overall):
        lo, hi = min(lo, overall), max(hi, overall)
    limits = _zoomed_limits(lo, hi, scale, share=percent) if zoom else _full_limits(lo, hi, scale, percent)

    def draw(fig):
        ax = fig.add_subplot()
        _bars(ax, names, vals, cis, [_color(0)] * len(names), percent=percent, base=limits[0])
        if overall is not None and np.isfinite(overall):
            text = f"{overall * scale:.1f}%" if percent else f"{overall:.3f}"
            ax.plot([-0.5, len(names) - 0.5], [overall * scale] * 2, color=_color(3), ls="--", lw=1.0, zorder=4,
                    label=f"{overall_label} ({text})")  # over the bars only: the gap's label stays clear
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.1)
        if gap:
            _annotate_gap(ax, vals, scale, percent)
        ax.set_ylim(*limits)
        ax.set_ylabel(metric_label)
        if title:  # above the legend row when there is one
            has_legend = overall is not None and np.isfinite(overall)
            ax.set_title(title, loc="left", pad=ABOVE_LEGEND_PAD if has_legend else None)

    return _render(stem, _bar_width(len(names)), 2.4, draw)


def _full_limits(lo: float, hi: float, scale: float, percent: bool) -> tuple[float, float]:
    """A value axis from 0: to 100% (1) for values in [0, 1], else to the largest value plus 5%."""
    if 0.0 <= lo and hi <= 1.0:
        return 0.0, 102.0 if percent else 1.02
    return min(0.0, lo * scale), hi * scale * 1.05 if hi > 0 else 1.0


def _zoomed_limits(lo: float, hi: float, scale: float, share: bool = False) -> tuple[float, float]:
    """A value axis around [lo, hi] (data units; returned in display units): 15% of the span (at least 1% of
    the larger magnitude) added below and above; for a ``share`` (a value in [0, 1]) kept within [0, 1.02]."""
    span = hi - lo
    pad = max(0.15 * span, 0.01 * max(abs(lo), abs(hi), 1e-12))
    low, high = lo - pad, hi + pad
    if share:
        low, high = max(low, 0.0), min(high, 1.02)
    return low * scale, high * scale


def _annotate_gap(ax, vals: np.ndarray, scale: float, percent: bool) -> float | None:
    """The max - min group value as a labelled double arrow right of the bars; returns the gap (data units)."""
    finite = np.flatnonzero(np.isfinite(vals))
    if finite.size < 2:
        return None
    i_lo, i_hi = finite[np.argmin(vals[finite])], finite[np.argmax(vals[finite])]
    y_lo, y_hi = vals[i_lo] * scale, vals[i_hi] * scale
    x = len(vals) - 0.4 + 0.3
    for i, y in ((i_lo, y_lo), (i_hi, y_hi)):
        ax.plot([i + 0.35, x], [y, y], ls=":", lw=0.7, color=NEUTRAL, zorder=3)
    ax.annotate("", xy=(x, y_hi), xytext=(x, y_lo),
                arrowprops={"arrowstyle": "<->", "lw": 0.8, "color": NEUTRAL, "shrinkA": 0, "shrinkB": 0})
    gap = float(vals[i_hi] - vals[i_lo])
    text = f"gap\n{gap * 100:.1f} pp" if percent else f"gap\n{gap:.3g}"
    ax.text(x + 0.12, (y_lo + y_hi) / 2, text, ha="left", va="center", fontsize=6.5, color="black")
    ax.set_xlim(-0.6, len(vals) + 0.75)
    return gap


def cross_domain_heatmap(row_labels: Sequence[str], col_labels: Sequence[str], matrix, stem,
                         title: str | None = None, percent: bool = True) -> list[Path]:
    """Rows = models / runs, columns = datasets (source first, Mean last), cells annotated in %.

    ``matrix`` entries may be None (empty cell)."""
    data = np.array([_as_float_array(r) for r in matrix], dtype=float).reshape(len(row_labels), len(col_labels))
    rows, cols = [str(r) for r in row_labels], [str(c) for c in col_labels]
    width = SINGLE_COLUMN if len(cols) <= 8 else DOUBLE_COLUMN
    height = min(9.0, 0.75 + 0.25 * len(rows) + 0.06 * min(max(len(c) for c in cols), 16))
    scale = 100.0 if percent else 1.0
    fmt = (lambda v: f"{v:.1f}") if percent else (lambda v: f"{v:.3f}")

    def draw(fig):
        ax = fig.add_subplot()
        finite = data[np.isfinite(data)]
        vmax = 1.0 if finite.size == 0 or finite.max() <= 1.0 else float(finite.max())
        im = _heatmap(ax, data * scale, fmt, vmin=0.0, vmax=vmax * scale, fontsize=6.5 if len(cols) <= 8 else 5.5)
        ax.set_xticks(np.arange(len(cols)), labels=cols)
        ax.set_yticks(np.arange(len(rows)), labels=rows)
        for t in ax.get_xticklabels():
            t.set_rotation(35)
            t.set_ha("right")
            t.set_rotation_mode("anchor")
        if len(cols) > 1 and cols[-1].lower() == "mean":
            ax.axvline(len(cols) - 1.5, color="white", lw=2.0)
        cb = fig.colorbar(im, ax=ax, pad=0.02, aspect=10, fraction=0.05)
        if percent:
            cb.ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
        cb.ax.tick_params(labelsize=6, width=0.5, length=2)
        cb.outline.set_linewidth(0.5)
        if title:
            ax.set_title(title)

    return _render(stem, width, height, draw)


def scatter_figure(true, pred=None, stem=None, label: str | None = None, xlabel: str = "true",
                   ylabel: str = "predicted", truth_range: Sequence[float] | None = None,
                   title: str | None = None) -> list[Path]:
    """Predicted-vs-true scatter with the identity line (label-free estimation).

    One series: ``scatter_figure(true, pred, stem, label)``. Several: pass ``{name: (true, pred)}`` as
    ``true`` and leave ``pred`` None (``scatter_figure(series, stem=...)``; ``scatter_figure(series,
    stem)`` also works). Pairs with a missing value are dropped. ``truth_range`` (optional) fixes the
    extent of the identity line; by default it spans all plotted values.
    """
    if isinstance(true, Mapping):
        if stem is None and pred is not None:
            pred, stem = None, pred
        if pred is not None:
            raise ReportError("pass either {name: (true, pred)} or true and pred, not both")
        series = {str(k): (v[0], v[1]) for k, v in true.items()}
    else:
        if pred is None:
            raise ReportError("pred is required with a single series")
        series = {label or "": (true, pred)}
    if stem is None:
        raise ReportError("stem is required")
    data = []
    for name, (t, p) in series.items():
        t, p = _as_float_array(t), _as_float_array(p)
        if len(t) != len(p):
            raise ReportError(f"series {name!r}: true and pred differ in length")
        keep = np.isfinite(t) & np.isfinite(p)
        data.append((name, t[keep], p[keep]))
    allv = np.concatenate([np.concatenate([t, p]) for _, t, p in data]) if data else np.array([])
    if truth_range is not None and len(truth_range) == 2 and None not in truth_range:
        lo, hi = float(min(truth_range)), float(max(truth_range))
        if allv.size:
            lo, hi = min(lo, float(allv.min())), max(hi, float(allv.max()))
    elif allv.size:
        lo, hi = float(allv.min()), float(allv.max())
    else:
        lo, hi = 0.0, 1.0
    pad = 0.05 * (hi - lo) if hi > lo else 0.05
    lo, hi = lo - pad, hi + pad

    def draw(fig):
        ax = fig.add_subplot()
        ax.plot([lo, hi], [lo, hi], ls="--", color=NEUTRAL, lw=0.8, zorder=1, label="identity")
        for i, (name, t, p) in enumerate(data):
            ax.scatter(t, p, s=10, color=_color(i), marker=MARKERS[i % len(MARKERS)], alpha=0.8,
                       linewidths=0, label=name or None, zorder=2 + i * 0.01)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True)
        ax.legend(loc="upper left")
        if title:
            ax.set_title(title)

    return _render(stem, SINGLE_COLUMN, 3.0, draw)


def ced_figure(curves: Mapping, stem, thresholds: Sequence[float] = (), xlabel: str = "NME",
               title: str | None = None) -> list[Path]:
    """Cumulative error distribution: share of images with NME <= x, ``curves = {label: (x, y)}``; dotted
    vertical lines at ``thresholds`` (FR@t / AUC@t)."""
    data = _curves(curves)
    x_max = max(float(x.max()) for _, x, _ in data if x.size) if any(x.size for _, x, _ in data) else 1.0

    def draw(fig):
        ax = fig.add_subplot()
        for i, (label, x, y) in enumerate(data):
            ax.plot(x, y, color=_color(i), ls=LINESTYLES[i % len(LINESTYLES)], label=label, zorder=3,
                    drawstyle="steps-post")
        for t in thresholds:
            ax.axvline(float(t), ls=":", color=NEUTRAL, lw=0.8, zorder=1)
        ax.set_xlim(0.0, x_max)
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share of images")
        ax.grid(True, which="major")
        if len(data) > 1 or data[0][0]:
            ax.legend(loc="lower right")
        if title:
            ax.set_title(title)

    return _render(stem, SINGLE_COLUMN, 2.7, draw)


def metric_curves_figure(curves: Mapping, stem, xlabel: str, ylabel: str, xticks: Sequence | None = None,
                         xticklabels: Sequence[str] | None = None, hlines: Mapping | None = None,
                         title: str | None = None) -> list[Path]:
    """A metric against a setting (severity, resolution in px), one marked line per series,
    ``curves = {label: (x, y)}`` (None values are gaps); dashed horizontal lines at ``hlines = {label: y}``
    (e.g. the clean value); the legend sits right of the axes when there are more than four series."""
    data = _curves(curves)
    wide = len(data) > 4

    def draw(fig):
        ax = fig.add_subplot()
        for i, (label, x, y) in enumerate(data):
            ax.plot(x, y, color=_color(i), ls=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i % len(MARKERS)],
                    markersize=3, label=label, zorder=3)
        for j, (label, y) in enumerate((hlines or {}).items()):
            if y is not None and np.isfinite(y):
                ax.axhline(float(y), ls=(":" if j else "--"), color=NEUTRAL, lw=0.8, zorder=1, label=label)
        if xticks is not None:
            ax.set_xticks(list(xticks))
            if xticklabels is not None:
                ax.set_xticklabels(list(xticklabels))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major")
        if wide:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=6)
        elif len(data) > 1 or data[0][0] or hlines:
            ax.legend(loc="best")
        if title:
            ax.set_title(title)

    return _render(stem, DOUBLE_COLUMN if wide else SINGLE_COLUMN, 2.9 if wide else 2.7, draw)


def landmark_overlay_figure(cases: Sequence[Mapping], stem, columns: int = 3, title: str | None = None
                            ) -> list[Path]:
    """Predicted (crosses) vs true (circles) points of a few images, each in its own panel in image
    coordinates (x right, y down, the image's extent), a line joining each pair; a panel's title gives its
    id and NME. ``cases``: [{"id", "nme", "pred": [[x, y], ...], "true": [[x, y], ...], "image_size": [w, h]}]."""
    if not cases:
        raise ReportError("no cases to draw")
    cols = max(1, min(int(columns), len(cases)))
    rows = -(-len(cases) // cols)
    width = SINGLE_COLUMN if cols <= 2 else DOUBLE_COLUMN

    def draw(fig):
        for i, case in enumerate(cases):
            ax = fig.add_subplot(rows, cols, i + 1)
            _overlay_panel(ax, case)
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=2)
        if title:
            fig.suptitle(title)

    return _render(stem, width, 0.4 + rows * width / cols, draw)


def _overlay_panel(ax, case: Mapping) -> None:
    """One image's points (see :func:`landmark_overlay_figure`)."""
    pred = np.asarray(case["pred"], dtype=np.float64).reshape(-1, 2)
    true = np.asarray(case["true"], dtype=np.float64).reshape(-1, 2)
    w, h = (float(v) for v in case["image_size"])
    for (px, py), (tx, ty) in zip(pred, true):
        ax.plot([tx, px], [ty, py], color=NEUTRAL, lw=0.5, zorder=1)
    ax.scatter(true[:, 0], true[:, 1], s=9, facecolors="none", edgecolors=_color(0), linewidths=0.7,
               label="true", zorder=2)
    ax.scatter(pred[:, 0], pred[:, 1], s=9, marker="x", color=_color(3), linewidths=0.7, label="predicted",
               zorder=3)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # the image's frame on all four sides
        spine.set_visible(True)
    nme = case.get("nme")
    ax.set_title(f"{case.get('id', '')}\nNME {float(nme):.3f}" if nme is not None else str(case.get("id", "")),
                 fontsize=6)


# -------------------------------------------------------------------------------------- dispatcher
#: Figure kinds each protocol can produce (stem suffixes). open_set draws ``roc`` + ``oscr`` in mode
#: unknown_classes and ``per_class_auroc`` in mode leave_one_out; label_free one scatter per target.
_LABEL_FREE_TARGETS = ("accuracy", "auroc")


def _record_map(records: Iterable[Mapping]) -> dict[str, Mapping]:
    return {r["metric"]: r for r in records if isinstance(r, Mapping) and "metric" in r}


def _ci(recs: Mapping[str, Mapping], metric: str):
    r = recs.get(metric)
    ci = r.get("ci") if r else None
    return list(ci) if ci is not None else None


def _run_label(task_row: Mapping, records: Sequence[Mapping]) -> str:
    for r in records:
        if r.get("model"):
            return str(r["model"])
    return str(task_row.get("name", ""))


def _is_percent_record(record: Mapping | None) -> bool:
    """Whether a record's own unit is printed as a percentage (a fraction); never guessed from the name."""
    from facebench.records import PERCENT_DISPLAY

    return isinstance(record, Mapping) and record.get("unit") in PERCENT_DISPLAY


class _Ctx:
    """What a figure-kind builder needs from one task."""

    def __init__(self, task: Mapping, details: Mapping, records: Sequence[Mapping], out_dir: Path):
        self.task, self.details, self.records = task, details, list(records)
        self.recs = _record_map(records)
        self.name = str(task.get("name", "task"))
        self.label = _run_label(task, records)
        self.out_dir = out_dir

    def stem(self, kind: str) -> Path:
        return self.out_dir / f"{sanitise_filename(self.name)}-{kind}"

    def ci(self, metric: str):
        return _ci(self.recs, metric)

    @property
    def open_set_mode(self) -> str:
        return open_set_mode(self.task)

    def auroc_label(self, x, y) -> str:
        """The run's legend entry with its AUROC: the task's ``auroc`` record (with its CI) when it has one, else
        the area under the curve's points (no CI)."""
        rec = self.recs.get("auroc") or {}
        if rec.get("value") is not None:
            return score_label(self.label, "AUROC", float(rec["value"]), rec.get("ci"))
        return score_label(self.label, "AUROC", curve_area(x, y))


def _fig_confusion_matrix(c: _Ctx) -> list[Path]:
    d = c.details
    labels = [str(x) for x in d.get("label_space") or []]
    if d.get("confusion_matrix") is None or not labels:
        return []
    return confusion_matrix_figure(d["confusion_matrix"], [N.class_name(x) for x in labels], c.stem("confusion_matrix"))


def _fig_per_class_recall(c: _Ctx) -> list[Path]:
    per_class = c.details.get("per_class") or []
    if not per_class:
        return []
    names = [str(row["class"]) for row in per_class]
    values = [row.get("recall") for row in per_class]
    cis = [c.ci(f"recall[{n}]") for n in names]
    groups = [row.get("group") for row in per_class]  # imbalanced: many / medium / few
    groups = groups if all(g is not None for g in groups) else None
    return per_class_recall_figure([N.class_name(n) for n in names], values, cis, c.stem("per_class_recall"),
                                   groups=groups, ylabel=N.metric_name("recall"))


def _fig_reliability(c: _Ctx) -> list[Path]:
    rel = c.details.get("reliability")
    if not isinstance(rel, Mapping):
        return []
    ece = next((r for m, r in c.recs.items() if m == "ece" or m.startswith("ece[")), {})
    return reliability_figure(rel, c.stem("reliability"), ece=ece.get("value"), ece_ci=ece.get("ci"))


def _fig_open_set_roc(c: _Ctx) -> list[Path]:
    roc = c.details.get("roc")
    if c.open_set_mode == "leave_one_out" or not isinstance(roc, Mapping) or roc.get("x") is None:
        return []
    label = c.auroc_label(roc["x"], roc["y"])
    return roc_figure({label: (roc["x"], roc["y"])}, c.stem("roc"), xlabel="FPR (unknowns accepted)",
                      ylabel="TPR (knowns accepted)")


def _fig_oscr(c: _Ctx) -> list[Path]:
    oscr = c.details.get("oscr_curve")
    if c.open_set_mode == "leave_one_out" or not isinstance(oscr, Mapping) or oscr.get("x") is None:
        return []
    return oscr_figure({c.label: (oscr["x"], oscr["y"])}, c.stem("oscr"))


def _fig_per_class_auroc(c: _Ctx) -> list[Path]:
    table = c.details.get("table") or []
    if c.open_set_mode != "leave_one_out" or not table:
        return []
    rows = [r for r in table if str(r.get("open_class")) != "Mean"]
    mean = next((r for r in table if str(r.get("open_class")) == "Mean"), None)
    if not rows:
        return []
    names = [str(r["open_class"]) for r in rows]
    values = [r.get("auroc") for r in rows]
    cis = [c.ci(f"auroc[open={n}]") for n in names]
    return group_bars_figure([N.class_name(n) for n in names], values, cis, c.stem("per_class_auroc"),
                             "AUROC (class held out)", overall=mean.get("auroc") if mean else None, overall_label="mean")


def _fig_heatmap(c: _Ctx) -> list[Path]:
    columns = list(c.details.get("columns") or [])
    if not columns:
        return []
    columns.sort(key=lambda col: 0 if col.get("role") == "source" else 1)  # stable: source first
    names = [str(col.get("column")).replace("_", " ") for col in columns] + ["Mean"]
    values = [col.get("value") for col in columns] + [c.details.get("mean")]
    metric = str(c.details.get("metric") or "accuracy")
    return cross_domain_heatmap([c.label], names, [values], c.stem("heatmap"),
                                percent=_is_percent_record(c.recs.get(f"{metric}[mean]")),
                                title=f"{N.metric_name(metric)} by domain")


def _fig_group_bars(c: _Ctx) -> list[Path]:
    groups = list(c.details.get("groups") or [])
    if not groups:
        return []
    metric = str(c.details.get("metric") or "value")
    names = [str(g["group"]) for g in groups]
    values = [g.get("value") for g in groups]
    cis = [c.ci(f"{metric}[group={n}]") for n in names]
    by = c.details.get("by") or []
    label = N.metric_name(metric)
    title = f"{label} by {' & '.join(N.group_name(b) for b in by)}" if by else None
    return group_bars_figure([N.group_name(n) for n in names], values, cis, c.stem("group_bars"), label,
                             overall=c.details.get("overall"), title=title, zoom=True, gap=True,
                             percent=_is_percent_record(c.recs.get(f"{metric}[overall]")))


def _fig_verification_roc(c: _Ctx) -> list[Path]:
    roc = c.details.get("roc")
    if not isinstance(roc, Mapping) or roc.get("x") is None:
        return []
    label = c.auroc_label(roc["x"], roc["y"])
    return roc_figure({label: (roc["x"], roc["y"])}, c.stem("roc"), xlabel="FAR", ylabel="TAR", log_x=True)


def _fig_det(c: _Ctx) -> list[Path]:
    det = c.details.get("det")
    if not isinstance(det, Mapping) or det.get("x") is None:
        return []
    fnmr = _as_float_array(det["y"])
    label = c.auroc_label(det["x"], 1.0 - fnmr)  # the DET's curve is the ROC's: TAR = 1 - FNMR
    return det_figure({label: (det["x"], det["y"])}, c.stem("det"))


def _fig_ced(c: _Ctx) -> list[Path]:
    ced = c.details.get("ced")
    if not isinstance(ced, Mapping) or ced.get("x") is None:
        return []
    norm = c.details.get("normaliser")
    return ced_figure({c.label: (ced["x"], ced["y"])}, c.stem("ced"), thresholds=ced.get("thresholds") or (),
                      xlabel=f"NME ({norm})" if norm else "NME")


def _fig_adversarial_budget(c: _Ctx) -> list[Path]:
    """Adversarial protocol: robust accuracy, attack success rate and fooling rate against the budget (eps in
    grey levels, /255); on verification pairs the accuracy at the clean threshold and the dodging and
    impersonation fooling rates; the clean accuracy as a dashed line."""
    curve = c.details.get("curve")
    if not isinstance(curve, Mapping) or not curve.get("eps_255"):
        return []
    x = [float(e) for e in curve["eps_255"]]
    pairs = c.details.get("inner") == "verification"
    names = ({"verification_accuracy": "accuracy at clean threshold", "dodging_fooling_rate": "dodging (genuine pairs)",
              "impersonation_fooling_rate": "impersonation (impostor pairs)"} if pairs else
             {"robust_accuracy": "robust accuracy (all)", "attack_success_rate": "attack success (clean-correct)",
              "fooling_rate": "fooling rate (prediction change)"})
    series = {label: (x, [np.nan if v is None else v for v in curve[key]]) for key, label in names.items()
              if curve.get(key)}
    return metric_curves_figure(series, c.stem("budget_curve"), xlabel="budget eps (x/255, L-inf or L2)",
                                ylabel="fraction of pairs" if pairs else "fraction of samples", xticks=x,
                                xticklabels=[f"{e:g}" for e in x],
                                hlines={"clean accuracy": curve.get("clean_accuracy")})


def _fig_uap_perturbation(c: _Ctx) -> list[Path]:
    """Adversarial protocol: each universal perturbation as an image (grey = 0, 128 + 127 v / max|v|)."""
    uap = c.details.get("uap")
    cases = [(label, s) for label, s in (uap or {}).items() if isinstance(s, Mapping) and s.get("picture")]
    if not cases:
        return []

    def draw(fig):
        for i, (label, s) in enumerate(cases):
            ax = fig.add_subplot(1, len(cases), i + 1)
            img = np.asarray(s["picture"], dtype=np.uint8)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"{s.get('method', '')} eps {label}\nL-inf {float(s.get('linf') or 0) * 255:.1f}/255",
                         fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])

    return _render(c.stem("perturbation"), SINGLE_COLUMN, 2.2, draw)


def _fig_cmc(c: _Ctx) -> list[Path]:
    """Identification: the cumulative match characteristic, identification rate at rank 1..R (log-scaled ranks
    would hide rank 1, so linear), with the rank-1 rate as a dashed line."""
    cmc = c.details.get("cmc")
    if not isinstance(cmc, Sequence) or not cmc:
        return []
    ranks = list(range(1, len(cmc) + 1))
    ticks = [r for r in (1, 5, 10, 20, 50, 100) if r <= len(cmc)]
    return metric_curves_figure({"": (ranks, [float(v) for v in cmc])}, c.stem("cmc"), xlabel="rank",
                                ylabel="identification rate", xticks=ticks, xticklabels=[str(r) for r in ticks],
                                hlines={"rank 1": float(cmc[0])})


def _fig_ood_decomposition(c: _Ctx) -> list[Path]:
    """ood_estimate: the test scores' histogram decomposed into its estimated ID and OOD parts."""
    from facebench.report.mpe_figure import decomposition_figure, decomposition_title

    d = c.details
    hist = d.get("decomposition")
    if not isinstance(hist, Mapping) or not hist.get("edges"):
        return []
    est, ci = d.get("estimate") or {}, d.get("intervals") or {}
    title = decomposition_title(bool(d.get("identifiable")), str(d.get("reason")), int(d.get("n_test") or 0),
                                str(d.get("method")), est.get("auroc"), ci.get("auroc"), est.get("pi"), ci.get("pi"))
    return decomposition_figure(hist, c.stem("decomposition"), title, bool(d.get("identifiable")),
                                int(d.get("n_test") or 0), xlabel=f"{d.get('detector', 'detector')} score "
                                "(higher = in-distribution)")


def _fig_landmark_overlay(c: _Ctx) -> list[Path]:
    cases = [case for case in c.details.get("worst_cases") or [] if isinstance(case, Mapping)]
    if not cases:
        return []
    return landmark_overlay_figure(cases, c.stem("worst_cases"))


def _fig_label_free(target: str):
    def build(c: _Ctx) -> list[Path]:
        block = c.details.get(target)
        if not isinstance(block, Mapping):
            return []
        # AUROC results are judged per detector: {detector: block}; accuracy is one block
        blocks = {"": block} if "scatter" in block else {k: v for k, v in block.items() if isinstance(v, Mapping)}
        out: list[Path] = []
        for detector, part in blocks.items():
            if not part.get("scatter"):
                continue
            series = {name: (s["true"], s["pred"]) for name, s in part["scatter"].items()}
            kind = f"scatter_{target}" + (f"_{detector}" if detector else "")
            label = f"{target}" + (f" ({detector})" if detector else "")
            out += scatter_figure(series, stem=c.stem(kind), xlabel=f"true {label}", ylabel=f"estimated {label}",
                                  truth_range=part.get("truth_range"))
        return out
    return build


def _fig_severity_curves(c: _Ctx) -> list[Path]:
    curves = c.details.get("curves")
    if not isinstance(curves, Mapping) or not curves:
        return []
    sev = [int(s) for s in c.details.get("severities") or []]
    metric = str(c.details.get("inner_metric") or c.details.get("metric") or "metric")
    series = {name: (cv["x"], [np.nan if v is None else v for v in cv["y"]]) for name, cv in curves.items()}
    return metric_curves_figure(series, c.stem("severity_curves"), "severity (0 = clean)", N.metric_name(metric),
                                xticks=[0, *sev], xticklabels=["clean", *map(str, sev)])


def _fig_resolution_curve(c: _Ctx) -> list[Path]:
    curves = c.details.get("curves")
    if not isinstance(curves, Mapping) or not curves:
        return []
    primary = str(c.details.get("primary") or next(iter(curves)))
    clean = (c.details.get("clean") or {}).get(primary)
    fraction = c.details.get("fraction")
    hlines = {"clean": clean}
    if clean is not None and fraction is not None:
        hlines[f"{float(fraction):g} x clean"] = float(fraction) * float(clean)
    series = {name: (cv["x"], [np.nan if v is None else v for v in cv["y"]]) for name, cv in curves.items()
              if any(v is not None for v in cv["y"])}  # a TAR no FAR target could resolve has no points
    if not series:
        return []
    sizes = sorted({int(x) for cv in curves.values() for x in cv["x"]})
    return metric_curves_figure(series, c.stem("resolution_curve"), "resolution (short side, px)",
                                N.metric_name(primary) if len(series) == 1 else "metric",
                                xticks=sizes, hlines=hlines)


_BUILDERS = {
    ("closed_set", "confusion_matrix"): _fig_confusion_matrix,
    ("closed_set", "per_class_recall"): _fig_per_class_recall,
    ("closed_set", "reliability"): _fig_reliability,
    ("imbalanced", "confusion_matrix"): _fig_confusion_matrix,
    ("imbalanced", "per_class_recall"): _fig_per_class_recall,
    ("open_set", "roc"): _fig_open_set_roc,
    ("open_set", "oscr"): _fig_oscr,
    ("open_set", "per_class_auroc"): _fig_per_class_auroc,
    ("cross_domain", "heatmap"): _fig_heatmap,
    ("fairness", "group_bars"): _fig_group_bars,
    ("verification", "roc"): _fig_verification_roc,
    ("verification", "det"): _fig_det,
    **{("label_free", f"scatter_{t}"): _fig_label_free(t) for t in _LABEL_FREE_TARGETS},
    ("landmarks", "ced"): _fig_ced,
    ("landmarks", "worst_cases"): _fig_landmark_overlay,
    ("adversarial", "budget_curve"): _fig_adversarial_budget,
    ("adversarial", "perturbation"): _fig_uap_perturbation,
    ("corruption", "severity_curves"): _fig_severity_curves,
    ("resolution", "resolution_curve"): _fig_resolution_curve,
    ("identification", "cmc"): _fig_cmc,
    ("ood_estimate", "decomposition"): _fig_ood_decomposition,
}


def task_figures(task_row: Mapping, records: Sequence[Mapping] | None, out_dir,
                 kinds: Sequence[str] | None = None) -> list[Path]:
    """Render the figures ``task_row``'s protocol declares (:data:`FIGURES_BY_PROTOCOL`) into ``out_dir``
    (only those of ``kinds``, when given: one figure per process in ``figure_index.draw_figures``).

    Stems are ``<task name>-<kind>`` with the task name sanitised (:func:`sanitise_filename`); returns
    the written paths (PNG, then PDF, of each figure, in the protocol's kind order). Tasks whose status
    is not ``"ok"``, without details, or of a protocol without figures give ``[]``; a kind whose data
    is absent (e.g. ROC in leave_one_out mode) is not drawn, and one whose data is malformed is
    skipped with a warning while the others are still drawn. ``records`` are the run's records; those
    of other tasks are ignored.
    """
    if not isinstance(task_row, Mapping) or task_row.get("status") != "ok":
        return []
    details = task_row.get("details")
    protocol = str(task_row.get("protocol", ""))
    if not isinstance(details, Mapping) or not details or not FIGURES_BY_PROTOCOL.get(protocol):
        return []
    name = str(task_row.get("name", "task"))
    records = [r for r in (records or []) if isinstance(r, Mapping) and r.get("task", name) == name]
    ctx = _Ctx(task_row, details, records, Path(out_dir))
    paths: list[Path] = []
    for kind in FIGURES_BY_PROTOCOL[protocol]:
        if kinds is not None and kind not in kinds:
            continue
        build = _BUILDERS.get((protocol, kind))
        if build is None:  # pragma: no cover - table and builders are kept in step
            continue
        try:
            paths += build(ctx)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            warnings.warn(f"figure {kind!r} of task {name!r} ({protocol}) skipped: {type(err).__name__}: {err}",
                          stacklevel=2)
    return paths


def run_figures(results: Mapping, out_dir, reuse_from=None, workers: int | None = None,
                width: str | None = None) -> list[Path]:
    """Figures for every task of a run (``results.json`` as a dict), written into ``out_dir/figures`` with
    their ``index.json``; those of ``reuse_from/figures`` whose inputs are unchanged are copied, the others
    drawn (by worker processes where it pays; ``width``: see :func:`figure_width`). See
    ``facebench.report.figure_index.run_figures``."""
    from facebench.report import figure_index

    return figure_index.run_figures(results, out_dir, reuse_from=reuse_from, workers=workers, width=width)
