"""Benchmark (issue 18): the demo's figures, the run's write step that draws them (12 figures, PNG + PDF).

Two tables, printed (times never asserted; the machine may be shared, so the load average is printed too):

* one process, every figure drawn in turn (CPU seconds, best of 3): as ``Figure.savefig`` writes them (a layout
  pass then a drawing pass per file, matplotlib's own PDF font subsets) against ``facebench.report.figures`` (one
  pass per format, font subsets without the OpenType layout tables). The PNGs are asserted byte-identical.
* the run's figure step in a fresh process, as ``facebench run`` does it (NumPy loaded, results in memory):
  ``figure_index.run_figures`` with a worker started then, and with the worker ``runner.run_suite`` starts ahead
  (``figure_index.warm_up``, here 3 s before). For each: the wall time, this process's CPU and the worker's
  (after its share came). On two idle cores the wall time is about the larger CPU time of the two.

The figures come from a demo run: ``$FACEBENCH_EXAMPLES/demo/results.json`` when present, else the demo is run
once (minutes on the 2-core development CPU), so the module is skipped unless benchmarks are enabled:
``python -m pytest tests/benchmarks/test_bench_figures.py -q -s --benchmark-enable``.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# the run's figure step in a fresh process: argv = results.json, output folder, seconds ahead (-1: no warm worker)
STEP = r"""
import json, os, resource, sys, time
import numpy
results = json.loads(open(sys.argv[1]).read())
from facebench.report import figure_index
figure_index.code_version()
ahead = float(sys.argv[3])
before = 0.0
if ahead >= 0:
    figure_index.warm_up()
    time.sleep(ahead)
    stat = open(f"/proc/{figure_index._WARM[0].pid}/stat").read().rsplit(")", 1)[1].split()
    before = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
cpu, wall = time.process_time(), time.perf_counter()
paths = figure_index.run_figures(results, sys.argv[2])
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
child = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "main": cpu, "worker": child.ru_utime + child.ru_stime - before, "files": len(paths)}))
"""


@pytest.fixture(scope="module")
def demo_results(request, tmp_path_factory) -> Path:
    options = request.config.option
    if getattr(options, "benchmark_disable", True) and not getattr(options, "benchmark_enable", False):
        pytest.skip("the figure benchmark needs a demo run (minutes): run it with --benchmark-enable")
    examples = os.environ.get("FACEBENCH_EXAMPLES")
    if examples and (Path(examples) / "demo" / "results.json").is_file():
        return Path(examples) / "demo" / "results.json"
    tmp = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "facebench", "run", str(REPO / "suites" / "demo.yaml"), "--model",
                           "synth-cnn", "--out", str(tmp / "run"), "--cache-dir", str(tmp / "store"), "--quiet",
                           "--no-progress", "--no-figures"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run" / "results.json"


def _savefig_write(fig, png, pdf):
    """The files as ``Figure.savefig`` writes them (with the layout engine's extra pass per file)."""
    from facebench.report import figures as F

    fig.savefig(png, format="png", dpi=F.DPI, metadata=F._PNG_METADATA)
    fig.savefig(pdf, format="pdf", metadata=F._PDF_METADATA)


def _draw_all(results: dict, out: Path) -> float:
    from facebench.report import figures as F

    t0 = time.process_time()
    for row in results["tasks"]:
        F.task_figures(row, results["records"], out)
    return time.process_time() - t0


def test_figures_one_process_report(demo_results, tmp_path, monkeypatch):
    from facebench.report import figures as F

    results = json.loads(demo_results.read_text())
    _draw_all(results, tmp_path / "warm-up")  # fonts and caches loaded for both ways
    ours = min(_draw_all(results, tmp_path / f"ours-{i}") for i in range(3))
    monkeypatch.setattr(F, "_write", _savefig_write)
    monkeypatch.setattr(F._FontSubsetSwap, "supported", staticmethod(lambda: False))
    theirs = min(_draw_all(results, tmp_path / f"savefig-{i}") for i in range(3))
    pngs = sorted(p.name for p in (tmp_path / "ours-0").glob("*.png"))
    assert len(pngs) >= 12
    assert all((tmp_path / "ours-0" / n).read_bytes() == (tmp_path / "savefig-0" / n).read_bytes() for n in pngs)
    print(f"\nload average {os.getloadavg()} ({os.cpu_count()} cores); {len(pngs)} figures, PNG + PDF, one process")
    print("| drawing | CPU (s) |\n|---|---|")
    print(f"| Figure.savefig, matplotlib's font subsets | {theirs:.2f} |\n| facebench.report.figures | {ours:.2f} |")


def _step(results: Path, out: Path, ahead: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", STEP, str(results), str(out), str(ahead)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_figure_step_report(demo_results, tmp_path):
    rows = []
    for name, ahead in (("worker started by the step", -1.0), ("worker started ahead (warm_up)", 3.0)):
        runs = [_step(demo_results, tmp_path / f"{ahead}-{i}", ahead) for i in range(3)]
        assert all(r["files"] == runs[0]["files"] >= 24 for r in runs)
        best = min(runs, key=lambda r: max(r["main"], r["worker"]))
        rows.append((name, best))
    print(f"\nload average {os.getloadavg()} ({os.cpu_count()} cores); the run's figure step, best of 3")
    print("| figure step | wall (s) | this process CPU (s) | worker CPU (s) |\n|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['wall']:.2f} | {r['main']:.2f} | {r['worker']:.2f} |")
