"""Helpers shared by the benchmarks."""

import time

import pytest


def _best_of(fn, *args, repeats=3):
    """Fewest seconds of ``repeats`` calls of ``fn(*args)`` (for the printed ratio reports)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.fixture
def best_of():
    return _best_of


# Reports that run whole comparisons at full size in fresh subprocesses (tens of seconds each): under the
# project default ``--benchmark-disable`` (the README's test command, CI) they are skipped; they run with
# ``--benchmark-enable``, as do the scaling table (tests/benchmarks/scaling.py) and the demo benchmark.
FULL_SIZE_REPORTS = frozenset({
    "test_label_free_parts_ratio_report", "test_label_free_task_report", "test_bench_gmm_set_by_set_scipy",
    "test_open_set_scaling_report", "test_closed_set_scaling_report", "test_csv_loader_ratio_report",
    "test_bench_whole_run_vs_bare_forward",
})


def pytest_collection_modifyitems(config, items):
    if config.getoption("benchmark_enable", False):
        return
    skip = pytest.mark.skip(reason="a full-size report (tens of seconds): run it with --benchmark-enable")
    for item in items:
        if item.originalname in FULL_SIZE_REPORTS or item.name in FULL_SIZE_REPORTS:
            item.add_marker(skip)
