"""Label-free evaluation: indicators of OOD-detection AUROC and accuracy estimators under shift.

Two families of functions (``spec/protocols.md`` §7, ``spec/anchors.md`` §3.6):

**Gscore-style indicators of OOD-detection performance.** Inputs are a detector's
scores on one *unlabelled* mixture of ID and OOD samples (higher score = more
in-distribution). The Gscore paper (Zhang, Deng, Zheng, arXiv 2302.08287 / Pattern
Recognition 2025) derives its indicator from the bimodality of this score
distribution, but its formulas are unpublished; the indicators here
(2-component 1-D GMM separation, Ashman's D, the bimodality coefficient, the
component overlap) are **Gscore-style, hypothetical** indicators in that spirit,
*not* the paper's definitions. Without labels the sign of the separation is not
identifiable, so every GMM indicator assumes the high-mean component is ID.

**Label-free accuracy estimators** (AC, DoC, ATC-MC/NE, COT, nuclear norm) from a
classifier's softmax probabilities on an unlabelled target set, with a labelled
source (ID validation) split for calibration. Probabilities are expected to come
from a model temperature-scaled on the source split (:func:`fit_temperature`).

Everything is computed in float64; random parts (GMM restarts, COT batching) are
seeded and deterministic.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from facebench.errors import MetricInputError

from ._threads import usable_cpus
from ._validation import (
    as_float64,
    check_binary_flags,
    check_choice,
    check_consistent_length,
    check_int_at_least,
    check_labels,
    check_logits,
    check_positive_real,
    check_probs,
    check_score_vector,
)

__all__ = [
    "fit_gmm_1d",
    "fit_gmm_1d_many",
    "gmm_implied_auroc",
    "ashman_d",
    "bimodality_coefficient",
    "gmm_overlap",
    "score_features",
    "FEATURE_NAMES",
    "INDICATORS",
    "indicator_table",
    "fit_temperature",
    "softmax_t",
    "average_confidence",
    "difference_of_confidences",
    "atc_threshold",
    "atc_estimate",
    "neg_entropy_scores",
    "nuclear_norm_score",
    "cot_estimate",
    "cot_estimates",
    "estimate_accuracy",
    "ACCURACY_ESTIMATORS",
    "COT_MAX_BATCH",
]

#: Names of the label-free accuracy estimators (see :func:`estimate_accuracy`).
ACCURACY_ESTIMATORS = ("AC", "DoC", "ATC-MC", "ATC-NE", "COT", "nuclear_norm")

#: COT solves exact assignment problems on at most this many target samples at once.
COT_MAX_BATCH = 2000

#: EM batches of at least this many scores (sets x restarts x set length) are split over threads.
_EM_PARALLEL_ELEMENTS = 1 << 15

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = float(np.log(2.0))


# --------------------------------------------------------------------------- validation


def _check_mixture_scores(scores, name: str = "scores", min_n: int = 2) -> np.ndarray:
    arr = check_score_vector(scores, name, f"label-free indicators need at least {min_n} scores")
    if arr.shape[0] < min_n:
        raise MetricInputError(f"{name} has {arr.shape[0]} value(s); this indicator needs at least {min_n}")
    return arr


# --------------------------------------------------------------------------- 1-D Gaussian mixture


def _log_normal(x: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """(n, 2) matrix of log N(x_i | mu_k, s_k^2)."""
    z = (x[:, None] - means[None, :]) / stds[None, :]
    return -0.5 * z * z - np.log(stds)[None, :] - _LOG_SQRT_2PI


def _log_joint_runs(x: np.ndarray, means: np.ndarray, stds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R, 2, n) log(w_k N(x_i | mu_k, s_k^2)) of R runs (x (R, n), parameters (R, 2)): per element the same
    IEEE operations, in the same order, as ``_log_normal(x, mu, sd) + log(w)``, done in place; components are
    the middle axis so that every operation runs along n."""
    z = x[:, None, :] - means[:, :, None]
    z /= stds[:, :, None]
    out = np.multiply(z, -0.5)
    out *= z
    out -= np.log(stds)[:, :, None]
    out -= _LOG_SQRT_2PI
    out += np.log(weights)[:, :, None]
    return out


