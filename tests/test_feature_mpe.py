"""Mixture-proportion estimation in feature space (issue 23): each step against an oracle (scikit-learn, NumPy, numbers
worked out by hand) and the whole estimator on synthetic mixtures whose OOD fraction and AUROC are known."""

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from facebench.errors import MetricInputError
from facebench.metrics import feature_mpe as fm
from facebench.metrics import mpe

DIM = 16


def _mixture(rng, n, pi, shift, score, n_ref=3000):
    """Reference (ID) features and scores, and a test set of ``n`` with OOD fraction ``pi``: ID ~ N(0, I), OOD ~
    N(shift, I); ``score(x)`` = the detector (higher = ID). Returns the hidden truth too."""
    x_ref = rng.normal(size=(n_ref, DIM))
    m = int(round(pi * n))
    x_id, x_ood = rng.normal(size=(n - m, DIM)), rng.normal(size=(m, DIM)) + shift
    x_test = np.concatenate([x_id, x_ood])
    s_test = score(x_test, rng)
    truth = roc_auc_score(np.r_[np.ones(n - m), np.zeros(m)], s_test) if 0 < m < n else float("nan")
    return x_ref, score(x_ref, rng), x_test, s_test, truth


def _far_shift():
    """1 SD along the axis the detector reads, 2.5 SD along one it ignores: apart in features, overlapping in score."""
    return 1.0 * np.eye(DIM)[0] + 2.5 * np.eye(DIM)[1]


def _score_first_axis(sign):
    return lambda x, rng: sign * x[:, 0] + 0.5 * rng.normal(size=len(x))


def test_isotonic_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.normal(size=15)
        w = rng.uniform(0.1, 2.0, size=15)
        expected = IsotonicRegression().fit(np.arange(15), y, sample_weight=w).predict(np.arange(15))
        np.testing.assert_allclose(fm.isotonic_increasing(y, w), expected, atol=1e-12)
    # by hand: (3, 1) pool to their weighted mean (3 * 1 + 1 * 3) / 4 = 1.5
    np.testing.assert_allclose(fm.isotonic_increasing([0.0, 3.0, 1.0, 4.0], [1, 1, 3, 1]), [0, 1.5, 1.5, 4])


def test_bbe_kappa_by_hand():
    # counts (10, 10, 10, 70) of n = 100 on 4 bins: CDF (.1, .2, .3, 1) at t = (.25, .5, .75, 1);
    # eps = sqrt(log(40) / 200) = 0.13579; (CDF + 1.01 eps) / t = (.949, .674, .583, 1.137) -> t* = .75, kappa = .3 / .75
    assert fm.bbe_kappa(np.array([10, 10, 10, 70])) == pytest.approx(0.4)
    # a test set with the reference's (uniform) law: kappa near 1 (pi near 0)
    assert fm.bbe_kappa(np.full(20, 50)) == pytest.approx(1.0)
    # vectorised over sets
    np.testing.assert_allclose(fm.bbe_kappa(np.array([[10, 10, 10, 70], [25, 25, 25, 25]])), [0.4, 1.0])


def test_reference_masses_and_the_reference_term_by_hand():
    # 30 ranks on 20 bins: bin b holds ranks ceil(1.5 b) .. ceil(1.5 (b + 1)) - 1, i.e. 2, 1, 2, 1, .. of them
    np.testing.assert_allclose(fm.reference_masses(30, 20), np.tile([2, 1], 10) / 30)
    np.testing.assert_allclose(fm.reference_masses(1000, 20), np.full(20, 0.05))
    # counts (10, 10, 10, 70), reference masses (.1, .2, .3, .4), cumulative (.1, .3, .6, 1); with 4 reference
    # samples eps = sqrt(log 40 / 200) + sqrt(log 40 / 8) = .13579 + .67909; (CDF + 1.01 eps) / F_R = (9.23, 3.41,
    # 1.872, 1.823) -> the last bin: kappa = 1 / 1
    mass = np.array([0.1, 0.2, 0.3, 0.4])
    assert fm.bbe_cut(np.array([10, 10, 10, 70]), ref_mass=mass, n_ref=4) == 3
    assert fm.bbe_kappa(np.array([10, 10, 10, 70]), ref_mass=mass, n_ref=4) == pytest.approx(1.0)
    # without the reference term: (2.37, 1.12, .73, 1.14) -> bin 2: kappa = .3 / .6
    assert fm.bbe_kappa(np.array([10, 10, 10, 70]), ref_mass=mass) == pytest.approx(0.5)


