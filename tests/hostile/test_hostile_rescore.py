"""Hostile run folders given to `facebench rescore`: a truncated, edited or foreign results.json or
manifest.json ends with exit 2 and a message naming the file and what to do, never a traceback, and
nothing is written (no `-rescored` folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facebench.runner import run_suite
from tests.hostile._harness import MINI_SUITE, Case, check_case, write

SRC: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def mini_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rescore-src")
    suite = write(root / "mini.yaml", MINI_SUITE)
    run_suite(suite, "synth-cnn", out=root / "a", cache_dir=root / "cache", progress=False, log=lambda _: None)
    SRC.update(run=root / "a", cache=root / "cache")
    yield
    SRC.clear()


def broken(file: str, text=None, edit=None):
    """setup(tmp) -> argv of `rescore <copy>` where ``file`` of the copy is replaced by ``text`` or edited."""
    def setup(tmp: Path) -> list[str]:
        run = tmp / "run"
        shutil.copytree(SRC["run"], run)
        if text is not None:
            (run / file).write_bytes(text if isinstance(text, bytes) else text.encode())
        elif edit is not None:
            data = json.loads((run / file).read_text())
            edit(data)
            (run / file).write_text(json.dumps(data))
        else:
            (run / file).unlink()
        return ["rescore", str(run), "--cache-dir", str(SRC["cache"]), "--quiet", "--no-figures"]
    return setup


def _set(path: str, value):
    def edit(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


CASES = [
    Case("results-missing", broken("results.json"), 2, "results.json is missing"),
    Case("manifest-missing", broken("manifest.json"), 2, "manifest.json is missing"),
    Case("results-truncated", broken("results.json", text='{"model": {'), 2, "cannot be read"),
    Case("results-empty", broken("results.json", text=""), 2, "cannot be read"),
    Case("results-not-utf8", broken("results.json", text=b"\xff\xfe\x00{"), 2, "cannot be read"),
    Case("results-a-list", broken("results.json", text="[1, 2]"), 2, "a JSON object was expected"),
    Case("manifest-a-number", broken("manifest.json", text="42"), 2, "a JSON object was expected"),
    Case("results-no-model", broken("results.json", edit=lambda d: d.pop("model")), 2, "'model'"),
    Case("results-model-heads-list", broken("results.json", edit=_set("model.heads", [1])), 2, "'model.heads'"),
    Case("results-records-null", broken("results.json", edit=_set("records", None)), 2, "'records'"),
    Case("manifest-no-suite", broken("manifest.json", edit=lambda d: d.pop("suite_as_run")), 2, "'suite_as_run'"),
    Case("manifest-suite-name-number", broken("manifest.json", edit=_set("suite_as_run.name", 7)), 2,
         "'suite_as_run.name'"),
    Case("manifest-tasks-a-string", broken("manifest.json", edit=_set("suite_as_run.tasks", "all")), 2,
         "'suite_as_run.tasks'"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_rescore(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_case(case, tmp_path)


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
