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
    # compare reads the records' own direction; schema-1 records get theirs from the v1 upgrade's table
    from facebench.report.results import _v1_direction_and_unit as v1

    assert v1("accuracy")[0] and not v1("nll")[0]
    assert not v1("ece[bins=15]")[0] and not v1("accuracy_difference[between_groups]")[0]


# -- the gate's contract on hand-made results (no model): drops, tolerances and verdicts by hand ------------
FP = {"protocol": "p" * 16, "dataset": "d" * 16}


def _results(values: dict, ci: dict | None = None, conventions: dict | None = None) -> dict:
    """A minimal schema-valid results.json with one task 't' and headline records ``{metric: value}``."""
    records = [{"task": "t", "metric": m, "value": v, "headline": True, "ci": (ci or {}).get(m),
                "conventions": {"definition": "d", "bootstrap": "b1000", **(conventions or {})}}
               for m, v in values.items()]
    return {"schema_version": 1, "tasks": [{"name": "t", "status": "ok", "fingerprints": dict(FP)}],
            "records": records}


def _side(tmp_path, name: str, results: dict):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(results))
    return tmp_path / name


def test_drops_and_directions_by_hand(tmp_path):
    base = _side(tmp_path, "base", _results({"accuracy": 0.80, "nll": 0.50, "ece[bins=15]": 0.10}))
    run = _side(tmp_path, "run", _results({"accuracy": 0.785, "nll": 0.505, "ece[bins=15]": 0.08}))
    report = cmp.compare_runs(base, run)
    by = {c.metric: c for c in report.comparisons}
    # accuracy: 0.80 - 0.785 = 0.015 > 0.01; nll (lower is better): 0.505 - 0.50 = 0.005; ece: 0.08 - 0.10 = -0.02
    assert by["accuracy"].drop == pytest.approx(0.015) and by["accuracy"].verdict == "regression"
    assert by["nll"].drop == pytest.approx(0.005) and by["nll"].verdict == "ok"
    assert by["ece[bins=15]"].drop == pytest.approx(-0.02) and by["ece[bins=15]"].verdict == "improved"
    assert report.exit_code == 1 and report.reason.startswith("regression: 1 of 3 metrics: t/accuracy")
    assert cmp.compare_runs(base, run, tolerance=0.016).exit_code == 0
    # ci mode: half-width of [0.78, 0.82] is 0.02, times 0.5 = 0.01 < 0.015; times 1.0 = 0.02 > 0.015
    (base / "results.json").write_text(json.dumps(_results({"accuracy": 0.80}, ci={"accuracy": [0.78, 0.82]})))
    (run / "results.json").write_text(json.dumps(_results({"accuracy": 0.785})))
    half = cmp.compare_runs(base, run, tolerance=0.5, mode="ci")
    assert half.comparisons[0].tolerance == pytest.approx(0.01) and half.exit_code == 1
    assert cmp.compare_runs(base, run, tolerance=1.0, mode="ci").exit_code == 0


def test_nothing_judged_never_passes(tmp_path):
    assert cmp.CompareReport().exit_code == 2 and "nothing was compared" in cmp.CompareReport().reason
    base = _side(tmp_path, "base", _results({"accuracy": None}))  # NaN written as null
    run = _side(tmp_path, "run", _results({"accuracy": None}))
    report = cmp.compare_runs(base, run)
    assert report.exit_code == 2 and report.comparisons[0].note.startswith("baseline value is null")


def test_bootstrap_convention_counts_only_for_ci_tolerances(tmp_path):
    base = _side(tmp_path, "base", _results({"accuracy": 0.8}, ci={"accuracy": [0.7, 0.9]}))
    run = _side(tmp_path, "run", _results({"accuracy": 0.8}, conventions={"bootstrap": "b200"}))
    assert cmp.compare_runs(base, run).exit_code == 0  # the value does not depend on the resample count
    ci = cmp.compare_runs(base, run, mode="ci")
    assert ci.exit_code == 2 and "conventions differ: bootstrap" in ci.comparisons[0].note
    rules = cmp.compare_runs(base, run, tolerances={"acc*": {"ci": 1.0}})  # a per-metric ci rule counts too
    assert rules.exit_code == 2


