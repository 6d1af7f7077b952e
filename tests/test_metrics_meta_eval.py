import time
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from facebench.metrics import meta_eval
from facebench.metrics.bootstrap import percentile_interval
from facebench.metrics.meta_eval import (AGREEMENT_KEYS, LinearMap, NonLinearMap, agreement_metrics,
                                         bootstrap_agreement, correlation_metrics, leave_one_family_out)


def _oracle(pred, true):
    """Independent reference: sklearn for errors/R^2, scipy.stats for correlations."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input and returns NaN
        return {
            "mae": mean_absolute_error(true, pred),
            "rmse": float(np.sqrt(mean_squared_error(true, pred))),
            "r2": r2_score(true, pred),
            "pearson": stats.pearsonr(pred, true).statistic if np.ptp(pred) and np.ptp(true) else np.nan,
            "spearman": stats.spearmanr(pred, true).statistic,
            "kendall": stats.kendalltau(pred, true).statistic,  # tau-b by default
        }


def _assert_close(got, want, keys=AGREEMENT_KEYS, rtol=1e-10, atol=1e-12):
    assert set(got) == set(keys)
    for k in keys:
        assert np.isnan(got[k]) == np.isnan(want[k]), (k, got[k], want[k])
        if not np.isnan(want[k]):
            assert got[k] == pytest.approx(want[k], rel=rtol, abs=atol), k


# --------------------------------------------------------------------------- point estimates

@pytest.mark.parametrize("n", [2, 3, 7, 50, 400, 2500])
@pytest.mark.parametrize("ties", [False, True])
def test_agreement_matches_sklearn_and_scipy(n, ties):
    rng = np.random.default_rng(n + 1000 * ties)
    true = rng.uniform(0.5, 1.0, n)
    pred = true + rng.normal(0, 0.05, n)
    if ties:  # coarse grids give many ties in both vectors (n=2500 also exercises the scipy Kendall path)
        true, pred = np.round(true, 1), np.round(pred, 1)
        true[:2], pred[:2] = [0.6, 0.9], [0.7, 0.9]  # never constant
    got = agreement_metrics(pred, true)
    _assert_close(got, _oracle(pred, true))
    assert all(isinstance(v, float) for v in got.values())


def test_agreement_integer_ties_and_negative_relation():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 4, 120)
    pred = -true + rng.integers(0, 3, 120)  # integers: heavy ties, negative correlation
    got = agreement_metrics(pred, true)
    _assert_close(got, _oracle(pred, true))
    assert got["kendall"] < 0 and got["r2"] < 0


def test_agreement_by_hand():
    got = agreement_metrics([0.9, 0.8, 0.6], [1.0, 0.8, 0.7])
    assert got["mae"] == pytest.approx(0.2 / 3)
    assert got["rmse"] == pytest.approx(np.sqrt(0.02 / 3))
    assert got["spearman"] == pytest.approx(1.0) and got["kendall"] == pytest.approx(1.0)
    # two sets: every correlation is +-1
    assert agreement_metrics([1, 2], [5, 3])["kendall"] == pytest.approx(-1.0)


def test_constant_inputs_give_nan_correlations_and_sklearn_r2():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy ConstantInputWarning leaks out
        c = agreement_metrics([0.7, 0.7, 0.7], [0.6, 0.8, 0.9])
        assert all(np.isnan(c[k]) for k in ("pearson", "spearman", "kendall"))
        assert c["mae"] == pytest.approx(0.4 / 3)
        assert c["r2"] == pytest.approx(r2_score([0.6, 0.8, 0.9], [0.7] * 3))
        # constant truth: sklearn gives 1.0 for a perfect prediction, 0.0 otherwise
        perfect = agreement_metrics([0.1, 0.1], [0.1, 0.1])
        assert perfect["r2"] == 1.0 == r2_score([0.1, 0.1], [0.1, 0.1]) and np.isnan(perfect["pearson"])
        assert agreement_metrics([0.75, 0.25, 0.5], [0.5] * 3)["r2"] == 0.0 == r2_score([0.5] * 3, [0.75, 0.25, 0.5])
        # constancy is tested exactly: sklearn's float mean of [0.1]*3 is not 0.1, so its SS_tot is
        # ~1e-33 and R^2 ~ -9e31; ours reports the constant-truth value 0.0
        assert agreement_metrics([0.3, 0.2, 0.1], [0.1] * 3)["r2"] == 0.0
        r = correlation_metrics([5.0, 5.0, 5.0], [0.1, 0.2, 0.3])
        assert set(r) == {"pearson", "spearman", "kendall"} and all(np.isnan(v) for v in r.values())


def test_correlation_metrics_vs_scipy():
    rng = np.random.default_rng(7)
    true = rng.uniform(0.5, 1, 80)
    indicator = -50 * true ** 2 + rng.normal(0, 1, 80)  # different scale, negative relation
    want = _oracle(indicator, true)
    _assert_close(correlation_metrics(indicator, true), want, keys=("pearson", "spearman", "kendall"))


@pytest.mark.parametrize("args, msg", [
    (([0.1], [0.2]), "at least 2 test sets"),
    (([0.1, 0.2], [0.2, 0.3, 0.4]), "inconsistent"),
    (([0.1, np.nan], [0.2, 0.3]), "NaN at index 1"),
    (([0.1, np.inf], [0.2, 0.3]), "inf"),
    (([[0.1, 0.2]], [0.2, 0.3]), "1-D"),
    (([], []), "at least 2 test sets"),
])
def test_agreement_errors(args, msg):
    with pytest.raises(ValueError, match=msg):
        agreement_metrics(*args)
    with pytest.raises(ValueError, match=msg):
        bootstrap_agreement(*args, n_resamples=3)


# --------------------------------------------------------------------------- bootstrap

def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.6, 1.0, n)
    pred = true + rng.normal(0, 0.04, n)
    return np.round(pred, 3), true


def test_bootstrap_deterministic_and_shapes():
    pred, true = _data()
    a = bootstrap_agreement(pred, true, n_resamples=200, seed=3)
    b = bootstrap_agreement(pred, true, n_resamples=200, seed=3)
    c = bootstrap_agreement(pred, true, n_resamples=200, seed=4)
    assert tuple(a) == AGREEMENT_KEYS
    for k in AGREEMENT_KEYS:
        assert a[k].shape == (200,) and a[k].dtype == np.float64
        np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a[k], c[k])
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_agreement(pred, true, n_resamples=0)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("n", [40, 2100])  # 2100 > matrix limit: Kendall loops scipy
def test_bootstrap_draws_equal_metrics_of_resampled_rows(grouped, n, monkeypatch):
    """Each draw equals the sklearn/scipy oracle on the explicitly resampled test sets."""
    pred, true = _data(n, seed=n)
    pred = np.round(pred, 2)  # ties
    groups = np.arange(n) % 3 if grouped else None
    B = 6
    # same rng stream as bootstrap_agreement: one chunk, weights drawn first
    inv = None if groups is None else np.arange(n) % 3
    W = meta_eval._resample_weights(np.random.default_rng(11), B, inv, 3 if grouped else n)
    got = bootstrap_agreement(pred, true, n_resamples=B, seed=11, groups=groups)
    for r in range(B):
        idx = np.repeat(np.arange(n), W[r].astype(int))
        assert idx.size == n
        want = _oracle(pred[idx], true[idx])
        _assert_close({k: got[k][r] for k in AGREEMENT_KEYS}, want, rtol=1e-9, atol=1e-11)


def test_stratified_bootstrap_keeps_every_family():
    # family "a": perfect predictions; family "b": error exactly 0.25; family "c": error 0.5.
    # A resample's MAE is (n_b * 0.25 + n_c * 0.5) / n, so it is constant iff every family
    # keeps exactly its size in every resample.
    fam = np.array(["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    true = np.linspace(0.5, 0.95, 10)
    pred = true + np.where(fam == "b", 0.25, np.where(fam == "c", 0.5, 0.0))
    boot = bootstrap_agreement(pred, true, n_resamples=300, seed=0, groups=fam)
    np.testing.assert_allclose(boot["mae"], (3 * 0.25 + 2 * 0.5) / 10, rtol=1e-12)
    plain = bootstrap_agreement(pred, true, n_resamples=300, seed=0)
    assert np.ptp(plain["mae"]) > 0.05  # unstratified resamples do lose / duplicate families
    # and the weights themselves: every family keeps its count in every row
    inv = np.unique(fam, return_inverse=True)[1]
    W = meta_eval._resample_weights(np.random.default_rng(1), 500, inv, 3)
    for f, size in enumerate([5, 3, 2]):
        np.testing.assert_array_equal(W[:, inv == f].sum(axis=1), size)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        bootstrap_agreement(pred, true, n_resamples=5, groups=["a", "b", "c"])


def test_bootstrap_percentile_ci_contains_point_estimate():
    pred, true = _data(120, seed=5)
    point = agreement_metrics(pred, true)
    boot = bootstrap_agreement(pred, true, n_resamples=1000, seed=0, groups=np.arange(120) % 4)
    for k in AGREEMENT_KEYS:
        assert not np.isnan(boot[k]).any()
        lo, hi = percentile_interval(boot[k], 0.95)
        assert lo <= point[k] <= hi, (k, lo, point[k], hi)


def test_bootstrap_constant_resample_gives_nan_correlation():
    # two sets: about half of the resamples draw one set twice -> constant -> NaN correlations
    boot = bootstrap_agreement([0.1, 0.3], [0.2, 0.5], n_resamples=400, seed=0)
    nan = np.isnan(boot["pearson"])
    assert 0.3 < nan.mean() < 0.7
    np.testing.assert_array_equal(nan, np.isnan(boot["kendall"]))
    np.testing.assert_array_equal(boot["pearson"][~nan], 1.0)
    assert set(np.unique(boot["r2"][nan])) <= {0.0}  # constant truth, imperfect prediction


def test_bootstrap_runtime_budget():
    rng = np.random.default_rng(0)
    true = rng.uniform(0.5, 1, 1000)
    pred = np.round(true + rng.normal(0, 0.05, 1000), 2)
    t0 = time.perf_counter()
    out = bootstrap_agreement(pred, true, n_resamples=1000, seed=0, groups=np.arange(1000) % 9)
    assert time.perf_counter() - t0 < 4.0  # target ~2 s on a slow machine; ~0.3 s typical
    assert out["kendall"].shape == (1000,)


# --------------------------------------------------------------------------- regressors

def test_linear_map_vs_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ [1.5, -2.0, 0.3] + 0.7 + rng.normal(0, 0.1, 40)
    ours = LinearMap().fit(X, y)
    ref = LinearRegression().fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-10)
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-10)
    Xt = rng.normal(size=(5, 3))
    np.testing.assert_allclose(ours.predict(Xt), ref.predict(Xt), rtol=1e-10)
    # 1-D X = one feature
    x = rng.uniform(0, 1, 30)
    y1 = 2 * x - 1 + rng.normal(0, 0.05, 30)
    m = LinearMap().fit(x, y1)
    r = LinearRegression().fit(x[:, None], y1)
    assert m.coef_.shape == (1,) and isinstance(m.intercept_, float)
    np.testing.assert_allclose(m.predict(x), r.predict(x[:, None]), rtol=1e-10)
    # rank-deficient (duplicated column): same minimum-norm solution as sklearn
    Xd = np.column_stack([x, x])
    np.testing.assert_allclose(LinearMap().fit(Xd, y1).coef_, LinearRegression().fit(Xd, y1).coef_, rtol=1e-8)


def test_linear_map_errors():
    with pytest.raises(ValueError, match="not fitted"):
        LinearMap().predict([1.0])
    with pytest.raises(ValueError, match="inconsistent"):
        LinearMap().fit([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="X contains NaN"):
        LinearMap().fit([1.0, np.nan], [1.0, 2.0])
    m = LinearMap().fit(np.ones((3, 2)) * [[1], [2], [3]], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="1 feature"):
        m.predict([1.0, 2.0])


def test_nonlinear_map_fits_sine_and_is_deterministic():
    x = np.linspace(0, 2 * np.pi, 120)
    y = 0.8 + 0.1 * np.sin(x)  # a sine on an AUROC-like scale
    for seed in range(3):
        m = NonLinearMap(seed=seed).fit(x, y)
        assert r2_score(y, m.predict(x)) > 0.9
    a = NonLinearMap(seed=1).fit(x, y).predict(x)
    b = NonLinearMap(seed=1).fit(x, y).predict(x)
    np.testing.assert_array_equal(a, b)
    # a straight line cannot follow a full sine period
    assert r2_score(y, LinearMap().fit(x, y).predict(x)) < 0.7
    with pytest.raises(ValueError, match="not fitted"):
        NonLinearMap().predict(x)
    with pytest.raises(ValueError, match="seed"):
        NonLinearMap(seed=-1)


def test_nonlinear_map_constant_target_and_2d():
    X = np.random.default_rng(0).normal(size=(20, 2))
    m = NonLinearMap(seed=0).fit(X, np.full(20, 0.75))  # std 0 scaler -> 1
    np.testing.assert_allclose(m.predict(X), 0.75, atol=1e-2)
    assert m.predict(X).shape == (20,)


def _sklearn_mlp(Z, t, **kwargs):
    from sklearn.neural_network import MLPRegressor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning where max_iter is reached
        return MLPRegressor(random_state=kwargs.pop("seed", 0), **kwargs).fit(Z, t)


def _same_layers(m, ref) -> bool:
    return all(a.tobytes() == b.tobytes() for a, b in zip(m.coefs_ + m.intercepts_, ref.coefs_ + ref.intercepts_))


@pytest.mark.parametrize("case", [
    {},  # the protocol's map: one hidden layer of 16, alpha 1e-3, converges
    {"hidden_layer_sizes": (8, 5), "alpha": 0.5, "seed": 3},  # two hidden layers (ReLU derivative between them)
    {"hidden_layer_sizes": (30,), "max_iter": 7, "seed": 11},  # stops at max_iter
    {"hidden_layer_sizes": (3,), "alpha": 0.0, "seed": 5},  # no penalty; few units, some may die
])
def test_nonlinear_map_lbfgs_is_sklearns_mlp_bit_for_bit(case):
    """The L-BFGS fit runs sklearn's arithmetic itself: the same weights, iterations and predictions as
    MLPRegressor(solver="lbfgs") on the standardised data, to the last bit."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(72, 15)) * rng.uniform(0.1, 10, 15) + rng.normal(size=15)
    y = 0.7 + 0.1 * np.tanh(X[:, 0] - X[:, 3]) + rng.normal(0, 0.01, 72)
    kwargs = {"hidden_layer_sizes": (16,), "alpha": 1e-3, "max_iter": 5000, **case}
    m = NonLinearMap(**kwargs).fit(X, y)
    ref = _sklearn_mlp((X - m.x_mean_) / m.x_scale_, (y - m.y_mean_) / m.y_scale_, solver="lbfgs", **kwargs)
    assert _same_layers(m, ref) and m.n_iter_ == ref.n_iter_
    assert m.converged_ == (ref.n_iter_ < kwargs["max_iter"])
    X_new = rng.normal(size=(9, 15)) * 3
    want = ref.predict((X_new - m.x_mean_) / m.x_scale_) * m.y_scale_ + m.y_mean_
    assert m.predict(X_new).tobytes() == want.tobytes()


