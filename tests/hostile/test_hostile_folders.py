"""Hostile output folders: facebench never writes into, replaces or clears what it did not write.

Each case's snapshot check (nothing outside ``may_change`` changed) is the oracle that the user's
files survived; ``may_change`` names only the cache and the folder the command may (re)write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.hostile._harness import MINI_SUITE, Case, check_case, run_cli, write

FAST = ["--model", "synth-cnn", "--no-progress", "--quiet", "--no-figures"]
NOT_RUN = "not a facebench run folder"
NOT_REPORT = "not a facebench report folder"


def suite(tmp: Path) -> str:
    return str(write(tmp / "mini.yaml", MINI_SUITE))


def user_folder(path: Path) -> Path:
    write(path / "leaderboard.md", "my notes\n")
    write(path / "results.json", '{"mine": true}\n')
    write(path / "deep" / "data.csv", "a,b\n")
    return path


def a_run(tmp: Path, name: str = "run") -> str:
    """A finished run folder (made in setup, before the snapshot)."""
    out = tmp / name
    code, output = run_cli(["run", suite(tmp), "--out", str(out), *FAST])
    assert code == 0, output
    return str(out)


def run_into(out_of: callable, *extra: str):
    """setup: a ``run`` of the mini suite into the folder that ``out_of(tmp)`` prepares."""
    return lambda tmp: ["run", suite(tmp), "--out", str(out_of(tmp)), *FAST, *extra]


def _file(tmp: Path) -> Path:
    return write(tmp / "out.txt", "mine\n")


def _legacy(tmp: Path, schema: bool) -> Path:
    out = tmp / "old"
    write(out / "results.json", json.dumps({"schema_version": 1, "tasks": []} if schema else {"tasks": []}))
    write(out / "manifest.json", "{}")
    return out


def _marked(tmp: Path, text: str) -> Path:
    out = user_folder(tmp / "marked")
    write(out / ".facebench-run", text)
    return out


def _symlink(tmp: Path, target: Path) -> Path:
    link = tmp / "link"
    link.symlink_to(target)
    return link


def _readonly(tmp: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: a filesystem that refuses folders
        return Path("/proc/facebench-hostile/out")
    folder = tmp / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"


def _cache(tmp: Path, *files: str) -> Path:
    root = tmp / "cc"
    for name in files:
        write(root / name, "mine\n")
    return root


CASES = [
    # run --out: the user's folders and files
    Case("run-out-user-folder", run_into(lambda t: user_folder(t / "mine")), 2, NOT_RUN),
    Case("run-out-user-folder-force", run_into(lambda t: user_folder(t / "mine"), "--force"), 2, NOT_RUN),
    Case("run-out-is-a-file", run_into(_file), 2, "is a file"),
    Case("run-out-is-a-file-force", run_into(_file, "--force"), 2, "is a file"),
    Case("run-out-under-a-file", run_into(lambda t: _file(t) / "sub"), 2, "is a file, not a folder"),
    Case("run-out-root-force", lambda t: ["run", suite(t), "--out", "/", *FAST, "--force"], 2, NOT_RUN),
    Case("run-out-readonly", run_into(_readonly), 2, "choose a writable --out folder", ("cache", "ro")),
    Case("run-out-symlink-to-user-folder", run_into(lambda t: _symlink(t, user_folder(t / "mine")), "--force"),
         2, NOT_RUN),
    Case("run-out-broken-symlink", run_into(lambda t: _symlink(t, t / "nowhere"), "--force"), 2,
         "broken symbolic link"),
    Case("run-out-legacy-run-no-force", run_into(lambda t: _legacy(t, True)), 2, "--force"),
    Case("run-out-legacy-run-force", run_into(lambda t: _legacy(t, True), "--force"), 0, "", ("cache", "old")),
    Case("run-out-results-without-schema-force", run_into(lambda t: _legacy(t, False), "--force"), 2, NOT_RUN),
    Case("run-out-garbage-marker-force", run_into(lambda t: _marked(t, "{not json"), "--force"), 2, NOT_RUN),
    Case("run-out-marker-of-a-report-force", run_into(lambda t: _marked(t, '{"kind": "report"}'), "--force"),
         2, NOT_RUN),
    Case("run-out-report-folder-force",
         run_into(lambda t: write(user_folder(t / "rep") / ".facebench-report", '{"kind": "report"}').parent,
                  "--force"), 2, NOT_RUN),
    Case("run-out-empty-folder", run_into(lambda t: (t / "empty").mkdir() or t / "empty"), 0, "",
         ("cache", "empty")),
    Case("run-force-over-own-run", lambda t: ["run", suite(t), "--out", a_run(t), *FAST, "--force"], 0, "",
         ("cache", "run")),
    Case("run-beside-a-user-tmp-lookalike",
         run_into(lambda t: user_folder(t / "new.tmp-1234").parent / "new"), 0, "", ("cache", "new")),
    # rescore
    Case("rescore-out-user-folder-force",
         lambda t: ["rescore", a_run(t), "--out", str(user_folder(t / "mine")), "--force", "--quiet", "--no-figures"],
         2, NOT_RUN, ("cache",)),
    Case("rescore-out-is-a-file",
         lambda t: ["rescore", a_run(t), "--out", str(_file(t)), "--quiet", "--no-figures"], 2, "is a file",
         ("cache",)),
    # report --out
    Case("report-out-user-folder",
         lambda t: ["report", a_run(t), "--out", str(user_folder(t / "mine")), "--no-figures"], 2, NOT_REPORT),
    Case("report-out-run-folder", lambda t: ["report", a_run(t), "--out", str(t / "run"), "--no-figures"], 2,
         NOT_REPORT),
    Case("report-out-is-a-file", lambda t: ["report", a_run(t), "--out", str(_file(t)), "--no-figures"], 2,
         "is a file"),
    Case("report-out-empty-folder",
         lambda t: ["report", a_run(t), "--out", str((t / "rep").mkdir() or t / "rep"), "--no-figures"], 0, "",
         ("rep",)),
    # cache clear
    Case("cache-clear-user-files-in-root",
         lambda t: ["cache", "clear", "--cache-dir", str(_cache(t, "notes.txt", "predictions/mine.txt",
                                                                "decoded/mine.txt", "predictions/x/meta.json"))],
         0, "removed 0 entries"),
    Case("cache-clear-key-named-user-folders",
         lambda t: ["cache", "clear", "--cache-dir", str(_cache(t, f"predictions/{'ab' * 12}/todo.txt",
                                                                f"decoded/{'cd' * 12}/photo.jpg"))],
         0, "removed 0 entries"),
    Case("cache-clear-home-like-folder",
         lambda t: ["cache", "clear", "--cache-dir", str(user_folder(t / "home"))], 0, "removed 0 entries"),
    Case("cache-clear-dir-is-a-file", lambda t: ["cache", "clear", "--cache-dir", str(_file(t))], 0,
         "removed 0 entries"),
    Case("cache-clear-symlinked-entry",
         lambda t: ["cache", "clear", "--cache-dir",
                    str(_symlink_entry(t))], 0, "removed 0 entries"),
]


def _symlink_entry(tmp: Path) -> Path:
    """A key-named link in predictions/ to a user's folder that looks like an entry."""
    target = user_folder(tmp / "mine")
    write(target / "meta.json", "{}")
    root = tmp / "cc"
    (root / "predictions").mkdir(parents=True)
    (root / "predictions" / ("ef" * 12)).symlink_to(target)
    return root


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_folders(case, tmp_path):
    check_case(case, tmp_path)
