import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, log_loss

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.metrics.calibration import expected_calibration_error
from facebench.protocols.base import EvalContext
from facebench.protocols.closed_set import ClosedSetProtocol

CLASSES = ("neutral", "happiness", "sadness", "surprise")


def make_ctx(labels, logits, model_classes, dataset_classes=None, n_resamples=200):
    labels = np.asarray(labels)
    n = len(labels)
    ds = Dataset("toy", "test", np.array([f"s{i}" for i in range(n)]), tuple(dataset_classes or CLASSES), labels,
                 ArrayImages(np.zeros((n, 2, 2, 3), np.uint8)))
    preds = Predictions(ds.ids, {"expression": np.asarray(logits, dtype=np.float32)})
    return EvalContext(ds, preds, "expression", tuple(model_classes), seed=0, n_resamples=n_resamples)


def by_metric(result):
    return {r.metric: r for r in result.records}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_with_permuted_model_order(seed):
    rng = np.random.default_rng(seed)
    n = 400
    y = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    logits = rng.normal(size=(n, 4)) + 2.0 * np.eye(4)[y]
    perm = [2, 0, 3, 1]  # the model's own class order
    model_classes = [CLASSES[i] for i in perm]
    ctx = make_ctx([CLASSES[i] for i in y], logits[:, perm], model_classes)
    res = ClosedSetProtocol().evaluate(ctx)
    m = by_metric(res)
    pred = logits.argmax(1)
    assert m["accuracy"].value == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["mean_class_accuracy"].value == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    label_space = res.details["label_space"]
    remap = np.array([label_space.index(c) for c in CLASSES])
    assert m["macro_f1"].value == pytest.approx(f1_score(y, pred, average="macro", labels=range(4), zero_division=0))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert m["nll"].value == pytest.approx(log_loss(y, probs, labels=range(4)), rel=1e-5)
    cm = np.array(res.details["confusion_matrix"])[np.ix_(remap, remap)]
    assert (cm == confusion_matrix(y, pred, labels=range(4))).all()
    ece_key = [k for k in m if k.startswith("ece[")][0]
    assert ece_key == "ece[bins=15,equal-width,right-closed,conf=max-prob]" or "bins=15" in ece_key
    assert m[ece_key].value == pytest.approx(expected_calibration_error(y, probs, n_bins=15), abs=1e-9)
    for name in ("accuracy", "mean_class_accuracy", "macro_f1", "nll", ece_key):
        lo, hi = m[name].ci
        assert lo <= m[name].value <= hi


def test_unsupported_class_drop_vs_error():
    # dataset has 'surprise', the model cannot predict it
    labels = ["neutral", "happiness", "surprise", "surprise", "neutral"]
    model_classes = ["neutral", "happiness"]
    logits = [[2, 0], [0, 2], [1, 0], [0, 1], [0, 3]]  # correct, correct, -, -, wrong
    drop = by_metric(ClosedSetProtocol(unsupported_classes="drop").evaluate(make_ctx(labels, logits, model_classes)))
    assert drop["accuracy"].value == pytest.approx(2 / 3) and drop["accuracy"].n == 3
    assert drop["mean_class_accuracy"].value == pytest.approx((1 / 2 + 1) / 2)
    err = ClosedSetProtocol(unsupported_classes="error").evaluate(make_ctx(labels, logits, model_classes))
    m = by_metric(err)
    assert m["accuracy"].value == pytest.approx(2 / 5) and m["accuracy"].n == 5
    assert m["mean_class_accuracy"].value == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["nll"].n == 3  # NLL only where the true class has a probability
    assert m["recall[surprise]"].value == 0.0
    assert m["accuracy"].conventions["unsupported_classes"] == "error"


def test_extra_model_class_restrict_vs_keep():
    labels = ["neutral", "happiness", "sadness", "surprise"]
    model_classes = ["neutral", "happiness", "sadness", "surprise", "contempt"]
    logits = np.eye(5)[[0, 1, 2, 3]] * 2.0
    logits[0, 4] = 5.0  # contempt is the top class for sample 0; neutral second
    restrict = by_metric(ClosedSetProtocol().evaluate(make_ctx(labels, logits, model_classes)))
    assert restrict["accuracy"].value == 1.0
    keep = by_metric(ClosedSetProtocol(extra_model_classes="keep").evaluate(make_ctx(labels, logits, model_classes)))
    assert keep["accuracy"].value == 0.75
    assert keep["mean_class_accuracy"].value == 0.75  # mean over the 4 dataset classes, not contempt


def test_class_without_samples_is_reported_not_silently_dropped():
    labels = ["neutral", "happiness", "neutral"]
    res = ClosedSetProtocol().evaluate(make_ctx(labels, np.eye(4)[[0, 1, 1]], CLASSES))
    assert res.details["classes_without_samples"] == ["sadness", "surprise"]
    assert any("without samples" in w for w in res.warnings)
    assert by_metric(res)["mean_class_accuracy"].value == pytest.approx((0.5 + 1) / 2)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + np.eye(4)[y]
    labels = [CLASSES[i] for i in y]
    a = by_metric(ClosedSetProtocol().evaluate(make_ctx(labels, logits, CLASSES)))["accuracy"].ci
    b = by_metric(ClosedSetProtocol().evaluate(make_ctx(labels, logits, CLASSES)))["accuracy"].ci
    assert a == b


def test_no_shared_class_is_an_error():
    with pytest.raises(ValueError, match="share no class"):
        ClosedSetProtocol().evaluate(make_ctx(["neutral"], [[1.0]], ["contempt"]))


def test_no_bootstrap_gives_values_without_cis():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 50)
    res = ClosedSetProtocol().evaluate(make_ctx([CLASSES[i] for i in y], np.eye(4)[y], CLASSES, n_resamples=0))
    m = by_metric(res)
    assert m["accuracy"].value == 1.0 and m["accuracy"].ci is None and m["recall[neutral]"].ci is None


def test_nll_and_ece_cis_agree_with_index_resampling():
    """The count bootstraps of NLL and ECE (4,000 samples: strata, not one per value) give the intervals of the
    generic index bootstrap within Monte-Carlo noise."""
    from facebench.metrics.bootstrap import bootstrap_statistic, percentile_interval
    from facebench.metrics.calibration import ece_statistic_from_confidence
    from facebench.metrics.classification import per_sample_nll, softmax

    rng = np.random.default_rng(11)
    n, b = 4000, 2000
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[y]
    m = by_metric(ClosedSetProtocol().evaluate(make_ctx([CLASSES[i] for i in y], logits, CLASSES, n_resamples=b)))
    probs = softmax(logits.astype(np.float32).astype(np.float64), axis=1)
    nll = per_sample_nll(y, probs)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    oracles = {"nll": bootstrap_statistic(lambda idx: nll[idx].mean(axis=1), n, b, seed=1),
               "ece[bins=15,equal-width,right-closed,conf=max-prob]":
                   bootstrap_statistic(ece_statistic_from_confidence(conf, correct, 15), n, b, seed=1)}
    for name, samples in oracles.items():
        lo, hi = percentile_interval(samples)
        got_lo, got_hi = m[name].ci
        assert abs(got_lo - lo) < 0.12 * (hi - lo) and abs(got_hi - hi) < 0.12 * (hi - lo), name
        assert got_lo < m[name].value < got_hi