def _sum_in_order(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sum over the last axis adding one term after the other from 0.0, as numpy's ``sum(axis=0)`` of the
    one-run (n, 2) arrays does (not pairwise): the last entry of a running sum, written to ``out`` (default:
    over ``a``). A -0.0 first term of ``a`` becomes 0.0 (as 0.0 + first term)."""
    a[..., 0] += 0.0
    return np.cumsum(a, axis=-1, out=a if out is None else out)[..., -1].copy()


def _logsumexp2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scipy.special.logsumexp`` over the pairs (a, b), bit for bit: the same operations (the larger term
    factored out, ``log1p`` of the other one's ratio, ``log 2`` on ties, the direct formula where that is not
    finite) on whole arrays, without scipy's per-call overhead (0.9 ms a call, 3/4 of EM)."""
    hi = np.maximum(a, b)
    tie = a == b
    any_tie = tie.any()  # rare in continuous scores: skip the masked passes without one
    ratio = np.minimum(a, b)
    with np.errstate(invalid="ignore"):  # -inf - -inf: a tie, set below
        ratio -= hi
        np.exp(ratio, out=ratio)
    if any_tie:
        ratio[tie] = 0.0
    out = np.log1p(ratio, out=ratio)
    if any_tie:
        out[tie] += _LOG_2  # scipy adds log(count of maxima): log 1 = 0 elsewhere
    out += hi
    finite = np.isfinite(out)
    if not finite.all():
        bad = ~finite
        with np.errstate(divide="ignore", over="ignore"):
            out[bad] = np.log(np.exp(a[bad]) + np.exp(b[bad]))
    return out


def _hard_init(x: np.ndarray, c: np.ndarray, floor: float):
    """Weights/means/stds from assigning each point to the nearest of two centres (ties -> 0)."""
    assign = (np.abs(x - c[1]) < np.abs(x - c[0])).astype(np.int64)
    counts = np.bincount(assign, minlength=2)
    if counts.min() == 0:
        return None
    w = counts / x.shape[0]
    mu = np.array([x[assign == k].mean() for k in range(2)])
    var = np.array([x[assign == k].var() for k in range(2)])
    return w, mu, np.sqrt(np.maximum(var, floor))


def _em_runs(x: np.ndarray, w: np.ndarray, mu: np.ndarray, sd: np.ndarray, floor: np.ndarray, max_iter: int,
             tol: float):
    """EM for R runs of equal length at once: x (R, n), start parameters (R, 2), variance floors (R,).

    Each run follows the one-run recursion exactly (the same element-wise operations and the same order of
    every sum, so the same bits) and stops on its own: when its mean log-likelihood changes by less than
    ``tol`` (converged) or after ``max_iter`` iterations. Returns the final (w, mu, sd), the total
    log-likelihood (R,) and the converged flags (R,)."""
    eps = 10.0 * np.finfo(np.float64).eps
    w, mu, sd = w.copy(), mu.copy(), sd.copy()
    prev = np.full(x.shape[0], -np.inf)
    converged = np.zeros(x.shape[0], dtype=bool)
    active = np.arange(x.shape[0])
    xa = x
    for _ in range(max_iter):
        logp = _log_joint_runs(xa, mu[active], sd[active], w[active])
        lse = _logsumexp2(logp[:, 0], logp[:, 1])
        ll = lse.mean(axis=1)
        done = np.abs(ll - prev[active]) < tol
        converged[active[done]] = True
        prev[active] = ll
        if done.any():  # drop the runs that stopped
            go = ~done
            active, xa, logp, lse = active[go], xa[go], logp[go], lse[go]
            if not len(active):
                break
        logp -= lse[:, None, :]
        resp = np.exp(logp, out=logp)
        nk = _sum_in_order(resp, out=np.empty_like(resp)) + eps  # resp = exp(.) holds no -0.0: kept as it is
        w[active] = nk / nk.sum(axis=1, keepdims=True)
        mu_a = _sum_in_order(resp * xa[:, None, :]) / nk
        mu[active] = mu_a
        dev = xa[:, None, :] - mu_a[:, :, None]
        dev **= 2
        dev *= resp
        sd[active] = np.sqrt(np.maximum(_sum_in_order(dev) / nk, floor[active][:, None]))
    logp = _log_joint_runs(x, mu, sd, w)
    total = _logsumexp2(logp[:, 0], logp[:, 1]).sum(axis=1)
    return w, mu, sd, total, converged


def _gmm_starts(x: np.ndarray, n_init: int, seed: int) -> tuple[float, list]:
    """The variance floor and the ``n_init`` start parameters (w, mu, sd) of :func:`fit_gmm_1d` for ``x``."""
    n = x.shape[0]
    floor = 1e-6 * float(x.var()) + 1e-12
    rng = np.random.default_rng(seed)
    q25, q75 = np.quantile(x, [0.25, 0.75])
    sd0 = math.sqrt(max(float(x.var()) / 4.0, floor))
    quartile_init = (np.array([0.5, 0.5]), np.array([q25, q75], dtype=np.float64), np.array([sd0, sd0]))
    starts = []
    for run in range(n_init):
        init = quartile_init
        if run > 0:
            c0 = x[rng.integers(n)]
            d2 = (x - c0) ** 2
            c1 = x[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else c0
            init = _hard_init(x, np.array([c0, c1]), floor) or quartile_init
        starts.append(tuple(np.array(a, dtype=np.float64) for a in init))
    return floor, starts


def _check_gmm_options(n_init, max_iter, tol, seed) -> tuple[int, int, float, int]:
    n_init = check_int_at_least(n_init, "n_init", 1)
    max_iter = check_int_at_least(max_iter, "max_iter", 1)
    seed = check_int_at_least(seed, "seed", 0)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) or not (float(tol) >= 0.0):
        raise MetricInputError(f"tol must be a number >= 0, got {tol!r}")
    return n_init, max_iter, float(tol), seed


def fit_gmm_1d(scores, n_init: int = 5, max_iter: int = 500, tol: float = 1e-8, seed: int = 0) -> dict:
    """Fit a 2-component 1-D Gaussian mixture to ``scores`` by EM.

    Restarts: run 0 starts from the quartiles (means q25/q75, stds = std/2, equal
    weights); runs 1..n_init-1 from a k-means++-like pair of centres (first uniform,
    second with probability proportional to squared distance, ``np.random.default_rng(seed)``)
    followed by a hard nearest-centre assignment. The run with the highest
    log-likelihood wins (earliest on ties). Variances are floored at
    ``1e-6 * var(scores) + 1e-12`` after every M-step. EM stops when the mean
    per-sample log-likelihood changes by less than ``tol`` (``converged=True``) or
    after ``max_iter`` iterations.

    Returns ``{"weights", "means", "stds"}`` (float64 arrays of shape (2,), components
    sorted by mean ascending), ``"log_likelihood"`` (the **total** log-likelihood,
    summed over samples) and ``"converged"`` (bool, of the winning run).
    Needs at least 2 scores.
    """
    return fit_gmm_1d_many([scores], n_init=n_init, max_iter=max_iter, tol=tol, seed=seed)[0]


def fit_gmm_1d_many(score_sets, n_init: int = 5, max_iter: int = 500, tol: float = 1e-8, seed: int = 0) -> list[dict]:
    """:func:`fit_gmm_1d` of every score set (the same results, bit for bit), with the EM runs of all sets of
    one length iterated together as one array (a meta-benchmark fits a mixture to each of its test sets).
    Large batches are cut into blocks of whole sets run in threads (NumPy releases the GIL in the passes; every
    run's arithmetic is its own, so the blocks change no bit)."""
    xs = [_check_mixture_scores(s) for s in score_sets]
    n_init, max_iter, tol, seed = _check_gmm_options(n_init, max_iter, tol, seed)
    blocks = []  # each block: indices of sets of one length, in order
    for n in sorted({x.shape[0] for x in xs}):
        members = [i for i, x in enumerate(xs) if x.shape[0] == n]
        parts = min(usable_cpus(), len(members)) if len(members) * n_init * n >= _EM_PARALLEL_ELEMENTS else 1
        blocks += [members[lo:hi] for lo, hi in zip(*_even_bounds(len(members), parts))]

    def fit_block(members: list) -> list:
        starts = [_gmm_starts(xs[i], n_init, seed) for i in members]
        x = np.repeat(np.stack([xs[i] for i in members]), n_init, axis=0)
        w, mu, sd = (np.stack([run[k] for _, runs in starts for run in runs]) for k in range(3))
        floor = np.repeat([f for f, _ in starts], n_init)
        res = _em_runs(x, w, mu, sd, floor, max_iter, tol)
        return [_best_run(res, range(j * n_init, (j + 1) * n_init)) for j in range(len(members))]

    blocks.sort(key=lambda b: -len(b) * xs[b[0]].shape[0])  # the largest first: the threads end together
    threads = min(usable_cpus(), len(blocks))
    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(fit_block, blocks))
    else:
        results = [fit_block(b) for b in blocks]
    fits: list = [None] * len(xs)
    for members, block_fits in zip(blocks, results):
        for i, fit in zip(members, block_fits):
            fits[i] = fit
    return fits


