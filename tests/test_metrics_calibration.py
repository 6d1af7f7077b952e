"""ECE and reliability bins against hand-worked cases and a naive loop oracle."""

import numpy as np
import pytest

from facebench.metrics.bootstrap import bootstrap_statistic
from facebench.metrics.calibration import (
    ECE_CONVENTION,
    _assign_bins,
    bin_edges,
    bootstrap_ece,
    bootstrap_ece_from_confidence,
    ece_convention,
    ece_from_confidence,
    ece_statistic_from_confidence,
    expected_calibration_error,
    make_ece_statistic,
    reliability_bins,
    reliability_from_confidence,
)

# 8 samples, 3 classes, 5 bins: edges 0, .2, .4, .6, .8, 1; bin b = (b/5, (b+1)/5].
#  i  probs               y  conf  pred  correct  bin
#  0  [0.9, 0.05, 0.05]   0  0.9   0     yes      4
#  1  [0.7, 0.2, 0.1]     1  0.7   0     no       3
#  2  [0.1, 0.6, 0.3]     1  0.6   1     yes      2   (0.6 == 3/5 exactly as float64 -> right-closed -> lower bin)
#  3  [0.5, 0.5, 0.0]     1  0.5   0     no       2   (tie -> first max = class 0)
#  4  [0.2, 0.3, 0.5]     2  0.5   2     yes      2
#  5  [1.0, 0.0, 0.0]     0  1.0   0     yes      4   (confidence 1 -> last bin)
#  6  [0.4, 0.35, 0.25]   0  0.4   0     yes      1   (0.4 == 2/5 -> lower bin)
#  7  [0.3, 0.3, 0.4]     0  0.4   2     no       1
# bin 0: empty
# bin 1: n=2, acc=1/2, conf=0.4          -> |gap| = 0.1
# bin 2: n=3, acc=2/3, conf=1.6/3        -> |gap| = 0.4/3
# bin 3: n=1, acc=0,   conf=0.7          -> |gap| = 0.7
# bin 4: n=2, acc=1,   conf=0.95         -> |gap| = 0.05
# ECE = (2*0.1 + 3*(0.4/3) + 1*0.7 + 2*0.05) / 8 = (0.2 + 0.4 + 0.7 + 0.1) / 8 = 1.4 / 8 = 0.175
HAND_PROBS = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.5, 0.5, 0.0],
        [0.2, 0.3, 0.5],
        [1.0, 0.0, 0.0],
        [0.4, 0.35, 0.25],
        [0.3, 0.3, 0.4],
    ]
)
HAND_Y = np.array([0, 1, 1, 1, 2, 0, 0, 0])


def test_hand_worked_ece():
    assert expected_calibration_error(HAND_Y, HAND_PROBS, n_bins=5) == pytest.approx(0.175, abs=1e-15)


def test_hand_worked_reliability_bins():
    rb = reliability_bins(HAND_Y, HAND_PROBS, n_bins=5)
    np.testing.assert_array_equal(rb["edges"], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_array_equal(rb["counts"], [0, 2, 3, 1, 2])
    assert rb["counts"].dtype == np.int64
    np.testing.assert_allclose(rb["accuracy"], [np.nan, 0.5, 2 / 3, 0.0, 1.0], equal_nan=True, atol=1e-15)
    np.testing.assert_allclose(rb["confidence"], [np.nan, 0.4, 1.6 / 3, 0.7, 0.95], equal_nan=True, atol=1e-15)


def _naive_ece(y, probs, n_bins):
    """Independent oracle: explicit loop, lo < conf <= hi with lo = b/n, conf==0 in bin 0."""
    conf = [max(row) for row in probs.tolist()]
    pred = [row.index(max(row)) for row in probs.tolist()]  # first max
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c == 0.0)]
        if not members:
            continue
        acc = sum(pred[i] == y[i] for i in members) / len(members)
        mc = sum(conf[i] for i in members) / len(members)
        total += len(members) / len(conf) * abs(acc - mc)
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_ece_matches_naive_loop(seed, n_bins):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(4, 0.5), size=300)
    y = rng.integers(0, 4, size=300)
    assert expected_calibration_error(y, probs, n_bins) == pytest.approx(_naive_ece(y, probs, n_bins), abs=1e-14)


