"""``facebench compare``: a statistically honest regression gate against a stored baseline.

For every compared metric (the baseline's headline metrics by default) the **drop** is
``baseline - new`` for metrics where higher is better and ``new - baseline`` otherwise (the direction
every record declares in ``higher_is_better``; baseline and run must agree on it and on the unit). A drop is
a regression when it exceeds the tolerance -- absolute (``tolerance``, default 0.01 = one point of
accuracy) or ``ci``: the half-width of the baseline's confidence interval times ``tolerance`` --
and, when both runs stored per-sample outcomes for the task (``samples.npz``, or embedded in a
baseline file), a one-sided paired test says the new run is worse: exact McNemar for accuracy, a
paired bootstrap for the other classification metrics, Holm-corrected across all paired
comparisons, at ``alpha``. Per-metric tolerances come from a YAML/JSON file of
``{metric glob: {abs: x} | {ci: k}}``.

The gate fails closed. Exit codes:

- 0: every compared metric is a finite number on both sides, every baseline task ran (status ``ok``)
  on both sides, protocol and dataset fingerprints (with the other splits' and, where recorded, the
  attributes' and pairs') and metric conventions agree, and no drop exceeds its tolerance;
- 1: at least one regression, and everything else judged;
- 2: cannot compare -- an unreadable, missing, malformed or empty input, a wrong schema or baseline
  format, a failed or skipped task on either side, a metric missing or not finite (``null``, NaN,
  inf) on either side, different fingerprints, conventions, sample counts or left-out unreadable
  images (``on_bad_image: skip``), no task in common, nothing compared,
  or invalid settings (tolerance < 0, alpha outside (0, 1), a bad tolerances file). Cannot-judge wins
  over regression; the regressions found are still listed.

Conventions are compared key by key (numbers within a relative 1e-4); ``bootstrap`` and
``confidence`` (which change a record's interval, not its value) are compared only where the
tolerance is CI-based.
"""

from __future__ import annotations

import fnmatch
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from facebench.errors import EXIT_CANNOT_JUDGE, EXIT_COMPARE_OK, EXIT_REGRESSION, CompareError
from facebench.records import UNITS
from facebench.report.results import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, read_results, read_samples

BASELINE_FORMAT = 1
BASELINE_KIND = "facebench-baseline"  # marker of a baseline file; older ones carry only "facebench_baseline"
COMPARE_KIND = "facebench-compare"  # marker of the --json / --junit outputs (so a rerun may replace them)
PAIRED_METRICS = ("accuracy", "mean_class_accuracy", "macro_f1")
CI_ONLY_CONVENTIONS = ("bootstrap", "confidence")
MAX_PAIRED_CLASSES = 64  # the paired bootstrap holds n_resamples confusion matrices of this many classes squared
MAX_INPUT_BYTES = 1 << 30
RUN_HINT = "pass a run folder written by `facebench run`, its results.json or a file written by `facebench baseline`"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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
        """2 when anything could not be judged (or nothing was compared), else 1 on a regression, else 0."""
        if self.problems or not self.comparisons or any(c.verdict == "cannot compare" for c in self.comparisons):
            return EXIT_CANNOT_JUDGE
        return EXIT_REGRESSION if self.regressions else EXIT_COMPARE_OK

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regression"]

    @property
    def verdict(self) -> str:
        return {0: "no regression", 1: "regression", 2: "cannot compare"}[self.exit_code]

    @property
    def reason(self) -> str:
        """One line: why the verdict is what it is."""
        regs = ", ".join(f"{c.task}/{c.metric} dropped {_fmt(c.drop)} > {_fmt(c.tolerance)}"
                         for c in self.regressions[:3]) + (" ..." if len(self.regressions) > 3 else "")
        if self.exit_code == 2:
            issues = self.problems + [f"task {c.task!r}, metric {c.metric!r}: {c.note}"
                                      for c in self.comparisons if c.verdict == "cannot compare"]
            issues = issues or ["nothing was compared"]
            text = f"cannot compare: {issues[0]}" + (f" (and {len(issues) - 1} more)" if len(issues) > 1 else "")
            if self.regressions:
                text += f"; regressions found meanwhile: {regs}"
            return _one_line(text)
        if self.exit_code == 1:
            return _one_line(f"regression: {len(self.regressions)} of {len(self.comparisons)} metrics: {regs}")
        return f"no regression: {len(self.comparisons)} metrics compared, all finite and within tolerance"


