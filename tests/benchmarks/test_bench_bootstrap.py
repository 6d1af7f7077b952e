"""Benchmark: 1000-resample bootstrap of accuracy and mean class accuracy on 100k samples, 7 classes.

Run with ``python -m pytest tests/benchmarks -q --benchmark-enable`` (the project
default ``--benchmark-disable`` runs the body once as a plain test).
"""

import numpy as np

from facebench.metrics.bootstrap import bootstrap_confusion_matrices, nan_fraction, percentile_interval
from facebench.metrics.classification import accuracy, accuracy_from_cm, mean_class_accuracy, mean_class_accuracy_from_cm

N_SAMPLES = 100_000
N_CLASSES = 7
N_RESAMPLES = 1000
# imbalanced, roughly RAF-DB-like class priors
PRIORS = np.array([0.38, 0.22, 0.16, 0.11, 0.05, 0.05, 0.03])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(N_CLASSES, size=N_SAMPLES, p=PRIORS)
    wrong = (y + rng.integers(1, N_CLASSES, size=N_SAMPLES)) % N_CLASSES
    yp = np.where(rng.random(N_SAMPLES) < 0.8, y, wrong)  # ~80% accuracy
    return y, yp


def _bootstrap_acc_and_mca(y, yp):
    cms = bootstrap_confusion_matrices(y, yp, N_CLASSES, n_resamples=N_RESAMPLES, seed=0)
    acc = accuracy_from_cm(cms)
    mca = mean_class_accuracy_from_cm(cms)
    return percentile_interval(acc), percentile_interval(mca), nan_fraction(mca)


def test_bench_bootstrap_accuracy_and_mean_class_accuracy(benchmark):
    y, yp = _data()
    (acc_lo, acc_hi), (mca_lo, mca_hi), nan_frac = benchmark(_bootstrap_acc_and_mca, y, yp)
    acc, mca = accuracy(y, yp), mean_class_accuracy(y, yp, N_CLASSES)
    assert 0.78 < acc < 0.82 and 0.78 < mca < 0.82
    assert acc_lo < acc < acc_hi and mca_lo < mca < mca_hi
    # binomial standard error sqrt(.8*.2/1e5) ~ 0.00126 -> 95% width ~ 0.005
    assert 0.003 < acc_hi - acc_lo < 0.008
    assert acc_hi - acc_lo < mca_hi - mca_lo < 0.03  # small classes make mA noisier
    assert nan_frac == 0.0
