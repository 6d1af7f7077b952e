"""Tests for facebench.metrics.label_free against independent oracles.

Oracles: hand-worked examples (COT, ATC, DoC/AC, nuclear norm, Ashman's D), brute force
(all permutations for COT, all thresholds for ATC, a temperature grid), closed forms
(AUROC of two Gaussians, overlap of two weighted Gaussians via their intersection points),
scikit-learn's GaussianMixture, np.linalg.svd, scipy.optimize.linprog (transportation LP)
and moment formulas for skewness/kurtosis written here.
"""

import itertools
import math

import numpy as np
import pytest
from scipy import optimize, special
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from _gmm_reference import reference_fit as _reference_fit
from facebench.metrics import label_free as lf
from facebench.metrics.label_free import (
    ACCURACY_ESTIMATORS,
    FEATURE_NAMES,
    INDICATORS,
    ashman_d,
    atc_estimate,
    atc_threshold,
    average_confidence,
    bimodality_coefficient,
    cot_estimate,
    difference_of_confidences,
    estimate_accuracy,
    fit_gmm_1d,
    fit_temperature,
    gmm_implied_auroc,
    gmm_overlap,
    neg_entropy_scores,
    nuclear_norm_score,
    score_features,
    softmax_t,
)

# --------------------------------------------------------------------------- helpers / oracles


def _mixture(n_lo, n_hi, mu_lo=0.0, mu_hi=4.0, s_lo=1.0, s_hi=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(mu_lo, s_lo, n_lo), rng.normal(mu_hi, s_hi, n_hi)])


