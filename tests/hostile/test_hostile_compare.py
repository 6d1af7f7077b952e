"""Hostile inputs to the regression gate (`facebench compare`) and to `facebench baseline`.

One real run of MINI_SUITE per module; every case copies its results.json (and samples.npz) or the
baseline packed from it into the test's folder and breaks one thing. The contract: exit 0 only when
everything was judged and nothing regressed, 1 on a regression, 2 (with a one-line "cannot compare"
reason, never a traceback) on anything the gate cannot judge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facebench.report.compare import write_baseline
from facebench.runner import run_suite
from tests.hostile._harness import MINI_SUITE, Case, check_case, write

SRC: dict[str, Path] = {}  # filled once per module by the `mini_run` fixture


@pytest.fixture(scope="module", autouse=True)
def mini_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-src")
    suite = write(root / "mini.yaml", MINI_SUITE)
    run_suite(suite, "synth-cnn", out=root / "a", cache_dir=root / "cache", progress=False, log=lambda _: None)
    write_baseline(root / "a", root / "base.json")
    SRC.update(run=root / "a", baseline=root / "base.json")
    yield
    SRC.clear()


# -- builders --------------------------------------------------------------------------------------
def run_copy(tmp: Path, edit=None, samples: bool = True, name: str = "run") -> Path:
    """A copy of the module's run folder under ``tmp/name``; ``edit(results)`` changes its results.json."""
    folder = tmp / name
    folder.mkdir()
    results = json.loads((SRC["run"] / "results.json").read_text())
    if edit:
        edit(results)
    (folder / "results.json").write_text(json.dumps(results))
    if samples:
        shutil.copy(SRC["run"] / "samples.npz", folder / "samples.npz")
    return folder


def baseline_copy(tmp: Path, edit=None, text: str | None = None) -> Path:
    """The module's baseline under ``tmp/base.json``; ``edit(data)`` changes it, ``text`` replaces it."""
    data = json.loads(SRC["baseline"].read_text())
    if edit:
        edit(data)
    path = tmp / "base.json"
    path.write_text(json.dumps(data) if text is None else text)
    return path


def record(results: dict, metric: str = "accuracy") -> dict:
    return next(r for r in results["records"] if r["metric"] == metric)


def compare(run_edit=None, base_edit=None, base_text=None, samples=True, extra=()):
    """setup(tmp) -> argv of `compare <run> --baseline <base>` with the given breakage."""
    def setup(tmp: Path) -> list[str]:
        run = run_copy(tmp, run_edit, samples=samples)
        base = baseline_copy(tmp, base_edit, base_text)
        return ["compare", str(run), "--baseline", str(base), *[a.format(tmp=tmp) for a in extra]]
    return setup


def in_results(fn):
    """Apply an edit of a results dict to a baseline's embedded results."""
    return lambda data: fn(data["results"])


def set_value(metric, value):
    return lambda res: record(res, metric).update(value=value)


def drop_accuracy(res):  # 65 points worse than the baseline
    record(res, "accuracy")["value"] -= 0.65


def set_task(**fields):
    return lambda res: res["tasks"][0].update(fields)


def set_fingerprint(key, value):
    return lambda res: res["tasks"][0]["fingerprints"].update({key: value})


def both(*fns):
    def edit(obj):
        for fn in fns:
            fn(obj)
    return edit


def raw_baseline(text: str):
    def setup(tmp: Path) -> list[str]:
        run = run_copy(tmp)
        (tmp / "base.json").write_bytes(text.encode("latin-1"))
        return ["compare", str(run), "--baseline", str(tmp / "base.json")]
    return setup


def raw_run(text: str):
    def setup(tmp: Path) -> list[str]:
        (tmp / "run").mkdir()
        (tmp / "run" / "results.json").write_text(text)
        return ["compare", str(tmp / "run"), "--baseline", str(baseline_copy(tmp))]
    return setup


def tolerances(text: str | None):
    def setup(tmp: Path) -> list[str]:
        argv = compare()(tmp)
        if text is not None:
            (tmp / "tol.yaml").write_text(text)
        return argv + ["--tolerances", str(tmp / "tol.yaml")]
    return setup


