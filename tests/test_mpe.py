"""Oracle tests of facebench.metrics.mpe: mixture-proportion estimation of an OOD detector's AUROC on synthetic
mixtures whose OOD fraction and AUROC are known analytically, the unidentifiable cases, and the shift
indicators against scipy.stats."""

import numpy as np
import pytest
from scipy import integrate, stats

from facebench.errors import MetricInputError
from facebench.metrics import mpe, ood

# ID scores ~ Beta(5, 2) on [0, 1]; OOD ~ Beta(2, 5) squeezed onto [0, 0.6]: the ID's top region (> 0.6, about
# 77% of ID mass) holds no OOD mass, the anchor assumption of the estimators.
F_ID = stats.beta(5, 2)
F_OOD = stats.beta(2, 5, scale=0.6)
TRUE_AUROC = integrate.quad(lambda x: F_ID.pdf(x) * F_OOD.cdf(x), 0, 1)[0]  # P(s_id > s_ood)
TRUE_FPR95 = float(F_OOD.sf(F_ID.ppf(0.05)))


def _mixtures(pi, n, sets, rng, f_id=F_ID, f_ood=F_OOD):
    m = int(round(pi * n))
    return [np.concatenate([f_id.rvs(n - m, random_state=rng), f_ood.rvs(m, random_state=rng)]) for _ in range(sets)]


@pytest.fixture(scope="module")
def s_id():
    return F_ID.rvs(5000, random_state=np.random.default_rng(0))


# stated tolerances (mean absolute error over 10 test sets of 3,000 scores, ID reference of 5,000):
# pi within 0.02 (bbe) / 0.03 (bbe_any) / 0.04 (scott); AUROC and FPR@95 within 0.03 (bbe_any, with more candidate
# anchors and so more downward bias of 1 - pi: 0.05) for pi >= 0.3, 0.12 at pi = 0.1, where only
# 300 OOD scores exist and the linear deconvolution amplifies noise 1 / pi times
TOL = {"bbe": 0.02, "scott": 0.04, "bbe_any": 0.03}


