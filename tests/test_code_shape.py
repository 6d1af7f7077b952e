"""Issue 17's shape rules for the package: no function longer than 80 lines (the run's pipeline functions
far below), so that a newcomer can read each one on a screen."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facebench"
MAX_LINES = 80
PIPELINE_MAX_LINES = 60


def _lengths(root: Path):
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.as_posix(), node.name, node.end_lineno - node.lineno + 1


def test_no_function_in_the_package_is_longer_than_80_lines():
    long = [f"{path}: {name} has {n} lines" for path, name, n in _lengths(PACKAGE) if n > MAX_LINES]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_the_pipeline_and_runner_functions_stay_short():
    files = [*(PACKAGE / "pipeline").glob("*.py"), PACKAGE / "runner.py"]
    long = [f"{p.name}: {node.name} has {node.end_lineno - node.lineno + 1} lines"
            for p in files for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > PIPELINE_MAX_LINES]
    assert not long, "\n".join(long)


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n")
    assert [n for _, _, n in _lengths(tmp_path) if n > MAX_LINES] == [MAX_LINES + 1]
