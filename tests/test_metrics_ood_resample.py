"""The exact bootstrap counts behind facebench.metrics.ood's bootstraps, and the vectorised open-set
bootstrap read off them.

Oracles: the multinomial and Poisson laws (scipy.stats), the brute-force loop (stratified_bootstrap with
the metric functions, whose resamples are the same), and the previous scheme (index resampling with
rng.integers) for the distribution of the bootstrap values.
"""

import math

import numpy as np
import pytest
from scipy import stats

from facebench.errors import MetricInputError
from facebench.metrics import _resample
from facebench.metrics._resample import ResampleStreams, StratumCounts, iter_counts
from facebench.metrics.ood import (
    auroc,
    bootstrap_open_set,
    fpr_at_tpr,
    ood_metrics,
    oscr,
    rank_scores,
    stratified_bootstrap,
)


def _draws(stratum: StratumCounts, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(B, n) counts in cell order."""
    streams = ResampleStreams(seed, stratum.n_bytes)
    return np.stack([stratum.in_cell_order(c[0]).copy()
                     for _, c in iter_counts((stratum,), streams, 0, n_resamples, 16)])


def _chi2_pvalue(counts: np.ndarray, pmf: np.ndarray) -> float:
    """Goodness of fit of the pooled counts to ``pmf`` (last bin: that value and above)."""
    k = pmf.shape[0]
    observed = np.bincount(np.minimum(counts.ravel(), k - 1), minlength=k)
    expected = pmf / pmf.sum() * counts.size
    return stats.chisquare(observed, expected).pvalue


def _binomial_bins(n: int, k: int = 6) -> np.ndarray:
    pmf = stats.binom(n, 1.0 / n).pmf(np.arange(k - 1))
    return np.r_[pmf, 1.0 - pmf.sum()]


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("n", [1, 2, 5, 63, 64, 65, 1000, 8191, 8192, 8257])
@pytest.mark.parametrize("block_major", [False, True])
def test_counts_keep_the_stratum_size_and_leave_padding_empty(n, block_major):
    stratum = StratumCounts(n, block_major=block_major)
    streams = ResampleStreams(1, stratum.n_bytes)
    for _, (counts,) in iter_counts((stratum,), streams, 0, 30, 7):
        assert counts.shape == stratum.shape and counts.dtype == np.uint8
        assert int(counts.sum()) == n
        assert not counts.reshape(-1)[stratum.padding].any()
        assert int(stratum.in_cell_order(counts).sum()) == n


@pytest.mark.parametrize("n,sigmas,n_resamples", [(500, 4.0, 2000), (10, 4.0, 2000), (9000, 4.0, 300),
                                                  (9000, -4.0, 300), (9000, 200.0, 300)])
def test_counts_are_multinomial(n, sigmas, n_resamples):
    """Marginals are Binomial(n, 1/n) and the number of empty cells has the multinomial mean: small strata
    (index draws), and large ones: the usual path (sigmas 4: Poisson then completions), the removal path
    (sigmas -4: lam > 1, S > n nearly always) and lam = 0 (sigmas 200: every draw is a completion)."""
    stratum = StratumCounts(n, sigmas=sigmas)
    assert stratum.small == (n < 8192)
    assert stratum.small or ((stratum.lam > 1.0) == (sigmas < 0) and (stratum.lam == 0) == (sigmas > 100))
    draws = _draws(stratum, n_resamples, seed=2)
    assert (draws.sum(axis=1) == n).all()
    assert _chi2_pvalue(draws, _binomial_bins(n)) > 1e-3
    q = (1 - 1 / n) ** n  # P(a given cell is empty)
    q2 = (1 - 2 / n) ** n
    mean, var = n * q, n * (n - 1) * q2 + n * q - (n * q) ** 2
    zeros = (draws == 0).sum(axis=1)
    assert abs(zeros.mean() - mean) < 4.5 * math.sqrt(var / zeros.size)


def test_counts_differ_from_iid_poisson():
    """The check above can fail: iid Poisson(1) counts (no completion to n) miss the size."""
    stratum = StratumCounts(500)
    rng = np.random.default_rng(0)
    poisson = rng.poisson(1.0, (2000, 500))
    assert not (poisson.sum(axis=1) == 500).all()
    assert (_draws(stratum, 50).sum(axis=1) == 500).all()


@pytest.mark.parametrize("lam_n", [10**6, 100, 30])
def test_poisson_stage_follows_the_poisson_law(lam_n):
    """Compares plus refinement of the straddling buckets give Poisson(lam) counts (lam ~ 0.996, 0.6, 0.27)."""
    stratum = StratumCounts(lam_n)
    rng = np.random.default_rng(5)
    n = 2_000_000
    bits = rng.integers(0, 256, n, dtype=np.uint8)
    flat = np.empty(n, dtype=np.uint8)
    stratum._flags = np.empty(n, dtype=np.bool_)
    stratum._compare(bits, flat)
    stratum._refine(bits, flat, rng)
    pmf = stats.poisson(stratum.lam).pmf(np.arange(6))
    assert _chi2_pvalue(flat, np.r_[pmf, 1 - pmf.sum()]) > 1e-3


@pytest.mark.parametrize("lam_n", [10**6, 400, 50, 17])
def test_relabelled_buckets_are_a_bijection_onto_the_quantile_function(lam_n):
    stratum = StratumCounts(lam_n)
    special = stratum.special_buckets
    plain = np.setdiff1d(np.arange(256), special)
    assert plain.size == stratum.first_special and plain.size + special.size == 256
    for label, bucket in enumerate(plain):  # count of a plain label == quantile anywhere in its bucket
        count = int((stratum.thresholds <= label).sum())
        for frac in (0.0, 0.5, 1 - 1e-12):
            assert count == np.searchsorted(stratum.cdf, (bucket + frac) / 256, side="right")


def test_streams_do_not_depend_on_the_chunk():
    stratum = StratumCounts(9777, block_major=True)
    streams = ResampleStreams(9, stratum.n_bytes)
    one = [c[0].copy() for _, c in iter_counts((stratum,), streams, 0, 12, 1)]
    five = [c[0].copy() for _, c in iter_counts((stratum,), streams, 0, 12, 5)]
    late = [c[0].copy() for _, c in iter_counts((stratum,), streams, 4, 12, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(one, five))
    assert all(np.array_equal(a, b) for a, b in zip(one[4:], late))
    assert not np.array_equal(one[0], one[1])


# --------------------------------------------------------------------------- the open-set bootstrap


def _loop(k, c, u, tpr, n_resamples, seed):
    return [stratified_bootstrap(auroc, k, u, n_resamples, seed),
            stratified_bootstrap(lambda a, b: fpr_at_tpr(a, b, tpr, "known", "interp"), k, u, n_resamples, seed),
            stratified_bootstrap(lambda a, b: fpr_at_tpr(a, b, tpr, "unknown", "first"), k, u, n_resamples, seed),
            stratified_bootstrap(lambda a, b, cc: oscr(a, cc, b), k, u, n_resamples, seed, extra_known=c)]


@pytest.mark.parametrize("nk,nu,decimals", [(1, 1, None), (2, 9, 0), (5000, 3, 1), (3, 4500, 1), (4200, 300, None),
                                            (700, 800, 0), (9000, 40, 1), (150, 9000, None), (8300, 8200, 2)])
@pytest.mark.parametrize("tpr", [0.0, 0.5, 0.95, 1.0])
def test_vectorised_bootstrap_equals_the_loop_at_edges(nk, nu, decimals, tpr):
    """One-row and 64-row layouts (8192 samples and up), block boundaries of the prefix sums, one-sample groups,
    heavy ties and the TPR targets 0 and 1: the same values as the metric functions on the same resamples."""
    rng = np.random.default_rng(nk + nu)
    k, u = rng.normal(1, 1, nk), rng.normal(0, 1, nu)
    if decimals is not None:
        k, u = np.round(k, decimals), np.round(u, decimals)
    c = rng.random(nk) < 0.7
    fast = bootstrap_open_set(k, c, u, tpr=tpr, n_resamples=6, seed=3)
    for got, want in zip(fast.values(), _loop(k, c, u, tpr, 6, 3)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nk,nu", [(3000, 2000), (20000, 9000)])
def test_threads_and_chunks_never_change_the_values(nk, nu):
    rng = np.random.default_rng(0)
    k, u = np.round(rng.normal(1, 1, nk), 2), np.round(rng.normal(0, 1, nu), 2)
    c = rng.random(nk) < 0.8
    base = bootstrap_open_set(k, c, u, n_resamples=25, seed=4, threads=1, chunk=1)
    for threads, chunk in ((2, 1), (3, 4), (1, 8), (4, None)):
        other = bootstrap_open_set(k, c, u, n_resamples=25, seed=4, threads=threads, chunk=chunk)
        for key in base:
            np.testing.assert_array_equal(base[key], other[key])
    with pytest.raises(MetricInputError, match="threads"):
        bootstrap_open_set(k, c, u, n_resamples=5, threads=0)


@pytest.mark.parametrize("n,high", [(8192, 4), (8257, 31), (20000, 32), (20000, 255), (100, 6), (8191, 40)])
def test_known_prefix_equals_the_running_total(n, high):
    """The known counts' prefix (word sums of 8 cells when every count is <= 31, else a plain running total):
    every count before a cell, for single cells and prepared vectors, and the first cell past a total."""
    stratum = StratumCounts(n)
    rng = np.random.default_rng(n + high)
    counts = np.zeros(stratum.shape, np.uint8)
    flat = counts.reshape(-1)
    flat[:n] = rng.integers(0, high + 1, n)
    flat[rng.integers(0, n, 3)] = high  # the largest count occurs
    truth = np.concatenate(([0], np.cumsum(flat, dtype=np.int64)))
    prefix = _resample._CellPrefix(stratum)
    prefix.update(counts)
    assert prefix.word_mode == (n >= 8192 and high <= 31)
    cells = np.r_[0, 1, 7, 8, 9, rng.integers(0, stratum.size + 1, 300), stratum.size]
    np.testing.assert_array_equal(prefix.at_plan(prefix.plan(cells)).astype(np.int64), truth[cells])
    assert [prefix.at(int(x)) for x in cells] == truth[cells].tolist()
    for m in np.r_[0, 1, rng.integers(0, truth[-1], 200), truth[-1] - 1]:
        for strict, side in ((True, "right"), (False, "left")):
            assert prefix.first_past(int(m), strict) == int(np.searchsorted(truth[1:], m, side=side))


def test_open_set_bootstrap_is_the_same_with_either_known_prefix(monkeypatch):
    """Word sums or a plain running total of the known counts: the same bits (forced through the latter)."""
    rng = np.random.default_rng(3)
    k, u = np.round(rng.normal(1, 1, 12000), 2), np.round(rng.normal(0, 1, 9000), 2)
    c = rng.random(12000) < 0.7
    words = bootstrap_open_set(k, c, u, n_resamples=8, seed=2)
    monkeypatch.setattr(_resample, "_WORD_COUNT_MAX", -1)
    plain = bootstrap_open_set(k, c, u, n_resamples=8, seed=2)
    for key in words:
        np.testing.assert_array_equal(words[key], plain[key])


def _index_resampling_auroc(k, u, n_resamples, seed):
    """The previous scheme: len(known) then len(unknown) indices per resample from one generator."""
    rng = np.random.default_rng(seed)
    return np.array([auroc(k[rng.integers(0, k.size, k.size)], u[rng.integers(0, u.size, u.size)])
                     for _ in range(n_resamples)])


def test_bootstrap_distribution_equals_index_resampling():
    """The counts changed the random stream, not the law: the AUROC bootstrap distribution agrees with
    the previous index resampling (same mean and spread, two-sample KS test)."""
    rng = np.random.default_rng(11)
    k, u = rng.normal(0.8, 1, 300), rng.normal(0, 1.2, 200)
    c = rng.random(300) < 0.8
    new = bootstrap_open_set(k, c, u, n_resamples=3000, seed=1)["auroc"]
    old = _index_resampling_auroc(k, u, 3000, 1)
    assert abs(new.mean() - old.mean()) < 4 * math.sqrt(new.var() / 3000 + old.var() / 3000)
    assert 0.92 < new.std() / old.std() < 1.08
    assert stats.ks_2samp(new, old).pvalue > 1e-3


def test_percentile_interval_covers_the_true_auroc():
    """Coverage of the 95% percentile interval over 80 simulated data sets (true AUROC Phi(1 / sqrt 2))."""
    truth = stats.norm.cdf(1 / math.sqrt(2))
    rng = np.random.default_rng(21)
    hits = 0
    for trial in range(80):
        k, u = rng.normal(1, 1, 120), rng.normal(0, 1, 100)
        values = bootstrap_open_set(k, np.ones(120, bool), u, n_resamples=200, seed=trial)["auroc"]
        lo, hi = np.percentile(values, [2.5, 97.5])
        hits += lo <= truth <= hi
    assert 0.86 <= hits / 80 <= 1.0 and hits < 80


# --------------------------------------------------------------------------- one ranking


def test_rank_scores_gives_every_metric_from_one_sort():
    rng = np.random.default_rng(8)
    k, u = np.round(rng.normal(1, 1, 400), 1), np.round(rng.normal(0, 1, 300), 1)
    c = rng.random(400) < 0.6
    r = rank_scores(k, u, c)
    m = ood_metrics(k, u)
    assert r.auroc() == m["auroc"]
    assert r.fpr_at_tpr(0.95, "unknown", "first") == m["fpr@tpr95[pos=unknown,rule=first]"]
    assert r.aupr("known", "trapezoid") == m["aupr[pos=known,method=trapezoid]"]
    assert r.oscr() == oscr(k, c, u)
    assert r.n_known == 400 and r.n_unknown == 300
    assert r.known_le[-1] == 400 and r.unknown_le[-1] == 300 and r.correct_le[-1] == c.sum()
    with pytest.raises(MetricInputError, match="known_correct"):
        rank_scores(k, u).oscr()
