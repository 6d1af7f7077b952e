"""Benchmark (issue 18): OOD metrics against pytorch-ood, ROC points against scikit-learn, and the open-set
evaluation with 1,000 bootstrap resamples at 10^4 .. 10^6 samples.

* ``test_bench_ood_metrics_*``: ``ood_metrics`` (AUROC, AUPR in/out x AP/trapezoid, FPR@95 x 4 conventions,
  detection error) on 10^6 scores (500k known ~ N(0.5, 1), 500k unknown ~ N(0, 1)) vs pytorch-ood's
  ``OODMetrics`` (AUROC, AUTC, AUPR-IN/OUT, FPR95TPR on the outlier score ``-s``). pytorch-ood is a
  benchmark-only peer (``pip install --no-deps pytorch-ood``); its package ``__init__`` imports torchvision,
  so without torchvision its ``metrics`` subpackage (torch only) is imported on its own, unchanged.
* ``test_bench_roc_points_*``: ``roc_curve_points`` vs ``sklearn.metrics.roc_curve(drop_intermediate=False)``.
* ``test_ood_speed_ratio_report``: both pairs timed alternately in one process (best of 5), ratios printed
  (pytorch-ood also without its AUTC, the one metric facebench does not compute).
* ``test_open_set_scaling_report``: ``OpenSetProtocol.evaluate`` (MSP of 7-class logits, 10% of the samples
  from an 8th class the head lacks, so ~9:1 known:unknown) with 1,000 resamples at n = 10^4, 10^5, 10^6,
  each in a fresh subprocess (this file run with ``--child N``): time = best of 3 (2 at 10^6), also split
  into the bootstrap and the rest; memory = the ``tracemalloc`` peak of one evaluation and, on Linux, the
  resident high-water mark over the first evaluation (reset after the inputs are built) minus the idle
  process; fitted exponent = slope of log(time) on log(n). Only the memory target is asserted; times and
  ratios are printed (they depend on the machine's load), with the load average.

Run with ``python -m pytest tests/benchmarks/test_bench_ood.py -q -s --benchmark-enable`` (the project
default ``--benchmark-disable`` runs each body once as a plain test).
"""

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _peers import pytorch_ood_metrics
from _procmem import fit_exponent, reset_peak, status_mb
import pytest
from sklearn.metrics import roc_curve

from facebench.metrics.ood import ood_metrics, roc_curve_points

N_KNOWN = N_UNKNOWN = 500_000
N_RESAMPLES = 1000
SIZES = (10_000, 100_000, 1_000_000)
CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
TARGET_OOD_RATIO, TARGET_ROC_RATIO, TARGET_SECONDS, TARGET_MB, TARGET_EXPONENT = 0.5, 0.5, 5.0, 500.0, 1.1


def _scores(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.5, 1.0, N_KNOWN), rng.normal(0.0, 1.0, N_UNKNOWN)


def _pytorch_ood_metrics():
    """pytorch-ood's ``metrics`` subpackage (skips the test when pytorch-ood is not installed)."""
    found = pytorch_ood_metrics()
    if found is None:
        pytest.skip("peer not installed: pip install --no-deps pytorch-ood")
    return found[0]


def _peer_calls():
    """(all of OODMetrics, OODMetrics' metrics without AUTC), each a no-argument call."""
    import torch

    metrics = _pytorch_ood_metrics()
    known, unknown = _scores()
    outlier = torch.from_numpy(-np.r_[known, unknown])
    labels = torch.from_numpy(np.r_[np.zeros(N_KNOWN, np.int64), -np.ones(N_UNKNOWN, np.int64)])

    def full():
        return metrics.OODMetrics().update(outlier, labels).compute()

    def without_autc():
        parts = [metrics.AUROC(), metrics.AUPR("id"), metrics.AUPR("ood"), metrics.FPRAtTPR(0.95)]
        return metrics.MetricCollection(parts).update(scores=outlier, labels=labels).compute()

    return full, without_autc


def _check_against_peer(ours: dict, theirs: dict) -> None:
    assert abs(ours["auroc"] - theirs["AUROC"]) < 1e-12
    assert abs(ours["fpr@tpr95[pos=unknown,rule=first]"] - theirs["FPR95TPR"]) < 1e-12
    assert abs(ours["aupr[pos=unknown,method=trapezoid]"] - theirs["AUPR-OUT"]) < 1e-9
    assert abs(ours["aupr[pos=known,method=trapezoid]"] - theirs["AUPR-IN"]) < 1e-9


def _roc_inputs():
    known, unknown = _scores()
    return known, unknown, np.r_[np.ones(N_KNOWN), np.zeros(N_UNKNOWN)], np.r_[known, unknown]


def test_bench_ood_metrics_facebench(benchmark):
    known, unknown = _scores()
    m = benchmark(ood_metrics, known, unknown)
    assert 0.63 < m["auroc"] < 0.65 and len(m) == 10


def test_bench_ood_metrics_pytorch_ood(benchmark):
    full, _ = _peer_calls()
    theirs = benchmark(full)
    _check_against_peer(ood_metrics(*_scores()), theirs)


def test_bench_roc_points_facebench(benchmark):
    known, unknown, _, _ = _roc_inputs()
    fpr, tpr, thr = benchmark(roc_curve_points, known, unknown)
    assert fpr.shape == tpr.shape == thr.shape and fpr[-1] == tpr[-1] == 1.0


