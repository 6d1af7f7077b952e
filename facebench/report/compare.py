"""``facebench compare``: a statistically honest regression gate against a stored baseline.

For every compared metric (the baseline's headline metrics by default) the **drop** is
``baseline - new`` for metrics where higher is better and ``new - baseline`` otherwise. A drop is
a regression when it exceeds the tolerance -- absolute (``tolerance``, default 0.01 = one point of
accuracy) or ``ci``: the half-width of the baseline's confidence interval times ``tolerance`` --
and, when both runs stored per-sample outcomes for the task (``samples.npz``, or embedded in a
baseline file), a one-sided paired test says the new run is worse: exact McNemar for accuracy, a
paired bootstrap for the other classification metrics, Holm-corrected across all paired
comparisons, at ``alpha``. Per-metric tolerances come from a YAML/JSON file of
``{metric glob: {abs: x} | {ci: k}}``.

Exit codes: 0 = no regression, 1 = regression, 2 = cannot compare (a baseline metric or task is
missing, a task failed, or protocol / dataset fingerprints differ: the numbers would not mean the
same thing).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from facebench.errors import ConfigError
from facebench.report.results import read_samples
from facebench.report.tables import higher_is_better

BASELINE_FORMAT = 1
PAIRED_METRICS = ("accuracy", "mean_class_accuracy", "macro_f1")
@dataclass
class Comparison:
    task: str
    metric: str
    baseline: float | None
    new: float | None
    tolerance: float
    drop: float | None = None
    test: str | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    verdict: str = "ok"  # ok | regression | improved | cannot compare
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CompareReport:
    comparisons: list[Comparison] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.problems or any(c.verdict == "cannot compare" for c in self.comparisons):
            return 2
        return 1 if any(c.verdict == "regression" for c in self.comparisons) else 0


# -- inputs ------------------------------------------------------------------------------------
def load_side(path: str | Path) -> tuple[dict, dict]:
    """(results, samples) from a baseline file, a results.json or a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise ConfigError(f"{path} does not exist; pass a run folder, its results.json or a baseline file "
                          f"written by `facebench baseline`.")
    data = json.loads(path.read_text())
    if data.get("facebench_baseline"):
        samples = {t: {k: np.asarray(v) for k, v in s.items()} for t, s in data.get("samples", {}).items()}
        return data["results"], samples
    if "records" not in data:
        raise ConfigError(f"{path} is neither a results.json nor a facebench baseline file.")
    return data, read_samples(path.parent / "samples.npz")


def write_baseline(run: str | Path, out: str | Path) -> Path:
    """Pack a run's results (without the per-task detail tables, which compare does not read) and its
    per-sample outcomes into one JSON baseline file."""
    results, samples = load_side(run)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = {**results, "tasks": [{k: v for k, v in t.items() if k != "details"} for t in results["tasks"]]}
    payload = {"facebench_baseline": BASELINE_FORMAT, "results": results,
               "samples": {t: {k: np.asarray(v).tolist() for k, v in s.items()} for t, s in samples.items()}}
    out.write_text(json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n")
    return out


def load_tolerances(path: str | Path | None) -> dict[str, dict]:
    if path is None:
        return {}
    from facebench.safe_yaml import load_file

    data = load_file(path) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) and set(v) <= {"abs", "ci"} and len(v) == 1
                                             for v in data.values()):
        raise ConfigError(f"{path}: expected {{metric glob: {{abs: x}} or {{ci: k}}}}, e.g. "
                          f"'accuracy*: {{abs: 0.02}}'.")
    return data


# -- the comparison ------------------------------------------------------------------------------
def _tolerance(metric: str, record: dict, default: float, mode: str, rules: dict) -> float:
    for pattern, rule in rules.items():
        if fnmatch.fnmatch(metric, pattern):
            mode, default = next(iter(rule.items()))
            mode = "abs" if mode == "abs" else "ci"
            break
    if mode == "ci":
        ci = record.get("ci")
        if not ci or None in ci:
            return 0.0  # no interval recorded: any drop counts (then the paired test, if any, decides)
        return float(default) * (ci[1] - ci[0]) / 2.0
    return float(default)


