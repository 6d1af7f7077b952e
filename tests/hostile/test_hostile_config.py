"""Hostile configuration: YAML bombs and tags, unsafe names, dataset paths outside their root, and
report cells that try to smuggle HTML or spreadsheet formulas.

Every case runs with the test's folder as the working directory (so a default ``reports/`` folder, or
an escape through ``../``, would show up as a change) and must end with its exit code and message,
without a traceback, changing nothing outside ``may_change``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facebench.runner import run_suite
from tests.hostile._harness import MINI_SUITE, Case, check_case, write

SRC: dict[str, Path] = {}  # filled once per module by `mini_run`
RUN = ["--model", "synth-cnn", "--no-progress", "--quiet", "--no-figures"]
TASK = "tasks:\n  - {name: clean, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 120}}\n"


@pytest.fixture(scope="module", autouse=True)
def mini_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("config-src")
    suite = write(root / "mini.yaml", MINI_SUITE)
    run_suite(suite, "synth-cnn", out=root / "a", cache_dir=root / "cache", progress=False, log=lambda _: None)
    SRC.update(run=root / "a")
    yield
    SRC.clear()


# -- builders --------------------------------------------------------------------------------------
def bomb(levels: int = 9, indent: str = "") -> str:
    """A billion-laughs document: level k holds nine aliases of level k-1 (9**9 leaves)."""
    lines = [f"{indent}a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def block_bomb() -> str:
    """The same bomb in block style (no commas: one --model-args value)."""
    return "a0: &a0\n" + "- lol\n" * 9 + "".join(f"a{i}: &a{i}\n" + f"- *a{i - 1}\n" * 9 for i in range(1, 10))


def suite_text(text: str, cmd: str = "validate", extra: list[str] | None = None):
    """A case setup: ``text`` as tmp/s.yaml, then ``facebench validate s.yaml`` (or ``run``)."""
    def setup(tmp: Path) -> list[str]:
        path = tmp / "s.yaml"
        path.write_text(text)
        tail = (RUN + ["--out", str(tmp / "out")]) if cmd == "run" else ["--no-data-check"]
        return [cmd, str(path), *tail, *(extra or [])]
    return setup


def suite_bytes(data: bytes):
    def setup(tmp: Path) -> list[str]:
        (tmp / "s.yaml").write_bytes(data)
        return ["validate", str(tmp / "s.yaml")]
    return setup


def images(folder: Path, n: int = 8) -> list[str]:
    """``n`` small grey PNG faces (random pixels) in ``folder``; returns the file names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(folder / f"{i}.png")
        names.append(f"{i}.png")
    return names


def csv_suite(rows: str, args: str = "", cmd: str = "validate", with_images: bool = True):
    """tmp/data/labels.csv with ``rows`` (``{img}`` = the images folder tmp/imgs), a csv-dataset suite."""
    def setup(tmp: Path) -> list[str]:
        if with_images:
            images(tmp / "imgs")
        write(tmp / "data" / "labels.csv", "path,label\n" + rows.format(img=tmp / "imgs"))
        text = (f"name: csvsuite\ndefaults: {{bootstrap: 10}}\ntasks:\n  - name: t\n    dataset: csv\n"
                f"    path: {tmp / 'data' / 'labels.csv'}\n    split: all\n    protocol: closed_set\n"
                f"    dataset_args: {{{args}}}\n")
        (tmp / "s.yaml").write_text(text)
        tail = (RUN + ["--out", str(tmp / "out")]) if cmd == "run" else []
        return [cmd, str(tmp / "s.yaml"), *tail]
    return setup


def csv_binary(tmp: Path) -> list[str]:
    """The csv suite, its labels.csv replaced by bytes that are not UTF-8 text."""
    argv = csv_suite("0.png,happiness\n", with_images=False)(tmp)
    (tmp / "data" / "labels.csv").write_bytes(b"path,label\n\xff\xfe\x00\x81,\x90\n")
    return argv