def test_mlp_loss_jac_at_another_point_recomputes():
    rng = np.random.default_rng(0)
    loss = meta_eval._MLPLoss(rng.normal(size=(20, 3)), rng.normal(size=(20, 1)), (3, 4, 1), 0.1)
    p, q = rng.normal(size=21), rng.normal(size=21)
    f_p, g_p = loss(p)
    assert loss.fun(p) == f_p and loss.jac(p).tobytes() == g_p.tobytes()
    assert loss.jac(q).tobytes() == loss(q)[1].tobytes() != g_p.tobytes()
    # the gradient is the loss's: central differences agree
    e = np.eye(21)[7] * 1e-6
    assert (loss.fun(q + e) - loss.fun(q - e)) / 2e-6 == pytest.approx(loss(q)[1][7], rel=1e-5)


def test_nonlinear_map_adam_fits_sklearn_and_predicts_its_numbers():
    x = np.linspace(0, 1, 40)
    y = 0.6 + 0.3 * x
    m = NonLinearMap(seed=2, solver="adam", max_iter=50).fit(x, y)
    ref = _sklearn_mlp(((x - m.x_mean_) / m.x_scale_)[:, None], (y - m.y_mean_) / m.y_scale_, seed=2,
                       hidden_layer_sizes=(16,), alpha=1e-3, max_iter=50, solver="adam")
    assert _same_layers(m, ref) and m.n_iter_ == ref.n_iter_ == 50 and not m.converged_
    want = ref.predict(((x - m.x_mean_) / m.x_scale_)[:, None]) * m.y_scale_ + m.y_mean_
    assert m.predict(x).tobytes() == want.tobytes()