@pytest.mark.parametrize("method", ["bbe", "scott", "bbe_any"])
@pytest.mark.parametrize("pi", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_recovers_pi_auroc_fpr(s_id, method, pi):
    sets = _mixtures(pi, 3000, 10, np.random.default_rng(int(pi * 100)))
    r = mpe.estimate_many(s_id, sets, method=method, n_resamples=0)
    assert (r["status"] == "ok").all()
    assert np.mean(np.abs(r["pi"] - pi)) <= TOL[method]
    tol = 0.12 if pi < 0.2 else (0.05 if method == "bbe_any" else 0.03)
    assert np.mean(np.abs(r["auroc"] - TRUE_AUROC)) <= tol
    assert np.mean(np.abs(r["fpr95"] - TRUE_FPR95)) <= tol


def test_tail_estimator_with_an_ood_free_top_tenth(s_id):
    sets = _mixtures(0.5, 3000, 10, np.random.default_rng(5))
    r = mpe.estimate_many(s_id, sets, method="tail", n_resamples=0)
    assert np.nanmean(np.abs(r["pi"] - 0.5)) <= 0.06
    assert np.nanmean(np.abs(r["auroc"] - TRUE_AUROC)) <= 0.03


def test_gaussian_mixture_auroc():
    """Unit-variance Gaussians 3 apart: AUROC = Phi(3 / sqrt 2); the OOD tail at the top ID scores is negligible."""
    rng = np.random.default_rng(1)
    s_id = rng.normal(3, 1, 5000)
    sets = [np.concatenate([rng.normal(3, 1, 1500), rng.normal(0, 1, 1500)]) for _ in range(10)]
    r = mpe.estimate_many(s_id, sets, n_resamples=0)
    assert np.mean(np.abs(r["pi"] - 0.5)) <= 0.03
    assert np.mean(np.abs(r["auroc"] - stats.norm.cdf(3 / np.sqrt(2)))) <= 0.02


def test_binned_metrics_equal_the_ood_module_on_discrete_scores():
    """On scores that live on the grid's bins, the pmf formulas are exactly ood.auroc / fpr_at_tpr / aupr."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 50, 2000) + 0.5
    b = rng.integers(0, 30, 800) + 0.5
    counts = mpe.bin_counts(np.arange(1.0, 50.0), [a, b])
    pa, pb = counts[0] / counts[0].sum(), counts[1] / counts[1].sum()
    m = mpe.metrics_from_pmfs(pa, pb, len(b) / (len(a) + len(b)))
    assert m["auroc"] == pytest.approx(ood.auroc(a, b), abs=1e-12)
    assert m["fpr95"] == pytest.approx(ood.fpr_at_tpr(a, b, rule="first"), abs=1e-12)
    assert m["aupr_in"] == pytest.approx(ood.aupr(a, b, "known", "ap"), abs=1e-12)
    assert m["aupr_out"] == pytest.approx(ood.aupr(a, b, "unknown", "ap"), abs=1e-12)


def test_deconvolution_is_a_valid_distribution():
    rng = np.random.default_rng(3)
    p_id = rng.dirichlet(np.ones(40), size=5)
    p_test = rng.dirichlet(np.ones(40), size=5)
    p_ood = mpe.deconvolve(p_id, p_test, np.array([0.1, 0.3, 0.5, 0.7, 0.9]))
    assert (p_ood >= -1e-12).all()
    assert np.allclose(p_ood.sum(-1), 1.0)
    exact = mpe.deconvolve(np.full(4, 0.25), 0.6 * np.full(4, 0.25) + 0.4 * np.array([0.7, 0.3, 0, 0]), 0.4)
    assert np.allclose(exact, [0.7, 0.3, 0, 0])


def test_interval_coverage_near_nominal(s_id):
    """Over 200 repeated draws (pi = 0.5, 1,000 scores), the 95% intervals resampling both ID and test scores
    cover the true AUROC and pi in >= 85% of the sets (a fast check: 100 resamples)."""
    sets = _mixtures(0.5, 1000, 200, np.random.default_rng(4))
    r = mpe.estimate_many(s_id, sets, n_resamples=100, seed=1)
    ok = r["status"] == "ok"
    assert ok.mean() >= 0.95
    lo, hi = r["auroc_ci"][ok].T
    assert np.mean((lo <= TRUE_AUROC) & (TRUE_AUROC <= hi)) >= 0.85
    lo, hi = r["pi_ci"][ok].T
    assert np.mean((lo <= 0.5) & (0.5 <= hi)) >= 0.85
    assert np.all(r["auroc_ci"][ok, 1] - r["auroc_ci"][ok, 0] < 0.2)


def test_unidentifiable_cases_are_flagged_instead_of_a_number(s_id):
    rng = np.random.default_rng(6)
    pure_id = F_ID.rvs(2000, random_state=rng)  # pi = 0
    tiny = _mixtures(0.5, 30, 1, rng)[0]
    r = mpe.estimate_many(s_id, [pure_id, tiny], n_resamples=20)
    assert list(r["status"]) == [mpe.STATUS_PI0, mpe.STATUS_FEW]
    assert np.isnan(r["auroc"]).all() and np.isnan(r["auroc_ci"]).all()
    # OOD N(-1, 1) against ID N(0, 1) at pi = 0.9: OOD mass reaches the ID's top scores (no OOD-free anchor);
    # the ratio keeps falling to the top and most such sets are flagged
    g_id = rng.normal(0, 1, 5000)
    overlap = [np.concatenate([rng.normal(0, 1, 300), rng.normal(-1, 1, 2700)]) for _ in range(20)]
    flagged = mpe.estimate_many(g_id, overlap, n_resamples=0)["status"] == mpe.STATUS_IRRED
    assert flagged.mean() >= 0.6
    report = mpe.estimate_ood_auroc(g_id, overlap[int(np.argmax(flagged))], n_resamples=0)
    assert not report.identifiable and report.reason == mpe.STATUS_IRRED
    assert np.isnan(report.auroc) and "no AUROC estimate" in report.summary()


def test_anchor_mixtures_are_rarely_flagged(s_id):
    rng = np.random.default_rng(10)
    sets = [s for pi in (0.1, 0.5, 0.9) for n in (300, 3000) for s in _mixtures(pi, n, 10, rng)]
    status = mpe.estimate_many(s_id, sets, n_resamples=0)["status"]
    assert np.mean(status != "ok") <= 0.05


def test_single_set_report(s_id):
    st = _mixtures(0.4, 2000, 1, np.random.default_rng(7))[0]
    rep = mpe.estimate_ood_auroc(s_id, st, n_resamples=200)
    assert rep.identifiable and rep.reason == "ok"
    assert abs(rep.pi - 0.4) < 0.05 and abs(rep.auroc - TRUE_AUROC) < 0.03
    lo, hi = rep.intervals["auroc"]
    assert lo <= rep.auroc <= hi
    assert rep.p_test.sum() == pytest.approx(1) and rep.p_ood.sum() == pytest.approx(1)
    assert "estimated AUROC" in rep.summary() and "OOD fraction" in rep.summary()
    # the figure's decomposition: (1 - pi) F_id + pi F_ood ~ F_test
    mixed = np.cumsum((1 - rep.pi) * rep.p_id + rep.pi * rep.p_ood)
    assert np.abs(mixed - np.cumsum(rep.p_test)).max() < 0.03


def test_bad_inputs_say_what_to_do():
    with pytest.raises(MetricInputError, match="at least 20"):
        mpe.estimate_ood_auroc(np.arange(5.0), np.arange(100.0))
    with pytest.raises(MetricInputError, match="method"):
        mpe.estimate_many(np.arange(100.0), [np.arange(10.0)], method="nope")
    with pytest.raises(MetricInputError):
        mpe.estimate_ood_auroc(np.arange(100.0), np.array([1.0, np.nan]))


def test_shift_indicators_against_scipy():
    rng = np.random.default_rng(8)
    a, b = rng.normal(0, 1, 700), np.concatenate([rng.normal(0, 1, 200), rng.normal(-2, 0.5, 100)])
    assert mpe.ks_distance(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert mpe.wasserstein1(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-10)
    assert mpe.energy_distance(a, b) == pytest.approx(stats.energy_distance(a, b), rel=1e-10)
    ind = mpe.shift_indicators(a, b)
    assert set(ind) == set(mpe.SHIFT_INDICATORS)
    t95 = np.quantile(a, 0.05, method="inverted_cdf")
    assert ind["frac_below_t95"] == pytest.approx(np.mean(b < t95))
    assert ind["mixture_auroc"] == pytest.approx(ood.auroc(a, b), abs=1e-12)
    same = mpe.shift_indicators(a, a)
    assert same["ks"] == 0 and same["wasserstein"] == 0 and same["mixture_auroc"] == pytest.approx(0.5)


def test_mixture_auroc_identity_recovers_auroc_given_pi():
    """mixture_auroc = (1 - pi) / 2 + pi AUROC, so the shift indicator and MPE agree given the true pi."""
    rng = np.random.default_rng(9)
    s_id = F_ID.rvs(200_000, random_state=rng)
    st = _mixtures(0.3, 200_000, 1, rng)[0]
    mix = mpe.shift_indicators(s_id, st)["mixture_auroc"]
    assert (mix - 0.7 / 2) / 0.3 == pytest.approx(TRUE_AUROC, abs=0.005)