def test_bench_roc_points_sklearn(benchmark):
    known, unknown, labels, scores = _roc_inputs()
    fpr, tpr, thr = benchmark(roc_curve, labels, scores, drop_intermediate=False)
    for ours, theirs in zip(roc_curve_points(known, unknown), (fpr, tpr, thr)):
        np.testing.assert_array_equal(ours, theirs)


def _alternating_best(fns, repeats: int = 5) -> list[float]:
    """Fewest seconds of each of ``fns`` (no arguments), called in turn ``repeats`` times."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""


def test_ood_speed_ratio_report():
    """Prints the times and ratios (best of 5, alternating); asserts only that the values agree."""
    full, without_autc = _peer_calls()
    known, unknown, labels, scores = _roc_inputs()
    ours, theirs, theirs_no_autc = _alternating_best(
        [lambda: ood_metrics(known, unknown), full, without_autc])
    roc_ours, roc_sklearn = _alternating_best(
        [lambda: roc_curve_points(known, unknown), lambda: roc_curve(labels, scores, drop_intermediate=False)])
    print(f"\n{_load()}\nOOD metrics, 1e6 scores: facebench {ours * 1e3:.0f} ms, pytorch-ood OODMetrics "
          f"{theirs * 1e3:.0f} ms: ratio {ours / theirs:.2f} (target <= {TARGET_OOD_RATIO}); against pytorch-ood "
          f"without AUTC {theirs_no_autc * 1e3:.0f} ms: ratio {ours / theirs_no_autc:.2f}")
    print(f"ROC points, 1e6 scores: facebench {roc_ours * 1e3:.0f} ms, scikit-learn roc_curve "
          f"{roc_sklearn * 1e3:.0f} ms: ratio {roc_ours / roc_sklearn:.2f} (target <= {TARGET_ROC_RATIO})")
    _check_against_peer(ood_metrics(known, unknown), full())


# --------------------------------------------------------------------------- open-set evaluation


def _open_set_ctx(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0):
    """EvalContext of n samples: 90% over the 7 classes of the head, 10% "contempt"; float32 logits N(0, 1) with
    +2 on the true class (the unknown samples get no bump)."""
    from facebench.data.dataset import Dataset
    from facebench.data.images import ArrayImages
    from facebench.engine.store import Predictions
    from facebench.protocols.base import EvalContext

    rng = np.random.default_rng(seed)
    classes = CLASSES + ("contempt",)
    y = np.where(rng.random(n) < 0.1, len(CLASSES), rng.integers(0, len(CLASSES), n))
    logits = rng.standard_normal((n, len(CLASSES)), dtype=np.float32)
    known = y < len(CLASSES)
    logits[np.flatnonzero(known), y[known]] += 2.0
    ids = np.char.add("s", np.arange(n).astype(f"U{len(str(n - 1))}"))
    images = ArrayImages(np.zeros((n, 1, 1, 3), np.uint8))
    ds = Dataset("synthetic", "test", ids, classes, np.asarray(classes)[y], images)
    return EvalContext(ds, Predictions(ids, {"expression": logits}), "expression", CLASSES, seed=0,
                       n_resamples=n_resamples)


def _evaluate(ctx):
    from facebench.protocols.open_set import OpenSetProtocol

    return OpenSetProtocol().evaluate(ctx)


def _child(n: int) -> dict:
    """Measure one size in this (fresh) process; see the module docstring."""
    _evaluate(_open_set_ctx(200))  # imports and first-call costs
    idle = status_mb("VmRSS")
    ctx, no_boot = _open_set_ctx(n), _open_set_ctx(n, n_resamples=0)
    hwm, times, cpu = None, [], []
    for _ in range(2 if n >= 10**6 else 3):
        reset = not times and reset_peak()
        t0, c0 = time.perf_counter(), time.process_time()
        res = _evaluate(ctx)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if reset:
            hwm = status_mb("VmHWM")
    t0 = time.perf_counter()
    _evaluate(no_boot)
    rest = time.perf_counter() - t0
    tracemalloc.start()
    _evaluate(ctx)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    auroc = next(r for r in res.records if r.metric == "auroc")
    return {"n": n, "seconds": min(times), "cpu_seconds": min(cpu), "without_bootstrap": rest, "traced_mb": traced,
            "rss_peak_mb": None if hwm is None or idle is None else hwm - idle, "auroc": auroc.value,
            "ci": list(auroc.ci)}


def test_open_set_scaling_report():
    rows = []
    for n in SIZES:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(n)], capture_output=True,
                             text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    exponent = fit_exponent([r["n"] for r in rows], [r["seconds"] for r in rows])
    print(f"\n{_load()}\nopen-set evaluation (msp), {N_RESAMPLES} bootstrap resamples (targets at 1e6: <= "
          f"{TARGET_SECONDS} s, <= {TARGET_MB:.0f} MB; exponent <= {TARGET_EXPONENT})")
    print("| n | time s | CPU s | without bootstrap s | traced peak MB | RSS peak - idle MB (inputs included) |")
    for r in rows:
        rss = "n/a" if r["rss_peak_mb"] is None else f"{r['rss_peak_mb']:.0f}"
        print(f"| {r['n']:,} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['without_bootstrap']:.2f} | "
              f"{r['traced_mb']:.0f} | {rss} |")
    print(f"fitted exponent of time in n: {exponent:.2f}")
    for r in rows:
        assert r["ci"][0] < r["auroc"] < r["ci"][1]
    assert rows[-1]["traced_mb"] < TARGET_MB


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    print(json.dumps(_child(int(sys.argv[2]))))
