"""The report's LaTeX compiles with pdflatex: the standalone ``leaderboard.tex`` that ``\\input``s every table,
and each ``tables/*.tex`` fragment alone in a minimal document (booktabs only), names full of LaTeX
specials included. Skips, with the install command, when pdflatex is absent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from facebench.report.build import build_report

INSTALL = ("pdflatex not found; install it with: apt-get update && apt-get install -y --no-install-recommends "
           "texlive-latex-base texlive-latex-recommended")
EVIL = "model_b & 100% #1 $x^2$ ~{}\\ <tag>|[0]"
MODELS = ("model-a", EVIL, "Müller–net", "模型★")


def results(model: str, shift: float) -> dict:
    """Schema-1 results (the reader adds each metric's direction and unit): two closed-set tasks and one
    open-set task whose names need escaping."""
    tasks = {"fer_2013 & co": ("closed_set", {"accuracy": 0.7, "nll": 0.9}),
             "raf-db #test": ("closed_set", {"accuracy": 0.8, "nll": 0.6}),
             "osr_50%": ("open_set", {"auroc": 0.75})}
    rows, records = [], []
    for name, (protocol, metrics) in tasks.items():
        fps = {"dataset": f"d{len(name):015d}", "protocol": "p" * 16}
        rows.append({"name": name, "dataset": "synth", "split": "test", "protocol": protocol, "status": "ok",
                     "n": 100, "fingerprints": fps})
        records += [{"task": name, "dataset": "synth", "split": "test", "protocol": protocol, "model": model,
                     "metric": metric, "value": value + shift, "ci": [value + shift - 0.02, value + shift + 0.02],
                     "n": 100, "conventions": {}, "headline": True, "fingerprints": fps}
                    for metric, value in metrics.items()]
    return {"schema_version": 1, "suite": {"name": "s", "fingerprint": "f"},
            "model": {"name": model, "fingerprint": model}, "tasks": rows, "records": records}


def pdflatex(tex: Path, cwd: Path, env: dict | None = None) -> str:
    """Compile ``tex`` (nonstop, halting on the first error); return the log; fail with its tail otherwise."""
    build = cwd / "build"
    build.mkdir(exist_ok=True)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"-output-directory={build}",
                           str(tex)], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    log = (build / f"{tex.stem}.log").read_text(errors="replace")
    assert done.returncode == 0, f"{tex.name} did not compile:\n{log[-3000:]}"
    assert (build / f"{tex.stem}.pdf").stat().st_size > 0
    return log


@pytest.fixture
def report(tmp_path) -> Path:
    runs = []
    for i, model in enumerate(MODELS):
        folder = tmp_path / "runs" / f"r{i}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(results(model, 0.03 * i)))
        runs.append(folder)
    return build_report(runs, tmp_path / "report", ci="pm", baseline="model-a", figures=False)


def test_fragments_are_bare_escaped_booktabs_tables(report):
    fragments = sorted((report / "tables").glob("*.tex"))
    assert [p.name for p in fragments] == ["closed_set.tex", "open_set.tex"]
    closed = (report / "tables" / "closed_set.tex").read_text(encoding="utf-8")
    body = [ln for ln in closed.splitlines() if not ln.startswith("%")]
    assert body[0] == "\\begin{tabular}{lrrrr}" and body[-1] == "\\end{tabular}"  # 2 tasks, Mean, Mean rank
    assert "\\documentclass" not in closed and "\\usepackage" not in "\n".join(body)
    assert "fer\\_2013 \\& co & raf-db \\#test & Mean & Mean rank" in closed
    assert "model\\_b \\& 100\\% \\#1 $\\$$x\\textasciicircum{}2$\\$$" in closed  # the evil name escaped
    assert "Müller--net" in closed and "??? &" in closed  # Latin-1 kept, the CJK and the star replaced
    row = next(ln for ln in body if ln.startswith("??? & "))  # the last model: best everywhere, CIs apart from a's
    assert row.startswith("??? & \\textbf{79.00 $\\pm$ 2.00}\\textsuperscript{*} & \\textbf{89.00 $\\pm$ 2.00}")
    wrapper = (report / "leaderboard.tex").read_text(encoding="utf-8")
    assert "\\input{tables/closed_set.tex}" in wrapper and "\\input{tables/open_set.tex}" in wrapper


def test_wrapper_and_every_fragment_compile_with_pdflatex(report, tmp_path):
    if not shutil.which("pdflatex"):
        pytest.skip(INSTALL)
    log = pdflatex(report / "leaderboard.tex", cwd=report)
    assert not re.search(r"\.\d+pk>", log), "bitmap (Type 3) fonts in the PDF:\n" + log[-2000:]
    minimal = tmp_path / "minimal"
    minimal.mkdir()
    env = {**os.environ, "TEXINPUTS": f"{report / 'tables'}{os.pathsep}"}  # trailing separator: the defaults too
    for fragment in sorted((report / "tables").glob("*.tex")):
        doc = minimal / f"doc-{fragment.stem}.tex"
        doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                       f"\\input{{{fragment.name}}}\n\\end{{document}}\n", encoding="utf-8")
        pdflatex(doc, cwd=minimal, env=env)
