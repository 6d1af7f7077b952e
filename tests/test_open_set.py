"""open_set protocol: both modes against independent computations (scikit-learn's AUROC and
logistic regression), conventions in the keys, and suite runs on the synthetic set."""

import os
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.errors import ConfigError
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.open_set import OpenSetProtocol, _tag
from facebench.runner import run_suite

MODEL = ("neutral", "happiness", "sadness", "surprise")
FPR_KNOWN = "fpr@tpr95[pos=known,rule=interp]"
FPR_UNKNOWN = "fpr@tpr95[pos=unknown,rule=first]"


def _ds(name, split, labels, classes, features=None, logits=None):
    n = len(labels)
    ds = Dataset(name, split, np.array([f"{name}{split}{i}" for i in range(n)]), tuple(classes), np.asarray(labels),
                 ArrayImages(np.zeros((n, 1, 1, 3), np.uint8)))
    outputs = {}
    if logits is not None:
        outputs["expression"] = np.asarray(logits, np.float32)
    if features is not None:
        outputs["features"] = np.asarray(features, np.float32)
    return ds, Predictions(ds.ids, outputs)


def _msp(logits):
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return p.max(1)


def test_unknown_classes_mode_against_sklearn():
    rng = np.random.default_rng(0)
    classes = MODEL + ("contempt",)
    y = rng.choice(5, 500, p=[0.3, 0.3, 0.15, 0.15, 0.1])
    logits = rng.normal(size=(500, 4)) + 3.0 * np.eye(5)[y][:, :4]  # contempt rows get no boost
    ds, preds = _ds("toy", "test", [classes[i] for i in y], classes, logits=logits)
    ctx = EvalContext(ds, preds, "expression", MODEL, n_resamples=100)
    res = OpenSetProtocol().evaluate(ctx)
    m = {r.metric: r for r in res.records}
    logits32 = np.asarray(logits, np.float32).astype(np.float64)
    msp = _msp(logits32)
    known = y < 4
    assert m["auroc"].value == pytest.approx(roc_auc_score(known, msp), abs=1e-12)
    assert m["closed_set_accuracy"].value == pytest.approx(np.mean(logits32[known].argmax(1) == y[known]))
    for key in ("auroc", FPR_KNOWN, FPR_UNKNOWN, "oscr"):
        lo, hi = m[key].ci
        assert lo <= m[key].value <= hi
    assert {"aupr[pos=known,method=ap]", "aupr[pos=unknown,method=trapezoid]", "detection_error",
            "ccr@fpr0.01", "ccr@fpr0.1"} <= set(m)
    assert m["auroc"].conventions["unknown_classes"] == ["contempt"]
    assert res.details["n_unknown"] == int((y == 4).sum())
    assert m["oscr"].value <= m["auroc"].value + 1e-12  # CCR <= TPR pointwise


def test_unknown_splits_and_energy_score():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 2.5 * np.eye(4)[y]
    ds, preds = _ds("toy", "test", [MODEL[i] for i in y], MODEL, logits=logits)
    other_logits = rng.normal(size=(120, 4))
    other, other_preds = _ds("other", "test", ["happiness"] * 120, ("happiness",), logits=other_logits)
    ctx = EvalContext(ds, preds, "expression", MODEL, n_resamples=0,
                      extras={"unknown:0": ExtraSplit(other, other_preds)})
    res = OpenSetProtocol(score="energy", temperature=2.0,
                          unknowns=[{"dataset": "other", "split": "test"}]).evaluate(ctx)
    m = {r.metric: r for r in res.records}
    from scipy.special import logsumexp

    def energy(z):
        z = np.asarray(z, np.float32).astype(np.float64)
        return 2.0 * logsumexp(z / 2.0, axis=1)

    labels = np.r_[np.ones(300), np.zeros(120)]
    assert m["auroc"].value == pytest.approx(roc_auc_score(labels, np.r_[energy(logits), energy(other_logits)]))
    assert m["auroc"].ci is None and m["auroc"].conventions["temperature"] == 2.0
    assert res.details["unknown_sources"] == [{"source": "task", "n": 0}, {"source": "other/test", "n": 120}]


