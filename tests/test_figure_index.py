"""Figures drawn once and reused (issue 18 item 4): ``figures/index.json`` keys each task's figures by their inputs
and the figure code; a re-run and ``facebench report`` copy what is unchanged and draw the rest, the same bytes
either way, and the drawing is shared with worker processes."""

import hashlib
import json
import math
import sys
import warnings

import numpy as np
import pytest

from facebench.report import figure_index as FI
from tests.test_figures import _hand_built_tasks

CHOSEN = ("cs", "fair", "lf")  # 6 figures: three protocols, one with a None inside its scatter


def _results(names=CHOSEN) -> dict:
    chosen = [t for t in _hand_built_tasks() if t[0]["name"] in names]
    return {"tasks": [row for row, _ in chosen], "records": [r for _, recs in chosen for r in recs]}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder) -> dict:
    return {p.name: _sha(p) for p in sorted(folder.iterdir())}


@pytest.fixture
def drawn(monkeypatch):
    """The figure kinds drawn in this process, in order (workers=1 keeps all drawing here)."""
    calls = []
    real = FI._draw_here

    def counting(units):
        calls.extend(f"{row['name']}-{kind}" for row, _, _, kind, _ in units)
        return real(units)

    monkeypatch.setattr(FI, "_draw_here", counting)
    return calls


def test_an_unchanged_run_copies_every_figure_and_draws_none(tmp_path, drawn):
    first = FI.run_figures(_results(), tmp_path / "a", workers=1)
    assert len(drawn) == 6 and len(first) == 12  # cs's three, fair's one, lf's accuracy and auroc scatters
    index = json.loads((tmp_path / "a" / "figures" / FI.INDEX).read_text())
    assert index["version"] == FI.INDEX_VERSION and set(index["tasks"]) == set(CHOSEN)
    assert [f["name"] for f in index["tasks"]["cs"]["files"]] == [p.name for p in first[:6]]
    drawn.clear()
    again = FI.run_figures(_results(), tmp_path / "b", reuse_from=tmp_path / "a", workers=1)
    assert drawn == [] and [p.name for p in again] == [p.name for p in first]
    assert _files(tmp_path / "b" / "figures") == _files(tmp_path / "a" / "figures")
    assert "matplotlib" in sys.modules  # (drawn above; the report test checks a process that never loads it)


def test_a_changed_task_a_tampered_file_and_new_figure_code_are_drawn_again(tmp_path, drawn, monkeypatch):
    FI.run_figures(_results(), tmp_path / "a", workers=1)
    changed = _results()
    changed["records"] = [{**r, "value": 0.85} if r["task"] == "fair" else r for r in changed["records"]]
    drawn.clear()
    FI.run_figures(changed, tmp_path / "b", reuse_from=tmp_path / "a", workers=1)
    assert drawn == ["fair-group_bars"]
    (tmp_path / "b" / "figures" / "cs-reliability.pdf").write_bytes(b"%PDF edited")
    drawn.clear()
    FI.run_figures(changed, tmp_path / "c", reuse_from=tmp_path / "b", workers=1)
    assert drawn == ["cs-confusion_matrix", "cs-per_class_recall", "cs-reliability"]
    assert _files(tmp_path / "c" / "figures") == {**_files(tmp_path / "b" / "figures"),
                                                  "cs-reliability.pdf": _sha(tmp_path / "a" / "figures" /
                                                                             "cs-reliability.pdf"),
                                                  FI.INDEX: _sha(tmp_path / "c" / "figures" / FI.INDEX)}
    monkeypatch.setattr(FI, "code_version", lambda: "another figure code")
    drawn.clear()
    FI.run_figures(changed, tmp_path / "d", reuse_from=tmp_path / "c", workers=1)
    assert len(drawn) == 6


def test_an_absent_or_unreadable_index_draws_everything(tmp_path, drawn):
    FI.run_figures(_results(("fair",)), tmp_path / "a", workers=1)
    (tmp_path / "a" / "figures" / FI.INDEX).write_text("{not json")
    assert FI.read_index(tmp_path / "a" / "figures") == {} and FI.read_index(tmp_path / "nowhere") == {}
    drawn.clear()
    FI.run_figures(_results(("fair",)), tmp_path / "b", reuse_from=tmp_path / "a", workers=1)
    assert drawn == ["fair-group_bars"]


def test_the_key_of_a_task_in_memory_is_the_key_of_its_results_json_row():
    from facebench.report.results import _clean_nans, to_json

    row = {"name": "t", "protocol": "fairness", "status": "ok", "params": {"by": ("race",)},
           "details": {"groups": [{"group": "A", "value": np.float32(0.75), "n": np.int64(3)},
                                  {"group": "B", "value": math.nan, "n": 0}]}}
    records = [{"task": "t", "metric": "accuracy", "value": np.float64(0.1) + 0.2, "ci": (np.nan, 0.4)}]
    stored = json.loads(to_json(_clean_nans({"row": row, "records": records})))
    assert FI.task_key(row, records) == FI.task_key(stored["row"], stored["records"])
    assert FI.task_key(row, records) != FI.task_key(row, [{**records[0], "value": 0.3000001}])


