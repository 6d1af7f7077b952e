"""Classification metrics against independent oracles (scikit-learn, hand-computed counts)."""

import numpy as np
import pytest
import scipy.special
from sklearn import metrics as skm

from facebench.metrics.classification import (
    accuracy,
    accuracy_from_cm,
    confusion_matrix,
    macro_f1,
    macro_f1_from_cm,
    mean_class_accuracy,
    mean_class_accuracy_from_cm,
    negative_log_likelihood,
    per_class_precision_from_cm,
    per_class_recall_from_cm,
    per_sample_nll,
    softmax,
    top1,
)

SEEDS = [0, 1, 2, 3]
N_CLASSES = [2, 3, 7, 10]


def _random_labels(seed, c, n=200, drop_pred=(), drop_true=()):
    """Random (y_true, y_pred) with ~60% accuracy; classes in drop_* never appear in that vector."""
    rng = np.random.default_rng(seed)
    keep_true = np.setdiff1d(np.arange(c), drop_true)
    keep_pred = np.setdiff1d(np.arange(c), drop_pred)
    y_true = rng.choice(keep_true, size=n)
    y_true[: keep_true.size] = keep_true  # every kept class present
    noise = rng.choice(keep_pred, size=n)
    y_pred = np.where((rng.random(n) < 0.6) & np.isin(y_true, keep_pred), y_true, noise)
    return y_true, y_pred


def _from_counts(supports, corrects):
    """Label vectors with the given per-class supports and correct counts (errors -> next class)."""
    c = len(supports)
    y_true, y_pred = [], []
    for k, (s, ok) in enumerate(zip(supports, corrects)):
        y_true += [k] * s
        y_pred += [k] * ok + [(k + 1) % c] * (s - ok)
    return np.array(y_true), np.array(y_pred)


# --------------------------------------------------------------------------- #
# scikit-learn oracles
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", N_CLASSES)
def test_confusion_matrix_matches_sklearn(seed, c):
    drop = (c - 1,) if c > 2 else ()
    yt, yp = _random_labels(seed, c, drop_pred=drop)
    cm = confusion_matrix(yt, yp, c)
    assert cm.dtype == np.int64 and cm.shape == (c, c)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(yt, yp, labels=range(c)))
    # class absent from both vectors -> zero row and column
    cm2 = confusion_matrix(yt, yp, c + 2)
    np.testing.assert_array_equal(cm2, skm.confusion_matrix(yt, yp, labels=range(c + 2)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", N_CLASSES)
def test_accuracy_matches_sklearn(seed, c):
    yt, yp = _random_labels(seed, c)
    expected = skm.accuracy_score(yt, yp)
    assert accuracy(yt, yp) == pytest.approx(expected, abs=1e-15)
    assert float(accuracy_from_cm(confusion_matrix(yt, yp, c))) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", N_CLASSES)
def test_mean_class_accuracy_matches_balanced_accuracy(seed, c):
    # all classes present in y_true; some absent from y_pred
    drop = (0,) if c > 2 else ()
    yt, yp = _random_labels(seed, c, drop_pred=drop)
    expected = skm.balanced_accuracy_score(yt, yp)
    assert mean_class_accuracy(yt, yp, c) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [3, 7, 10])
def test_mean_class_accuracy_subset_matches_balanced_accuracy(seed, c):
    # a class absent from y_true: sklearn averages recall over classes present in y_true
    yt, yp = _random_labels(seed, c, drop_true=(1,))
    present = np.unique(yt)
    with pytest.warns(UserWarning):  # sklearn warns that y_pred has classes not in y_true
        expected = skm.balanced_accuracy_score(yt, yp)
    assert mean_class_accuracy(yt, yp, c, classes=present) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", N_CLASSES)
def test_macro_f1_matches_sklearn(seed, c):
    drop_p = (c - 1,) if c > 2 else ()
    drop_t = (0,) if c > 2 else ()
    yt, yp = _random_labels(seed, c, drop_pred=drop_p, drop_true=drop_t)
    labels = list(range(c + 1))  # class c never occurs -> F1 = 0 under zero_division=0
    expected = skm.f1_score(yt, yp, average="macro", labels=labels, zero_division=0)
    assert macro_f1(yt, yp, c + 1) == pytest.approx(expected, abs=1e-14)
    subset = [k for k in range(c) if k % 2 == 0] + [c - 1]
    subset = sorted(set(subset))
    expected_sub = skm.f1_score(yt, yp, average="macro", labels=subset, zero_division=0)
    assert macro_f1(yt, yp, c, classes=subset) == pytest.approx(expected_sub, abs=1e-14)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", N_CLASSES)
def test_per_class_precision_recall_match_sklearn(seed, c):
    drop_p = (c - 1,) if c > 2 else ()
    drop_t = (0,) if c > 2 else ()
    yt, yp = _random_labels(seed, c, drop_pred=drop_p, drop_true=drop_t)
    cm = confusion_matrix(yt, yp, c)
    labels = list(range(c))
    rec = skm.recall_score(yt, yp, labels=labels, average=None, zero_division=np.nan)
    prec = skm.precision_score(yt, yp, labels=labels, average=None, zero_division=np.nan)
    np.testing.assert_allclose(per_class_recall_from_cm(cm), rec, rtol=0, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(per_class_precision_from_cm(cm), prec, rtol=0, atol=1e-15, equal_nan=True)
    if c > 2:
        assert np.isnan(per_class_recall_from_cm(cm)[0])
        assert np.isnan(per_class_precision_from_cm(cm)[c - 1])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", N_CLASSES)
def test_nll_matches_sklearn_log_loss(seed, c):
    rng = np.random.default_rng(seed)
    n = 150
    probs = rng.dirichlet(np.ones(c), size=n)
    yt = rng.integers(0, c, size=n)
    expected = skm.log_loss(yt, probs, labels=list(range(c)))
    assert negative_log_likelihood(yt, probs) == pytest.approx(expected, rel=1e-12)
    per = per_sample_nll(yt, probs)
    assert per.shape == (n,) and per.dtype == np.float64
    np.testing.assert_allclose(per, -np.log(probs[np.arange(n), yt]), rtol=1e-15)


def test_nll_clips_zero_probability():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    per = per_sample_nll([1, 0], probs, eps=1e-15)
    assert per[0] == pytest.approx(-np.log(1e-15))
    assert per[1] == pytest.approx(np.log(2))
    assert per_sample_nll([0], [[1.0, 0.0]])[0] == 0.0


def test_softmax_matches_scipy_and_is_stable():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 7)) * 5
    np.testing.assert_allclose(softmax(z), scipy.special.softmax(z, axis=-1), rtol=1e-14)
    np.testing.assert_allclose(softmax(z, axis=0), scipy.special.softmax(z, axis=0), rtol=1e-14)
    big = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -999.0]])
    s = softmax(big)
    assert np.isfinite(s).all() and s.dtype == np.float64
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(s[0], scipy.special.softmax([0.0, 1.0, -1.0]), rtol=1e-14)
    assert softmax(np.array([1, 2], dtype=np.float32)).dtype == np.float64
    np.testing.assert_allclose(softmax([0.0, -np.inf]), [1.0, 0.0])