def test_nonlinear_map_parameter_errors():
    with pytest.raises(ValueError, match="hidden_layer_sizes entry must be >= 1"):
        NonLinearMap(hidden_layer_sizes=(16, 0))
    with pytest.raises(ValueError, match="solver"):
        NonLinearMap(solver="newton")


# --------------------------------------------------------------------------- leave-one-family-out

def _manual_lofo(X, y, fam, factory):
    out = np.full(len(y), np.nan)
    for f in np.unique(fam):
        te = fam == f
        out[te] = factory().fit(X[~te], y[~te]).predict(X[te])
    return out


@pytest.mark.parametrize("factory", [LinearMap, lambda: NonLinearMap(seed=2)])
def test_lofo_matches_manual_loop(factory):
    rng = np.random.default_rng(0)
    fam = np.repeat(["blur", "noise", "occl", "pose"], 6)
    x = rng.uniform(0, 1, 24)
    y = 0.6 + 0.3 * x + rng.normal(0, 0.02, 24)
    got = leave_one_family_out(x, y, fam, factory)
    np.testing.assert_array_equal(got, _manual_lofo(x, y, fam, factory))
    X2 = np.column_stack([x, x ** 2])
    got2 = leave_one_family_out(X2, y, list(fam), factory)
    np.testing.assert_array_equal(got2, _manual_lofo(X2, y, fam, factory))
    # and it is genuinely out-of-family: differs from the in-sample fit
    assert not np.allclose(got, factory().fit(x, y).predict(x))