def test_mahalanobis_fitted_on_the_training_features():
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=4, size=(4, 8))
    ytr = rng.integers(0, 4, 400)
    xtr = centres[ytr] + rng.normal(size=(400, 8))
    yte = rng.integers(0, 5, 200)  # class 4 (contempt) is unknown: far away
    xte = np.where(yte[:, None] < 4, centres[np.minimum(yte, 3)], 12.0) + rng.normal(size=(200, 8))
    classes = MODEL + ("contempt",)
    logits = rng.normal(size=(200, 4))
    test, tp = _ds("toy", "test", [classes[i] for i in yte], classes, features=xte, logits=logits)
    train, trp = _ds("toy", "train", [classes[i] for i in ytr], classes, features=xtr, logits=rng.normal(size=(400, 4)))
    ctx = EvalContext(test, tp, "expression", MODEL, n_resamples=0, extras={"fit": ExtraSplit(train, trp)})
    proto = OpenSetProtocol(score="mahalanobis")
    assert proto.needs() == {"features": True}
    res = proto.evaluate(ctx)
    m = {r.metric: r.value for r in res.records}
    # oracle: tied covariance by hand
    x32 = np.asarray(xtr, np.float32).astype(np.float64)
    mus = np.stack([x32[ytr == c].mean(0) for c in range(4)])
    cov = sum((x32[ytr == c] - mus[c]).T @ (x32[ytr == c] - mus[c]) for c in range(4)) / len(x32)
    prec = np.linalg.inv(cov)
    q = np.asarray(xte, np.float32).astype(np.float64)
    d = np.stack([np.einsum("ij,jk,ik->i", q - mu, prec, q - mu) for mu in mus], 1).min(1)
    assert m["auroc"] == pytest.approx(roc_auc_score(yte < 4, -d), abs=1e-9)
    assert m["auroc"] > 0.95


def test_leave_one_out_against_sklearn_probe():
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=2.0, size=(4, 6))
    ytr, yte = rng.integers(0, 4, 600), rng.integers(0, 4, 200)
    xtr = centres[ytr] + rng.normal(size=(600, 6))
    xte = centres[yte] + rng.normal(size=(200, 6))
    test, tp = _ds("toy", "test", [MODEL[i] for i in yte], MODEL, features=xte, logits=np.zeros((200, 4)))
    train, trp = _ds("toy", "train", [MODEL[i] for i in ytr], MODEL, features=xtr, logits=np.zeros((600, 4)))
    ctx = EvalContext(test, tp, "expression", MODEL, n_resamples=50, extras={"fit": ExtraSplit(train, trp)})
    res = OpenSetProtocol(mode="leave_one_out", probe_C=0.5).evaluate(ctx)
    m = {r.metric: r for r in res.records}
    x_tr = np.asarray(xtr, np.float32).astype(np.float64)
    x_te = np.asarray(xte, np.float32).astype(np.float64)
    aurocs = []
    for k in range(4):
        keep = ytr != k
        scaler = StandardScaler().fit(x_tr[keep])
        clf = LogisticRegression(C=0.5, max_iter=5000, tol=1e-10).fit(scaler.transform(x_tr[keep]), ytr[keep])
        pool = np.concatenate([x_te, x_tr[ytr == k]])
        pool_y = np.concatenate([yte, ytr[ytr == k]])
        msp = clf.predict_proba(scaler.transform(pool)).max(1)
        want = roc_auc_score(pool_y != k, msp)
        got = m[f"auroc[open={MODEL[k]}]"]
        assert got.value == pytest.approx(want, abs=2e-3)
        assert got.conventions["n_unknown"] == int((yte == k).sum() + (ytr == k).sum())
        acc = np.mean(clf.predict(scaler.transform(x_te[yte != k])) == yte[yte != k])
        assert m[f"closed_set_accuracy[open={MODEL[k]}]"].value == pytest.approx(acc, abs=0.01)
        aurocs.append(got.value)
    assert m["auroc[mean]"].value == pytest.approx(np.mean(aurocs))
    assert m["auroc[mean]"].headline and m[_tag(FPR_KNOWN, "mean")].headline
    table = res.details["table"]
    assert [r["open_class"] for r in table] == list(MODEL) + ["Mean"]
    # pool "test": the unknowns are the test samples of k only
    res2 = OpenSetProtocol(mode="leave_one_out", pool="test", open_classes=["sadness"]).evaluate(ctx)
    m2 = {r.metric: r for r in res2.records}
    assert m2["auroc[open=sadness]"].conventions["n_unknown"] == int((yte == 2).sum())


