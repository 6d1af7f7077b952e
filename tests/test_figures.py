"""Paper figures: every kind renders (from hand-built data, and from example runs when present),
output is byte-stable across renders and processes, and the dispatcher follows FIGURES_BY_PROTOCOL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from facebench.report import figures as F

# a folder of example run folders (e.g. from `facebench run`), given by the environment; unset: those tests skip
EXAMPLES = Path(os.environ["FACEBENCH_EXAMPLES"]) if os.environ.get("FACEBENCH_EXAMPLES") else None
EXAMPLE_RUNS = ("demo", "verification", "open_set_loo", "fairness_real", "cross_domain_real", "label_free_real")
REPO = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_written(paths, stem: Path):
    assert [Path(p) for p in paths] == [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    png, pdf = (Path(p) for p in paths)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    return png, pdf


# ------------------------------------------------------------------ hand-built data (no external files)
# One render of every figure kind, shared by the smoke tests, the byte-stability tests and the
# subprocess (which executes this same source text).
RENDER_ALL = r'''
from pathlib import Path
from facebench.report import figures as F

def render_all(out):
    out = Path(out)
    paths = []
    cm = [[8, 1, 1], [0, 0, 0], [2, 3, 5]]
    paths += F.confusion_matrix_figure(cm, ["neutral", "happy", "sad"], out / "cm", title="CM")
    paths += F.per_class_recall_figure(["a", "b", "c", "d"], [0.8, None, 0.5, 0.95],
                                       [[0.7, 0.9], None, None, [0.9, 1.0]], out / "recall")
    rel = {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "accuracy": [None, 0.3, 0.7, 0.9],
           "confidence": [None, 0.4, 0.6, 0.95], "counts": [0.0, 5.0, 20.0, 75.0]}
    paths += F.reliability_figure(rel, out / "reliability", ece=0.05)
    roc = ([0.0, 0.0, 0.1, 0.5, 1.0], [0.0, 0.4, 0.7, 0.9, 1.0])
    paths += F.roc_figure({"model A": roc, "model B": ([0.0, 0.2, 1.0], [0.0, 0.5, 1.0])}, out / "roc")
    paths += F.roc_figure({"A": roc}, out / "roc_log", xlabel="FAR", ylabel="TAR", log_x=True)
    paths += F.det_figure({"A": ([0.0, 0.01, 0.1, 1.0], [1.0, 0.5, 0.05, 0.0])}, out / "det")
    paths += F.oscr_figure({"A": ([0.0, 0.05, 0.3, 1.0], [0.0, 0.3, 0.6, 0.8])}, out / "oscr")
    paths += F.group_bars_figure(["g1", "group two", "g3"], [0.8, 0.7, None], [[0.75, 0.85], None, None],
                                 out / "groups", "accuracy", overall=0.76, percent=True, title="by group")
    paths += F.group_bars_figure(["x", "y"], [3.5, 5.0], [[3.0, 4.0], [4.5, 5.5]], out / "groups_mae", "MAE",
                                 overall=4.2)
    paths += F.cross_domain_heatmap(["model"], ["source", "t1", "t2", "Mean"], [[0.9, 0.5, None, 0.7]],
                                    out / "heatmap")
    paths += F.scatter_figure([0.5, 0.6, 0.7], [0.52, 0.55, None], out / "scatter", "accuracy")
    paths += F.scatter_figure({"COT": ([0.5, 0.6], [0.5, 0.65]), "DoC": ([0.5, 0.6], [0.45, 0.6])},
                              stem=out / "scatter_multi", xlabel="true accuracy", ylabel="estimated accuracy",
                              truth_range=[0.4, 0.7])
    return paths
'''
_ns: dict = {}
exec(compile(RENDER_ALL, "<render_all>", "exec"), _ns)
render_all = _ns["render_all"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render_a")
    return out, render_all(out)


def test_every_figure_function_renders_png_and_pdf(rendered):
    out, paths = rendered
    stems = ["cm", "recall", "reliability", "roc", "roc_log", "det", "oscr", "groups",
             "groups_mae", "heatmap", "scatter", "scatter_multi"]
    assert len(paths) == 2 * len(stems)
    for i, stem in enumerate(stems):
        _check_written(paths[2 * i:2 * i + 2], out / stem)


def test_png_size_follows_paper_widths(rendered):
    from PIL import Image

    out, _ = rendered
    with Image.open(out / "cm.png") as im:  # single column: 3.4 in at 200 dpi
        assert im.size[0] == round(F.SINGLE_COLUMN * F.DPI)
    with Image.open(out / "roc.png") as im:
        assert im.size[0] == round(F.SINGLE_COLUMN * F.DPI)


def test_byte_stable_across_renders(rendered, tmp_path):
    out_a, paths_a = rendered
    paths_b = render_all(tmp_path)
    assert [p.name for p in paths_a] == [p.name for p in paths_b]
    for a, b in zip(paths_a, paths_b):
        assert _sha(a) == _sha(b), a.name


def test_byte_stable_in_another_process(rendered, tmp_path):
    out_a, paths_a = rendered
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLBACKEND": "pdf", "SOURCE_DATE_EPOCH": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = RENDER_ALL + "\nimport sys\nrender_all(sys.argv[1])\n"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for a in paths_a:
        b = tmp_path / a.name
        assert b.exists(), a.name
        assert _sha(a) == _sha(b), a.name


def test_pdf_and_png_carry_no_timestamp_or_software(rendered):
    out, _ = rendered
    pdf = (out / "cm.pdf").read_bytes()
    assert b"/CreationDate" not in pdf and b"/Producer" not in pdf and b"/Creator" not in pdf
    png = (out / "cm.png").read_bytes()
    assert b"tIME" not in png and b"Software" not in png and b"matplotlib" not in png.lower()


def test_no_global_matplotlib_state_leaks(tmp_path):
    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    F.roc_figure({"A": ([0, 1], [0, 1])}, tmp_path / "r")
    assert dict(matplotlib.rcParams) == before
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:  # no figure was registered with pyplot
        import matplotlib.pyplot as plt
        assert plt.get_fignums() == []


def test_pdf_embeds_truetype_not_type3(rendered):
    out, _ = rendered
    pdf = (out / "roc.pdf").read_bytes()
    assert b"/Type3" not in pdf
    assert b"DejaVu" in pdf


# ------------------------------------------------------------- one drawing pass per format, lean font subsets
def _savefig_both(fig, stem):
    """The files as ``Figure.savefig`` writes them (a layout pass, then a drawing pass, per format)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    fig.savefig(png, format="png", dpi=F.DPI, metadata=F._PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=F._PDF_METADATA)
    return [png, pdf]


