"""Benchmark (issue 18): rendering the demo's synthetic faces -- every synth split of suites/demo.yaml, 12,000
faces at 48 px -- with the windowed renderer (``facebench.synth.painter``) against the renderer as first written
(``tests/_synth_reference.py``: every part on the whole grid, one chunk at a time).

* ``test_bench_render_demo``: the demo's splits rendered as a run renders them (chunks in threads);
* ``test_render_speed_report``: wall and CPU seconds of the renderer as first written, the windowed one on one
  thread and on every usable CPU (best of 3; the reference best of 2), the speed-ups and the load average
  (``os.getloadavg``: the machine may be shared; CPU seconds say more there). Asserts every byte equal.

Target (issue 18): at least 3x faster than first written on the 2-core development CPU, quiet. Times are printed,
never asserted. The renderer as first written takes 10-20 s for one pass, so the module is skipped unless
benchmarks are enabled: ``python -m pytest tests/benchmarks/test_bench_render.py -q -s --benchmark-enable``.
"""

import os
import time
from pathlib import Path

import pytest
from _synth_reference import reference_render

import facebench.synth.generator as generator
from facebench.data.synthetic import DEFAULT_SIZES, SynthFaces
from facebench.pipeline import plan
from facebench.suite import load_suite

SUITE = Path(__file__).resolve().parents[2] / "suites" / "demo.yaml"


def _demo_draws() -> dict:
    """Split key -> ``SynthDraw`` of every synth split the demo reads (each once), as its loader draws it."""
    draws = {}
    for item in plan.plan_tasks(load_suite(SUITE), lambda msg: None):
        for ref, loader in item.splits():
            if isinstance(loader, SynthFaces) and ref.key() not in draws:
                draws[ref.key()] = generator.draw_split(
                    ref.split, loader.n or DEFAULT_SIZES[ref.split], seed=loader.seed, domain=loader.domain,
                    classes=loader.classes, imbalance=loader.imbalance, severity=loader.severity)
    return draws


@pytest.fixture(scope="module")
def draws(request):
    options = request.config.option
    if getattr(options, "benchmark_disable", True) and not getattr(options, "benchmark_enable", False):
        pytest.skip("renders the demo's 12,000 faces with both renderers (a minute or two): --benchmark-enable")
    return list(_demo_draws().values())


def _timed(render, draws, rounds: int):
    """(best wall s, best CPU s, images of the last round) of rendering every draw ``rounds`` times."""
    best_wall = best_cpu = float("inf")
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        images = [render(d) for d in draws]
        best_wall, best_cpu = min(best_wall, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, images


def test_bench_render_demo(benchmark, draws):
    images = benchmark.pedantic(lambda: [d.render() for d in draws], rounds=3, iterations=1)
    assert sum(len(i) for i in images) == 12000 and len(draws) == 9


def test_render_speed_report(draws, monkeypatch):
    load_before, threads = os.getloadavg(), generator.render_threads()
    reference = _timed(reference_render, draws, rounds=2)
    threaded = _timed(lambda d: d.render(), draws, rounds=3)
    monkeypatch.setattr(generator, "render_threads", lambda: 1)
    single = _timed(lambda d: d.render(), draws, rounds=3)
    for got in (threaded[2], single[2]):
        assert [i.tobytes() for i in got] == [i.tobytes() for i in reference[2]]
    print(f"\n{sum(len(d) for d in draws)} faces in {len(draws)} splits; load average before {load_before}, after "
          f"{os.getloadavg()} ({os.cpu_count()} CPUs; {threads} render threads)")
    print("| renderer | wall (s) | CPU (s) | speed-up, wall | speed-up, CPU |\n|---|---|---|---|---|")
    for name, (wall, cpu, _) in (("as first written (whole grid)", reference), ("windowed, 1 thread", single),
                                 ("windowed, chunks in threads", threaded)):
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {reference[0] / wall:.2f}x | {reference[1] / cpu:.2f}x |")