# -- inputs ------------------------------------------------------------------------------------
def _read_json(path: Path, what: str):
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise CompareError(f"{what} is larger than {MAX_INPUT_BYTES >> 20} MiB; not a facebench file")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CompareError(f"{what} is not UTF-8 text, so not a results.json or a baseline; {RUN_HINT}") from None
    except OSError as err:
        raise CompareError(f"cannot read {what} ({err.strerror or err}); check its permissions") from None
    if not text.strip():
        raise CompareError(f"{what} is empty; {RUN_HINT}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CompareError(f"{what} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                           f"was it truncated or edited? Regenerate it") from None
    except RecursionError:
        raise CompareError(f"{what} is nested too deeply to be a facebench file") from None


def is_baseline(data) -> bool:
    """Whether parsed JSON is a facebench baseline (the ``kind`` marker, or an older file's format key)."""
    return isinstance(data, dict) and (data.get("kind") == BASELINE_KIND or "facebench_baseline" in data)


def _check_results(results, what: str) -> None:
    """Raise CompareError unless ``results`` has the shape of a results.json this facebench writes."""
    if not isinstance(results, dict):
        raise CompareError(f"{what} holds no results object; {RUN_HINT}")
    if results.get("schema_version") != SCHEMA_VERSION:  # read_results has upgraded the older ones
        raise CompareError(f"{what} has schema_version {results.get('schema_version')!r}, this facebench reads "
                           f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}; rerun (or rescore) it with this version")
    tasks, records = results.get("tasks"), results.get("records")
    if not isinstance(tasks, list) or not isinstance(records, list):
        raise CompareError(f"{what} has no 'tasks' and 'records' lists; {RUN_HINT}")
    if not tasks:
        raise CompareError(f"{what} is empty: it lists no task")
    names = []
    for t in tasks:
        if not (isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("status"), str)):
            raise CompareError(f"{what}: a task entry has no 'name' and 'status' strings: {str(t)[:80]}")
        names.append(t["name"])
    if len(set(names)) != len(names):
        raise CompareError(f"{what} lists a task twice ({sorted(n for n in set(names) if names.count(n) > 1)[0]!r})")
    keys = set()
    for r in records:
        if not (isinstance(r, dict) and isinstance(r.get("task"), str) and isinstance(r.get("metric"), str)):
            raise CompareError(f"{what}: a record has no 'task' and 'metric' strings: {str(r)[:80]}")
        if not isinstance(r.get("higher_is_better"), bool) or r.get("unit") not in UNITS:
            raise CompareError(_one_line(f"{what}: record {r['metric']!r} of task {r['task']!r} has no valid "
                                         f"'higher_is_better' (true/false) and 'unit' ({', '.join(UNITS)}); "
                                         f"so which way is worse is unknown; {RUN_HINT}"))
        if (r["task"], r["metric"]) in keys:
            raise CompareError(f"{what} has two records of metric {r['metric']!r} for task {r['task']!r}")
        keys.add((r["task"], r["metric"]))


def _is_labels(a: np.ndarray) -> bool:
    return a.size == 0 or (np.issubdtype(a.dtype, np.integer) and a.min() >= 0)


def _check_samples(samples, what: str) -> dict:
    """Per-task outcomes as arrays; raise CompareError unless each has equal-length 1-d ids, y_true,
    y_pred with non-negative integer labels."""
    if not isinstance(samples, dict):
        raise CompareError(f"{what}: 'samples' is not an object of tasks")
    out = {}
    for task, s in samples.items():
        try:
            arrays = {k: np.asarray(s[k]) for k in ("ids", "y_true", "y_pred")}
        except (KeyError, TypeError, ValueError, IndexError):
            raise CompareError(f"{what}: the per-sample outcomes of task {task!r} lack ids, y_true or y_pred") from None
        shapes = {a.shape for a in arrays.values()}
        if len(shapes) != 1 or arrays["ids"].ndim != 1 or not all(_is_labels(arrays[k]) for k in ("y_true", "y_pred")):
            raise CompareError(f"{what}: the per-sample outcomes of task {task!r} are malformed (ids, y_true and "
                               f"y_pred must be equal-length lists, labels non-negative integers)")
        out[task] = arrays
    return out