def test_one_pass_per_format_writes_the_bytes_savefig_writes(rendered, tmp_path, monkeypatch):
    _, ours = rendered
    monkeypatch.setattr(F, "_save", _savefig_both)
    theirs = render_all(tmp_path / "savefig")
    monkeypatch.undo()
    monkeypatch.setattr(F._FontSubsetSwap, "supported", staticmethod(lambda: False))  # matplotlib's own subsets
    same_fonts = render_all(tmp_path / "same_fonts")
    for a, b, c in zip(ours, theirs, same_fonts):
        assert a.name == b.name == c.name
        assert _sha(b) == _sha(c), b.name  # PNG and PDF: savefig's bytes
        if a.suffix == ".png":
            assert _sha(a) == _sha(b), a.name


def _pdf_streams(path: Path) -> list[bytes]:
    import re
    import zlib

    return [zlib.decompress(m.group(1)) for m in re.finditer(rb"stream\r?\n(.*?)endstream", path.read_bytes(), re.S)]


def test_pdfs_differ_from_savefig_only_in_the_embedded_font_program(rendered, tmp_path, monkeypatch):
    out, _ = rendered
    monkeypatch.setattr(F, "_save", _savefig_both)
    render_all(tmp_path)
    for name in ("cm.pdf", "reliability.pdf", "roc_log.pdf", "scatter_multi.pdf"):
        is_font = lambda s: s[:4] in (b"\x00\x01\x00\x00", b"true", b"OTTO")  # noqa: E731
        ours, theirs = _pdf_streams(out / name), _pdf_streams(tmp_path / name)
        assert [s for s in ours if not is_font(s)] == [s for s in theirs if not is_font(s)], name
        assert len([s for s in ours if is_font(s)]) == len([s for s in theirs if is_font(s)]) >= 1