OUTSIDE_ROWS = "../imgs/0.png,happiness\n../imgs/1.png,sadness\n../imgs/2.png,happiness\n../imgs/3.png,sadness\n"


def run_copy(tmp: Path, edit_results=None, edit_manifest=None, name: str = "run") -> Path:
    """The module's run folder copied to ``tmp/name``, results.json / manifest.json edited."""
    folder = tmp / name
    shutil.copytree(SRC["run"], folder)
    for file, edit in (("results.json", edit_results), ("manifest.json", edit_manifest)):
        if edit:
            data = json.loads((folder / file).read_text())
            edit(data)
            (folder / file).write_text(json.dumps(data))
    return folder


EVIL_TASK = "<script>alert(1)</script>|[x](javascript:alert(1))"
EVIL_MODEL = "=HYPERLINK(\"http://x\")"


def rename_task(results: dict) -> None:
    old = results["tasks"][0]["name"]
    results["tasks"][0]["name"] = EVIL_TASK
    for r in results["records"]:
        if r["task"] == old:
            r["task"] = EVIL_TASK


def rename_model(results: dict) -> None:
    results["model"]["name"] = EVIL_MODEL
    for r in results["records"]:
        r["model"] = EVIL_MODEL


def report_of(edit, figures: bool = False):
    def setup(tmp: Path) -> list[str]:
        run = run_copy(tmp, edit)
        return ["report", str(run), "--out", str(tmp / "report")] + ([] if figures else ["--no-figures"])
    return setup


def traversal_model(results: dict) -> None:
    results["model"]["name"] = "../../../escaped"
    for r in results["records"]:
        r["model"] = "../../../escaped"


def traversal_task(results: dict) -> None:
    results["tasks"][0]["name"] = "../../../escaped"
    for r in results["records"]:
        r["task"] = "../../../escaped"


def rescore_named(name: str):
    def setup(tmp: Path) -> list[str]:
        run = run_copy(tmp, edit_manifest=lambda m: m["suite_as_run"].update(name=name))
        return ["rescore", str(run), "--out", str(tmp / "out"), "--quiet", "--no-figures"]
    return setup


def compare_with_tolerances(text: str | None = None, folder: bool = False, size: int = 0):
    def setup(tmp: Path) -> list[str]:
        path = tmp / "tol.yaml"
        if folder:
            path.mkdir()
        elif size:
            path.write_text("# " + "x" * size + "\n")
        else:
            path.write_text(text)
        run = run_copy(tmp)
        return ["compare", str(run), "--baseline", str(run), "--tolerances", str(path)]
    return setup


MB = 1 << 20
OUT = ("out", "cache")