def user_file(name: str, flag: str, text: str = "my own notes, not facebench's\n"):
    def setup(tmp: Path) -> list[str]:
        (tmp / name).write_text(text)
        return compare()(tmp) + [flag, str(tmp / name)]
    return setup


def huge_labels(tmp: Path) -> list[str]:
    """Class index 10**6 in both sides' outcomes: the paired bootstrap must not build 10**12-cell matrices."""
    def edit(data):
        data["samples"]["clean"]["y_true"][0] = data["samples"]["clean"]["y_pred"][0] = 10 ** 6
    base = baseline_copy(tmp, edit)
    return ["compare", str(base), "--baseline", str(base)]


def corrupt_samples(tmp: Path) -> list[str]:
    argv = compare()(tmp)
    (tmp / "run" / "samples.npz").write_bytes(b"PK\x03\x04 truncated")
    return argv


def baseline_cmd(run_edit=None, out_text: str | None = None, raw: str | None = None):
    """setup(tmp) -> argv of `baseline <run> --out tmp/out.json`."""
    def setup(tmp: Path) -> list[str]:
        run = run_copy(tmp, run_edit)
        if raw is not None:
            (run / "results.json").write_text(raw)
        if out_text is not None:
            (tmp / "out.json").write_text(out_text)
        return ["baseline", str(run), "--out", str(tmp / "out.json")]
    return setup


def old_format(data):  # a baseline written before the "kind" marker existed
    data.pop("kind", None)


