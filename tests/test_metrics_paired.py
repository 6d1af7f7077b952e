"""Paired tests of facebench.metrics.paired: exact McNemar (oracle: scipy.stats.binomtest), the paired
bootstrap (generic path, vectorised classification fast path, their exact agreement) and Holm's step-down
adjustment (hand-computed cases, a brute-force loop and the sequential rejection procedure)."""

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import balanced_accuracy_score, f1_score

from facebench.metrics.classification import accuracy, confusion_matrix, mean_class_accuracy_from_cm
from facebench.metrics.paired import (
    classification_metric,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    paired_bootstrap_classification,
    paired_resample_indices,
)

METRICS = ("accuracy", "mean_class_accuracy", "macro_f1")


def _outcomes(b, c, n_both=50, n_neither=50):
    """Paired correctness flags with b (base right, new wrong) and c (base wrong, new right) discordant pairs."""
    base = np.array([1] * b + [0] * c + [1] * n_both + [0] * n_neither, dtype=bool)
    new = np.array([0] * b + [1] * c + [1] * n_both + [0] * n_neither, dtype=bool)
    perm = np.random.default_rng(b * 1000 + c).permutation(base.size)  # order must not matter
    return base[perm], new[perm]


def _data(n=300, c=4, acc_base=0.8, acc_new=0.7, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    base = np.where(rng.random(n) < acc_base, y, rng.integers(0, c, n))
    new = np.where(rng.random(n) < acc_new, y, rng.integers(0, c, n))
    return y, base, new


# --------------------------------------------------------------------------- #
# exact McNemar
# --------------------------------------------------------------------------- #
# Worked cases, X ~ Bin(n = b + c, 1/2):
#   b=0,  c=0 : no discordant pair                 -> p = 1, p_worse = 1 (binomtest needs n >= 1)
#   b=5,  c=5 : 2 P(X<=5 | 10) = 2 * 638/1024 > 1  -> p = 1;  p_worse = P(X>=5) = 638/1024
#   b=10, c=2 : P(X<=2 | 12) = (1+12+66)/4096 = 79/4096 -> p = 158/4096; p_worse = P(X>=10) = 79/4096
#   b=2,  c=10: same two-sided p = 158/4096;        p_worse = P(X>=2) = 1 - 13/4096 = 4083/4096
#   b=6,  c=0 : p = 2 * (1/64) = 1/32;              p_worse = P(X>=6 | 6) = 1/64
#   b=0,  c=6 : p = 1/32;                           p_worse = P(X>=0) = 1
#   b=1,  c=0 : p = min(1, 2 * 1/2) = 1;            p_worse = 1/2
WORKED = [
    (0, 0, 1.0, 1.0),
    (5, 5, 1.0, 638 / 1024),
    (10, 2, 158 / 4096, 79 / 4096),
    (2, 10, 158 / 4096, 4083 / 4096),
    (6, 0, 1 / 32, 1 / 64),
    (0, 6, 1 / 32, 1.0),
    (1, 0, 1.0, 0.5),
]


@pytest.mark.parametrize("b,c,p_two,p_worse", WORKED)
def test_mcnemar_worked_cases(b, c, p_two, p_worse):
    base, new = _outcomes(b, c)
    res = mcnemar_exact(base, new)
    assert (res["b"], res["c"], res["n_discordant"]) == (b, c, b + c)
    assert res["p_value"] == pytest.approx(p_two, rel=1e-12)
    assert res["p_worse"] == pytest.approx(p_worse, rel=1e-12)
    n = base.size
    assert res["accuracy_base"] == pytest.approx((b + 50) / n)
    assert res["accuracy_new"] == pytest.approx((c + 50) / n)
    assert res["difference"] == pytest.approx((c - b) / n)
    assert res["difference"] == pytest.approx(res["accuracy_new"] - res["accuracy_base"])


@pytest.mark.parametrize("b,c", [(5, 5), (10, 2), (2, 10), (30, 0), (0, 30), (1, 0), (7, 8),
                                 (120, 95), (520, 480), (480, 520), (3000, 2000), (2000, 3000), (25000, 25000)])
def test_mcnemar_matches_binomtest(b, c):
    base, new = _outcomes(b, c)
    res = mcnemar_exact(base, new)
    two = binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    worse = binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert res["p_value"] == pytest.approx(two, rel=1e-9, abs=1e-300)
    assert res["p_worse"] == pytest.approx(worse, rel=1e-9, abs=1e-300)
    assert 0.0 <= res["p_worse"] <= 1.0 and 0.0 <= res["p_value"] <= 1.0


def test_mcnemar_identical_and_input_forms():
    flags = np.array([1, 0, 1, 1, 0])
    res = mcnemar_exact(flags, flags)  # 0/1 ints are accepted
    assert res["b"] == res["c"] == 0 and res["p_value"] == 1.0 and res["p_worse"] == 1.0
    assert res["difference"] == 0.0 and res["accuracy_base"] == pytest.approx(0.6)
    assert isinstance(res["b"], int) and isinstance(res["p_value"], float)
    # b and c swap when the runs swap; the two-sided p is symmetric
    base, new = _outcomes(10, 2)
    r1, r2 = mcnemar_exact(base, new), mcnemar_exact(new, base)
    assert (r2["b"], r2["c"]) == (2, 10) and r1["p_value"] == r2["p_value"]


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match="same samples"):
        mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError):
        mcnemar_exact([], [])
    with pytest.raises(ValueError):
        mcnemar_exact([0, 2], [1, 1])
    with pytest.raises(ValueError):
        mcnemar_exact([[1, 0]], [[1, 0]])


