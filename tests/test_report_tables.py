"""Multi-run leaderboards (facebench.report.tables) and the static site (facebench.report.html)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from facebench.report.html import task_slug, write_site
from facebench.report.tables import (
    ReportError,
    build_table,
    latex_escape,
    load_runs,
    to_csv,
    to_html_table,
    to_latex,
    to_latex_document,
    to_markdown,
)

# a folder of example run folders, given by the environment (FACEBENCH_EXAMPLES); unset: the test skips
EXAMPLES = Path(os.environ["FACEBENCH_EXAMPLES"]) if os.environ.get("FACEBENCH_EXAMPLES") else None
NO_TEX = "no TeX installation (Debian: texlive-latex-base texlive-latex-recommended)"
NO_CHROMIUM = "chromium not installed (Debian: chromium chromium-driver)"


def make_results(model: str, tasks: dict, protocol_fps: dict | None = None) -> dict:
    """tasks: {task: {metric: (value, (lo, hi) or None, headline)}}; protocol_fps overrides per task."""
    protocol_fps = protocol_fps or {}
    task_rows, records = [], []
    for name, metrics in tasks.items():
        fps = {"dataset": hashlib.sha1(name.encode()).hexdigest()[:16],
               "protocol": protocol_fps.get(name, "ab12cd34ef567890"),
               "model": f"m-{model}", "preprocess": "pp00"}
        task_rows.append({"name": name, "dataset": "synth", "split": "test", "protocol": "closed_set", "params": {},
                          "status": "ok", "n": 100, "fingerprints": fps, "details": {}})
        for metric, (value, ci, headline) in metrics.items():
            records.append({"task": name, "dataset": "synth", "split": "test", "protocol": "closed_set",
                            "model": model, "metric": metric, "value": value, "ci": list(ci) if ci else None,
                            "n": 100, "conventions": {"note": "x"}, "headline": headline, "fingerprints": fps})
    # schema 1 (records without direction and unit): the readers upgrade it
    return {"schema_version": 1, "suite": {"name": "s", "fingerprint": "f0"},
            "model": {"name": model, "fingerprint": f"m-{model}"}, "tasks": task_rows, "records": records}


TASKS_A = {"rafdb-test": {"accuracy": (0.81, (0.79, 0.83), True), "nll": (0.52, (0.50, 0.55), True),
                          "macro_f1": (0.70, None, False)},
           "my_task": {"accuracy": (0.60, (0.58, 0.62), True)}}
TASKS_B = {"rafdb-test": {"accuracy": (0.75, (0.73, 0.77), True), "nll": (0.48, (0.46, 0.50), True),
                          "macro_f1": (0.65, None, False)},
           "my_task": {"accuracy": (0.64, (0.50, 0.70), True)}}


@pytest.fixture
def two_runs():
    return [make_results("model-a", TASKS_A), make_results("model-b", TASKS_B)]


def write_run(folder: Path, results: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


# ----------------------------------------------------------------------------------------------- merging

def test_same_tasks_share_columns(two_runs):
    table = build_table(two_runs)
    assert table.rows == ["model-a", "model-b"]
    assert [(c.task, c.metric) for c in table.columns] == [("rafdb-test", "accuracy"), ("rafdb-test", "nll"),
                                                           ("my_task", "accuracy")]
    assert not table.notes
    assert all(c.suffix == "" for c in table.columns)
    assert all(table.cells[(row, i)] is not None for row in table.rows for i in range(3))
    assert table.cells[("model-b", 1)]["value"] == 0.48
    assert table.columns[0].label == "accuracy % · rafdb-test"


def test_metric_selection(two_runs):
    table = build_table(two_runs, metrics=["macro_f1", "nll"])
    assert [c.metric for c in table.columns] == ["nll", "macro_f1"]
    assert len(build_table(two_runs, metrics="all").columns) == 4


def test_protocol_fingerprint_difference_splits_column():
    runs = [make_results("model-a", TASKS_A),
            make_results("model-b", TASKS_B, protocol_fps={"rafdb-test": "ff99ee88dd776655"})]
    table = build_table(runs)
    raf = [c for c in table.columns if c.task == "rafdb-test"]
    assert len(raf) == 4  # accuracy and nll, each split in two
    assert {c.suffix for c in raf} == {"[ab12]", "[ff99]"}
    assert "accuracy % · rafdb-test [ab12]" in [c.label for c in raf]
    for i, c in enumerate(table.columns):
        if c.task != "rafdb-test":
            continue
        owner = "model-a" if c.protocol_fp.startswith("ab12") else "model-b"
        other = "model-b" if owner == "model-a" else "model-a"
        assert table.cells[(owner, i)] is not None and table.cells[(other, i)] is None
    # the unaffected task still shares one column
    mine = [i for i, c in enumerate(table.columns) if c.task == "my_task"]
    assert len(mine) == 1 and all(table.cells[(r, mine[0])] is not None for r in table.rows)
    assert len(table.notes) == 1
    assert "rafdb-test" in table.notes[0] and "protocol" in table.notes[0]
    assert "model-a" in table.notes[0] and "model-b" in table.notes[0]
    assert "rafdb-test" in to_markdown(table).split("\n- ")[-1]


def test_dataset_fingerprint_difference_splits_and_prefix_lengthens():
    a, b = make_results("a", TASKS_A), make_results("b", TASKS_A)
    for r in b["records"]:
        if r["task"] == "my_task":
            r["fingerprints"] = dict(r["fingerprints"], dataset=r["fingerprints"]["dataset"][:4] + "zzzzzz")
    table = build_table([a, b])
    cols = [c for c in table.columns if c.task == "my_task"]
    assert len(cols) == 2 and len({c.suffix for c in cols}) == 2
    assert all(len(c.suffix) > len("[abcd]") for c in cols)  # 4-char prefixes collide, so they grow
    assert "dataset" in table.notes[0]



def test_other_attributes_or_pairs_over_the_same_images_split_the_column():
    """Same dataset fingerprint, other annotations (attributes, pairs): other data, so another column; equal
    annotations share one; the labels tell the columns apart by the annotations ("none" for a run without)."""
    a, b, c = make_results("a", TASKS_A), make_results("b", TASKS_A), make_results("c", TASKS_A)
    for results, digest in ((a, "1" * 32), (b, "2" * 32), (c, "1" * 32)):
        for r in results["records"]:
            if r["task"] == "my_task":
                r["fingerprints"] = dict(r["fingerprints"], annotations=digest)
    cols = [col for col in build_table([a, b]).columns if col.task == "my_task"]
    dataset = hashlib.sha1(b"my_task").hexdigest()[:16]
    assert len(cols) == 2 and all(col.dataset_fp.startswith(dataset + ":") for col in cols)
    rests = sorted(col.dataset_fp.split(":")[1][:4] for col in cols)  # the labels tell them apart by the rest
    assert sorted(col.suffix for col in cols) == [f"[{r}]" for r in rests]
    old = make_results("old", TASKS_A)  # a run from before annotations were recorded: "none"
    mixed = [col for col in build_table([a, old]).columns if col.task == "my_task"]
    rest = next(col.dataset_fp for col in mixed if ":" in col.dataset_fp).split(":")[1]
    assert {col.suffix for col in mixed} == {"[none]", f"[{rest[:4]}]"}
    assert len([col for col in build_table([a, c]).columns if col.task == "my_task"]) == 1

def test_strict_refuses_with_the_differing_fingerprints():
    runs = [make_results("model-a", TASKS_A),
            make_results("model-b", TASKS_B, protocol_fps={"rafdb-test": "ff99ee88dd776655"})]
    with pytest.raises(ValueError) as info:
        build_table(runs, strict=True)
    message = str(info.value)
    assert isinstance(info.value, ReportError)
    assert "rafdb-test" in message and "ab12cd34ef567890" in message and "ff99ee88dd776655" in message
    assert "my_task" not in message
    build_table([make_results("a", TASKS_A), make_results("b", TASKS_B)], strict=True)  # no difference: fine


def test_load_runs(tmp_path):
    a = write_run(tmp_path / "a", make_results("m", TASKS_A))
    b = write_run(tmp_path / "b", make_results("m", TASKS_B))
    c = write_run(tmp_path / "c", make_results("m", TASKS_B))
    runs = load_runs([a, b / "results.json", c])
    assert [r["label"] for r in runs] == ["m", "m-2", "m-3"]
    assert runs[1]["path"] == str(b)
    assert build_table(runs).rows == ["m", "m-2", "m-3"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.json"):
        load_runs([tmp_path / "empty"])
    with pytest.raises(ValueError, match="does not exist"):
        load_runs([tmp_path / "missing"])


def test_v1_upgrade_directions():
    """Schema-1 records carry no direction: the v1 upgrade's table gives them the one their protocol declares
    now (the old name rule's answers; the records' own field decides everywhere else)."""
    from facebench.report.results import _v1_direction_and_unit

    def higher_is_better(m):
        return _v1_direction_and_unit(m)[0]

    assert higher_is_better("accuracy") and higher_is_better("auroc[mean]") and higher_is_better("best_spearman")
    for m in ("nll", "ece[15]", "mae", "rmse", "fpr@tpr95[pos=known]", "detection_error", "fmr[group=a]", "fnmr",
              "gap", "accuracy_difference[between_groups]", "accuracy_std", "accuracy_ser", "best_mae[target=auroc]"):
        assert not higher_is_better(m), m


# ----------------------------------------------------------------------------------------------- Markdown / CSV

def test_markdown(two_runs):
    md = to_markdown(build_table(two_runs))
    lines = md.splitlines()
    assert lines[0] == "| run | accuracy % · rafdb-test | NLL · rafdb-test | accuracy % · my_task |"
    row_a = next(line for line in lines if line.startswith("| model-a"))
    row_b = next(line for line in lines if line.startswith("| model-b"))
    assert "**81.00 [79.00, 83.00]**" in row_a  # higher accuracy is best
    assert "**0.4800 [0.4600, 0.5000]**" in row_b  # lower NLL is best
    assert "**64.00" in row_b and "**60.00" not in row_a
    assert "± 2.00" in to_markdown(build_table(two_runs), ci="pm")
    assert "[" not in to_markdown(build_table(two_runs), ci=None).splitlines()[2]


def test_csv(two_runs):
    text = to_csv(build_table(two_runs))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["run", "task", "metric", "value", "ci_low", "ci_high", "n", "protocol_fp", "dataset_fp"]
    assert len(rows) == 2 * 3
    first = rows[0]
    assert (first["run"], first["task"], first["metric"]) == ("model-a", "rafdb-test", "accuracy")
    assert float(first["value"]) == 0.81 and float(first["ci_low"]) == 0.79 and float(first["ci_high"]) == 0.83
    assert first["n"] == "100" and first["protocol_fp"] == "ab12cd34ef567890"
    # a run missing a column still has its line, with empty fields
    runs = [make_results("a", TASKS_A), make_results("b", {"my_task": TASKS_B["my_task"]})]
    rows = list(csv.DictReader(io.StringIO(to_csv(build_table(runs)))))
    missing = [r for r in rows if r["run"] == "b" and r["task"] == "rafdb-test"]
    assert len(missing) == 2 and all(r["value"] == "" and r["ci_low"] == "" for r in missing)


# ----------------------------------------------------------------------------------------------- LaTeX

def _latex_cells(tex: str, label: str) -> list[str]:
    line = next(line for line in tex.splitlines() if line.startswith(label))
    return [c.strip() for c in line.rstrip("\\ ").split(" & ")]


def test_latex_structure_bold_and_escaping(two_runs):
    tex = to_latex(build_table(two_runs))
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    assert "\\begin{tabular}{lrrr}" in tex and "\\end{tabular}" in tex
    a = _latex_cells(tex, "model-a")
    b = _latex_cells(tex, "model-b")
    # columns: accuracy (higher better), nll (lower better), my_task accuracy
    assert a[1] == "\\textbf{81.00 $\\pm$ 2.00}" and not b[1].startswith("\\textbf")
    assert b[2] == "\\textbf{0.4800 $\\pm$ 0.0200}" and not a[2].startswith("\\textbf")
    assert b[3].startswith("\\textbf{64.00")
    assert "my\\_task" in tex and "my_task" not in tex
    assert "accuracy \\%" in tex
    assert re.search(r"(?<!\\)%", tex.split("\\begin{tabular}")[1]) is None  # no bare % in the table body
    brackets = to_latex(build_table(two_runs), ci="brackets", bold_best=False)
    assert "81.00 {[}79.00, 83.00{]}" in brackets and "\\textbf" not in brackets
    assert latex_escape("a_b&c#d$e%f{g}~^\\") == ("a\\_b\\&c\\#d\\$e\\%f\\{g\\}\\textasciitilde{}"
                                                  "\\textasciicircum{}\\textbackslash{}")


def test_latex_baseline_and_significance_marks(two_runs):
    table = build_table(two_runs)
    tex = to_latex(table, baseline="model-a")
    b = _latex_cells(tex, "model-b")
    # accuracy CIs [0.79, 0.83] vs [0.73, 0.77] do not overlap; nll [0.50, 0.55] vs [0.46, 0.50] touch
    assert b[1].endswith("\\textsuperscript{*}")
    assert "\\textsuperscript" not in b[2] and "\\textsuperscript" not in b[3]
    assert "\\textsuperscript" not in " ".join(_latex_cells(tex, "model-a"))
    tex = to_latex(table, baseline="model-a", significance={("model-b", 1): 0.01, ("model-b", 0): 0.2})
    b = _latex_cells(tex, "model-b")
    assert b[2].endswith("\\textsuperscript{\\dag}") and "\\textsuperscript" not in b[1]
    with pytest.raises(ValueError, match="Baseline"):
        to_latex(table, baseline="nobody")


def test_latex_document_compiles(tmp_path, two_runs):
    runs = two_runs + [make_results("model_c & 100% #1", TASKS_B, protocol_fps={"rafdb-test": "ff99ee88dd776655"})]
    doc = to_latex_document(build_table(runs), ci="pm", baseline="model-a")
    assert doc.startswith("\\documentclass{article}") and "\\usepackage{booktabs}" in doc
    assert doc.rstrip().endswith("\\end{document}")
    if not shutil.which("pdflatex"):
        pytest.skip(NO_TEX)
    (tmp_path / "table.tex").write_text(doc, encoding="utf-8")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0


# ----------------------------------------------------------------------------------------------- HTML

WEIRD = "odd<task>&\"name\""


@pytest.fixture
def site(tmp_path):
    from PIL import Image

    tasks_a = dict(TASKS_A, **{WEIRD: {"auroc": (0.9, (0.85, 0.95), True)}})
    tasks_b = dict(TASKS_B, **{WEIRD: {"auroc": (0.8, (0.75, 0.85), True)}})
    a = write_run(tmp_path / "runs" / "a", make_results("model-a", tasks_a))
    b = write_run(tmp_path / "runs" / "b", make_results("model-b <beta>", tasks_b))
    png = tmp_path / "roc curve.png"
    img = Image.new("RGB", (40, 30), "white")
    img.paste((200, 30, 30), (5, 5, 20, 20))
    img.save(png)
    index = write_site(load_runs([a, b]), tmp_path / "site", figures={"rafdb-test": [png]})
    return index


def test_site_pages(site):
    root = site.parent
    assert site.name == "index.html" and site.exists()
    html = site.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert "<td data-sort=\"model-a\">model-a</td>" in html
    assert "model-b &lt;beta&gt;" in html and "<beta>" not in html
    assert "odd&lt;task&gt;&amp;&quot;name&quot;" in html and "odd<task>" not in html
    assert "data-sort=\"0.81\"" in html and "<script>" in html
    task_page = root / "tasks" / "rafdb-test.html"
    assert task_page.exists()
    page = task_page.read_text(encoding="utf-8")
    for text in ("model-a", "model-b &lt;beta&gt;", "accuracy", "nll", "macro_f1", "<details>", "81.00"):
        assert text in page
    figures = list((root / "figures").rglob("*.png"))
    assert len(figures) == 1
    rel = figures[0].relative_to(root).as_posix()
    assert f'src="../{rel}"' in page
    weird_page = root / "tasks" / f"{task_slug(WEIRD)}.html"
    assert weird_page.exists() and "<task>" not in weird_page.read_text(encoding="utf-8")
    assert (root / "leaderboard.csv").exists()
    for file in [site, *root.glob("tasks/*.html")]:
        text = file.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I), file
        assert "http://" not in text and "https://" not in text


def test_html_fragment_sort_attributes(two_runs):
    fragment = to_html_table(build_table(two_runs))
    assert fragment.startswith('<table class="leaderboard">')
    assert fragment.count("data-sort=") == 2 * 4  # run label + 3 values per row
    assert 'data-direction="asc"' in fragment  # the NLL column sorts ascending first


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(NO_CHROMIUM)


def _run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    base = [binary, "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
            "--disable-dev-shm-usage"]
    out = subprocess.run(base + ["--headless", *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:  # older builds spell it --headless=new
        out = subprocess.run(base + ["--headless=new", *args], capture_output=True, text=True, timeout=120)
    return out


def test_site_renders_in_headless_chromium(site, tmp_path):
    from PIL import Image

    binary = _chromium()
    shot = tmp_path / "shot.png"
    out = _run_chromium(binary, f"--screenshot={shot}", "--window-size=1200,800", site.as_uri())
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1200, 800)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 1, "screenshot is a single colour"
    dom = _run_chromium(binary, "--dump-dom", site.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for label in ("model-a", "model-b &lt;beta&gt;"):
        assert re.search(rf"<td[^>]*>{re.escape(label)}</td>", dom.stdout), label
    assert 'class="leaderboard"' in dom.stdout
    # clicking a header sorts the rows (my_task accuracy: model-b's 64.00 beats model-a's 60.00)
    col = 1 + next(i for i, c in enumerate(build_table(load_runs([site.parent.parent / "runs" / "a",
                                                                   site.parent.parent / "runs" / "b"])).columns)
                   if c.task == "my_task")
    clicked = site.parent / "clicked.html"
    clicked.write_text(site.read_text(encoding="utf-8").replace(
        "</body>", f"<script>document.querySelector('th[data-col=\"{col}\"]').click();</script></body>"),
        encoding="utf-8")
    dom = _run_chromium(binary, "--dump-dom", clicked.as_uri())
    assert dom.stdout.index('<td data-sort="model-b &lt;beta&gt;">') < dom.stdout.index('<td data-sort="model-a">')


# ----------------------------------------------------------------------------------------------- real example runs

@pytest.mark.skipif(EXAMPLES is None or not (EXAMPLES / "demo" / "results.json").exists(),
                    reason="example run folders not present (set FACEBENCH_EXAMPLES to a folder holding demo/ ...)")
def test_example_runs(tmp_path):
    folders = [p for p in sorted(EXAMPLES.iterdir()) if (p / "results.json").exists()]
    runs = load_runs(folders)
    table = build_table(runs)
    assert len(table.rows) == len(folders) and table.columns
    assert len(list(csv.DictReader(io.StringIO(to_csv(table))))) == len(table.rows) * len(table.columns)
    assert sum(line.startswith("| ") for line in to_markdown(table).splitlines()) == len(table.rows) + 1
    assert "\\bottomrule" in to_latex(table)
    index = write_site(runs, tmp_path / "site")
    assert all((index.parent / "tasks" / f"{task_slug(c.task)}.html").exists() for c in table.columns)
