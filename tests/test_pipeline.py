"""The run's four steps (facebench.pipeline), each run and checked alone, and chained by hand against run_suite."""

import json

import pytest

from facebench.errors import EXIT_NOTHING_EVALUATED, EXIT_OK, EXIT_TASK_FAILED, ConfigError
from facebench.pipeline import evaluate as evaluate_step
from facebench.pipeline import execute as execute_step
from facebench.pipeline import plan as plan_step
from facebench.pipeline import write as write_step
from facebench.records import SplitRef, TaskOutcome
from facebench.runner import make_model, run_suite
from facebench.suite import load_suite

SUITE = """\
name: steps
defaults: {batch_size: 64, bootstrap: 50, shard_size: 64, missing_data: skip}
tasks:
  - {name: closed, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 120}}
  - {name: strict, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 120},
     params: {unsupported_classes: error}}
  - {name: absent, dataset: rafdb, split: test, protocol: closed_set, path: NOWHERE}
"""


def _logs():
    lines = []
    return lines, lines.append


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "steps.yaml"
    path.write_text(SUITE.replace("NOWHERE", str(tmp_path / "no-such-folder")))
    return load_suite(path)


def test_plan_checks_data_and_skips_absent_tasks_without_reading_images(suite, monkeypatch):
    lines, log = _logs()

    def no_load(*args, **kwargs):
        raise AssertionError("plan_tasks must not load a split")

    monkeypatch.setattr("facebench.data.synthetic.SynthFaces.load", no_load)
    planned = plan_step.plan_tasks(suite, log)
    assert [p.status for p in planned] == ["ok", "ok", "skipped"]
    assert "rafdb" in planned[2].reason or "not found" in planned[2].reason.lower()
    assert any(line.startswith("skip absent") for line in lines)
    assert planned[0].task.ref == SplitRef("synth", "test", None, {"n": 120})


def test_split_work_lists_a_shared_split_once(suite):
    planned = plan_step.plan_tasks(suite, _logs()[1])
    screened = plan_step.screen(planned, "error", _logs()[1])
    assert len(screened) == 1  # two tasks, one split: loaded and scanned once
    adapter = make_model("synth-cnn", {})
    plan_step.resolve_heads(planned, adapter, suite.name, "synth-cnn", _logs()[1])
    work = plan_step.split_work(planned, screened)
    (unit,) = work.values()
    assert unit.predictions and unit.heads == {planned[0].head} and len(unit.dataset) == 120


def test_resolve_heads_skips_a_task_whose_head_the_model_lacks_and_refuses_when_none_can_run(suite):
    adapter = make_model("synth-cnn", {})
    planned = plan_step.plan_tasks(suite, _logs()[1])[:1]
    planned[0].protocol.params.head = "age"
    with pytest.raises(ConfigError, match="no task of suite 'steps' can run with model 'synth-cnn'"):
        plan_step.resolve_heads(planned, adapter, suite.name, "synth-cnn", _logs()[1])
    assert planned[0].status == "skipped"


def _chain(suite, tmp_path, log):
    planned = plan_step.plan_tasks(suite, log)
    screened = plan_step.screen(planned, "error", log)
    adapter = make_model("synth-cnn", {})
    plan_step.resolve_heads(planned, adapter, suite.name, "synth-cnn", log)
    work = plan_step.split_work(planned, screened)
    from facebench.engine.store import PredictionStore

    store = PredictionStore(tmp_path / "cache")
    execute_step.execute(work, adapter, store, execute_step.inference_settings(suite.defaults, False), "error", log)
    return planned, work, adapter


def test_the_steps_chained_by_hand_give_run_suites_numbers(suite, tmp_path):
    lines, log = _logs()
    planned, work, adapter = _chain(suite, tmp_path, log)
    (unit,) = work.values()
    assert unit.report.computed_samples == 120 and len(unit.preds.ids) == 120
    evaluation = evaluate_step.evaluate_tasks(planned, work, adapter, "synth-cnn", suite.defaults, log)
    assert evaluation.exit_code == EXIT_OK
    assert [o.status for o in evaluation.outcomes] == ["ok", "ok", "skipped"]
    results = write_step.results_document(suite, adapter.describe(), evaluation)
    run = run_suite(suite.file, "synth-cnn", out=tmp_path / "run", cache_dir=tmp_path / "cache", progress=False,
                    log=log)
    assert run.results["records"] == results["records"] and run.results["tasks"] == results["tasks"]
    assert run.manifest["timings"]["closed"]["reused"] is True  # the store filled by the hand-run execute
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["tasks"] == results["tasks"]