def _paired(metric: str, base_s: dict, new_s: dict, n_resamples: int, seed: int) -> tuple[str, float] | None:
    """(test name, one-sided p that the new run is worse), or None when no paired test applies."""
    from facebench.metrics import paired

    base_metric = metric.split("[")[0]
    if base_metric not in PAIRED_METRICS:
        return None
    ids_b, ids_n = np.asarray(base_s["ids"]).astype(str), np.asarray(new_s["ids"]).astype(str)
    if len(ids_b) != len(ids_n) or set(ids_b.tolist()) != set(ids_n.tolist()):
        return None
    order = {sid: i for i, sid in enumerate(ids_n.tolist())}
    idx = np.array([order[s] for s in ids_b.tolist()])
    y_true = np.asarray(base_s["y_true"])
    if not np.array_equal(y_true, np.asarray(new_s["y_true"])[idx]):
        return None  # different labels or label spaces: not the same test
    pred_b, pred_n = np.asarray(base_s["y_pred"]), np.asarray(new_s["y_pred"])[idx]
    if base_metric == "accuracy":
        res = paired.mcnemar_exact(pred_b == y_true, pred_n == y_true)
        return "exact McNemar (one-sided)", float(res["p_worse"])
    n_classes = int(max(y_true.max(), pred_b.max(), pred_n.max())) + 1
    res = paired.paired_bootstrap_classification(y_true, pred_b, pred_n, n_classes, base_metric,
                                                 n_resamples=n_resamples, seed=seed)
    return f"paired bootstrap ({n_resamples} resamples, one-sided)", float(res["p_worse"])


def compare_runs(baseline: str | Path, run: str | Path, tolerance: float = 0.01, mode: str = "abs",
                 metrics: str = "headline", alpha: float = 0.05, tolerances: dict | None = None,
                 n_resamples: int = 2000, seed: int = 0) -> CompareReport:
    from facebench.metrics.paired import holm

    if mode not in ("abs", "ci"):
        raise ConfigError(f"tolerance mode must be abs or ci; got {mode!r}")
    base, base_samples = load_side(baseline)
    new, new_samples = load_side(run)
    rules = tolerances or {}
    report = CompareReport()
    new_tasks = {t["name"]: t for t in new["tasks"]}
    base_tasks = {t["name"]: t for t in base["tasks"]}
    new_records = {(r["task"], r["metric"]): r for r in new["records"]}
    for name, bt in base_tasks.items():
        if bt.get("status") != "ok":
            continue
        nt = new_tasks.get(name)
        if nt is None:
            report.problems.append(f"task {name!r} is in the baseline but not in the run")
            continue
        if nt.get("status") != "ok":
            report.problems.append(f"task {name!r} did not run ({nt.get('status')}: {nt.get('reason', '')})")
            continue
        for key in ("protocol", "dataset"):
            fb, fn = bt.get("fingerprints", {}).get(key), nt.get("fingerprints", {}).get(key)
            if fb != fn:
                report.problems.append(f"task {name!r}: {key} fingerprints differ (baseline {fb}, run {fn}); the "
                                       f"numbers are not comparable -- same suite, data and protocol parameters?")
    bad_tasks = {p.split("'")[1] for p in report.problems if "'" in p}
    paired_rows = []
    for rec in base["records"]:
        if metrics == "headline" and not rec.get("headline"):
            continue
        if rec["task"] in bad_tasks or base_tasks.get(rec["task"], {}).get("status") != "ok":
            continue
        other = new_records.get((rec["task"], rec["metric"]))
        tol = _tolerance(rec["metric"], rec, tolerance, mode, rules)
        c = Comparison(rec["task"], rec["metric"], rec.get("value"), None if other is None else other.get("value"), tol)
        if other is None:
            c.verdict, c.note = "cannot compare", "metric missing in the run"
        elif c.baseline is None or c.new is None:
            c.verdict, c.note = ("ok", "undefined in both") if c.baseline == c.new else \
                ("cannot compare", "undefined on one side")
        else:
            sign = 1.0 if higher_is_better(rec["metric"]) else -1.0
            c.drop = sign * (c.baseline - c.new)
            if rec["task"] in base_samples and rec["task"] in new_samples:
                test = _paired(rec["metric"], base_samples[rec["task"]], new_samples[rec["task"]], n_resamples, seed)
                if test is not None:
                    c.test, c.p_value = test
                    paired_rows.append(c)
        report.comparisons.append(c)
    if paired_rows:
        adjusted = holm([c.p_value for c in paired_rows])
        for c, p in zip(paired_rows, adjusted):
            c.p_adjusted = float(p)
    for c in report.comparisons:
        if c.verdict != "ok" or c.drop is None:
            continue
        if c.drop > c.tolerance + 1e-12:
            if c.p_adjusted is not None and c.p_adjusted >= alpha:
                c.note = f"drop within noise (Holm-adjusted p = {c.p_adjusted:.3g} >= {alpha})"
            else:
                c.verdict = "regression"
        elif -c.drop > c.tolerance + 1e-12:
            c.verdict = "improved"
    return report