def test_workers_draw_the_same_bytes_in_the_same_order_and_pass_warnings_on(tmp_path):
    row, records = _hand_built_tasks()[0]
    results = _results(("fair", "lf"))
    results["tasks"].append({**row, "name": "bad", "details": {**row["details"], "confusion_matrix": [[1, 2]]}})
    with warnings.catch_warnings(record=True) as one:
        warnings.simplefilter("always")
        serial = FI.run_figures(results, tmp_path / "one", workers=1)
    with warnings.catch_warnings(record=True) as two:
        warnings.simplefilter("always")
        parallel = FI.run_figures(results, tmp_path / "two", workers=2)
    assert [p.name for p in parallel] == [p.name for p in serial]
    assert _files(tmp_path / "two" / "figures") == _files(tmp_path / "one" / "figures")
    messages = lambda caught: sorted(str(w.message) for w in caught if "skipped" in str(w.message))  # noqa: E731
    assert messages(two) == messages(one) and "figure 'confusion_matrix' of task 'bad'" in messages(one)[0]


def test_a_failing_worker_has_its_share_drawn_here(tmp_path, monkeypatch):
    import subprocess

    def failing(units, job):
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    monkeypatch.setattr(FI, "_start_worker", failing)
    monkeypatch.setattr(FI, "_IMPORT_COST", 0.0)  # the worker gets a share of the three figures
    with pytest.warns(UserWarning, match="a figure worker failed"):
        paths = FI.run_figures(_results(("cs",)), tmp_path / "a", workers=2)
    assert [p.name for p in paths] == [f"cs-{k}.{e}" for k in ("confusion_matrix", "per_class_recall", "reliability")
                                       for e in ("png", "pdf")]


def test_shares_balance_the_expected_drawing_time(monkeypatch):
    units = [({}, [], None, kind) for kind in ("confusion_matrix", "heatmap", "reliability", "roc", "oscr")]
    here, worker = FI._shares(units, [0.0, 1.0])
    assert sorted(here + worker) == list(range(5))
    cost = lambda share: sum(FI._COST.get(units[i][3], 1.0) for i in share)  # noqa: E731
    assert abs(cost(here) - (cost(worker) + 1.0)) <= max(FI._COST.values())  # balanced to within a figure
    assert FI._shares(units[:1], [FI._IMPORT_COST, 0.0]) == [[], [0]]  # a warm worker draws it, no import here
    assert FI._worker_count(None, 1) == 1 and FI._worker_count(3, 2) == 2 and FI._worker_count(1, 9) == 1
    assert FI._worker_count(None, 1, warm=True) == 2 and FI._worker_count(1, 9, warm=True) == 1
    assert FI._start_loads(3, True) == [0.0, FI._JOB_COST, FI._IMPORT_COST + FI._WORKER_START]  # figures.py loaded
    monkeypatch.delitem(sys.modules, "facebench.report.figures")
    assert FI._start_loads(2, False) == [FI._IMPORT_COST, FI._IMPORT_COST + FI._WORKER_START]


def _warm_worker():
    assert FI.warm_up() is True and FI.warm_up() is True  # one at a time
    assert len(FI._WARM) == 1
    return FI._WARM[0]


def test_a_warm_worker_draws_its_share_with_the_same_bytes(tmp_path):
    results = _results()
    serial = FI.run_figures(results, tmp_path / "one", workers=1)
    proc = _warm_worker()
    shared = FI.run_figures(results, tmp_path / "two")
    assert [p.name for p in shared] == [p.name for p in serial]
    assert _files(tmp_path / "two" / "figures") == _files(tmp_path / "one" / "figures")
    assert proc.returncode == 0 and not FI._WARM  # it drew a share and ended


def test_a_warm_worker_nothing_takes_ends_and_a_rerun_folder_gets_none(tmp_path):
    proc = _warm_worker()
    assert FI.run_figures({"tasks": [], "records": []}, tmp_path / "empty") == []
    assert proc.returncode is not None and proc.returncode != 0 and not FI._WARM  # ended, not waited for
    proc = _warm_worker()
    FI.run_figures(_results(("fair",)), tmp_path / "here", workers=1)  # all drawn in this process
    assert proc.returncode is not None and not FI._WARM
    assert FI.warm_up(tmp_path / "here") is False and not FI._WARM  # its figures/index.json: likely reused




SUITE = """name: figs
defaults: {bootstrap: 20}
tasks:
  - {name: fair, dataset: synth, split: test, dataset_args: {n: 80}, protocol: fairness, params: {by: [skin_tone]}}
"""


def test_a_forced_rerun_and_the_report_reuse_the_runs_figures(tmp_path, monkeypatch):
    import subprocess

    from facebench.runner import run_suite

    suite = tmp_path / "figs.yaml"
    suite.write_text(SUITE)
    run_suite(suite, "synth-cnn", out=tmp_path / "run", progress=False, log=lambda m: None, figures=True)
    before = _files(tmp_path / "run" / "figures")

    def refuse(units):
        raise AssertionError(f"drawn again: {units}")

    monkeypatch.setattr(FI, "_draw_units", lambda units, workers: refuse(units) if units else [])
    logs = []
    run_suite(suite, "synth-cnn", out=tmp_path / "run", force=True, progress=False, log=logs.append, figures=True)
    assert not any("figures could not be drawn" in line for line in logs)
    assert _files(tmp_path / "run" / "figures") == before
    code = ("import sys; from facebench.cli import main; rc = main(['report', sys.argv[1], '--out', sys.argv[2]]); "
            "assert 'matplotlib' not in sys.modules, 'matplotlib loaded'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), str(tmp_path / "rep")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    copied = _files(tmp_path / "rep" / "figures" / "synth-cnn")
    assert {k: v for k, v in copied.items() if k != FI.INDEX} == {k: v for k, v in before.items() if k != FI.INDEX}
    assert any((tmp_path / "rep" / "site").rglob("*.png"))
