"""Paper-grade figures (issue 22, item 3): TrueType-only PDFs, no text outside the canvas, display names, the
Okabe-Ito palette, one- and two-column widths, fairness bars zoomed with the gap annotated, AUROC (and CI) in
ROC / DET legends, the ECE on reliability diagrams, and the cross-model figures of ``facebench report``.
Each figure type is rendered and its content checked through the matplotlib objects."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from facebench.errors import ReportError
from facebench.report import figure_index as FI
from facebench.report import figures as F
from facebench.report import model_figures as M
from facebench.report import names as N

LABELS = ["neutral", "happiness", "sadness"]
REL = {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "accuracy": [None, 0.3, 0.7, 0.9],
       "confidence": [None, 0.4, 0.6, 0.95], "counts": [0.0, 5.0, 20.0, 75.0]}


def _task_rows() -> list[tuple[dict, list[dict]]]:
    """One task row per per-task figure kind, with the records the builders read (results.json shapes)."""
    curve = {"x": [0.0, 0.0, 0.2, 1.0], "y": [0.0, 0.3, 0.6, 1.0]}
    per_class = [{"class": c, "recall": r} for c, r in zip(LABELS, [0.8, 0.75, 0.5])]
    rec = lambda task, metric, value, ci=None, unit="fraction": {  # noqa: E731
        "task": task, "metric": metric, "value": value, "ci": ci, "unit": unit, "model": "net-a"}
    return [
        ({"name": "cs", "protocol": "closed_set", "status": "ok", "params": {},
          "details": {"confusion_matrix": [[5, 1, 0], [1, 6, 1], [0, 2, 4]], "label_space": LABELS,
                      "per_class": per_class, "reliability": REL}},
         [rec("cs", "ece[bins=4,equal-width]", 0.031, [0.0205, 0.044], "rate"),
          rec("cs", "recall[neutral]", 0.8, [0.7, 0.9])]),
        ({"name": "os", "protocol": "open_set", "status": "ok", "params": {"score": "msp"},
          "details": {"roc": curve, "oscr_curve": curve}},
         [rec("os", "auroc", 0.7123, [0.65, 0.77], "score")]),
        ({"name": "fair", "protocol": "fairness", "status": "ok", "params": {},
          "details": {"by": ["skin_tone"], "metric": "accuracy", "overall": 0.85,
                      "groups": [{"group": "tone_1", "value": 0.9}, {"group": "tone_2", "value": 0.8},
                                 {"group": "tone_3", "value": 0.86}]}},
         [rec("fair", "accuracy[overall]", 0.85), rec("fair", "accuracy[group=tone_1]", 0.9, [0.87, 0.93]),
          rec("fair", "accuracy[group=tone_2]", 0.8, [0.76, 0.84])]),
        ({"name": "ver", "protocol": "verification", "status": "ok", "params": {},
          "details": {"roc": {"x": [0.0, 0.001, 0.01, 0.1, 1.0], "y": [0.0, 0.5, 0.8, 0.95, 1.0]},
                      "det": {"x": [0.0, 0.001, 0.01, 0.1, 1.0], "y": [1.0, 0.5, 0.2, 0.05, 0.0]}}}, []),
        ({"name": "xd", "protocol": "cross_domain", "status": "ok", "params": {},
          "details": {"metric": "accuracy", "mean": 0.6,
                      "columns": [{"column": "low_resolution", "role": "target", "value": 0.5},
                                  {"column": "clean", "role": "source", "value": 0.7}]}},
         [rec("xd", "accuracy[mean]", 0.6)]),
    ]


def _runs(n: int = 3) -> list[dict]:
    """``n`` runs of the same tasks whose values differ (label, results), as ``tables.load_runs`` gives them."""
    rows = _task_rows()
    runs = []
    for k in range(n):
        tasks, records = copy.deepcopy([r for r, _ in rows]), []
        for row, recs in zip(tasks, (copy.deepcopy(r) for _, r in rows)):
            for g in row["details"].get("groups", []):
                g["value"] -= 0.02 * k * (g["group"] == "tone_2")
            records += recs
        records += [{"task": "cs", "metric": "accuracy", "value": 0.8 - 0.05 * k, "ci": [0.75 - 0.05 * k, 0.85 - 0.05 * k],
                     "headline": True, "higher_is_better": True, "unit": "fraction"},
                    {"task": "os", "metric": "auroc", "value": 0.7 + 0.01 * k, "ci": None, "headline": True,
                     "higher_is_better": True, "unit": "score"},
                    {"task": "fair", "metric": "accuracy[overall]", "value": 0.85 - 0.01 * k, "ci": None,
                     "headline": True, "higher_is_better": True, "unit": "fraction"}]
        runs.append({"label": f"model-{'abc'[k]}", "results": {"tasks": tasks, "records": records}})
    return runs


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every per-task kind and every cross-model kind, drawn once: (paths, {stem name: Figure})."""
    out = tmp_path_factory.mktemp("paper")
    with F.captured_figures() as figs:
        paths = []
        for row, recs in _task_rows():
            paths += F.task_figures(row, recs, out)
        paths += F.scatter_figure({"COT": ([0.5, 0.6], [0.5, 0.65])}, stem=out / "scatter")
        paths += [p for _, ps in M.comparison_figures(_runs(), out / "models") for p in ps]
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == len(figs)
    return paths, {p.stem: fig for p, fig in zip(pngs, figs)}


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


