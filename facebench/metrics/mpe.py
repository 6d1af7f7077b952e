"""Label-free OOD-detection performance by mixture-proportion estimation (MPE), and distribution-shift indicators.

**Setting.** A detector gives scores, higher = more in-distribution (ID). ``s_id`` are its scores on labelled ID
validation data (their distribution ``F_id`` is known); ``s_test`` are its scores on one unlabelled test set, a
mixture ``F_test = (1 - pi) F_id + pi F_ood`` with an unknown OOD fraction ``pi``. If ``pi`` is known, ``F_ood =
(F_test - (1 - pi) F_id) / pi`` follows, and with it the detector's AUROC, FPR@95 and AUPR on that set.

**Identifiability.** ``1 - pi`` is identifiable only under *irreducibility* (Blanchard, Lee & Scott 2010; Scott
2015): ``F_ood`` must not contain ``F_id`` as a mixture component. The estimators here use the stronger, usual
*anchor* form (Elkan & Noto 2008; Ramaswamy et al. 2016; Garg et al. 2021): some top-score region carries ID mass
and (almost) no OOD mass. Then for every threshold t, ``q_test(t) / q_id(t) >= 1 - pi`` (``q`` = fraction of
scores >= t), with equality on the OOD-free region, so ``1 - pi = min_t q_test(t) / q_id(t)``. It fails when OOD
samples reach the ID's highest scores (near-OOD that the detector confuses with ID, e.g. a held-out expression
class the model predicts confidently): ``pi`` is then under-estimated (a lower bound) and the AUROC biased. It
also fails when ``pi`` is near 0 (``F_ood`` is not estimable) or the test set is small.

**Estimators of kappa = 1 - pi** (``ESTIMATORS``), all from tail fractions on a grid of thresholds:

- ``bbe`` -- Garg, Wu, Smola, Balakrishnan, Lipton 2021, best bin estimation: the cut minimising
  ``(q_test + (1 + gamma) * eps) / q_id``, ``eps = sqrt(log(4/delta) / (2 n_id)) + sqrt(log(4/delta) / (2 n_test))``,
  then ``kappa = q_test / q_id`` at that cut (``delta = 0.1``, ``gamma = 0.01`` as in the paper).
- ``scott`` -- the ROC / min-ratio estimator of Blanchard-Lee-Scott 2010 and Scott 2015, ``kappa = min_t
  (q_test + z se_test) / (q_id - z se_id)`` over thresholds with ``q_id > z se_id``; here with pointwise binomial
  standard errors (``z = 1``) instead of Scott's VC bounds, which are far too wide for test sets of a few hundred.
- ``tail`` -- the ratio at one fixed anchor, the ID's top ``tail`` fraction (default 0.1): assumes that region is
  OOD-free; the least variance, the most bias when it is not.

- ``bbe_any`` -- BBE over every interval between two anchor thresholds (or the ends of the score range) instead
  of the top tails only: Blanchard-Scott's infimum over sets, restricted to intervals. It needs irreducibility
  only in the weaker form "some score interval holds ID but (almost) no OOD mass", which covers OOD scored *above*
  the ID (AUROC < 0.5: the anchor is then the bottom of the ID range) and OOD in the middle of the ID range; the
  price is more candidates, so a slightly larger downward bias of ``kappa``.

Anchors (the candidate thresholds) are the ID quantiles ``k / n_cuts`` (default 20): a minimum over fewer noisy
ratios is less biased downwards.

**Grid.** Scores are binned on the ``n_bins`` quantiles of the ID scores merged with those of the pooled test
scores (a score equal to an edge goes to the upper bin). Every quantity is computed on the bins, with ties inside
a bin counted half for AUROC: the AUROC error of the binning is at most ``0.5 / n_bins`` (a bin holds at most
``1 / n_bins`` of the ID mass), less where the test quantiles split the bins further.

**Deconvolution.** AUROC and FPR@95 are linear in ``F_ood``: they are computed from the raw deconvolution
``(p_test - (1 - pi) p_id) / pi`` (unbiased given ``pi``; equivalently ``AUROC = (A_mix - (1 - pi) / 2) / pi`` with
``A_mix = P(s_id > s_test)``), then clipped to [0, 1]. Clipping the CDF first would bias them: at small ``pi`` the
noise is amplified ``1 / pi`` times and the clip removes only one side of it. For AUPR and the figure ``F_ood``
is clipped to [0, 1] and made monotone as the mean of its running maximum from below and its running minimum
from above (both valid CDFs, so is their mean).

**Derived metrics** (ID = positive, as :mod:`facebench.metrics.ood`): AUROC ``P(s_id > s_ood) + 0.5 P(tie)``;
FPR@95 = OOD mass at the largest grid threshold keeping >= 95% of the ID mass (``pos=known``); AUPR-in / AUPR-out
= average precision with ID / OOD positive at the test set's own prevalence ``1 - pi`` / ``pi``.

**Uncertainty.** Percentile bootstrap intervals resampling BOTH the ID scores and the test scores (multinomial
counts on the bins), the whole estimate redone in each resample, so the uncertainty of ``pi`` enters the AUROC's.

**Unidentifiable** (a reason instead of a number, ``STATUS_*``): fewer than ``min_test`` test scores; ``pi`` near 0
(``pi < min_pi`` or fewer than ``min_ood`` estimated OOD samples); irreducibility violated (top-anchored methods
only) -- the test mass in the ID's top ``top`` fraction falls short of ``kappa`` times the ID mass there by more than 2 binomial standard
deviations (the ratio keeps falling to the highest scores: no OOD-free anchor region).

**Shift indicators** (no MPE): Kolmogorov-Smirnov, Wasserstein-1 and energy distance between ``s_test`` and
``s_id`` (as :mod:`scipy.stats`), the fraction of test scores below the ID's TPR-95 threshold, the mixture AUROC
``P(s_id > s_test)``, and their combination ``shift_mean`` (the mean of KS, ``2 (mixture_auroc - 0.5)`` and the
excess fraction below the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.errors import MetricInputError

from ._validation import check_choice, check_fraction, check_int_at_least, check_score_vector

__all__ = [
    "ESTIMATORS",
    "decomposition_histogram",
    "display_frame",
    "summary_line",
    "SHIFT_INDICATORS",
    "MPEReport",
    "score_grid",
    "bin_counts",
    "estimate_kappa",
    "deconvolve",
    "metrics_from_pmfs",
    "estimate_many",
    "estimate_ood_auroc",
    "ks_distance",
    "wasserstein1",
    "energy_distance",
    "shift_indicators",
    "shift_indicators_many",
]

ESTIMATORS = ("bbe", "scott", "tail", "bbe_any")
SHIFT_INDICATORS = ("ks", "wasserstein", "energy", "frac_below_t95", "mixture_auroc", "shift_mean")
STATUS_OK = "ok"
STATUS_FEW = "unidentifiable: too few test samples"
STATUS_PI0 = "unidentifiable: OOD fraction near 0"
STATUS_IRRED = "unidentifiable: irreducibility violated (OOD mass reaches the top ID scores)"
_METRICS = ("pi", "auroc", "fpr95", "aupr_in", "aupr_out")


@dataclass(frozen=True)
class MPEOptions:
    """Tuning of the estimators and of the diagnosis (see the module doc)."""

    method: str = "bbe"
    n_bins: int = 100
    n_cuts: int = 20
    delta: float = 0.1
    gamma: float = 0.01
    z: float = 1.0
    tail: float = 0.1
    top: float = 0.05
    min_test: int = 50
    min_pi: float = 0.05
    min_ood: int = 10

    def checked(self) -> "MPEOptions":
        check_choice(self.method, ESTIMATORS, "method")
        check_int_at_least(self.n_bins, "n_bins", 20)
        check_int_at_least(self.n_cuts, "n_cuts", 2)
        for name in ("delta", "tail", "top", "min_pi"):
            check_fraction(getattr(self, name), name)
        check_int_at_least(self.min_test, "min_test", 2)
        return self


# --------------------------------------------------------------------------- grid and counts


def score_grid(s_id, n_bins: int = 100, test_scores=None) -> np.ndarray:
    """Interior bin edges: the ID quantiles ``k / n_bins`` (k = 1..n_bins-1; ``n_bins`` lowered so that a bin holds
    >= 5 ID scores) and, with ``test_scores`` (all test sets pooled), their quantiles ``k / n_bins`` too (so that
    OOD-dense regions below the ID are resolved: ties within a bin count half), duplicates dropped (tied scores,
    e.g. a saturated MSP, make one wider bin)."""
    s = check_score_vector(s_id, "s_id", "need ID validation scores")
    if s.shape[0] < 20:
        raise MetricInputError(f"s_id has {s.shape[0]} scores; MPE needs at least 20 ID validation scores")
    k = max(20, min(int(n_bins), 20 * (s.shape[0] // 100)))
    edges = [np.quantile(s, np.arange(1, k) / k, method="inverted_cdf")]
    if test_scores is not None and len(test_scores):
        edges.append(np.quantile(test_scores, np.arange(1, k) / k, method="inverted_cdf"))
    return np.unique(np.concatenate(edges))


def bin_counts(edges: np.ndarray, score_sets) -> np.ndarray:
    """(S, len(edges) + 1) counts of each set's scores per bin, all sets in one pass."""
    sets = [check_score_vector(s, f"score set {i}", "need at least one score") for i, s in enumerate(score_sets)]
    if not sets:
        raise MetricInputError("no score sets given; pass a list of 1-D score arrays")
    k = len(edges) + 1
    owner = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    bins = np.searchsorted(edges, np.concatenate(sets), side="right")
    return np.bincount(owner * k + bins, minlength=len(sets) * k).reshape(len(sets), k).astype(np.float64)