def _random_probs(n, k, seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    return special.softmax(rng.normal(size=(n, k)) * scale, axis=1)


def _overlap_closed_form(w, mu, sd):
    """Integral of min(w1 N1, w2 N2) from the intersection points of the two weighted densities."""
    a = 1 / (2 * sd[1] ** 2) - 1 / (2 * sd[0] ** 2)
    b = mu[0] / sd[0] ** 2 - mu[1] / sd[1] ** 2
    c = (mu[1] ** 2 / (2 * sd[1] ** 2) - mu[0] ** 2 / (2 * sd[0] ** 2)
         + math.log(w[0] / sd[0]) - math.log(w[1] / sd[1]))
    # log(w0 N0) - log(w1 N1) = a x^2 + b x + c
    roots = np.roots([a, b, c]) if abs(a) > 1e-15 else np.array([-c / b])
    roots = np.sort(roots[np.isreal(roots)].real)
    edges = np.concatenate([[-np.inf], roots, [np.inf]])
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mid = (lo + hi) / 2 if np.isfinite(lo) and np.isfinite(hi) else (hi - 1 if np.isfinite(hi) else lo + 1)
        d0 = w[0] * norm.pdf(mid, mu[0], sd[0])
        d1 = w[1] * norm.pdf(mid, mu[1], sd[1])
        k = 0 if d0 < d1 else 1
        total += w[k] * (norm.cdf(hi, mu[k], sd[k]) - norm.cdf(lo, mu[k], sd[k]))
    return total


# --------------------------------------------------------------------------- GMM and indicators


def test_gmm_implied_auroc_closed_form_two_gaussians():
    x = _mixture(5000, 5000)
    expected = norm.cdf(4 / math.sqrt(2))
    assert gmm_implied_auroc(x) == pytest.approx(expected, abs=2e-3)
    fit = fit_gmm_1d(x)
    assert fit["converged"]
    np.testing.assert_allclose(fit["means"], [0, 4], atol=0.06)
    np.testing.assert_allclose(fit["stds"], [1, 1], atol=0.05)
    np.testing.assert_allclose(fit["weights"], [0.5, 0.5], atol=0.02)
    # implied AUROC from the fitted parameters by hand
    mu, sd = fit["means"], fit["stds"]
    assert gmm_implied_auroc(x) == pytest.approx(norm.cdf((mu[1] - mu[0]) / math.sqrt(sd[0] ** 2 + sd[1] ** 2)),
                                                 abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gmm_matches_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    x = np.concatenate([rng.normal(-1.0, 0.7, 900), rng.normal(1.5 + seed, 1.4, 2100)])
    ours = fit_gmm_1d(x, tol=1e-12, max_iter=5000)
    gm = GaussianMixture(2, tol=1e-12, max_iter=5000, n_init=5, reg_covar=1e-12, random_state=seed).fit(x[:, None])
    order = np.argsort(gm.means_.ravel())
    sk_mu = gm.means_.ravel()[order]
    sk_sd = np.sqrt(gm.covariances_.ravel()[order])
    sk_w = gm.weights_[order]
    np.testing.assert_allclose(ours["means"], sk_mu, atol=1e-4)
    np.testing.assert_allclose(ours["stds"], sk_sd, atol=1e-4)
    np.testing.assert_allclose(ours["weights"], sk_w, atol=1e-4)
    assert ours["log_likelihood"] == pytest.approx(gm.score(x[:, None]) * x.size, abs=1e-4)
    sk_auc = norm.cdf((sk_mu[1] - sk_mu[0]) / math.sqrt(sk_sd[0] ** 2 + sk_sd[1] ** 2))
    assert gmm_implied_auroc(x, tol=1e-12, max_iter=5000) == pytest.approx(sk_auc, abs=1e-4)


def test_gmm_output_contract_and_determinism():
    x = _mixture(300, 100, mu_hi=2.0, seed=3)
    a, b = fit_gmm_1d(x, seed=7), fit_gmm_1d(x, seed=7)
    assert set(a) == {"weights", "means", "stds", "log_likelihood", "converged"}
    for key in ("weights", "means", "stds"):
        assert a[key].shape == (2,) and a[key].dtype == np.float64
        np.testing.assert_array_equal(a[key], b[key])
    assert a["means"][0] <= a["means"][1]
    assert a["weights"].sum() == pytest.approx(1.0)
    assert isinstance(a["log_likelihood"], float) and isinstance(a["converged"], bool)
    # total log-likelihood recomputed by hand
    ll = np.log(sum(w * norm.pdf(x, m, s) for w, m, s in zip(a["weights"], a["means"], a["stds"]))).sum()
    assert a["log_likelihood"] == pytest.approx(ll, rel=1e-10)


def test_gmm_degenerate_inputs():
    fit = fit_gmm_1d(np.full(10, 3.0))
    np.testing.assert_allclose(fit["means"], [3.0, 3.0], rtol=1e-12)
    assert np.all(fit["stds"] > 0)
    assert gmm_implied_auroc(np.full(10, 3.0)) == pytest.approx(0.5)
    fit = fit_gmm_1d([0.0, 1.0])
    assert np.all(np.isfinite(fit["means"])) and np.all(np.isfinite(fit["stds"]))
    assert fit["stds"].min() >= math.sqrt(1e-6 * 0.25 + 1e-12) - 1e-15  # variance floor


def test_indicator_kwargs_and_fit_memo():
    x = _mixture(300, 200, mu_hi=2.0, seed=12)
    a = gmm_implied_auroc(x)
    assert gmm_implied_auroc(x) == a  # memoised fit gives the same value
    assert gmm_implied_auroc(x.copy(), seed=3, n_init=2) == pytest.approx(
        lf._auroc_from_fit(fit_gmm_1d(x, seed=3, n_init=2)), abs=1e-15)
    assert gmm_implied_auroc(x[:-1]) == pytest.approx(lf._auroc_from_fit(fit_gmm_1d(x[:-1])), abs=1e-15)
    with pytest.raises(TypeError):
        gmm_implied_auroc(x, bogus=1)


def _same_bits(a: dict, b: dict) -> bool:
    return all(np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() for k in a) and set(a) == set(b)


def test_logsumexp2_is_scipys_bit_for_bit():
    rng = np.random.default_rng(5)
    logp = rng.normal(size=(4000, 2)) * 10.0 ** rng.uniform(-3, 3, (4000, 1))
    logp[::7, 1] = logp[::7, 0]  # ties: log 2 is added
    logp[::11, 0] = -np.inf
    logp[5] = -np.inf
    ours, scipys = lf._logsumexp2(logp[:, 0], logp[:, 1]), special.logsumexp(logp, axis=1)
    assert ours.tobytes() == scipys.tobytes()


def test_sum_in_order_is_numpys_column_sum_bit_for_bit():
    """The EM's sums over samples: numpy sums an (n, 2) array over axis 0 term after term from 0.0."""
    rng = np.random.default_rng(6)
    for n in (1, 2, 7, 300, 2001):
        a = rng.normal(size=(n, 2)) * 10.0 ** rng.uniform(-6, 6, (n, 1))
        a[0, 1] = -0.0
        for col in (a, np.abs(a), np.full((n, 2), -0.0)):
            assert lf._sum_in_order(np.ascontiguousarray(col.T)).tobytes() == col.sum(axis=0).tobytes()


def test_batched_em_equals_the_one_run_recursion():
    """fit_gmm_1d_many (all runs of all sets of one length iterated together) gives the bits of the one-run
    EM with scipy's logsumexp, set by set: lengths mixed, early stops, max_iter hits, constant sets."""
    rng = np.random.default_rng(8)
    sets = [_mixture(n_lo, n_hi, mu_hi=rng.uniform(0.5, 4), s_hi=rng.uniform(0.3, 2), seed=k)
            for k, (n_lo, n_hi) in enumerate([(150, 50), (100, 100), (60, 10), (170, 30), (2, 1), (45, 25)])]
    sets += [np.round(sets[0], 1), np.full(200, 2.0), np.array([0.0, 1.0])]
    for kwargs in ({}, {"n_init": 2, "seed": 4, "max_iter": 9}, {"tol": 0.0, "max_iter": 40}):
        batched = lf.fit_gmm_1d_many(sets, **kwargs)
        for x, fit in zip(sets, batched):
            assert _same_bits(fit, _reference_fit(x, **kwargs))
            assert _same_bits(fit_gmm_1d(x, **kwargs), fit)


def test_indicator_table_equals_set_by_set_calls():
    sets = [_mixture(150, 50, mu_hi=m, seed=k) for k, m in enumerate((0.5, 2.0, 4.0))] + [_mixture(300, 300, seed=9)]
    rows, feats = lf.indicator_table(sets)
    lf._FIT_CACHE.clear()  # the calls below fit again, one set at a time
    assert rows.tobytes() == np.array([[fn(x) for fn in INDICATORS.values()] for x in sets]).tobytes()
    assert feats.tobytes() == np.array([list(score_features(x).values()) for x in sets]).tobytes()
    assert lf.indicator_table([])[0].shape == (0, len(INDICATORS))


def test_threaded_em_blocks_change_no_bit(monkeypatch):
    """Batches cut into blocks of whole sets and run in threads give the fits of one block run alone."""
    sets = [_mixture(150, 50, mu_hi=m, seed=k) for k, m in enumerate((0.5, 1.0, 2.0, 3.0, 4.0))]
    sets += [_mixture(60, 40, seed=k) for k in range(3)] + [np.round(sets[0], 1)]
    monkeypatch.setattr(lf, "usable_cpus", lambda: 1)
    alone = lf.fit_gmm_1d_many(sets)
    monkeypatch.setattr(lf, "usable_cpus", lambda: 3)
    monkeypatch.setattr(lf, "_EM_PARALLEL_ELEMENTS", 1)  # every length split over 3 threads
    assert all(_same_bits(a, b) for a, b in zip(lf.fit_gmm_1d_many(sets), alone))
    assert lf._even_bounds(7, 3) == ([0, 2, 5], [2, 5, 7]) and lf._even_bounds(2, 1) == ([0], [2])


def test_indicator_table_reads_features_only_for_the_builtin_indicators(monkeypatch):
    sets = [_mixture(150, 50, mu_hi=m, seed=k) for k, m in enumerate((0.5, 2.0))] + [_mixture(20, 30, seed=4)]
    registry = {**INDICATORS, "gmm_auroc": lambda x: 0.25, "range": lambda x: float(np.ptp(x))}
    monkeypatch.setattr(lf, "INDICATORS", registry)
    rows, feats = lf.indicator_table(sets)
    assert rows[:, 0].tolist() == [0.25] * 3 and rows[:, -1].tolist() == [float(np.ptp(x)) for x in sets]
    assert rows[:, 1:-1].tobytes() == np.array([[fn(x) for fn in list(INDICATORS.values())[1:]]
                                                for x in sets]).tobytes()
    assert feats.tobytes() == np.array([list(score_features(x).values()) for x in sets]).tobytes()


@pytest.mark.parametrize("bad, message", [(np.arange(3.0), "needs at least 4"), (np.full(9, 0.5), "constant")])
def test_indicator_table_errors_are_the_indicators(bad, message):
    with pytest.raises(ValueError, match=message):
        bimodality_coefficient(bad)
    with pytest.raises(ValueError, match=message):
        lf.indicator_table([_mixture(50, 50), bad])


def test_cot_estimates_are_cot_estimate_set_by_set():
    rng = np.random.default_rng(2)
    sets = [rng.dirichlet(np.ones(4), n) for n in (5, 40, 33, 12)]
    marginal = [0.1, 0.2, 0.3, 0.4]
    seeds = [1, 2, 3, 4]
    want = [cot_estimate(p, marginal, seed=s, max_batch=10) for p, s in zip(sets, seeds)]
    assert lf.cot_estimates(sets, marginal, seeds, max_batch=10) == want
    assert lf.cot_estimates([], marginal, []) == []
    with pytest.raises(ValueError, match="one seed per target set"):
        lf.cot_estimates(sets, marginal, seeds[:2])


def test_ashman_d_by_hand():
    fit = {"weights": np.array([0.4, 0.6]), "means": np.array([0.0, 3.0]), "stds": np.array([1.0, 2.0])}
    assert lf._ashman_from_fit(fit) == pytest.approx(math.sqrt(2) * 3 / math.sqrt(5), abs=1e-15)
    assert lf._auroc_from_fit(fit) == pytest.approx(norm.cdf(3 / math.sqrt(5)), abs=1e-15)
    x = _mixture(400, 600, mu_hi=3.0, s_hi=2.0, seed=5)
    f = fit_gmm_1d(x)
    d = ashman_d(x)
    assert d == pytest.approx(math.sqrt(2) * abs(f["means"][1] - f["means"][0])
                              / math.sqrt(f["stds"][0] ** 2 + f["stds"][1] ** 2), abs=1e-12)
    assert gmm_implied_auroc(x) == pytest.approx(norm.cdf(d / math.sqrt(2)), abs=1e-12)


def test_gmm_overlap_closed_form():
    cases = [
        ([0.3, 0.7], [0.0, 2.0], [1.0, 1.5]),
        ([0.5, 0.5], [0.0, 1.0], [1.0, 1.0]),
        ([0.9, 0.1], [0.0, 0.2], [0.01, 3.0]),  # narrow next to wide
    ]
    for w, mu, sd in cases:
        fit = {"weights": np.array(w), "means": np.array(mu), "stds": np.array(sd)}
        assert lf._overlap_from_fit(fit, 2048) == pytest.approx(_overlap_closed_form(w, mu, sd), abs=1e-6)
    same = {"weights": np.array([0.5, 0.5]), "means": np.array([1.0, 1.0]), "stds": np.array([2.0, 2.0])}
    assert lf._overlap_from_fit(same, 2048) == pytest.approx(0.5, abs=1e-9)
    apart = {"weights": np.array([0.5, 0.5]), "means": np.array([0.0, 100.0]), "stds": np.array([1.0, 1.0])}
    assert lf._overlap_from_fit(apart, 2048) == pytest.approx(0.0, abs=1e-12)
    # through the public function, from the fitted parameters
    x = _mixture(500, 500, mu_hi=2.5, seed=9)
    f = fit_gmm_1d(x)
    ov = gmm_overlap(x)
    assert ov == pytest.approx(_overlap_closed_form(f["weights"], f["means"], f["stds"]), abs=1e-6)
    assert 0.0 <= ov <= min(f["weights"])


def _bc_oracle(x):
    x = np.asarray(x, float)
    n = x.size
    d = x - x.mean()
    m2, m3, m4 = (d ** 2).mean(), (d ** 3).mean(), (d ** 4).mean()
    g1, g2 = m3 / m2 ** 1.5, m4 / m2 ** 2 - 3
    G1 = g1 * math.sqrt(n * (n - 1)) / (n - 2)
    G2 = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
    return (G1 ** 2 + 1) / (G2 + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def test_bimodality_coefficient_direct_formula():
    rng = np.random.default_rng(0)
    for x in ([1.0, 2.0, 4.0, 8.0], rng.normal(size=50), rng.exponential(size=200), _mixture(100, 60)):
        assert bimodality_coefficient(x) == pytest.approx(_bc_oracle(x), rel=1e-12)
    # reference values: normal ~ 1/3, uniform ~ 5/9, well separated bimodal >> 5/9
    assert bimodality_coefficient(rng.normal(size=100000)) == pytest.approx(1 / 3, abs=0.01)
    assert bimodality_coefficient(rng.uniform(size=100000)) == pytest.approx(5 / 9, abs=0.01)
    assert bimodality_coefficient(_mixture(5000, 5000, mu_hi=8.0)) > 0.8


def test_score_features_contract():
    x = _mixture(600, 400, mu_hi=3.0, s_hi=0.7, seed=11)
    f = score_features(x)
    assert tuple(f) == FEATURE_NAMES and len(FEATURE_NAMES) == 15
    assert all(isinstance(v, float) and math.isfinite(v) for v in f.values())
    assert f["mean"] == pytest.approx(x.mean()) and f["std"] == pytest.approx(x.std())
    assert f["median"] == pytest.approx(np.median(x))
    assert f["q05"] == pytest.approx(np.quantile(x, 0.05)) and f["q95"] == pytest.approx(np.quantile(x, 0.95))
    assert f["bimodality_coefficient"] == pytest.approx(_bc_oracle(x))
    assert f["gmm_implied_auroc"] == pytest.approx(gmm_implied_auroc(x))
    assert f["ashman_d"] == pytest.approx(ashman_d(x))
    assert f["gmm_overlap"] == pytest.approx(gmm_overlap(x))
    fit = fit_gmm_1d(x)
    w, mu, sd = fit["weights"], fit["means"], fit["stds"]
    assert f["gmm_weight_high"] == pytest.approx(w[1])
    assert f["gmm_gap_over_pooled_std"] == pytest.approx((mu[1] - mu[0]) / math.sqrt(w @ sd ** 2))
    # shape features are invariant under positive affine maps of the scores
    g = score_features(3.0 * x - 7.0)
    for name in ("skewness", "kurtosis", "bimodality_coefficient", "gmm_implied_auroc", "ashman_d",
                 "gmm_overlap", "gmm_weight_high", "gmm_gap_over_pooled_std"):
        assert g[name] == pytest.approx(f[name], rel=1e-5, abs=1e-8)
    assert g["mean"] == pytest.approx(3.0 * f["mean"] - 7.0)


def test_indicators_registry_and_directions():
    assert set(INDICATORS) == {"gmm_auroc", "ashman_d", "bimodality_coefficient", "gmm_overlap",
                               "mean_score", "score_std"}
    sep = _mixture(500, 500, mu_hi=5.0, seed=1)
    mixed = _mixture(500, 500, mu_hi=1.0, seed=1)
    vals = {name: (fn(sep), fn(mixed)) for name, fn in INDICATORS.items()}
    assert all(isinstance(a, float) and isinstance(b, float) for a, b in vals.values())
    for name in ("gmm_auroc", "ashman_d", "bimodality_coefficient"):
        assert vals[name][0] > vals[name][1]
    assert vals["gmm_overlap"][0] < vals["gmm_overlap"][1]
    assert vals["mean_score"][0] == pytest.approx(sep.mean())
    assert vals["score_std"][0] == pytest.approx(sep.std())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fit_gmm_1d([1.0]), "at least 2"),
        (lambda: fit_gmm_1d([]), "empty"),
        (lambda: fit_gmm_1d([[1.0, 2.0]]), "1-D"),
        (lambda: fit_gmm_1d([1.0, np.nan, 2.0]), "NaN"),
        (lambda: fit_gmm_1d([1.0, np.inf, 2.0]), "inf"),
        (lambda: fit_gmm_1d([1.0, 2.0], n_init=0), "n_init"),
        (lambda: fit_gmm_1d([1.0, 2.0], max_iter=1.5), "max_iter"),
        (lambda: fit_gmm_1d([1.0, 2.0], tol=-1), "tol"),
        (lambda: fit_gmm_1d([1.0, 2.0], seed=-1), "seed"),
        (lambda: gmm_overlap([1.0, 2.0, 3.0], grid=2), "grid"),
        (lambda: bimodality_coefficient([1.0, 2.0, 3.0]), "at least 4"),
        (lambda: bimodality_coefficient([2.0] * 5), "constant"),
        (lambda: score_features([1.0, 2.0, 3.0]), "at least 4"),
        (lambda: gmm_implied_auroc(["a", "b"]), "numeric"),
    ],
)
def test_indicator_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- temperature / softmax


