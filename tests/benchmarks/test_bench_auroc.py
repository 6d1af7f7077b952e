"""Benchmark: AUROC on 10^6 scores (500k known, 500k unknown), ours vs scikit-learn.

Run with ``python -m pytest tests/benchmarks -q --benchmark-enable`` (the project
default ``--benchmark-disable`` runs each body once as a plain test).
"""


import numpy as np
from sklearn.metrics import roc_auc_score

from facebench.metrics.ood import auroc

N_KNOWN = 500_000
N_UNKNOWN = 500_000


def _data(seed=0):
    rng = np.random.default_rng(seed)
    known = rng.normal(0.5, 1.0, N_KNOWN)
    unknown = rng.normal(0.0, 1.0, N_UNKNOWN)
    labels = np.r_[np.ones(N_KNOWN), np.zeros(N_UNKNOWN)]
    return known, unknown, labels, np.r_[known, unknown]


def test_bench_auroc_facebench(benchmark):
    known, unknown, labels, scores = _data()
    value = benchmark(auroc, known, unknown)
    assert abs(value - roc_auc_score(labels, scores)) < 1e-12
    assert 0.63 < value < 0.65  # Phi(0.5 / sqrt(2)) ~ 0.638


def test_bench_auroc_sklearn(benchmark):
    known, unknown, labels, scores = _data()
    value = benchmark(roc_auc_score, labels, scores)
    assert abs(value - auroc(known, unknown)) < 1e-12


def test_auroc_speed_ratio_report(best_of):
    """Prints the speed ratio only; timing is asserted nowhere (unit tests stay deterministic)."""
    known, unknown, labels, scores = _data()
    ours = best_of(auroc, known, unknown)
    theirs = best_of(roc_auc_score, labels, scores)
    print(f"\nauroc 1e6 scores: facebench {ours * 1e3:.1f} ms, sklearn {theirs * 1e3:.1f} ms, "
          f"ratio ours/sklearn {ours / theirs:.2f}")
    assert abs(auroc(known, unknown) - roc_auc_score(labels, scores)) < 1e-12