def _loo_context(n_resamples=200, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(4, 8))
    ytr, yte = rng.integers(0, 4, 900), rng.integers(0, 4, 300)
    xtr, xte = centres[ytr] + rng.normal(size=(900, 8)), centres[yte] + rng.normal(size=(300, 8))
    test, tp = _ds("toy", "test", [MODEL[i] for i in yte], MODEL, features=xte, logits=np.zeros((300, 4)))
    train, trp = _ds("toy", "train", [MODEL[i] for i in ytr], MODEL, features=xtr, logits=np.zeros((900, 4)))
    return EvalContext(test, tp, "expression", MODEL, n_resamples=n_resamples, seed=seed,
                       extras={"fit": ExtraSplit(train, trp)})


def _same_result(a, b):
    assert [r.to_dict() for r in a.records] == [r.to_dict() for r in b.records]
    assert a.details == b.details and a.warnings == b.warnings


def _die(j):  # a worker that dies mid-task (module level: the pool pickles it by name)
    import os
    os._exit(3)


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="forked worker processes: Linux with two usable CPUs")
def test_leave_one_out_worker_processes_give_the_same_bits(monkeypatch):
    from facebench.protocols import open_set

    ctx = _loo_context()
    proto = OpenSetProtocol(mode="leave_one_out", probe_C=0.7)
    job = proto._loo_setup(ctx)
    monkeypatch.setattr(open_set, "PROCESS_WORK", 10 ** 18)
    assert open_set._class_processes(ctx, job) == 0
    here = proto.evaluate(ctx)
    monkeypatch.setattr(open_set, "PROCESS_WORK", 1)
    assert open_set._class_processes(ctx, job) >= 2
    _same_result(proto.evaluate(ctx), here)
    monkeypatch.setattr(open_set, "_open_class_in_worker", _die)  # workers die: evaluated here instead
    _same_result(proto.evaluate(ctx), here)


def test_leave_one_out_mean_row_and_ci():
    ctx = _loo_context(n_resamples=100)
    res = OpenSetProtocol(mode="leave_one_out").evaluate(ctx)
    m = {r.metric: r for r in res.records}
    table = res.details["table"]
    for key in ("auroc", "oscr", "closed_set_accuracy"):
        want = np.mean([row[key] for row in table[:-1]])
        assert m[f"{key}[mean]"].value == table[-1][key] == pytest.approx(want, abs=1e-15)
    assert m["auroc[mean]"].ci is not None and m["closed_set_accuracy[mean]"].ci is None
    lo, hi = m["auroc[mean]"].ci
    assert lo <= m["auroc[mean]"].value <= hi


def test_parameter_errors():
    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="score must be one of"):
        OpenSetProtocol(score="odin")
    with pytest.raises(ConfigError, match="needs a `fit_split`"):
        OpenSetProtocol(mode="leave_one_out", fit_split=None).requires(T)
    with pytest.raises(ConfigError, match="unknown_classes only"):
        OpenSetProtocol(mode="leave_one_out", unknowns=[{"dataset": "x", "split": "test"}]).requires(T)
    assert OpenSetProtocol().requires(T) == {}
    refs = OpenSetProtocol(mode="leave_one_out").requires(T)
    assert refs["fit"].split == "train" and refs["fit"].features