def test_softmax_t():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 5)) * 4
    for t in (0.3, 1.0, 7.0):
        np.testing.assert_allclose(softmax_t(z, t), special.softmax(z / t, axis=1), rtol=1e-12)
    big = softmax_t([[1000.0, 0.0], [0.0, 1e6]])
    np.testing.assert_allclose(big, [[1.0, 0.0], [0.0, 1.0]])
    assert softmax_t(z).dtype == np.float64
    for bad_t in (0.0, -1.0, np.inf, np.nan, True):
        with pytest.raises(ValueError, match="temperature"):
            softmax_t(z, bad_t)
    with pytest.raises(ValueError, match="2-D"):
        softmax_t([1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        softmax_t([[1.0, np.nan]])


def _nll(z, y, t):
    p = special.softmax(z / t, axis=1)
    return -np.mean(np.log(p[np.arange(len(y)), y]))


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_fit_temperature_vs_grid(true_t):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3000, 4)) * 3
    u = rng.uniform(size=(3000, 1))
    y = (special.softmax(z / true_t, axis=1).cumsum(axis=1) < u).sum(axis=1)  # y ~ softmax(z / true_t)
    t = fit_temperature(z, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 4001))
    losses = np.array([_nll(z, y, g) for g in grid])
    t_grid = grid[losses.argmin()]
    assert abs(t - t_grid) / t_grid < 3e-3  # grid spacing is ~0.15 %
    assert _nll(z, y, t) <= losses.min() + 1e-12
    assert t == pytest.approx(true_t, rel=0.1)