def test_pdf_font_subset_keeps_every_glyph_and_drops_the_layout_tables():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    if not F._FontSubsetSwap.supported():
        pytest.skip("this matplotlib subsets fonts through another interface; its own subsetting is used")
    fontfile = font_manager.FontPath(font_manager.findfont("DejaVu Sans"), 0)
    ft = FT2Font(fontfile)
    gids = {ft.get_char_index(ord(c)) for c in "Accuracy fi 0.5% \u2212 \u00d7 ECE = 4.2"} | {0}
    with F._backend_pdf_ps.get_glyphs_subset(fontfile, gids) as theirs, F._pdf_font_subset(fontfile, gids) as ours:
        assert {"GSUB", "GPOS"} <= set(theirs.font.keys())  # there is something to leave out
        assert set(ours.font.keys()) - {"GlyphOrder"} <= F._PDF_FONT_TABLES
        assert not {"GSUB", "GPOS", "GDEF", "kern", "MATH"} & set(ours.font.keys())
        t_order, o_order = theirs.font.getGlyphOrder(), ours.font.getGlyphOrder()
        t_glyf, o_glyf = theirs.font["glyf"], ours.font["glyf"]
        for gid in gids:
            name = t_order[theirs.glyph_index_map[gid]]
            assert o_order[ours.glyph_index_map[gid]] == name
            assert o_glyf[name].compile(o_glyf) == t_glyf[name].compile(t_glyf), name
            assert ours.font["hmtx"][name] == theirs.font["hmtx"][name], name
        assert set(o_order) <= set(t_order)  # only glyphs no text asked for (ligatures, math pieces) left out


@pytest.mark.parametrize("text", ["Accuracy 0.5% \u2212 \u00d7 \u03b1", "\u0416\u0436 (Cyrillic, not in the base font)"])
def test_pdf_font_subset_from_the_base_font_has_the_bytes_of_a_subset_of_the_whole_font(text):
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    if not F._FontSubsetSwap.supported():
        pytest.skip("this matplotlib subsets fonts through another interface")
    fontfile = font_manager.FontPath(font_manager.findfont("DejaVu Sans"), 0)
    gids = {0} | {FT2Font(fontfile).get_char_index(ord(c)) for c in text}
    assert F._base_font(fontfile) is not None
    in_base = gids <= F._base_font(fontfile)[1].keys()
    assert in_base == ("Cyrillic" not in text)
    with F._pdf_font_subset(fontfile, gids) as ours, F._lean_subset(fontfile, gids)._as_cm() as whole:
        assert F._backend_pdf_ps.font_as_file(ours.font).getvalue() == \
            F._backend_pdf_ps.font_as_file(whole.font).getvalue()
        assert {g: ours.glyph_index_map[g] for g in gids} == {g: whole.glyph_index_map[g] for g in gids}


def test_font_subset_swap_is_scoped_and_nests():
    if not F._FontSubsetSwap.supported():
        pytest.skip("this matplotlib subsets fonts through another interface")
    original = F._backend_pdf_ps.get_glyphs_subset
    swap = F._FontSubsetSwap()
    with swap.active():
        with swap.active():
            assert F._backend_pdf_ps.get_glyphs_subset is F._pdf_font_subset
        assert F._backend_pdf_ps.get_glyphs_subset is F._pdf_font_subset
    assert F._backend_pdf_ps.get_glyphs_subset is original
    with pytest.raises(RuntimeError):
        with swap.active():
            raise RuntimeError("a failed PDF")
    assert F._backend_pdf_ps.get_glyphs_subset is original