# --------------------------------------------------------------------------- #
# paired bootstrap
# --------------------------------------------------------------------------- #
def test_resample_indices_are_plain_per_row_draws_and_chunk_independent():
    n, b = 23, 17
    rng = np.random.default_rng(5)
    want = np.stack([rng.integers(0, n, size=n) for _ in range(b)])
    for chunk in (None, 1, 4, 17, 100):
        got = np.concatenate(list(paired_resample_indices(n, b, seed=5, chunk=chunk)))
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("metric", METRICS)
def test_identical_predictions_give_exact_zero(metric):
    y, base, _ = _data()
    for res in (paired_bootstrap_classification(y, base, base, 4, metric, n_resamples=200, seed=1),
                paired_bootstrap(classification_metric(metric, 4), y, base, base, n_resamples=50, seed=1)):
        assert res["difference"] == 0.0
        assert res["ci"] == (0.0, 0.0)
        assert res["p_value"] == 1.0 and res["p_worse"] == 1.0  # every delta is 0: ties count on both sides
        assert res["nan_fraction"] == 0.0


def test_new_worse_on_every_resample_gives_tiny_p_worse():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    perfect = y.copy()
    worse = np.where(rng.random(400) < 0.7, y, (y + 1) % 3)  # wrong on ~30%, never right where base is wrong
    for metric in METRICS:
        res = paired_bootstrap_classification(y, perfect, worse, 3, metric, n_resamples=999, seed=0,
                                              return_deltas=True)
        assert (res["deltas"] < 0).all()
        assert res["p_worse"] == pytest.approx(1 / 1000)  # (1 + 0) / (B + 1): the smallest attainable value
        assert res["p_value"] == 0.0  # 2 * min(#<=0 = B, #>=0 = 0) / B
        assert res["ci"][1] < 0 and res["difference"] < 0
        # the mirrored comparison: new strictly better on every resample -> no evidence of being worse
        rev = paired_bootstrap_classification(y, worse, perfect, 3, metric, n_resamples=999, seed=0)
        assert rev["p_worse"] == 1.0 and rev["ci"][0] > 0 and rev["p_value"] == 0.0
    # the generic path agrees
    g = paired_bootstrap(accuracy, y, perfect, worse, n_resamples=199, seed=0)
    assert g["p_worse"] == pytest.approx(1 / 200) and g["ci"][1] < 0


def test_p_values_and_ci_follow_the_documented_formulas():
    y, base, new = _data(n=120, acc_base=0.75, acc_new=0.72, seed=4)
    res = paired_bootstrap_classification(y, base, new, 4, "macro_f1", n_resamples=500, seed=9,
                                          return_deltas=True)
    d = res["deltas"]
    B = d.size
    assert res["n_resamples"] == B == 500
    assert res["p_worse"] == pytest.approx((1 + np.sum(d >= 0)) / (B + 1))
    assert res["p_value"] == pytest.approx(min(1.0, 2 * min(np.sum(d <= 0), np.sum(d >= 0)) / B))
    assert res["ci"] == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))
    assert 0 < res["p_worse"] < 1 and res["ci"][0] <= res["difference"] <= res["ci"][1]
    assert res["difference"] == pytest.approx(res["metric_new"] - res["metric_base"])