def load_side(path: str | Path, role: str = "run") -> tuple[dict, dict]:
    """(results, samples) from a baseline file, a results.json or a run folder; CompareError (message
    without the 'cannot compare' prefix) when it is missing, unreadable or of the wrong shape."""
    path = Path(path)
    if path.is_dir():
        if not (path / "results.json").is_file():
            raise CompareError(f"the {role} folder {path} has no results.json; {RUN_HINT}")
        path = path / "results.json"
    elif not path.exists():
        raise CompareError(f"the {role} {path} does not exist; {RUN_HINT}")
    what = f"the {role} {path}"
    data = _read_json(path, what)
    if not isinstance(data, dict):
        raise CompareError(f"{what} is a JSON {type(data).__name__}, not a results.json or a baseline; {RUN_HINT}")
    if is_baseline(data):
        if data.get("facebench_baseline") != BASELINE_FORMAT:
            raise CompareError(f"{what} has baseline format {data.get('facebench_baseline')!r}, this facebench "
                               f"reads {BASELINE_FORMAT}; regenerate it with `facebench baseline`")
        results = read_results(data.get("results"))  # an older schema is upgraded
        _check_results(results, what)
        return results, _check_samples(data.get("samples", {}), what)
    if not any(k in data for k in ("records", "tasks", "schema_version")):
        raise CompareError(f"{what} is neither a results.json nor a facebench baseline; {RUN_HINT}")
    data = read_results(data)  # an older schema is upgraded
    _check_results(data, what)
    try:
        samples = read_samples(path.parent / "samples.npz")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        raise CompareError(f"{path.parent / 'samples.npz'} (the {role}'s per-sample outcomes) is corrupt; "
                           f"rescore the run to rewrite it, or remove it to compare without paired tests") from None
    return data, _check_samples(samples, what)


def _finite_or_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def _write(path: Path, text: str, what: str) -> None:
    from facebench.atomic import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise CompareError(f"cannot write {what} {path} ({err.strerror or err})") from None