def test_bin_posteriors_by_hand():
    """kappa = .5, uniform reference on 4 bins: raw 1 - .125 / p = (0, .5, 1/6, .75) for p = (.1, .25, .15, .5) (the
    first clipped from -0.25); the isotonic fit pools (.5, 1/6) to their p-weighted mean (.125 + .025) / .4."""
    np.testing.assert_allclose(fm.bin_posteriors(np.array([10, 25, 15, 50]), 0.5), [0.0, 0.375, 0.375, 0.75])
    # with the reference's own masses q = (.2, .2, .3, .3): kappa q / p = (1, .4, 1, .3), raw (0, .6, 0, .7); the fit
    # pools (.6, 0) to .6 * .25 / .4
    np.testing.assert_allclose(fm.bin_posteriors(np.array([10, 25, 15, 50]), 0.5, np.array([0.2, 0.2, 0.3, 0.3])),
                               [0.0, 0.375, 0.375, 0.7])


def test_split_kappa_by_hand():
    """The cut is chosen on one half and read on the other. Half a = (10, 10, 10, 70) picks t* = .75 (above); half
    b = (5, 15, 30, 50): CDF (.05, .2, .5, 1), (CDF + .13716) / t = (.749, .674, .850, 1.137) -> t* = .5. So kappa =
    (F_b(.75) / .75 + F_a(.5) / .5) / 2 = (.5 / .75 + .2 / .5) / 2."""
    a, b = np.array([10, 10, 10, 70]), np.array([5, 15, 30, 50])
    assert fm.bbe_cut(a) == 2 and fm.bbe_cut(b) == 1
    assert fm.split_kappa(a, b) == pytest.approx((0.5 / 0.75 + 0.2 / 0.5) / 2)
    assert fm.split_kappa(b, a) == pytest.approx(fm.split_kappa(a, b))


def test_whitening_is_fitted_on_even_positions_and_ranks_the_odd_ones():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 5)) @ rng.normal(size=(5, 5)) + 3.0
    fit = x[0::2]
    white = fm.whitening(x, shrinkage=0.0)
    np.testing.assert_allclose(np.cov(white(fit), rowvar=False), np.eye(5), atol=1e-8)
    np.testing.assert_allclose(white(fit).mean(axis=0), 0.0, atol=1e-10)
    eig = np.linalg.eigvalsh(np.cov(fit, rowvar=False))
    shrunk = np.sort(np.linalg.eigvalsh(np.cov(fm.whitening(x, shrinkage=1.0)(fit), rowvar=False)))
    np.testing.assert_allclose(shrunk, np.sort(eig / (eig + eig.mean())), rtol=1e-8)
    assert white.held.tolist() == list(range(1, 4000, 2)) and white.n_reference == 4000
    np.testing.assert_allclose(white.reference, white(x[1::2]))


def test_a_pure_in_distribution_set_finds_no_ood_even_with_a_small_reference():
    """Centring on the reference samples that are ranked would put them nearer the centre than any test sample of
    their own law (this very data gave pi = 0.25 for pure ID data that way); with the halves, under 0.03."""
    rng = np.random.default_rng(12)
    x_ref, x_test = rng.normal(size=(600, 32)), rng.normal(size=(2000, 32))
    for seed in range(3):
        est = fm.estimate(fm.whitening(x_ref), x_ref[:, 0], x_test, x_test[:, 0], n_resamples=0, seed=seed)
        assert est["pi"] < 0.03 and est["status"] == mpe.STATUS_PI0