def test_paired_deltas_reproduce_by_hand():
    """Accuracy deltas are means of (correct_new - correct_base) over the same resampled indices."""
    y, base, new = _data(n=80, seed=6)
    res = paired_bootstrap_classification(y, base, new, 4, "accuracy", n_resamples=64, seed=11,
                                          return_deltas=True)
    rng = np.random.default_rng(11)
    per_sample = (new == y).astype(float) - (base == y).astype(float)
    want = np.array([per_sample[rng.integers(0, 80, size=80)].mean() for _ in range(64)])
    np.testing.assert_allclose(res["deltas"], want, rtol=0, atol=1e-12)
    assert res["difference"] == pytest.approx(per_sample.mean())


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("classes", [None, [0, 1, 2, 3], [1, 3]])
def test_fast_path_equals_generic_path(metric, classes):
    # small and imbalanced: class 3 has one sample, so many resamples miss it
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2, 3])
    rng = np.random.default_rng(0)
    base = np.where(rng.random(y.size) < 0.7, y, rng.integers(0, 4, y.size))
    new = np.where(rng.random(y.size) < 0.6, y, rng.integers(0, 4, y.size))
    fast = paired_bootstrap_classification(y, base, new, 4, metric, n_resamples=300, seed=7, classes=classes,
                                           return_deltas=True, chunk=64)
    slow = paired_bootstrap(classification_metric(metric, 4, classes), y, base, new, n_resamples=300, seed=7,
                            return_deltas=True)
    np.testing.assert_array_equal(fast["deltas"], slow["deltas"])  # bit-identical, NaNs in the same places
    for key in ("difference", "ci", "p_worse", "p_value", "n_resamples", "metric_base", "metric_new",
                "nan_fraction"):
        assert fast[key] == slow[key], key
    if metric == "mean_class_accuracy" and classes is not None:
        assert fast["nan_fraction"] > 0  # resamples without class 3 are undefined and left out
        assert fast["p_worse"] == pytest.approx((1 + np.sum(fast["deltas"] >= 0)) / (np.sum(~np.isnan(fast["deltas"])) + 1))
    else:
        assert fast["nan_fraction"] == 0.0


def test_fast_path_equals_generic_with_user_metric_and_chunking():
    y, base, new = _data(n=150, seed=3)
    fast = paired_bootstrap_classification(y, base, new, 4, "accuracy", n_resamples=257, seed=2,
                                           return_deltas=True)
    slow = paired_bootstrap(accuracy, y, base, new, n_resamples=257, seed=2, return_deltas=True, chunk=10)
    np.testing.assert_array_equal(fast["deltas"], slow["deltas"])
    chunked = paired_bootstrap_classification(y, base, new, 4, "accuracy", n_resamples=257, seed=2,
                                              return_deltas=True, chunk=3)
    np.testing.assert_array_equal(fast["deltas"], chunked["deltas"])
    other_seed = paired_bootstrap_classification(y, base, new, 4, "accuracy", n_resamples=257, seed=3,
                                                 return_deltas=True)
    assert not np.array_equal(fast["deltas"], other_seed["deltas"])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_point_estimates_match_sklearn_on_present_classes():
    y, base, new = _data(n=200, c=5, seed=8)
    y = np.where(y == 4, 0, y)  # class 4 never in y_true (but may be predicted)
    present = [0, 1, 2, 3]
    res_mca = paired_bootstrap_classification(y, base, new, 5, "mean_class_accuracy", n_resamples=10)
    res_f1 = paired_bootstrap_classification(y, base, new, 5, "macro_f1", n_resamples=10)
    for pred, key in ((base, "metric_base"), (new, "metric_new")):
        assert res_mca[key] == pytest.approx(balanced_accuracy_score(y, pred))
        assert res_mca[key] == pytest.approx(float(mean_class_accuracy_from_cm(confusion_matrix(y, pred, 5), present)))
        assert res_f1[key] == pytest.approx(f1_score(y, pred, average="macro", labels=present, zero_division=0))