# ----------------------------------------------------------------------------------- small helpers
def test_row_normalise_rows_sum_to_one_and_empty_rows_are_nan():
    cm = np.array([[8, 1, 1], [0, 0, 0], [2, 3, 5]])
    norm = F.row_normalise(cm)
    assert norm.shape == (3, 3)
    np.testing.assert_allclose(norm[[0, 2]].sum(axis=1), 1.0)
    assert np.isnan(norm[1]).all()
    np.testing.assert_allclose(norm[0], [0.8, 0.1, 0.1])
    np.testing.assert_allclose(norm[2], [0.2, 0.3, 0.5])
    # normalised by the true class (row), not the predicted class (column)
    np.testing.assert_allclose(F.row_normalise([[1, 3], [1, 1]]), [[0.25, 0.75], [0.5, 0.5]])
    with pytest.raises(ValueError):
        F.row_normalise([[1, 2, 3]])
    with pytest.raises(ValueError):
        F.row_normalise([[1, -1], [0, 1]])


def test_confusion_matrix_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError):
        F.confusion_matrix_figure([[1, 0], [0, 1]], ["a"], tmp_path / "x")


def test_log_floor():
    assert F.log_floor([0.0, 0.05, 0.5]) == pytest.approx(1e-2)
    assert F.log_floor([0.0, 0.01, 1.0]) == pytest.approx(1e-3)   # strictly below the smallest positive
    assert F.log_floor([0.0, 2.5e-3]) == pytest.approx(1e-3)
    assert F.log_floor([0.0, 0.0]) == pytest.approx(1e-3)
    assert F.log_floor([], default=1e-4) == pytest.approx(1e-4)


def test_sanitise_filename():
    assert F.sanitise_filename("synth-closed-set") == "synth-closed-set"
    assert F.sanitise_filename("a/b c:d") == "a_b_c_d"
    assert F.sanitise_filename("../x") == "x"
    assert F.sanitise_filename("") == "figure"


def test_scatter_accepts_series_dict_with_positional_stem(tmp_path):
    paths = F.scatter_figure({"A": ([0.1, 0.2], [0.1, 0.25])}, tmp_path / "s")
    _check_written(paths, tmp_path / "s")
    with pytest.raises(ValueError):
        F.scatter_figure([0.1], None, tmp_path / "t")


