"""A detector's AUROC on an unlabelled test set, by mixture-proportion estimation in the model's feature space.

**Setting** (as :mod:`facebench.metrics.mpe`): a test set is a mixture ``(1 - pi) ID + pi OOD`` with unknown
``pi``; a labelled ID reference gives the ID law. :mod:`~facebench.metrics.mpe` works on the detector's 1-D scores,
where near-OOD data (other faces, other expressions) overlaps the ID scores and ``pi`` is not identifiable. Here
the mixture is taken apart in the feature space of the model (e.g. its 128-d embedding), where such data still
sits apart, and the detector's scores are then read on each part. Steps, for reference features ``x_R`` with the
detector's scores ``r`` and a test set ``x_T`` with scores ``s``:

1. **Shrunk whitening** of the reference: ``z = (x - mean_R) W`` with ``W W^T = (Sigma_R + lam tr(Sigma_R)/p I)^-1``
   (``lam = shrinkage``, default 1: half-way between whitening and plain centring; small-variance directions of
   the reference are not blown up into noise).
2. **Cross-fitted discriminant direction**: the test set is cut into ``folds`` random folds; for fold ``k`` the
   direction is ``d_k`` = the mean of ``z`` over the other folds. The reference mean is 0, so ``d_k`` estimates
   ``pi (mu_OOD - mu_R)``: Fisher's discriminant between OOD and ID (shared covariance) for any ``pi``. A test
   sample's coordinate is ``u = F_R(z . d_k)``, the fraction of reference projections on ``d_k`` below its own
   (the reference's ``u`` is uniform by construction; OOD samples sit at high ``u``).
3. **OOD fraction**: ``kappa = 1 - pi`` by best-bin estimation (Garg et al. 2021) on the lower tails of ``u``
   (the ID end): with ``F_T(t)`` the test fraction at or below ``t = j / n_bins``, ``t* = argmin_t (F_T(t) + (1 +
   gamma) eps) / t``, ``eps = sqrt(log(4 / delta) / (2 n_T))``, ``kappa = F_T(t*) / t*`` (clipped to [0, 1]); the
   reference's term of ``eps`` is 0 because its law of ``u`` is exactly uniform.
4. **OOD posterior per bin** of ``u``: ``w_b = 1 - kappa (1 / n_bins) / p_b`` (``p_b`` = test fraction in bin
   ``b``), clipped to [0, 1] and made non-decreasing in ``u`` by weighted isotonic regression (weights ``p_b``):
   the density ratio OOD / ID along the direction towards the OOD mean is taken as monotone.
5. **AUROC** (ID = positive, ``P(r > s_ood) + 0.5 P(tie)``): with ``P_i`` = that probability for test sample
   ``i`` against the reference scores, ``E_T,b`` its mean over the test samples of bin ``b`` and ``E_R,b`` the
   same mean over the reference samples whose ``u`` falls in bin ``b`` (``E_T,b = (1 - w_b) E_R,b + w_b E_OOD,b``),
   ``AUROC = sum_b w_b n_b (E_T,b - (1 - w_b) E_R,b) / sum_b w_b^2 n_b``: each bin's OOD part deconvolved, bins
   weighted by their OOD count times their purity ``w_b`` (ID-dominated bins, where deconvolution amplifies
   noise, count little). With 0/1 weights it is the plain AUROC of the OOD samples against the reference. The
   price of weighting by purity: when the detector's score follows the discriminant direction and the two parts
   overlap much, the purest bins hold the most extreme OOD scores and the estimate leans away from 0.5 (a mixture
   1.8 SD apart along the score's own axis: 0.87 for a true 0.82). Weighting by the OOD count alone (``w_b`` instead
   of ``w_b^2``) removes that lean but lets the noise of ID-dominated bins in: on the FER2013 meta-benchmark
   (``suites/gscore_mpe.yaml``, MSP) its error was 0.063 against 0.045.

**Identifiability.** ``pi`` is identified when the direction separates some ID mass from the OOD (an OOD-free
low-``u`` region), i.e. irreducibility in the projected features; it fails when the OOD data has the ID's feature
mean (no direction) or lies inside the ID cloud. As in :mod:`~facebench.metrics.mpe`, a set is *unidentifiable*
(a reason, not a number) with fewer than ``min_test`` samples or ``pi < min_pi`` or ``pi n_T < min_ood``.

**Interval**: percentile bootstrap over ``n_resamples`` resamples, each redrawing the test samples (with
replacement; the cross-fitted coordinates ``u`` are kept) and the set's ID part: ``P_i`` is taken against
``round(kappa n_T)`` reference scores drawn with replacement, since the truth is the AUROC against the set's own
ID samples, not against the reference population (it matters when the ID part is small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import MetricInputError

from . import mpe
from ._validation import check_fraction, check_int_at_least

__all__ = ["FeatureMPEOptions", "Whitening", "whitening", "discriminant_coordinates", "bbe_kappa",
           "isotonic_increasing", "bin_posteriors", "deconvolved_auroc", "estimate"]


@dataclass(frozen=True)
class FeatureMPEOptions:
    """Tuning (see the module doc); the diagnosis thresholds are those of :class:`facebench.metrics.mpe.MPEOptions`."""

    folds: int = 5
    n_bins: int = 20
    shrinkage: float = 1.0
    delta: float = 0.1
    gamma: float = 0.01
    min_test: int = 50
    min_pi: float = 0.05
    min_ood: int = 10

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
    """``z = (x - mean) @ matrix`` and the reference's own ``z``."""

    mean: np.ndarray
    matrix: np.ndarray
    reference: np.ndarray

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
    """Shrunk whitening of the reference features: ``W = V diag(1 / sqrt(l + shrinkage * mean(l)))`` from the
    eigen-decomposition ``V diag(l) V^T`` of their covariance (a tiny floor keeps constant features finite)."""
    x = _features(x_ref, "reference features")
    if len(x) < 2:
        raise MetricInputError("the reference needs at least 2 samples")
    mean = x.mean(axis=0)
    eig, vec = np.linalg.eigh(np.atleast_2d(np.cov(x, rowvar=False)))
    eig = np.maximum(eig, 0.0)
    ridge = shrinkage * eig.mean() + 1e-12 * max(eig.max(), 1.0)
    matrix = vec / np.sqrt(eig + ridge)
    return Whitening(mean, matrix, (x - mean) @ matrix)


