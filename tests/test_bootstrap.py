"""Bootstrap: distribution vs naive index resampling, seeding, coverage, clusters, NaN handling."""

import dataclasses

import numpy as np
import pytest

from facebench.metrics import bootstrap as bs
from facebench.metrics.bootstrap import (
    MAX_NAN_FRACTION,
    ConfidenceInterval,
    bootstrap_confusion_matrices,
    bootstrap_sample_means,
    bootstrap_statistic,
    nan_fraction,
    percentile_interval,
    strata_sums,
    stratify,
)
from facebench.metrics.calibration import expected_calibration_error, make_ece_statistic
from facebench.metrics.classification import (
    accuracy_from_cm,
    confusion_matrix,
    mean_class_accuracy_from_cm,
)


def _data(n=300, c=4, acc=0.75, seed=0, p=None):
    rng = np.random.default_rng(seed)
    y = rng.choice(c, size=n, p=p)
    wrong = (y + rng.integers(1, c, size=n)) % c
    yp = np.where(rng.random(n) < acc, y, wrong)
    return y, yp


def _naive_cms(y, yp, c, idx):
    """Confusion matrices of explicit index resamples idx (B, m) -- independent of the multinomial path."""
    b = idx.shape[0]
    key = np.arange(b)[:, None] * c * c + y[idx] * c + yp[idx]
    return np.bincount(key.ravel(), minlength=b * c * c).reshape(b, c, c)


def test_sample_bootstrap_matches_naive_index_resampling():
    c, n, b = 4, 300, 4000
    y, yp = _data(n, c, p=[0.4, 0.3, 0.2, 0.1])
    cms = bootstrap_confusion_matrices(y, yp, c, n_resamples=b, seed=1)
    assert cms.shape == (b, c, c) and cms.dtype == np.int64
    assert (cms.sum(axis=(1, 2)) == n).all()
    naive = _naive_cms(y, yp, c, np.random.default_rng(2).integers(0, n, size=(b, n)))
    for fn in (accuracy_from_cm, mean_class_accuracy_from_cm):
        fast, slow = fn(cms), fn(naive)
        assert fast.mean() == pytest.approx(slow.mean(), abs=0.002)
        assert fast.std() == pytest.approx(slow.std(), rel=0.08)
    # centred on the observed statistic
    cm = confusion_matrix(y, yp, c)
    assert accuracy_from_cm(cms).mean() == pytest.approx(float(accuracy_from_cm(cm)), abs=0.002)
    # per-cell means equal the observed counts
    np.testing.assert_allclose(cms.mean(axis=0), cm, atol=1.0)


def test_seeding_is_reproducible():
    y, yp = _data()
    a = bootstrap_confusion_matrices(y, yp, 4, n_resamples=50, seed=7)
    np.testing.assert_array_equal(a, bootstrap_confusion_matrices(y, yp, 4, n_resamples=50, seed=7))
    assert not np.array_equal(a, bootstrap_confusion_matrices(y, yp, 4, n_resamples=50, seed=8))
    cl = np.arange(y.size) // 5
    a = bootstrap_confusion_matrices(y, yp, 4, n_resamples=50, seed=7, clusters=cl)
    np.testing.assert_array_equal(a, bootstrap_confusion_matrices(y, yp, 4, n_resamples=50, seed=7, clusters=cl))
    assert not np.array_equal(a, bootstrap_confusion_matrices(y, yp, 4, n_resamples=50, seed=8, clusters=cl))
    v = (y == yp).astype(float)
    for kw in ({}, {"clusters": cl}):
        m = bootstrap_sample_means(v, 50, seed=3, **kw)
        np.testing.assert_array_equal(m, bootstrap_sample_means(v, 50, seed=3, **kw))
        assert not np.array_equal(m, bootstrap_sample_means(v, 50, seed=4, **kw))
        s = bootstrap_statistic(lambda idx: v[idx].mean(axis=1), y.size, 50, seed=3, **kw)
        np.testing.assert_array_equal(s, bootstrap_statistic(lambda idx: v[idx].mean(axis=1), y.size, 50, seed=3, **kw))
        assert not np.array_equal(s, bootstrap_statistic(lambda idx: v[idx].mean(axis=1), y.size, 50, seed=4, **kw))