def _even_bounds(n: int, parts: int) -> tuple[list, list]:
    """(starts, stops) of ``parts`` contiguous ranges of near-equal size covering 0..n-1."""
    edges = [round(n * k / parts) for k in range(parts + 1)]
    return edges[:-1], edges[1:]


def _best_run(res, runs) -> dict:
    """The run of highest total log-likelihood (the earliest on ties), components sorted by mean."""
    w, mu, sd, total, converged = res
    best = None
    for r in runs:
        if best is None or total[r] > total[best]:
            best = r
    order = np.argsort(mu[best], kind="stable")
    return {
        "weights": w[best][order].astype(np.float64),
        "means": mu[best][order].astype(np.float64),
        "stds": sd[best][order].astype(np.float64),
        "log_likelihood": float(total[best]),
        "converged": bool(converged[best]),
    }


_FIT_CACHE: dict = {}
_FIT_CACHE_SIZE = 16
_FIT_LOCK = threading.Lock()


def _fit_key(x: np.ndarray, gmm_kwargs: dict):
    return hashlib.sha1(x.tobytes()).hexdigest(), x.shape[0], tuple(sorted(gmm_kwargs.items()))


def _remember(key, fit: dict) -> None:
    with _FIT_LOCK:
        while len(_FIT_CACHE) >= _FIT_CACHE_SIZE:
            _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
        _FIT_CACHE[key] = fit