def discriminant_coordinates(z_ref: np.ndarray, z_test: np.ndarray, folds: int, rng: np.random.Generator
                             ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Cross-fitted ``u`` of the test samples (see step 2 of the module doc) and, per fold, the reference's ``u`` on
    that fold's direction (``rank / n_R`` of its projection; ties count below, as for the test samples)."""
    n = len(z_test)
    fold = rng.permutation(np.arange(n) % min(folds, n))
    u = np.empty(n)
    ref_u = []
    for k in np.unique(fold):
        held = fold == k
        rest = z_test[~held] if (~held).any() else z_test
        direction = rest.mean(axis=0)
        ref_proj = z_ref @ direction
        order = np.sort(ref_proj)
        u[held] = np.searchsorted(order, z_test[held] @ direction, side="left") / len(order)
        ref_u.append(np.searchsorted(order, ref_proj, side="left") / len(order))
    return u, ref_u


def _bins(u: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.asarray(u) * n_bins).astype(np.int64), n_bins - 1)


def bbe_kappa(counts: np.ndarray, delta: float = 0.1, gamma: float = 0.01) -> np.ndarray:
    """``kappa = 1 - pi`` from the test counts per bin of ``u`` (..., n_bins), the reference uniform (step 3)."""
    c = np.asarray(counts, dtype=np.float64)
    nb = c.shape[-1]
    n = c.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(c, axis=-1) / np.maximum(n, 1)
    t = np.arange(1, nb + 1) / nb
    eps = np.sqrt(np.log(4.0 / delta) / (2.0 * np.maximum(n, 1)))
    j = np.argmin((cdf + (1.0 + gamma) * eps) / t, axis=-1)
    kappa = np.take_along_axis(cdf, j[..., None], -1)[..., 0] / t[j]
    return np.clip(kappa, 0.0, 1.0)