def _tails(p: np.ndarray) -> np.ndarray:
    """Mass at or above each bin: ``out[..., j] = sum_{m >= j} p[..., m]``."""
    return np.flip(np.cumsum(np.flip(p, -1), -1), -1)


# --------------------------------------------------------------------------- estimators


def estimate_kappa(q_id, q_test, n_id, n_test, opts: MPEOptions = MPEOptions(), cuts=None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(kappa, anchor_mass)``: the estimate of ``1 - pi`` in [0, 1] and the ID mass of its anchor set, from
    tail fractions ``q_id`` / ``q_test`` (..., K) (broadcast) and sample sizes ``n_id`` / ``n_test`` (broadcast
    against the leading axes). ``cuts`` (K,) bool: the grid indices allowed as anchor thresholds (default all);
    fewer candidates, less of the downward bias of a minimum over noisy ratios."""
    q_id, q_test = np.broadcast_arrays(np.asarray(q_id, float), np.asarray(q_test, float))
    n_id = np.asarray(n_id, float)[..., None]
    n_test = np.asarray(n_test, float)[..., None]
    if opts.method == "bbe_any":
        q_id, q_test = _interval_masses(q_id, q_test, cuts)
        cuts = None
    usable = q_id > 0
    if cuts is not None:
        usable = usable & np.asarray(cuts, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(usable, q_test / np.where(usable, q_id, 1.0), np.inf)
        if opts.method in ("bbe", "bbe_any"):
            log_term = np.log(4.0 / opts.delta)
            eps = np.sqrt(log_term / (2 * n_id)) + np.sqrt(log_term / (2 * n_test))
            objective = np.where(usable, (q_test + (1 + opts.gamma) * eps) / np.where(usable, q_id, 1.0), np.inf)
            cut = np.argmin(objective, axis=-1)
            kappa = np.take_along_axis(ratio, cut[..., None], -1)[..., 0]
        elif opts.method == "scott":
            se_id = opts.z * np.sqrt(np.maximum(q_id * (1 - q_id), 1 / n_id) / n_id)
            se_test = opts.z * np.sqrt(np.maximum(q_test * (1 - q_test), 1 / n_test) / n_test)
            ok = usable & (q_id > se_id + 1e-12)
            bound = np.where(ok, (q_test + se_test) / np.where(ok, q_id - se_id, 1.0), np.inf)
            cut = np.argmin(bound, axis=-1)
            kappa = np.take_along_axis(bound, cut[..., None], -1)[..., 0]
        else:  # tail: the largest grid index whose ID tail still holds >= `tail` of the mass
            cut = np.maximum(np.sum(q_id >= opts.tail - 1e-12, axis=-1) - 1, 0)
            kappa = np.take_along_axis(ratio, cut[..., None], -1)[..., 0]
    anchor_mass = np.take_along_axis(q_id, cut[..., None], -1)[..., 0]
    return np.clip(np.nan_to_num(kappa, nan=1.0, posinf=1.0), 0.0, 1.0), anchor_mass


def _interval_masses(q_id, q_test, cuts) -> tuple[np.ndarray, np.ndarray]:
    """ID and test masses of every interval between two anchor thresholds (or the ends of the score range):
    (..., P) with P = m (m + 1) / 2 intervals of the m - 1 anchors, from tail fractions (..., K)."""
    k = q_id.shape[-1]
    idx = np.flatnonzero(cuts) if cuts is not None else np.arange(1, k)
    points = np.concatenate([[0], idx[idx > 0], [k]])
    lo, hi = np.triu_indices(len(points), k=1)

    def masses(q):
        at = np.concatenate([q, np.zeros(q.shape[:-1] + (1,))], -1)[..., points]
        return at[..., lo] - at[..., hi]

    return masses(q_id), masses(q_test)


def deconvolve(p_id, p_test, pi) -> np.ndarray:
    """The OOD pmf on the grid, ``(F_test - (1 - pi) F_id) / pi`` as a CDF clipped to [0, 1] and made monotone
    (mean of the running max from below and the running min from above); ``pi`` (...) broadcasts over the
    leading axes. Where ``pi`` is 0 the result is NaN (no OOD component)."""
    p_id, p_test = np.broadcast_arrays(np.asarray(p_id, float), np.asarray(p_test, float))
    pi = np.asarray(pi, float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cdf = (np.cumsum(p_test, -1) - (1 - pi) * np.cumsum(p_id, -1)) / pi
    cdf = np.clip(cdf, 0.0, 1.0)
    cdf[..., -1] = np.where(np.isfinite(cdf[..., -1]), 1.0, np.nan)
    upper = np.maximum.accumulate(cdf, axis=-1)
    lower = np.flip(np.minimum.accumulate(np.flip(cdf, -1), axis=-1), -1)
    mono = 0.5 * (upper + lower)
    return np.diff(mono, axis=-1, prepend=0.0)


def metrics_from_pmfs(p_id, p_ood, pi, ranks: bool = True, precision: bool = True) -> dict[str, np.ndarray]:
    """AUROC, FPR@95 (pos=known) (``ranks``), AUPR-in and AUPR-out (average precision) (``precision``) from the ID
    and OOD pmfs on one grid (..., K) and the OOD fraction ``pi`` (...) of the test set (see the module doc)."""
    p_id, p_ood = np.broadcast_arrays(np.asarray(p_id, float), np.asarray(p_ood, float))
    pi = np.asarray(pi, float)
    t_id, t_ood = _tails(p_id), _tails(p_ood)
    out = {}
    if ranks:
        above_id = t_id - p_id
        out["auroc"] = np.sum(p_ood * (above_id + 0.5 * p_id), -1)
        j95 = np.maximum(np.sum(t_id >= 0.95 - 1e-12, axis=-1) - 1, 0)
        out["fpr95"] = np.take_along_axis(t_ood, j95[..., None], -1)[..., 0]
    if precision:
        out.update(_aupr(p_id, p_ood, t_id, t_ood, pi))
    return out


def _aupr(p_id, p_ood, t_id, t_ood, pi) -> dict[str, np.ndarray]:
    """AUPR-in and AUPR-out (average precision) from the pmfs and their tails (``metrics_from_pmfs``)."""
    w = (1 - pi)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec_in = w * t_id / (w * t_id + (1 - w) * t_ood)
        c_id, c_ood = np.cumsum(p_id, -1), np.cumsum(p_ood, -1)
        prec_out = (1 - w) * c_ood / ((1 - w) * c_ood + w * c_id)
    aupr_in = np.sum(np.where(p_id > 0, p_id * prec_in, 0.0), -1)
    aupr_out = np.sum(np.where(p_ood > 0, p_ood * prec_out, 0.0), -1)
    return {"aupr_in": aupr_in, "aupr_out": aupr_out}


def _estimate_counts(c_id, c_test, opts: MPEOptions, cuts=None) -> dict[str, np.ndarray]:
    """Every estimate from bin counts ``c_id`` (..., K) and ``c_test`` (..., K) (broadcast)."""
    n_id, n_test = c_id.sum(-1), c_test.sum(-1)
    p_id = c_id / n_id[..., None]
    p_test = c_test / np.maximum(n_test, 1)[..., None]
    q_id, q_test = _tails(p_id), _tails(p_test)
    kappa, anchor_mass = estimate_kappa(q_id, q_test, n_id, n_test, opts, cuts)
    pi = 1.0 - kappa
    safe_pi = np.where(pi > 0, pi, np.nan)
    p_ood = deconvolve(p_id, p_test, safe_pi)
    out = metrics_from_pmfs(p_id, p_ood, pi, ranks=False)  # AUPR from the monotone-corrected F_ood
    with np.errstate(invalid="ignore"):  # AUROC and FPR@95 are linear in F_ood: unclipped, they are unbiased
        linear = metrics_from_pmfs(p_id, (p_test - (1 - safe_pi)[..., None] * p_id) / safe_pi[..., None], pi,
                                   precision=False)
    out["auroc"], out["fpr95"] = np.clip(linear["auroc"], 0, 1), np.clip(linear["fpr95"], 0, 1)
    out.update(pi=pi, p_ood=p_ood, cut_mass=np.broadcast_to(anchor_mass, pi.shape))
    out["status"] = _diagnose(q_id, q_test, n_test, pi, opts)
    return out


def _diagnose(q_id, q_test, n_test, pi, opts: MPEOptions) -> np.ndarray:
    """Status code per set: 0 ok, 1 too few test samples, 2 pi near 0, 3 irreducibility violated."""
    q_id = np.broadcast_to(q_id, q_test.shape)
    j_top = np.maximum(np.sum(q_id >= opts.top - 1e-12, axis=-1) - 1, 0)
    top_id = np.take_along_axis(q_id, j_top[..., None], -1)[..., 0]
    top_test = np.take_along_axis(q_test, j_top[..., None], -1)[..., 0]
    expected = n_test * (1 - pi) * top_id
    short = n_test * top_test < expected - 2.0 * np.sqrt(np.maximum(expected, 1e-12))
    code = np.zeros(np.shape(pi), dtype=np.int64)
    if opts.method != "bbe_any":  # its anchor may lie anywhere, not in the top region
        code = np.where(short & (pi >= opts.min_pi), 3, code)
    code = np.where((pi < opts.min_pi) | (pi * n_test < opts.min_ood), 2, code)
    return np.where(n_test < opts.min_test, 1, code)


_STATUS_TEXT = {0: STATUS_OK, 1: STATUS_FEW, 2: STATUS_PI0, 3: STATUS_IRRED}


# --------------------------------------------------------------------------- many sets, with intervals


def estimate_many(s_id, test_sets, method: str = "bbe", n_resamples: int = 200, confidence: float = 0.95,
                  seed: int = 0, chunk: int = 25, **options) -> dict:
    """MPE estimates for many unlabelled test sets against one ID reference, vectorised across the sets.

    Returns ``{"pi", "auroc", "fpr95", "aupr_in", "aupr_out"}`` (S,) point estimates (NaN where unidentifiable),
    the same keys with ``_ci`` (S, 2) percentile intervals (NaN without resamples or where unidentifiable),
    ``"status"`` (S,) strings (``"ok"`` or the reason), ``"cut_mass"`` (S,) the ID mass above each anchor,
    ``"pi_raw"`` (S,) pi before the diagnosis, ``"grid"`` (the bin edges) and the pmfs ``"p_id"`` (K,),
    ``"p_test"`` and ``"p_ood"`` (S, K). Resampling: ``np.random.default_rng(seed)``; each of ``n_resamples`` resamples draws the ID
    counts and every set's counts (multinomial on the bins), ``chunk`` resamples at a time."""
    opts = MPEOptions(method=method, **options).checked()
    check_int_at_least(n_resamples, "n_resamples", 0)
    pooled = np.concatenate([check_score_vector(t, f"test set {i}", "need at least one score")
                             for i, t in enumerate(test_sets)]) if len(test_sets) else None
    edges = score_grid(s_id, opts.n_bins, pooled)
    c_id = bin_counts(edges, [s_id])[0]
    c_test = bin_counts(edges, test_sets)
    cuts = _anchor_cuts(edges, s_id, opts.n_cuts)
    est = _estimate_counts(c_id[None, :], c_test, opts, cuts)
    ok = est["status"] == 0
    out = {k: np.where(ok, est[k], np.nan) for k in _METRICS}
    out["status"] = np.array([_STATUS_TEXT[int(c)] for c in est["status"]], dtype=object)
    out.update(cut_mass=est["cut_mass"], pi_raw=est["pi"], grid=edges, p_id=c_id / c_id.sum(),
               p_test=c_test / c_test.sum(-1, keepdims=True), p_ood=est["p_ood"])
    boots = _bootstrap(c_id, c_test, opts, n_resamples, seed, chunk, cuts)
    alpha = (1 - confidence) / 2
    for k in _METRICS:
        if boots is None:
            out[k + "_ci"] = np.full((len(c_test), 2), np.nan)
            continue
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            ci = np.nanquantile(boots[k], [alpha, 1 - alpha], axis=0).T
        out[k + "_ci"] = np.where(ok[:, None], ci, np.nan)
    return out


def _anchor_cuts(edges: np.ndarray, s_id, n_cuts: int) -> np.ndarray:
    """(len(edges) + 1,) bool: the grid indices whose threshold is an ID quantile ``k / n_cuts`` (the candidate
    anchors; index j means scores >= ``edges[j - 1]``)."""
    thresholds = np.quantile(np.asarray(s_id, float), np.arange(1, n_cuts) / n_cuts, method="inverted_cdf")
    mask = np.zeros(len(edges) + 1, dtype=bool)
    mask[np.searchsorted(edges, thresholds, side="left") + 1] = True
    return mask


def _bootstrap(c_id, c_test, opts: MPEOptions, n_resamples: int, seed: int, chunk: int, cuts) -> dict | None:
    """(B, S) bootstrap estimates of every metric, or None without resamples."""
    if n_resamples == 0:
        return None
    rng = np.random.default_rng(seed)
    n_id, n_test = int(c_id.sum()), c_test.sum(-1).astype(np.int64)
    p_id, p_test = c_id / n_id, c_test / np.maximum(n_test, 1)[:, None]
    parts = {k: [] for k in _METRICS}
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        bid = rng.multinomial(n_id, p_id, size=b)[:, None, :].astype(np.float64)
        btest = rng.multinomial(n_test, p_test, size=(b, len(n_test))).astype(np.float64)
        est = _estimate_counts(bid, btest, opts, cuts)
        bad = est["pi"] <= 0
        for k in _METRICS:
            parts[k].append(np.where(bad & (k != "pi"), np.nan, est[k]))
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}