def test_evaluate_is_pure_and_a_failing_protocol_fails_only_its_task(suite, tmp_path, monkeypatch):
    lines, log = _logs()
    planned, work, adapter = _chain(suite, tmp_path, log)

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(planned[1].protocol, "evaluate", broken)
    before = {k: (len(u.dataset), u.preds.ids.copy()) for k, u in work.items()}
    evaluation = evaluate_step.evaluate_tasks(planned, work, adapter, "synth-cnn", suite.defaults, log)
    assert evaluation.exit_code == EXIT_TASK_FAILED
    closed, strict, absent = evaluation.outcomes
    assert closed.status == "ok" and strict.status == "failed" and strict.reason == "RuntimeError: boom"
    assert {r["task"] for r in evaluation.records} == {"closed"}
    assert any("task strict failed: RuntimeError: boom" in line for line in lines)
    assert {k: (len(u.dataset), u.preds.ids.tolist()) for k, u in work.items()} == \
        {k: (n, ids.tolist()) for k, (n, ids) in before.items()}  # nothing in the work was changed



def test_a_value_outside_its_own_interval_is_warned_about(suite, tmp_path, monkeypatch):
    """A biased estimate can fall outside its own percentile interval (ECE on few samples): the task's warnings
    and the log say so; values inside their interval, intervals absent and non-finite ends add nothing."""
    from facebench.protocols.base import MetricRecord, TaskResult

    lines, log = _logs()
    planned, work, adapter = _chain(suite, tmp_path, log)
    def record(metric, value, ci):
        return MetricRecord(metric, value, ci, 120, higher_is_better=False, unit="score")

    records = [record("ece[bins=15]", 0.0401, (0.0434, 0.0921)),  # the case seen on a real run
               record("accuracy", 0.8, (0.7, 0.9)), record("nll", 0.5, None),
               record("gap", 0.2, (float("nan"), 0.1)), record("mae", 0.3, (0.1, 0.3))]
    monkeypatch.setattr(planned[0].protocol, "evaluate", lambda ctx: TaskResult(records, {}, ["own"]))
    closed = evaluate_step.evaluate_tasks(planned, work, adapter, "synth-cnn", suite.defaults, log).outcomes[0]
    assert closed.warnings[0] == "own" and len(closed.warnings) == 2
    assert closed.warnings[1].startswith("ece[bins=15] = 0.0401 lies outside its own interval [0.0434, 0.0921]")
    assert any("warning (closed): ece[bins=15] = 0.0401 lies outside" in line for line in lines)

def test_nothing_evaluated_is_exit_3(suite):
    planned = plan_step.plan_tasks(suite, _logs()[1])
    for item in planned:
        item.skip("not today")
    lines, log = _logs()
    evaluation = evaluate_step.evaluate_tasks(planned, {}, None, "m", suite.defaults, log)
    assert evaluation.exit_code == EXIT_NOTHING_EVALUATED and not evaluation.records
    assert lines and lines[0].startswith("nothing was evaluated")


def test_task_outcome_rows_by_status():
    task = {"name": "t", "dataset": "synth", "split": "test", "protocol": "closed_set", "params": {},
            "dataset_args": {}, "path": None}
    assert TaskOutcome(task, "skipped", "no data").to_dict() == {**task, "status": "skipped", "reason": "no data"}
    failed = TaskOutcome(task, "failed", "ValueError: x", head="expression", fingerprints={"model": "m"}, n=3)
    assert failed.to_dict() == {**task, "status": "failed", "head": "expression", "fingerprints": {"model": "m"},
                                "n": 3, "reason": "ValueError: x"}
    ok = TaskOutcome(task, "ok", head="expression", n=3, bad_images={"count": 1}, details={"a": 1},
                     warnings=("w",))
    row = ok.to_dict()
    assert list(row)[-5:] == ["fingerprints", "n", "bad_images", "details", "warnings"]
    assert row["warnings"] == ["w"] and "extra_splits" not in row and "reason" not in row
    with pytest.raises(AssertionError):
        TaskOutcome(task, "done")


def test_run_suite_is_short():
    import ast
    import inspect

    from facebench import runner

    tree = ast.parse(inspect.getsource(runner))
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert lengths["run_suite"] <= 60
