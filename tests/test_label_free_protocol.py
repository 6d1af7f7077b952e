"""label_free protocol: the meta-benchmark's sets and truth, the judging against the metric layer,
and a run that is re-scored from the prediction store without the model."""

import numpy as np
import pytest

from facebench import runner
from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.errors import ConfigError
from facebench.metrics import meta_eval as me
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.label_free import LabelFreeProtocol, draw_sets
from facebench.runner import rescore_run, run_suite

CLASSES = ("neutral", "happiness", "sadness")


def test_draw_sets_by_hand():
    sets = draw_sets(100, 40, "fam", "src", 6, [0.1, 0.5], [50, 200], np.random.default_rng(0))
    # k=0: size 50, frac .1 -> 5 ood, 45 id; k=1: 25/25; k=2: size 200, frac .1 -> 20 ood, 100 id (capped)
    # k=3: 100 ood wanted -> 40 (all), 100 id (capped)
    assert [(len(s.id_index), len(s.other_index)) for s in sets] == [(45, 5), (25, 25), (100, 20), (100, 40),
                                                                    (45, 5), (25, 25)]
    assert all(len(set(s.id_index)) == len(s.id_index) for s in sets)  # without replacement


def _split(name, n, logits, labels=None):
    ds = Dataset(name, "test", np.array([f"{name}{i}" for i in range(n)]), CLASSES,
                 None if labels is None else np.asarray(labels), ArrayImages(np.zeros((n, 1, 1, 3), np.uint8)))
    return ds, Predictions(ds.ids, {"expression": np.asarray(logits)})


def test_judging_matches_the_metric_layer():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 3.0 * np.eye(3)[y]
    task = _split("id", n, logits, [CLASSES[i] for i in y])
    far = _split("far", 400, rng.normal(size=(400, 3)) * 0.2)
    near = _split("near", 400, rng.normal(size=(400, 3)) + 1.5 * np.eye(3)[rng.integers(0, 3, 400)])
    yv = rng.integers(0, 3, 300)
    fit = _split("fit", 300, rng.normal(size=(300, 3)) + 3.0 * np.eye(3)[yv], [CLASSES[i] for i in yv])
    ys = rng.integers(0, 3, 400)
    shifted = _split("shift", 400, rng.normal(size=(400, 3)) + 1.0 * np.eye(3)[ys], [CLASSES[i] for i in ys])
    extras = {"ood:far": ExtraSplit(*far), "ood:near": ExtraSplit(*near), "fit": ExtraSplit(*fit),
              "shift:shift": ExtraSplit(*shifted)}
    ctx = EvalContext(task[0], task[1], "expression", CLASSES, n_resamples=100, extras=extras)
    proto = LabelFreeProtocol(ood_sources=[{"dataset": "far", "split": "test", "name": "far"},
                                           {"dataset": "near", "split": "test", "name": "near"}],
                              shifts=[{"dataset": "shift", "split": "test", "name": "shift"}],
                              fit_split="val", sets_per_source=6, sizes=[100, 300], class_families=True)
    res = proto.evaluate(ctx)
    sets = res.details["sets"]
    assert len(sets) == 6 * (2 + 3)  # two OOD sources and three held-out classes
    truth = np.array([s["true_auroc"] for s in sets])
    far_truth = truth[[s["source"] == "far" for s in sets]]
    assert far_truth.min() > 0.9  # near-constant logits: far OOD
    m = {r.metric: r for r in res.records}
    pred = np.array([s["indicators"]["gmm_auroc"] for s in sets])
    want = me.agreement_metrics(pred, truth)
    for stat in ("mae", "rmse", "spearman", "kendall"):
        assert m[f"{stat}[target=auroc,detector=msp,indicator=gmm_auroc,map=direct]"].value == pytest.approx(want[stat])
    assert m["best_mae[target=auroc,detector=msp]"].headline and m["best_mae[target=auroc,detector=msp]"].conventions["indicator"]
    assert "temperature" in res.details["accuracy"]
    acc = res.details["accuracy"]
    assert {s["family"] for s in acc["sets"]} == {"id", "shift"}
    # AC on a set equals the mean max probability after temperature scaling
    assert m["mae[target=accuracy,indicator=COT,map=direct]"].n == len(acc["sets"])
    lo, hi = m["spearman[target=auroc,detector=msp,indicator=features,map=linear]"].ci
    assert lo <= m["spearman[target=auroc,detector=msp,indicator=features,map=linear]"].value <= hi


def test_configuration_errors():
    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="needs `ood_sources` or `class_families"):
        LabelFreeProtocol(class_families=False).requires(T)
    with pytest.raises(ConfigError, match="used twice"):
        LabelFreeProtocol(ood_sources=[{"dataset": "noise", "split": "test"}, {"dataset": "noise", "split": "test"}]
                          ).requires(T)
    refs = LabelFreeProtocol(ood_sources=[{"dataset": "noise", "split": "test", "family": "far"}],
                             fit_split="val").requires(T)
    assert set(refs) == {"ood:noise", "fit"} and refs["ood:noise"].optional


SUITE = """name: lf
defaults: {bootstrap: 50}
tasks:
  - name: lf
    dataset: synth
    split: test
    dataset_args: {n: 300}
    protocol: label_free
    params:
      fit_split: {split: val, dataset_args: {n: 200}}
      detectors: [msp, mahalanobis]
      sets_per_source: 4
      sizes: [100, 200]
      min_class_samples: 20
      ood_sources:
        - {name: compound, dataset: synth, split: test, dataset_args: {classes: compound, n: 200}}
        - {name: noise, dataset: noise, split: test, dataset_args: {n: 100}}
      shifts:
        - {name: blur, dataset: synth, split: test, dataset_args: {domain: blur, n: 200}}
"""


def test_runs_and_rescoring_needs_no_model(tmp_path, monkeypatch):
    suite = tmp_path / "lf.yaml"
    suite.write_text(SUITE)
    first = run_suite(suite, "synth-cnn", out=tmp_path / "run", progress=False)
    assert first.exit_code == 0, first.results["tasks"][0].get("reason")
    monkeypatch.setattr(runner, "make_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no model")))
    again = rescore_run(tmp_path / "run", log=lambda m: None)
    values = lambda r: {(x["metric"], x["value"]) for x in r["records"]}  # noqa: E731
    assert values(again.results) == values(first.results)
    sets = again.results["tasks"][0]["details"]["sets"]
    assert {s["detector"] for s in sets} == {"msp", "mahalanobis"} and len(sets) >= 2 * 4 * 2


def test_feature_detector_needs_fit_split_and_features():
    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="fit_split"):
        LabelFreeProtocol(detectors=["mahalanobis"]).requires(T)
    with pytest.raises(ConfigError, match="detectors"):
        LabelFreeProtocol(detectors=["odin"]).requires(T)
    proto = LabelFreeProtocol(detectors=["msp", "mahalanobis"], fit_split="val",
                              ood_sources=[{"dataset": "noise", "split": "test"}])
    refs = proto.requires(T)
    assert proto.needs() == {"features": True} and refs["ood:noise"].features and refs["fit"].features