class _quiet_nan_warnings:
    """Silences numpy's 'All-NaN slice' warnings (a set whose every resample is unidentifiable)."""

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@dataclass
class MPEReport:
    """What :func:`estimate_ood_auroc` found for one unlabelled test set. ``identifiable`` False: the numbers
    are NaN and ``reason`` says why. Intervals are percentile bootstrap intervals at ``confidence``."""

    identifiable: bool
    reason: str
    method: str
    pi: float
    auroc: float
    fpr95: float
    aupr_in: float
    aupr_out: float
    intervals: dict
    confidence: float
    n_id: int
    n_test: int
    grid: np.ndarray = field(repr=False)
    p_id: np.ndarray = field(repr=False)
    p_test: np.ndarray = field(repr=False)
    p_ood: np.ndarray = field(repr=False)
    pi_raw: float = float("nan")  # the estimate of pi before the diagnosis (the figure's decomposition)

    def summary(self) -> str:
        """One line a user can act on."""
        return summary_line(self.identifiable, self.reason, self.method, self.n_test, self.n_id, self.confidence,
                            self.auroc, self.intervals["auroc"], self.pi, self.intervals["pi"], self.fpr95)


def summary_line(identifiable: bool, reason: str, method: str, n_test: int, n_id: int, confidence: float, auroc,
                 auroc_ci, pi, pi_ci, fpr95=None) -> str:
    """The one-line summary of a label-free estimate (any method): the AUROC and OOD fraction with their intervals
    (where finite), FPR@95 when the method gives one, or the reason there is no estimate."""
    if not identifiable:
        return f"{reason} (n_test={n_test}, method={method}); no AUROC estimate"

    def interval(ci) -> str:
        lo, hi = ci
        return f" [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) and np.isfinite(hi) else ""

    level = f"{confidence:.0%} intervals" if interval(auroc_ci) else "no intervals"
    fpr = "" if fpr95 is None else f", FPR@95 {fpr95:.3f}"
    return (f"estimated AUROC {auroc:.3f}{interval(auroc_ci)}, OOD fraction {pi:.3f}{interval(pi_ci)}{fpr} "
            f"({method}, {level}, n_test={n_test}, n_id={n_id})")