def test_bins_are_cross_fitted():
    """A test sample's own features do not enter the direction of its fold: changing it moves only its own bin."""
    rng = np.random.default_rng(2)
    z_ref, z_test = rng.normal(size=(500, 4)), rng.normal(size=(100, 4)) + 0.5
    fold = np.random.default_rng(7).permutation(np.arange(100) % 5)

    def bins(z):
        return fm.fold_bins(z, z_ref, np.ones((1, 100)), fold[None], np.arange(500)[None], 5, 20, reference=True)

    (got,), (ref_bins,) = bins(z_test)
    moved = z_test.copy()
    moved[0] += 50.0
    (got2,), _ = bins(moved)
    same = fold == fold[0]
    np.testing.assert_array_equal(got2[same][1:], got[same][1:])
    assert not np.array_equal(got2[~same], got[~same])  # the other folds' directions saw the change
    # the bin of u = the rank of the projection among the reference's on that fold's direction (by hand, sample 5)
    d = z_test[fold != fold[5]].mean(axis=0)
    assert got[5] == min(int(np.sum(z_ref @ d < z_test[5] @ d) * 20 // 500), 19)
    # the reference's own bins on each direction: 25 of its 500 samples in each of the 20 bins
    assert ref_bins.shape == (5, 500) and all((np.bincount(b, minlength=20) == 25).all() for b in ref_bins)


def test_deconvolution_with_pure_bins_is_the_plain_auroc():
    """0/1 bin weights (every OOD sample in a weight-1 bin, every ID sample in a weight-0 bin): the estimate is the
    AUROC of the OOD samples against the reference (scikit-learn)."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=400)
    ood = rng.normal(size=60) - 1.0
    ident = rng.normal(size=140)
    sorted_ref = np.sort(ref)
    bins = np.r_[rng.integers(0, 10, 140), rng.integers(10, 20, 60)]
    p = np.r_[fm._greater(sorted_ref, ident), fm._greater(sorted_ref, ood)]
    counts = np.bincount(bins, None, 20).astype(float)
    w = (np.arange(20) >= 10).astype(float)
    ref_mean = rng.uniform(size=20)  # irrelevant: it enters only through (1 - w) = 0 on the OOD bins
    got = fm.deconvolved_auroc(counts, np.bincount(bins, p, 20), ref_mean, w)
    expected = roc_auc_score(np.r_[np.ones(400), np.zeros(60)], np.r_[ref, ood])
    assert got == pytest.approx(expected, abs=1e-12)
    # mixed bins: the ID share of a bin is removed with the reference's mean there
    counts, test_sum = np.array([10.0]), np.array([10 * (0.5 * 0.5 + 0.5 * 0.9)])  # half ID (mean .5), half OOD (.9)
    assert fm.deconvolved_auroc(counts, test_sum, np.array([0.5]), np.array([0.5])) == pytest.approx(0.9)
    assert np.isnan(fm.deconvolved_auroc(counts, test_sum, np.array([0.5]), np.array([0.0])))


@pytest.mark.parametrize("sign, pi", [(1.0, 0.3), (1.0, 0.7), (-1.0, 0.3)])
def test_recovers_pi_and_auroc_on_known_mixtures(sign, pi):
    """OOD scored below the ID (AUROC > 0.5) and above it (AUROC < 0.5, where top-anchored score MPE fails)."""
    rng = np.random.default_rng(4)
    x_ref, r, x_test, s, truth = _mixture(rng, 2000, pi, _far_shift(), _score_first_axis(sign))
    est = fm.estimate(fm.whitening(x_ref), r, x_test, s, n_resamples=200, seed=0)
    assert est["status"] == mpe.STATUS_OK
    assert est["pi"] == pytest.approx(pi, abs=0.05)
    assert est["auroc"] == pytest.approx(truth, abs=0.04)
    lo, hi = est["auroc_ci"]
    assert lo <= truth <= hi and hi - lo < 0.15
    assert (truth < 0.5) == (sign > 0)  # OOD shifted up the axis the score reads: scored above the ID


def test_near_ood_invisible_to_the_score_is_still_identified():
    """The OOD differs only in features the detector ignores: its scores have the ID's law (true AUROC ~ 0.5).
    Score-space MPE finds no OOD; feature-space MPE finds pi and the AUROC near 0.5."""
    rng = np.random.default_rng(5)
    shift = 2.0 * np.eye(DIM)[3]  # the score reads axis 0 only
    x_ref, r, x_test, s, truth = _mixture(rng, 2000, 0.4, shift, _score_first_axis(1.0))
    est = fm.estimate(fm.whitening(x_ref), r, x_test, s, n_resamples=100)
    assert est["pi"] == pytest.approx(0.4, abs=0.05)
    assert est["auroc"] == pytest.approx(truth, abs=0.04)
    assert abs(truth - 0.5) < 0.05
    assert not mpe.estimate_ood_auroc(r, s, n_resamples=0).identifiable


def test_unidentifiable_when_there_is_no_ood_or_too_few_samples():
    rng = np.random.default_rng(6)
    x_ref, r, x_test, s, _ = _mixture(rng, 1000, 0.0, _far_shift(), _score_first_axis(1.0))
    white = fm.whitening(x_ref)
    est = fm.estimate(white, r, x_test, s, n_resamples=50)
    assert est["status"] == mpe.STATUS_PI0 and np.isnan(est["auroc"]) and np.isnan(est["auroc_ci"]).all()
    assert est["pi"] < 0.05
    few = fm.estimate(white, r, x_test[:30], s[:30], n_resamples=50)
    assert few["status"] == mpe.STATUS_FEW and np.isnan(few["auroc"])


def test_intervals_cover_the_truth_on_exchangeable_sets():
    rng = np.random.default_rng(8)
    x_ref = rng.normal(size=(3000, DIM))
    score = _score_first_axis(1.0)
    white, r = fm.whitening(x_ref), score(x_ref, rng)
    hits = []
    for k in range(30):
        _, _, x_test, s, truth = _mixture(rng, 500, 0.5, _far_shift(), score, n_ref=10)
        lo, hi = fm.estimate(white, r, x_test, s, n_resamples=200, seed=k)["auroc_ci"]
        hits.append(lo <= truth <= hi)
    assert np.mean(hits) >= 0.8  # nominal 0.95


def test_seeded_and_bad_input_refused():
    rng = np.random.default_rng(9)
    x_ref, r, x_test, s, _ = _mixture(rng, 300, 0.5, _far_shift(), _score_first_axis(1.0), n_ref=500)
    white = fm.whitening(x_ref)
    first, again = fm.estimate(white, r, x_test, s, seed=3), fm.estimate(white, r, x_test, s, seed=3)
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first if k != "status")
    bad = x_test.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MetricInputError, match="NaN"):
        fm.estimate(white, r, bad, s)
    with pytest.raises(MetricInputError, match="features, the reference"):
        fm.estimate(white, r, x_test[:, :5], s)
    with pytest.raises(MetricInputError, match="test_scores"):
        fm.estimate(white, r, x_test, s[:-1])
    with pytest.raises(MetricInputError, match="ref_scores"):
        fm.estimate(white, r[:-1], x_test, s)
    with pytest.raises(MetricInputError, match="shrinkage"):
        fm.estimate(white, r, x_test, s, options=fm.FeatureMPEOptions(shrinkage=-1.0))
    with pytest.raises(MetricInputError, match="2-D"):
        fm.whitening(np.ones(5))


def test_redrawn_id_part_probabilities_match_a_direct_count():
    """The bootstrap's ``P(r > s) + 0.5 P(r = s)`` against redrawn reference scores (one sort for all resamples)
    equals counting on each resample's draws (the same draws, taken from the same generator)."""
    rng = np.random.default_rng(1)
    ref = np.sort(np.round(rng.normal(size=300), 1))  # ties on purpose
    s = np.round(rng.normal(size=40), 1)
    sizes = np.array([5, 17, 300, 1])
    got = fm._greater_than_redrawn(ref, s, sizes, np.random.default_rng(3))
    draws = np.split(np.random.default_rng(3).integers(0, 300, sizes.sum()), np.cumsum(sizes)[:-1])
    for b, part in enumerate(draws):
        v = ref[part]
        np.testing.assert_allclose(got[b], [np.mean(v > x) + 0.5 * np.mean(v == x) for x in s])


def test_resampled_bins_equal_the_full_ranks():
    """The bootstrap's bins from nb - 1 order statistics equal ``floor(rank nb / N)`` of the full ranks among the
    reference projections on each fold's direction (directions recomputed here from the resample's weights)."""
    rng = np.random.default_rng(0)
    n, k, nb = 300, 5, 20
    z, z_ref = rng.normal(size=(n, 16)), rng.normal(size=(1000, 16))
    weight = rng.multinomial(n, np.full(n, 1 / n), size=7).astype(float)
    folds = rng.permuted(np.tile(np.arange(n) % k, (7, 1)), axis=1)
    draws = np.vstack([np.arange(1000), rng.integers(0, 1000, (6, 1000))])  # the reference itself, then resamples
    got = fm.fold_bins(z, z_ref, weight, folds, draws, k, nb)
    for b in range(7):
        d = np.array([(weight[b][folds[b] != j] @ z[folds[b] != j]) / weight[b][folds[b] != j].sum()
                      for j in range(k)])
        rank = np.array([np.sum(z_ref[draws[b]] @ d[folds[b][i]] < z[i] @ d[folds[b][i]]) for i in range(n)])
        np.testing.assert_array_equal(got[b], np.minimum(rank * nb // 1000, nb - 1))


def test_an_all_ood_set_is_read_against_the_reference():
    """pi = 1: no ID part to redraw; the interval reflects the OOD samples and the whole reference (it spanned
    almost [0, 1] when the resamples drew a 1-sample ID part)."""
    rng = np.random.default_rng(13)
    x_ref, x_test = rng.normal(size=(2000, DIM)), rng.normal(size=(800, DIM)) + 4.0 * np.eye(DIM)[1]
    r, s = x_ref[:, 0] + 0.5 * rng.normal(size=2000), x_test[:, 0] + 0.5 * rng.normal(size=800) - 0.5
    est = fm.estimate(fm.whitening(x_ref), r, x_test, s, n_resamples=200)
    truth = roc_auc_score(np.r_[np.ones(2000), np.zeros(800)], np.r_[r, s])
    assert est["pi"] == pytest.approx(1.0, abs=0.02)
    lo, hi = est["auroc_ci"]
    assert est["auroc"] == pytest.approx(truth, abs=0.02) and lo <= truth <= hi and hi - lo < 0.1


@pytest.mark.parametrize("n_ref", [60, 100, 1000])
def test_pure_in_distribution_finds_no_ood_with_small_references(n_ref):
    """Pure ID data is never answered with a number: with few reference samples their own sampling error makes it
    look partly OOD (pi 0.24 to 0.33 with 30 to 50 ranked samples here), which the reference's resolution flags."""
    rng = np.random.default_rng(14)
    for seed in range(5):
        x_ref, x_test = rng.normal(size=(n_ref, DIM)), rng.normal(size=(1000, DIM))
        est = fm.estimate(fm.whitening(x_ref), x_ref[:, 0], x_test, x_test[:, 0], n_resamples=0, seed=seed)
        assert est["status"] in (mpe.STATUS_PI0, fm.STATUS_SMALL_REFERENCE), est["pi"]
        assert est["pi"] < fm.reference_resolution(n_ref // 2)
    with pytest.raises(MetricInputError, match="2 x n_bins"):
        fm.estimate(fm.whitening(x_ref[:30]), x_ref[:30, 0], x_test, x_test[:, 0])


def test_pi_intervals_and_small_id_parts_are_covered():
    """The interval of pi, and the AUROC's when the set's ID part is small (pi = 0.9 of 300: its 30 ID samples make
    the truth noisy, which the redraw of the ID part carries into the interval)."""
    rng = np.random.default_rng(15)
    x_ref = rng.normal(size=(3000, DIM))
    score = _score_first_axis(1.0)
    white, r = fm.whitening(x_ref), score(x_ref, rng)
    pi_hits, auroc_hits = [], []
    for k in range(30):
        _, _, x_test, s, truth = _mixture(rng, 300, 0.9, _far_shift(), score, n_ref=10)
        est = fm.estimate(white, r, x_test, s, n_resamples=200, seed=k)
        pi_hits.append(est["pi_ci"][0] <= 0.9 <= est["pi_ci"][1])
        auroc_hits.append(est["auroc_ci"][0] <= truth <= est["auroc_ci"][1])
    assert np.mean(pi_hits) >= 0.8 and np.mean(auroc_hits) >= 0.8  # nominal 0.95
