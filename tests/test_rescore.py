"""facebench rescore: a finished run re-evaluated from the prediction store, never loading the model."""

import json

import pytest

from facebench import runner
from facebench.cli import main
from facebench.errors import ModelError
from facebench.runner import rescore_run, run_suite

SUITE = """name: three
defaults: {bootstrap: 100, seed: 3}
tasks:
  - name: open-set
    dataset: synth
    split: test
    dataset_args: {n: 200}
    protocol: open_set
    params: {mode: leave_one_out, fit_split: {split: train, dataset_args: {n: 400}}, open_classes: [fear, anger]}
  - name: imbalanced
    dataset: synth
    split: test
    dataset_args: {n: 200}
    protocol: imbalanced
    params: {train_split: {split: train, dataset_args: {n: 400}}, imbalance_factors: [1, 10], resample_repeats: 3}
  - name: cross-domain
    dataset: synth
    split: test
    dataset_args: {n: 200}
    protocol: cross_domain
    params: {targets: [{dataset: synth, split: test, name: blur, dataset_args: {n: 150, domain: blur}}]}
"""


@pytest.fixture
def finished_run(tmp_path):
    suite = tmp_path / "three.yaml"
    suite.write_text(SUITE)
    out = run_suite(suite, "synth-cnn", out=tmp_path / "run", progress=False)
    assert out.exit_code == 0
    return tmp_path, out


def _values(results):
    return {(r["task"], r["metric"]): (r["value"], r["ci"]) for r in results["records"]}


def test_rescore_reproduces_the_run_without_the_model(finished_run, monkeypatch):
    tmp_path, first = finished_run

    def no_model(*args, **kwargs):
        raise AssertionError("rescore must not load a model")

    monkeypatch.setattr(runner, "make_model", no_model)
    again = rescore_run(tmp_path / "run", log=lambda m: None)
    assert again.out_dir == tmp_path / "run-rescored"
    assert _values(again.results) == _values(first.results)  # bootstrap included (same seed)
    assert again.results["model"]["fingerprint"] == first.results["model"]["fingerprint"]
    assert all(t["computed_samples"] == 0 for t in again.manifest["timings"].values())
    # new settings: more resamples change only the CIs
    more = rescore_run(tmp_path / "run", overrides={"bootstrap": 300}, log=lambda m: None)
    assert more.out_dir == tmp_path / "run-rescored-2"
    a, b = _values(first.results), _values(more.results)
    assert {k: v[0] for k, v in a.items()} == {k: v[0] for k, v in b.items()}
    assert any(a[k][1] != b[k][1] for k in a if a[k][1] is not None)


def test_rescore_with_another_suite_and_missing_predictions(finished_run, tmp_path):
    _, first = finished_run
    other = tmp_path / "other.yaml"
    other.write_text(SUITE.replace("open_classes: [fear, anger]", "open_classes: [fear], score: energy"))
    out = rescore_run(tmp_path / "run", suite_path=other, out=tmp_path / "o2", log=lambda m: None)
    m = {r["metric"]: r for r in out.results["records"] if r["task"] == "open-set"}
    assert m["auroc[open=fear]"]["conventions"]["score"] == "energy"
    missing = tmp_path / "missing.yaml"
    missing.write_text(SUITE.replace("dataset_args: {n: 150, domain: blur}", "dataset_args: {n: 150, domain: noise}"))
    with pytest.raises(ModelError, match=r"no stored predictions of synth-cnn on synth/test.*facebench run"):
        rescore_run(tmp_path / "run", suite_path=missing, out=tmp_path / "o3", log=lambda m: None)


def test_rescore_cli(finished_run, capsys):
    tmp_path, _ = finished_run
    assert main(["rescore", str(tmp_path / "run"), "--bootstrap", "0", "--quiet"]) == 0
    results = json.loads((tmp_path / "run-rescored" / "results.json").read_text())
    assert all(r["ci"] is None for r in results["records"])
    assert main(["rescore", str(tmp_path / "nowhere")]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_rescore_looks_up_the_precision_the_run_stored(finished_run, monkeypatch):
    """An fp32 run re-scored with a suite whose defaults ask for bf16 still finds its predictions:
    the precision is part of the store key, and the run's own precision is the one that was stored."""
    tmp_path, first = finished_run
    monkeypatch.setattr(runner, "make_model", lambda *a, **k: pytest.fail("rescore must not load a model"))
    bf16_suite = tmp_path / "three-bf16.yaml"
    bf16_suite.write_text(SUITE.replace("defaults: {bootstrap: 100, seed: 3}",
                                        "defaults: {bootstrap: 100, seed: 3, amp: bf16}"))
    again = rescore_run(tmp_path / "run", suite_path=bf16_suite, out=tmp_path / "bf16", log=lambda m: None)
    assert _values(again.results) == _values(first.results)
