"""Row-range parallelism for NumPy passes that release the GIL (argmax, reductions, bincount)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["PARALLEL_ROWS", "RANGES_PER_THREAD", "call_all", "map_blocks", "map_ranges", "row_threads", "usable_cpus"]

#: Rows from which a per-row pass is split over threads (below it, thread start-up costs more than it saves).
PARALLEL_ROWS = 1 << 18
#: Ranges per thread of :func:`map_ranges` (a few: a thread that other processes slow down takes fewer).
RANGES_PER_THREAD = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux), at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def row_threads(n_rows: int) -> int:
    """Threads for a per-row pass over ``n_rows`` rows: 1 below :data:`PARALLEL_ROWS`, else :func:`usable_cpus`."""
    return usable_cpus() if n_rows >= PARALLEL_ROWS else 1


def map_ranges(work, n: int, threads: int) -> None:
    """Call ``work(first, stop)`` on contiguous ranges covering ``0..n-1`` exactly once, in ``threads`` threads
    (NumPy releases the GIL in the passes that matter); exceptions propagate. With several threads the rows
    are cut into :data:`RANGES_PER_THREAD` ranges per thread, taken in turn by whichever thread is free, so a
    thread slowed by other load on the machine takes fewer of them."""
    threads = max(1, min(threads, n))
    if threads == 1:
        work(0, n)
        return
    pieces = min(n, threads * RANGES_PER_THREAD)
    bounds = np.linspace(0, n, pieces + 1).round().astype(int)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(work, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]:
            future.result()


def map_blocks(work, n: int, block: int = PARALLEL_ROWS) -> list:
    """``[work(first, stop) for each block of `block` rows]`` in block order, the blocks run in threads.

    The split depends on ``n`` alone, never on the number of CPUs, so float partial sums combined in
    block order give the same bits on every machine."""
    bounds = list(range(0, n, block)) + [n]
    ranges = list(zip(bounds[:-1], bounds[1:]))
    threads = min(row_threads(n), len(ranges))
    if threads <= 1:
        return [work(lo, hi) for lo, hi in ranges]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda r: work(*r), ranges))


def call_all(calls, threads: int) -> list:
    """``[call() for call in calls]``, the calls in ``threads`` threads (one: in order, here)."""
    threads = max(1, min(threads, len(calls)))
    if threads == 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]
