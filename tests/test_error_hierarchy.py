"""One error hierarchy (issue 17, item 5): no bare builtin error reaches the user, every error class has its
exit code in one table, metrics raise MetricInputError (also a ValueError), and each metric argument check is
defined once (facebench/metrics/_validation.py), not copied into the metric modules.

The scan parses (``ast``) every module under ``facebench/`` and lists each ``raise`` of, or call that builds,
a ``ValueError``, ``TypeError``, ``RuntimeError`` or ``KeyError``, with its file and enclosing function. Those
that stay are listed in ``ALLOWED`` with the reason; a new one fails, and so does an entry that is gone.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import facebench.cli as cli
import facebench.errors as errors
from facebench.errors import ERROR_EXIT_CODES, FacebenchError, MetricInputError, exit_code_for
from facebench.metrics import (bootstrap, calibration, classification, fairness, label_free, meta_eval, ood,
                               ood_scores, paired, regression, verification)

PACKAGE = Path(__file__).resolve().parents[1] / "facebench"
BUILTIN_ERRORS = frozenset({"ValueError", "TypeError", "RuntimeError", "KeyError"})

_BUG = "reached only through a bug in facebench's own code, which the CLI reports as an internal error (exit 4)"
# (file, error, enclosing function) -> why a builtin error is right there; the number of places must match too
ALLOWED = {
    ("facebench/records.py", "TypeError", "__post_init__"): (
        2, f"a protocol built a MetricRecord without a boolean higher_is_better or a known unit: {_BUG}"),
    ("facebench/records.py", "KeyError", "align"): (
        1, "a sample id without a stored prediction is a failed lookup; the engine catches KeyError and reports "
           "a ConfigError (inference._load_shared)"),
    ("facebench/engine/store.py", "KeyError", "load"): (
        1, "a store key without a complete entry is a failed lookup; callers check has() first or catch KeyError"),
    ("facebench/engine/decoded.py", "RuntimeError", "_join_parts"): (
        1, f"the decoded-image cache's parts do not add up to the rows it wrote: {_BUG}"),
    ("facebench/report/results.py", "TypeError", "_default"): (
        1, "json.dumps(default=...) requires its hook to raise TypeError for an object it cannot serialise"),
    ("facebench/protocols/open_set.py", "KeyError", "metric_kind"): (
        1, f"a metric key the protocol itself produced has no declared direction and unit: {_BUG}"),
}


# -- the scan --------------------------------------------------------------------------------------------------
def builtin_errors_in(source: str, where: str) -> Counter:
    """``Counter((where, error, enclosing function))`` of every ``raise E``/``raise E(...)`` and every call
    ``E(...)`` (an error built to be returned or raised later) of a builtin error ``E``."""
    tree = ast.parse(source)
    found: Counter = Counter()

    def visit(node, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = child.name
            elif isinstance(child, ast.Raise) and isinstance(child.exc, ast.Name) \
                    and child.exc.id in BUILTIN_ERRORS:
                found[(where, child.exc.id, function)] += 1
            elif isinstance(child, ast.Call) and isinstance(child.func, ast.Name) \
                    and child.func.id in BUILTIN_ERRORS:
                found[(where, child.func.id, function)] += 1
            visit(child, name)

    visit(tree, "<module>")
    return found


def package_builtin_errors() -> Counter:
    found: Counter = Counter()
    for path in sorted(PACKAGE.rglob("*.py")):
        found += builtin_errors_in(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    return found


def test_no_builtin_error_outside_the_allow_list():
    found = package_builtin_errors()
    unexpected = [f"{where}: {error} in {function}() x{n}" for (where, error, function), n in sorted(found.items())
                  if ALLOWED.get((where, error, function), (0, ""))[0] != n]
    assert not unexpected, ("raise an error of facebench/errors.py instead (MetricInputError, ConfigError, "
                            "DataError, ModelError, ReportError, ...), or add the place with its reason to "
                            "ALLOWED:\n" + "\n".join(unexpected))


def test_every_allowed_place_is_still_there_and_has_a_reason():
    found = package_builtin_errors()
    gone = [key for key in ALLOWED if key not in found]
    assert not gone, f"remove these entries from ALLOWED, the code no longer raises there: {gone}"
    assert all(len(reason) > 20 for _, reason in ALLOWED.values())


@pytest.mark.parametrize("source, expected", [
    ("def f(x):\n    raise ValueError(f'bad {x}')\n", ("ValueError", "f")),
    ("class A:\n    def m(self):\n        raise KeyError\n", ("KeyError", "m")),
    ("def not_fitted():\n    return TypeError('x')\n", ("TypeError", "not_fitted")),
    ("raise RuntimeError('at import')\n", ("RuntimeError", "<module>")),
])
def test_the_scan_sees_each_kind_of_place(source, expected):
    assert list(builtin_errors_in(source, "m.py")) == [("m.py", *expected)]


def test_the_scan_ignores_hierarchy_errors_and_except_clauses():
    source = ("from facebench.errors import ConfigError\n"
              "def f(x):\n    try:\n        int(x)\n    except ValueError:\n        raise ConfigError('x') from None\n")
    assert builtin_errors_in(source, "m.py") == Counter()


# -- exit codes ------------------------------------------------------------------------------------------------
HIERARCHY = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, FacebenchError)]
EXIT_CONSTANTS = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}


def _instance(cls: type) -> FacebenchError:
    if issubclass(cls, errors.YamlError):
        return cls("suite.yaml", 3, "bad indentation")
    if issubclass(cls, errors.SuiteError):
        return cls("suite.yaml", [])
    return cls("something is wrong; do this instead")


def test_the_hierarchy_is_all_there():
    names = {cls.__name__ for cls in HIERARCHY}
    assert {"FacebenchError", "ConfigError", "DataError", "DatasetNotFoundError", "BadImageError",
            "MetricInputError", "ModelError", "RegistryError", "CompareError", "ReportError"} <= names


@pytest.mark.parametrize("cls", HIERARCHY, ids=lambda c: c.__name__)
def test_each_error_class_is_listed_with_an_exit_code(cls):
    assert cls in ERROR_EXIT_CODES, f"add {cls.__name__} to ERROR_EXIT_CODES in facebench/errors.py"
    assert ERROR_EXIT_CODES[cls] in EXIT_CONSTANTS
    assert exit_code_for(_instance(cls)) == ERROR_EXIT_CODES[cls]


@pytest.mark.parametrize("cls", HIERARCHY, ids=lambda c: c.__name__)
def test_the_cli_exits_with_the_code_of_the_table(cls, monkeypatch, capsys):
    def failing(args):
        raise _instance(cls)

    monkeypatch.setattr(cli, "cmd_list", failing)
    assert cli.main(["list", "models"]) == ERROR_EXIT_CODES[cls]
    assert capsys.readouterr().err.startswith("error: ")


def test_other_exceptions_are_bugs_or_interruptions():
    assert exit_code_for(ValueError("x")) == errors.EXIT_INTERNAL_ERROR
    assert exit_code_for(KeyError("x")) == errors.EXIT_INTERNAL_ERROR
    assert exit_code_for(KeyboardInterrupt()) == errors.EXIT_INTERRUPTED


# -- metrics ---------------------------------------------------------------------------------------------------
BAD_METRIC_CALLS = {
    "classification.accuracy": (lambda: classification.accuracy([0, 1], [0]), "inconsistent"),
    "classification.softmax": (lambda: classification.softmax([np.nan, 1.0]), "NaN"),
    "calibration.expected_calibration_error": (
        lambda: calibration.expected_calibration_error([0], [[0.5, 0.6]]), "sum to 1"),
    "bootstrap.percentile_interval": (lambda: bootstrap.percentile_interval([]), "empty"),
    "regression.mean_absolute_error": (lambda: regression.mean_absolute_error([1.0], [np.inf]), "NaN or inf"),
    "ood.auroc": (lambda: ood.auroc([], [0.1]), "known is empty"),
    "ood.fpr_at_tpr": (lambda: ood.fpr_at_tpr([1.0], [0.0], tpr=95), r"\[0, 1\]"),
    "ood_scores.msp": (lambda: ood_scores.msp(np.zeros(3)), "2-D"),
    "ood_scores.energy": (lambda: ood_scores.energy(np.zeros((2, 3)), temperature=0), "temperature"),
    "ood_scores.KNNScore": (lambda: ood_scores.KNNScore().score(np.zeros((1, 2))), "not fitted"),
    "verification.roc_points": (lambda: verification.roc_points([0.1, 0.2], [1, 2]), "0/1"),
    "verification.pair_scores": (lambda: verification.pair_scores(np.ones((2, 3)), np.ones((2, 3)), "l1"),
                                 "metric must be one of"),
    "fairness.group_keys": (lambda: fairness.group_keys(["a", None]), "missing"),
    "fairness.threshold_at_fmr": (lambda: fairness.threshold_at_fmr([0.1, 0.2], 2.0), r"\(0, 1\]"),
    "label_free.softmax_t": (lambda: label_free.softmax_t([[1.0, 2.0]], temperature=-1), "temperature"),
    "label_free.estimate_accuracy": (lambda: label_free.estimate_accuracy("XX", None, None, None), "method"),
    "meta_eval.LinearMap": (lambda: meta_eval.LinearMap().predict([1.0]), "not fitted"),
    "paired.holm": (lambda: paired.holm([0.5, 1.5]), r"\[0, 1\]"),
    "paired.paired_bootstrap": (lambda: paired.paired_bootstrap(None, [0], [0], [0]), "callable"),
}


@pytest.mark.parametrize("name", sorted(BAD_METRIC_CALLS))
def test_a_metric_given_bad_input_raises_metric_input_error(name):
    call, match = BAD_METRIC_CALLS[name]
    with pytest.raises(MetricInputError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, FacebenchError)
    assert exit_code_for(info.value) == errors.EXIT_BAD_INPUT


# -- validators defined once -----------------------------------------------------------------------------------
METRICS = PACKAGE / "metrics"


def _check_functions() -> list[tuple[str, str, str]]:
    """``(module, function name, body without docstring as an AST dump)`` of every ``check_*``/``_check_*``
    function or method under facebench/metrics."""
    out = []
    for path in sorted(METRICS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.lstrip("_").startswith("check_"):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                out.append((path.name, node.name, "".join(ast.dump(stmt) for stmt in body)))
    return out


def test_no_two_metric_modules_define_a_check_of_the_same_name():
    modules_of: dict[str, set] = {}
    for module, name, _ in _check_functions():
        modules_of.setdefault(name.lstrip("_"), set()).add(module)
    repeated = {name: sorted(mods) for name, mods in modules_of.items() if len(mods) > 1}
    assert not repeated, f"define these checks once, in metrics/_validation.py: {repeated}"


def test_no_two_metric_checks_have_the_same_body():
    first_of: dict[str, str] = {}
    copies = []
    for module, name, body in _check_functions():
        if body in first_of:
            copies.append(f"{module}:{name} repeats {first_of[body]}")
        first_of.setdefault(body, f"{module}:{name}")
    assert not copies, copies