def test_percentile_ci_coverage_near_nominal():
    # 200 independent data sets of 200 samples with true accuracy 0.8; 95% percentile CI should cover ~95%
    rng = np.random.default_rng(123)
    c, n, true_acc, reps = 3, 200, 0.8, 200
    covered = 0
    for r in range(reps):
        y = rng.integers(0, c, size=n)
        yp = np.where(rng.random(n) < true_acc, y, (y + 1) % c)
        acc = accuracy_from_cm(bootstrap_confusion_matrices(y, yp, c, n_resamples=400, seed=r))
        lo, hi = percentile_interval(acc, 0.95)
        covered += lo <= true_acc <= hi
    assert 0.9 <= covered / reps <= 0.99


def test_cluster_bootstrap_wider_with_correlated_clusters():
    # 40 subjects x 25 images; every image of a subject is either all right or all wrong
    rng = np.random.default_rng(4)
    k, m, c = 40, 25, 3
    clusters = np.repeat(np.arange(k), m)
    y = rng.integers(0, c, size=k * m)
    subject_ok = rng.random(k) < 0.7
    yp = np.where(subject_ok[clusters], y, (y + 1) % c)
    acc_s = accuracy_from_cm(bootstrap_confusion_matrices(y, yp, c, 2000, seed=0))
    acc_c = accuracy_from_cm(bootstrap_confusion_matrices(y, yp, c, 2000, seed=0, clusters=clusters))
    lo_s, hi_s = percentile_interval(acc_s)
    lo_c, hi_c = percentile_interval(acc_c)
    assert hi_c - lo_c > 3 * (hi_s - lo_s)
    # cluster-resampled accuracy has std ~ sqrt(p(1-p)/K) (the subject is the unit)
    p = subject_ok.mean()
    assert acc_c.std() == pytest.approx(np.sqrt(p * (1 - p) / k), rel=0.15)
    # cluster-resampled matrices count all samples of the drawn clusters (equal sizes -> K*m)
    cms = bootstrap_confusion_matrices(y, yp, c, 20, seed=0, clusters=clusters)
    assert (cms.sum(axis=(1, 2)) == k * m).all()


def test_cluster_matrices_match_naive_cluster_resampling():
    # unequal cluster sizes; compare with explicit resampling of clusters
    rng = np.random.default_rng(9)
    sizes = rng.integers(1, 12, size=30)
    clusters = np.repeat(np.array([f"s{i:02d}" for i in range(30)]), sizes)  # string ids
    n, c, b = clusters.size, 3, 3000
    y = rng.integers(0, c, size=n)
    ok = rng.random(30) < 0.6
    yp = np.where(ok[np.repeat(np.arange(30), sizes)] | (rng.random(n) < 0.3), y, (y + 2) % c)
    fast = accuracy_from_cm(bootstrap_confusion_matrices(y, yp, c, b, seed=0, clusters=clusters))
    members = [np.flatnonzero(clusters == f"s{i:02d}") for i in range(30)]
    r2 = np.random.default_rng(1)
    slow = []
    for _ in range(b):
        idx = np.concatenate([members[j] for j in r2.integers(0, 30, size=30)])
        slow.append(np.mean(y[idx] == yp[idx]))
    slow = np.array(slow)
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.004)
    assert fast.std() == pytest.approx(slow.std(), rel=0.1)
    # the same distribution via the other two entry points
    v = (y == yp).astype(float)
    means = bootstrap_sample_means(v, b, seed=0, clusters=clusters)
    stat = bootstrap_statistic(lambda idx: v[idx].mean(axis=1), n, b, seed=0, clusters=clusters)
    for other in (means, stat):
        assert other.mean() == pytest.approx(slow.mean(), abs=0.004)
        assert other.std() == pytest.approx(slow.std(), rel=0.1)