CASES = [
    # judged: exit 0 / 1
    Case("identical-run-passes", compare(), 0, "no regression"),
    Case("old-baseline-without-kind-marker-readable", compare(base_edit=old_format), 0, "no regression"),
    Case("65-points-worse-is-regression", compare(drop_accuracy, samples=False), 1, "regression: 1 of 2"),
    Case("regression-junit-written", compare(drop_accuracy, samples=False, extra=("--junit", "{tmp}/c.xml")), 1,
         "regression", ("c.xml",)),
    Case("json-output-written", compare(extra=("--json", "{tmp}/c.json")), 0, "no regression", ("c.json",)),
    # unreadable / malformed / wrong shape
    Case("baseline-missing", lambda tmp: ["compare", str(run_copy(tmp)), "--baseline", str(tmp / "nope.json")], 2,
         "cannot compare: the baseline"),
    Case("run-missing", lambda tmp: ["compare", str(tmp / "nope"), "--baseline", str(baseline_copy(tmp))], 2,
         "does not exist"),
    Case("run-folder-without-results", lambda tmp: (tmp / "empty").mkdir() or
         ["compare", str(tmp / "empty"), "--baseline", str(baseline_copy(tmp))], 2, "has no results.json"),
    Case("baseline-zero-bytes", raw_baseline(""), 2, "is empty"),
    Case("baseline-truncated-json", raw_baseline('{"facebench_baseline": 1, "results": {"rec'), 2,
         "not valid JSON"),
    Case("baseline-binary", raw_baseline("\xff\xfe\x00garbage"), 2, "not UTF-8"),
    Case("baseline-json-list", raw_baseline("[1, 2, 3]"), 2, "is a JSON list"),
    Case("baseline-json-number", raw_baseline("0.81"), 2, "is a JSON float"),
    Case("baseline-unrelated-object", raw_baseline('{"hello": "world"}'), 2, "neither a results.json"),
    Case("baseline-deeply-nested", raw_baseline("[" * 200000 + "]" * 200000), 2, "nested too deeply"),
    Case("baseline-wrong-schema-version", compare(base_edit=in_results(lambda r: r.update(schema_version=99))), 2,
         "schema_version 99"),
    Case("baseline-unknown-format", compare(base_edit=lambda d: d.update(facebench_baseline=2)), 2,
         "baseline format 2"),
    Case("baseline-results-not-object", compare(base_edit=lambda d: d.update(results=[])), 2, "no results object"),
    Case("baseline-empty", compare(base_edit=in_results(lambda r: r.update(tasks=[], records=[]))), 2,
         "lists no task"),
    Case("baseline-no-records-key", compare(base_edit=in_results(lambda r: r.pop("records"))), 2,
         "no 'tasks' and 'records' lists"),
    Case("baseline-record-without-metric", compare(base_edit=in_results(lambda r: r["records"][0].pop("metric"))),
         2, "no 'task' and 'metric'"),
    Case("baseline-samples-malformed",
         compare(base_edit=lambda d: d["samples"]["clean"]["y_true"].pop()), 2, "per-sample outcomes"),
    Case("baseline-samples-negative-label",
         compare(base_edit=lambda d: d["samples"]["clean"]["y_pred"].__setitem__(0, -1)), 2, "non-negative integers"),
    Case("baseline-samples-float-labels",
         compare(base_edit=lambda d: d["samples"]["clean"]["y_true"].__setitem__(0, 0.5)), 2, "malformed"),
    Case("huge-class-index-no-memory-blowup", huge_labels, 0, "no regression"),  # baseline against itself
    Case("run-duplicate-task", compare(lambda r: r["tasks"].append(dict(r["tasks"][0]))), 2, "lists a task twice"),
    Case("run-samples-corrupt", corrupt_samples, 2, "is corrupt"),
    Case("run-results-json-list", raw_run("[]"), 2, "is a JSON list"),
    # non-finite values (results.json writes NaN/inf as null)
    Case("baseline-null-vs-65-worse", compare(drop_accuracy, in_results(set_value("accuracy", None)), samples=False),
         2, "baseline value is null"),
    Case("baseline-nan-literal", compare(base_text=None, base_edit=in_results(set_value("accuracy", float("nan")))),
         2, "baseline value is nan"),
    Case("baseline-inf", compare(base_edit=in_results(set_value("accuracy", float("inf")))), 2, "is inf"),
    Case("baseline-string-value", compare(base_edit=in_results(set_value("accuracy", "0.81"))), 2, "is a str"),
    Case("baseline-bool-value", compare(base_edit=in_results(set_value("accuracy", True))), 2, "is a bool"),
    Case("run-null", compare(set_value("mean_class_accuracy", None)), 2, "run value is null"),
    Case("run-minus-infinity", compare(set_value("accuracy", float("-inf"))), 2, "run value is -inf"),
    # tasks that did not run
    Case("baseline-task-failed", compare(base_edit=in_results(set_task(status="failed", reason="boom"))), 2,
         "did not run in the baseline (failed: boom)"),
    Case("baseline-task-skipped", compare(base_edit=in_results(set_task(status="skipped"))), 2,
         "did not run in the baseline (skipped"),
    Case("run-task-failed", compare(set_task(status="failed", reason="CUDA out of memory")), 2,
         "did not run (failed: CUDA out of memory)"),
    Case("run-task-skipped", compare(set_task(status="skipped", reason="no data")), 2, "did not run (skipped"),
    # missing metrics, no overlap
    Case("run-metric-missing", compare(lambda r: r["records"].remove(record(r))), 2, "metric missing in the run"),
    Case("baseline-no-headline", compare(base_edit=in_results(lambda r: [x.update(headline=False)
                                                                         for x in r["records"]])), 2,
         "no headline metric"),
    Case("no-task-in-common", compare(both(set_task(name="other"), lambda r: [x.update(task="other")
                                                                               for x in r["records"]])), 2,
         "no task in common"),
    Case("regression-and-cannot-compare", compare(both(drop_accuracy, set_value("mean_class_accuracy", None)),
                                                  samples=False), 2, "regressions found meanwhile: clean/accuracy"),
    # fingerprints and conventions
    Case("protocol-fingerprint-differs", compare(set_fingerprint("protocol", "0" * 16)), 2,
         "protocol fingerprints differ"),
    Case("dataset-fingerprint-differs", compare(set_fingerprint("dataset", "0" * 16)), 2,
         "dataset fingerprints differ"),
    Case("fingerprint-missing", compare(lambda r: r["tasks"][0]["fingerprints"].pop("protocol")), 2,
         "no protocol fingerprint"),
    Case("conventions-float-noise-passes", compare(lambda r: record(r)["conventions"].update(margin=1.0 + 1e-7),
                                                   base_edit=in_results(lambda r: record(r)["conventions"].update(
                                                       margin=1.0))), 0, "no regression"),
    Case("conventions-number-differs", compare(lambda r: record(r)["conventions"].update(bins=10),
                                               base_edit=in_results(lambda r: record(r)["conventions"].update(
                                                   bins=15))), 2, "conventions differ: bins is 15 in the baseline"),
    Case("sample-count-differs", compare(lambda r: record(r).update(n=100)), 2,
         "computed on 120 samples in the baseline, 100 in the run"),
    Case("run-left-out-bad-images", compare(set_task(bad_images={"n": 3, "of": 120, "files": []})), 2,
         "unreadable images left out (on_bad_image: skip) differ"),
    Case("conventions-differ", compare(lambda r: record(r)["conventions"].update(definition="macro")), 2,
         "conventions differ: definition"),
    # settings
    Case("tolerances-file-missing", tolerances(None), 2, "cannot read the tolerances file"),
    Case("tolerances-bad-yaml", tolerances("accuracy: {abs: [unclosed\n"), 2, "not valid YAML"),
    Case("tolerances-wrong-shape", tolerances("- accuracy\n"), 2, "expected {metric glob"),
    Case("tolerances-negative", tolerances("accuracy: {abs: -0.5}\n"), 2, "must be a finite number >= 0"),
    Case("tolerances-nan", tolerances("accuracy: {abs: .nan}\n"), 2, "must be a finite number >= 0"),
    Case("tolerance-negative", compare(extra=("--tolerance", "-0.1")), 2, "--tolerance is -0.1"),
    Case("tolerance-nan", compare(extra=("--tolerance", "nan")), 2, "--tolerance is nan"),
    Case("alpha-above-one", compare(extra=("--alpha", "1.5")), 2, "strictly between 0 and 1"),
    Case("alpha-zero", compare(extra=("--alpha", "0")), 2, "strictly between 0 and 1"),
    # outputs
    Case("json-folder-missing", compare(extra=("--json", "{tmp}/no/such/c.json")), 2, "does not exist; create it"),
    Case("junit-is-folder", lambda tmp: (tmp / "out").mkdir() or compare()(tmp) + ["--junit", str(tmp / "out")], 2,
         "is a folder"),
    Case("json-over-user-file", user_file("notes.json", "--json"), 2, "not a facebench compare output"),
    Case("junit-over-user-file", user_file("report.xml", "--junit"), 2, "not overwriting"),
    Case("json-over-file-naming-the-marker", user_file("notes.json", "--json", '{"note": "facebench-compare"}'), 2,
         "not a facebench compare output"),
    Case("json-over-own-output", user_file("c.json", "--json", '{"kind": "facebench-compare"}'), 0, "no regression",
         ("c.json",)),
    # `facebench baseline`
    Case("baseline-cmd-ok", baseline_cmd(), 0, "wrote", ("out.json",)),
    Case("baseline-cmd-replaces-own-baseline", baseline_cmd(out_text=json.dumps({"kind": "facebench-baseline"})),
         0, "wrote", ("out.json",)),
    Case("baseline-cmd-task-failed", baseline_cmd(set_task(status="failed", reason="boom")), 2,
         "cannot make a baseline: task 'clean' failed (boom)"),
    Case("baseline-cmd-task-skipped", baseline_cmd(set_task(status="skipped", reason="no data")), 2,
         "cannot make a baseline"),
    Case("baseline-cmd-headline-null", baseline_cmd(set_value("accuracy", None)), 2, "not a finite number"),
    Case("baseline-cmd-malformed-results", baseline_cmd(raw='{"records": [}'), 2, "not valid JSON"),
    Case("baseline-cmd-wrong-schema", baseline_cmd(lambda r: r.update(schema_version="2")), 2, "schema_version"),
    Case("baseline-cmd-refuses-user-file", baseline_cmd(out_text="# my notes\n"), 2, "is not a facebench baseline"),
    Case("baseline-cmd-refuses-user-json", baseline_cmd(out_text='{"results": 1}'), 2, "not overwriting"),
    Case("baseline-cmd-out-is-folder", lambda tmp: (tmp / "out.json").mkdir() or baseline_cmd()(tmp), 2,
         "is a folder"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_compare(case, tmp_path):
    check_case(case, tmp_path)


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
