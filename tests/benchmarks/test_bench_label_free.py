"""Benchmark: the label-free meta-benchmark's two costs (issue 18 item 4), each against the code it replaced.

* The mixture fits of the demo's 80 test sets: ``fit_gmm_1d_many`` (the EM runs of all sets of one length as one
  array, two-column logsumexp without scipy's per-call overhead) vs one set and one run at a time with
  ``scipy.special.logsumexp`` (``tests/_gmm_reference.py``, the code as first written); the fits are the same bits.
* The MLP map (an L-BFGS MLP, fitted 10 times per task): on one BLAS thread, as the protocol now runs it, vs the
  default threads; ``NonLinearMap``'s own run of scikit-learn's arithmetic vs ``MLPRegressor`` itself (the code it
  replaced); the 10 leave-one-family-out folds in worker processes vs in this process. The same predictions, bit
  for bit, in every pair.
* The whole demo-shaped task (``LabelFreeProtocol.evaluate`` on synthetic logits: 7 classes, 3 OOD sources,
  3 shifts, 8 sets per source of 200 and 600 scores, 1,000 bootstrap resamples).

Run with ``python -m pytest tests/benchmarks/test_bench_label_free.py -q -s --benchmark-enable``; the project
default ``--benchmark-disable`` runs each body once as a plain test. The reports print wall and CPU seconds.
"""

import resource
import time
import warnings

import numpy as np
from _gmm_reference import reference_fit
from threadpoolctl import threadpool_limits

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.metrics import label_free as lf
from facebench.metrics.meta_eval import NonLinearMap, leave_one_family_out
from facebench.metrics.ood import auroc
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.label_free import LabelFreeProtocol

CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def _score_sets(seed=0):
    """80 unlabelled mixtures as in the demo (sizes 200 and 600, OOD fractions 0.1-0.75, varied separation)
    and the true AUROC of each."""
    rng = np.random.default_rng(seed)
    sets, truth = [], []
    for k in range(80):
        size, frac = (200, 600)[(k // 4) % 2], (0.1, 0.25, 0.5, 0.75)[k % 4]
        m = int(round(size * frac))
        known, unknown = rng.beta(5, 1.5, size - m), rng.beta(2, 2 + rng.uniform(0, 3), m)
        sets.append(np.r_[known, unknown])
        truth.append(auroc(known, unknown))
    return sets, np.array(truth)


def _same_fits(a, b):
    return all(np.asarray(x[k]).tobytes() == np.asarray(y[k]).tobytes() for x, y in zip(a, b) for k in x)


def test_bench_gmm_batched(benchmark):
    sets, _ = _score_sets()
    fits = benchmark(lf.fit_gmm_1d_many, sets)
    assert len(fits) == 80 and _same_fits(fits[:3], [reference_fit(x) for x in sets[:3]])


def test_bench_gmm_set_by_set_scipy(benchmark):
    sets, _ = _score_sets()
    fits = benchmark(lambda: [reference_fit(x) for x in sets])
    assert _same_fits(fits[-3:], lf.fit_gmm_1d_many(sets[-3:]))


def _mlp_problem(sets, truth):
    """One leave-one-family-out fold of the MLP map: the score features of 72 sets and their true AUROC."""
    _, feats = lf.indicator_table(sets[8:])
    return feats, truth[8:]


def _mlp_fit(x, y, one_thread):
    if one_thread:
        with threadpool_limits(limits=1, user_api="blas"):
            return NonLinearMap(seed=0).fit(x, y).predict(x)
    return NonLinearMap(seed=0).fit(x, y).predict(x)


def _cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of its finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _best(fn, *args, repeats=3):
    """(wall, cpu) seconds, fewest of ``repeats`` calls (CPU counts every thread and worker process)."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), _cpu_seconds()
        fn(*args)
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, _cpu_seconds() - c)
    return wall, cpu


def _meta_set():
    """The 80 sets' score features and true AUROC, in 10 families of 8 sets (the demo task's shape)."""
    sets, truth = _score_sets()
    return lf.indicator_table(sets)[1], truth, np.arange(80) // 8


def _sklearn_lofo(feats, truth, families):
    """The MLP map's leave-one-family-out predictions as first written: sklearn's MLPRegressor on the
    standardised sets (NonLinearMap's scalers), one fold after the other."""
    from sklearn.neural_network import MLPRegressor

    out = np.empty(len(truth))
    for f in np.unique(families):
        test = families == f
        scaled = NonLinearMap(seed=0)
        scaled.fit(feats[~test], truth[~test])  # only its scalers are used
        z = (feats[~test] - scaled.x_mean_) / scaled.x_scale_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLPRegressor(hidden_layer_sizes=(16,), alpha=1e-3, max_iter=5000, random_state=0, solver="lbfgs")
            model.fit(z, (truth[~test] - scaled.y_mean_) / scaled.y_scale_)
        out[test] = model.predict((feats[test] - scaled.x_mean_) / scaled.x_scale_) * scaled.y_scale_ + scaled.y_mean_
    return out


def _lofo(feats, truth, families, processes):
    with threadpool_limits(limits=1, user_api="blas"):
        return leave_one_family_out(feats, truth, families, lambda: NonLinearMap(seed=0), processes=processes)


def test_bench_mlp_map_folds(benchmark):
    """The 10 folds of the demo-shaped MLP map, as the protocol fits them (worker processes on Linux)."""
    feats, truth, families = _meta_set()
    pred = benchmark(_lofo, feats, truth, families, None)
    assert pred.tobytes() == _lofo(feats, truth, families, 0).tobytes()


def test_label_free_parts_ratio_report():
    """Prints the figures only; timing is asserted nowhere (unit tests stay deterministic)."""
    sets, truth = _score_sets()
    assert _same_fits(lf.fit_gmm_1d_many(sets), [reference_fit(x) for x in sets])
    ours, peer = _best(lf.fit_gmm_1d_many, sets, repeats=2), _best(lambda: [reference_fit(x) for x in sets], repeats=2)
    print(f"\nmixture fits of 80 test sets: batched {ours[0]:.2f} s wall ({ours[1]:.2f} s CPU); one set and run at a "
          f"time with scipy's logsumexp {peer[0]:.2f} s ({peer[1]:.2f} s CPU); ratio {peer[0] / ours[0]:.1f}x wall")
    x, y = _mlp_problem(sets, truth)
    assert _mlp_fit(x, y, True).tobytes() == _mlp_fit(x, y, False).tobytes()
    one, default = _best(_mlp_fit, x, y, True, repeats=2), _best(_mlp_fit, x, y, False, repeats=2)
    print(f"MLP map fit (72 sets x 15 features): one BLAS thread {one[0]:.2f} s wall ({one[1]:.2f} s CPU); default "
          f"threads {default[0]:.2f} s ({default[1]:.2f} s CPU); ratio {default[0] / one[0]:.1f}x wall")
    feats, truth, families = _meta_set()
    with threadpool_limits(limits=1, user_api="blas"):
        peer_pred = _sklearn_lofo(feats, truth, families)
    here_pred, pool_pred = _lofo(feats, truth, families, 0), _lofo(feats, truth, families, None)
    assert peer_pred.tobytes() == here_pred.tobytes() == pool_pred.tobytes()
    with threadpool_limits(limits=1, user_api="blas"):
        peer = _best(_sklearn_lofo, feats, truth, families, repeats=2)
    here, pool = (_best(_lofo, feats, truth, families, p, repeats=2) for p in (0, None))
    print(f"MLP map, 10 leave-one-family-out folds: MLPRegressor {peer[0]:.2f} s wall ({peer[1]:.2f} s CPU); "
          f"NonLinearMap in this process {here[0]:.2f} s ({here[1]:.2f} s CPU), ratio {peer[0] / here[0]:.1f}x wall; "
          f"in worker processes {pool[0]:.2f} s ({pool[1]:.2f} s CPU), ratio {peer[0] / pool[0]:.1f}x wall")


def _split(name, n, logits, labels=None):
    ds = Dataset(name, "test", np.array([f"{name}{i}" for i in range(n)]), CLASSES,
                 None if labels is None else np.asarray(labels), ArrayImages(np.zeros((n, 1, 1, 3), np.uint8)))
    return ds, Predictions(ds.ids, {"expression": np.asarray(logits)})


def _labelled(name, n, strength, rng):
    y = rng.integers(0, 7, n)
    return _split(name, n, rng.normal(size=(n, 7)) + strength * np.eye(7)[y], [CLASSES[i] for i in y])


def _demo_shaped_task(seed=0):
    rng = np.random.default_rng(seed)
    task = _labelled("id", 1000, 3.0, rng)
    extras = {"ood:compound": _split("compound", 1000, rng.normal(size=(1000, 7)) + 1.2 * np.eye(7)[rng.integers(0, 7, 1000)]),
              "ood:noise": _split("noise", 300, rng.normal(size=(300, 7)) * 0.3),
              "ood:lowres": _split("lowres", 1000, rng.normal(size=(1000, 7)) + 2.0 * np.eye(7)[rng.integers(0, 7, 1000)]),
              "fit": _labelled("fit", 1000, 3.0, rng)}
    for name, strength in (("blur", 2.0), ("noise", 1.5), ("occlusion", 1.0)):
        extras[f"shift:{name}"] = _labelled(name, 1000, strength, rng)
    ctx = EvalContext(task[0], task[1], "expression", CLASSES, n_resamples=1000,
                      extras={k: ExtraSplit(*v) for k, v in extras.items()})
    proto = LabelFreeProtocol(
        fit_split="val", sets_per_source=8, sizes=[200, 600],
        ood_sources=[{"dataset": "x", "split": "test", "name": n} for n in ("compound", "noise", "lowres")],
        shifts=[{"dataset": "x", "split": "test", "name": n} for n in ("blur", "noise", "occlusion")])
    return proto, ctx


def test_label_free_task_report():
    """The whole demo-shaped task once (wall and CPU seconds); its records are checked for shape only."""
    proto, ctx = _demo_shaped_task()
    w, c = time.perf_counter(), time.process_time()
    res = proto.evaluate(ctx)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    assert len(res.details["sets"]) == 8 * (3 + 7) and len(res.details["accuracy"]["sets"]) == 8 * 4
    print(f"\nlabel-free task, demo-shaped (80 AUROC sets, 32 accuracy sets, 1,000 resamples): {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU")
