"""Adversarial and universal-perturbation metrics (pure NumPy): fooling rates, robust accuracy, budgets.

Conventions (``spec/robustness.md`` sections 3.1, 3.4-3.6 and 4.4):

* Every rate is returned as a :class:`Rate` ``(value, count, denominator, of)``: ``count`` of
  ``denominator`` samples (or pairs), ``of`` naming which ones the denominator counts. A rate over
  nothing (denominator 0) is NaN, never 0.
* **Fooling rate** (Moosavi-Dezfooli et al. 2017) is the fraction of samples whose *predicted* label
  changes, ``mean(pred_adv != pred_clean)``; ground truth plays no part. The other quantity that SGA's
  evaluation also prints as "fooling rate", ``1 - accuracy(pred_adv, y_true)``, is named
  :func:`adversarial_error` here.
* **Robust accuracy** = accuracy under attack over all samples; **attack success rate** = fraction of the
  clean-correct samples that the attack makes wrong (its denominator excludes samples wrong already).
* Verification scores are similarities (higher = same) unless ``higher_is_same_=False`` (distances). A pair
  is accepted at threshold ``t`` when ``score >= t`` (distance: ``dist <= t``), as in
  :mod:`facebench.metrics.verification`. The threshold must be fitted on **clean** pairs; re-fitting it on
  attacked pairs understates the attack.
* Budgets: attacks run on [0, 1] pixels. An L-inf or L2 budget quoted on [0, 255] pixels is divided by 255
  (:func:`to_unit_range`); RobFR's L2 ``eps`` is a per-element RMS, radius = ``eps * sqrt(D)`` with
  ``D = C * H * W`` (:func:`rms_to_l2_radius`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from facebench.errors import MetricInputError

from ._validation import (
    check_bool,
    check_choice,
    check_consistent_length,
    check_labels,
    check_positive_real,
    check_real,
    check_score_vector,
)

__all__ = [
    "Rate",
    "fooling_rate",
    "adversarial_error",
    "robust_accuracy",
    "attack_success_rate",
    "dodging_fooling_rate",
    "impersonation_fooling_rate",
    "verification_success_rate",
    "to_unit_range",
    "l2_radius_to_rms",
    "rms_to_l2_radius",
]

GOALS = ("dodging", "impersonation")


class Rate(NamedTuple):
    """``value = count / denominator`` (NaN when ``denominator`` is 0); ``of`` names what is counted."""

    value: float
    count: int
    denominator: int
    of: str


def _rate(hits: np.ndarray, eligible: np.ndarray, of: str) -> Rate:
    count, den = int(np.count_nonzero(hits & eligible)), int(np.count_nonzero(eligible))
    return Rate(count / den if den else math.nan, count, den, of)


def _two_label_vectors(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = check_labels(a, name_a), check_labels(b, name_b)
    check_consistent_length(**{name_a: a, name_b: b})
    return a, b


# --------------------------------------------------------------------------- classification
def fooling_rate(pred_clean, pred_adv) -> Rate:
    """Moosavi-Dezfooli's fooling rate: the fraction of all samples whose predicted class changes,
    ``mean(pred_adv != pred_clean)`` (predicted class indices; ground truth is not used)."""
    clean, adv = _two_label_vectors(pred_clean, pred_adv, "pred_clean", "pred_adv")
    return _rate(adv != clean, np.ones(clean.shape, bool), "all samples")


def adversarial_error(y_true, pred_adv) -> Rate:
    """``1 - accuracy`` under attack over all samples (SGA's evaluation prints it as "fooling rate"; it is
    not the prediction-change fooling rate: a sample wrong before the attack counts too)."""
    y, adv = _two_label_vectors(y_true, pred_adv, "y_true", "pred_adv")
    return _rate(adv != y, np.ones(y.shape, bool), "all samples")


def robust_accuracy(y_true, pred_adv) -> Rate:
    """Accuracy under attack, ``mean(pred_adv == y_true)`` over all samples."""
    y, adv = _two_label_vectors(y_true, pred_adv, "y_true", "pred_adv")
    return _rate(adv == y, np.ones(y.shape, bool), "all samples")


def attack_success_rate(y_true, pred_clean, pred_adv) -> Rate:
    """Fraction of the samples classified correctly when clean that are misclassified under attack
    (denominator: the clean-correct samples only; NaN when there are none)."""
    y, clean = _two_label_vectors(y_true, pred_clean, "y_true", "pred_clean")
    _, adv = _two_label_vectors(y_true, pred_adv, "y_true", "pred_adv")
    return _rate(adv != y, clean == y, "clean-correct samples")


# --------------------------------------------------------------------------- verification
def _pair_scores(clean, adv, threshold, higher_is_same_) -> tuple[np.ndarray, np.ndarray, float, bool]:
    clean = check_score_vector(clean, "clean_scores", "need at least one pair")
    adv = check_score_vector(adv, "adv_scores", "need at least one pair")
    check_consistent_length(clean_scores=clean, adv_scores=adv)
    return clean, adv, check_real(threshold, "threshold"), check_bool(higher_is_same_, "higher_is_same_")


def _accepted(scores: np.ndarray, threshold: float, higher_is_same_: bool) -> np.ndarray:
    return scores >= threshold if higher_is_same_ else scores <= threshold


def dodging_fooling_rate(clean_scores, adv_scores, threshold, higher_is_same_=True) -> Rate:
    """Genuine pairs accepted clean (``score >= threshold``) and rejected after the probe is perturbed, over
    the genuine pairs accepted clean. ``threshold`` is fixed on clean data (spec 3.4)."""
    clean, adv, t, hi = _pair_scores(clean_scores, adv_scores, threshold, higher_is_same_)
    return _rate(~_accepted(adv, t, hi), _accepted(clean, t, hi), "genuine pairs accepted clean")


def impersonation_fooling_rate(clean_scores, adv_scores, threshold, higher_is_same_=True) -> Rate:
    """Impostor pairs rejected clean (``score < threshold``) and accepted after the probe is perturbed, over
    the impostor pairs rejected clean. ``threshold`` is fixed on clean data (spec 3.4)."""
    clean, adv, t, hi = _pair_scores(clean_scores, adv_scores, threshold, higher_is_same_)
    return _rate(_accepted(adv, t, hi), ~_accepted(clean, t, hi), "impostor pairs rejected clean")


def verification_success_rate(adv_scores, threshold, goal, higher_is_same_=True) -> Rate:
    """RobFR's attack success rate over **all** given pairs: dodging succeeds when the attacked score is
    strictly on the reject side (``score < threshold``), impersonation when strictly on the accept side
    (``score > threshold``); pairs meeting the goal before the attack count as successes."""
    adv = check_score_vector(adv_scores, "adv_scores", "need at least one pair")
    t, goal = check_real(threshold, "threshold"), check_choice(goal, GOALS, "goal")
    sign = 1.0 if check_bool(higher_is_same_, "higher_is_same_") else -1.0
    margin = sign * (adv - t)
    hits = margin < 0 if goal == "dodging" else margin > 0
    return _rate(hits, np.ones(adv.shape, bool), "all pairs")


# --------------------------------------------------------------------------- budgets
def to_unit_range(budget, pixel_max=255.0) -> float:
    """A budget quoted on [0, ``pixel_max``] pixels in [0, 1] units (L-inf and L2 alike): ``budget / pixel_max``;
    e.g. 10 on [0, 255] -> 0.0392."""
    return check_positive_real(budget, "budget") / check_positive_real(pixel_max, "pixel_max")


def _dims(shape) -> int:
    dims = np.atleast_1d(np.asarray(shape))
    if dims.ndim != 1 or dims.size == 0 or not np.issubdtype(dims.dtype, np.integer) or (dims < 1).any():
        raise MetricInputError(f"shape must be a positive integer or a tuple of them such as (3, 112, 112), "
                               f"got {shape!r}")
    return int(np.prod(dims, dtype=np.int64))


def l2_radius_to_rms(radius, shape) -> float:
    """An L2 radius as the per-element RMS over ``D = prod(shape)`` elements: ``radius / sqrt(D)``; e.g.
    2000 on (3, 224, 224) -> 5.1549."""
    return check_positive_real(radius, "radius") / math.sqrt(_dims(shape))


def rms_to_l2_radius(rms, shape) -> float:
    """A per-element RMS budget (RobFR's L2 ``eps``) as an L2 radius: ``rms * sqrt(D)``; e.g. 8 on
    (3, 112, 112) -> 1551.92."""
    return check_positive_real(rms, "rms") * math.sqrt(_dims(shape))