# --------------------------------------------------------------------------- #
# batch dims
# --------------------------------------------------------------------------- #
def test_from_cm_functions_vectorise_over_batch_dims():
    rng = np.random.default_rng(5)
    c = 4
    cms = rng.integers(1, 20, size=(3, 2, c, c))
    cms[0, 1, 2, :] = 0  # class 2 empty in one matrix -> NaN recall / mean class accuracy
    cms[1, 0, :, 3] = 0  # class 3 never predicted -> NaN precision
    for fn in (accuracy_from_cm, per_class_recall_from_cm, per_class_precision_from_cm, macro_f1_from_cm):
        batched = fn(cms)
        single = np.array([[fn(cms[i, j]) for j in range(2)] for i in range(3)])
        np.testing.assert_allclose(batched, single, rtol=1e-15, equal_nan=True)
    mca = mean_class_accuracy_from_cm(cms)
    assert mca.shape == (3, 2)
    assert np.isnan(mca[0, 1]) and np.isfinite(np.delete(mca.ravel(), 1)).all()
    for i, j in [(0, 0), (1, 1), (2, 0)]:
        assert mca[i, j] == pytest.approx(float(mean_class_accuracy_from_cm(cms[i, j])), abs=1e-15)
    # subset excluding the empty class is finite everywhere
    assert np.isfinite(mean_class_accuracy_from_cm(cms, classes=[0, 1, 3])).all()


# --------------------------------------------------------------------------- #
# golden cases (hand-computed integer counts)
# --------------------------------------------------------------------------- #
RAF_SUPPORT = (1185, 680, 478, 329, 160, 162, 74)  # Happiness, Neutral, Sadness, Surprise, Disgust, Anger, Fear