def test_bin_edges_exact_and_float_literals():
    # 4 bins: edges 0.25, 0.5, 0.75 are exact binary fractions
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0], [0.75, 0.25, 0, 0], [1.0, 0, 0, 0]])
    rb = reliability_bins([0, 0, 0, 0], probs, n_bins=4)
    np.testing.assert_array_equal(rb["counts"], [1, 1, 1, 1])  # each confidence closes its bin
    # 15 bins: edge 9/15 computed as 9/15 in float64 equals the literal 0.6, so 0.6 lands in bin 8 = (8/15, 9/15]
    assert bin_edges(15)[9] == 0.6
    probs15 = np.array([[0.6, 0.4], [1.0, 0.0], [0.6000000000000001, 0.3999999999999999]])
    rb = reliability_bins([0, 0, 0], probs15, n_bins=15)
    assert rb["counts"][8] == 1 and rb["counts"][9] == 1 and rb["counts"][14] == 1
    # 5 bins: literal 0.2 == 1/5 -> bin 0
    assert bin_edges(5)[1] == 0.2
    np.testing.assert_array_equal(_assign_bins(np.array([0.0, 0.2, 0.2000000000000001, 1.0]), bin_edges(5)),
                                  [0, 0, 1, 4])


def test_perfect_calibration_is_zero_and_constant_confidence():
    # 10 samples, all with confidence 0.8 in bin 11 of 15 ((11/15, 12/15] = (0.733, 0.8]); 8 correct -> ECE 0
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(y, probs) == pytest.approx(0.0, abs=1e-15)
    # all correct -> ECE = |1 - 0.8| = 0.2
    assert expected_calibration_error(np.zeros(10, int), probs) == pytest.approx(0.2, abs=1e-15)


def test_convention_string():
    assert ece_convention(15) == "bins=15,equal-width,right-closed,conf=max-prob"
    assert ECE_CONVENTION == ece_convention(15)
    assert ece_convention(10).startswith("bins=10,")


def test_make_ece_statistic_matches_per_resample_ece():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3), size=60)
    y = rng.integers(0, 3, size=60)
    idx = rng.integers(0, 60, size=(25, 60))
    stat = make_ece_statistic(y, probs, n_bins=10)
    got = stat(idx)
    expected = [expected_calibration_error(y[i], probs[i], 10) for i in idx]
    np.testing.assert_allclose(got, expected, atol=1e-14)
    # works for other resample sizes (cluster bootstrap)
    np.testing.assert_allclose(stat(idx[:, :17]), [expected_calibration_error(y[i], probs[i], 10) for i in idx[:, :17]],
                               atol=1e-14)
    np.testing.assert_allclose(stat(np.arange(60)[None]), [expected_calibration_error(y, probs, 10)], atol=1e-14)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y_true=[0, 1], probs=[[0.5, 0.5]]), "inconsistent"),
        (dict(y_true=[0], probs=[[0.5, 0.6]]), "sum to 1"),
        (dict(y_true=[0], probs=[[np.nan, 1.0]]), "NaN"),
        (dict(y_true=[3], probs=[[0.5, 0.5]]), "out of range"),
        (dict(y_true=[0], probs=[[0.5, 0.5]], n_bins=0), "n_bins"),
        (dict(y_true=[], probs=np.zeros((0, 2))), "empty"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(**kwargs)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 5, 7, 10, 15, 20, 33, 100])
def test_assign_bins_matches_searchsorted(n_bins):
    """The arithmetic binning equals the edge search (oracle: searchsorted over the edges), edges included."""
    rng = np.random.default_rng(n_bins)
    e = bin_edges(n_bins)
    literals = np.array([float(f"{b / n_bins:.17g}") for b in range(n_bins + 1)] +
                        [float(f"{b / n_bins:.3g}") for b in range(n_bins + 1)])
    x = np.concatenate([rng.random(20_000), e, np.nextafter(e, 2.0), np.nextafter(e, -1.0), literals,
                        np.linspace(0, 1, 10_001), [0.0, 1.0, -0.5, 1.5, 1e300, -1e300, 5e-324]])
    oracle = np.clip(np.searchsorted(e, x, side="left") - 1, 0, n_bins - 1)
    np.testing.assert_array_equal(_assign_bins(x, e), oracle)


