"""No arrow against the design (issue 17, item 7).

DESIGN.md's "Layers and their rooms" says which layer may import which. This test parses (``ast``) every
module under ``facebench/`` and fails on a forbidden import -- at module level or inside a function, a
class or an ``if TYPE_CHECKING:`` block alike -- naming the file, the line and the rule it breaks.

The rules, as encoded below (``MAY_IMPORT``, ``ONLY_MODULES``, ``THIRD_PARTY``, ``TOP_LEVEL_FOR``):

| layer | may import (besides itself, the standard library and the shared top-level modules) |
| --- | --- |
| metrics   | numpy, scipy and ``facebench.errors`` (``MetricInputError``) -- no other shared module |
| data      | synth (``data.synthetic`` renders the demo faces); never metrics, models, engine, protocols, report |
| models    | data's ``taxonomy``, ``landmark_schemes`` (class and point names) and ``preprocess`` (the ``InputSpec`` an adapter declares) only |
| engine    | data, models |
| protocols | metrics, data |
| report    | metrics |
| synth     | numpy and ``facebench.errors`` only |

Shared top-level modules (``errors``, ``records``, ``atomic``, ``fingerprint``, ``registry``, ``content``,
``outdir``, ``safe_yaml``, ...) hold no layer's logic; a layer may import them only while nothing they
import (transitively, function-level imports included) reaches a layer it may not import. The top row
(``cli``, ``api``, ``runner``, ``suite``, ``train_synth_cnn``) may import everything and nothing imports it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "facebench"

LAYERS = ("metrics", "data", "models", "engine", "protocols", "report", "synth")
MAY_IMPORT = {  # layer -> the other layers it may import (DESIGN.md, "Layers and their rooms")
    "metrics": frozenset(),
    "data": frozenset({"synth"}),
    "models": frozenset({"data"}),
    "engine": frozenset({"data", "models"}),
    "protocols": frozenset({"metrics", "data"}),
    "report": frozenset({"metrics"}),
    "synth": frozenset(),
}
# (layer, other layer) -> the only modules of the other layer it may import ("data (taxonomy only)"; the
# adapter's input spec lives beside the preprocessing that applies it)
ONLY_MODULES = {("models", "data"): frozenset({"facebench.data.taxonomy", "facebench.data.landmark_schemes",
                                              "facebench.data.preprocess"})}  # names of classes and points
THIRD_PARTY = {"metrics": frozenset({"numpy", "scipy"}), "synth": frozenset({"numpy"})}  # closed lists
TOP_LEVEL_FOR = {"metrics": frozenset({"facebench.errors"}), "synth": frozenset({"facebench.errors"})}  # closed lists
TOP_ROW_PACKAGES = ("facebench.pipeline",)  # the run's four steps: top row like the runner that chains them
TOP_ROW = frozenset({"facebench.cli", "facebench.api", "facebench.__main__", "facebench.runner", "facebench.suite",
                     "facebench.train_synth_cnn"})
RULES = {
    "metrics": "metrics import only numpy, scipy, the standard library, facebench.errors and facebench.metrics",
    "data": "data imports no other layer but synth (never metrics, models, engine, protocols, report)",
    "models": "models import from data only data.taxonomy, data.landmark_schemes and data.preprocess, and no other layer",
    "engine": "engine imports the data and models layers only (never metrics, protocols, report, synth)",
    "protocols": "protocols import the metrics and data layers only (never engine, models, report, synth)",
    "report": "report imports the metrics layer only (never engine, models, data, protocols, synth)",
    "synth": "synth imports only numpy, the standard library, facebench.errors and facebench.synth",
}
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
# Arrows against the design that are still there, each with its reason; issue 17 leaves them for later work.
# A new one fails the test; one that is gone must leave this table (test_known_exceptions_are_still_there).
_SKLEARN = ("NonLinearMap fits scikit-learn's MLPRegressor (imported inside fit); replacing it with a NumPy/SciPy "
            "MLP changes the label-free estimates, so it needs its own change and baseline review")
KNOWN_EXCEPTIONS = {
    ("facebench/metrics/meta_eval.py", "sklearn.exceptions"): _SKLEARN,
    ("facebench/metrics/meta_eval.py", "sklearn.neural_network"): _SKLEARN,
    ("facebench/metrics/ood_scores.py", "threadpoolctl"):
        "LinearProbe fits on one BLAS thread (13x faster on small matrices); neither NumPy nor SciPy has a public "
        "way to set the BLAS thread count (threadpoolctl is a small pure-Python dependency of scikit-learn)",
}


@dataclass(frozen=True)
class Import:
    target: str  # the module imported (a facebench module resolved to its file's dotted name)
    line: int


# -- reading the imports ---------------------------------------------------------------------------------------
def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(name: str, source: str, modules: set[str], is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (module ``name``), wherever it stands, plus ``importlib.import_module`` /
    ``__import__`` of a constant string. ``from X import y`` names module ``X.y`` when that is a module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(sub if sub in modules else base, node.lineno))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__"):
                found.append(Import(node.args[0].value, node.lineno))
    return list(dict.fromkeys(found))  # `from x import a, b` of two names in x: one import of x


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "facebench" and parts[1] in LAYERS else None


def read_package(root: Path = PACKAGE) -> dict[str, tuple[Path, list[Import]]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {name: (path, imports_of(name, path.read_text(encoding="utf-8"), modules, path.name == "__init__.py"))
            for name, path in files.items()}


# -- judging them ----------------------------------------------------------------------------------------------
def broken_rule(layer: str, target: str) -> bool:
    """Whether a module of ``layer`` may not import ``target`` directly."""
    top = target.split(".")[0]
    if top != "facebench":
        return layer in THIRD_PARTY and top not in STDLIB and top not in THIRD_PARTY[layer]
    other = layer_of(target)
    if other == layer:
        return False
    if other is None:  # a top-level module (or the facebench package itself)
        if target in TOP_ROW or target.startswith(tuple(p + "." for p in TOP_ROW_PACKAGES)):
            return True
        return layer in TOP_LEVEL_FOR and target != "facebench" and target not in TOP_LEVEL_FOR[layer]
    if other not in MAY_IMPORT[layer]:
        return True
    only = ONLY_MODULES.get((layer, other))
    return only is not None and not any(target == m or target.startswith(m + ".") for m in only)


def direct_violations(package: dict[str, tuple[Path, list[Import]]], root: Path = REPO,
                      exceptions=KNOWN_EXCEPTIONS) -> list[str]:
    out = []
    for name, (path, imports) in package.items():
        layer = layer_of(name)
        if layer is None:
            continue
        for imp in imports:
            if broken_rule(layer, imp.target) and (path.relative_to(root).as_posix(), imp.target) not in exceptions:
                out.append(f"{path.relative_to(root)}:{imp.line}: imports {imp.target} -- rule broken: {RULES[layer]}")
    return out


def reached_violations(package: dict[str, tuple[Path, list[Import]]], root: Path = REPO) -> list[str]:
    """A layer's imports of shared top-level modules, followed through every shared module they import: the
    first module of a layer it may not import ends the chain, which is reported whole."""
    out = []
    for name, (path, imports) in package.items():
        layer = layer_of(name)
        if layer is None:
            continue
        for imp in imports:
            if layer_of(imp.target) is not None or not imp.target.startswith("facebench") \
                    or broken_rule(layer, imp.target):
                continue  # another layer or a third-party module: judged by direct_violations
            chain = _forbidden_chain(layer, [imp.target], package)
            if chain:
                out.append(f"{path.relative_to(root)}:{imp.line}: imports {' -> '.join(chain)} -- rule broken: "
                           f"{RULES[layer]}")
    return out


def _forbidden_chain(layer: str, start: list[str], package) -> list[str] | None:
    seen, todo = set(), [start]
    while todo:
        chain = todo.pop(0)
        module = chain[-1]
        if layer_of(module) is not None:
            if broken_rule(layer, module):
                return chain
            continue  # an allowed layer: its own rules are checked where it stands
        if module in seen or module not in package:
            continue
        seen.add(module)
        todo += [chain + [imp.target] for imp in package[module][1] if imp.target.startswith("facebench")]
    return None


# -- the package as it is --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package():
    return read_package()


def test_every_layer_is_a_package_the_rules_cover(package):
    assert set(MAY_IMPORT) == set(RULES) == set(LAYERS)
    for layer in LAYERS:
        assert f"facebench.{layer}" in package, f"facebench/{layer}/ is gone: update LAYERS and DESIGN.md"


def test_no_layer_imports_against_the_design(package):
    violations = direct_violations(package)
    assert not violations, "imports against DESIGN.md's layers:\n" + "\n".join(violations)


def test_no_layer_reaches_a_forbidden_layer_through_a_shared_module(package):
    violations = reached_violations(package)
    assert not violations, "forbidden layers reached through shared modules:\n" + "\n".join(violations)


def test_known_exceptions_are_still_there(package):
    """An exception whose import is gone must leave KNOWN_EXCEPTIONS (the table lists what is left to do)."""
    present = {(path.relative_to(REPO).as_posix(), imp.target) for path, imports in package.values() for imp in imports}
    gone = [key for key in KNOWN_EXCEPTIONS if key not in present]
    assert not gone, f"no longer imported, remove from KNOWN_EXCEPTIONS: {gone}"
    assert all(reason for reason in KNOWN_EXCEPTIONS.values())
    assert direct_violations(package, exceptions={}) != []  # and without the table they are reported


IMPORT_OF_ENGINE_OR_MODELS = re.compile(
    r"^\s*(?:from\s+(?:facebench|\.\.)\.?(?:engine|models)\b|import\s+facebench\.(?:engine|models)\b"
    r"|from\s+(?:facebench|\.\.)\s+import\s+[^\n]*\b(?:engine|models)\b)"
    r"|import_module\(\s*['\"]facebench\.(?:engine|models)\b", re.MULTILINE)


@pytest.mark.parametrize("folder", ["protocols", "report"])
def test_grep_finds_no_import_of_engine_or_models(folder):
    """The issue's criterion as a text search, independent of the parser above."""
    hits = [f"{path.relative_to(REPO)}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0).strip()}"
            for path in sorted((PACKAGE / folder).rglob("*.py"))
            for text in [path.read_text(encoding="utf-8")]
            for m in IMPORT_OF_ENGINE_OR_MODELS.finditer(text)]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("layers, may_load", [
    (("protocols", "report"), None),  # None: anything but facebench.engine and facebench.models
    (("metrics",), ("facebench.metrics", "facebench.errors")),
    (("synth",), ("facebench.synth", "facebench.errors")),
])
def test_importing_a_layer_loads_no_forbidden_module(layers, may_load):
    """What Python really loads: import every module of the layers in a fresh interpreter and list the
    facebench modules that came along (catches what a static reading could miss)."""
    names = [m for m in sorted(read_package()) if layer_of(m) in layers]
    assert names
    code = textwrap.dedent(f"""
        import importlib, sys
        for name in {names!r}:
            importlib.import_module(name)
        print("\\n".join(sorted(m for m in sys.modules if m.startswith("facebench."))))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = result.stdout.split()
    assert set(names) <= set(loaded)
    if may_load is None:
        bad = [m for m in loaded if layer_of(m) in ("engine", "models")]
    else:
        bad = [m for m in loaded if not any(m == ok or m.startswith(ok + ".") for ok in may_load)]
    assert not bad, f"importing {', '.join(layers)} loads {bad}"


# -- the checker itself, on made-up modules ---------------------------------------------------------------------
def judge(sources: dict[str, str]) -> tuple[list[str], list[str]]:
    """``direct_violations`` and ``reached_violations`` of a made-up package {module name: source}."""
    modules = set(sources)
    package = {name: (REPO / (name.replace(".", "/") + ".py"), imports_of(name, textwrap.dedent(src), modules))
               for name, src in sources.items()}
    return direct_violations(package), reached_violations(package)


def test_a_function_level_import_of_the_engine_in_a_protocol_is_named_with_file_line_and_rule():
    direct, _ = judge({"facebench.protocols.x": """
        import numpy as np
        from facebench.metrics import bootstrap

        def f():
            from facebench.engine.store import Predictions
            return Predictions
        """, "facebench.metrics.bootstrap": "", "facebench.engine.store": ""})
    assert direct == ["facebench/protocols/x.py:6: imports facebench.engine.store -- rule broken: " + RULES["protocols"]]


@pytest.mark.parametrize("name, source, target", [
    ("facebench.protocols.x", "from ..models import base", "facebench.models.base"),
    ("facebench.protocols.x", "import importlib\nimportlib.import_module('facebench.models.base')",
     "facebench.models.base"),
    ("facebench.report.x", "if TYPE_CHECKING:\n    from facebench.engine.store import Predictions",
     "facebench.engine.store"),
    ("facebench.report.x", "from facebench.data.dataset import Dataset", "facebench.data.dataset"),
    ("facebench.metrics.x", "import pandas", "pandas"),
    ("facebench.metrics.x", "from facebench.records import MetricRecord", "facebench.records"),
    ("facebench.synth.x", "import torch", "torch"),
    ("facebench.synth.x", "from facebench.models.base import Head", "facebench.models.base"),
    ("facebench.data.x", "from facebench.models import base", "facebench.models.base"),
    ("facebench.data.x", "from facebench.metrics.classification import accuracy", "facebench.metrics.classification"),
    ("facebench.models.x", "from facebench.data.dataset import Dataset", "facebench.data.dataset"),
    ("facebench.engine.x", "from facebench.protocols.base import EvalContext", "facebench.protocols.base"),
    ("facebench.protocols.x", "from facebench.runner import run_suite", "facebench.runner"),
])
def test_each_forbidden_arrow_is_caught(name, source, target):
    others = {"facebench.models.base", "facebench.data.dataset", "facebench.engine.store", "facebench.errors",
              "facebench.metrics.classification", "facebench.protocols.base", "facebench.runner"}
    direct, _ = judge({name: source, **{m: "" for m in others}})
    assert len(direct) == 1 and f": imports {target} -- rule broken: " in direct[0], direct


@pytest.mark.parametrize("name, source", [
    ("facebench.protocols.x", "import numpy, scipy.stats\nfrom facebench.metrics import bootstrap\n"
                              "from facebench.data.dataset import Dataset\nfrom facebench.records import Predictions"),
    ("facebench.report.x", "import matplotlib\nfrom facebench.metrics.paired import holm\n"
                           "from facebench.atomic import atomic_write_text\nfrom . import tables"),
    ("facebench.metrics.x", "import math, numpy as np\nfrom scipy import stats\nfrom . import bootstrap\n"
                            "from facebench.errors import MetricInputError"),
    ("facebench.synth.x", "import zlib\nimport numpy as np\nfrom facebench.errors import ConfigError"),
    ("facebench.models.x", "import torch\nfrom facebench.data.taxonomy import LABEL_ORDERS\n"
                           "from facebench.data.preprocess import InputSpec"),
    ("facebench.engine.x", "from facebench.models.base import ModelAdapter\nfrom facebench.data.dataset import Dataset"),
    ("facebench.data.x", "import PIL\nfrom facebench.synth import generator\nfrom facebench.content import combine"),
])
def test_allowed_imports_pass(name, source):
    others = {"facebench.metrics.bootstrap", "facebench.data.dataset", "facebench.records", "facebench.atomic",
              "facebench.metrics.paired", "facebench.report.tables", "facebench.errors", "facebench.data.taxonomy",
              "facebench.data.preprocess", "facebench.models.base", "facebench.synth.generator", "facebench.content"}
    assert judge({name: source, **{m: "" for m in others}}) == ([], [])


def test_a_shared_module_that_imports_the_engine_is_caught_with_the_whole_chain():
    direct, reached = judge({
        "facebench.report.results": "def write():\n    from facebench.outdir import write_folder",
        "facebench.outdir": "from facebench.helpers import atomic_write_text",
        "facebench.helpers": "def f():\n    from facebench.engine.store import atomic_write_text",
        "facebench.engine.store": "",
    })
    assert direct == []
    assert reached == ["facebench/report/results.py:2: imports facebench.outdir -> facebench.helpers -> "
                       "facebench.engine.store -- rule broken: " + RULES["report"]]


def test_the_text_search_sees_relative_and_absolute_imports():
    text = "from facebench.engine.store import X\nfrom ..models import base\nimport facebench.models.base\n" \
           "x = importlib.import_module('facebench.engine')\nfrom facebench import errors, models\n" \
           "from facebench.enginex import y\nfrom .models import z\nfrom facebench import errors\n"
    assert len(IMPORT_OF_ENGINE_OR_MODELS.findall(text)) == 5


def test_the_lazy_exports_of_facebench_are_known():
    """``facebench/__init__.py`` exports ``evaluate`` and ``Results`` through ``importlib`` with a module name held
    in a table (which the static check above does not follow): the table may name only the top row (``api``) and
    the contracts (``records``), so ``import facebench`` in any layer never reaches the engine through it."""
    source = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    table = ast.literal_eval(re.search(r"_LAZY = (\{.*?\})", source, re.S).group(1))
    assert {target.partition(":")[0] for target in table.values()} <= TOP_ROW | {"facebench.records"}
    import facebench

    assert facebench.evaluate.__module__ == "facebench.api" and facebench.Results.__module__ == "facebench.records"


def test_a_layer_importing_the_pipeline_is_caught():
    assert broken_rule("protocols", "facebench.pipeline.plan") and broken_rule("report", "facebench.pipeline.write")
