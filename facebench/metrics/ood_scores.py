"""Out-of-distribution (open-set) scores from logits and features.

Convention: every score is oriented **higher = more in-distribution (known)**,
so it can be fed directly to AUROC / FPR@TPR code with ID as the positive class.

Logit scores (``logits`` is ``(N, C)``, ``C >= 2``, finite):

* :func:`msp` -- max softmax probability ``max_c softmax(z)_c`` (Hendrycks & Gimpel 2017).
* :func:`max_logit` -- ``max_c z_c`` (Hendrycks et al. 2022).
* :func:`energy` -- negative free energy ``T * logsumexp(z / T)`` (Liu et al. 2020).
* :func:`neg_entropy` -- ``sum_c p_c log p_c`` of ``p = softmax(z)`` (higher = more confident).

Feature detectors (``fit`` on in-distribution training features, then ``score``):

* :class:`Mahalanobis` -- Lee et al. 2018 without input pre-processing:
  ``-min_c (x - mu_c)^T Sigma^+ (x - mu_c)`` with a tied MLE covariance.
* :class:`KNNScore` -- Sun et al. 2022: ``-||x/|x| - t_(k)||``, the distance to the
  k-th nearest L2-normalised training feature.
* :class:`ViM` -- Wang et al. 2022, virtual-logit matching (needs the classifier's ``W, b``).

:class:`LinearProbe` is a multinomial logistic-regression probe (same objective as
scikit-learn's ``LogisticRegression(C=C)`` with lbfgs) for producing logits from
frozen features.

Everything is float64 NumPy/SciPy; bad input raises ``facebench.errors.MetricInputError`` (a ``ValueError``).
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from facebench.errors import MetricInputError

from ._multinomial import fit_multinomial
from ._validation import (
    as_array,
    check_choice,
    check_labels,
    check_logits,
    check_matrix,
    check_n_classes,
    check_positive_int,
    check_positive_real,
    not_fitted,
)

__all__ = [
    "msp",
    "max_logit",
    "energy",
    "neg_entropy",
    "LOGIT_SCORES",
    "logit_score",
    "Mahalanobis",
    "KNNScore",
    "LinearProbe",
    "ViM",
    "FEATURE_DETECTORS",
]


# --------------------------------------------------------------------------- validation


def _check_score_features(features, n_features: int, owner: str) -> np.ndarray:
    x = check_matrix(features, "features")
    if x.shape[1] != n_features:
        raise MetricInputError(
            f"features have {x.shape[1]} dims but {owner} was fitted on {n_features}-dim features"
        )
    return x


def _check_fit_labels(labels, n: int) -> np.ndarray:
    y = check_labels(labels, name="labels")
    if y.shape[0] != n:
        raise MetricInputError(f"features have {n} rows but labels has {y.shape[0]} entries; pass one label per sample")
    return y


# --------------------------------------------------------------------------- logit scores


def _log_softmax(z: np.ndarray) -> np.ndarray:
    from scipy.special import logsumexp
    return z - logsumexp(z, axis=1, keepdims=True)


def msp(logits) -> np.ndarray:
    """Max softmax probability ``max_c exp(z_c) / sum_j exp(z_j)``, shape ``(N,)``, in ``(0, 1]``.

    Computed as ``exp(max_c z_c - logsumexp(z))`` (row max subtracted inside logsumexp),
    so it is finite for arbitrarily large logits.
    """
    from scipy.special import logsumexp
    z = check_logits(logits, min_classes=2)
    return np.exp(z.max(axis=1) - logsumexp(z, axis=1))


def max_logit(logits) -> np.ndarray:
    """Maximum logit ``max_c z_c``, shape ``(N,)``."""
    z = check_logits(logits, min_classes=2)
    return z.max(axis=1)


def energy(logits, temperature=1.0) -> np.ndarray:
    """Negative free energy ``T * logsumexp(z / T)`` (Liu et al. 2020), shape ``(N,)``.

    Liu et al. define the energy ``E = -T logsumexp(z/T)`` and flag OOD when ``E`` is
    large; this returns ``-E`` so that higher = in-distribution.
    """
    from scipy.special import logsumexp
    z = check_logits(logits, min_classes=2)
    t = check_positive_real(temperature, "temperature")
    return t * logsumexp(z / t, axis=1)


def neg_entropy(logits) -> np.ndarray:
    """Negative Shannon entropy (nats) of the softmax: ``sum_c p_c log p_c``, shape ``(N,)``.

    Lies in ``[-log C, 0]``; 0 for a one-hot prediction. Uses the log-softmax so
    huge logits are exact (``0 * log 0`` is taken as 0).
    """
    z = check_logits(logits, min_classes=2)
    logp = _log_softmax(z)
    return np.sum(np.exp(logp) * logp, axis=1)


LOGIT_SCORES: dict[str, Callable[..., np.ndarray]] = {
    "msp": msp,
    "max_logit": max_logit,
    "energy": energy,
    "entropy": neg_entropy,
}


def logit_score(name, logits, temperature=1.0) -> np.ndarray:
    """Dispatch to ``LOGIT_SCORES[name]``; ``temperature`` is used by ``"energy"`` only (ignored otherwise)."""
    check_choice(name, tuple(sorted(LOGIT_SCORES)), "logit score name")
    if name == "energy":
        return energy(logits, temperature=temperature)
    return LOGIT_SCORES[name](logits)


# --------------------------------------------------------------------------- Mahalanobis


def _psd_pinv_factor(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Eigen-factor of the pseudo-inverse of a symmetric PSD matrix.

    Returns ``(L, precision, rank)`` with ``precision = L @ L.T = cov^+``; eigenvalues
    ``<= max_eig * D * eps`` are treated as zero (the default cutoff of ``scipy.linalg.pinvh``).
    """
    from scipy import linalg
    s, v = linalg.eigh(cov)
    cutoff = max(float(s.max()), 0.0) * cov.shape[0] * np.finfo(np.float64).eps
    keep = s > cutoff
    vk = v[:, keep]
    lk = vk / np.sqrt(s[keep])
    return lk, (vk / s[keep]) @ vk.T, int(keep.sum())