# --------------------------------------------------------------------------------------- dispatcher
def _hand_built_tasks() -> list[tuple[dict, list[dict]]]:
    """One minimal task row (shaped like results.json) per protocol that declares figures."""
    labels = ["neutral", "happiness", "sadness"]
    cm = [[5, 1, 0], [1, 6, 1], [0, 0, 0]]
    rel = {"edges": [0.0, 0.5, 1.0], "accuracy": [0.4, 0.9], "confidence": [0.45, 0.85], "counts": [5.0, 9.0]}
    per_class = [{"class": c, "precision": 0.8, "recall": r, "support": s}
                 for c, r, s in zip(labels, [5 / 6, 6 / 8, None], [6, 8, 0])]
    curve = {"x": [0.0, 0.0, 0.2, 1.0], "y": [0.0, 0.3, 0.6, 1.0], "thresholds": [None, 0.9, 0.5, 0.1]}
    rows = [
        ({"name": "cs", "protocol": "closed_set", "status": "ok", "params": {},
          "details": {"confusion_matrix": cm, "label_space": labels, "per_class": per_class, "reliability": rel}},
         [{"task": "cs", "metric": "recall[neutral]", "value": 5 / 6, "ci": [0.6, 0.95]},
          {"task": "cs", "metric": "ece[bins=2]", "value": 0.05, "ci": None}]),
        ({"name": "imb", "protocol": "imbalanced", "status": "ok", "params": {},
          "details": {"confusion_matrix": cm, "label_space": labels,
                      "per_class": [{"class": c, "group": g, "recall": 0.5} for c, g in
                                    zip(labels, ["many", "few", "few"])]}}, []),
        ({"name": "os", "protocol": "open_set", "status": "ok", "params": {"score": "msp"},
          "details": {"roc": curve, "oscr_curve": curve, "metrics": {"auroc": 0.7}}}, []),
        ({"name": "os-loo", "protocol": "open_set", "status": "ok", "params": {"mode": "leave_one_out"},
          "details": {"open_classes": labels[:2],
                      "table": [{"open_class": "neutral", "auroc": 0.7}, {"open_class": "happiness", "auroc": 0.6},
                                {"open_class": "Mean", "auroc": 0.65}]}},
         [{"task": "os-loo", "metric": "auroc[open=neutral]", "value": 0.7, "ci": [0.65, 0.75]}]),
        ({"name": "xd", "protocol": "cross_domain", "status": "ok", "params": {},
          "details": {"metric": "accuracy", "mean": 0.6,
                      "columns": [{"column": "t1", "role": "target", "value": 0.5},
                                  {"column": "src", "role": "source", "value": 0.7}]}},
         [{"task": "xd", "metric": "accuracy[mean]", "value": 0.6, "model": "my-model"}]),
        ({"name": "fair", "protocol": "fairness", "status": "ok", "params": {},
          "details": {"by": ["race"], "metric": "accuracy", "overall": 0.8,
                      "groups": [{"group": "A", "n": 10, "value": 0.9}, {"group": "B & c", "n": 12, "value": 0.7}]}},
         [{"task": "fair", "metric": "accuracy[group=A]", "value": 0.9, "ci": [0.8, 0.95]}]),
        ({"name": "ver", "protocol": "verification", "status": "ok", "params": {},
          "details": {"roc": {"x": [0.0, 0.1, 1.0], "y": [0.0, 0.5, 1.0]},
                      "det": {"x": [0.0, 0.1, 1.0], "y": [1.0, 0.5, 0.0]}}}, []),
        ({"name": "lf", "protocol": "label_free", "status": "ok", "params": {},
          "details": {"accuracy": {"scatter": {"COT/direct": {"true": [0.5, 0.6], "pred": [0.55, 0.58]}},
                                   "truth_range": [0.5, 0.6]},
                      "auroc": {"scatter": {"msp/linear": {"true": [0.6, 0.8], "pred": [0.65, None]}}}}}, []),
    ]
    return rows


EXPECTED_KINDS = {"cs": ("confusion_matrix", "per_class_recall", "reliability"),
                  "imb": ("confusion_matrix", "per_class_recall"), "os": ("roc", "oscr"),
                  "os-loo": ("per_class_auroc",), "xd": ("heatmap",), "fair": ("group_bars",),
                  "ver": ("roc", "det"), "lf": ("scatter_accuracy", "scatter_auroc")}


def test_figures_by_protocol_covers_the_figure_protocols():
    for protocol in ("closed_set", "imbalanced", "open_set", "cross_domain", "fairness", "verification",
                     "label_free"):
        assert F.FIGURES_BY_PROTOCOL[protocol]
    assert F.FIGURES_BY_PROTOCOL["verification"] == ("roc", "det")


