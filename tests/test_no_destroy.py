"""No command deletes or overwrites a file that facebench did not write (issue 16, item 4).

Oracles: byte snapshots of the user's files before and after, the file listing of a fresh run folder,
and modes computed by hand from the umask.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from facebench.errors import OutputError
from facebench.runner import run_suite
from tests.hostile._harness import MINI_SUITE, run_cli, snapshot

FAST = ["--model", "synth-cnn", "--no-progress", "--quiet", "--no-figures"]


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "mini.yaml"
    path.write_text(MINI_SUITE)
    return path


def user_folder(path: Path) -> Path:
    """A folder of the user's own files (what facebench must never touch)."""
    (path / "sub").mkdir(parents=True)
    (path / "leaderboard.md").write_text("my own notes\n")
    (path / "results.json").write_text("not facebench's\n")
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return path


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(folder.name + "."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- run ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True])
def test_run_refuses_a_user_folder(suite, tmp_path, force):
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    code, output = run_cli(["run", str(suite), "--out", str(out), *FAST, *(["--force"] if force else [])])
    assert code == 2
    assert "not a facebench run folder" in output and str(out) in output and "Traceback" not in output
    assert snapshot(out) == before and siblings(out) == []


def test_run_into_an_empty_folder_writes_the_marker(suite, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    code, _ = run_cli(["run", str(suite), "--out", str(out), *FAST])
    assert code == 0
    marker = json.loads((out / ".facebench-run").read_text())
    assert marker["kind"] == "run" and "facebench_version" in marker and "pid" not in marker
    assert siblings(out) == []


def test_force_leaves_no_file_of_the_previous_run(suite, tmp_path):
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    assert run_cli(["run", str(suite), "--out", str(out), *FAST])[0] == 0
    # files of an earlier run that the new one does not write (e.g. figures of a task since removed)
    (out / "figures").mkdir()
    (out / "figures" / "gone-confusion_matrix.png").write_bytes(b"\x89PNG old")
    (out / "samples.npz").write_bytes(b"old samples")
    (out / "stale.txt").write_text("old")
    assert run_cli(["run", str(suite), "--out", str(out), *FAST])[0] == 2  # no --force: refused, unchanged
    assert (out / "stale.txt").read_text() == "old"
    assert run_cli(["run", str(suite), "--out", str(out), "--force", *FAST])[0] == 0
    assert run_cli(["run", str(suite), "--out", str(fresh), *FAST])[0] == 0
    assert listing(out) == listing(fresh)  # exactly what one run writes, nothing older
    assert (out / "samples.npz").read_bytes() == (fresh / "samples.npz").read_bytes()
    assert siblings(out) == []


def test_default_folder_moves_past_a_user_folder(suite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = user_folder(tmp_path / "reports" / "mini" / "synth-cnn")
    before = snapshot(mine)
    code, output = run_cli(["run", str(suite), *FAST])
    assert code == 0 and "synth-cnn-2" in output
    assert snapshot(mine) == before
    assert (tmp_path / "reports" / "mini" / "synth-cnn-2" / ".facebench-run").exists()
    code, output = run_cli(["run", str(suite), "--force", *FAST])  # --force never replaces the user's folder
    assert code == 2 and "not a facebench run folder" in output and snapshot(mine) == before


def test_legacy_run_folder_is_accepted_only_when_both_files_parse(suite, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "results.json").write_text(json.dumps({"schema_version": 1, "tasks": []}))
    (legacy / "manifest.json").write_text("{}")
    (legacy / "leaderboard.md").write_text("old")
    code, output = run_cli(["run", str(suite), "--out", str(legacy), *FAST])
    assert code == 2 and "--force" in output
    assert run_cli(["run", str(suite), "--out", str(legacy), "--force", *FAST])[0] == 0
    assert (legacy / ".facebench-run").exists()

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "results.json").write_text(json.dumps({"tasks": []}))  # no schema_version: not a run of facebench
    (fake / "manifest.json").write_text("{}")
    before = snapshot(fake)
    code, output = run_cli(["run", str(suite), "--out", str(fake), "--force", *FAST])
    assert code == 2 and "not a facebench run folder" in output and snapshot(fake) == before


def test_out_that_is_a_file_is_refused(suite, tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("mine")
    code, output = run_cli(["run", str(suite), "--out", str(out), "--force", *FAST])
    assert code == 2 and "is a file" in output and out.read_text() == "mine"


@pytest.mark.parametrize("where", ["write", "figures"])
def test_a_killed_run_keeps_the_previous_folder_and_leaves_no_half_folder(suite, tmp_path, monkeypatch, where):
    out = tmp_path / "run"
    run_suite(suite, "synth-cnn", out=out, progress=False, log=lambda m: None)
    before = snapshot(out)
    import facebench.report.figure_index as figures_module
    import facebench.report.results as results_module

    real_write = results_module.write_run_folder

    def half_write(folder, results, manifest, leaderboard, samples=None):
        (Path(folder) / "results.json").write_text('{"half": ')
        raise KeyboardInterrupt  # killed in the middle of writing

    def kill_drawing(results, folder, **kwargs):
        (Path(folder) / "figures").mkdir()
        (Path(folder) / "figures" / "half.png").write_bytes(b"\x89PNG")
        raise KeyboardInterrupt  # killed while drawing (figure errors are logged, a kill is not)

    if where == "write":
        monkeypatch.setattr(results_module, "write_run_folder", half_write)
    else:
        monkeypatch.setattr(results_module, "write_run_folder", real_write)
        monkeypatch.setattr(figures_module, "run_figures", kill_drawing)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, "synth-cnn", out=out, force=True, progress=False, log=lambda m: None, figures=True)
    assert snapshot(out) == before
    assert siblings(out) == []


def test_a_disk_error_while_writing_is_a_clear_error_and_changes_nothing(suite, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_suite(suite, "synth-cnn", out=out, progress=False, log=lambda m: None)
    before = snapshot(out)
    import facebench.report.results as results_module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module, "write_run_folder", full_disk)
    code, output = run_cli(["run", str(suite), "--out", str(out), "--force", *FAST])
    assert code == 2 and "No space left on device" in output and "Traceback" not in output
    assert snapshot(out) == before and siblings(out) == []


def test_stale_temporary_siblings_are_cleaned_only_when_they_are_facebench_s(suite, tmp_path):
    out = tmp_path / "run"
    dead = tmp_path / "run.tmp-dead"
    dead.mkdir()
    (dead / ".facebench-run").write_text(json.dumps({"kind": "run", "host": os.uname().nodename, "pid": dead_pid()}))
    (dead / "results.json").write_text("{")
    live = tmp_path / "run.tmp-live"
    live.mkdir()
    (live / ".facebench-run").write_text(json.dumps({"kind": "run", "host": os.uname().nodename, "pid": os.getpid()}))
    users = user_folder(tmp_path / "run.tmp-users")
    before = snapshot(users)
    assert run_cli(["run", str(suite), "--out", str(out), *FAST])[0] == 0
    assert not dead.exists()  # a dead writer's temporary folder (carries the marker)
    assert live.exists()  # a writer that may still run
    assert snapshot(users) == before  # named like one, but no marker: the user's


def test_force_through_a_symlink_replaces_the_target_and_keeps_the_link(suite, tmp_path):
    target = tmp_path / "runs" / "a"
    assert run_cli(["run", str(suite), "--out", str(target), *FAST])[0] == 0
    (target / "stale.txt").write_text("old")
    link = tmp_path / "latest"
    link.symlink_to(target)
    assert run_cli(["run", str(suite), "--out", str(link), "--force", *FAST])[0] == 0
    assert link.is_symlink() and (link / ".facebench-run").exists() and not (target / "stale.txt").exists()
    assert siblings(target) == [] and siblings(link) == []


@pytest.mark.parametrize("meanwhile", ["facebench", "user"])
def test_a_folder_that_appears_while_writing_is_never_replaced(tmp_path, meanwhile):
    from facebench.outdir import RUN, write_folder, write_marker

    final = tmp_path / "out"

    def write(tmp):
        (tmp / "results.json").write_text("{}")
        user_folder(final)  # another process (or the user) fills the folder meanwhile
        if meanwhile == "facebench":
            write_marker(final, RUN)

    message = "another facebench process" if meanwhile == "facebench" else "not a facebench run folder"
    with pytest.raises(OutputError, match=message):
        write_folder(final, RUN, write, replace=False)
    assert (final / "results.json").read_text() == "not facebench's\n"  # theirs, untouched
    assert siblings(final) == []


# -- rescore ----------------------------------------------------------------------------------------
def test_rescore_never_writes_into_a_user_folder_and_force_replaces_only_its_own(suite, tmp_path):
    run = tmp_path / "run"
    assert run_cli(["run", str(suite), "--out", str(run), *FAST])[0] == 0
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    code, output = run_cli(["rescore", str(run), "--out", str(mine), "--force", "--quiet", "--no-figures"])
    assert code == 2 and "not a facebench run folder" in output and snapshot(mine) == before
    # the default <run>-rescored is a user's folder: rescore moves on to -rescored-2
    user_folder(tmp_path / "run-rescored")
    before = snapshot(tmp_path / "run-rescored")
    assert run_cli(["rescore", str(run), "--quiet", "--no-figures"])[0] == 0
    assert (tmp_path / "run-rescored-2" / ".facebench-run").exists()
    assert snapshot(tmp_path / "run-rescored") == before
    (tmp_path / "run-rescored-2" / "stale.txt").write_text("old")
    code, _ = run_cli(["rescore", str(run), "--out", str(tmp_path / "run-rescored-2"), "--force", "--quiet",
                       "--no-figures"])
    assert code == 0 and not (tmp_path / "run-rescored-2" / "stale.txt").exists()


# -- report -----------------------------------------------------------------------------------------
def test_report_refuses_a_user_folder_and_replaces_its_own(suite, tmp_path):
    run = tmp_path / "run"
    assert run_cli(["run", str(suite), "--out", str(run), *FAST])[0] == 0
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    code, output = run_cli(["report", str(run), "--out", str(mine), "--no-figures"])
    assert code == 2 and "not a facebench report folder" in output and snapshot(mine) == before
    assert siblings(mine) == []

    rep = tmp_path / "rep"
    assert run_cli(["report", str(run), "--out", str(rep), "--no-figures"])[0] == 0
    assert json.loads((rep / ".facebench-report").read_text())["kind"] == "report"
    (rep / "stale.txt").write_text("old")
    assert run_cli(["report", str(run), "--out", str(rep), "--no-figures"])[0] == 0
    assert (rep / "leaderboard.md").exists() and not (rep / "stale.txt").exists() and siblings(rep) == []

    before = snapshot(run)  # a run folder is not a report folder
    code, output = run_cli(["report", str(run), "--out", str(run), "--no-figures"])
    assert code == 2 and "not a facebench report folder" in output and snapshot(run) == before


# -- cache clear ------------------------------------------------------------------------------------
def test_cache_clear_removes_only_facebench_entries(suite, tmp_path):
    cache = tmp_path / "cc"
    assert run_cli(["run", str(suite), "--out", str(tmp_path / "run"), "--cache-dir", str(cache), *FAST])[0] == 0
    decoded = cache / "decoded" / ("0123456789abcdef" * 2)[:24]  # an entry as DecodedCache lays it out
    decoded.mkdir(parents=True)
    (decoded / "meta.json").write_text(json.dumps({"dataset": "synth", "split": "test", "n": 1}))
    (decoded / "images.npy").write_bytes(b"\x93NUMPY")
    entries = [p for p in (cache / "predictions").iterdir()] + [decoded]
    assert len(entries) == 2
    stale = cache / "decoded" / ".tmp-0123-dead"  # a killed build's temporary folder
    stale.mkdir()
    (stale / "owner.json").write_text(json.dumps({"host": os.uname().nodename, "pid": dead_pid()}))
    (cache / "notes.txt").write_text("mine")
    (cache / "predictions" / "my-folder").mkdir()
    (cache / "predictions" / "my-folder" / "meta.json").write_text("{}")  # not key-named
    (cache / "predictions" / ("ab" * 12)).mkdir()
    (cache / "predictions" / ("ab" * 12) / "todo.txt").write_text("key-named, but no entry files")
    (cache / "decoded" / "readme.txt").write_text("mine")
    (cache / "decoded" / ("cd" * 12)).mkdir()
    (cache / "decoded" / ("cd" * 12) / "x.bin").write_bytes(b"mine")
    own_small = [*cache.glob("hashes/*.npz"), *cache.glob("hashes/lists/*.npz"), *cache.glob("scan/*.npz")]
    evaluations = [*cache.glob("evaluations/*/*.json"), *cache.glob("evaluations/*/*.npz")]  # stored results
    (cache / "hashes" / "mine.npz").write_text("a user's file beside them, not hex-named")
    (cache / "evaluations" / "ab").mkdir()
    (cache / "evaluations" / "ab" / "mine.json").write_text("{}")  # not key-named
    users = {p: p.read_bytes() for p in cache.rglob("*")
             if p.is_file() and p not in own_small + evaluations
             and not any(p.is_relative_to(e) for e in [*entries, stale])}
    code, output = run_cli(["cache", "clear", "--cache-dir", str(cache)])
    n_results = sum(p.suffix == ".json" for p in evaluations)
    assert n_results >= 1 and not any(p.exists() for p in evaluations)
    assert code == 0 and f"removed {len(entries)} entries" in output and f"{n_results} stored evaluation" in output
    assert own_small and not any(p.exists() for p in own_small)
    assert not any(e.exists() for e in entries) and not stale.exists()
    assert {p: p.read_bytes() for p in users} == users


def test_cache_clear_on_a_home_like_folder_removes_nothing(tmp_path):
    home = tmp_path / "home"
    user_folder(home)
    (home / "predictions").mkdir()
    (home / "predictions" / "holiday").mkdir()
    (home / "predictions" / "holiday" / "photo.jpg").write_bytes(b"jpeg")
    (home / "decoded").mkdir()
    (home / "decoded" / "letter.txt").write_text("hi")
    before = snapshot(home)
    code, output = run_cli(["cache", "clear", "--cache-dir", str(home)])
    assert code == 0 and "removed 0 entries" in output
    assert snapshot(home) == before


# -- baseline and compare (their writers: facebench.report.compare) ----------------------------------
def test_baseline_and_compare_outputs_never_overwrite_a_user_file(suite, tmp_path):
    run = tmp_path / "run"
    assert run_cli(["run", str(suite), "--out", str(run), *FAST])[0] == 0
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "data"}\n')
    code, output = run_cli(["baseline", str(run), "--out", str(mine)])
    assert code == 2 and mine.read_text() == '{"my": "data"}\n' and "Traceback" not in output
    base = tmp_path / "base.json"
    assert run_cli(["baseline", str(run), "--out", str(base)])[0] == 0
    assert run_cli(["baseline", str(run), "--out", str(base)])[0] == 0  # its own baseline: replaced
    junit = tmp_path / "mine.xml"
    junit.write_text("<notes/>\n")
    for flag, path in (("--json", mine), ("--junit", junit)):
        before = path.read_bytes()
        code, output = run_cli(["compare", str(run), "--baseline", str(base), flag, str(path)])
        assert code == 2 and path.read_bytes() == before and "Traceback" not in output
    out_json, out_xml = tmp_path / "c.json", tmp_path / "c.xml"
    for _ in range(2):  # written, then its own output replaced
        assert run_cli(["compare", str(run), "--baseline", str(base), "--json", str(out_json),
                        "--junit", str(out_xml)])[0] == 0
    assert json.loads(out_json.read_text()) and out_xml.read_text().lstrip().startswith("<")


# -- the user's umask -----------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_and_folders_get_the_user_s_umask(suite, tmp_path, mask):
    from facebench.engine.store import atomic_write_text

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert run_cli(["run", str(suite), "--out", str(tmp_path / "run"), *FAST])[0] == 0
        assert run_cli(["report", str(tmp_path / "run"), "--out", str(tmp_path / "rep"), "--no-figures"])[0] == 0
    finally:
        os.umask(old)
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask  # what open() and mkdir() give under this umask
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    for folder in (tmp_path / "run", tmp_path / "rep"):
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
        for path in folder.rglob("*"):
            want = dir_mode if path.is_dir() else file_mode
            assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_output_error_is_a_config_error():
    from facebench.errors import ConfigError

    assert issubclass(OutputError, ConfigError)
