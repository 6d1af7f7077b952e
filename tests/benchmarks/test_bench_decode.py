"""Benchmark: decode + preprocess throughput, ``prepare_uint8(images.load(i), spec)`` over a set of images.

Two image sources: the first 1,000 FER2013 PrivateTest JPEG files (``fer2013-images``, split ``test``,
in the loader's order; 48x48 grey; skipped when ../shared/data is absent), decoded with Pillow by
``FileImages.load``; and an in-memory synthetic ``ArrayImages`` source of the same size and shape
(1,000 random 48x48 grey uint8 images), so the difference between the two is the JPEG decode (file
open + Pillow). Two input specs: fer-minixception's (64x64 grey, the class attribute, so the
weights are not needed) and a 112x112 RGB spec (``InputSpec()``, grey repeated to 3 channels).
Normalisation (``normalise_batch``) is per batch on the device and is not included.

Throughput is per core: torch runs with one intra-op thread while these tests time (restored after).
``test_decode_throughput_report`` prints images/s for every source x spec (best of 3; no timing
assertion, so unit test runs stay deterministic).

Run with ``python -m pytest tests/benchmarks/test_bench_decode.py -q -s --benchmark-enable`` (the
project default ``--benchmark-disable`` runs each body once as a plain test).
"""


import numpy as np
import pytest
import torch

from facebench.data.images import ArrayImages
from facebench.data.preprocess import InputSpec, prepare_uint8
from facebench.models.fer_minixception import FerMiniXceptionAdapter

N_IMAGES = 1000
SPECS = {
    "fer-minixception-64x64-grey": FerMiniXceptionAdapter.input_spec,
    "112x112-rgb": InputSpec(size=(112, 112), channels=3),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Per-core numbers: one torch intra-op thread (prepare_uint8's resize) while timing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _synthetic():
    return ArrayImages(np.random.default_rng(0).integers(0, 256, size=(N_IMAGES, 48, 48), dtype=np.uint8))


def _fer2013_files(root):
    from facebench.data.fer2013 import FER2013Images

    images = FER2013Images(path=root / "fer2013_images").load("test").images
    assert len(images) >= N_IMAGES
    return images.subset(np.arange(N_IMAGES))


def _decode_all(images, spec):
    return [prepare_uint8(images.load(i), spec) for i in range(len(images))]


def _check(out, spec):
    assert len(out) == N_IMAGES
    assert all(t.dtype == torch.uint8 and tuple(t.shape) == (spec.channels, *spec.size) for t in out)


def _bench(benchmark, images, spec, source):
    out = benchmark(_decode_all, images, spec)
    _check(out, spec)
    if benchmark.stats is not None and not benchmark.disabled:
        benchmark.extra_info.update(source=source, n=N_IMAGES,
                                    images_per_s_min=N_IMAGES / benchmark.stats.stats.min,
                                    images_per_s_mean=N_IMAGES / benchmark.stats.stats.mean)


@pytest.mark.parametrize("spec_name", list(SPECS))
def test_bench_decode_synthetic_array(benchmark, spec_name):
    _bench(benchmark, _synthetic(), SPECS[spec_name], "synthetic-48x48-grey")


@pytest.mark.realdata
@pytest.mark.parametrize("spec_name", list(SPECS))
def test_bench_decode_fer2013_privatetest_jpeg(benchmark, spec_name, shared_data):
    _bench(benchmark, _fer2013_files(shared_data), SPECS[spec_name], "fer2013-privatetest-jpeg")


def test_decode_throughput_report(shared_data_or_none, best_of):
    """Prints images/s (one thread) for each source x spec; timing is asserted nowhere."""
    sources = {"synthetic 48x48 grey (in memory)": _synthetic()}
    if shared_data_or_none is not None:
        sources["FER2013 PrivateTest JPEG files"] = _fer2013_files(shared_data_or_none)
    lines = []
    for source, images in sources.items():
        for spec_name, spec in SPECS.items():
            _check(_decode_all(images, spec), spec)  # warm-up (file cache, first-call allocations)
            seconds = best_of(_decode_all, images, spec)
            lines.append(f"  {source:34s} -> {spec_name:28s}: {N_IMAGES / seconds:8.0f} images/s "
                         f"({seconds / N_IMAGES * 1e6:.0f} us/image)")
    print(f"\ndecode + prepare_uint8, {N_IMAGES} images, 1 thread (per core):\n" + "\n".join(lines))


@pytest.fixture
def shared_data_or_none(request):
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None
