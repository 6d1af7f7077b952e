"""facebench compare: identical re-run passes (exit 0), an injected 2-point accuracy drop is a
regression (exit 1), incomparable runs exit 2; Markdown, JSON and JUnit outputs."""

import json
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from facebench.cli import main
from facebench.engine.store import PredictionStore
from facebench.report import compare as cmp
from facebench.runner import run_suite

SUITE = """name: gate
defaults: {bootstrap: 200}
tasks:
  - name: closed
    dataset: synth
    split: test
    dataset_args: {n: 1500}
    protocol: closed_set
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("gate")
    os.environ["FACEBENCH_CACHE"] = str(root / "cache")
    suite = root / "gate.yaml"
    suite.write_text(SUITE)
    first = run_suite(suite, "synth-cnn", out=root / "a", progress=False)
    again = run_suite(suite, "synth-cnn", out=root / "b", progress=False)
    # the same model with 2% of its correct predictions turned wrong, replayed through the predictions adapter
    key = first.manifest["store_keys"]["closed"]
    preds = PredictionStore(root / "cache").load(key)
    logits = np.asarray(preds.outputs["expression"], dtype=np.float64).copy()
    samples = np.load(root / "a" / "samples.npz")
    y_true, y_pred = samples["closed/y_true"], samples["closed/y_pred"]
    order = {sid: i for i, sid in enumerate(preds.ids.tolist())}
    correct = np.flatnonzero(y_true == y_pred)
    rng = np.random.default_rng(0)
    flip = rng.choice(correct, size=int(round(0.02 * len(y_true))), replace=False)
    ids = samples["closed/ids"]
    for i in flip:
        row = order[str(ids[i])]
        logits[row, np.argmax(logits[row])] = -1e3  # the former top class loses
    from facebench.registry import MODELS

    labels = list(MODELS.get("synth-cnn")().heads["expression"].labels)
    np.savez(root / "worse.npz", ids=preds.ids, logits=logits, classes=np.array(labels))
    worse = run_suite(suite, "predictions", {"file": str(root / "worse.npz")}, out=root / "c", progress=False)
    cmp.write_baseline(root / "a", root / "baseline.json")
    return root, first, worse


def test_identical_rerun_passes_and_drop_is_a_regression(runs, capsys):
    root, first, worse = runs
    report = cmp.compare_runs(root / "baseline.json", root / "b")
    assert report.exit_code == 0 and all(c.verdict == "ok" for c in report.comparisons)
    acc = next(c for c in report.comparisons if c.metric == "accuracy")
    assert acc.drop == 0 and acc.test.startswith("exact McNemar") and acc.p_adjusted == 1.0
    drop = cmp.compare_runs(root / "baseline.json", root / "c")
    assert drop.exit_code == 1
    acc = next(c for c in drop.comparisons if c.metric == "accuracy")
    assert acc.verdict == "regression" and acc.drop == pytest.approx(0.02, abs=1e-3)
    assert acc.p_adjusted < 1e-4  # 30 discordant pairs, all against the new run
    # a looser tolerance lets it pass; the CLI returns the exit code and writes JSON and JUnit
    assert cmp.compare_runs(root / "baseline.json", root / "c", tolerance=0.03).exit_code == 0
    code = main(["compare", str(root / "c"), "--baseline", str(root / "baseline.json"),
                 "--json", str(root / "cmp.json"), "--junit", str(root / "cmp.xml")])
    assert code == 1
    out = capsys.readouterr().out
    assert "| closed | accuracy |" in out and "REGRESSION" in out
    data = json.loads((root / "cmp.json").read_text())
    assert data["exit_code"] == 1
    xml = ET.parse(root / "cmp.xml").getroot()
    assert xml.tag == "testsuite" and int(xml.get("failures")) >= 1
    assert any(case.find("failure") is not None for case in xml.iter("testcase"))


def test_cannot_compare_exits_2(runs, tmp_path):
    root, first, _ = runs
    suite = tmp_path / "other.yaml"
    suite.write_text(SUITE.replace("protocol: closed_set", "protocol: closed_set\n    params: {ece_bins: 10}"))
    other = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    report = cmp.compare_runs(root / "baseline.json", other.out_dir)
    assert report.exit_code == 2 and "protocol fingerprints differ" in report.problems[0]
    results = json.loads((root / "b" / "results.json").read_text())
    results["records"] = [r for r in results["records"] if r["metric"] != "accuracy"]
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "results.json").write_text(json.dumps(results))
    report = cmp.compare_runs(root / "baseline.json", tmp_path / "missing")
    assert report.exit_code == 2
    assert any(c.verdict == "cannot compare" and c.metric == "accuracy" for c in report.comparisons)


def test_ci_tolerance_and_rules(runs):
    root, _, _ = runs
    results = json.loads((root / "baseline.json").read_text())["results"]
    rec = next(r for r in results["records"] if r["metric"] == "accuracy")
    half = (rec["ci"][1] - rec["ci"][0]) / 2
    report = cmp.compare_runs(root / "baseline.json", root / "c", tolerance=1.0, mode="ci")
    acc = next(c for c in report.comparisons if c.metric == "accuracy")
    assert acc.tolerance == pytest.approx(half)
    rules = {"accuracy": {"abs": 0.5}}
    acc = next(c for c in cmp.compare_runs(root / "baseline.json", root / "c", tolerances=rules).comparisons
               if c.metric == "accuracy")
    assert acc.tolerance == 0.5 and acc.verdict == "ok"
    assert cmp.higher_is_better("accuracy") and not cmp.higher_is_better("nll")
    assert not cmp.higher_is_better("ece[bins=15]") and not cmp.higher_is_better("accuracy_difference[between_groups]")