def test_one_sample_per_cluster_matches_sample_bootstrap():
    c, n, b = 4, 250, 4000
    y, yp = _data(n, c, p=[0.4, 0.3, 0.2, 0.1], seed=5)
    sample = bootstrap_confusion_matrices(y, yp, c, b, seed=0)
    clustered = bootstrap_confusion_matrices(y, yp, c, b, seed=1, clusters=np.arange(n)[::-1] * 3)
    for fn in (accuracy_from_cm, mean_class_accuracy_from_cm):
        assert fn(clustered).mean() == pytest.approx(fn(sample).mean(), abs=0.002)
        assert fn(clustered).std() == pytest.approx(fn(sample).std(), rel=0.08)


def test_sample_means_match_accuracy_bootstrap():
    c, n, b = 3, 400, 3000
    y, yp = _data(n, c, seed=6)
    v = (y == yp).astype(float)
    acc = accuracy_from_cm(bootstrap_confusion_matrices(y, yp, c, b, seed=0))
    for chunk in (None, 7):
        means = bootstrap_sample_means(v, b, seed=1, chunk=chunk)
        assert means.shape == (b,) and means.dtype == np.float64
        assert means.mean() == pytest.approx(acc.mean(), abs=0.002)
        assert means.std() == pytest.approx(acc.std(), rel=0.08)
    stat = bootstrap_statistic(lambda idx: v[idx].mean(axis=1), n, b, seed=2, chunk=100)
    assert stat.mean() == pytest.approx(acc.mean(), abs=0.002)
    assert stat.std() == pytest.approx(acc.std(), rel=0.08)


def test_bootstrap_statistic_ece():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=120)
    y = rng.integers(0, 3, size=120)
    calls = []

    def stat(idx):
        calls.append(idx.shape)
        return make_ece_statistic(y, probs)(idx)

    ece = bootstrap_statistic(stat, 120, n_resamples=100, seed=0, chunk=32)
    assert ece.shape == (100,) and np.isfinite(ece).all()
    assert calls == [(32, 120), (32, 120), (32, 120), (4, 120)]
    lo, hi = percentile_interval(ece)
    assert lo <= expected_calibration_error(y, probs) + 0.05 and lo < hi
    # the resampled indices are exactly those seen by a loop over the same stream
    rng2 = np.random.default_rng(0)
    idx0 = rng2.integers(0, 120, size=(32, 120))
    np.testing.assert_allclose(ece[:32], [expected_calibration_error(y[i], probs[i]) for i in idx0], atol=1e-14)


def test_nan_resamples_in_mean_class_accuracy():
    # class 3 has a single sample among 50: a resample misses it with prob (49/50)^50 ~ 0.36
    y = np.array([0] * 20 + [1] * 15 + [2] * 14 + [3])
    yp = y.copy()
    yp[::4] = (yp[::4] + 1) % 4
    mca = mean_class_accuracy_from_cm(bootstrap_confusion_matrices(y, yp, 4, 1000, seed=0))
    frac = nan_fraction(mca)
    assert 0.25 < frac < 0.47 and frac > MAX_NAN_FRACTION
    lo, hi = percentile_interval(mca)
    assert np.isfinite([lo, hi]).all() and lo <= hi
    finite = mca[~np.isnan(mca)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(finite, [2.5, 97.5])))
    ci = ConfidenceInterval.from_samples(mca)
    assert (ci.low, ci.high) == pytest.approx((lo, hi)) and ci.n_resamples == 1000
    # the unresampled metric over the same classes is well defined; restricting classes removes the NaNs
    assert nan_fraction(mean_class_accuracy_from_cm(
        bootstrap_confusion_matrices(y, yp, 4, 200, seed=0), classes=[0, 1, 2])) == 0.0


def test_percentile_interval_basics():
    s = np.arange(101, dtype=float)
    assert percentile_interval(s) == pytest.approx((2.5, 97.5))
    assert percentile_interval(s, 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval(np.concatenate([s, [np.nan] * 5])) == pytest.approx((2.5, 97.5))
    lo, hi = percentile_interval([np.nan, np.nan])
    assert np.isnan(lo) and np.isnan(hi)
    assert nan_fraction([1.0, np.nan, 2.0, np.nan]) == 0.5
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="confidence"):
            percentile_interval(s, bad)
    with pytest.raises(ValueError, match="empty"):
        percentile_interval([])
    with pytest.raises(ValueError, match="empty"):
        nan_fraction([])