def write_baseline(run: str | Path, out: str | Path) -> Path:
    """Pack a run's results (without the per-task detail tables, which compare does not read) and its
    per-sample outcomes into one JSON baseline file, marked ``"kind": "facebench-baseline"``. Refuses
    (CompareError) a run that is malformed, whose tasks did not all run or whose headline metrics are not
    finite, and an ``out`` that exists and is not a facebench baseline."""
    out = Path(out)
    try:
        results, samples = load_side(run, "run")
    except CompareError as err:
        raise CompareError(f"cannot make a baseline: {err}") from None
    for t in results["tasks"]:
        if t["status"] != "ok":
            raise CompareError(_one_line(
                f"cannot make a baseline: task {t['name']!r} {t['status']} ({t.get('reason') or 'no reason given'});"
                f" a baseline must come from a run whose tasks all ran"))
    for r in results["records"]:
        if r.get("headline") and not _is_finite(r.get("value")):
            raise CompareError(f"cannot make a baseline: headline metric {r['metric']!r} of task {r['task']!r} is "
                               f"{_describe(r.get('value'))}, not a finite number; a gate on it could never pass")
    _check_baseline_target(out)
    results = {**results, "tasks": [{k: v for k, v in t.items() if k != "details"} for t in results["tasks"]]}
    payload = {"kind": BASELINE_KIND, "facebench_baseline": BASELINE_FORMAT, "results": _finite_or_none(results),
               "samples": {t: {k: v.tolist() for k, v in s.items()} for t, s in samples.items()}}
    _write(out, json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n", "the baseline")
    return out


def _check_baseline_target(out: Path) -> None:
    if out.is_dir():
        raise CompareError(f"cannot make a baseline: --out {out} is a folder; name a .json file")
    if out.exists() or out.is_symlink():
        try:
            ours = is_baseline(_read_json(out, str(out)))
        except CompareError:
            ours = False
        if not ours:
            raise CompareError(f"cannot make a baseline: {out} exists and is not a facebench baseline (no \"kind\": "
                               f"\"{BASELINE_KIND}\" marker); not overwriting it -- choose another --out or move it")
    if out.parent.exists() and not out.parent.is_dir():
        raise CompareError(f"cannot make a baseline: {out.parent} is not a folder")


def load_tolerances(path: str | Path | None) -> dict[str, dict]:
    """Per-metric rules ``{metric glob: {abs: x} | {ci: k}}`` from YAML/JSON; CompareError when the file
    is missing, unreadable or malformed, or a value is not a finite number >= 0."""
    if path is None:
        return {}
    import yaml

    from facebench.safe_yaml import YamlError
    from facebench.safe_yaml import load as load_yaml

    path = Path(path)
    try:
        if path.stat().st_size > 1 << 20:
            raise CompareError(f"cannot compare: the tolerances file {path} is larger than 1 MiB")
        data = load_yaml(path.read_bytes(), str(path)) or {}  # bounded: aliases, depth, size (facebench.safe_yaml)
    except YamlError as err:
        where = f"line {err.line}: " if err.line else ""
        raise CompareError(_one_line(f"cannot compare: the tolerances file {path} is not valid YAML/JSON "
                                     f"({where}{err.problem[:200]})")) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CompareError(f"cannot compare: cannot read the tolerances file {path} "
                           f"({getattr(err, 'strerror', None) or err})") from None
    except (yaml.YAMLError, RecursionError) as err:
        raise CompareError(_one_line(f"cannot compare: the tolerances file {path} is not valid YAML/JSON "
                                     f"({str(err)[:200]})")) from None
    _check_rules(data, str(path))
    return data


def _check_rules(rules, where: str) -> None:
    ok = isinstance(rules, dict) and all(
        isinstance(k, str) and isinstance(v, dict) and len(v) == 1 and set(v) <= {"abs", "ci"}
        for k, v in rules.items())
    if not ok:
        raise CompareError(f"cannot compare: {where}: expected {{metric glob: {{abs: x}} or {{ci: k}}}}, e.g. "
                           f"'accuracy*: {{abs: 0.02}}'")
    for pattern, rule in rules.items():
        value = next(iter(rule.values()))
        if not _is_finite(value) or value < 0:
            raise CompareError(f"cannot compare: {where}: the tolerance for {pattern!r} is {value!r}; it must be a "
                               f"finite number >= 0")


def _check_settings(tolerance, mode, metrics, alpha, rules, n_resamples) -> None:
    if not _is_finite(tolerance) or tolerance < 0:
        raise CompareError(f"cannot compare: --tolerance is {tolerance!r}; it must be a finite number >= 0")
    if mode not in ("abs", "ci"):
        raise CompareError(f"cannot compare: tolerance mode must be abs or ci; got {mode!r}")
    if metrics not in ("headline", "all"):
        raise CompareError(f"cannot compare: metrics must be headline or all; got {metrics!r}")
    if not _is_finite(alpha) or not 0 < alpha < 1:
        raise CompareError(f"cannot compare: --alpha is {alpha!r}; it must lie strictly between 0 and 1")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise CompareError(f"cannot compare: n_resamples must be a positive integer; got {n_resamples!r}")
    _check_rules(rules, "tolerances")


# -- the comparison ------------------------------------------------------------------------------
def _is_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _describe(x) -> str:
    if x is None:
        return "null (undefined, or not finite when written)"
    if isinstance(x, float):
        return str(x)  # nan, inf, -inf
    return f"a {type(x).__name__}"


def _tolerance(metric: str, record: dict, default: float, mode: str, rules: dict) -> tuple[float, str]:
    """(tolerance, effective mode) for one baseline record: the first matching rule wins."""
    for pattern, rule in rules.items():
        if fnmatch.fnmatch(metric, pattern):
            mode, default = next(iter(rule.items()))
            break
    if mode == "ci":
        ci = record.get("ci")
        if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(_is_finite(v) for v in ci):
            return 0.0, mode  # no interval recorded: any drop counts (then the paired test, if any, decides)
        return float(default) * (ci[1] - ci[0]) / 2.0, mode
    return float(default), mode


def _same_convention(a, b) -> bool:
    """Equal, or numbers within a relative 1e-4 (a protocol may record a computed number, e.g. a margin,
    beside its conventions: float noise across machines is not a different convention)."""
    if _is_finite(a) and _is_finite(b):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-12)
    return a == b


def _convention_diff(base, new, mode: str) -> str | None:
    """None when the conventions agree (``bootstrap``/``confidence`` only count in ci mode), else why not."""
    base, new = base if isinstance(base, dict) else {}, new if isinstance(new, dict) else {}
    ignore = () if mode == "ci" else CI_ONLY_CONVENTIONS
    diffs = [k for k in sorted(set(base) | set(new), key=str)
             if k not in ignore and not _same_convention(base.get(k), new.get(k))]
    if not diffs:
        return None
    k = diffs[0]
    return (f"conventions differ: {k} is {base.get(k)!r} in the baseline, {new.get(k)!r} in the run"
            + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""))


