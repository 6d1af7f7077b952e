"""One error hierarchy: every exception and warning class of facebench is defined in facebench/errors.py."""

import ast
from pathlib import Path

import facebench.errors as errors

PACKAGE = Path(__file__).resolve().parents[1] / "facebench"
BASES = {"Exception", "ValueError", "TypeError", "KeyError", "RuntimeError", "OSError", "UserWarning", "Warning",
         *(name for name in dir(errors) if isinstance(getattr(errors, name), type)
           and issubclass(getattr(errors, name), (Exception, Warning)))}


def test_error_and_warning_classes_live_in_errors_py():
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if names & BASES:
                    outside.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert outside == []


def test_the_checker_sees_a_class_defined_elsewhere(tmp_path):
    tree = ast.parse("from facebench.errors import ConfigError\nclass MyError(ConfigError):\n    pass\n")
    found = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
             and {b.id for b in n.bases if isinstance(b, ast.Name)} & BASES]
    assert found == ["MyError"]