def test_fit_temperature_bounds_and_errors():
    z = np.array([[5.0, 0.0], [0.0, 5.0], [4.0, 1.0]])
    y = np.array([0, 1, 0])  # separable -> optimum at the lower bound
    assert fit_temperature(z, y, bounds=(0.1, 10.0)) == pytest.approx(0.1, abs=1e-6)
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(z, y, bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(z, y, bounds=(2.0, 1.0))
    with pytest.raises(ValueError, match="bounds"):
        fit_temperature(z, y, bounds=3)
    with pytest.raises(ValueError, match="out of range"):
        fit_temperature(z, [0, 1, 2])
    with pytest.raises(ValueError, match="inconsistent"):
        fit_temperature(z, [0, 1])


# --------------------------------------------------------------------------- AC / DoC / ATC


def test_ac_and_doc_by_hand():
    ps = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    ys = np.array([0, 1, 1, 0])  # predictions 0,0,1,0 -> Acc_S = 3/4
    pt = np.array([[0.5, 0.5], [0.7, 0.3]])
    assert average_confidence(ps) == pytest.approx(0.75)
    assert average_confidence(pt) == pytest.approx(0.6)
    assert difference_of_confidences(ps, ys, pt) == pytest.approx(0.75 - (0.75 - 0.6))
    assert estimate_accuracy("DoC", ps, ys, pt) == pytest.approx(0.6)
    assert estimate_accuracy("AC", ps, ys, pt) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="classes"):
        difference_of_confidences(ps, ys, np.array([[1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="sum to 1"):
        average_confidence([[0.5, 0.6]])
    with pytest.raises(ValueError, match="negative"):
        average_confidence([[1.5, -0.5]])


def test_atc_threshold_by_hand():
    s = [0.1, 0.2, 0.3, 0.4, 0.5]
    c = [0, 1, 0, 1, 1]  # Acc_S = 3/5 -> 3 samples at or above t -> t = 0.3
    assert atc_threshold(s, c) == 0.3
    assert atc_estimate(s, c, [0.05, 0.3, 0.35, 0.9]) == pytest.approx(0.75)
    # tied scores move together: 0.8 keeps exactly two of four
    assert atc_threshold([0.2, 0.8, 0.2, 0.8], [1, 1, 0, 0]) == 0.8
    # objective tie between t=2 (|2-1|) and t=+inf (|0-1|) -> smallest t
    assert atc_threshold([1.0, 1.0, 2.0, 2.0], [True, False, False, False]) == 2.0
    # accuracy 0 -> nothing accepted; accuracy 1 -> everything accepted
    assert atc_threshold([1.0, 2.0], [0, 0]) == math.inf
    assert atc_estimate([1.0, 2.0], [0, 0], [5.0, 9.0]) == 0.0
    assert atc_threshold([3.0, 1.0, 2.0], [1, 1, 1]) == 1.0


def test_atc_threshold_brute_force():
    rng = np.random.default_rng(4)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        s = np.round(rng.normal(size=n), 1)  # many ties
        c = rng.uniform(size=n) < rng.uniform()
        best_t, best_obj = None, None
        for t in sorted(set(s.tolist())) + [math.inf]:
            obj = abs(int(np.sum(~c & (s >= t))) - int(np.sum(c & (s < t))))
            if best_obj is None or obj < best_obj:
                best_t, best_obj = t, obj
        assert atc_threshold(s, c) == best_t


def test_atc_errors():
    with pytest.raises(ValueError, match="length mismatch"):
        atc_threshold([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0/1"):
        atc_threshold([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        atc_estimate([0.1], [1], [])
    with pytest.raises(ValueError, match="NaN"):
        atc_estimate([0.1], [1], [np.nan])


def test_neg_entropy_scores():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(neg_entropy_scores(p), [0.0, -math.log(2), -math.log(3)], atol=1e-15)
    q = _random_probs(50, 6)
    np.testing.assert_allclose(neg_entropy_scores(q), np.sum(q * np.log(q), axis=1), rtol=1e-12)


def test_estimate_accuracy_dispatch():
    ps, pt = _random_probs(200, 4, seed=1), _random_probs(150, 4, seed=2)
    ys = np.random.default_rng(3).integers(0, 4, 200)
    correct = ps.argmax(1) == ys
    assert estimate_accuracy("ATC-MC", ps, ys, pt) == atc_estimate(ps.max(1), correct, pt.max(1))
    assert estimate_accuracy("ATC-NE", ps, ys, pt) == atc_estimate(neg_entropy_scores(ps), correct,
                                                                  neg_entropy_scores(pt))
    assert estimate_accuracy("COT", ps, ys, pt) == cot_estimate(pt, np.bincount(ys, minlength=4) / 200)
    assert estimate_accuracy("nuclear_norm", ps, ys, pt) == nuclear_norm_score(pt)
    assert ACCURACY_ESTIMATORS == ("AC", "DoC", "ATC-MC", "ATC-NE", "COT", "nuclear_norm")
    with pytest.raises(ValueError, match="method"):
        estimate_accuracy("GDE", ps, ys, pt)


# --------------------------------------------------------------------------- nuclear norm


def test_nuclear_norm_one_hot_balanced_is_one():
    p = np.eye(3)[[0, 1, 2, 0, 1, 2]]  # N=6, K=3, each class twice
    assert nuclear_norm_score(p) == pytest.approx(1.0, abs=1e-12)
    # all rows the same class: ||P||_* = sqrt(6) -> sqrt(6) / sqrt(6 * 3)
    assert nuclear_norm_score(np.eye(3)[[0] * 6]) == pytest.approx(1 / math.sqrt(3), abs=1e-12)
    # N < K: min(N, K) = N
    assert nuclear_norm_score(np.eye(5)[[0, 3]]) == pytest.approx(1.0, abs=1e-12)


def test_nuclear_norm_vs_svd():
    for seed, (n, k) in enumerate([(6, 3), (50, 7), (4, 10)]):
        p = _random_probs(n, k, seed=seed)
        expected = np.linalg.svd(p, compute_uv=False).sum() / math.sqrt(n * min(n, k))
        assert nuclear_norm_score(p) == pytest.approx(expected, rel=1e-12)
        assert 0.0 < nuclear_norm_score(p) < 1.0


# --------------------------------------------------------------------------- COT


def test_cot_three_samples_by_hand():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    # marginal (2/3, 1/3), n=3 -> labels (0, 0, 1); cost 1 - p_i[y_j]:
    # best matching: sample 2 -> class 1 (0.2), samples 0, 1 -> class 0 (0.1 + 0.4); total 0.7
    assert cot_estimate(p, [2 / 3, 1 / 3]) == pytest.approx(1 - 0.7 / 3, abs=1e-12)
    # marginal (1/2, 1/2), n=3 -> floors (1, 1), tie on remainders -> class 0: labels (0, 0, 1) again
    assert cot_estimate(p, [0.5, 0.5]) == pytest.approx(1 - 0.7 / 3, abs=1e-12)
    # marginal (0, 1): all labels 1 -> cost 0.9 + 0.6 + 0.2
    assert cot_estimate(p, [0.0, 1.0]) == pytest.approx(1 - 1.7 / 3, abs=1e-12)


def test_largest_remainder_counts():
    np.testing.assert_array_equal(lf._largest_remainder_counts(np.array([0.5, 0.5]), 3), [2, 1])
    np.testing.assert_array_equal(lf._largest_remainder_counts(np.array([0.2, 0.3, 0.5]), 7), [1, 2, 4])
    np.testing.assert_array_equal(lf._largest_remainder_counts(np.array([0.25, 0.25, 0.5]), 8), [2, 2, 4])
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = rng.dirichlet(np.ones(5))
        n = int(rng.integers(1, 100))
        counts = lf._largest_remainder_counts(m, n)
        assert counts.sum() == n and np.all(np.abs(counts - n * m) < 1)


def _cot_brute_force(p, labels):
    n = len(labels)
    best = min(sum(1 - p[i, perm[i]] for i in range(n)) for perm in itertools.permutations(labels))
    return 1 - best / n


def test_cot_vs_permutation_brute_force():
    rng = np.random.default_rng(8)
    for n in range(1, 7):
        for k in (2, 3, 4):
            p = _random_probs(n, k, seed=int(rng.integers(1 << 30)))
            m = rng.dirichlet(np.ones(k))
            labels = np.repeat(np.arange(k), lf._largest_remainder_counts(m, n))
            assert cot_estimate(p, m) == pytest.approx(_cot_brute_force(p, labels), abs=1e-12)


def _cot_transport_lp(p, counts):
    """Exact W1 with equal sample weights as a transportation LP over (sample, class) pairs."""
    n, k = p.shape
    cost = (1 - p).ravel()
    a_rows = np.kron(np.eye(n), np.ones((1, k)))  # each sample sends 1
    a_cols = np.kron(np.ones((1, n)), np.eye(k))  # class j receives counts[j]
    res = optimize.linprog(cost, A_eq=np.vstack([a_rows, a_cols]), b_eq=np.r_[np.ones(n), counts],
                           bounds=(0, None), method="highs")
    return 1 - res.fun / n


def test_cot_vs_transport_lp_and_batching():
    p = _random_probs(300, 3, seed=5, scale=1.5)
    m = np.array([0.5, 0.3, 0.2])
    full = _cot_transport_lp(p, lf._largest_remainder_counts(m, 300))
    assert cot_estimate(p, m) == pytest.approx(full, abs=1e-9)
    # batching: 300 -> 3 batches of 100; deterministic per seed, close to the full problem
    b0 = cot_estimate(p, m, seed=0, max_batch=100)
    assert b0 == cot_estimate(p, m, seed=0, max_batch=100)
    assert b0 != cot_estimate(p, m, seed=1, max_batch=100)
    assert abs(b0 - full) < 0.03
    # batch size >= n -> no batching, seed irrelevant
    assert cot_estimate(p, m, seed=3, max_batch=300) == pytest.approx(full, abs=1e-9)


def test_cot_default_batching_large_n():
    p = _random_probs(2400, 3, seed=6, scale=1.5)
    m = np.array([0.4, 0.4, 0.2])
    full = _cot_transport_lp(p, lf._largest_remainder_counts(m, 2400))
    est = cot_estimate(p, m, seed=0)  # 2 batches of 1200
    assert abs(est - full) < 0.01


def test_cot_errors():
    p = _random_probs(5, 3)
    with pytest.raises(ValueError, match="3 class frequencies"):
        cot_estimate(p, [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        cot_estimate(p, [2, 1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        cot_estimate(p, [1.5, -0.5, 0.0])
    with pytest.raises(ValueError, match="max_batch"):
        cot_estimate(p, [0.2, 0.3, 0.5], max_batch=0)
    with pytest.raises(ValueError, match="sum to 1"):
        cot_estimate([[0.2, 0.2, 0.2]], [0.2, 0.3, 0.5])