# ------------------------------------------------------------------------------------------ every figure
def test_every_pdf_embeds_truetype_and_no_type3_font(drawn):
    paths, _ = drawn
    pdfs = [p for p in paths if p.suffix == ".pdf"]
    assert len(pdfs) >= 14
    for pdf in pdfs:
        data = pdf.read_bytes()
        assert b"/Type3" not in data, pdf.name
        assert b"/FontFile2" in data, pdf.name  # an embedded TrueType font program
        assert re.search(rb"/Subtype\s*/(TrueType|CIDFontType2)", data), pdf.name


def test_no_figure_has_text_outside_its_canvas(drawn):
    _, figs = drawn
    for name, fig in figs.items():
        assert F.texts_outside(fig) == [], name


def test_texts_outside_reports_text_that_leaves_the_canvas(tmp_path):
    def draw(fig):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        fig.text(0.97, 0.5, "this sentence runs off the right edge")

    with F.captured_figures() as figs:
        F._render(tmp_path / "off", 3.3, 2.0, draw)
    assert F.texts_outside(figs[0]) == ["this sentence runs off the right edge"]


def test_a_title_too_long_for_one_column_is_wrapped_onto_the_canvas(tmp_path):
    title = "Accuracy of every model on every intersectional group of skin tone and face shape, with 95% CIs"
    with F.captured_figures() as figs:
        F.group_bars_figure(["a", "b"], [0.8, 0.7], None, tmp_path / "long", "Accuracy", title=title)
    ax = figs[0].axes[0]
    assert "\n" in ax.get_title(loc="left") and ax.get_title(loc="left").replace("\n", " ") == title
    assert F.texts_outside(figs[0]) == []


def test_palette_is_okabe_ito():
    # Okabe & Ito (2008), "Color Universal Design": the eight colours, in the order figures use them
    assert [to_hex(c) for c in F.PALETTE] == ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9",
                                              "#f0e442", "#000000"]


# ------------------------------------------------------------------------------------------------ widths
@pytest.mark.parametrize("mode, inches", [("single", 3.3), ("double", 6.9)])
def test_figure_width_sets_every_figure_to_one_or_two_columns(tmp_path, mode, inches):
    from PIL import Image

    row, recs = _task_rows()[0]
    with F.figure_width(mode), F.captured_figures() as figs:
        paths = F.task_figures(row, recs, tmp_path, kinds=("confusion_matrix", "reliability"))
    for png in paths[::2]:
        with Image.open(png) as im:
            assert im.size[0] == round(inches * F.DPI), png.name
    for fig in figs:
        assert F.texts_outside(fig) == []
    assert F._WIDTH_MODE.get() is None  # the mode ends with the block


def test_width_modes_are_checked_and_keyed():
    with pytest.raises(ReportError, match="'single'.*'double'"):
        with F.figure_width("wide"):
            pass
    row, recs = _task_rows()[0]
    assert FI.task_key(row, recs) == FI.task_key(row, recs, "auto")
    assert len({FI.task_key(row, recs), FI.task_key(row, recs, "single"), FI.task_key(row, recs, "double")}) == 3


