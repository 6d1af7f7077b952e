"""Age-estimation metrics (pure NumPy, float64).

* MAE = mean |pred - true|.
* CS@t (cumulative score) = fraction of samples with |pred - true| <= t (t = 5 years by default).
* epsilon-error (ChaLearn LAP 2015) = 1 - mean_i exp(-(pred_i - mu_i)^2 / (2 sigma_i^2)), with the
  per-image annotation mean mu_i and standard deviation sigma_i (0 = perfect, 1 = worst).
"""

from __future__ import annotations

import numpy as np

from facebench.errors import MetricInputError


def _vectors(*arrays, names):
    out = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    n = len(out[0])
    for a, name in zip(out, names):
        if len(a) != n:
            raise MetricInputError(f"{name} has {len(a)} values, expected {n}")
        if not np.all(np.isfinite(a)):
            raise MetricInputError(f"{name} contains NaN or inf")
    if n == 0:
        raise MetricInputError("empty input")
    return out


def absolute_errors(y_true, y_pred) -> np.ndarray:
    t, p = _vectors(y_true, y_pred, names=("y_true", "y_pred"))
    return np.abs(p - t)


def mean_absolute_error(y_true, y_pred) -> float:
    """MAE = mean |pred - true|."""
    return float(absolute_errors(y_true, y_pred).mean())


def cumulative_score(y_true, y_pred, threshold: float = 5.0) -> float:
    """CS@threshold = fraction of samples with |pred - true| <= threshold."""
    return float(np.mean(absolute_errors(y_true, y_pred) <= threshold))


def per_sample_epsilon(y_pred, mu, sigma) -> np.ndarray:
    """1 - exp(-(pred - mu)^2 / (2 sigma^2)) per image; sigma must be > 0."""
    p, m, s = _vectors(y_pred, mu, sigma, names=("y_pred", "mu", "sigma"))
    if np.any(s <= 0):
        raise MetricInputError("epsilon-error needs every annotation std sigma > 0")
    return 1.0 - np.exp(-((p - m) ** 2) / (2.0 * s**2))


def epsilon_error(y_pred, mu, sigma) -> float:
    """ChaLearn LAP 2015 epsilon-error = 1 - mean_i exp(-(pred_i - mu_i)^2 / (2 sigma_i^2))."""
    return float(per_sample_epsilon(y_pred, mu, sigma).mean())


def binary_attribute_accuracy(targets, logits, threshold: float = 0.0) -> np.ndarray:
    """Per-attribute accuracy of (n, K) 0/1 targets against logits: predict 1 iff logit > threshold
    (logit > 0 is sigmoid > 0.5, Faceptor's round(sigmoid)). Returns (K,)."""
    t = np.asarray(targets)
    z = np.asarray(logits, dtype=np.float64)
    if t.shape != z.shape or t.ndim != 2:
        raise MetricInputError(f"targets {t.shape} and logits {z.shape} must be the same (n, K) shape")
    if not np.isin(t, (0, 1)).all():
        raise MetricInputError("attribute targets must be 0 or 1 (map CelebA's -1 to 0)")
    return np.mean((z > threshold).astype(np.int64) == t, axis=0)
