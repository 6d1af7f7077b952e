"""A detector's AUROC on an unlabelled test set, by mixture-proportion estimation in the model's feature space.

**Setting** (as :mod:`facebench.metrics.mpe`): a test set is a mixture ``(1 - pi) ID + pi OOD`` with unknown
``pi``; a labelled ID reference gives the ID law. :mod:`~facebench.metrics.mpe` works on the detector's 1-D scores,
where near-OOD data (other faces, other expressions) overlaps the ID scores and ``pi`` is not identifiable. Here
the mixture is taken apart in the feature space of the model (e.g. its 128-d embedding), where such data still
sits apart, and the detector's scores are then read on each part. Steps, for reference features ``x_R`` with the
detector's scores ``r`` and a test set ``x_T`` with scores ``s``:

1. **Shrunk whitening** fitted on half of the reference (even positions): ``z = (x - mean_R) W`` with ``W W^T =
   (Sigma_R + lam tr(Sigma_R)/p I)^-1`` (``lam = shrinkage``, default 1: half-way between whitening and plain
   centring; small-variance directions are not blown up into noise). The other half (odd positions) is the
   reference the test samples are ranked against: out of sample like them. (Ranked against the samples that
   fixed the centre, the reference sits nearer the centre than test data of its own law: pure ID data then showed
   ``pi`` = 0.25 in 32 dimensions with 600 reference samples; see the tests.)
2. **Cross-fitted discriminant direction**: the test set is cut into ``folds`` random folds; for fold ``k`` the
   direction is ``d_k`` = the mean of ``z`` over the other folds. The reference mean is 0, so ``d_k`` estimates
   ``pi (mu_OOD - mu_R)`` for any ``pi``: Fisher's discriminant between OOD and ID (shared covariance) when
   ``shrinkage`` is 0, a ridge-regularised one otherwise. A test sample's coordinate is ``u = rank / N``, its rank
   the number of the ``N`` ranked reference samples whose projection on ``d_k`` lies strictly below its own (the
   reference's own ``u`` is uniform on ``0, 1/N, ..``; OOD samples sit at high ``u``).
3. **OOD fraction**: ``kappa = 1 - pi`` by best-bin estimation (Garg et al. 2021) on the lower tails of ``u``
   (the ID end), on ``n_bins`` bins ``floor(u n_bins)``: with ``F_T(j)`` and ``F_R(j)`` the test's and the
   reference's fractions in bins ``0..j`` (:func:`reference_masses`), ``j* = argmin_j (F_T(j) + (1 + gamma) eps) /
   F_R(j)``, ``eps = sqrt(log(4 / delta) / (2 n_T)) + sqrt(log(4 / delta) / (2 N))`` (the second term: the test's
   ID samples are placed against one finite reference, an error every one of them shares), ``kappa = F_T(j*) /
   F_R(j*)`` clipped to [0, 1]. A minimum over noisy ratios is biased low (``pi`` high, and ID samples then count
   as OOD), so the cut is chosen on one random half of the test set and the ratio read on the other, both ways,
   averaged (:func:`split_kappa`): more small-``pi`` sets are then declared unidentifiable instead of answered
   with ID samples counted as OOD.
4. **OOD posterior per bin** of ``u``: ``w_b = 1 - kappa q_b / p_b`` (``p_b``, ``q_b`` = the test's and the
   reference's fractions in bin ``b``), clipped to [0, 1] and made non-decreasing in ``u`` by weighted isotonic
   regression (weights ``p_b``): the density ratio OOD / ID along the direction towards the OOD mean is taken as
   monotone.
5. **AUROC** (ID = positive, ``P(r > s_ood) + 0.5 P(tie)``): with ``P_i`` = that probability for test sample
   ``i`` against the reference scores, ``E_T,b`` its mean over the test samples of bin ``b`` and ``E_R,b`` the
   same mean over the reference samples whose ``u`` falls in bin ``b`` (``E_T,b = (1 - w_b) E_R,b + w_b E_OOD,b``),
   ``AUROC = sum_b w_b n_b (E_T,b - (1 - w_b) E_R,b) / sum_b w_b^2 n_b``: each bin's OOD part deconvolved, bins
   weighted by their OOD count times their purity ``w_b`` (ID-dominated bins, where deconvolution amplifies
   noise, count little). With 0/1 weights it is the plain AUROC of the OOD samples against the reference. The
   price of weighting by purity: when the detector's score follows the discriminant direction and the two parts
   overlap much, the purest bins hold the most extreme OOD scores and the estimate leans away from 0.5 (a mixture
   1.8 SD apart along the score's own axis: 0.87 for a true 0.82). Weighting by the OOD count alone (``w_b`` instead
   of ``w_b^2``) removes that lean but lets the noise of ID-dominated bins in; on the FER2013 meta-benchmark
   (``suites/gscore_mpe.yaml``) its errors were larger for both detectors.

**Identifiability.** ``pi`` is identified when the direction separates some ID mass from the OOD (an OOD-free
low-``u`` region), i.e. irreducibility in the projected features; it fails when the OOD data has the ID's feature
mean (no direction) or lies inside the ID cloud. The reference samples must be independent draws of the ID law
(duplicated rows or near-identical video frames split over the two halves make pure ID data look OOD). As in
:mod:`~facebench.metrics.mpe`, a set is *unidentifiable* (a reason, not a number) with fewer than ``min_test``
samples or ``pi < min_pi`` or ``pi n_T < min_ood``; also when ``pi`` is below :func:`reference_resolution` (twice
the DKW band of the ranked reference's empirical law: with few reference samples their own sampling error makes
pure ID data look partly OOD).

**Interval**: percentile bootstrap over ``n_resamples`` resamples, each redoing steps 2-5: the test samples
redrawn with replacement (each sample on a random side of step 3's halves, so that the halves stay disjoint), new
random folds (the copies of a sample share its fold, so no direction sees a sample it places) and directions,
``u`` ranked against a resample of the ranked reference, and the set's ID part redrawn: ``P_i`` is taken against
``round(kappa n_T)`` reference scores drawn with replacement, since the truth is the AUROC against the set's own
ID samples, not against the reference population (it matters when the ID part is small); with fewer than
``min_ood`` estimated ID samples there is (almost) no ID part, and the whole reference is drawn (the AUROC of an
all-OOD set is read against the ID population). Limits: the interval is centred on the estimate, not corrected
for its bias, so on large sets, where the interval is narrow, the purity weighting's lean (step 5) can leave the
truth outside; on small sets with small ``pi`` it is wide. It is a percentile interval of the resamples that
estimate an AUROC, whatever their ``pi``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import MetricInputError

from . import mpe
from ._validation import check_fraction, check_int_at_least

STATUS_SMALL_REFERENCE = "unidentifiable: OOD fraction within what the reference's size can resolve (add ID samples)"

__all__ = ["FeatureMPEOptions", "Whitening", "whitening", "fold_bins", "bbe_cut", "kappa_at",
           "bbe_kappa", "split_kappa", "isotonic_increasing", "bin_posteriors", "deconvolved_auroc", "estimate",
           "decomposition_histogram", "reference_masses", "reference_resolution", "STATUS_SMALL_REFERENCE"]




@dataclass(frozen=True)
class FeatureMPEOptions:
    """Tuning (see the module doc); BBE's ``delta`` / ``gamma`` and the diagnosis thresholds default to those of
    :class:`facebench.metrics.mpe.MPEOptions`."""

    folds: int = 5
    n_bins: int = 20
    shrinkage: float = 1.0
    delta: float = mpe.MPEOptions.delta
    gamma: float = mpe.MPEOptions.gamma
    min_test: int = mpe.MPEOptions.min_test
    min_pi: float = mpe.MPEOptions.min_pi
    min_ood: int = mpe.MPEOptions.min_ood

    def checked(self) -> "FeatureMPEOptions":
        check_int_at_least(self.folds, "folds", 2)
        check_int_at_least(self.n_bins, "n_bins", 2)
        check_fraction(self.delta, "delta")
        check_fraction(self.min_pi, "min_pi")
        check_int_at_least(self.min_test, "min_test", 2)
        if not np.isfinite(self.shrinkage) or self.shrinkage < 0:
            raise MetricInputError(f"shrinkage must be a finite number >= 0; got {self.shrinkage!r}")
        return self


@dataclass(frozen=True)
class Whitening:
    """``z = (x - mean) @ matrix``, fitted on half of the reference, and ``reference``: the ``z`` of the other half,
    whose rows are the reference samples ``held`` (of ``n_reference``)."""

    mean: np.ndarray
    matrix: np.ndarray
    reference: np.ndarray
    held: np.ndarray
    n_reference: int

    def __call__(self, x) -> np.ndarray:
        return (_features(x, "test features", self.mean.size) - self.mean) @ self.matrix


def _features(x, name: str, dim: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise MetricInputError(f"{name} must be a non-empty 2-D array (samples x features); got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise MetricInputError(f"{name} have {a.shape[1]} features, the reference {dim}")
    if not np.isfinite(a).all():
        raise MetricInputError(f"{name} contain NaN or infinite values")
    return a


def whitening(x_ref, shrinkage: float = 1.0) -> Whitening:
    """Shrunk whitening fitted on the reference samples at even positions: ``W = V diag(1 / sqrt(l + shrinkage *
    mean(l)))`` from the eigen-decomposition ``V diag(l) V^T`` of their covariance (a tiny floor keeps constant
    features finite); the samples at odd positions are the reference that test samples are ranked against. Their
    mean is not the centre, so, like the test samples, they are out of sample (ranked against the samples that
    fixed the centre, a reference would sit closer to it than any test sample of its own law)."""
    x = _features(x_ref, "reference features")
    if len(x) < 4:
        raise MetricInputError("the reference needs at least 4 samples (half fit the whitening, half are ranked)")
    fit = x[0::2]
    mean = fit.mean(axis=0)
    eig, vec = np.linalg.eigh(np.atleast_2d(np.cov(fit, rowvar=False)))
    eig = np.maximum(eig, 0.0)
    ridge = shrinkage * eig.mean() + 1e-12 * max(eig.max(), 1.0)
    matrix = vec / np.sqrt(eig + ridge)
    held = np.arange(1, len(x), 2)
    return Whitening(mean, matrix, (x[held] - mean) @ matrix, held, len(x))


def _bins(u: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.asarray(u) * n_bins).astype(np.int64), n_bins - 1)


def reference_resolution(n_ref: int, delta: float = 0.1) -> float:
    """The smallest OOD fraction a reference of ``n_ref`` ranked samples can tell from 0: twice the DKW band
    ``sqrt(log(4 / delta) / (2 n_ref))`` of its empirical law, which every test sample is placed against (pure ID
    data shows a ``pi`` of about that size: 0.24 to 0.33 with 30 to 50 ranked samples in the tests)."""
    return 2.0 * float(np.sqrt(np.log(4.0 / delta) / (2.0 * n_ref)))


def reference_masses(n_ref: int, n_bins: int) -> np.ndarray:
    """The reference's share of each bin of ``u = rank / n_ref`` (ranks 0 .. n_ref - 1): ``q_b = (ceil((b + 1) n_ref /
    n_bins) - ceil(b n_ref / n_bins)) / n_ref``, 1 / n_bins when n_bins divides n_ref."""
    edges = np.ceil(np.arange(n_bins + 1) * n_ref / n_bins)
    return np.diff(edges) / n_ref


def _ratio(counts, ref_mass) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=-1, keepdims=True)
    q = np.full(c.shape[-1], 1.0 / c.shape[-1]) if ref_mass is None else np.asarray(ref_mass, np.float64)
    return np.cumsum(c, axis=-1) / np.maximum(n, 1), n, np.cumsum(q)


def bbe_cut(counts, delta: float = 0.1, gamma: float = 0.01, ref_mass=None, n_ref: int | None = None) -> np.ndarray:
    """The best bin ``j`` of step 3 for the test counts (..., n_bins): ``argmin_j (F_T(j) + (1 + gamma) eps) / F_R(j)``
    with ``F`` the fraction in bins 0..j (``F_R`` from ``ref_mass``, uniform by default) and ``eps = sqrt(log(4 /
    delta) / (2 n_T)) + sqrt(log(4 / delta) / (2 n_ref))`` (the second term left out when ``n_ref`` is None)."""
    cdf, n, ref_cdf = _ratio(counts, ref_mass)
    eps = np.sqrt(np.log(4.0 / delta) / (2.0 * np.maximum(n, 1)))
    if n_ref is not None:
        eps = eps + np.sqrt(np.log(4.0 / delta) / (2.0 * n_ref))
    with np.errstate(divide="ignore"):
        return np.argmin(np.where(ref_cdf > 0, (cdf + (1.0 + gamma) * eps) / ref_cdf, np.inf), axis=-1)


def kappa_at(counts, j, ref_mass=None) -> np.ndarray:
    """``F_T(j) / F_R(j)`` clipped to [0, 1]."""
    cdf, _, ref_cdf = _ratio(counts, ref_mass)
    j = np.asarray(j)
    return np.clip(np.take_along_axis(cdf, j[..., None], -1)[..., 0] / ref_cdf[j], 0.0, 1.0)


def bbe_kappa(counts, delta: float = 0.1, gamma: float = 0.01, ref_mass=None, n_ref: int | None = None) -> np.ndarray:
    """``kappa = 1 - pi`` from the test counts per bin of ``u`` (..., n_bins): BBE on the lower tails (step 3)."""
    return kappa_at(counts, bbe_cut(counts, delta, gamma, ref_mass, n_ref), ref_mass)


def split_kappa(first_half, second_half, delta: float = 0.1, gamma: float = 0.01, ref_mass=None,
                n_ref: int | None = None):
    """Step 3 without the selection bias of a minimum: the best bin chosen on the counts of one half of the samples,
    the ratio read at it on the other half, the two ways averaged (counts per bin of each half, (..., n_bins); the
    halves must hold different samples)."""
    a, b = np.asarray(first_half, np.float64), np.asarray(second_half, np.float64)
    kappa = (kappa_at(b, bbe_cut(a, delta, gamma, ref_mass, n_ref), ref_mass)
             + kappa_at(a, bbe_cut(b, delta, gamma, ref_mass, n_ref), ref_mass)) / 2.0
    return float(kappa) if np.ndim(kappa) == 0 else kappa


def isotonic_increasing(y, weights) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``y`` over the last axis, by the min-max formula (Barlow et al.
    1972): ``f_i = max_{j <= i} min_{k >= i} Av(j..k)``, ``Av`` the weighted mean of ``y_j .. y_k``. O(m^2) per row,
    vectorised over the leading axes (m = 20 bins here). Ranges of zero weight are ignored; a row of zero weight
    gives 0."""
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if y.shape != w.shape or y.ndim < 1:
        raise MetricInputError("y and weights must be arrays of the same shape")
    if (w < 0).any() or not np.isfinite(w).all() or not np.isfinite(y).all():
        raise MetricInputError("weights must be finite and >= 0, and y finite")
    zero = np.zeros((*y.shape[:-1], 1))
    cw = np.concatenate([zero, np.cumsum(w, axis=-1)], axis=-1)
    cy = np.concatenate([zero, np.cumsum(w * y, axis=-1)], axis=-1)
    mass = cw[..., None, 1:] - cw[..., :-1, None]  # [j, k]: the weight of y_j .. y_k
    with np.errstate(divide="ignore", invalid="ignore"):
        av = (cy[..., None, 1:] - cy[..., :-1, None]) / mass
    m = y.shape[-1]
    upper = np.triu(np.ones((m, m), bool))  # k >= j
    av = np.where(upper & (mass > 0), av, np.inf)
    suffix_min = np.minimum.accumulate(av[..., ::-1], axis=-1)[..., ::-1]  # [j, i] = min over k >= i
    suffix_min = np.where(upper & np.isfinite(suffix_min), suffix_min, -np.inf)
    fit = suffix_min.max(axis=-2)  # max over j <= i
    return np.where(np.isfinite(fit), fit, 0.0)