def test_lofo_feeds_agreement_metrics():
    rng = np.random.default_rng(1)
    fam = np.repeat(np.arange(5), 10)
    ind = rng.uniform(0, 1, 50)
    true = 0.55 + 0.4 * ind + rng.normal(0, 0.01, 50)
    pred = leave_one_family_out(ind, true, fam, LinearMap)
    res = agreement_metrics(pred, true)
    assert res["mae"] < 0.02 and res["r2"] > 0.9


def test_lofo_errors():
    x, y = np.arange(6.0), np.arange(6.0)
    with pytest.raises(ValueError, match="at least 2 shift families"):
        leave_one_family_out(x, y, [0] * 6, LinearMap)
    with pytest.raises(ValueError, match="leaves 1 training set"):
        leave_one_family_out(x, y, [0, 0, 0, 0, 0, 1], LinearMap)
    with pytest.raises(ValueError, match="families has 2 entries"):
        leave_one_family_out(x, y, [0, 1], LinearMap)
    with pytest.raises(ValueError, match="inconsistent"):
        leave_one_family_out(x, y[:5], [0, 1, 2, 0, 1, 2], LinearMap)
    with pytest.raises(ValueError, match="callable"):
        leave_one_family_out(x, y, [0, 1, 2, 0, 1, 2], LinearMap())