# ------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("metric, label", [
    ("fpr@tpr95[pos=known,rule=interp]", "FPR at 95% TPR"),
    ("tar@far1e-3", "TAR at 0.1% FAR"),
    ("ccr@fpr0.01", "CCR at 1% FPR"),
    ("ece[bins=15,equal-width,right-closed,conf=max-prob]", "ECE"),
    ("recall[happiness]", "Recall (Happiness)"),
    ("accuracy[group=tone1 & long]", "Accuracy (tone1 & long)"),
    ("accuracy[target=low_resolution]", "Accuracy (low resolution)"),
    ("gap[accuracy-mean_class_accuracy]", "Gap (Accuracy − mean class accuracy)"),
    ("rank5", "Rank-5"),
    ("some_new_metric", "Some new metric"),
])
def test_metric_display_names(metric, label):
    assert N.metric_name(metric) == label


def test_dataset_class_and_group_names():
    assert N.dataset_name("rafdb") == "RAF-DB" and N.dataset_name("my-data") == "my-data"
    assert N.class_name("happily_surprised") == "Happily surprised"
    assert N.group_name("tone_1&long") == "tone 1 & long"


# ------------------------------------------------------------------------------------ per-task figures
def test_confusion_matrix_and_recall_use_class_display_names(drawn):
    _, figs = drawn
    ax = figs["cs-confusion_matrix"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Neutral", "Happiness", "Sadness"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    ax = figs["cs-per_class_recall"].axes[0]
    assert len(ax.patches) == 3 and ax.get_ylabel() == "Recall"


def test_reliability_diagram_carries_the_ece_and_its_ci(drawn):
    _, figs = drawn
    top = figs["cs-reliability"].axes[0]
    assert top.get_legend().get_title().get_text() == "ECE = 3.10% [2.05, 4.40]"
    accuracy = next(c for c in top.containers if c.get_label() == "accuracy")
    assert len(accuracy.patches) == 3  # the non-empty bins
    assert (top.get_ylabel(), figs["cs-reliability"].axes[1].get_xlabel()) == ("accuracy", "confidence")


def test_roc_and_det_legends_carry_the_auroc(drawn):
    _, figs = drawn
    assert _legend_texts(figs["os-roc"].axes[0]) == ["net-a (AUROC 0.712 [0.650, 0.770])"]  # the record and its CI
    # verification has no AUROC record: the area under the curve's points, no CI
    area = F.curve_area([0.0, 0.001, 0.01, 0.1, 1.0], [0.0, 0.5, 0.8, 0.95, 1.0])
    roc, det = figs["ver-roc"].axes[0], figs["ver-det"].axes[0]
    assert _legend_texts(roc) == [f"ver (AUROC {area:.3f})"] == _legend_texts(det)
    assert roc.get_xscale() == "log" and (det.get_xscale(), det.get_yscale()) == ("log", "log")
    assert len(roc.get_lines()) == 1 and (roc.get_xlabel(), roc.get_ylabel()) == ("FAR", "TAR")


def test_fairness_bars_are_zoomed_to_the_data_and_the_gap_is_annotated(drawn):
    _, figs = drawn
    ax = figs["fair-group_bars"].axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 3
    lo, hi = ax.get_ylim()
    assert 70 < lo < 80 and 90 < hi < 100  # around 80-93% (values and CIs), not 0-100
    assert all(abs(b.get_y() - lo) < 1e-9 for b in bars)  # bars start at the axis
    texts = [t.get_text() for t in ax.texts]
    assert "gap\n10.0 pp" in texts  # 90% - 80%
    assert ax.get_title(loc="left") == "Accuracy by skin tone"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tone 1", "tone 2", "tone 3"]
    assert _legend_texts(ax) == ["overall (85.0%)"]


def test_oscr_and_scatter_content(drawn):
    _, figs = drawn
    ax = figs["os-oscr"].axes[0]
    assert len(ax.get_lines()) == 1 and (ax.get_xlabel(), ax.get_ylabel()) == ("FPR (unknowns accepted)", "CCR")
    ax = figs["scatter"].axes[0]
    assert len(ax.collections) == 1 and _legend_texts(ax) == ["identity", "COT"]


def test_cross_domain_heatmap_names_its_columns(drawn):
    _, figs = drawn
    ax = figs["xd-heatmap"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "low resolution", "Mean"]
    assert ax.get_title() == "Accuracy by domain" and len(ax.texts) == 3


# ---------------------------------------------------------------------------------- cross-model figures
def test_forest_plot_has_a_panel_per_task_and_a_row_per_model(drawn):
    _, figs = drawn
    fig = figs["forest"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["cs", "os", "fair"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["model-a", "model-b", "model-c"]
    assert panels[0].get_xlabel() == "Accuracy (%)" and panels[1].get_xlabel() == "AUROC"
    assert len(panels[0].containers) == 3  # one errorbar (point + CI) per model
    best = [line for line in panels[0].get_lines() if line.get_linestyle() == ":"]
    assert len(best) == 1 and best[0].get_xdata()[0] == pytest.approx(80.0)  # model-a: the highest accuracy


def test_models_heatmap_colours_each_column_by_standing(drawn):
    _, figs = drawn
    ax = figs["heatmap"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["model-a", "model-b", "model-c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cs\nAccuracy (%)", "os\nAUROC",
                                                             "fair\nAccuracy (overall) (%)"]
    assert sorted(t.get_text() for t in ax.texts)[:3] == ["0.700", "0.710", "0.720"]
    standing = ax.images[0].get_array()
    assert standing[0, 0] == 1.0 and standing[2, 0] == 0.0  # accuracy: model-a best, model-c worst
    assert standing[2, 1] == 1.0  # AUROC: model-c best
    np.testing.assert_allclose(M.column_standing(np.array([2.0, 1.0, np.nan]), False), [0.0, 1.0, np.nan])


def test_reliability_curves_are_overlaid_with_each_models_ece(drawn):
    _, figs = drawn
    ax = figs["reliability-cs"].axes[0]
    assert len(ax.get_lines()) == 1 + 3  # the diagonal and one curve per model
    assert _legend_texts(ax)[1:] == [f"model-{k} (ECE = 3.10% [2.05, 4.40])" for k in "abc"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Confidence", "Accuracy")


def test_per_group_metrics_side_by_side(drawn):
    _, figs = drawn
    ax = figs["groups-fair"].axes[0]
    assert len(ax.patches) == 3 * 3  # three groups x three models
    assert _legend_texts(ax) == ["model-a (gap 10.0 pp)", "model-b (gap 12.0 pp)", "model-c (gap 14.0 pp)"]
    assert ax.get_ylabel() == "Accuracy (%)" and ax.get_ylim()[0] > 60


def test_one_run_gives_no_cross_model_figures(tmp_path):
    assert M.comparison_figures(_runs(1), tmp_path) == []
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------- command line
def _write_runs(root: Path, n: int, tasks=("cs", "fair")) -> list[str]:
    """``n`` run folders (results.json only) of the hand-built runs' ``tasks``."""
    folders = []
    for run in _runs(n):
        results = {"schema_version": 2, "suite": {"name": "paper", "fingerprint": "s0"},
                   "model": {"name": run["label"], "fingerprint": run["label"]},
                   "tasks": [t for t in run["results"]["tasks"] if t["name"] in tasks],
                   "records": [r for r in run["results"]["records"] if r["task"] in tasks]}
        for rec in results["records"]:
            rec.setdefault("higher_is_better", True)
            rec.setdefault("headline", False)
            rec["model"] = run["label"]
        folder = root / run["label"]
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(results))
        folders.append(str(folder))
    return folders


def test_report_figure_width_flag_draws_double_column_figures_and_the_comparison(tmp_path):
    from PIL import Image

    from facebench.cli import build_parser, main

    runs = _write_runs(tmp_path / "runs", 2)
    assert main(["report", *runs, "--out", str(tmp_path / "rep"), "--figure-width", "double"]) == 0
    pngs = sorted((tmp_path / "rep" / "figures").rglob("*.png"))
    assert {p.parent.name for p in pngs} == {"model-a", "model-b", "models"}
    for png in pngs:
        with Image.open(png) as im:
            assert im.size[0] == round(6.9 * F.DPI), png
    assert {p.stem for p in (tmp_path / "rep" / "figures" / "models").glob("*.png")} == {
        "forest", "heatmap", "reliability-cs", "groups-fair"}
    index = (tmp_path / "rep" / "site" / "index.html").read_text()
    assert "<h2>Model comparison</h2>" in index and index.count('src="figures/models/') == 4
    assert build_parser().parse_args(["run", "s.yaml", "--figure-width", "single"]).figure_width == "single"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["report", "r", "--figure-width", "wide"])


def test_gallery_picks_the_report_figures_and_writes_the_readme_snippet(tmp_path):
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("gallery", Path(__file__).resolve().parents[1] / "tools" / "gallery.py")
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    report, out = tmp_path / "report", tmp_path / "gallery"
    out.mkdir()
    for name, (rel, _) in gallery.PICKS.items():
        if name != "confusion_matrix":  # one figure not drawn: left out, not invented
            path = report / rel.format(first="synth-cnn")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(name.encode())
    picked = gallery.pick(report, "synth-cnn", out)
    assert [n for n, _ in picked] == [f"{n}.png" for n in gallery.PICKS if n != "confusion_matrix"]
    assert (out / "forest.png").read_bytes() == b"forest"
    args = SimpleNamespace(limit=300, bootstrap=200)
    text = gallery.markdown(picked, Path("docs/gallery"), args, ["synth-cnn", "fer-minixception"])
    assert "python tools/gallery.py docs/gallery --models synth-cnn,fer-minixception --limit 300" in text
    assert text.count("![") == len(picked) and "(docs/gallery/forest.png)" in text
    assert gallery.parse_args(["docs/gallery"]).models == "synth-cnn,fer-minixception,faceapi-expression"


def test_a_title_above_a_legend_row_does_not_overlap_it(tmp_path):
    groups = [f"tone{t} & {s}" for t in range(1, 5) for s in ("long", "oval", "round")]
    values = [0.6 + 0.03 * i for i in range(len(groups))]
    with F.figure_width("single"), F.captured_figures() as figs:
        F.group_bars_figure(groups, values, None, tmp_path / "fair", "Accuracy", overall=0.8, percent=True,
                            title="Accuracy by skin tone & face shape", zoom=True, gap=True)
    fig = figs[0]
    assert F.texts_outside(fig) == []
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    title = next(t for t in (ax._left_title, ax.title) if t.get_text())
    assert not title.get_window_extent(renderer).overlaps(ax.get_legend().get_window_extent(renderer))


def test_a_zoomed_share_axis_stays_within_0_and_100_percent(tmp_path):
    with F.captured_figures() as figs:
        F.group_bars_figure(["a", "b"], [0.05, 0.95], [[0.0, 0.1], [0.9, 1.0]], tmp_path / "wide", "Accuracy",
                            percent=True, zoom=True, gap=True)
        M.group_comparison_figure(["a", "b"], {"m1": ([0.02, 0.99], None), "m2": ([0.5, 0.6], None)},
                                  tmp_path / "cmp", "Accuracy", percent=True)
    for fig in figs:
        lo, hi = fig.axes[0].get_ylim()
        assert lo == 0.0 and hi == pytest.approx(102.0)


def test_figure_captions_use_display_names():
    from facebench.report.html import figure_caption

    assert N.figure_name("reliability") == "Reliability diagram"
    assert N.figure_name("scatter_auroc_msp") == "Estimated vs true AUROC (msp)"
    assert figure_caption(Path("figures/synth-cnn/synth-closed-set-reliability.png"), "synth-closed-set") == \
        "Reliability diagram (synth-cnn)"
    assert figure_caption(Path("f/m/my_task-group_bars.png"), "my task?") == "Metric per group (m)"
    from facebench.report.figure_index import FIGURES_BY_PROTOCOL

    kinds = {k for ks in FIGURES_BY_PROTOCOL.values() for k in ks}
    assert {k for k in kinds if k not in N.FIGURES} == set()  # every figure kind has a display name