def test_confidence_interval_dataclass():
    ci = ConfidenceInterval(low=np.float64(0.1), high=0.2, confidence=0.95, n_resamples=1000, unit="subject")
    d = ci.to_dict()
    assert d == {"low": 0.1, "high": 0.2, "confidence": 0.95, "n_resamples": 1000,
                 "method": "percentile", "unit": "subject"}
    assert type(d["low"]) is float
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.low = 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bootstrap_confusion_matrices([0, 1], [0], 2), "inconsistent"),
        (lambda: bootstrap_confusion_matrices([0, 3], [0, 1], 2), "out of range"),
        (lambda: bootstrap_confusion_matrices([0, 1], [0, 1], 2, n_resamples=0), "n_resamples"),
        (lambda: bootstrap_confusion_matrices([0, 1], [0, 1], 2, clusters=[0]), "clusters"),
        (lambda: bootstrap_confusion_matrices([0, 1], [0, 1], 2, clusters=[0.0, np.nan]), "NaN"),
        (lambda: bootstrap_sample_means([], 10), "empty"),
        (lambda: bootstrap_sample_means([1.0, np.nan], 10), "NaN"),
        (lambda: bootstrap_sample_means([1.0, 2.0], 10, chunk=0), "chunk"),
        (lambda: bootstrap_statistic(lambda idx: idx.mean(axis=1), 0, 10), "n"),
        (lambda: bootstrap_statistic(lambda idx: idx.mean(axis=0), 5, 10), "one value per resample"),
        (lambda: bootstrap_statistic(None, 5, 10), "callable"),
        (lambda: stratify([1.0, 2.0], [0, 2], n_columns=2), "out of range"),
        (lambda: stratify([1.0, 2.0], [0], n_columns=2), "inconsistent"),
        (lambda: stratify([1.0, 2.0], max_strata=0), "max_strata"),
        (lambda: strata_sums(stratify([1.0, 2.0]), 0, np.random.default_rng(0)), "n_resamples"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- count bootstrap over strata


def test_stratify_exact_when_few_distinct_values():
    rng = np.random.default_rng(0)
    v = rng.choice([0.0, 0.25, 1.5, 7.0], size=5000)
    cols = rng.integers(0, 3, size=5000)
    st = stratify(v, cols, n_columns=3)
    assert st.exact and st.n == 5000 and st.sizes.size == 12
    for g in range(st.sizes.size):  # each stratum is one (column, value) pair with its exact count
        assert st.sizes[g] == np.sum((cols == st.column[g]) & (v == st.mean[g]))
    assert (st.var == 0).all()


def test_stratify_cuts_sorted_strata_of_near_equal_size():
    rng = np.random.default_rng(1)
    v = rng.exponential(size=10_000)
    cols = (rng.random(10_000) < 0.3).astype(int)
    st = stratify(v, cols, n_columns=2, max_strata=100)
    assert not st.exact and st.n == 10_000
    assert 100 <= st.sizes.size <= 102 and st.sizes.min() >= 95 and st.sizes.max() <= 105
    assert (np.diff(st.column) >= 0).all()
    for c in (0, 1):
        x = np.sort(v[cols == c])
        sizes = st.sizes[st.column == c]
        bounds = np.cumsum(sizes)
        np.testing.assert_allclose(st.mean[st.column == c], [x[b - s:b].mean() for s, b in zip(sizes, bounds)])
        np.testing.assert_allclose(st.var[st.column == c], [x[b - s:b].var() for s, b in zip(sizes, bounds)],
                                   atol=1e-15)
    # law of total variance: the strata keep the overall mean and variance
    m = np.sum(st.sizes * st.mean) / st.n
    assert m == pytest.approx(v.mean(), rel=1e-12)
    assert np.sum(st.sizes * (st.var + (st.mean - m) ** 2)) / st.n == pytest.approx(v.var(), rel=1e-10)


def test_strata_sums_exact_law_matches_naive_index_resampling():
    rng = np.random.default_rng(2)
    n, b = 400, 4000
    v = rng.choice([0.0, 1.0, 3.0], size=n, p=[0.7, 0.2, 0.1])
    sums = strata_sums(stratify(v), b, np.random.default_rng(0))[:, 0]
    naive = v[np.random.default_rng(1).integers(0, n, size=(b, n))].sum(axis=1)
    assert sums.mean() == pytest.approx(naive.mean(), rel=0.01)
    assert sums.std() == pytest.approx(naive.std(), rel=0.06)
    assert np.percentile(sums, [2.5, 50, 97.5]) == pytest.approx(np.percentile(naive, [2.5, 50, 97.5]), rel=0.03)
    assert np.all(sums == np.rint(sums))  # sums of the three values' counts: whole numbers here


def test_strata_sums_inexact_keeps_mean_variance_and_percentiles():
    # 2000 skewed values in 8 strata only: the within-stratum spread is drawn from a normal law
    rng = np.random.default_rng(3)
    n, b = 2000, 20_000
    v = rng.lognormal(0.0, 1.0, size=n)
    st = stratify(v, max_strata=8)
    assert not st.exact and st.sizes.size == 8
    means = strata_sums(st, b, np.random.default_rng(0))[:, 0] / n
    sd = v.std() / np.sqrt(n)  # the index bootstrap's exact standard deviation of the mean
    assert means.mean() == pytest.approx(v.mean(), abs=4 * sd / np.sqrt(b))
    assert means.std() == pytest.approx(sd, rel=0.02)
    naive = v[np.random.default_rng(1).integers(0, n, size=(4000, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    nlo, nhi = np.percentile(naive, [2.5, 97.5])
    assert abs(lo - nlo) < 0.1 * (nhi - nlo) and abs(hi - nhi) < 0.1 * (nhi - nlo)


def test_strata_sums_do_not_depend_on_chunk():
    rng = np.random.default_rng(4)
    for v in (rng.integers(0, 5, 300).astype(float), rng.normal(size=3000)):
        st = stratify(v, max_strata=64)
        whole = strata_sums(st, 50, np.random.default_rng(9))
        np.testing.assert_array_equal(whole, strata_sums(st, 50, np.random.default_rng(9), chunk=7))
        assert not np.array_equal(whole, strata_sums(st, 50, np.random.default_rng(10)))
    np.testing.assert_array_equal(bootstrap_sample_means(v, 40, seed=1), bootstrap_sample_means(v, 40, seed=1, chunk=3))


def test_sample_means_with_infinities_follow_index_resampling():
    n = 50
    v = np.r_[np.inf, np.linspace(0.0, 1.0, n - 1)]
    means = bootstrap_sample_means(v, 4000, seed=0)
    p_drawn = 1 - (1 - 1 / n) ** n  # a resample draws the infinite sample at least once
    assert np.mean(np.isinf(means)) == pytest.approx(p_drawn, abs=0.03)
    assert np.isfinite(means[~np.isinf(means)]).all()
    both = bootstrap_sample_means(np.r_[np.inf, -np.inf, np.zeros(3)], 500, seed=0)
    assert np.isnan(both).any() and np.isposinf(both).any() and np.isneginf(both).any()


def test_bootstrap_statistic_chunks_by_memory_budget(monkeypatch):
    v = np.arange(120, dtype=float)
    calls = []

    def stat(idx):
        calls.append(idx.shape)
        return v[idx].mean(axis=1)

    monkeypatch.setattr(bs, "MEMORY_BUDGET", 120 * 32 * 10)  # 10 resamples of 120 int64 indices (+ temporaries)
    bootstrap_statistic(stat, 120, n_resamples=25, seed=0)
    assert calls == [(10, 120), (10, 120), (5, 120)]
    monkeypatch.setattr(bs, "MEMORY_BUDGET", 256 * 2**20)
    calls.clear()
    bootstrap_statistic(stat, 120, n_resamples=25, seed=0)
    assert calls == [(25, 120)]
