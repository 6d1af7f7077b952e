"""Meta-evaluation of label-free performance estimators (spec protocols §7.3, anchors §3.6).

A label-free indicator (e.g. a Gscore-style bimodality score, ATC, DoC) gives one
number per unlabelled **test set**; it is judged over many test sets m = 1..M
against the true metric A_m of each set (AUROC or accuracy). Everything here works
over test sets, never over samples:

* :func:`agreement_metrics` -- predicted vs true metric on the same scale:
  MAE, RMSE, R^2, Pearson r, Spearman rho, Kendall tau-b.
* :func:`correlation_metrics` -- raw indicator vs true metric (scale-free):
  Pearson, Spearman, Kendall only.
* :func:`bootstrap_agreement` -- bootstrap distribution of the agreement metrics
  over resampled test sets, optionally stratified by shift family.
* :class:`LinearMap` / :class:`NonLinearMap` -- indicator -> metric regressors.
* :func:`leave_one_family_out` -- out-of-family predictions (no in-sample optimism).
* :func:`lofo_conformal_intervals` -- intervals around predictions whose half-width is a family-weighted
  quantile of the absolute errors on the *other* families (conformal with families as the exchangeable units).

Conventions
-----------
* float64 throughout; inputs must be finite; at least 2 test sets.
* Correlations are NaN (not an error, no warning) when either input is constant
  (over the sets, or over the drawn sets of a bootstrap resample).
* R^2 = 1 - SS_res / SS_tot with scikit-learn ``r2_score`` semantics: when the
  true values are constant (SS_tot = 0) R^2 is 1.0 for a perfect prediction and
  0.0 otherwise. Constancy is tested exactly (min == max), not through SS_tot.
* Kendall's tau is tau-b (``scipy.stats.kendalltau`` default):
  tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)).
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable

import numpy as np

from facebench.errors import MetricInputError

from ._threads import usable_cpus
from ._validation import (
    as_array,
    check_callable,
    check_choice,
    check_clusters,
    check_consistent_length,
    check_int_at_least,
    check_matrix,
    check_positive_int,
    check_score_vector,
    not_fitted,
)
from .bootstrap import _rows_per_chunk

__all__ = [
    "AGREEMENT_KEYS",
    "CORRELATION_KEYS",
    "agreement_metrics",
    "correlation_metrics",
    "bootstrap_agreement",
    "LinearMap",
    "NonLinearMap",
    "leave_one_family_out",
    "lofo_conformal_intervals",
]

#: Keys of :func:`agreement_metrics` / :func:`bootstrap_agreement`, in output order.
AGREEMENT_KEYS = ("mae", "rmse", "r2", "pearson", "spearman", "kendall")
#: Keys of :func:`correlation_metrics`.
CORRELATION_KEYS = ("pearson", "spearman", "kendall")

#: Up to this many test sets, Kendall's tau is computed from an (n, n) pairwise-sign
#: matrix (one BLAS product per batch of resamples); above it, scipy is looped.
_KENDALL_MATRIX_MAX_N = 2000


# --------------------------------------------------------------------------- validation

def _pair(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    hint = "meta-evaluation needs at least 2 test sets (one value per set)"
    x = check_score_vector(a, name_a, empty_hint=hint)
    y = check_score_vector(b, name_b, empty_hint=hint)
    n = check_consistent_length(**{name_a: x, name_b: y})
    if n < 2:
        raise MetricInputError(f"{name_a} and {name_b} hold {n} test set; {hint}")
    return x, y


def _features(X, name: str = "X") -> np.ndarray:
    """Feature matrix (n, d) float64; a 1-D X is one feature."""
    arr = as_array(X, name)
    return check_matrix(arr[:, None] if arr.ndim == 1 else arr, name,
                        shape="(n_sets, n_features) (or 1-D: one feature)")


# --------------------------------------------------------------------------- weighted kernels
# Every metric is computed from a (b, n) matrix of non-negative integer weights W:
# W[r, i] = how often test set i appears in resample r (all ones = the plain estimate).
# Sums over a resample are then weighted sums over the n original sets.

def _drawn_constant(v: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(b,) bool: are the drawn values of ``v`` all equal (exact test, min == max)?"""
    drawn = W > 0
    return np.where(drawn, v, -np.inf).max(axis=1) == np.where(drawn, v, np.inf).min(axis=1)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, W: np.ndarray, const: np.ndarray) -> np.ndarray:
    """Pearson r per row; x, y are (n,) or (b, n); two-pass centred sums; NaN where ``const``."""
    tot = W.sum(axis=1)
    mx = (W * x).sum(axis=1) / tot
    my = (W * y).sum(axis=1) / tot
    dx = x - mx[:, None]
    dy = y - my[:, None]
    sxy = (W * dx * dy).sum(axis=1)
    sxx = (W * dx * dx).sum(axis=1)
    syy = (W * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    r = np.clip(r, -1.0, 1.0)
    r[const] = np.nan
    return r


def _weighted_ranks(v: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(b, n) average ranks (1-based, ties averaged) of each set within each resample.

    For distinct value u with drawn count c_u and cumulative count cum_u (values <= u),
    the tied block occupies positions cum_u - c_u + 1 .. cum_u, so its rank is
    cum_u - (c_u - 1) / 2 (``scipy.stats.rankdata(method="average")``)."""
    _, inv = np.unique(v, return_inverse=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv)
    starts = np.cumsum(sizes) - sizes
    counts = np.add.reduceat(W[:, order], starts, axis=1)  # (b, U)
    cum = np.cumsum(counts, axis=1)
    return (cum - 0.5 * (counts - 1.0))[:, inv]


def _kendall_matrix(x: np.ndarray, y: np.ndarray):
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    return sx * sy, np.abs(sx), np.abs(sy)


def _weighted_kendall(x: np.ndarray, y: np.ndarray, W: np.ndarray, mats, const: np.ndarray) -> np.ndarray:
    """Kendall tau-b per resample.

    Over all ordered pairs of drawn sets, sum sign(dx) sign(dy) = 2 (C - D) and
    sum |sign(dx)| = 2 (n0 - n1); with weights this is w^T M w for the (n, n)
    pairwise-sign matrix M (pairs of a set with itself contribute 0). Integer-valued
    float sums are exact, so tau_b = w'Kw / sqrt(w'|Sx|w * w'|Sy|w)."""
    from scipy import stats
    if mats is not None:
        k, ax, ay = mats
        s = ((W @ k) * W).sum(axis=1)
        dx = ((W @ ax) * W).sum(axis=1)
        dy = ((W @ ay) * W).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = s / np.sqrt(dx * dy)
        tau = np.clip(tau, -1.0, 1.0)
    else:
        tau = np.empty(W.shape[0])
        reps = np.rint(W).astype(np.int64)
        for r in range(W.shape[0]):
            if const[r]:
                continue
            idx = np.repeat(np.arange(x.size), reps[r])
            tau[r] = stats.kendalltau(x[idx], y[idx]).statistic
    tau[const] = np.nan
    return tau


def _batch_metrics(pred: np.ndarray, true: np.ndarray, W: np.ndarray, keys, kendall_mats) -> dict:
    out = {}
    const_p = _drawn_constant(pred, W)
    const_t = _drawn_constant(true, W)
    const = const_p | const_t
    tot = W.sum(axis=1)
    if "mae" in keys or "rmse" in keys or "r2" in keys:
        err = pred - true
        sse = (W * err * err).sum(axis=1)
        out["mae"] = (W * np.abs(err)).sum(axis=1) / tot
        out["rmse"] = np.sqrt(sse / tot)
        mt = (W * true).sum(axis=1) / tot
        sst = (W * (true - mt[:, None]) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = 1.0 - sse / sst
        # sklearn r2_score(force_finite=True): constant truth -> 1.0 if perfect else 0.0
        r2[const_t] = np.where(sse[const_t] == 0.0, 1.0, 0.0)
        out["r2"] = r2
    out["pearson"] = _weighted_pearson(pred, true, W, const)
    out["spearman"] = _weighted_pearson(_weighted_ranks(pred, W), _weighted_ranks(true, W), W, const)
    out["kendall"] = _weighted_kendall(pred, true, W, kendall_mats, const)
    return {k: out[k] for k in keys}


def _point(pred: np.ndarray, true: np.ndarray, keys) -> dict[str, float]:
    n = pred.size
    mats = _kendall_matrix(pred, true) if n <= _KENDALL_MATRIX_MAX_N else None
    res = _batch_metrics(pred, true, np.ones((1, n)), keys, mats)
    return {k: float(v[0]) for k, v in res.items()}


# --------------------------------------------------------------------------- public metrics

def agreement_metrics(pred, true) -> dict[str, float]:
    """Agreement of predicted and true per-set metrics (one value per test set).

    ``mae`` = mean |pred - true|; ``rmse`` = sqrt(mean (pred - true)^2);
    ``r2`` = 1 - SS_res / SS_tot (sklearn ``r2_score`` semantics, see module doc);
    ``pearson`` / ``spearman`` / ``kendall`` (tau-b) as in ``scipy.stats``, NaN when
    ``pred`` or ``true`` is constant. Needs >= 2 finite values of equal length.
    """
    p, t = _pair(pred, true, "pred", "true")
    return _point(p, t, AGREEMENT_KEYS)


def correlation_metrics(indicator, true) -> dict[str, float]:
    """Pearson r, Spearman rho and Kendall tau-b between a raw indicator and the true metric.

    For indicators not on the target's scale (MAE/R^2 would be meaningless). NaN when
    either input is constant. Sign is kept: a good indicator may correlate negatively.
    """
    x, t = _pair(indicator, true, "indicator", "true")
    return _point(x, t, CORRELATION_KEYS)


def _resample_weights(rng: np.random.Generator, b: int, inv: np.ndarray | None, k: int) -> np.ndarray:
    """(b, n) float64 counts of each test set per resample.

    Unstratified: W ~ Multinomial(n, 1/n) (n draws with replacement). Stratified by
    family (``inv`` = family index per set, K families): for each family f with n_f
    sets, its columns get Multinomial(n_f, 1/n_f), so every family keeps exactly n_f
    draws. Families are drawn in sorted-id order."""
    if inv is None:
        n = k
        return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
    W = np.zeros((b, inv.size), dtype=np.float64)
    for f in range(k):
        members = np.flatnonzero(inv == f)
        m = members.size
        W[:, members] = rng.multinomial(m, np.full(m, 1.0 / m), size=b)
    return W


def bootstrap_agreement(pred, true, n_resamples=1000, seed=0, groups=None) -> dict[str, np.ndarray]:
    """Bootstrap distribution of every agreement metric over resampled test sets.

    Returns ``{key: (B,) float64}`` for the keys of :func:`agreement_metrics`.
    Each resample draws the n test sets with replacement (as multinomial counts,
    which is distributionally identical to index resampling); with ``groups``
    (one shift-family id per set) the draw is stratified: each family's n_f sets are
    resampled within the family, so every family is present with n_f draws in
    every resample. Resamples whose drawn ``pred`` or ``true`` values are constant
    give NaN correlations (see :func:`facebench.metrics.bootstrap.nan_fraction`).
    Randomness: ``np.random.default_rng(seed)``; a seed reproduces the output.
    Use :func:`facebench.metrics.bootstrap.percentile_interval` for intervals.
    """
    p, t = _pair(pred, true, "pred", "true")
    n = p.size
    b_total = check_positive_int(n_resamples, "n_resamples")
    if groups is None:
        inv, k = None, n
    else:
        inv, k = check_clusters(groups, n, name="groups")
    rng = np.random.default_rng(seed)
    mats = _kendall_matrix(p, t) if n <= _KENDALL_MATRIX_MAX_N else None
    out = {key: np.empty(b_total, dtype=np.float64) for key in AGREEMENT_KEYS}
    step = _rows_per_chunk(n * 8 * 16)  # ~16 (b, n) float64 temporaries per chunk
    for start in range(0, b_total, step):
        b = min(step, b_total - start)
        W = _resample_weights(rng, b, inv, k)
        res = _batch_metrics(p, t, W, AGREEMENT_KEYS, mats)
        for key in AGREEMENT_KEYS:
            out[key][start:start + b] = res[key]
    return out


# --------------------------------------------------------------------------- regressors

class _MapBase:
    n_features_in_: int

    def _check_fit_inputs(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        Xa = _features(X)
        ya = check_score_vector(y, "y", empty_hint="need at least one test set to fit")
        check_consistent_length(X=Xa, y=ya)
        return Xa, ya

    def _check_predict_inputs(self, X) -> np.ndarray:
        if not hasattr(self, "n_features_in_"):
            raise not_fitted(type(self).__name__, "fit(X, y)")
        Xa = _features(X)
        if Xa.shape[1] != self.n_features_in_:
            raise MetricInputError(
                f"X has {Xa.shape[1]} feature(s) but {type(self).__name__} was fitted with {self.n_features_in_}"
            )
        return Xa


class LinearMap(_MapBase):
    """Ordinary least squares y = X w + b (X 1-D = one feature).

    Solved as ``np.linalg.lstsq`` on centred data: w = lstsq(X - mean X, y - mean y),
    b = mean y - mean X . w (minimum-norm w when X is rank-deficient, as sklearn's
    ``LinearRegression``). Attributes: ``coef_`` (d,), ``intercept_`` float.
    """

    def fit(self, X, y) -> "LinearMap":
        Xa, ya = self._check_fit_inputs(X, y)
        xm = Xa.mean(axis=0)
        ym = float(ya.mean())
        coef, *_ = np.linalg.lstsq(Xa - xm, ya - ym, rcond=None)
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = float(ym - xm @ self.coef_)
        self.n_features_in_ = Xa.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        Xa = self._check_predict_inputs(X)
        return Xa @ self.coef_ + self.intercept_


#: scikit-learn's ``MLPRegressor`` defaults that the L-BFGS fit keeps: gradient tolerance and evaluation budget.
_MLP_TOL = 1e-4
_MLP_MAX_FUN = 15000


def _mlp_init(units: tuple[int, ...], seed: int) -> np.ndarray:
    """Packed start parameters: per layer, Glorot-uniform weights then intercepts in U(-b, b),
    b = sqrt(6 / (fan_in + fan_out)), drawn from ``np.random.RandomState(seed)`` (sklearn's ReLU init);
    packed as all weight matrices (row-major) followed by all intercept vectors."""
    rs = np.random.RandomState(seed)
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        coefs.append(rs.uniform(-bound, bound, (fan_in, fan_out)).ravel())
        intercepts.append(rs.uniform(-bound, bound, fan_out))
    return np.concatenate(coefs + intercepts)


def _mlp_unpack(p: np.ndarray, units: tuple[int, ...]) -> tuple[list, list]:
    """(weight matrices, intercept vectors) as views of the packed vector ``p``."""
    coefs, k = [], 0
    for fan_in, fan_out in zip(units[:-1], units[1:]):
        coefs.append(p[k:k + fan_in * fan_out].reshape(fan_in, fan_out))
        k += fan_in * fan_out
    intercepts = []
    for fan_out in units[1:]:
        intercepts.append(p[k:k + fan_out])
        k += fan_out
    return coefs, intercepts


def _mlp_forward(X: np.ndarray, coefs: list, intercepts: list) -> list:
    """Activations of every layer, X first: ``a @ W + b``, ReLU in place on the hidden layers, identity out."""
    acts = [X]
    last = len(coefs) - 1
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        z = acts[-1] @ w
        z += b
        if i < last:
            np.maximum(z, 0, out=z)
        acts.append(z)
    return acts


class _MLPLoss:
    """``p -> (loss, gradient)`` of a ReLU MLP with one identity output on (X, y (n, 1)):
    loss = 0.5 mean (y - out)^2 + 0.5 alpha sum ||W||^2 / n (intercepts not penalised).

    The numbers of scikit-learn's ``MLPRegressor`` (squared error, no sample weights), bit for bit, so
    L-BFGS-B takes the same steps: every product, sum and reduction is the one sklearn computes, on arrays
    of the same shapes and layouts; only element-wise steps are merged across layers (each gradient entry
    is still (product + alpha w) / n, computed once on the packed vector), for half the NumPy calls."""

    def __init__(self, X: np.ndarray, y: np.ndarray, units: tuple[int, ...], alpha: float):
        self.X, self.y, self.units, self.alpha = X, y, units, alpha
        self.n = X.shape[0]
        self.n_coef = sum(a * b for a, b in zip(units[:-1], units[1:]))
        self._at, self._grad = None, None

    def fun(self, p: np.ndarray) -> float:
        """The loss at ``p``; its gradient is kept for :meth:`jac` (SciPy asks for both at each point: a
        separate ``jac`` costs SciPy's wrapper a quarter less than ``jac=True``)."""
        loss, self._grad = self(p)
        self._at = p.tobytes()
        return loss

    def jac(self, p: np.ndarray) -> np.ndarray:
        """The gradient at ``p`` (the one :meth:`fun` kept when ``p`` is the point it was last called at)."""
        if p.tobytes() != self._at:
            self.fun(p)
        return self._grad

    def __call__(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        coefs, intercepts = _mlp_unpack(p, self.units)
        acts = _mlp_forward(self.X, coefs, intercepts)
        n = self.n
        delta = acts[-1] - self.y
        # sklearn: 0.5 * ((y - out) ** 2).mean(axis=0).mean(); (y - out)^2 is (out - y)^2 to the bit, and the
        # mean of the one column is its sum / n
        loss = 0.5 * (np.add.reduce(delta ** 2, axis=0)[0] / n)
        penalty = 0
        for w in coefs:
            flat = w.ravel()
            penalty += np.dot(flat, flat)
        loss += (0.5 * self.alpha) * penalty / n
        products, sums = [None] * len(coefs), [None] * len(coefs)
        for i in range(len(coefs) - 1, -1, -1):
            products[i] = (acts[i].T @ delta).ravel()
            sums[i] = np.add.reduce(delta, axis=0)
            if i:
                delta = delta @ coefs[i].T
                delta[acts[i] == 0] = 0
        grad = np.concatenate(products + sums)
        grad[:self.n_coef] += self.alpha * p[:self.n_coef]
        grad /= n
        return loss, grad


class NonLinearMap(_MapBase):
    """A small MLP as in the Gscore PR abstract: ``sklearn.neural_network.MLPRegressor(
    hidden_layer_sizes=(16,), alpha=1e-3, max_iter=5000, random_state=seed, solver=solver)``.

    ``solver`` defaults to ``"lbfgs"`` (sklearn's advice for small data sets; a meta-set
    has tens to hundreds of test sets). With ``solver="adam"`` (MLPRegressor's own
    default) training stops early (tol 1e-4 over 10 epochs) and under-fits: one period
    of a sine gets train R^2 0.70-0.96 over seeds 0-7, vs >= 0.99 with lbfgs.
    X (per column) and y are standardised, z = (v - mean) / std (std 0 -> 1), with the
    scalers stored here (``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``);
    predictions are mapped back to y's scale. Deterministic for a given ``seed``.
    ``"lbfgs"`` runs sklearn's arithmetic here (:class:`_MLPLoss`, sklearn's init, tolerance and
    evaluation budget, ``scipy.optimize.minimize(method="L-BFGS-B")`` as sklearn calls it): the same
    bits as ``MLPRegressor`` for 40% less CPU (its loss and gradient at half the cost; SciPy's
    L-BFGS-B driver is the rest); ``"adam"`` / ``"sgd"`` fit ``MLPRegressor`` itself (imported
    lazily, its ``ConvergenceWarning`` silenced). ``coefs_`` / ``intercepts_`` hold the fitted layers,
    ``n_iter_`` the iterations, ``converged_`` whether it stopped before ``max_iter``.
    """

    #: :func:`leave_one_family_out` may fit its folds in worker processes (picklable, deterministic, slow)
    fit_in_processes = True

    def __init__(self, seed: int = 0, hidden_layer_sizes=(16,), alpha: float = 1e-3, max_iter: int = 5000,
                 solver: str = "lbfgs"):
        self.seed = check_int_at_least(seed, "seed", 0)
        check_choice(solver, ("lbfgs", "adam", "sgd"), "solver")
        self.hidden_layer_sizes = tuple(check_positive_int(h, "hidden_layer_sizes entry")
                                        for h in hidden_layer_sizes)
        self.alpha = float(alpha)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.solver = solver

    def fit(self, X, y) -> "NonLinearMap":
        Xa, ya = self._check_fit_inputs(X, y)
        self.x_mean_ = Xa.mean(axis=0)
        sx = Xa.std(axis=0)
        self.x_scale_ = np.where(sx > 0, sx, 1.0)
        self.y_mean_ = float(ya.mean())
        sy = float(ya.std())
        self.y_scale_ = sy if sy > 0 else 1.0
        Z, t = (Xa - self.x_mean_) / self.x_scale_, (ya - self.y_mean_) / self.y_scale_
        fit = self._fit_lbfgs if self.solver == "lbfgs" else self._fit_sklearn
        self.coefs_, self.intercepts_, self.n_iter_ = fit(Z, t)
        if not all(np.isfinite(a).all() for a in self.coefs_ + self.intercepts_):
            raise MetricInputError("the MLP's fitted weights are not finite; check X and y for extreme values")
        self.converged_ = bool(self.n_iter_ < self.max_iter)
        self.n_features_in_ = Xa.shape[1]
        return self

    def _fit_lbfgs(self, Z: np.ndarray, t: np.ndarray) -> tuple[list, list, int]:
        from scipy import optimize

        units = (Z.shape[1], *self.hidden_layer_sizes, 1)
        loss = _MLPLoss(Z, t.reshape(-1, 1), units, self.alpha)
        res = optimize.minimize(loss.fun, _mlp_init(units, self.seed), method="L-BFGS-B", jac=loss.jac,
                                options={"maxfun": _MLP_MAX_FUN, "maxiter": self.max_iter, "gtol": _MLP_TOL})
        coefs, intercepts = _mlp_unpack(res.x, units)
        return coefs, intercepts, int(min(res.nit, self.max_iter))

    def _fit_sklearn(self, Z: np.ndarray, t: np.ndarray) -> tuple[list, list, int]:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        model = MLPRegressor(hidden_layer_sizes=self.hidden_layer_sizes, alpha=self.alpha,
                             max_iter=self.max_iter, random_state=self.seed, solver=self.solver)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Z, t)
        return list(model.coefs_), list(model.intercepts_), int(model.n_iter_)

    def predict(self, X) -> np.ndarray:
        Xa = self._check_predict_inputs(X)
        z = _mlp_forward((Xa - self.x_mean_) / self.x_scale_, self.coefs_, self.intercepts_)[-1]
        return z.reshape(-1) * self.y_scale_ + self.y_mean_


# --------------------------------------------------------------------------- cross-validation

def leave_one_family_out(X, y, families, model_factory: Callable[[], object], processes: int | None = None
                         ) -> np.ndarray:
    """Out-of-family predictions, shape (n,) float64.

    For each family f (sorted ids): ``model = model_factory()``, fit on all sets not in
    f, predict the sets in f. ``X`` is passed to the model with its original
    dimensionality (1-D stays 1-D). Raises MetricInputError with a single family (no
    held-out fit is possible) or when a training fold has fewer than 2 sets.

    ``processes``: forked worker processes that fit the folds, each taking the next one when it is
    free (0 or 1: every fold is fitted in this process). By default (None) only models with
    ``fit_in_processes = True`` (:class:`NonLinearMap`, whose L-BFGS fits take seconds) use them, on
    Linux: one per usable CPU, at most one per fold. Every fold runs the same code on the same inputs
    wherever it runs, so the predictions are the same bits for any ``processes``.
    """
    check_callable(model_factory, "model_factory", "no arguments, e.g. LinearMap or lambda: NonLinearMap(0)")
    Xa = _features(X)
    if np.ndim(X) == 1:
        Xa = Xa[:, 0]
    ya = check_score_vector(y, "y", empty_hint="need test sets with a true metric")
    n = check_consistent_length(X=Xa, y=ya)
    inv, k = check_clusters(families, n, name="families")
    if k < 2:
        raise MetricInputError(
            "leave_one_family_out needs at least 2 shift families; with one family every "
            "training fold would be empty (no held-out fit is possible)"
        )
    labels = np.unique(np.asarray(families))
    jobs = []
    for f in range(k):
        test = inv == f
        n_train = int((~test).sum())
        if n_train < 2:
            raise MetricInputError(
                f"holding out family {labels[f]!r} leaves {n_train} training set(s); each fold needs >= 2"
            )
        jobs.append((model_factory(), Xa[~test], ya[~test], Xa[test]))
    out = np.empty(n, dtype=np.float64)
    for f, pred in enumerate(_fold_predictions(jobs, processes)):
        test = inv == f
        if pred.shape[0] != int(test.sum()):
            raise MetricInputError(
                f"model.predict returned {pred.shape[0]} values for {int(test.sum())} held-out sets of family {labels[f]!r}"
            )
        out[test] = pred
    return out


def _fit_fold(model, X_train, y_train, X_test) -> np.ndarray:
    """One fold: fit ``model`` on the training sets, predict the held-out ones (flattened, float64)."""
    model.fit(X_train, y_train)
    return np.asarray(model.predict(X_test), dtype=np.float64).reshape(-1)


def _fold_processes(jobs: list, processes: int | None) -> int:
    """Worker processes for ``jobs``: ``processes`` if given, else the usable CPUs for ``fit_in_processes``
    models on Linux (forked workers inherit the loaded modules and BLAS settings), at most one per fold;
    fewer than 2 means none (this process would only wait), and none in a daemonic process (no children)."""
    import multiprocessing

    if processes is None:
        wanted = all(getattr(model, "fit_in_processes", False) for model, *_ in jobs)
        processes = usable_cpus() if wanted and sys.platform.startswith("linux") else 0
    processes = min(check_int_at_least(processes, "processes", 0), len(jobs))
    if processes < 2 or multiprocessing.current_process().daemon:
        return 0
    return processes


def _fold_predictions(jobs: list, processes: int | None) -> list[np.ndarray]:
    """``[_fit_fold(*job) for job in jobs]``, the folds fitted by forked worker processes (each takes the next
    fold when it is free) when :func:`_fold_processes` gives some, else here; also here when the workers
    cannot start (no fork, no POSIX semaphores, a process limit) or die. Errors surface in fold order."""
    workers = _fold_processes(jobs, processes)
    if workers < 1:
        return [_fit_fold(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    except (OSError, ValueError):  # no fork start method, no POSIX semaphores: fit here
        return [_fit_fold(*job) for job in jobs]
    try:
        try:
            with warnings.catch_warnings():  # Python >= 3.12 warns on fork in a process with threads: the
                # workers only run NumPy/SciPy on the arrays they are handed, no lock another thread may hold
                warnings.filterwarnings("ignore", message=".*multi-threaded, use of fork", category=DeprecationWarning)
                futures = [pool.submit(_fit_fold, *job) for job in jobs]
            return [future.result() for future in futures]
        except (OSError, BrokenProcessPool):  # fork failed, or a worker died (e.g. killed): fit here
            return [_fit_fold(*job) for job in jobs]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def lofo_conformal_intervals(pred, true, families, confidence: float = 0.95) -> np.ndarray:
    """Leave-one-family-out conformal intervals, shape (n, 2) float64.

    Families, not sets, are the exchangeable units (sets of one family share its bias). With K families that
    have a finite prediction, for a set i of family f: each other family g spreads a weight of 1/K evenly over
    the absolute errors ``|pred_j - true_j|`` of its n_g sets (1/(K n_g) each), and the held-out family gets
    its 1/K at +inf (its own error is unseen); ``q`` is the smallest error whose cumulative weight reaches
    ``confidence`` (+inf when the other families' (K - 1)/K falls short), and the interval is
    ``[pred_i - q, pred_i + q]``. A set's own family never calibrates it, so the width carries the estimator's
    bias on unseen kinds of shift, not only its sampling noise; coverage of the held-out family is then at least
    ``confidence`` when families are exchangeable (for fitted maps, whose other-family errors come from fits
    that saw family f, approximately). Non-finite predictions get NaN intervals and calibrate nothing.
    """
    pred = np.asarray(pred, np.float64)
    true = check_score_vector(true, "true", empty_hint="need test sets with a true metric")
    n = check_consistent_length(pred=pred, true=true)
    if not 0.0 < float(confidence) < 1.0:
        raise MetricInputError(f"confidence must lie in (0, 1), got {confidence}")
    inv, k = check_clusters(families, n, name="families")
    ok = np.isfinite(pred)
    err = np.abs(pred - true)
    sizes = np.bincount(inv[ok], minlength=k)
    n_families = int(np.count_nonzero(sizes))
    out = np.full((n, 2), np.nan)
    for f in range(k):
        mine = ok & (inv == f)
        if not mine.any():
            continue
        others = ok & (inv != f)
        order = np.argsort(err[others], kind="stable")
        errors = err[others][order]
        weight = np.cumsum(1.0 / (n_families * sizes[inv[others]][order]))
        reach = int(np.searchsorted(weight, float(confidence) - 1e-12, side="left"))
        q = errors[reach] if reach < errors.size else np.inf
        out[mine, 0], out[mine, 1] = pred[mine] - q, pred[mine] + q
    return out