class _FailsOnFamily:
    """A picklable map that fails when fitted without one training value (the fold that holds it out)."""

    fit_in_processes = True

    def __init__(self, marker):
        self.marker = marker

    def fit(self, X, y):
        if self.marker not in np.asarray(y):
            raise ValueError(f"fold without {self.marker}")
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_lofo_in_worker_processes_gives_the_same_bits():
    """Folds fitted by forked workers (or here) are the same numbers; errors surface in fold order."""
    rng = np.random.default_rng(3)
    fam = np.repeat(["a", "b", "c", "d", "e"], 7)
    X = rng.normal(size=(35, 4))
    y = 0.7 + 0.05 * X[:, 0] + rng.normal(0, 0.01, 35)
    def factory():
        return NonLinearMap(seed=1, max_iter=300)

    here = leave_one_family_out(X, y, fam, factory, processes=0)
    assert leave_one_family_out(X, y, fam, factory, processes=3).tobytes() == here.tobytes()
    assert leave_one_family_out(X, y, fam, factory).tobytes() == here.tobytes()
    assert here.tobytes() == _manual_lofo(X, y, fam, factory).tobytes()
    y[7] = 5.0  # family "b" holds it: only the fold holding "b" out fails
    with pytest.raises(ValueError, match="fold without 5.0"):
        leave_one_family_out(X, y, fam, lambda: _FailsOnFamily(5.0), processes=2)
    with pytest.raises(ValueError, match="processes must be >= 0"):
        leave_one_family_out(X, y, fam, LinearMap, processes=-1)


def test_fold_processes_choice(monkeypatch):
    jobs = [(NonLinearMap(), None, None, None)] * 4
    monkeypatch.setattr(meta_eval, "usable_cpus", lambda: 8)
    assert meta_eval._fold_processes(jobs, None) == (4 if meta_eval.sys.platform.startswith("linux") else 0)
    assert meta_eval._fold_processes([(LinearMap(), None, None, None)] * 4, None) == 0  # fast fits stay here
    assert meta_eval._fold_processes(jobs, 1) == 0  # one worker would only make this process wait
    assert meta_eval._fold_processes(jobs[:1], 4) == 0
    monkeypatch.setattr(meta_eval, "usable_cpus", lambda: 1)
    assert meta_eval._fold_processes(jobs, None) == 0