def _paired(metric: str, base_s: dict, new_s: dict, n_resamples: int, seed: int) -> tuple[str, float] | None:
    """(test name, one-sided p that the new run is worse), or None when no paired test applies."""
    from facebench.metrics import paired

    base_metric = metric.split("[")[0]
    if base_metric not in PAIRED_METRICS:
        return None
    ids_b, ids_n = np.asarray(base_s["ids"]).astype(str), np.asarray(new_s["ids"]).astype(str)
    if len(ids_b) == 0 or len(ids_b) != len(ids_n) or len(set(ids_b.tolist())) != len(ids_b) \
            or set(ids_b.tolist()) != set(ids_n.tolist()):
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
    if n_classes > MAX_PAIRED_CLASSES:
        return None  # its resampled confusion matrices would not fit in memory: the tolerance alone decides
    res = paired.paired_bootstrap_classification(y_true, pred_b, pred_n, n_classes, base_metric,
                                                 n_resamples=n_resamples, seed=seed)
    return f"paired bootstrap ({n_resamples} resamples, one-sided)", float(res["p_worse"])


def _left_out(task: dict) -> dict:
    """{split role ('' = the task's own split): number of unreadable images left out}, zeros omitted."""
    def count(row) -> int:
        bad = row.get("bad_images") if isinstance(row, dict) else None
        return bad.get("n", 0) if isinstance(bad, dict) else 0
    extra = task.get("extra_splits")
    counts = {"": count(task), **{role: count(row) for role, row in (extra if isinstance(extra, dict) else {}).items()}}
    return {role: n for role, n in counts.items() if n}


def _task_problems(name: str, bt: dict, nt: dict | None) -> list[str]:
    """Why task ``name`` cannot be compared (empty when it can)."""
    if bt["status"] != "ok":
        return [_one_line(f"task {name!r} did not run in the baseline ({bt['status']}: {bt.get('reason') or '-'}); "
                          f"regenerate the baseline from a run whose tasks all ran")]
    if nt is None:
        return [f"task {name!r} is in the baseline but not in the run"]
    if nt["status"] != "ok":
        return [_one_line(f"task {name!r} did not run ({nt['status']}: {nt.get('reason') or '-'})")]
    problems = []
    if _left_out(bt) != _left_out(nt):
        problems.append(f"task {name!r}: unreadable images left out (on_bad_image: skip) differ: baseline "
                        f"{_left_out(bt) or 'none'}, run {_left_out(nt) or 'none'}; the numbers cover different "
                        f"samples")
    fb_all, fn_all = bt.get("fingerprints"), nt.get("fingerprints")
    fb_all, fn_all = fb_all if isinstance(fb_all, dict) else {}, fn_all if isinstance(fn_all, dict) else {}
    annotations = ("annotations", "extra_annotations")
    if not any(k in fb_all for k in annotations) and any(k in fn_all for k in annotations):
        problems.append(_one_line(f"task {name!r}: the baseline records no fingerprint of the splits' attributes "
                                  f"and pairs (written before facebench recorded them), so comparability is "
                                  f"unknown -- regenerate the baseline"))
        fn_all = {k: v for k, v in fn_all.items() if k not in annotations}
    for key in ("protocol", "dataset", "extra_datasets", *annotations):
        fb, fn = fb_all.get(key), fn_all.get(key)
        if key in ("protocol", "dataset") and (fb is None or fn is None):
            side = "baseline" if fb is None else "run"
            problems.append(f"task {name!r}: the {side} records no {key} fingerprint, so comparability is unknown")
        elif fb != fn:
            problems.append(_one_line(f"task {name!r}: {key} fingerprints differ (baseline {fb}, run {fn}); the "
                                      f"numbers are not comparable -- same suite, data and protocol parameters?"))
    return problems


def _kind(rec: dict) -> str:
    return f"{'higher' if rec['higher_is_better'] else 'lower'} is better, unit {rec['unit']}"