def isotonic_increasing(y, weights) -> np.ndarray:
    """Weighted least-squares non-decreasing fit of ``y`` (pool adjacent violators; zero weights are ignored)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if y.shape != w.shape or y.ndim != 1:
        raise MetricInputError("y and weights must be 1-D arrays of the same length")
    if (w < 0).any() or not np.isfinite(w).all() or not np.isfinite(y).all():
        raise MetricInputError("weights must be finite and >= 0, and y finite")
    means, masses, sizes = [], [], []
    for yi, wi in zip(y, w):
        means.append(yi)
        masses.append(wi)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m = masses[-2] + masses[-1]
            v = (means[-2] * masses[-2] + means[-1] * masses[-1]) / m if m > 0 else min(means[-2], means[-1])
            means[-2:], masses[-2:], sizes[-2:] = [v], [m], [sizes[-2] + sizes[-1]]
    return np.repeat(means, sizes)


def bin_posteriors(counts: np.ndarray, kappa: float) -> np.ndarray:
    """OOD share per bin of ``u`` (step 4): ``1 - kappa / (n_bins p_b)`` clipped to [0, 1], then non-decreasing."""
    c = np.asarray(counts, dtype=np.float64)
    p = c / max(c.sum(), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.clip(1.0 - kappa / (len(c) * p), 0.0, 1.0)
    raw[p == 0] = 0.0
    return np.clip(isotonic_increasing(raw, p), 0.0, 1.0)


def deconvolved_auroc(counts: np.ndarray, test_sum: np.ndarray, ref_mean: np.ndarray, w: np.ndarray) -> float:
    """Step 5: ``sum_b w_b n_b (E_T,b - (1 - w_b) E_R,b) / sum_b w_b^2 n_b`` with ``n_b E_T,b = test_sum``; NaN when
    every weight is 0. Clipped to [0, 1]."""
    den = float(np.sum(w * w * counts))
    if den <= 0:
        return float("nan")
    return float(np.clip(np.sum(w * (test_sum - counts * (1.0 - w) * ref_mean)) / den, 0.0, 1.0))


def _greater(sorted_ref: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``P(r > s) + 0.5 P(r = s)`` for each ``s`` against the sorted reference scores."""
    lo = np.searchsorted(sorted_ref, s, side="left")
    hi = np.searchsorted(sorted_ref, s, side="right")
    return 1.0 - (lo + hi) / (2.0 * len(sorted_ref))


def estimate(white: Whitening, ref_scores, test_features, test_scores, n_resamples: int = 200,
             confidence: float = 0.95, seed: int = 0, options: FeatureMPEOptions = FeatureMPEOptions()) -> dict:
    """One test set: ``{"pi", "auroc", "auroc_ci" (2,), "status"}``; ``pi`` is reported also when the set is
    unidentifiable (its raw estimate), ``auroc`` and its interval are then NaN. ``rng = default_rng(seed)`` draws
    the folds, then the resamples."""
    opts = options.checked()
    check_int_at_least(n_resamples, "n_resamples", 0)
    r = np.asarray(ref_scores, dtype=np.float64)
    s = np.asarray(test_scores, dtype=np.float64)
    if r.shape != (len(white.reference),) or not np.isfinite(r).all():
        raise MetricInputError(f"ref_scores must be {len(white.reference)} finite scores, one per reference sample")
    z = white(test_features)
    if s.shape != (len(z),) or not np.isfinite(s).all():
        raise MetricInputError(f"test_scores must be {len(z)} finite scores, one per test sample")
    rng = np.random.default_rng(seed)
    nb = opts.n_bins
    u, ref_u = discriminant_coordinates(white.reference, z, opts.folds, rng)
    sorted_ref = np.sort(r)
    ref_p = _greater(sorted_ref, r)
    ref_bins = np.concatenate([_bins(v, nb) for v in ref_u])
    ref_mean = np.bincount(ref_bins, np.tile(ref_p, len(ref_u)), nb) / np.maximum(np.bincount(ref_bins, None, nb), 1)
    bins = _bins(u, nb)
    counts = np.bincount(bins, None, nb).astype(np.float64)
    kappa = float(bbe_kappa(counts, opts.delta, opts.gamma))
    pi, n = 1.0 - kappa, len(s)
    w = bin_posteriors(counts, kappa)
    auroc = deconvolved_auroc(counts, np.bincount(bins, _greater(sorted_ref, s), nb), ref_mean, w)
    status = mpe.STATUS_OK
    if n < opts.min_test:
        status = mpe.STATUS_FEW
    elif pi < opts.min_pi or pi * n < opts.min_ood or not np.isfinite(auroc):
        status = mpe.STATUS_PI0
    ci = (float("nan"), float("nan"))
    if status == mpe.STATUS_OK and n_resamples > 0:
        ci = _interval(bins, s, r, ref_mean, nb, opts, n_resamples, confidence, rng)
    ok = status == mpe.STATUS_OK
    return {"pi": pi, "auroc": auroc if ok else float("nan"), "auroc_ci": ci if ok else (float("nan"),) * 2,
            "status": status}


def _interval(bins, s, r, ref_mean, nb, opts, n_resamples, confidence, rng) -> tuple[float, float]:
    """The percentile bootstrap of the module doc."""
    n = len(s)
    values = np.empty(n_resamples)
    for b in range(n_resamples):
        idx = rng.integers(0, n, n)
        counts = np.bincount(bins[idx], None, nb).astype(np.float64)
        kappa = float(bbe_kappa(counts, opts.delta, opts.gamma))
        id_part = np.sort(r[rng.integers(0, len(r), max(1, int(round(kappa * n))))])
        w = bin_posteriors(counts, kappa)
        values[b] = deconvolved_auroc(counts, np.bincount(bins[idx], _greater(id_part, s[idx]), nb), ref_mean, w)
    alpha = (1.0 - confidence) / 2.0
    if np.isnan(values).all():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