def test_suite_both_modes_on_synthetic(tmp_path):
    suite = tmp_path / "os.yaml"
    suite.write_text("""name: os
defaults: {bootstrap: 20}
tasks:
  - name: compound-unknowns
    dataset: synth
    split: test
    dataset_args: {n: 300}
    protocol: open_set
    params:
      unknowns: [{dataset: synth, split: test, dataset_args: {n: 200, classes: compound}}]
  - name: loco
    dataset: synth
    split: test
    dataset_args: {n: 300}
    protocol: open_set
    params: {mode: leave_one_out, fit_split: {split: train, dataset_args: {n: 700}}, open_classes: [fear, happiness]}
""")
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    m = {(r["task"], r["metric"]): r for r in out.results["records"]}
    assert 0.5 < m[("compound-unknowns", "auroc")]["value"] <= 1.0
    assert m[("compound-unknowns", "auroc")]["n"] == 500
    assert ("loco", "auroc[open=fear]") in m and ("loco", "auroc[mean]") in m


def test_vim_on_the_probe_in_leave_one_out():
    from facebench.metrics.ood_scores import LinearProbe, ViM

    rng = np.random.default_rng(5)
    centres = rng.normal(scale=2.0, size=(4, 6))
    ytr, yte = rng.integers(0, 4, 400), rng.integers(0, 4, 120)
    xtr, xte = centres[ytr] + rng.normal(size=(400, 6)), centres[yte] + rng.normal(size=(120, 6))
    test, tp = _ds("toy", "test", [MODEL[i] for i in yte], MODEL, features=xte, logits=np.zeros((120, 4)))
    train, trp = _ds("toy", "train", [MODEL[i] for i in ytr], MODEL, features=xtr, logits=np.zeros((400, 4)))
    ctx = EvalContext(test, tp, "expression", MODEL, n_resamples=0, extras={"fit": ExtraSplit(train, trp)})
    res = OpenSetProtocol(mode="leave_one_out", score="vim", open_classes=["surprise"]).evaluate(ctx)
    got = {r.metric: r.value for r in res.records}["auroc[open=surprise]"]
    x_tr = np.asarray(xtr, np.float32).astype(np.float64)
    x_te = np.asarray(xte, np.float32).astype(np.float64)
    keep = ytr != 3
    probe = LinearProbe().fit(x_tr[keep], ytr[keep], n_classes=3)
    vim = ViM().fit(probe._transform(x_tr[keep]), probe.coef_, probe.intercept_)
    pool = np.concatenate([x_te, x_tr[ytr == 3]])
    labels = np.concatenate([yte, ytr[ytr == 3]]) != 3
    assert got == pytest.approx(roc_auc_score(labels, vim.score(probe._transform(pool))), abs=1e-12)

    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="mode: leave_one_out"):
        OpenSetProtocol(score="vim").requires(T)


def test_a_corrupted_task_fits_its_detector_on_the_clean_training_split(tmp_path):
    """End to end: a task on noisy test data with `fit_split: train` fits Mahalanobis on clean training data (the
    same result as naming the clean split's args), not on noisy training data (a different result)."""
    noise = "{name: gaussian_noise, severity: 5}"
    tasks = {"inherited": "train",
             "clean": "{split: train, dataset_args: {n: 400}}",
             "noisy": "{split: train, dataset_args: {n: 400, transform: %s}}" % noise}
    suite = tmp_path / "fit.yaml"
    suite.write_text("name: fit\ndefaults: {bootstrap: 0}\ntasks:\n" + "".join(
        f"  - {{name: {name}, dataset: synth, split: test, dataset_args: {{n: 400, transform: {noise}}}, "
        f"protocol: open_set, params: {{mode: leave_one_out, score: mahalanobis, fit_split: {fit}, "
        f"open_classes: [fear]}}}}\n" for name, fit in tasks.items()))
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    auroc = {r["task"]: r["value"] for r in out.results["records"] if r["metric"] == "auroc[open=fear]"}
    assert auroc["inherited"] == auroc["clean"] != auroc["noisy"]
