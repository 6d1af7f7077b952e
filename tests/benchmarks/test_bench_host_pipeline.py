"""Benchmark: the host pipeline alone, decoded-image cache -> batches ready on the device, no model.

A decoded-cache file (``images.npy``, uint8 (N, C, H, W), as ``DecodedCache`` writes it) is read by
the engine's :class:`~facebench.engine.prefetch.Prefetcher` at batch 256, depth 3: the background
thread reads rows from the file into the ring of host buffers and hands each batch over (on CUDA:
page-locked buffers, a non-blocking copy on a side stream, the consumer's stream waits on its
event; on CPU: a copy of the buffer, the analogue of the device copy). Three input sizes: 48x48
grey (FER2013's images), 64x64 grey (fer-minixception's input, what its cache holds) and 112x112 RGB.

Printed per size (best of 3 passes, as img/s of wall-clock time and as images per CPU-second of
the process, which reads the work done when other processes share the cores): the prefetcher; the
read alone (rows into one buffer, no thread, no hand-over: the ceiling); a plain loop that copies
slices of the memory map into fresh tensors (the peer). On CUDA the prefetcher is also timed with normalisation on the
device (``normalise_batch`` on the side stream), and the 64x64 grey figure must reach 4x the bare
forward of fer-minixception on an H100 (issue 18: 4 x 125.7k img/s); on CPU nothing is asserted.

Run with ``python -m pytest tests/benchmarks/test_bench_host_pipeline.py -q -s --benchmark-enable``
(N = 32,768 grey / 8,192 RGB images); under the project default ``--benchmark-disable`` it is a
smoke run over 1,024 images that checks the batches' contents.
"""

import time

import numpy as np
import pytest
import torch

from facebench.data.preprocess import InputSpec, normalise_batch
from facebench.engine.decoded import CachedImages
from facebench.engine.prefetch import CachedBatches, Prefetcher

BATCH = 256
DEPTH = 3
SHAPES = {"48x48-grey": (1, 48, 48), "64x64-grey": (1, 64, 64), "112x112-rgb": (3, 112, 112)}
N_FULL = {"48x48-grey": 32768, "64x64-grey": 32768, "112x112-rgb": 8192}
N_SMOKE = 1024
GPU_TARGET_IMG_S = 4 * 125_700  # issue 18: 4x fer-minixception's bare forward (fp32, H100, batch 256)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cache_file(folder, n, shape):
    """A decoded-cache-like ``images.npy``: row i holds (i * 7 + pixel) % 256."""
    path = folder / "images.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *shape))
    row = np.arange(int(np.prod(shape)), dtype=np.int64)
    for start in range(0, n, 4096):
        ids = np.arange(start, min(n, start + 4096), dtype=np.int64)[:, None]
        array[start : start + len(ids)] = ((ids * 7 + row) % 256).astype(np.uint8).reshape(len(ids), *shape)
    array.flush()
    del array
    return path


def _prefetch_pass(path, device, transform=None) -> int:
    """One pass of the prefetcher over the file; returns the images seen (device work finished)."""
    seen = 0
    with Prefetcher(CachedBatches(CachedImages(path), BATCH), device, depth=DEPTH, transform=transform) as batches:
        for x in batches:
            seen += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()  # once, after the loop: the last copies are done
    return seen


def _read_pass(path) -> int:
    """The read alone: every batch's rows into one buffer, in this thread."""
    images = CachedImages(path)
    out = np.empty((BATCH, *images.array.shape[1:]), dtype=np.uint8)
    for start in range(0, len(images), BATCH):
        images.read_into(start, min(len(images), start + BATCH), out)
    return len(images)


def _peer_pass(path) -> int:
    """A plain loop: slices of the memory map copied into fresh tensors."""
    array = np.load(path, mmap_mode="r")
    seen = 0
    for start in range(0, len(array), BATCH):
        seen += torch.tensor(array[start : start + BATCH]).shape[0]
    return seen


def _check_contents(path, device, n):
    got = []
    with Prefetcher(CachedBatches(CachedImages(path), BATCH), device, depth=DEPTH) as batches:
        got = [x.cpu().numpy() for x in batches]
    np.testing.assert_array_equal(np.concatenate(got), np.load(path))
    assert [len(g) for g in got] == [BATCH] * (n // BATCH) + ([n % BATCH] if n % BATCH else [])


def _rates(n, fn, *args, repeats=3):
    """(best img/s of wall-clock time, best img per CPU-second of this process) over ``repeats`` calls;
    the second one reads the work done when other processes share the cores."""
    wall, cpu = 0.0, 0.0
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        assert fn(*args) == n
        wall = max(wall, n / (time.perf_counter() - w0))
        cpu = max(cpu, n / max(time.process_time() - c0, 1e-9))
    return wall, cpu


@pytest.mark.parametrize("name", list(SHAPES))
def test_bench_host_pipeline(benchmark, tmp_path, name):
    full = not benchmark.disabled
    n, device = (N_FULL[name] if full else N_SMOKE), _device()
    path = _cache_file(tmp_path, n, SHAPES[name])
    _check_contents(path, device, n)
    benchmark.pedantic(_prefetch_pass, args=(path, device), rounds=3 if full else 1, iterations=1,
                       warmup_rounds=1 if full else 0)
    rate = {"prefetch": _rates(n, _prefetch_pass, path, device), "read": _rates(n, _read_pass, path),
            "peer": _rates(n, _peer_pass, path)}
    if device.type == "cuda":
        channels = SHAPES[name][0]
        spec = InputSpec(size=SHAPES[name][1:], channels=channels, mean=(0.5,) * channels, std=(0.5,) * channels)
        rate["normalised"] = _rates(n, _prefetch_pass, path, device, lambda b: normalise_batch(b, spec))
    labels = {"prefetch": "prefetcher", "read": "read alone", "peer": "peer (map slices copied)",
              "normalised": "prefetcher + normalisation on the device"}
    print(f"\nhost pipeline {name}, {n} images, batch {BATCH}, depth {DEPTH}, {device.type}: "
          + "; ".join(f"{labels[k]} {w / 1e3:.0f}k img/s ({c / 1e3:.0f}k img per CPU-s)" for k, (w, c) in rate.items()))
    benchmark.extra_info.update(n=n, device=device.type, **{f"{k}_img_s": w for k, (w, _) in rate.items()},
                                **{f"{k}_img_per_cpu_s": c for k, (_, c) in rate.items()})
    if full and device.type == "cuda" and name == "64x64-grey":
        assert rate["prefetch"][0] >= GPU_TARGET_IMG_S, (
            f"host pipeline {rate['prefetch'][0]:.0f} img/s < {GPU_TARGET_IMG_S} (4x fer-minixception's bare "
            f"forward): profile CachedImages.read_into and the prefetch thread")