def _fit(scores, **gmm_kwargs) -> dict:
    """:func:`fit_gmm_1d` with a small memo keyed by the scores' bytes and the kwargs, so that the
    indicators (and :func:`score_features`) evaluated on one score set share one fit."""
    x = _check_mixture_scores(scores)
    key = _fit_key(x, gmm_kwargs)
    try:
        hash(key)
    except TypeError:  # unhashable kwargs: let fit_gmm_1d report them
        return fit_gmm_1d(x, **gmm_kwargs)
    with _FIT_LOCK:
        hit = _FIT_CACHE.get(key)
    if hit is None:
        hit = fit_gmm_1d(x, **gmm_kwargs)
        _remember(key, hit)
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in hit.items()}


def _auroc_from_fit(fit: dict) -> float:
    """Phi((mu_hi - mu_lo) / sqrt(s_hi^2 + s_lo^2)) for a fit sorted by mean."""
    from scipy import special
    mu, sd = fit["means"], fit["stds"]
    return float(special.ndtr((mu[1] - mu[0]) / math.hypot(sd[0], sd[1])))


def _ashman_from_fit(fit: dict) -> float:
    """Ashman's D = sqrt(2) |mu_1 - mu_2| / sqrt(s_1^2 + s_2^2)."""
    mu, sd = fit["means"], fit["stds"]
    return float(math.sqrt(2.0) * abs(mu[1] - mu[0]) / math.hypot(sd[0], sd[1]))


def _overlap_from_fit(fit: dict, grid: int) -> float:
    """Trapezoid integral of min(w_1 N_1, w_2 N_2) on the union of two per-component grids.

    Each component contributes ``grid`` equally spaced points over mu_k +- 8 s_k, so a
    narrow component is resolved even next to a wide one.
    """
    w, mu, sd = fit["weights"], fit["means"], fit["stds"]
    xs = np.unique(np.concatenate([np.linspace(m - 8.0 * s, m + 8.0 * s, grid) for m, s in zip(mu, sd)]))
    dens = w[None, :] * np.exp(_log_normal(xs, mu, sd))
    val = float(np.trapezoid(dens.min(axis=1), xs)) if hasattr(np, "trapezoid") else float(
        np.trapz(dens.min(axis=1), xs))
    return min(max(val, 0.0), 0.5)


def _gap_over_pooled_std(fit: dict) -> float:
    """(mu_hi - mu_lo) / sqrt(w_lo s_lo^2 + w_hi s_hi^2) (weight-pooled within-component std)."""
    w, mu, sd = fit["weights"], fit["means"], fit["stds"]
    return float((mu[1] - mu[0]) / math.sqrt(w[0] * sd[0] ** 2 + w[1] * sd[1] ** 2))


def gmm_implied_auroc(scores, **gmm_kwargs) -> float:
    """AUROC implied by a 2-component GMM fit (:func:`fit_gmm_1d`), high-mean component = ID.

    ``Phi((mu_hi - mu_lo) / sqrt(s_hi^2 + s_lo^2))`` = P(X_hi > X_lo) for independent
    Gaussians. Always in [0.5, 1): without labels the sign is unidentifiable.
    A "Gscore-style (GMM)" indicator, not the Gscore paper's formula.
    """
    return _auroc_from_fit(_fit(scores, **gmm_kwargs))


def ashman_d(scores, **gmm_kwargs) -> float:
    """Ashman's D of the 2-component GMM fit: ``sqrt(2) |mu_1 - mu_2| / sqrt(s_1^2 + s_2^2)``.

    D > 2 is the usual threshold for a clean separation of the two modes.
    Relation: ``gmm_implied_auroc = Phi(D / sqrt(2))``. Higher = better separated.
    """
    return _ashman_from_fit(_fit(scores, **gmm_kwargs))