def estimate_ood_auroc(s_id, s_test, method: str = "bbe", n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0, **options) -> MPEReport:
    """Label-free estimate of a detector's AUROC, FPR@95 and AUPR on one unlabelled test set (scores ``s_test``)
    from its scores on labelled ID validation data ``s_id`` (higher = ID), with the estimated OOD fraction and
    bootstrap intervals, or the reason it is unidentifiable. See the module doc for the assumptions."""
    s_test = check_score_vector(s_test, "s_test", "need the unlabelled test set's scores")
    r = estimate_many(s_id, [s_test], method, n_resamples, confidence, seed, **options)
    status = str(r["status"][0])
    return MPEReport(status == STATUS_OK, status, method, *(float(r[k][0]) for k in _METRICS),
                     {k: tuple(float(v) for v in r[k + "_ci"][0]) for k in _METRICS}, confidence,
                     int(np.size(s_id)), int(s_test.shape[0]), r["grid"], r["p_id"], r["p_test"][0], r["p_ood"][0],
                     float(r["pi_raw"][0]))


def _display_masses(report: MPEReport, pmf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mass of a grid pmf in each display bin (CDF known at the grid edges, interpolated inside a bin)."""
    cdf_at_grid = np.cumsum(pmf)[:-1]  # mass of the bins below each grid edge
    cdf = np.interp(edges, report.grid, cdf_at_grid, left=0.0, right=1.0)
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


def decomposition_histogram(report: MPEReport, s_id, s_test, bins: int = 40) -> dict:
    """The test scores' histogram on ``bins`` equal-width bins over both score ranges, beside its estimated parts
    ``(1 - pi) F_id`` and ``pi F_ood`` spread over the same bins (each part's CDF, known at the estimate's grid
    edges, interpolated linearly inside a grid bin); ``pi`` is the raw estimate (0 when there is none), so an
    unidentifiable estimate still shows what was found. Also the ID threshold at 95% TPR. Plain lists (JSON)."""
    edges, frame = display_frame(s_id, s_test, bins)
    pi = report.pi_raw if np.isfinite(report.pi_raw) else 0.0
    id_part = (1.0 - pi) * _display_masses(report, report.p_id, edges)
    ood_part = pi * np.nan_to_num(_display_masses(report, report.p_ood, edges)) if pi > 0 else np.zeros(int(bins))
    return {**frame, "id_part": id_part.tolist(), "ood_part": ood_part.tolist(), "pi_shown": float(pi)}


def display_frame(s_id, s_test, bins: int) -> tuple[np.ndarray, dict]:
    """What every decomposition figure shares: ``bins`` equal-width bins over both score ranges (the edges), the test
    scores' histogram on them (fractions) and the ID threshold at 95% TPR; as an array and as JSON lists."""
    s_id, s_test = np.asarray(s_id, np.float64), np.asarray(s_test, np.float64)
    lo, hi = float(min(s_id.min(), s_test.min())), float(max(s_id.max(), s_test.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1)
    return edges, {"edges": edges.tolist(), "test_mass": (np.histogram(s_test, bins=edges)[0] / len(s_test)).tolist(),
                   "id_threshold_tpr95": float(np.quantile(s_id, 0.05, method="inverted_cdf"))}


# --------------------------------------------------------------------------- shift indicators


def _ecdf_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled sorted values and the two ECDFs evaluated on them (right-continuous)."""
    a, b = np.sort(a), np.sort(b)
    pooled = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, pooled, side="right") / len(a)
    fb = np.searchsorted(b, pooled, side="right") / len(b)
    return pooled, fa, fb


def ks_distance(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup |F_a - F_b|`` (``scipy.stats.ks_2samp(...).statistic``)."""
    _, fa, fb = _ecdf_pair(check_score_vector(a, "a"), check_score_vector(b, "b"))
    return float(np.max(np.abs(fa - fb)))


def wasserstein1(a, b) -> float:
    """Wasserstein-1 distance ``integral |F_a - F_b|`` (``scipy.stats.wasserstein_distance``)."""
    x, fa, fb = _ecdf_pair(check_score_vector(a, "a"), check_score_vector(b, "b"))
    return float(np.sum(np.abs(fa - fb)[:-1] * np.diff(x)))


def energy_distance(a, b) -> float:
    """Energy distance ``sqrt(2 integral (F_a - F_b)^2)`` (``scipy.stats.energy_distance``)."""
    x, fa, fb = _ecdf_pair(check_score_vector(a, "a"), check_score_vector(b, "b"))
    return float(np.sqrt(2.0 * np.sum((fa - fb)[:-1] ** 2 * np.diff(x))))


def shift_indicators(s_id, s_test) -> dict[str, float]:
    """The distribution-shift indicators of one test set against the ID scores (``SHIFT_INDICATORS``)."""
    return dict(zip(SHIFT_INDICATORS, shift_indicators_many(s_id, [s_test])[0].tolist()))


def shift_indicators_many(s_id, test_sets) -> np.ndarray:
    """(S, len(SHIFT_INDICATORS)) indicators of many test sets. ``frac_below_t95``: fraction of test scores
    strictly below the ID's 5% quantile (the threshold keeping 95% of ID, ``inverted_cdf``); ``mixture_auroc``:
    ``P(s_id > s_test) + 0.5 P(tie)``, equal to ``0.5 (1 - pi) + pi * AUROC`` on a mixture."""
    s_id = np.sort(check_score_vector(s_id, "s_id", "need ID validation scores"))
    t95 = np.quantile(s_id, 0.05, method="inverted_cdf")
    rows = []
    for i, s in enumerate(test_sets):
        s = check_score_vector(s, f"test set {i}", "need at least one score")
        below = np.searchsorted(s_id, s, side="left")
        above = len(s_id) - np.searchsorted(s_id, s, side="right")
        mix = float(np.mean(above + 0.5 * (len(s_id) - below - above)) / len(s_id))
        frac = float(np.mean(s < t95))
        ks = ks_distance(s_id, s)
        rows.append([ks, wasserstein1(s_id, s), energy_distance(s_id, s), frac, mix,
                     (ks + 2 * (mix - 0.5) + max(frac - 0.05, 0.0) / 0.95) / 3])
    return np.array(rows, dtype=np.float64)
