"""Paired statistics of the regression gate: exact McNemar vs scipy's binomial test, the paired bootstrap
(fast path = generic path), Holm by hand and by brute force."""

import itertools

import numpy as np
import pytest
from scipy.stats import binomtest

from facebench.metrics.paired import (classification_metric, holm, mcnemar_exact, paired_bootstrap,
                                      paired_bootstrap_classification)


@pytest.mark.parametrize("b,c", [(0, 0), (5, 5), (10, 2), (2, 10), (30, 0), (120, 95)])
def test_mcnemar_vs_binomtest(b, c):
    # base right/new wrong b times, base wrong/new right c times, plus 50 concordant pairs of each kind
    base = np.array([1] * b + [0] * c + [1] * 50 + [0] * 50, bool)
    new = np.array([0] * b + [1] * c + [1] * 50 + [0] * 50, bool)
    res = mcnemar_exact(base, new)
    assert (res["b"], res["c"]) == (b, c)
    if b + c == 0:
        assert res["p_value"] == 1.0 and res["p_worse"] == 1.0
    else:
        assert res["p_value"] == pytest.approx(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue, rel=1e-12)
        assert res["p_worse"] == pytest.approx(binomtest(b, b + c, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert res["difference"] == pytest.approx((c - b) / len(base))
    # worked case: b=10, c=2 -> P(X <= 2 | n=12) = (1 + 12 + 66) / 4096 = 79/4096; two-sided 158/4096
    if (b, c) == (10, 2):
        assert res["p_value"] == pytest.approx(158 / 4096)
        assert res["p_worse"] == pytest.approx(79 / 4096)


def test_paired_bootstrap_paths_agree_and_behave():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    base = np.where(rng.random(300) < 0.8, y, rng.integers(0, 4, 300))
    new = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    for metric in ("accuracy", "mean_class_accuracy", "macro_f1"):
        fast = paired_bootstrap_classification(y, base, new, 4, metric, n_resamples=200, seed=3)
        slow = paired_bootstrap(classification_metric(metric, 4), y, base, new, n_resamples=200, seed=3)
        assert fast["difference"] == pytest.approx(slow["difference"], abs=1e-12)
        assert fast["ci"] == pytest.approx(slow["ci"], abs=1e-12)
        assert fast["p_worse"] == slow["p_worse"]
    same = paired_bootstrap_classification(y, base, base, 4, "mean_class_accuracy", n_resamples=100)
    assert same["difference"] == 0 and same["ci"] == (0.0, 0.0)
    perfect = paired_bootstrap_classification(y, y, base, 4, "accuracy", n_resamples=500)
    assert perfect["p_worse"] == pytest.approx(1 / 501) and perfect["ci"][1] < 0


def test_holm():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.random(rng.integers(1, 8))
        m = len(p)
        order = np.argsort(p)
        want = np.empty(m)
        running = 0.0
        for rank, i in enumerate(order):  # step-down by hand
            running = max(running, min(1.0, (m - rank) * p[i]))
            want[i] = running
        assert holm(p) == pytest.approx(want)
    with pytest.raises(ValueError):
        holm([0.5, 1.5])
    assert list(itertools.chain(holm([]))) == []