def _compare_record(rec: dict, other: dict | None, tolerance: float, mode: str, rules: dict) -> Comparison:
    """One baseline record against its run counterpart: verdict ok or cannot compare, with the drop."""
    tol, eff_mode = _tolerance(rec["metric"], rec, tolerance, mode, rules)
    bv, nv = rec.get("value"), None if other is None else other.get("value")
    c = Comparison(rec["task"], rec["metric"], float(bv) if _is_finite(bv) else None,
                   float(nv) if _is_finite(nv) else None, tol)
    if other is None:
        c.verdict, c.note = "cannot compare", "metric missing in the run"
    elif not _is_finite(bv):
        c.verdict, c.note = "cannot compare", f"baseline value is {_describe(bv)}"
    elif not _is_finite(nv):
        c.verdict, c.note = "cannot compare", f"run value is {_describe(nv)}"
    elif (diff := _convention_diff(rec.get("conventions"), other.get("conventions"), eff_mode)) is not None:
        c.verdict, c.note = "cannot compare", _one_line(diff)
    elif (rec["higher_is_better"], rec["unit"]) != (other["higher_is_better"], other["unit"]):
        c.verdict, c.note = "cannot compare", _one_line(
            f"the records disagree on the metric's kind: the baseline's is {_kind(rec)}, the run's {_kind(other)}")
    elif _is_finite(rec.get("n")) and _is_finite(other.get("n")) and rec["n"] != other["n"]:
        c.verdict, c.note = "cannot compare", f"computed on {rec['n']} samples in the baseline, {other['n']} in the run"
    else:
        sign = 1.0 if rec["higher_is_better"] else -1.0  # the direction the records declare, never the name
        c.drop = sign * (c.baseline - c.new)
    return c


def compare_runs(baseline: str | Path, run: str | Path, tolerance: float = 0.01, mode: str = "abs",
                 metrics: str = "headline", alpha: float = 0.05, tolerances: dict | None = None,
                 n_resamples: int = 2000, seed: int = 0) -> CompareReport:
    """Judge ``run`` against ``baseline``. Raises CompareError ('cannot compare: ...') when an input or
    a setting cannot be used at all; problems found per task or metric go into the report (exit 2)."""
    from facebench.metrics.paired import holm

    rules = tolerances or {}
    _check_settings(tolerance, mode, metrics, alpha, rules, n_resamples)
    try:
        base, base_samples = load_side(baseline, "baseline")
        new, new_samples = load_side(run, "run")
    except CompareError as err:
        raise CompareError(f"cannot compare: {err}") from None
    report = CompareReport()
    base_tasks = {t["name"]: t for t in base["tasks"]}
    new_tasks = {t["name"]: t for t in new["tasks"]}
    if not set(base_tasks) & set(new_tasks):
        report.problems.append(_one_line(f"no task in common: the baseline has {sorted(base_tasks)}, the run "
                                         f"has {sorted(new_tasks)}; is it the same suite?"))
        return report
    new_records = {(r["task"], r["metric"]): r for r in new["records"]}
    paired_rows = []
    for name, bt in base_tasks.items():
        problems = _task_problems(name, bt, new_tasks.get(name))
        report.problems += problems
        if problems:
            continue
        selected = [r for r in base["records"] if r["task"] == name and (metrics == "all" or r.get("headline"))]
        if not selected:
            report.problems.append(f"task {name!r}: the baseline has no {'headline ' * (metrics == 'headline')}"
                                   f"metric to compare")
        for rec in selected:
            c = _compare_record(rec, new_records.get((name, rec["metric"])), tolerance, mode, rules)
            if c.drop is not None and name in base_samples and name in new_samples:
                test = _paired(rec["metric"], base_samples[name], new_samples[name], n_resamples, seed)
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


def gate(baseline: str | Path, run: str | Path, tolerances_path: str | Path | None = None, **settings) -> CompareReport:
    """``compare_runs`` that never raises on bad input: what cannot be judged becomes a report whose
    exit code is 2 and whose reason says why (the command line's entry point)."""
    try:
        return compare_runs(baseline, run, tolerances=load_tolerances(tolerances_path), **settings)
    except CompareError as err:
        return CompareReport(problems=[_one_line(str(err)).removeprefix("cannot compare: ")])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:  # fail closed, never a traceback
        return CompareReport(problems=[_one_line(f"the inputs have a shape compare does not understand "
                                                 f"({type(err).__name__}: {err}); please report this")])


# -- outputs ------------------------------------------------------------------------------------
def _fmt(x, digits=4) -> str:
    return "n/a" if x is None else f"{x + 0.0:.{digits}f}".replace("-0.0000", "0.0000")


