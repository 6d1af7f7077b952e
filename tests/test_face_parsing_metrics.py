"""Face-parsing metrics against hand-worked values and an independent per-class computation."""

from __future__ import annotations

import numpy as np
import pytest

from facebench.errors import MetricInputError
from facebench.metrics import parsing as pm

TRUE = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
PRED = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
# true 0: predicted 0, 1 | true 1: 1, 1, 0 | true 2: 2, 0 | the 255 pixel is not scored
CM = [[1, 1, 0], [1, 2, 0], [1, 0, 1]]


def test_confusion_matrix_by_hand():
    cm = pm.confusion_matrix(TRUE, PRED, 3)
    np.testing.assert_array_equal(cm, CM)
    assert cm.dtype == np.int64 and cm.sum() == 7
    # no ignore value: 255 is outside [0, 3) and still skipped
    np.testing.assert_array_equal(pm.confusion_matrix(TRUE, PRED, 3, ignore_index=None), CM)
    # ignoring class 1 instead
    assert pm.confusion_matrix(TRUE, PRED, 3, ignore_index=1).sum() == 4


def test_f1_iou_means_by_hand():
    # class 0: TP 1, #true 2, #pred 3; class 1: TP 2, #true 3, #pred 3; class 2: TP 1, #true 2, #pred 1
    np.testing.assert_allclose(pm.per_class_f1(CM), [2 / 5, 4 / 6, 2 / 3])
    np.testing.assert_allclose(pm.per_class_iou(CM), [1 / 4, 2 / 4, 1 / 2])
    assert pm.mean_f1(CM) == pytest.approx((4 / 6 + 2 / 3) / 2)  # background left out
    assert pm.mean_f1(CM, exclude=()) == pytest.approx((2 / 5 + 4 / 6 + 2 / 3) / 3)
    assert pm.mean_iou(CM) == pytest.approx((1 / 4 + 1 / 2 + 1 / 2) / 3)  # background included
    assert pm.mean_iou(CM, exclude=(0,)) == pytest.approx(0.5)
    assert pm.overall_f1(CM) == pytest.approx(2 * 3 / ((3 + 2) + (3 + 1)))  # micro over classes 1, 2
    assert pm.overall_f1(CM, classes=[2]) == pytest.approx(2 / 3)
    assert pm.pixel_accuracy(CM) == pytest.approx(4 / 7)


def test_absent_class_has_no_value_and_leaves_the_means():
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[0, 0], cm[1, 1], cm[2, 1] = 5, 3, 1  # class 3 never appears
    f1 = pm.per_class_f1(cm)
    assert np.isnan(f1[3]) and f1[2] == 0.0
    assert pm.mean_f1(cm) == pytest.approx((2 * 3 / 7 + 0.0) / 2)
    assert np.isnan(pm.mean_f1(np.diag([4, 0, 0])))


def test_against_an_independent_count_on_random_maps():
    rng = np.random.default_rng(1)
    c = 6
    true = rng.integers(0, c, size=(5, 40, 30))
    pred = np.where(rng.random(true.shape) < 0.7, true, rng.integers(0, c, size=true.shape))
    cm = pm.confusion_matrix(true, pred, c)
    for k in range(c):
        tp = np.sum((true == k) & (pred == k))
        n_true, n_pred = np.sum(true == k), np.sum(pred == k)
        assert pm.per_class_f1(cm)[k] == pytest.approx(2 * tp / (n_true + n_pred))
        assert pm.per_class_iou(cm)[k] == pytest.approx(tp / np.sum((true == k) | (pred == k)))
    sk = pytest.importorskip("sklearn.metrics")
    f1 = sk.f1_score(true.ravel(), pred.ravel(), labels=list(range(c)), average=None)
    np.testing.assert_allclose(pm.per_class_f1(cm), f1, atol=1e-12)
    assert pm.overall_f1(cm) == pytest.approx(sk.f1_score(true.ravel(), pred.ravel(), labels=list(range(1, c)),
                                                          average="micro"))
    # per-image matrices sum to the split's
    per = np.stack([pm.confusion_matrix(t, p, c) for t, p in zip(true, pred)])
    np.testing.assert_array_equal(per.sum(0), cm)


def test_bootstrap_confusions_are_multinomial_sums():
    rng = np.random.default_rng(2)
    per = rng.integers(0, 50, size=(7, 3, 3))
    draws = pm.bootstrap_confusions(per, n_resamples=5, seed=11, chunk=2)
    assert draws.shape == (5, 3, 3)
    # replay the generator: chunks of 2, 2, 1 multinomial weight rows
    replay = np.random.default_rng(11)
    weights = np.concatenate([replay.multinomial(7, np.full(7, 1 / 7), size=b) for b in (2, 2, 1)])
    np.testing.assert_allclose(draws, np.einsum("bn,nij->bij", weights, per))
    assert np.allclose(draws.sum(axis=(1, 2)) / per.sum(), weights @ per.sum(axis=(1, 2)) / per.sum())
    one = pm.bootstrap_confusions(per[:1], n_resamples=3)
    np.testing.assert_array_equal(one, np.repeat(per[:1], 3, axis=0))
    # vectorised metrics over the draws agree with one matrix at a time
    np.testing.assert_allclose(pm.mean_f1(draws), [pm.mean_f1(d) for d in draws])


def test_bad_inputs():
    with pytest.raises(MetricInputError, match="differ in shape"):
        pm.confusion_matrix(TRUE, PRED[:, :2], 3)
    with pytest.raises(MetricInputError, match="outside"):
        pm.confusion_matrix(TRUE, PRED + 1, 3)
    with pytest.raises(MetricInputError, match="integer"):
        pm.confusion_matrix(TRUE.astype(float), PRED, 3)
    with pytest.raises(MetricInputError, match=r"\(\.\.\., C, C\)"):
        pm.per_class_f1(np.zeros((2, 3)))
    with pytest.raises(MetricInputError, match="N >= 1"):
        pm.bootstrap_confusions(np.zeros((0, 2, 2)))
    with pytest.raises(MetricInputError, match="excluded class"):
        pm.mean_f1(CM, exclude=(5,))