# -- leave-one-family-out conformal intervals ---------------------------------------------------------------
def test_lofo_conformal_intervals_by_hand():
    """Three families (K = 3, each other family weighs 1/3, spread over its sets); errors a: 0.1, 0.3; b: 0.2;
    c: 0.4, 0.05. At 50%: for a set of family a, b's 0.2 weighs 1/3 and c's 0.05, 0.4 weigh 1/6 each: cumulative
    0.05 -> 1/6, 0.2 -> 1/2, so q = 0.2; for b, a's and c's four errors weigh 1/6 each: 0.05, 0.1, 0.3 reach 1/2,
    q = 0.3; for c, a's 0.1 (1/6), b's 0.2 (1/3): q = 0.2."""
    from facebench.metrics.meta_eval import lofo_conformal_intervals

    true = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    pred = np.array([0.6, 0.2, 0.7, 0.9, 0.45])
    fam = np.array(["a", "a", "b", "c", "c"])
    got = lofo_conformal_intervals(pred, true, fam, confidence=0.5)
    q = np.array([0.2, 0.2, 0.3, 0.2, 0.2])
    np.testing.assert_allclose(got, np.c_[pred - q, pred + q], atol=1e-12)
    # at 95% the other families' 2/3 fall short (the held-out family's 1/3 sits at +inf): unbounded intervals
    assert np.all(np.isinf(lofo_conformal_intervals(pred, true, fam, confidence=0.95)))
    # a NaN prediction gets a NaN interval and calibrates nothing (family c's q uses a's and b's errors only)
    pred_nan = pred.copy()
    pred_nan[1] = np.nan
    got = lofo_conformal_intervals(pred_nan, true, fam, confidence=0.5)
    assert np.all(np.isnan(got[1]))
    np.testing.assert_allclose(got[3], [0.9 - 0.2, 0.9 + 0.2])  # a's 0.1 now weighs 1/3, b's 0.2 too: q = 0.2
    # family weights, not set counts: a family of many sets does not outvote the others. Families x (9 sets,
    # error 0.01) and y, z (one set each, errors 0.5, 0.6); for a set of z at 60%: x weighs 1/3 (0.01 -> 1/3),
    # y 1/3 (0.5 -> 2/3 >= 0.6): q = 0.5 (pooling sets would give 0.01: 9 of the 10 errors)
    fam2 = np.array(["x"] * 9 + ["y", "z"])
    true2 = np.zeros(11)
    pred2 = np.r_[np.full(9, 0.01), 0.5, 0.6]
    got2 = lofo_conformal_intervals(pred2, true2, fam2, confidence=0.6)
    np.testing.assert_allclose(got2[10], [0.6 - 0.5, 0.6 + 0.5])


def test_lofo_conformal_intervals_cover_exchangeable_families():
    """Families with their own biases drawn from one law (exchangeable): coverage over many draws is at least
    the nominal level, while the estimator's own (bias-blind) intervals of +-2 sigma of noise miss often."""
    from facebench.metrics.meta_eval import lofo_conformal_intervals

    rng = np.random.default_rng(0)
    covered, naive = [], []
    for _ in range(200):
        fam = np.repeat(np.arange(20), 10)
        bias = rng.normal(0, 0.05, 20)[fam]
        true = rng.uniform(0.5, 1.0, fam.size)
        pred = true + bias + rng.normal(0, 0.01, fam.size)
        iv = lofo_conformal_intervals(pred, true, fam, confidence=0.9)
        covered.append(np.mean((iv[:, 0] <= true) & (true <= iv[:, 1])))
        naive.append(np.mean(np.abs(pred - true) <= 0.02))
    assert np.mean(covered) >= 0.9 and np.mean(naive) < 0.5  # measured 0.927


def test_lofo_conformal_intervals_refuse_bad_input():
    from facebench.errors import MetricInputError
    from facebench.metrics.meta_eval import lofo_conformal_intervals

    with pytest.raises(MetricInputError, match="confidence"):
        lofo_conformal_intervals([0.1, 0.2], [0.1, 0.2], ["a", "b"], confidence=1.0)
    with pytest.raises(MetricInputError):
        lofo_conformal_intervals([0.1, 0.2, 0.3], [0.1, 0.2], ["a", "b"])
