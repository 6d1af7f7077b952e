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