def gmm_overlap(scores, grid: int = 2048, **gmm_kwargs) -> float:
    """Overlapping area of the two **weighted** GMM component densities, ``integral min(w_1 N_1, w_2 N_2) dx``.

    Normalisation: the weights sum to 1, so this is the Bayes error of assigning a
    sample to its component; it lies in [0, min(w_1, w_2)] subset of [0, 0.5] and equals
    0.5 only for two identical, equally weighted components. Direction: **higher =
    more overlap = worse separation** (raw value, not negated). Computed numerically
    (trapezoid) on ``grid`` points over mu_k +- 8 s_k for each component (union of the grids).
    """
    grid = check_int_at_least(grid, "grid", 16)
    return _overlap_from_fit(_fit(scores, **gmm_kwargs), grid)


def bimodality_coefficient(scores) -> float:
    """Sarle's bimodality coefficient ``BC = (g^2 + 1) / (k + 3 (n-1)^2 / ((n-2)(n-3)))``.

    g = bias-corrected sample skewness (``scipy.stats.skew(bias=False)``), k = bias-corrected
    sample excess kurtosis (``scipy.stats.kurtosis(bias=False)``). BC > 5/9 (the value for a
    uniform distribution) suggests bi- or multimodality. Needs n >= 4 and non-constant scores.
    """
    from scipy import stats
    x = _check_bimodality_input(scores)
    return _bimodality_value(float(stats.skew(x, bias=False)), float(stats.kurtosis(x, fisher=True, bias=False)),
                             x.shape[0])


def _check_bimodality_input(scores) -> np.ndarray:
    """The scores as float64, at least 4 of them and not all equal (skewness and kurtosis are defined)."""
    x = _check_mixture_scores(scores, min_n=4)
    if np.ptp(x) == 0.0:
        raise MetricInputError("scores are constant; skewness, kurtosis and the bimodality coefficient are undefined")
    return x