CASES = [
    # -- YAML bounds ---------------------------------------------------------------------------------
    Case("alias-bomb-in-model-args", suite_text("name: s\ndefaults:\n  model_args:\n" + bomb(indent="    ") + TASK),
         2, "alias bomb"),
    Case("alias-bomb-run", suite_text("name: s\ndefaults:\n  model_args:\n" + bomb(indent="    ") + TASK, "run"),
         2, "alias bomb", OUT),
    Case("alias-bomb-top-level", suite_text(bomb() + TASK), 2, "s.yaml:6: the document expands"),
    Case("recursive-alias", suite_text("name: s\ndefaults: &d {model_args: {self: *d}}\n" + TASK), 2,
         "recursive alias"),
    Case("too-many-aliases", suite_text("x: &x 1\ny: [" + ", ".join(["*x"] * 1001) + "]\n" + TASK), 2,
         "more than 1000 aliases"),
    Case("deep-nesting", suite_text("name: s\ndefaults: {model_args: {a: " + "[" * 70 + "]" * 70 + "}}\n" + TASK),
         2, "s.yaml:2: nesting deeper than 64"),
    Case("deep-nesting-unbalanced", suite_text("[" * 200_000), 2, "nesting deeper than 64"),
    Case("huge-file", suite_text("# " + "x" * (MB + 10) + "\n" + TASK), 2, "larger than the 1024 KiB"),
    Case("python-object-tag", suite_text("name: !!python/object/apply:os.system ['touch pwned']\n" + TASK), 2,
         "!!python/object/apply:os.system is not allowed"),
    Case("python-name-tag", suite_text("name: s\ndefaults: {model: !!python/name:os.system ''}\n" + TASK), 2,
         "is not allowed"),
    Case("unknown-local-tag", suite_text("name: !evil s\n" + TASK), 2, "tag !evil is not allowed"),
    Case("duplicate-top-key", suite_text("name: s\n" + TASK + TASK), 2, "s.yaml:4: duplicate key 'tasks'"),
    Case("duplicate-task-key", suite_text("name: s\ntasks:\n  - name: a\n    dataset: synth\n    protocol: closed_set\n"
                                          "    dataset: noise\n"), 2, "s.yaml:6: duplicate key 'dataset'"),
    Case("unhashable-key", suite_text("name: s\n? [a, b]\n: 1\n" + TASK), 2, "a key must be a plain value"),
    Case("bad-utf8", suite_bytes(b"name: caf\xe9\n" + TASK.encode()), 2, "s.yaml:1: not UTF-8"),
    Case("binary-png-as-suite", suite_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))), 2,
         "not UTF-8"),
    Case("control-characters", suite_bytes(b"name: s\x00\x01\n" + TASK.encode()), 2, "invalid YAML"),
    Case("empty-file", suite_text(""), 2, "a suite must be a mapping"),
    Case("suite-is-a-folder", lambda tmp: ["validate", str(tmp)], 2, "is a folder"),
    Case("suite-missing", lambda tmp: ["validate", str(tmp / "nope.yaml")], 2, "not found"),
    Case("top-level-list", suite_text("- name: s\n"), 2, "a suite must be a mapping"),
    # -- names ---------------------------------------------------------------------------------------
    Case("suite-name-dotdot", suite_text("name: ../x\n" + TASK), 2, "s.yaml:1: suite name '../x' is not a safe name"),
    Case("suite-name-escape-run", suite_text("name: ../../etc\n" + TASK, "run"), 2, "not a safe name", OUT),
    Case("suite-name-absolute", suite_text("name: /abs/x\n" + TASK), 2, "not a safe name"),
    Case("task-name-slash", suite_text("name: s\ntasks:\n  - {name: a/b, dataset: synth, protocol: closed_set}\n"), 2,
         "s.yaml:3: task name 'a/b' is not a safe name"),
    Case("task-name-html", suite_text("name: s\ntasks:\n  - {name: '<script>x</script>', dataset: synth, "
                                      "protocol: closed_set}\n"), 2, "not a safe name"),
    Case("task-name-too-long", suite_text("name: s\ntasks:\n  - {name: " + "t" * 101 + ", dataset: synth, "
                                          "protocol: closed_set}\n"), 2, "1 to 100"),
    Case("task-name-list", suite_text("name: s\ntasks:\n  - {name: [a], dataset: synth, protocol: closed_set}\n"), 2,
         "'name' must be a string"),
    Case("model-name-from-suite", suite_text("name: s\ndefaults: {model: ../../x}\n" + TASK, "run",
                                             extra=["--model", ""]), 2, "model name '../../x' is not a safe name", OUT),
    Case("model-name-from-cli", lambda tmp: ["run", str(write(tmp / "s.yaml", MINI_SUITE)), "--model", "../x",
                                             "--out", str(tmp / "out")], 2, "model name '../x'", OUT),
    Case("rescore-manifest-name-escape", rescore_named("../../../escape"), 2, "not a safe name", OUT),
    # -- structure -----------------------------------------------------------------------------------
    Case("unknown-top-key", suite_text("name: s\ntaks: []\n" + TASK), 2, 'Did you mean "tasks"'),
    Case("unknown-default-key", suite_text("name: s\ndefaults: {bach_size: 8}\n" + TASK), 2,
         'Did you mean "batch_size"'),
    Case("wrong-type-default", suite_text("name: s\ndefaults: {batch_size: many}\n" + TASK), 2,
         "'batch_size' must be an integer"),
    Case("tasks-as-mapping", suite_text("name: s\ntasks: {a: 1}\n"), 2, "'tasks' must be a list"),
    Case("task-as-scalar", suite_text("name: s\ntasks: [hello]\n"), 2, "task #1 must be a mapping"),
    # -- dataset paths -------------------------------------------------------------------------------
    Case("csv-dotdot-paths", csv_suite(OUTSIDE_ROWS), 2, "4 image path(s) lead outside the dataset folder"),
    Case("csv-absolute-path", csv_suite("{img}/0.png,happiness\n0.png,sadness\n"), 2, "line 2:"),
    Case("csv-dotdot-run", csv_suite(OUTSIDE_ROWS, cmd="run"), 2, "allow_outside_root: true", OUT),
    Case("csv-allow-outside-validate", csv_suite(OUTSIDE_ROWS, "allow_outside_root: true"), 0, "OK (1 tasks)",
         ("cache",)),  # validate's image scan may remember what it checked
    Case("csv-allow-outside-run", csv_suite(OUTSIDE_ROWS, "allow_outside_root: true", cmd="run"), 0, "wrote", OUT),
    Case("csv-allow-outside-typo", csv_suite(OUTSIDE_ROWS, "allow_outside_roots: true"), 2,
         'Did you mean "allow_outside_root"'),
    Case("csv-binary-file", csv_binary, 2, "not a readable CSV"),
    # -- command-line YAML ---------------------------------------------------------------------------
    Case("model-args-alias-bomb", lambda tmp: ["run", str(write(tmp / "s.yaml", MINI_SUITE)), *RUN,
                                               "--out", str(tmp / "out"), "--model-args", "x=" + block_bomb()],
         2, "--model-args x:", OUT),
    Case("model-args-python-tag", lambda tmp: ["run", str(write(tmp / "s.yaml", MINI_SUITE)), *RUN,
                                               "--out", str(tmp / "out"), "--model-args",
                                               "x=!!python/object/apply:os.getcwd []"], 2, "is not allowed", OUT),
    Case("tolerances-alias-bomb", compare_with_tolerances(bomb()), 2, "alias bomb", ("run",)),
    Case("tolerances-huge", compare_with_tolerances(size=MB + 1), 2, "larger than 1 MiB", ("run",)),
    Case("tolerances-folder", compare_with_tolerances(folder=True), 2, "cannot read the tolerances file", ("run",)),
    Case("tolerances-python-tag", compare_with_tolerances("'acc*': !!python/object/apply:os.getcwd []\n"), 2,
         "is not allowed", ("run",)),
    # -- report cells --------------------------------------------------------------------------------
    Case("report-task-name-script", report_of(rename_task), 0, "wrote", ("run", "report")),
    Case("report-model-name-formula", report_of(rename_model), 0, "wrote", ("run", "report")),
    Case("report-figures-task-name-traversal", report_of(traversal_task, figures=True), 0, "wrote", ("run", "report")),
    Case("report-figures-model-name-traversal", report_of(traversal_model, figures=True), 0, "wrote",
         ("run", "report")),
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default reports/ folder or an escape lands where the snapshot sees it


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_config(case, tmp_path):
    check_case(case, tmp_path)


def test_report_cells_escaped(tmp_path):
    """The report of a run whose task and model names are HTML / a formula: no raw HTML in Markdown or
    HTML, the CSV cell read back by the csv module starts with a quote."""
    run = run_copy(tmp_path, lambda r: (rename_task(r), rename_model(r)))
    check_case(Case("report", lambda tmp: ["report", str(run), "--out", str(tmp / "report"), "--no-figures"], 0,
                    "wrote", ("run", "report")), tmp_path)
    md = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    rows = list(csv.DictReader((tmp_path / "report" / "leaderboard.csv").open(newline="")))
    assert rows and all(r["run"].startswith("'=") and r["task"] == EVIL_TASK for r in rows)
    for page in (tmp_path / "report").rglob("*.html"):
        assert "<script>alert" not in page.read_text()