def test_generic_bootstrap_accepts_probabilities():
    """metric_fn gets y_true[idx] and pred[idx] sliced along the first axis, e.g. (N, C) probabilities."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    pb = rng.dirichlet(np.ones(3), 60)
    pn = pb.copy()

    def mean_true_prob(yt, probs):
        return float(probs[np.arange(yt.size), yt].mean())

    res = paired_bootstrap(mean_true_prob, y, pb, pn, n_resamples=20)
    assert res["difference"] == 0.0 and res["ci"] == (0.0, 0.0)


def test_bootstrap_rejects_bad_input():
    y, base, new = _data(n=20)
    with pytest.raises(ValueError, match="metric must be one of"):
        paired_bootstrap_classification(y, base, new, 4, "auroc")
    with pytest.raises(ValueError, match="inconsistent"):
        paired_bootstrap_classification(y, base[:-1], new, 4)
    with pytest.raises(ValueError, match="inconsistent"):
        paired_bootstrap(accuracy, y, base, new[:-1])
    with pytest.raises(ValueError):
        paired_bootstrap_classification(y, base, new, 3)  # label 3 out of range
    with pytest.raises(ValueError):
        paired_bootstrap(accuracy, y, base, new, n_resamples=0)
    with pytest.raises(ValueError):
        paired_bootstrap("accuracy", y, base, new)
    with pytest.raises(ValueError, match="support 0"):  # explicit class absent from y_true
        paired_bootstrap_classification(np.array([0, 1, 0]), np.array([0, 1, 1]), np.array([0, 0, 0]), 3,
                                        "mean_class_accuracy", classes=[0, 2])


# --------------------------------------------------------------------------- #
# Holm
# --------------------------------------------------------------------------- #
# Hand cases (sort ascending, multiply the j-th smallest by m - j + 1, running max, cap at 1):
#   [0.01, 0.04, 0.03, 0.005]: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max 0.06
#                              -> in input order [0.03, 0.06, 0.06, 0.02]
#   [0.2, 0.9]               : 0.2*2=0.4, 0.9*1=0.9                       -> [0.4, 0.9]
#   [0.02, 0.02, 0.5]        : 0.06, 0.02*2=0.04 -> 0.06 (running max), 0.5 -> [0.06, 0.06, 0.5]
#   [0.3, 0.4, 0.6]          : 0.9, 0.8 -> 0.9, 0.6 -> 0.9                -> [0.9, 0.9, 0.9]
#   [0.6, 0.7]               : 1.2 -> capped 1, 0.7 -> 1 (running max)    -> [1, 1]
#   [0.04]                   : a single test is not adjusted              -> [0.04]
#   [0, 1]                   : 0*2=0, 1                                   -> [0, 1]
HOLM_CASES = [
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
    ([0.2, 0.9], [0.4, 0.9]),
    ([0.02, 0.02, 0.5], [0.06, 0.06, 0.5]),
    ([0.3, 0.4, 0.6], [0.9, 0.9, 0.9]),
    ([0.6, 0.7], [1.0, 1.0]),
    ([0.04], [0.04]),
    ([0.0, 1.0], [0.0, 1.0]),
]


@pytest.mark.parametrize("p,want", HOLM_CASES)
def test_holm_hand_cases(p, want):
    got = holm(p)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (len(p),)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def _holm_brute_force(p):
    """adj_i = min(1, max over hypotheses j ranked at or before i of (m - rank_j) * p_j), by plain loops."""
    m = len(p)
    ranked = sorted(range(m), key=lambda i: (p[i], i))
    rank = {i: r for r, i in enumerate(ranked)}
    out = []
    for i in range(m):
        best = 0.0
        for j in range(m):
            if rank[j] <= rank[i]:
                best = max(best, (m - rank[j]) * p[j])
        out.append(min(1.0, best))
    return np.array(out)


def _holm_rejects(p, alpha):
    """Holm's sequential procedure: reject the k-th smallest while p_(k) <= alpha / (m - k + 1)."""
    m = len(p)
    rejected = set()
    for k, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] <= alpha / (m - k):
            rejected.add(int(i))
        else:
            break
    return rejected


def test_holm_matches_brute_force_and_rejection_procedure():
    rng = np.random.default_rng(1)
    for trial in range(300):
        m = int(rng.integers(1, 12))
        p = rng.random(m) ** 3  # plenty of small p-values
        if trial % 5 == 0:  # ties
            p = np.round(p, 1)
        got = holm(p)
        np.testing.assert_allclose(got, _holm_brute_force(p.tolist()), rtol=1e-12, atol=0)
        assert np.all(got >= p) and np.all(got <= 1.0)
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(got[order]) >= 0)  # monotone in the raw p-values
        perm = rng.permutation(m)
        np.testing.assert_allclose(holm(p[perm]), got[perm], rtol=1e-12)  # order-equivariant
        for alpha in rng.random(5) * 0.2:
            assert {int(i) for i in np.flatnonzero(got <= alpha)} == _holm_rejects(p, alpha)


def test_holm_edge_cases():
    assert holm([]).shape == (0,)
    for bad in ([0.5, 1.5], [-0.1], [0.2, np.nan]):
        with pytest.raises(ValueError):
            holm(bad)
    with pytest.raises(ValueError):
        holm([[0.1, 0.2]])