def _cell(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(report: CompareReport) -> str:
    lines = ["| task | metric | baseline | run | drop | tolerance | test | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in report.comparisons:
        lines.append(f"| {_cell(c.task)} | {_cell(c.metric)} | {_fmt(c.baseline)} | {_fmt(c.new)} | {_fmt(c.drop)} | "
                     f"{_fmt(c.tolerance)} | {c.test or '-'} | {_fmt(c.p_adjusted, 3)} | **{c.verdict}**"
                     f"{' (' + _cell(c.note) + ')' if c.note else ''} |")
    verdict = {0: "no regression", 1: "REGRESSION", 2: "cannot compare"}[report.exit_code]
    lines += ["", f"Verdict: {verdict} (exit code {report.exit_code}).", f"Reason: {report.reason}"]
    lines += [f"- {_one_line(p)}" for p in report.problems]
    return "\n".join(lines) + "\n"


def to_json(report: CompareReport) -> str:
    return json.dumps(_finite_or_none({
        "kind": COMPARE_KIND, "exit_code": report.exit_code, "verdict": report.verdict, "reason": report.reason,
        "problems": report.problems, "comparisons": [c.to_dict() for c in report.comparisons]}),
        indent=1, sort_keys=True, allow_nan=False) + "\n"


def to_junit(report: CompareReport, suite_name: str = "facebench-compare") -> str:
    """JUnit XML: one testcase per compared metric (failure = regression, error = cannot compare), one
    error testcase per problem; properties carry the verdict and its reason."""
    problems = report.problems or ([] if report.comparisons else ["nothing was compared"])
    errors = sum(c.verdict == "cannot compare" for c in report.comparisons) + len(problems)
    root = ET.Element("testsuite", name=suite_name, tests=str(len(report.comparisons) + len(problems)),
                      failures=str(len(report.regressions)), errors=str(errors))
    props = ET.SubElement(root, "properties")
    for name, value in (("kind", COMPARE_KIND), ("verdict", report.verdict), ("exit_code", str(report.exit_code)),
                        ("reason", report.reason)):
        ET.SubElement(props, "property", name=name, value=value)
    for c in report.comparisons:
        case = ET.SubElement(root, "testcase", classname=c.task, name=c.metric)
        message = (f"baseline {_fmt(c.baseline)}, run {_fmt(c.new)}, drop {_fmt(c.drop)} > tolerance "
                   f"{_fmt(c.tolerance)}" + (f", Holm p {c.p_adjusted:.3g}" if c.p_adjusted is not None else ""))
        if c.verdict == "regression":
            ET.SubElement(case, "failure", message=message).text = message
        elif c.verdict == "cannot compare":
            ET.SubElement(case, "error", message=c.note).text = c.note
    for i, problem in enumerate(problems):
        case = ET.SubElement(root, "testcase", classname="compare", name=f"comparable-{i}")
        ET.SubElement(case, "error", message=problem).text = problem
    return ET.tostring(root, encoding="unicode") + "\n"


def check_output_path(path: str | Path, flag: str) -> Path:
    """Refuse (CompareError) an output path whose folder does not exist, that is a folder, or that holds
    a file which is not an earlier facebench compare output (so it is never overwritten)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CompareError(f"--{flag} {path}: the folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise CompareError(f"--{flag} {path} is a folder; name a file")
    if path.exists() or path.is_symlink():
        if not _is_compare_output(path, flag):
            raise CompareError(f"--{flag} {path} exists and is not a facebench compare output; not overwriting "
                               f"it -- choose another path or move it")
    return path


def _is_compare_output(path: Path, flag: str) -> bool:
    """Whether ``path`` holds an earlier output of ``facebench compare --json`` / ``--junit``."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16).decode("utf-8", "replace")
        if flag == "junit":
            return f'<property name="kind" value="{COMPARE_KIND}" />' in head
        if path.stat().st_size > 1 << 26:
            return False
        return json.loads(path.read_text(encoding="utf-8")).get("kind") == COMPARE_KIND
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def write_outputs(report: CompareReport, json_path: str | Path | None = None,
                  junit_path: str | Path | None = None) -> None:
    """The JSON and JUnit outputs, each written atomically (temporary file + rename)."""
    if json_path:
        _write(check_output_path(json_path, "json"), to_json(report), "--json")
    if junit_path:
        _write(check_output_path(junit_path, "junit"), to_junit(report), "--junit")
