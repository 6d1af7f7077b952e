"""facebench.metrics.fooling: spec/robustness.md 4.4's golden vectors, the denominators, the budgets."""

import math

import numpy as np
import pytest

from facebench.errors import MetricInputError
from facebench.metrics import fooling as fo


# -- classification --------------------------------------------------------------------------------------------------
def test_a_constant_classifier_is_never_fooled():
    pred = np.full(7, 3)
    assert fo.fooling_rate(pred, pred) == fo.Rate(0.0, 0, 7, "all samples")


def test_fooling_rate_with_no_perturbation_is_zero():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, 50)
    assert fo.fooling_rate(pred, pred.copy()).value == 0.0


def test_fooling_rate_counts_changed_predictions_not_errors():
    y = np.array([0, 0, 1, 1])
    clean = np.array([0, 1, 1, 0])  # two clean errors
    adv = np.array([1, 1, 1, 0])  # one change (sample 0)
    assert fo.fooling_rate(clean, adv) == fo.Rate(0.25, 1, 4, "all samples")
    # the other "fooling rate" SGA prints: 1 - accuracy under attack (samples 0, 1, 3 wrong)
    assert fo.adversarial_error(y, adv) == fo.Rate(0.75, 3, 4, "all samples")
    assert fo.robust_accuracy(y, adv) == fo.Rate(0.25, 1, 4, "all samples")
    # attack success: of the two clean-correct samples (0 and 2) only sample 0 is wrong under attack
    assert fo.attack_success_rate(y, clean, adv) == fo.Rate(0.5, 1, 2, "clean-correct samples")


def test_robust_accuracy_and_adversarial_error_add_to_one():
    rng = np.random.default_rng(1)
    y, adv = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    assert fo.robust_accuracy(y, adv).value + fo.adversarial_error(y, adv).value == pytest.approx(1.0)


def test_attack_success_rate_over_no_correct_sample_is_nan():
    rate = fo.attack_success_rate([0, 1], [1, 0], [1, 1])
    assert math.isnan(rate.value) and rate.denominator == 0


def test_bad_inputs_raise_metric_input_errors():
    with pytest.raises(MetricInputError, match="inconsistent"):
        fo.fooling_rate([0, 1], [0, 1, 2])
    with pytest.raises(MetricInputError, match="negative"):
        fo.robust_accuracy([0, -1], [0, 1])
    with pytest.raises(MetricInputError, match="goal"):
        fo.verification_success_rate([0.1], 0.4, "evasion")


# -- verification ----------------------------------------------------------------------------------------------------
def test_dodging_golden_vector():
    rate = fo.dodging_fooling_rate([0.9, 0.8, 0.5, 0.2], [0.3, 0.85, 0.1, 0.1], 0.4)
    assert rate == fo.Rate(2 / 3, 2, 3, "genuine pairs accepted clean")


def test_impersonation_counts_impostors_rejected_clean_that_are_accepted():
    rate = fo.impersonation_fooling_rate([0.1, 0.3, 0.5, 0.39], [0.45, 0.2, 0.9, 0.4], 0.4)
    # eligible: 0.1, 0.3, 0.39 (0.5 is accepted already); accepted after: 0.45 and 0.4 (score >= t)
    assert rate == fo.Rate(2 / 3, 2, 3, "impostor pairs rejected clean")


def test_distances_flip_the_accept_side():
    sims, adv = np.array([0.9, 0.8, 0.5, 0.2]), np.array([0.3, 0.85, 0.1, 0.1])
    as_dist = fo.dodging_fooling_rate(1 - sims, 1 - adv, 0.6, higher_is_same_=False)
    assert as_dist.count == 2 and as_dist.denominator == 3


def test_robfr_success_rate_counts_every_pair_strictly():
    adv = [0.3, 0.4, 0.5]
    assert fo.verification_success_rate(adv, 0.4, "dodging") == fo.Rate(1 / 3, 1, 3, "all pairs")
    assert fo.verification_success_rate(adv, 0.4, "impersonation") == fo.Rate(1 / 3, 1, 3, "all pairs")


# -- budgets ---------------------------------------------------------------------------------------------------------
def test_budget_golden_vectors():
    assert fo.to_unit_range(10) == pytest.approx(0.0392, abs=5e-5)
    assert fo.to_unit_range(10) == 10 / 255
    assert fo.l2_radius_to_rms(2000, (224, 224, 3)) == pytest.approx(5.1549, abs=5e-5)
    assert fo.rms_to_l2_radius(8, (3, 112, 112)) == pytest.approx(1551.92, abs=5e-3)
    assert fo.rms_to_l2_radius(fo.l2_radius_to_rms(7.0, 37632), 37632) == pytest.approx(7.0)


@pytest.mark.parametrize("shape", [(3, 0, 2), (), "3x112x112", (2.5, 3)])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(MetricInputError, match="shape"):
        fo.l2_radius_to_rms(1.0, shape)