# -- outputs ------------------------------------------------------------------------------------
def _fmt(x, digits=4) -> str:
    return "n/a" if x is None else f"{x + 0.0:.{digits}f}".replace("-0.0000", "0.0000")


def to_markdown(report: CompareReport) -> str:
    lines = ["| task | metric | baseline | run | drop | tolerance | test | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in report.comparisons:
        lines.append(f"| {c.task} | {c.metric} | {_fmt(c.baseline)} | {_fmt(c.new)} | {_fmt(c.drop)} | "
                     f"{_fmt(c.tolerance)} | {c.test or '-'} | {_fmt(c.p_adjusted, 3)} | **{c.verdict}**"
                     f"{' (' + c.note + ')' if c.note else ''} |")
    verdict = {0: "no regression", 1: "REGRESSION", 2: "cannot compare"}[report.exit_code]
    lines += ["", f"Verdict: {verdict} (exit code {report.exit_code})."]
    lines += [f"- {p}" for p in report.problems]
    return "\n".join(lines) + "\n"


def to_json(report: CompareReport) -> str:
    return json.dumps({"exit_code": report.exit_code, "problems": report.problems,
                       "comparisons": [c.to_dict() for c in report.comparisons]}, indent=1, sort_keys=True) + "\n"


def to_junit(report: CompareReport, suite_name: str = "facebench-compare") -> str:
    """JUnit XML: one testcase per compared metric (failure = regression, error = cannot compare)."""
    failures = sum(c.verdict == "regression" for c in report.comparisons)
    errors = sum(c.verdict == "cannot compare" for c in report.comparisons) + len(report.problems)
    root = ET.Element("testsuite", name=suite_name, tests=str(len(report.comparisons) + len(report.problems)),
                      failures=str(failures), errors=str(errors))
    for c in report.comparisons:
        case = ET.SubElement(root, "testcase", classname=c.task, name=c.metric)
        message = (f"baseline {_fmt(c.baseline)}, run {_fmt(c.new)}, drop {_fmt(c.drop)} > tolerance "
                   f"{_fmt(c.tolerance)}" + (f", Holm p {c.p_adjusted:.3g}" if c.p_adjusted is not None else ""))
        if c.verdict == "regression":
            ET.SubElement(case, "failure", message=message).text = message
        elif c.verdict == "cannot compare":
            ET.SubElement(case, "error", message=c.note).text = c.note
    for i, problem in enumerate(report.problems):
        case = ET.SubElement(root, "testcase", classname="compare", name=f"comparable-{i}")
        ET.SubElement(case, "error", message=problem).text = problem
    return ET.tostring(root, encoding="unicode") + "\n"