def test_raf_db_swin_t_ours_row():
    # Mine-Extra-Knowledge Table 5, "Swin-T+Ours" on RAF-DB test.
    correct = (1149, 626, 422, 304, 136, 142, 53)
    yt, yp = _from_counts(RAF_SUPPORT, correct)
    assert yt.size == 3068
    # overall = 2832 / 3068 = 0.923077 -> 92.31 %
    assert round(100 * accuracy(yt, yp), 2) == 92.31
    assert accuracy(yt, yp) == pytest.approx(2832 / 3068, abs=1e-15)
    # mean = (1149/1185 + 626/680 + 422/478 + 304/329 + 136/160 + 142/162 + 53/74) / 7 = 0.877118 -> 87.71 %
    mca = mean_class_accuracy(yt, yp, 7)
    assert round(100 * mca, 2) == 87.71
    assert mca == pytest.approx(np.mean(np.array(correct) / np.array(RAF_SUPPORT)), abs=1e-15)


def test_raf_db_resnet18_ours_row():
    # Mine-Extra-Knowledge Table 5, "ResNet-18+Ours": per-class % -> integer counts round(pct * support / 100)
    pct = np.array([96.37, 89.56, 89.33, 87.84, 66.875, 80.86, 66.22])
    support = np.array(RAF_SUPPORT)
    correct = np.rint(pct * support / 100).astype(int)
    np.testing.assert_array_equal(correct, [1142, 609, 427, 289, 107, 131, 49])
    yt, yp = _from_counts(RAF_SUPPORT, correct)
    np.testing.assert_allclose(np.round(100 * per_class_recall_from_cm(confusion_matrix(yt, yp, 7)), 2),
                               np.round(pct, 2))
    # overall = 2754 / 3068 = 0.897653 -> 89.77 %
    assert round(100 * accuracy(yt, yp), 2) == 89.77
    # mean of the seven recalls = 0.824369 -> 82.44 %
    assert round(100 * mean_class_accuracy(yt, yp, 7), 2) == 82.44


def test_overall_vs_mean_small_case():
    # Found once by brute force over supports <= 14 (3 classes):
    # supports (3, 4, 7), correct (3, 1, 6)
    # overall = (3 + 1 + 6) / (3 + 4 + 7) = 10/14 = 5/7 = 0.714286
    # mean    = (3/3 + 1/4 + 6/7) / 3 = (28/28 + 7/28 + 24/28) / 3 = (59/28) / 3 = 59/84 = 0.702381
    yt, yp = _from_counts((3, 4, 7), (3, 1, 6))
    assert accuracy(yt, yp) == pytest.approx(5 / 7, abs=1e-15)
    assert mean_class_accuracy(yt, yp, 3) == pytest.approx(59 / 84, abs=1e-15)
    assert round(accuracy(yt, yp), 6) == 0.714286
    assert round(mean_class_accuracy(yt, yp, 3), 6) == 0.702381
    # the confusion-matrix path gives the same
    cm = confusion_matrix(yt, yp, 3)
    np.testing.assert_array_equal(cm, [[3, 0, 0], [0, 1, 3], [1, 0, 6]])
    assert float(mean_class_accuracy_from_cm(cm)) == pytest.approx(59 / 84, abs=1e-15)