@pytest.mark.parametrize("row,records", [pytest.param(r, rec, id=r["name"]) for r, rec in _hand_built_tasks()])
def test_task_figures_hand_built(row, records, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = F.task_figures(row, records, tmp_path)
    kinds = EXPECTED_KINDS[row["name"]]
    assert set(kinds) <= set(F.FIGURES_BY_PROTOCOL[row["protocol"]])
    expected = [tmp_path / f"{row['name']}-{k}.{ext}" for k in kinds for ext in ("png", "pdf")]
    assert paths == expected
    assert all(p.stat().st_size > 0 for p in paths)


def test_task_figures_failed_or_incomplete_tasks_give_nothing(tmp_path):
    row, records = _hand_built_tasks()[0]
    assert F.task_figures({**row, "status": "failed"}, records, tmp_path) == []
    assert F.task_figures({**row, "status": "skipped"}, records, tmp_path) == []
    assert F.task_figures({k: v for k, v in row.items() if k != "details"}, records, tmp_path) == []
    assert F.task_figures({**row, "details": None}, records, tmp_path) == []
    assert F.task_figures({**row, "protocol": "age_estimation"}, records, tmp_path) == []
    assert F.task_figures({**row, "protocol": "no_such_protocol"}, records, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_task_figures_malformed_kind_is_skipped_with_warning(tmp_path):
    row, records = _hand_built_tasks()[0]
    bad = {**row, "details": {**row["details"], "confusion_matrix": [[1, 2]]}}  # not square
    with pytest.warns(UserWarning, match="confusion_matrix"):
        paths = F.task_figures(bad, records, tmp_path)
    assert [p.name for p in paths] == [f"cs-{k}.{e}" for k in ("per_class_recall", "reliability")
                                       for e in ("png", "pdf")]


def test_task_figures_sanitises_names_and_ignores_other_tasks_records(tmp_path):
    row, records = _hand_built_tasks()[5]  # fairness
    row = {**row, "name": "fair/face: race"}
    recs = [{**r, "task": "fair/face: race"} for r in records] + [{"task": "other", "metric": "x", "value": 1}]
    paths = F.task_figures(row, recs, tmp_path)
    assert [p.name for p in paths] == ["fair_face_race-group_bars.png", "fair_face_race-group_bars.pdf"]
    assert all(p.parent == tmp_path for p in paths)


def test_run_figures_writes_into_figures_folder(tmp_path):
    chosen = [t for t in _hand_built_tasks() if t[0]["name"] in ("fair", "ver")]
    tasks = [row for row, _ in chosen] + [{"name": "broken", "protocol": "closed_set", "status": "failed",
                                           "details": None}]
    records = [r for _, recs in chosen for r in recs] + [{"task": "broken", "metric": "accuracy", "value": None}]
    paths = F.run_figures({"tasks": tasks, "records": records}, tmp_path)
    assert [p.name for p in paths] == [f"{n}-{k}.{e}" for n, ks in (("fair", ("group_bars",)), ("ver", ("roc", "det")))
                                       for k in ks for e in ("png", "pdf")]
    assert all(p.parent == tmp_path / "figures" and p.exists() for p in paths)
    assert F.run_figures({"tasks": [], "records": []}, tmp_path / "empty") == []


# ------------------------------------------------------------------------------------ example runs
def _example(name: str) -> dict:
    if EXAMPLES is None:
        pytest.skip("no example runs: set FACEBENCH_EXAMPLES to a folder of run folders (demo, ...)")
    path = EXAMPLES / name / "results.json"
    if not path.exists():
        pytest.skip(f"example run {path} not present (set FACEBENCH_EXAMPLES to a folder of example runs)")
    return json.loads(path.read_text())


def _expected_kinds(row: dict) -> tuple[str, ...]:
    protocol, details = row["protocol"], row.get("details") or {}
    if row.get("status") != "ok" or not details:
        return ()
    if protocol == "open_set":
        loo = (row.get("params") or {}).get("mode") == "leave_one_out"
        return ("per_class_auroc",) if loo else ("roc", "oscr")
    if protocol == "label_free":  # one block for accuracy; AUROC's blocks per detector ({detector: block})
        kinds = []
        for target in ("accuracy", "auroc"):
            block = details.get(target) or {}
            parts = {"": block} if "scatter" in block else {k: v for k, v in block.items() if isinstance(v, dict)}
            kinds += [f"scatter_{target}" + (f"_{d}" if d else "") for d, part in parts.items() if part.get("scatter")]
        return tuple(kinds)
    return F.FIGURES_BY_PROTOCOL.get(protocol, ())


@pytest.mark.parametrize("run", EXAMPLE_RUNS)
def test_task_figures_on_example_runs(run, tmp_path):
    results = _example(run)
    seen = set()
    for row in results["tasks"]:
        records = [r for r in results["records"] if r["task"] == row["name"]]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            paths = F.task_figures(row, records, tmp_path)
        kinds = _expected_kinds(row)
        stem = F.sanitise_filename(row["name"])
        assert [p.name for p in paths] == [f"{stem}-{k}.{e}" for k in kinds for e in ("png", "pdf")], row["name"]
        for i in range(0, len(paths), 2):
            _check_written(paths[i:i + 2], paths[i].with_suffix(""))
        if kinds:
            seen.add(row["protocol"])
    assert seen, f"no figures from {run}"
    if run == "demo":  # the demo run holds every figure protocol but verification
        assert seen == {"closed_set", "open_set", "imbalanced", "cross_domain", "fairness", "label_free"}
        names = {p.name for p in tmp_path.iterdir()}
        for expected in ("synth-closed-set-confusion_matrix.png", "synth-closed-set-reliability.pdf",
                         "synth-open-set-compound-roc.png", "synth-open-set-compound-oscr.png",
                         "synth-open-set-leave-one-out-per_class_auroc.png", "synth-imbalanced-per_class_recall.png",
                         "synth-cross-domain-heatmap.png", "synth-fairness-group_bars.png",
                         "synth-label-free-scatter_accuracy.png", "synth-label-free-scatter_auroc_msp.png"):
            assert expected in names
    if run == "verification":
        assert seen == {"verification"}


def test_example_skipped_tasks_give_nothing(tmp_path):
    results = _example("fairness_real")
    skipped = [t for t in results["tasks"] if t["status"] != "ok"]
    if not skipped:
        pytest.skip("no skipped task in this example")
    for row in skipped:
        assert F.task_figures(row, results["records"], tmp_path) == []


# ------------------------------------------------------------------------- content of the remaining kinds
def test_per_class_auroc_bars_ced_curve_and_worst_case_panels(tmp_path):
    """What each figure shows, read off its artists: a bar per held-out class with the mean as a line; the CED
    curve's points and the NME axis named after the normaliser; a panel per worst case with its NME."""
    rows = {r["name"]: (r, rec) for r, rec in _hand_built_tasks()}
    landmarks = {"name": "lm", "protocol": "landmarks", "status": "ok", "params": {},
                 "details": {"normaliser": "inter_ocular", "ced": {"x": [0.0, 0.05, 0.1], "y": [0.0, 0.4, 0.9],
                                                                   "thresholds": [0.08]},
                             "worst_cases": [{"id": f"img{i}", "nme": 0.3 - 0.1 * i, "image_size": [40, 40],
                                              "pred": [[10, 10], [20, 20]], "true": [[11, 10], [19, 21]]}
                                             for i in range(2)]}}
    with F.captured_figures() as figs:
        F.task_figures(*rows["os-loo"], tmp_path)
        F.task_figures(landmarks, [], tmp_path)
    auroc, ced, worst = figs
    ax = auroc.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 2 and ax.get_ylabel() == "AUROC (class held out)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Neutral", "Happiness"]
    ax = ced.axes[0]
    [curve] = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert list(curve.get_ydata()) == [0.0, 0.4, 0.9] and ax.get_xlabel() == "NME (inter_ocular)"
    panels = [a for a in worst.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["img0\nNME 0.300", "img1\nNME 0.200"]
    assert all(len(a.collections) == 2 for a in panels)  # true and predicted points