def _min_sq_dist_to_centres(z: np.ndarray, centres: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``z`` the index of, and the squared distance to, the nearest row of ``centres``.

    The argmin uses the ``|z|^2 - 2 z.c + |c|^2`` expansion (chunked); the returned
    distance is then recomputed exactly as ``||z - c_argmin||^2``.
    """
    c2 = np.einsum("ij,ij->i", centres, centres)
    idx = np.empty(z.shape[0], dtype=np.int64)
    for start in range(0, z.shape[0], chunk):
        zc = z[start:start + chunk]
        d = c2[None, :] - 2.0 * (zc @ centres.T)  # |z|^2 is constant per row
        idx[start:start + chunk] = np.argmin(d, axis=1)
    diff = z - centres[idx]
    return idx, np.einsum("ij,ij->i", diff, diff)


class Mahalanobis:
    """Class-conditional Gaussian score with a tied covariance (Lee et al. 2018, no input pre-processing).

    ``fit``: ``mu_c`` = mean of class c, ``Sigma = (1/N) sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T``
    (MLE, tied over classes), ``precision_ = Sigma^+`` (symmetric pseudo-inverse, as ``pinvh``).

    ``score(x) = -min_c (x - mu_c)^T Sigma^+ (x - mu_c)``; higher = in-distribution.

    Labels are integers ``0..C-1``; class ids with no samples are skipped and listed in
    ``skipped_classes_``; ``classes_`` holds the class ids behind the rows of ``means_``.
    """

    def __init__(self):
        self.means_ = None
        self.classes_ = None
        self.skipped_classes_ = None
        self.covariance_ = None
        self.precision_ = None
        self.rank_ = None
        self.n_features_ = None
        self._whiten = None
        self._centres = None

    def fit(self, features, labels) -> "Mahalanobis":
        x = check_matrix(features, "features", min_rows=2)
        y = _check_fit_labels(labels, x.shape[0])
        counts = np.bincount(y)
        classes = np.flatnonzero(counts > 0)
        inverse = np.searchsorted(classes, y)
        sums = np.zeros((classes.size, x.shape[1]))
        np.add.at(sums, inverse, x)
        means = sums / counts[classes][:, None]
        centred = x - means[inverse]
        cov = (centred.T @ centred) / x.shape[0]
        whiten, precision, rank = _psd_pinv_factor(cov)
        self.means_ = means
        self.classes_ = classes
        self.skipped_classes_ = np.flatnonzero(counts == 0)
        self.covariance_ = cov
        self.precision_ = precision
        self.rank_ = rank
        self.n_features_ = x.shape[1]
        self._whiten = whiten
        self._centres = means @ whiten
        return self

    def score(self, features) -> np.ndarray:
        """``-min_c (x - mu_c)^T Sigma^+ (x - mu_c)`` for each row, shape ``(N,)``."""
        if self.means_ is None:
            raise not_fitted("Mahalanobis")
        x = _check_score_features(features, self.n_features_, "Mahalanobis")
        # Mahalanobis distance under Sigma^+ = L L^T is the Euclidean distance after x -> x L.
        _, d2 = _min_sq_dist_to_centres(x @ self._whiten, self._centres)
        return -d2

    def predict(self, features) -> np.ndarray:
        """Class id (from ``classes_``) of the nearest class mean in Mahalanobis distance."""
        if self.means_ is None:
            raise not_fitted("Mahalanobis")
        x = _check_score_features(features, self.n_features_, "Mahalanobis")
        idx, _ = _min_sq_dist_to_centres(x @ self._whiten, self._centres)
        return self.classes_[idx]


# --------------------------------------------------------------------------- KNN


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


class KNNScore:
    """Deep nearest-neighbour score (Sun et al. 2022).

    Features are L2-normalised; ``score(x) = -||x/|x| - t_(k)||_2`` where ``t_(k)`` is the
    k-th nearest normalised training feature (``k = 1`` is the nearest). For unit vectors
    ``||u - t||^2 = 2 - 2 cos(u, t)``. All-zero feature rows are left as zero vectors.
    ``labels`` are accepted and ignored (the method is label-free).
    """

    def __init__(self, k=50):
        self.k = check_positive_int(k, "k")
        self.bank_ = None
        self.n_features_ = None

    def fit(self, features, labels=None) -> "KNNScore":
        x = check_matrix(features, "features")
        if labels is not None:
            _check_fit_labels(labels, x.shape[0])
        if self.k > x.shape[0]:
            raise MetricInputError(
                f"k={self.k} is larger than the number of fitted training features ({x.shape[0]}); "
                "lower k or fit on more samples"
            )
        self.bank_ = _l2_normalise(x)
        self.n_features_ = x.shape[1]
        return self

    def kth_distance(self, features, chunk=4096) -> np.ndarray:
        """Euclidean distance from each normalised query to its k-th nearest training feature.

        Queries and the training bank are both processed in blocks of ``chunk`` rows, keeping
        a running top-k, so memory is ``O(chunk * (chunk + k))``. Candidates are ranked with
        ``|q|^2 + |t|^2 - 2 q.t``; the returned distance is recomputed exactly as ``||q - t_(k)||``.
        """
        if self.bank_ is None:
            raise not_fitted("KNNScore")
        chunk = check_positive_int(chunk, "chunk")
        q = _l2_normalise(_check_score_features(features, self.n_features_, "KNNScore"))
        bank, k = self.bank_, self.k
        bank2 = np.einsum("ij,ij->i", bank, bank)
        out = np.empty(q.shape[0])
        for qs in range(0, q.shape[0], chunk):
            qc = q[qs:qs + chunk]
            q2 = np.einsum("ij,ij->i", qc, qc)
            best_d = np.empty((qc.shape[0], 0))
            best_i = np.empty((qc.shape[0], 0), dtype=np.int64)
            for ts in range(0, bank.shape[0], chunk):
                tb = bank[ts:ts + chunk]
                d = q2[:, None] + bank2[None, ts:ts + chunk] - 2.0 * (qc @ tb.T)
                cand_d = np.concatenate([best_d, d], axis=1)
                cand_i = np.concatenate(
                    [best_i, np.broadcast_to(np.arange(ts, ts + tb.shape[0]), d.shape)], axis=1
                )
                if cand_d.shape[1] > k:
                    sel = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
                    cand_d = np.take_along_axis(cand_d, sel, axis=1)
                    cand_i = np.take_along_axis(cand_i, sel, axis=1)
                best_d, best_i = cand_d, cand_i
            kth = best_i[np.arange(qc.shape[0]), np.argmax(best_d, axis=1)]
            diff = qc - bank[kth]
            out[qs:qs + chunk] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return out

    def score(self, features, chunk=4096) -> np.ndarray:
        """``-(distance to the k-th nearest normalised training feature)``, shape ``(N,)``."""
        return -self.kth_distance(features, chunk=chunk)


# --------------------------------------------------------------------------- linear probe


class LinearProbe:
    """Multinomial logistic regression on (optionally standardised) features.

    Minimises ``sum_i [logsumexp(z_i) - z_{i, y_i}] + ||W||_F^2 / (2 C)`` with
    ``z_i = W x_i + b`` (``W`` is ``(K, D)``, bias unpenalised) -- the objective of
    scikit-learn's ``LogisticRegression(C=C)`` (l2, multinomial, lbfgs, fit_intercept=True)
    -- with ``facebench.metrics._multinomial``: for ``K (D + 1) <= 1024``, whitened L-BFGS then
    Newton steps until the max-abs gradient of that sum is ``<= tol``; above, whitened L-BFGS
    alone (``gtol=tol`` on its whitened gradient, relative decrease ``<= 64 eps``).
    ``max_iter`` bounds L-BFGS iterations plus Newton steps. The rows of ``coef_`` and the
    entries of ``intercept_`` sum to 0.

    With ``standardize=True`` features are mapped to ``(x - mean_) / scale_`` (population
    std; a zero std becomes 1) before the linear map; ``coef_``/``intercept_`` live in that
    standardised space. Classes in ``0..n_classes-1`` without samples get a zero weight
    row and a bias so low that their probability mass on the training rows is ``<= tol / 10``.

    After ``fit``: ``coef_``, ``intercept_``, ``converged`` (bool), ``n_iter`` (int),
    ``loss_``; a ``UserWarning`` is issued if the optimiser did not converge.
    """

    def __init__(self, C=1.0, max_iter=1000, tol=1e-6, standardize=True):
        self.C = check_positive_real(C, "C", " (inverse L2 strength)")
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.tol = check_positive_real(tol, "tol")
        self.standardize = bool(standardize)
        self.coef_ = None
        self.intercept_ = None
        self.mean_ = None
        self.scale_ = None
        self.n_classes_ = None
        self.n_features_ = None
        self.converged = None
        self.n_iter = None
        self.loss_ = None

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_ if self.standardize else x

    def fit(self, features, labels, n_classes=None) -> "LinearProbe":
        x = check_matrix(features, "features")
        y = _check_fit_labels(labels, x.shape[0])
        k = int(y.max()) + 1 if n_classes is None else check_n_classes(n_classes)
        if y.max() >= k:
            raise MetricInputError(f"labels contain class {int(y.max())} but n_classes={k} (valid labels 0..{k - 1})")
        if k < 2 or np.unique(y).size < 2:
            raise MetricInputError(
                f"LinearProbe needs at least 2 classes with samples; got n_classes={k} and "
                f"{np.unique(y).size} distinct label(s) present"
            )
        if self.standardize:
            self.mean_ = x.mean(axis=0)
            std = x.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0)
        else:
            self.mean_ = np.zeros(x.shape[1])
            self.scale_ = np.ones(x.shape[1])
        # one BLAS thread: these matrices are small, and threads cost 10x more than they save on them
        with threadpool_limits(limits=1, user_api="blas"):
            res = fit_multinomial(self._transform(x), y, k, 1.0 / self.C, self.tol, self.max_iter)
        d = x.shape[1]
        self.coef_ = np.ascontiguousarray(res.theta[:, :d])
        self.intercept_ = res.theta[:, d].copy()
        self.n_classes_ = k
        self.n_features_ = d
        self.n_iter = res.n_iter
        self.loss_ = res.loss
        self.converged = res.converged
        if not self.converged:
            warnings.warn(
                f"LinearProbe did not converge in {self.n_iter} iterations ({res.message}; max |gradient| "
                f"{res.grad_max:.3g} > tol {self.tol:g}); increase max_iter or loosen tol",
                UserWarning,
                stacklevel=2,
            )
        return self

    def logits(self, features) -> np.ndarray:
        """Class logits ``W x' + b`` (``x'`` standardised if enabled), shape ``(N, n_classes)``."""
        if self.coef_ is None:
            raise not_fitted("LinearProbe")
        x = _check_score_features(features, self.n_features_, "LinearProbe")
        return self._transform(x) @ self.coef_.T + self.intercept_

    def predict_proba(self, features) -> np.ndarray:
        """Softmax of :meth:`logits`, shape ``(N, n_classes)``."""
        return np.exp(_log_softmax(self.logits(features)))

    def predict(self, features) -> np.ndarray:
        """Arg-max class of :meth:`logits` (int64), shape ``(N,)``."""
        return np.argmax(self.logits(features), axis=1).astype(np.int64)


# --------------------------------------------------------------------------- ViM


class ViM:
    """Virtual-logit matching (Wang et al. 2022).

    ``fit(features, W, b)`` with the classifier ``logits = features @ W.T + b`` (``W`` is ``(C, D)``):

    * origin ``u = -W^+ b``; principal subspace = top-``dim`` eigenvectors of
      ``(1/N) sum_i (x_i - u)(x_i - u)^T``; ``R`` = the remaining ``D - dim`` eigenvectors;
    * residual ``r(x) = ||R^T (x - u)||``; ``alpha = mean_i max_c z_ic / mean_i r(x_i)`` on
      the training features.

    ``score(x) = logsumexp(z) - alpha * r(x)`` (energy minus the virtual logit), higher = ID.
    Default ``dim``: 1000 if ``D >= 2048``, 512 if ``D >= 768``, else ``D // 2`` (as in the
    reference implementation). Requires ``1 <= dim < D``.
    """

    def __init__(self, dim=None):
        self.dim = None if dim is None else check_positive_int(dim, "dim")
        self.dim_ = None
        self.origin_ = None
        self.residual_basis_ = None
        self.alpha_ = None
        self.W_ = None
        self.b_ = None
        self.n_features_ = None

    def fit(self, features, W, b) -> "ViM":
        from scipy import linalg
        x = check_matrix(features, "features", min_rows=2, min_cols=2)
        w = check_matrix(W, "W", min_cols=1)
        if w.shape[1] != x.shape[1]:
            raise MetricInputError(f"W has shape {w.shape} but features have {x.shape[1]} dims; expected W of shape (C, {x.shape[1]})")
        if w.shape[0] < 2:
            raise MetricInputError(f"W has {w.shape[0]} row(s); ViM needs a classifier with C >= 2 classes")
        bb = as_array(b, "b")
        if bb.ndim != 1 or bb.shape[0] != w.shape[0]:
            raise MetricInputError(f"b must be 1-D with {w.shape[0]} entries (one per row of W), got shape {bb.shape}")
        bb = check_matrix(bb[None, :], "b")[0]
        d = x.shape[1]
        dim = self.dim if self.dim is not None else (1000 if d >= 2048 else 512 if d >= 768 else d // 2)
        if not 1 <= dim < d:
            raise MetricInputError(f"dim must satisfy 1 <= dim < n_features={d}, got dim={dim}")
        u = -linalg.pinv(w) @ bb
        xc = x - u
        s, v = linalg.eigh((xc.T @ xc) / x.shape[0])
        order = np.argsort(s)[::-1]
        basis = np.ascontiguousarray(v[:, order[dim:]])
        resid = np.linalg.norm(xc @ basis, axis=1)
        mean_resid = float(resid.mean())
        if not mean_resid > 0:
            raise MetricInputError("training features have zero residual outside the principal subspace; lower dim")
        logits = x @ w.T + bb
        self.dim_ = dim
        self.origin_ = u
        self.residual_basis_ = basis
        self.alpha_ = float(logits.max(axis=1).mean()) / mean_resid
        self.W_ = w
        self.b_ = bb
        self.n_features_ = d
        return self

    def score(self, features) -> np.ndarray:
        """``logsumexp(W x + b) - alpha * ||R^T (x - u)||``, shape ``(N,)``."""
        from scipy.special import logsumexp
        if self.W_ is None:
            raise not_fitted("ViM")
        x = _check_score_features(features, self.n_features_, "ViM")
        vlogit = self.alpha_ * np.linalg.norm((x - self.origin_) @ self.residual_basis_, axis=1)
        return logsumexp(x @ self.W_.T + self.b_, axis=1) - vlogit


FEATURE_DETECTORS: dict[str, type] = {"mahalanobis": Mahalanobis, "knn": KNNScore}
