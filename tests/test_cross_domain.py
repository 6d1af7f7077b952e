"""cross_domain protocol: columns and the Mean (source included) by hand, class mapping by name,
the published CAFE row's Mean, and a suite run on the synthetic rendering domains."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.errors import ConfigError
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.cross_domain import CrossDomainProtocol
from facebench.runner import run_suite

MODEL = ("neutral", "happiness", "sadness", "surprise")


def _split(name, labels, preds, classes):
    n = len(labels)
    logits = np.zeros((n, len(MODEL)))
    logits[np.arange(n), [MODEL.index(c) for c in preds]] = 3.0
    ds = Dataset(name, "test", np.array([f"{name}{i}" for i in range(n)]), tuple(classes), np.asarray(labels),
                 ArrayImages(np.zeros((n, 1, 1, 3), np.uint8)))
    return ds, Predictions(ds.ids, {"expression": logits})


def test_columns_and_mean_by_hand():
    src = _split("src", ["neutral", "happiness", "sadness", "surprise"] * 5,
                 ["neutral", "happiness", "sadness", "neutral"] * 5, MODEL)  # 15/20 = 0.75
    # target A: 8 classes incl. contempt (unsupported, dropped); 3 of 4 scorable correct
    a = _split("a", ["neutral", "happiness", "contempt", "sadness", "surprise"],
               ["neutral", "happiness", "neutral", "sadness", "happiness"], MODEL + ("contempt",))
    # target B: lacks surprise; the argmax is restricted to the 3 shared classes
    b_ds = Dataset("b", "test", np.array(["b0", "b1"]), ("neutral", "happiness", "sadness"),
                   np.array(["neutral", "sadness"]), ArrayImages(np.zeros((2, 1, 1, 3), np.uint8)))
    b_logits = np.array([[0.0, 1.0, 0.0, 5.0], [0.0, 0.0, 2.0, 9.0]])  # surprise would win without restriction
    b = (b_ds, Predictions(b_ds.ids, {"expression": b_logits}))
    ctx = EvalContext(src[0], src[1], "expression", MODEL, n_resamples=100,
                      extras={"target:A": ExtraSplit(*a), "target:B": ExtraSplit(*b)})
    res = CrossDomainProtocol(targets=[{"dataset": "a", "split": "test", "name": "A"},
                                       {"dataset": "b", "split": "test", "name": "B"}]).evaluate(ctx)
    m = {r.metric: r for r in res.records}
    assert m["accuracy[source=src]"].value == 0.75
    assert m["accuracy[target=A]"].value == 0.75 and m["accuracy[target=A]"].n == 4
    assert m["accuracy[target=B]"].value == 0.5  # sample 0 predicts happiness among the shared classes
    assert m["accuracy[mean]"].value == pytest.approx((0.75 + 0.75 + 0.5) / 3)
    lo, hi = m["accuracy[mean]"].ci
    assert lo <= m["accuracy[mean]"].value <= hi
    cols = {c["column"]: c for c in res.details["columns"]}
    assert cols["A"]["classes_missing_in_model"] == ["contempt"] and cols["A"]["dropped"] == 1
    assert cols["B"]["model_classes_missing_in_dataset"] == ["surprise"]
    assert any("contempt" in w for w in res.warnings)


def test_published_cafe_row_mean():
    # CAFE trained on FERPlus (spec §5.1): FERPlus 89.51, RAF-DB 72.91, AffectNet 39.44, SFEW 49.38, MMA 60.14
    cols = [89.51, 72.91, 39.44, 49.38, 60.14]
    splits, extras = [], {}
    for j, acc in enumerate(cols):
        n = 10000
        k = int(round(acc / 100 * n))
        labels = ["neutral"] * n
        preds = ["neutral"] * k + ["happiness"] * (n - k)
        splits.append(_split(f"d{j}", labels, preds, MODEL))
    for j in range(1, 5):
        extras[f"target:d{j}"] = ExtraSplit(*splits[j])
    ctx = EvalContext(splits[0][0], splits[0][1], "expression", MODEL, n_resamples=0, extras=extras)
    res = CrossDomainProtocol(targets=[{"dataset": f"d{j}", "split": "test"} for j in range(1, 5)]).evaluate(ctx)
    m = {r.metric: r.value for r in res.records}
    assert round(100 * m["accuracy[mean]"], 2) == 62.28


def test_bad_targets():
    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="needs `targets`"):
        CrossDomainProtocol().requires(T)
    with pytest.raises(ConfigError, match="has no key 'splt'"):
        CrossDomainProtocol(targets=[{"dataset": "x", "splt": "test"}]).requires(T)
    with pytest.raises(ConfigError, match="used twice"):
        CrossDomainProtocol(targets=[{"dataset": "x", "split": "test"}, {"dataset": "x", "split": "val"}]).requires(T)


def test_suite_on_synthetic_domains(tmp_path):
    suite = tmp_path / "cd.yaml"
    suite.write_text("""name: cd
defaults: {bootstrap: 50}
tasks:
  - name: domains
    dataset: synth
    split: test
    dataset_args: {n: 300}
    protocol: cross_domain
    params:
      source_name: clean
      targets:
        - {dataset: synth, split: test, name: noise, dataset_args: {n: 300, domain: noise}}
        - {dataset: synth, split: test, name: blur, dataset_args: {n: 300, domain: blur}}
""")
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    assert out.exit_code == 0, out.results
    m = {r["metric"]: r for r in out.results["records"]}
    cols = [m["accuracy[source=clean]"], m["accuracy[target=noise]"], m["accuracy[target=blur]"]]
    assert m["accuracy[mean]"]["value"] == pytest.approx(np.mean([c["value"] for c in cols]))
    assert all(c["n"] == 300 for c in cols)
    row = out.results["tasks"][0]
    assert set(row["extra_splits"]) == {"target:noise", "target:blur"}
    assert set(row["fingerprints"]["extra_datasets"]) == {"target:noise", "target:blur"}


def test_missing_target_is_left_out_with_skip(tmp_path):
    suite = tmp_path / "cd.yaml"
    body = """name: cd
defaults: {{bootstrap: 0, missing_data: {policy}}}
tasks:
  - name: domains
    dataset: synth
    split: test
    dataset_args: {{n: 100}}
    protocol: cross_domain
    params:
      targets:
        - {{dataset: synth, split: test, name: blur, dataset_args: {{n: 100, domain: blur}}}}
        - {{dataset: rafdb, split: test, path: {missing}}}
"""
    suite.write_text(body.format(policy="skip", missing=tmp_path / "nope"))
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    row = out.results["tasks"][0]
    assert row["status"] == "ok" and list(row["skipped_extra_splits"]) == ["target:rafdb"]
    m = {r["metric"]: r for r in out.results["records"]}
    assert m["accuracy[mean]"]["conventions"]["columns"] == ["synth", "blur"]
    suite.write_text(body.format(policy="error", missing=tmp_path / "nope"))
    from facebench.errors import DatasetNotFoundError
    with pytest.raises(DatasetNotFoundError, match="target:rafdb"):
        run_suite(suite, "synth-cnn", out=tmp_path / "o2", progress=False)
