import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error as sk_mae

from facebench.metrics.regression import (binary_attribute_accuracy, cumulative_score, epsilon_error,
                                          mean_absolute_error)


def test_epsilon_error_golden_case():
    # spec/protocols.md §9: pred [25,31,40], mu [24,35,40], sigma [3,4.5,2] -> 0.1268007, MAE 1.6667
    pred, mu, sigma = [25, 31, 40], [24, 35, 40], [3, 4.5, 2]
    assert epsilon_error(pred, mu, sigma) == pytest.approx(0.1268007, abs=1e-7)
    assert mean_absolute_error(mu, pred) == pytest.approx(5 / 3)


def test_epsilon_by_hand():
    # one image off by exactly sigma: 1 - exp(-1/2)
    assert epsilon_error([13], [10], [3]) == pytest.approx(1 - np.exp(-0.5))
    with pytest.raises(ValueError, match="sigma > 0"):
        epsilon_error([1], [1], [0])


def test_mae_and_cs_against_sklearn_and_hand():
    rng = np.random.default_rng(0)
    t, p = rng.uniform(0, 90, 500), rng.uniform(0, 90, 500)
    assert mean_absolute_error(t, p) == pytest.approx(sk_mae(t, p))
    # errors 0, 5, 5.5, 10 -> CS@5 = 2/4 (5 counts: <=)
    assert cumulative_score([20, 20, 20, 20], [20, 25, 14.5, 30]) == 0.5


def test_attribute_accuracy():
    targets = np.array([[1, 0], [0, 0], [1, 1]])
    logits = np.array([[2.0, -1.0], [0.0, 3.0], [-0.5, 0.1]])  # logit 0 -> predicts 0
    assert binary_attribute_accuracy(targets, logits).tolist() == [2 / 3, 2 / 3]
    with pytest.raises(ValueError, match="map CelebA's -1"):
        binary_attribute_accuracy(np.array([[-1]]), np.array([[0.0]]))