def test_reliability_from_confidence_checks_its_input():
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite"):
            reliability_from_confidence([0.5, bad], [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        reliability_from_confidence([0.5, 0.7], [1, 0.5])
    with pytest.raises(ValueError, match="same length"):
        reliability_from_confidence([0.5, 0.7], [1])
    # bool and 0/1 floats give the same bins
    a = reliability_from_confidence([0.5, 0.7, 0.9], [True, False, True], 5)
    b = reliability_from_confidence([0.5, 0.7, 0.9], [1.0, 0.0, 1.0], 5)
    for k in ("counts", "accuracy", "confidence"):
        np.testing.assert_array_equal(a[k], b[k])


def _index_bootstrap_ece(conf, correct, n_bins, b, seed):
    """Oracle: ECE of explicit index resamples (the generic bootstrap over make_ece_statistic's formula)."""
    return bootstrap_statistic(ece_statistic_from_confidence(conf, correct, n_bins), conf.size, b, seed=seed)


def _calibration_data(n, seed):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, size=n)
    correct = rng.random(n) < conf ** 1.5  # over-confident model
    return conf, correct


def test_bootstrap_ece_exact_law_matches_index_bootstrap():
    # 300 samples -> at most 1024 distinct (bin, correct, confidence) triples: the count law is exact
    conf, correct = _calibration_data(300, 0)
    ece = bootstrap_ece_from_confidence(conf, correct, 10, n_resamples=4000, seed=0)
    naive = _index_bootstrap_ece(conf, correct, 10, 4000, seed=1)
    assert ece.shape == (4000,) and np.isfinite(ece).all()
    assert ece.mean() == pytest.approx(naive.mean(), rel=0.02)
    assert ece.std() == pytest.approx(naive.std(), rel=0.06)
    np.testing.assert_allclose(np.percentile(ece, [2.5, 50, 97.5]), np.percentile(naive, [2.5, 50, 97.5]), rtol=0.04)


def test_bootstrap_ece_with_few_strata_matches_index_bootstrap():
    # 4000 samples, 40 strata in all: within-stratum spread drawn from the normal law
    conf, correct = _calibration_data(4000, 1)
    ece = bootstrap_ece_from_confidence(conf, correct, 15, n_resamples=3000, seed=0, max_strata=40)
    naive = _index_bootstrap_ece(conf, correct, 15, 3000, seed=1)
    assert ece.mean() == pytest.approx(naive.mean(), rel=0.02)
    assert ece.std() == pytest.approx(naive.std(), rel=0.08)
    lo, hi = np.percentile(ece, [2.5, 97.5])
    nlo, nhi = np.percentile(naive, [2.5, 97.5])
    assert abs(lo - nlo) < 0.1 * (nhi - nlo) and abs(hi - nhi) < 0.1 * (nhi - nlo)
    assert lo < ece_from_confidence(conf, correct, 15) < hi


def test_bootstrap_ece_single_bin_hand_case():
    # one bin: a resample's ECE is |#correct - sum conf| / N; with one confidence value c it is |k/N - c|,
    # k ~ Binomial(N, accuracy): exact law
    n, c = 200, 0.7
    correct = np.arange(n) < 150  # accuracy 0.75
    ece = bootstrap_ece_from_confidence(np.full(n, c), correct, 1, n_resamples=20_000, seed=3)
    k = np.random.default_rng(4).binomial(n, 0.75, size=20_000)
    assert ece.mean() == pytest.approx(np.abs(k / n - c).mean(), rel=0.01)
    assert np.all(np.isin(np.round(ece * n + c * n), np.arange(n + 1)))  # |k - 140| for an integer k


def test_bootstrap_ece_seeded_and_from_probs():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(4), size=2000)
    y = rng.integers(0, 4, size=2000)
    a = bootstrap_ece(y, probs, 15, n_resamples=200, seed=7)
    np.testing.assert_array_equal(a, bootstrap_ece(y, probs, 15, n_resamples=200, seed=7))
    assert not np.array_equal(a, bootstrap_ece(y, probs, 15, n_resamples=200, seed=8))
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    np.testing.assert_array_equal(a, bootstrap_ece_from_confidence(conf, correct, 15, n_resamples=200, seed=7))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ece(y, probs, n_resamples=0)