def _bimodality_value(g: float, k: float, n: int) -> float:
    """Sarle's BC from skewness g, excess kurtosis k and the sample size n."""
    return float((g * g + 1.0) / (k + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


#: Names of :func:`score_features`, in order.
FEATURE_NAMES = (
    "mean",
    "std",
    "median",
    "q05",
    "q25",
    "q75",
    "q95",
    "skewness",
    "kurtosis",
    "bimodality_coefficient",
    "gmm_implied_auroc",
    "ashman_d",
    "gmm_overlap",
    "gmm_weight_high",
    "gmm_gap_over_pooled_std",
)


def score_features(scores) -> dict[str, float]:
    """Feature vector of one score set for learned (regression/MLP) maps to AUROC.

    Keys in the order of :data:`FEATURE_NAMES` (a plain, insertion-ordered dict):
    mean, std (population, ddof=0), median, quantiles q05/q25/q75/q95 (linear
    interpolation), skewness and excess kurtosis (bias-corrected), the bimodality
    coefficient, and from **one** default GMM fit: implied AUROC, Ashman's D, the
    weighted overlap, the weight of the high-mean component and the mean gap over the
    weight-pooled within-component std ``(mu_hi - mu_lo) / sqrt(w_lo s_lo^2 + w_hi s_hi^2)``.
    Needs n >= 4 non-constant scores.
    """
    from scipy import stats
    x = _check_bimodality_input(scores)
    g, k = float(stats.skew(x, bias=False)), float(stats.kurtosis(x, fisher=True, bias=False))
    return dict(zip(FEATURE_NAMES, _feature_values(x, _fit(x), g, k)))


def _feature_values(x: np.ndarray, fit: dict, g: float, k: float) -> tuple[float, ...]:
    """:data:`FEATURE_NAMES` values of the checked scores ``x``, from their mixture ``fit`` and their
    bias-corrected skewness ``g`` and excess kurtosis ``k``."""
    q05, q25, q50, q75, q95 = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    return (
        float(x.mean()),
        float(x.std()),
        float(q50),
        float(q05),
        float(q25),
        float(q75),
        float(q95),
        g,
        k,
        _bimodality_value(g, k, x.shape[0]),
        _auroc_from_fit(fit),
        _ashman_from_fit(fit),
        _overlap_from_fit(fit, 2048),
        float(fit["weights"][1]),
        _gap_over_pooled_std(fit),
    )


def _mean_score(scores) -> float:
    """Trivial baseline: mean score of the mixture."""
    return float(check_score_vector(scores, "scores").mean())


def _score_std(scores) -> float:
    """Trivial baseline: population std (ddof=0) of the mixture's scores."""
    return float(check_score_vector(scores, "scores").std())


#: Indicator name -> ``fn(scores) -> float``. Directions: gmm_auroc, ashman_d and
#: bimodality_coefficient grow with separation; gmm_overlap *shrinks* with separation
#: (raw, not negated); mean_score and score_std are trivial baselines.
INDICATORS: dict[str, Callable[[np.ndarray], float]] = {
    "gmm_auroc": gmm_implied_auroc,
    "ashman_d": ashman_d,
    "bimodality_coefficient": bimodality_coefficient,
    "gmm_overlap": gmm_overlap,
    "mean_score": _mean_score,
    "score_std": _score_std,
}


#: Indicators that are also score features (the same function of the same fit): name -> feature name.
_INDICATOR_FEATURES = {"gmm_auroc": (gmm_implied_auroc, "gmm_implied_auroc"), "ashman_d": (ashman_d, "ashman_d"),
                       "bimodality_coefficient": (bimodality_coefficient, "bimodality_coefficient"),
                       "gmm_overlap": (gmm_overlap, "gmm_overlap"), "mean_score": (_mean_score, "mean"),
                       "score_std": (_score_std, "std")}


def indicator_table(score_sets) -> tuple[np.ndarray, np.ndarray]:
    """For each score set, its :data:`INDICATORS` values (S, 6) and :func:`score_features` vector (S, 15), in
    registry order: the numbers that calling them set by set gives, bit for bit, with the mixtures of all sets
    fitted together by :func:`fit_gmm_1d_many`, skewness and kurtosis taken once per set length over the sets
    as rows, and each built-in indicator read from the feature that is the same number."""
    xs = [_check_mixture_scores(s) for s in score_sets]
    for x in xs:
        _check_bimodality_input(x)
    skew, kurt = _moments_by_length(xs)
    columns = {name: FEATURE_NAMES.index(_INDICATOR_FEATURES[name][1]) for name, fn in INDICATORS.items()
               if name in _INDICATOR_FEATURES and fn is _INDICATOR_FEATURES[name][0]}
    rows, feats = [], []
    for x, fit, g, k in zip(xs, fit_gmm_1d_many(xs), skew.tolist(), kurt.tolist()):
        values = _feature_values(x, fit, g, k)
        feats.append(values)
        rows.append([values[columns[name]] if name in columns else fn(x) for name, fn in INDICATORS.items()])
    shape = (len(xs),)
    return np.array(rows).reshape(shape + (len(INDICATORS),)), np.array(feats).reshape(shape + (len(FEATURE_NAMES),))


def _moments_by_length(xs: list) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected skewness and excess kurtosis (scipy) of each set, one call per set length over the sets
    of that length as rows: each row is reduced on its own, so these are the bits of one call per set."""
    from scipy import stats
    skew, kurt = np.empty(len(xs)), np.empty(len(xs))
    for n in {x.shape[0] for x in xs}:
        idx = [i for i, x in enumerate(xs) if x.shape[0] == n]
        rows = np.stack([xs[i] for i in idx])
        skew[idx] = stats.skew(rows, axis=1, bias=False)
        kurt[idx] = stats.kurtosis(rows, axis=1, fisher=True, bias=False)
    return skew, kurt


# --------------------------------------------------------------------------- accuracy estimators


def softmax_t(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / T)`` in float64 (max-shifted for stability); (N, K) -> (N, K)."""
    z = check_logits(logits) / check_positive_real(temperature, "temperature")
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    from scipy import special
    zt = z / t
    return float(np.mean(special.logsumexp(zt, axis=1) - zt[np.arange(z.shape[0]), y]))


def fit_temperature(logits, labels, bounds=(0.05, 20.0)) -> float:
    """Temperature T minimising the mean NLL of ``softmax(logits / T)`` on a labelled source split.

    Bounded scalar search (``scipy.optimize.minimize_scalar(method="bounded")``,
    xatol 1e-8) over ``bounds = (lo, hi)``, 0 < lo < hi. If the data are perfectly
    separable the optimum sits at ``lo``.
    """
    from scipy import optimize
    z = check_logits(logits)
    y = check_labels(labels, "labels", n_classes=z.shape[1])
    check_consistent_length(logits=z, labels=y)
    try:
        lo, hi = (float(b) for b in bounds)
    except Exception as exc:
        raise MetricInputError(f"bounds must be a pair (lo, hi) of numbers, got {bounds!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
        raise MetricInputError(f"bounds must satisfy 0 < lo < hi (finite), got {bounds!r}")
    res = optimize.minimize_scalar(lambda t: _nll(z, y, t), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-8, "maxiter": 500})
    t = float(res.x)
    # the bounded search never evaluates the end points themselves; keep them if better
    cands = [(t, _nll(z, y, t)), (lo, _nll(z, y, lo)), (hi, _nll(z, y, hi))]
    return float(min(cands, key=lambda c: c[1])[0])


def average_confidence(probs) -> float:
    """AC: ``mean_i max_k p_ik``, the estimated accuracy of the target set."""
    return float(check_probs(probs, "probs").max(axis=1).mean())


def _source_target(probs_source, labels_source, probs_target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled source probabilities and labels, and target probabilities over the same classes."""
    ps = check_probs(probs_source, "probs_source")
    ys = check_labels(labels_source, "labels_source", n_classes=ps.shape[1])
    check_consistent_length(probs_source=ps, labels_source=ys)
    pt = check_probs(probs_target, "probs_target")
    if pt.shape[1] != ps.shape[1]:
        raise MetricInputError(f"probs_target has {pt.shape[1]} classes but probs_source has {ps.shape[1]}")
    return ps, ys, pt


def difference_of_confidences(probs_source, labels_source, probs_target) -> float:
    """DoC (Guillory et al. 2021): ``Acc_S - (AC_S - AC_T)``.

    Acc_S = fraction of source rows whose argmax (first index on ties) equals the label.
    """
    ps, ys, pt = _source_target(probs_source, labels_source, probs_target)
    acc_s = float(np.mean(ps.argmax(axis=1) == ys))
    return float(acc_s - (ps.max(axis=1).mean() - pt.max(axis=1).mean()))


def atc_threshold(source_scores, source_correct) -> float:
    """ATC threshold (Garg et al. 2022) on a labelled source split.

    Candidates t are the distinct source scores plus ``+inf`` (accept nothing); a sample is
    "above" t when ``score >= t`` (tied scores move together). Chooses t minimising
    ``| #(incorrect with score >= t) - #(correct with score < t) |``, which equals
    ``| #(score >= t) - #correct |``: the fraction of source above t is as close as
    possible to the source accuracy. Ties in that objective go to the **smallest** t
    (the largest accepted fraction). Returns ``inf`` only when no finite t is as good
    (e.g. source accuracy 0).
    """
    s = check_score_vector(source_scores, "source_scores", "ATC needs at least one source sample")
    c = check_binary_flags(source_correct, s.shape[0], "source_correct", "1 = correctly classified source sample")
    cand = np.unique(s)  # ascending
    n_above = s.shape[0] - np.searchsorted(np.sort(s), cand, side="left")
    obj = np.abs(n_above - int(c.sum()))
    i = int(np.argmin(obj))  # first = smallest t
    if int(c.sum()) < obj[i]:  # t = +inf gives |0 - #correct|
        return float("inf")
    return float(cand[i])


def atc_estimate(source_scores, source_correct, target_scores) -> float:
    """ATC estimated target accuracy: fraction of target scores ``>= atc_threshold(source)``.

    Scores: max softmax probability (ATC-MC) or :func:`neg_entropy_scores` (ATC-NE),
    computed the same way on source and target.
    """
    t = atc_threshold(source_scores, source_correct)
    tgt = check_score_vector(target_scores, "target_scores", "ATC needs at least one target sample")
    return float(np.mean(tgt >= t))


def neg_entropy_scores(probs) -> np.ndarray:
    """ATC-NE score per row: ``sum_k p_k log p_k`` (negative entropy, <= 0; 0 log 0 = 0)."""
    from scipy import special
    p = check_probs(probs, "probs")
    return special.xlogy(p, p).sum(axis=1)


def nuclear_norm_score(probs) -> float:
    """Nuclear-norm score (Deng et al. 2023): ``||P||_* / sqrt(N * min(N, K))`` in [0, 1].

    P is the (N, K) probability matrix; the bound follows from ``||P||_* <= sqrt(rank) ||P||_F``
    and ``||p_i||_2 <= 1``. Exactly 1 for confident one-hot, class-balanced predictions.
    A score, not an accuracy: map it with a regression fitted on a meta-set.
    """
    p = check_probs(probs, "probs")
    n, k = p.shape
    sv = np.linalg.svd(p, compute_uv=False)
    return float(min(sv.sum() / math.sqrt(n * min(n, k)), 1.0))


def _largest_remainder_counts(marginal: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to ``n`` from ``n * marginal``: floors, then +1 to the largest
    fractional parts (ties -> lower class index)."""
    raw = n * marginal
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    if short > 0:
        order = np.lexsort((np.arange(marginal.shape[0]), -(raw - counts)))
        counts[order[:short]] += 1
    return counts


def _check_marginal(m, k: int) -> np.ndarray:
    arr = np.asarray(m)
    if arr.ndim != 1 or arr.shape[0] != k:
        raise MetricInputError(f"source_label_marginal must be a 1-D vector of {k} class frequencies, got shape {arr.shape}")
    arr = as_float64(arr, "source_label_marginal", allow_bool=False)
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise MetricInputError("source_label_marginal must hold finite, non-negative frequencies")
    if abs(arr.sum() - 1.0) > 1e-6:
        raise MetricInputError(
            f"source_label_marginal must sum to 1 (got {arr.sum()!r}); pass np.bincount(y, minlength=K) / len(y)"
        )
    return arr / arr.sum()


def _cot_cost(p: np.ndarray, marginal: np.ndarray) -> float:
    """Sum of assigned costs 1 - p_i[y_j] of the optimal matching of one batch."""
    from scipy import optimize
    counts = _largest_remainder_counts(marginal, p.shape[0])
    ys = np.repeat(np.arange(marginal.shape[0]), counts)
    cost = 1.0 - p[:, ys]
    r, c = optimize.linear_sum_assignment(cost)
    return float(cost[r, c].sum())


def cot_estimate(probs_target, source_label_marginal, seed: int = 0, *, max_batch: int = COT_MAX_BATCH) -> float:
    """COT (Lu et al. 2023) estimated target accuracy = 1 - W_1(P_T, Q).

    Q = n one-hot labels with class counts from the source label marginal by
    largest-remainder rounding (floors of ``n * pi``, then +1 to the largest
    fractional parts, ties to the lower class index, so counts sum to n). Cost
    ``c_ij = 1/2 ||p_i - e_{y_j}||_1 = 1 - p_i[y_j]``. With equal weights 1/n the exact OT
    plan is a permutation, solved by ``scipy.optimize.linear_sum_assignment``; the
    estimate is ``1 - mean assigned cost``. When n > ``max_batch`` the target is split
    by a seeded random permutation (``np.random.default_rng(seed)``) into
    ``ceil(n / max_batch)`` near-equal batches (``np.array_split``), each matched to its
    own Q (rounded for its size), and the total assigned cost is divided by n (a
    size-weighted average of the batch estimates). ``seed`` is unused when n <= max_batch.
    """
    p = check_probs(probs_target, "probs_target")
    marginal = _check_marginal(source_label_marginal, p.shape[1])
    seed = check_int_at_least(seed, "seed", 0)
    max_batch = check_int_at_least(max_batch, "max_batch", 1)
    n = p.shape[0]
    if n <= max_batch:
        total = _cot_cost(p, marginal)
    else:
        perm = np.random.default_rng(seed).permutation(n)
        total = sum(_cot_cost(p[idx], marginal) for idx in np.array_split(perm, -(-n // max_batch)))
    return float(1.0 - total / n)


def cot_estimates(target_sets, source_label_marginal, seeds, *, max_batch: int = COT_MAX_BATCH) -> list[float]:
    """``[cot_estimate(p, source_label_marginal, seed, max_batch=max_batch) for p, seed in zip(target_sets, seeds)]``,
    the sets spread over threads (the assignment solver releases the GIL; each set's numbers are its own)."""
    target_sets, seeds = list(target_sets), list(seeds)
    if len(seeds) != len(target_sets):
        raise MetricInputError(f"cot_estimates needs one seed per target set: {len(target_sets)} sets, {len(seeds)} seeds")

    def one(k: int) -> float:
        return cot_estimate(target_sets[k], source_label_marginal, seeds[k], max_batch=max_batch)

    threads = min(usable_cpus(), len(target_sets))
    if threads < 2:
        return [one(k) for k in range(len(target_sets))]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(len(target_sets))))


def estimate_accuracy(method: str, probs_source, labels_source, probs_target, seed: int = 0) -> float:
    """Dispatch one of :data:`ACCURACY_ESTIMATORS` on calibrated source/target probabilities.

    ATC-MC uses max-probability scores, ATC-NE :func:`neg_entropy_scores`; COT uses the
    source label marginal ``bincount(labels_source) / N_S``. ``"nuclear_norm"`` returns the
    raw target score of :func:`nuclear_norm_score` (not an accuracy; needs a fitted map).
    """
    check_choice(method, ACCURACY_ESTIMATORS, "method")
    if method == "AC":
        return average_confidence(probs_target)
    if method == "nuclear_norm":
        return nuclear_norm_score(probs_target)
    if method == "DoC":
        return difference_of_confidences(probs_source, labels_source, probs_target)
    ps, ys, pt = _source_target(probs_source, labels_source, probs_target)
    if method == "COT":
        return cot_estimate(pt, np.bincount(ys, minlength=ps.shape[1]) / ys.shape[0], seed=seed)
    correct = ps.argmax(axis=1) == ys
    if method == "ATC-MC":
        return atc_estimate(ps.max(axis=1), correct, pt.max(axis=1))
    return atc_estimate(neg_entropy_scores(ps), correct, neg_entropy_scores(pt))
