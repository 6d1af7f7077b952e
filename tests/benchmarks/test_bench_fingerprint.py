"""Benchmark: content fingerprints of the 35,887-image FER2013 image folder (splits train, val, test), warm and cold.

* cold: every file's bytes hashed (BLAKE2b, threads) and the stat cache written (an empty cache
  folder; the files themselves are in the page cache after the first pass, as for a decode);
* warm: one ``stat`` per file, one read of each folder's stat-cache file, no file read;
* the yardstick: decoding every file once with Pillow (``facebench.data.images.decode_image``).

The issue's targets: warm adds at most 0.3 s to a run, cold costs at most one decode of the split.
``test_fingerprint_cost_report`` prints the numbers (no timing assertion: a benchmark, not a timed test).
Skipped when ../shared/data is absent.

Run with ``python -m pytest tests/benchmarks/test_bench_fingerprint.py -q -s --benchmark-enable``.
"""

import time

import numpy as np
import pytest

import facebench.content as content
from facebench.data.dataset import Dataset
from facebench.data.images import FileImages, decode_image


def _splits(shared_data):
    from facebench.data.fer2013 import FER2013Images

    root = shared_data / "fer2013_images"
    if not root.exists():
        pytest.skip(f"{root} not present")
    loader = FER2013Images(path=root)
    return [loader.load(split) for split in ("train", "val", "test")]


def _both(splits) -> Dataset:
    """train + val + test as one Dataset (ids prefixed by the split)."""
    ids = np.concatenate([np.char.add(f"{d.split}/", d.ids) for d in splits])
    labels = np.concatenate([d.labels for d in splits])
    paths = [p for d in splits for p in d.images.paths]
    return Dataset("fer2013-images", "all", ids, splits[0].classes, labels, FileImages(paths))


@pytest.fixture
def paths(shared_data):
    return [p for d in _splits(shared_data) for p in d.images.paths]


def test_fingerprint_warm(benchmark, paths, tmp_path):
    content.set_cache_root(tmp_path / "cache")
    try:
        first = content.file_digests(paths)  # cold: fills the stat cache
        warm = benchmark(content.file_digests, paths)
    finally:
        content.set_cache_root(None)
    assert len(paths) == 35887 and np.array_equal(warm, first)


def test_fingerprint_cost_report(paths, shared_data, tmp_path):
    content.set_cache_root(tmp_path / "cache")
    try:
        t0 = time.perf_counter()
        cold = content.file_digests(paths)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = content.file_digests(paths)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        content.stat_files(paths)  # the floor: one stat per file, as git status and make pay
        stat_s = time.perf_counter() - t0
        # what a run pays: a freshly loaded Dataset's fingerprint (ids, labels and content), warm
        splits = _splits(shared_data)
        t0 = time.perf_counter()
        fp = _both(splits).fingerprint()
        dataset_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fp_again = _both(splits).fingerprint()
        dataset_again_s = time.perf_counter() - t0
    finally:
        content.set_cache_root(None)
    t0 = time.perf_counter()
    for p in paths:
        decode_image(p)
    decode_s = time.perf_counter() - t0
    assert np.array_equal(cold, warm) and fp == fp_again
    print(f"\n{len(paths)} files: cold hash {cold_s:.2f} s, warm {warm_s:.3f} s (of which stat {stat_s:.3f} s); "
          f"warm Dataset.fingerprint "
          f"{dataset_s:.3f} s (again {dataset_again_s:.3f} s); Pillow decode of every file {decode_s:.2f} s; "
          f"cold / decode = {cold_s / decode_s:.2f}")