def test_outputs_carry_verdict_and_reason(tmp_path):
    base = _side(tmp_path, "base", _results({"accuracy": 0.80, "macro_f1": 0.7}))
    run = _side(tmp_path, "run", _results({"accuracy": 0.15, "macro_f1": None}))
    report = cmp.compare_runs(base, run)
    assert report.exit_code == 2  # cannot-judge wins, the regression is still listed
    assert [c.verdict for c in report.comparisons] == ["regression", "cannot compare"]
    assert "regressions found meanwhile: t/accuracy" in report.reason
    data = json.loads(cmp.to_json(report))
    assert data["kind"] == cmp.COMPARE_KIND and data["verdict"] == "cannot compare" and data["exit_code"] == 2
    assert data["reason"] == report.reason
    xml = ET.fromstring(cmp.to_junit(report))
    assert (xml.get("failures"), xml.get("errors"), xml.get("tests")) == ("1", "1", "2")
    cases = {c.get("name"): c for c in xml.iter("testcase")}
    assert cases["accuracy"].find("failure") is not None and cases["macro_f1"].find("error") is not None
    props = {p.get("name"): p.get("value") for p in xml.iter("property")}
    assert props["verdict"] == "cannot compare" and props["reason"] == report.reason
    md = cmp.to_markdown(report)
    assert "Verdict: cannot compare (exit code 2)." in md and f"Reason: {report.reason}" in md
    # the CLI writes both atomically, and a rerun may replace its own outputs (not a user's file)
    argv = ["compare", str(run), "--baseline", str(base), "--json", str(tmp_path / "c.json"),
            "--junit", str(tmp_path / "c.xml")]
    assert main(argv) == 2 and main(argv) == 2
    assert json.loads((tmp_path / "c.json").read_text())["verdict"] == "cannot compare"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_baseline_marker_old_format_and_refusals(tmp_path):
    run = _side(tmp_path, "run", _results({"accuracy": 0.8}))
    out = cmp.write_baseline(run, tmp_path / "b.json")
    data = json.loads(out.read_text())
    assert data["kind"] == "facebench-baseline" and data["facebench_baseline"] == 1
    cmp.write_baseline(run, out)  # replacing its own baseline is fine
    data.pop("kind")  # a baseline written before the marker existed stays readable
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert cmp.compare_runs(tmp_path / "old.json", run).exit_code == 0
    (tmp_path / "notes.json").write_text('{"mine": true}')
    with pytest.raises(cmp.CompareError, match="not a facebench baseline"):
        cmp.write_baseline(run, tmp_path / "notes.json")
    assert (tmp_path / "notes.json").read_text() == '{"mine": true}'
    failed = _results({"accuracy": 0.8})
    failed["tasks"][0].update(status="failed", reason="boom")
    (run / "results.json").write_text(json.dumps(failed))
    with pytest.raises(cmp.CompareError, match="task 't' failed"):
        cmp.write_baseline(run, tmp_path / "b2.json")
    assert not (tmp_path / "b2.json").exists()


def test_gate_turns_every_input_failure_into_exit_2(tmp_path, monkeypatch):
    report = cmp.gate(tmp_path / "nope.json", tmp_path / "run")
    assert report.exit_code == 2 and report.reason.startswith("cannot compare: the baseline")
    assert "error" in cmp.to_junit(report) and json.loads(cmp.to_json(report))["exit_code"] == 2

    def broken(*args, **kwargs):
        raise KeyError("value")

    monkeypatch.setattr(cmp, "compare_runs", broken)  # an input shape no check foresaw: still fails closed
    report = cmp.gate(tmp_path / "a", tmp_path / "b")
    assert report.exit_code == 2 and "shape compare does not understand (KeyError" in report.reason


def test_attributes_and_pairs_are_part_of_what_is_compared(tmp_path):
    """Another pair list or corrected attributes over the same images leave the dataset fingerprint alone (the
    stored predictions stay valid) but are other data: the gate cannot judge (exit 2), also against a baseline
    that predates the annotations fingerprint; the same annotations pass."""
    def with_fps(**extra):
        results = _results({"accuracy": 0.80})
        results["tasks"][0]["fingerprints"].update(extra)
        return results

    base = _side(tmp_path, "base", with_fps(annotations="a" * 32, extra_annotations={"fit": "b" * 32}))
    same = _side(tmp_path, "same", with_fps(annotations="a" * 32, extra_annotations={"fit": "b" * 32}))
    pairs = _side(tmp_path, "pairs", with_fps(annotations="c" * 32, extra_annotations={"fit": "b" * 32}))
    fit = _side(tmp_path, "fit", with_fps(annotations="a" * 32, extra_annotations={"fit": "d" * 32}))
    old = _side(tmp_path, "old", with_fps())
    assert cmp.compare_runs(base, same).exit_code == 0
    report = cmp.compare_runs(base, pairs)
    assert report.exit_code == 2 and "annotations fingerprints differ" in report.problems[0]
    assert "extra_annotations fingerprints differ" in cmp.compare_runs(base, fit).problems[0]
    stale = cmp.compare_runs(old, same)
    assert stale.exit_code == 2 and len(stale.problems) == 1  # one line for both annotation fingerprints
    assert "records no fingerprint of the splits' attributes and pairs" in stale.problems[0]
    assert "regenerate the baseline" in stale.problems[0]
    assert cmp.compare_runs(old, old).exit_code == 0  # a split without attributes or pairs records none