def test_macro_f1_hand_case():
    # cm [[3,0,0],[0,1,3],[1,0,6]]: TP=(3,1,6), FP=(1,0,3), FN=(0,3,1)
    # F1 = (6/7, 2/5, 12/16) -> mean = (6/7 + 2/5 + 3/4) / 3
    yt, yp = _from_counts((3, 4, 7), (3, 1, 6))
    assert macro_f1(yt, yp, 3) == pytest.approx((6 / 7 + 2 / 5 + 3 / 4) / 3, abs=1e-15)
    # class 3 never appears: F1_3 = 0 (zero_division=0) and is averaged in when requested
    assert macro_f1(yt, yp, 4) == pytest.approx((6 / 7 + 2 / 5 + 3 / 4) / 4, abs=1e-15)
    assert macro_f1(yt, yp, 4, classes=[0, 1, 2]) == pytest.approx(macro_f1(yt, yp, 3), abs=1e-15)


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
def test_mean_class_accuracy_raises_on_empty_class():
    yt, yp = _from_counts((3, 0, 7), (3, 0, 6))
    with pytest.raises(ValueError, match=r"\[1\]"):
        mean_class_accuracy(yt, yp, 3)
    with pytest.raises(ValueError, match="no samples"):
        mean_class_accuracy_from_cm(confusion_matrix(yt, yp, 3), classes=[0, 1])
    assert mean_class_accuracy(yt, yp, 3, classes=[0, 2]) == pytest.approx((1 + 6 / 7) / 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: confusion_matrix([0, 1], [0], 2), "inconsistent"),
        (lambda: confusion_matrix([], [], 2), "empty"),
        (lambda: confusion_matrix([0, 2], [0, 1], 2), "out of range"),
        (lambda: confusion_matrix([0, -1], [0, 1], 2), "negative"),
        (lambda: confusion_matrix([0.0, np.nan], [0, 1], 2), "NaN"),
        (lambda: confusion_matrix([0.0, 0.5], [0, 1], 2), "integer"),
        (lambda: confusion_matrix(["a", "b"], [0, 1], 2), "indices"),
        (lambda: confusion_matrix([[0, 1]], [[0, 1]], 2), "1-D"),
        (lambda: confusion_matrix([0, 1], [0, 1], 0), "n_classes"),
        (lambda: accuracy([0, 1, 1], [0, 1]), "inconsistent"),
        (lambda: accuracy([], []), "empty"),
        (lambda: mean_class_accuracy([0, 1], [0, 1], 2, classes=[0, 0]), "duplicate"),
        (lambda: mean_class_accuracy([0, 1], [0, 1], 2, classes=[2]), "out of range"),
        (lambda: macro_f1([0, 1], [0, 1], 2, classes=[]), "empty"),
        (lambda: accuracy_from_cm(np.zeros((2, 3))), "square"),
        (lambda: accuracy_from_cm(np.zeros((2, 2))), "empty"),
        (lambda: accuracy_from_cm([[1, np.nan], [0, 1]]), "NaN"),
        (lambda: per_class_recall_from_cm([[1, -1], [0, 1]]), "negative"),
        (lambda: negative_log_likelihood([0, 1], [[0.5, 0.5], [0.5, 0.4]]), "sum to 1"),
        (lambda: negative_log_likelihood([0, 1], [[0.5, 0.5], [np.nan, 1.0]]), "NaN"),
        (lambda: negative_log_likelihood([0, 2], [[0.5, 0.5], [0.5, 0.5]]), "out of range"),
        (lambda: negative_log_likelihood([0], [[0.5, 0.5], [0.5, 0.5]]), "inconsistent"),
        (lambda: negative_log_likelihood([0], [0.5, 0.5]), "2-D"),
        (lambda: negative_log_likelihood([0], [[1.5, -0.5]]), "negative"),
        (lambda: softmax([]), "empty"),
        (lambda: softmax([np.nan, 1.0]), "NaN"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_probability_tolerance_is_1e_6():
    ok = np.array([[0.5, 0.5 + 9e-7]])
    assert np.isfinite(negative_log_likelihood([0], ok))
    with pytest.raises(ValueError, match="sum to 1"):
        negative_log_likelihood([0], np.array([[0.5, 0.5 + 2e-6]]))


def test_integral_float_labels_accepted():
    assert accuracy(np.array([0.0, 1.0, 2.0]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(confusion_matrix(np.array([1.0]), np.array([1], dtype=np.uint8), 2),
                                  [[0, 0], [0, 1]])


@pytest.mark.parametrize("n_classes", [1, 2, 7, 40])
def test_top1_equals_max_and_first_argmax(n_classes):
    rng = np.random.default_rng(n_classes)
    p = rng.dirichlet(np.ones(n_classes), size=5000)
    p[::5] = np.round(p[::5], 1)  # ties: the first maximum wins
    p[1] = 1.0 / n_classes
    conf, pred = top1(p)
    np.testing.assert_array_equal(conf, p.max(axis=1))
    np.testing.assert_array_equal(pred, p.argmax(axis=1))
    assert pred.dtype == np.int64 and pred[1] == 0
    with pytest.raises(ValueError, match="non-empty"):
        top1(np.zeros((0, 3)))


@pytest.mark.parametrize("n_classes", [1, 2, 7, 16, 17, 40])
def test_checked_top1_equals_max_and_first_argmax(n_classes):
    """Probability rows with tied maxima, zeros and -0.0 entries: the column-by-column maximum (up to 16
    classes) and NumPy's row-wise argmax (more) give ``max`` and the first ``argmax``, bit for bit."""
    from facebench.metrics.classification import checked_top1

    rng = np.random.default_rng(n_classes)
    p = rng.dirichlet(np.ones(n_classes), size=40_000)
    p[::5] = np.round(p[::5], 1)  # ties: the first maximum wins
    p[::5] /= p[::5].sum(axis=1, keepdims=True)
    p[1] = 1.0 / n_classes
    p[2] = 0.0
    p[2, -1] = 1.0
    if n_classes > 1:
        p[3] = np.where(np.arange(n_classes) == n_classes - 1, 1.0, -0.0)
    checked, conf, pred = checked_top1(p)
    assert checked is p and pred.dtype == np.int64 and conf.dtype == np.float64
    np.testing.assert_array_equal(pred, p.argmax(axis=1))
    np.testing.assert_array_equal(conf.view(np.int64), p.max(axis=1).view(np.int64))
    assert pred[1] == 0 and pred[2] == n_classes - 1