def bin_posteriors(counts, kappa, ref_mass=None) -> np.ndarray:
    """OOD share per bin of ``u`` (step 4): ``1 - kappa q_b / p_b`` (``q_b`` the reference's share of the bin,
    1 / n_bins by default) clipped to [0, 1], then non-decreasing (weights ``p_b``). Over the last axis of
    ``counts``; ``kappa`` one per row."""
    c = np.asarray(counts, dtype=np.float64)
    p = c / np.maximum(c.sum(axis=-1, keepdims=True), 1.0)
    q = np.full(c.shape[-1], 1.0 / c.shape[-1]) if ref_mass is None else np.asarray(ref_mass, np.float64)
    k = np.asarray(kappa, np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(p > 0, np.clip(1.0 - k * q / p, 0.0, 1.0), 0.0)
    return np.clip(isotonic_increasing(raw, p), 0.0, 1.0)


def deconvolved_auroc(counts, test_sum, ref_mean, w):
    """Step 5: ``sum_b w_b n_b (E_T,b - (1 - w_b) E_R,b) / sum_b w_b^2 n_b`` with ``n_b E_T,b = test_sum``, clipped to
    [0, 1]; NaN when every weight is 0. Over the last axis (a float for 1-D input)."""
    counts, test_sum, w = (np.asarray(a, np.float64) for a in (counts, test_sum, w))
    den = np.sum(w * w * counts, axis=-1)
    num = np.sum(w * (test_sum - counts * (1.0 - w) * np.asarray(ref_mean, np.float64)), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, np.clip(num / np.where(den > 0, den, 1.0), 0.0, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def _greater(sorted_ref: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``P(r > s) + 0.5 P(r = s)`` for each ``s`` against the sorted reference scores."""
    lo = np.searchsorted(sorted_ref, s, side="left")
    hi = np.searchsorted(sorted_ref, s, side="right")
    return 1.0 - (lo + hi) / (2.0 * len(sorted_ref))


def _greater_than_redrawn(sorted_ref: np.ndarray, s: np.ndarray, sizes: np.ndarray, rng) -> np.ndarray:
    """(B, n): ``P(r > s_i) + 0.5 P(r = s_i)`` against ``sizes[b]`` reference scores drawn with replacement, for each
    resample ``b``. Draws are positions ``j`` in the sorted reference (``r_j > s`` iff ``j >= #(r <= s)``), keyed
    ``b (N + 1) + j`` so that one sort and one search serve every resample."""
    n_ref, b_total = len(sorted_ref), len(sizes)
    lo, hi = np.searchsorted(sorted_ref, s, side="left"), np.searchsorted(sorted_ref, s, side="right")
    row = np.repeat(np.arange(b_total), sizes)
    keys = np.sort(row * (n_ref + 1) + rng.integers(0, n_ref, int(sizes.sum())))
    ends = np.cumsum(sizes)
    offset = np.arange(b_total)[:, None] * (n_ref + 1)
    below_hi = np.searchsorted(keys, offset + hi[None, :])
    below_lo = np.searchsorted(keys, offset + lo[None, :])
    return ((ends[:, None] - below_hi) + 0.5 * (below_hi - below_lo)) / sizes[:, None]


def estimate(white: Whitening, ref_scores, test_features, test_scores, n_resamples: int = 200,
             confidence: float = 0.95, seed: int = 0, options: FeatureMPEOptions = FeatureMPEOptions()) -> dict:
    """One test set: ``{"pi", "pi_ci" (2,), "auroc", "auroc_ci" (2,), "status", "ood_weight" (n_T,)}``, the last
    being each test sample's bin posterior ``w_b`` (step 4). ``pi`` and the weights are reported also when the set
    is unidentifiable (the raw estimate); ``auroc`` and the intervals are then NaN. ``rng = default_rng(seed)`` draws
    the folds, the halves of step 3, then the resamples."""
    opts = options.checked()
    check_int_at_least(n_resamples, "n_resamples", 0)
    r = np.asarray(ref_scores, dtype=np.float64)
    s = np.asarray(test_scores, dtype=np.float64)
    if r.shape != (white.n_reference,) or not np.isfinite(r).all():
        raise MetricInputError(f"ref_scores must be {white.n_reference} finite scores, one per reference sample")
    z = white(test_features)
    if s.shape != (len(z),) or not np.isfinite(s).all():
        raise MetricInputError(f"test_scores must be {len(z)} finite scores, one per test sample")
    nb, n, n_held = opts.n_bins, len(s), len(white.reference)
    if n_held < nb:
        raise MetricInputError(f"the reference needs at least 2 x n_bins = {2 * nb} samples (half are ranked, at "
                               f"least one per bin); got {white.n_reference}")
    rng = np.random.default_rng(seed)
    q = reference_masses(n_held, nb)
    k_folds = min(opts.folds, n)
    folds = rng.permutation(np.arange(n) % k_folds)
    bins, ref_bins = fold_bins(z, white.reference, np.ones((1, n)), folds[None], np.arange(n_held)[None], k_folds, nb,
                               reference=True)
    bins, ref_bins = bins[0], ref_bins[0].ravel()
    sorted_ref = np.sort(r)
    ref_p = np.tile(_greater(sorted_ref, r[white.held]), k_folds)
    ref_mean = np.bincount(ref_bins, ref_p, nb) / np.maximum(np.bincount(ref_bins, None, nb), 1)
    counts = np.bincount(bins, None, nb).astype(np.float64)
    half = rng.permutation(n) % 2 == 0
    kappa = split_kappa(np.bincount(bins[half], None, nb), np.bincount(bins[~half], None, nb), opts.delta, opts.gamma,
                        q, n_held)
    pi = 1.0 - kappa
    w = bin_posteriors(counts, kappa, q)
    auroc = deconvolved_auroc(counts, np.bincount(bins, _greater(sorted_ref, s), nb), ref_mean, w)
    status = mpe.STATUS_OK
    if n < opts.min_test:
        status = mpe.STATUS_FEW
    elif pi < opts.min_pi or pi * n < opts.min_ood or not np.isfinite(auroc):
        status = mpe.STATUS_PI0
    elif pi < reference_resolution(n_held, opts.delta):
        status = STATUS_SMALL_REFERENCE
    none = (float("nan"), float("nan"))
    out = {"pi": pi, "pi_ci": none, "auroc": float("nan"), "auroc_ci": none, "status": status, "ood_weight": w[bins]}
    if status != mpe.STATUS_OK:
        return out
    out["auroc"] = auroc
    if n_resamples > 0:
        out["auroc_ci"], out["pi_ci"] = _interval(_Resampling(z, white.reference, s, r, ref_mean, opts),
                                                  n_resamples, confidence, rng)
    return out


@dataclass(frozen=True)
class _Resampling:
    """What a bootstrap resample redoes steps 2-5 from."""

    z: np.ndarray
    z_ref: np.ndarray
    s: np.ndarray
    r: np.ndarray
    ref_mean: np.ndarray
    opts: FeatureMPEOptions


def _interval(data: _Resampling, n_resamples: int, confidence: float, rng) -> tuple[tuple, tuple]:
    """The percentile bootstrap of the module doc: per resample, multinomial counts of the test samples and of the
    ranked reference, each test sample on a random side (two disjoint halves, for step 3), new folds and directions
    from the resample (a sample's copies share its fold, so no direction sees the sample it places), ``u`` against
    the resampled reference, then steps 3-5 with the set's ID part redrawn from the reference scores (steps 3-5
    vectorised over the resamples)."""
    z, s, opts = data.z, data.s, data.opts
    n, nb, k_folds, b_total = len(s), opts.n_bins, min(opts.folds, len(s)), n_resamples
    n_held = len(data.z_ref)
    q = reference_masses(n_held, nb)
    draws = rng.integers(0, n, (b_total, n))
    rows = np.arange(b_total)[:, None]
    weight = np.bincount((draws + rows * n).ravel(), None, b_total * n).reshape(b_total, n).astype(np.float64)
    side = rng.permuted(np.tile(np.arange(n) % 2, (b_total, 1)), axis=1) == 0
    folds = rng.permuted(np.tile(np.arange(n) % k_folds, (b_total, 1)), axis=1)
    ref_draws = rng.integers(0, n_held, (b_total, n_held))
    bins = np.concatenate([fold_bins(z, data.z_ref, weight[c:c + 50], folds[c:c + 50], ref_draws[c:c + 50], k_folds,
                                     nb) for c in range(0, b_total, 50)])
    flat = (bins + rows * nb).ravel()

    def per_bin(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat, values.ravel(), b_total * nb).reshape(b_total, nb)

    counts = per_bin(weight)
    kappas = split_kappa(per_bin(weight * side), per_bin(weight * ~side), opts.delta, opts.gamma, q, n_held)
    sizes = np.round(kappas * n).astype(np.int64)
    sizes = np.where(sizes >= opts.min_ood, sizes, len(data.r))  # (almost) no ID part: read against the reference
    p_test = _greater_than_redrawn(np.sort(data.r), s, sizes, rng)
    values = deconvolved_auroc(counts, per_bin(weight * p_test), data.ref_mean, bin_posteriors(counts, kappas, q))
    alpha = (1.0 - confidence) / 2.0

    def percentile(v: np.ndarray) -> tuple[float, float]:
        if np.isnan(v).all():
            return float("nan"), float("nan")
        lo, hi = np.nanquantile(v, [alpha, 1.0 - alpha])
        return float(lo), float(hi)

    return percentile(values), percentile(1.0 - kappas)


def decomposition_histogram(s_id, s_test, ood_weight, bins: int = 40) -> dict:
    """The test scores' histogram on ``bins`` equal-width bins over both score ranges, split by the samples' OOD
    posteriors (``ood_weight``, from :func:`estimate`): ``id_part`` = sum of ``(1 - w_i) / n``, ``ood_part`` = sum of
    ``w_i / n`` per bin; also the ID threshold at 95% TPR and the OOD share shown. The keys of
    :func:`facebench.metrics.mpe.decomposition_histogram`, so the same figure draws it. Plain lists (JSON)."""
    s_test = np.asarray(s_test, np.float64)
    w = np.asarray(ood_weight, np.float64)
    if w.shape != s_test.shape:
        raise MetricInputError("ood_weight must hold one weight per test score")
    edges, frame = mpe.display_frame(s_id, s_test, bins)
    n = len(s_test)
    return {**frame, "id_part": (np.histogram(s_test, edges, weights=1.0 - w)[0] / n).tolist(),
            "ood_part": (np.histogram(s_test, edges, weights=w)[0] / n).tolist(), "pi_shown": float(w.mean())}


def fold_bins(z, z_ref, weight, folds, ref_draws, k_folds: int, nb: int, reference: bool = False):
    """Steps 2 and the binning of 3 for C weightings of the test set at once (the point estimate: one, of ones;
    the bootstrap: its resamples): ``(C, n)`` bins ``floor(u nb)`` of the test samples, ``u = rank / N`` with rank the
    number of reference projections (rows ``ref_draws`` (C, N) of ``z_ref``) strictly below the sample's own, on its
    fold's direction = the ``weight``-weighted mean of ``z`` over the other folds (``folds`` (C, n)). ``floor(rank
    nb / N) >= m`` iff the projection exceeds the ``ceil(m N / nb)``-th smallest reference projection, so only those
    nb - 1 order statistics are compared with. With ``reference``, also the ``(C, K, N)`` bins of the reference
    rows themselves on each fold's direction."""
    c_total, n = weight.shape
    member = np.zeros((c_total, k_folds, n))
    member[np.arange(c_total)[:, None], folds, np.arange(n)[None, :]] = weight
    fold_sums = (member.reshape(c_total * k_folds, n) @ z).reshape(c_total, k_folds, -1)
    rest = np.maximum(weight.sum(axis=1)[:, None] - member.sum(axis=2), 1.0)[..., None]
    directions = ((fold_sums.sum(axis=1, keepdims=True) - fold_sums) / rest).reshape(c_total * k_folds, -1)
    proj = (z_ref @ directions.T).reshape(len(z_ref), c_total, k_folds)
    resampled = np.take_along_axis(proj, ref_draws.T[:, :, None], axis=0)  # (N, C, K): each weighting's own rows
    n_ref = ref_draws.shape[1]
    ordered = np.sort(resampled, axis=0)
    kth = np.ceil(np.arange(1, nb) * n_ref / nb).astype(np.int64) - 1
    edges = ordered[kth]  # (nb - 1, C, K)
    own = (z @ directions.T).reshape(n, c_total, k_folds).transpose(1, 0, 2)
    own = np.take_along_axis(own, folds[..., None], axis=2)[..., 0]  # (C, n): on its own fold's direction
    cut = np.take_along_axis(edges.transpose(1, 2, 0), folds[..., None], axis=1)  # (C, n, nb - 1)
    bins = (own[..., None] > cut).sum(axis=-1)
    if not reference:
        return bins
    ranks = np.array([[np.searchsorted(ordered[:, c, k], resampled[:, c, k], side="left") for k in range(k_folds)]
                      for c in range(c_total)])
    return bins, _bins(ranks / n_ref, nb)
