"""Progress on a terminal (tqdm) and in logs (whole lines, no carriage returns or escape sequences)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from facebench.engine import progress as pg

REPO = Path(__file__).resolve().parents[1]


def test_plain_lines_at_each_tenth_and_a_last_line(monkeypatch):
    monkeypatch.setattr(pg, "MIN_INTERVAL_S", 0.0)
    out = io.StringIO()
    bar = pg.PlainProgress(100, "model on data/test", stream=out)
    for _ in range(40):
        bar.update(5)  # 200 > total: counts past the end print nothing more
    bar.close()
    bar.close()  # once
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # 10%, 20%, ..., 90%, then the last line
    assert lines[0].startswith("model on data/test: 10/100 img (10%),") and "img/s, ETA " in lines[0]
    assert lines[8].startswith("model on data/test: 90/100 img (90%)")
    assert lines[-1].startswith("model on data/test: 200/100 img in ")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_plain_respects_the_interval_and_resumed_counts(monkeypatch):
    out = io.StringIO()
    bar = pg.PlainProgress(100, "d", initial=50, stream=out)  # MIN_INTERVAL_S: no line within 5 s
    bar.update(30)
    bar.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]
    assert out.getvalue().startswith("d: 80/100 img in ")


def test_choice_of_display(monkeypatch):
    monkeypatch.setenv(pg.ENV, "plain")
    assert isinstance(pg.progress_bar(10, "x", True), pg.PlainProgress)
    monkeypatch.setenv(pg.ENV, "bar")
    assert not isinstance(pg.progress_bar(10, "x", True), pg.PlainProgress)
    assert pg.progress_bar(10, "x", False).disable  # not enabled: a silent bar


def test_a_run_into_a_pipe_writes_plain_lines(tmp_path):
    done = subprocess.run([sys.executable, "-m", "facebench", "run", str(REPO / "suites" / "demo.yaml"), "--model",
                           "synth-cnn", "--limit", "50", "--tasks", "synth-closed*", "--bootstrap", "0", "--no-figures",
                           "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "synth-cnn on synth/test: 50/50 img in " in done.stderr
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr


def test_run_progress_lines_by_hand(monkeypatch):
    """One line per finished split with the run's share and an ETA from the rate of computed images only."""
    monkeypatch.setenv(pg.ENV, "plain")
    out = io.StringIO()
    run = pg.RunProgress([10, 30, 60], enabled=True, stream=out)
    assert run.split_done("a/test", 10, 10, 1.0) == "[1/3] a/test: 10 img computed in 1s; run 10/100 img (10%), ETA 9s"
    run.split_done("b/test", 30, 0, 0.01, "read from the store")  # no time counted: still 10 img/s
    run.split_done("c/test", 60, 60, 12.0)
    run.close()
    assert out.getvalue().splitlines() == [
        "[1/3] a/test: 10 img computed in 1s; run 10/100 img (10%), ETA 9s",
        "[2/3] b/test: read from the store in 0s; run 40/100 img (40%), ETA 6s",
        "[3/3] c/test: 60 img computed in 12s; run 100/100 img (100%), ETA 0s"]
    quiet = io.StringIO()
    first = pg.RunProgress([5], enabled=True, stream=quiet)  # one split: its own bar says it all
    first.split_done("x", 5, 0, 0.0)
    assert quiet.getvalue() == "" and first.split_done("y", 0, 0, 0.0).endswith("ETA 0s")
    unknown = pg.RunProgress([5, 5], enabled=True, stream=io.StringIO())
    assert unknown.split_done("x", 5, 0, 0.0, "read from the store").endswith("ETA ?")


def test_attacked_rows_have_their_own_unit_and_rate(monkeypatch):
    """An attacked verification split counts its pairs, at the rate of attacked pairs (seconds each), beside the
    images at the forward's rate: the ETA is ? until every unit still to come has a rate; numbers by hand."""
    monkeypatch.setenv(pg.ENV, "plain")
    out = io.StringIO()
    run = pg.RunProgress([10, (4, "attacked pairs"), 30], enabled=True, stream=out)
    run.split_done("a/test", 10, 10, 1.0)
    run.split_done("a/test", 4, 4, 8.0)
    run.split_done("c/test", 30, 30, 3.0)
    assert out.getvalue().splitlines() == [
        "[1/3] a/test: 10 img computed in 1s; run 10/40 img, 0/4 attacked pairs, ETA ?",
        "[2/3] a/test: 4 attacked pairs computed in 8s; run 10/40 img, 4/4 attacked pairs, ETA 3s",
        "[3/3] c/test: 30 img computed in 3s; run 40/40 img, 4/4 attacked pairs, ETA 0s"]
    late = pg.RunProgress([(2, "attacked pairs"), 100], enabled=True, stream=io.StringIO())
    assert late.split_done("p", 2, 2, 10.0).endswith("run 2/2 attacked pairs, 0/100 img, ETA ?")


def test_the_run_sizes_an_attacked_pair_split_by_its_pairs():
    import numpy as np

    from facebench.data.dataset import Dataset
    from facebench.data.images import ArrayImages
    from facebench.pipeline.execute import _work
    from facebench.pipeline.plan import SplitWork
    from facebench.protocols.base import SplitRef

    pairs = {"a": np.array([0, 1, 2]), "b": np.array([3, 4, 5]), "same": np.array([1, 0, 1]), "fold": np.ones(3, int)}
    ds = Dataset("lfw", "test", np.array([f"s{i}" for i in range(6)]), (), None,
                 ArrayImages(np.zeros((6, 2, 2, 3), np.uint8)), pairs=pairs)
    attack = {"kind": "fgsm", "eps": 0.01, "rows": "pairs"}
    assert _work(SplitWork(SplitRef("lfw", "test", None, {}), dataset=ds)) == (6, "img")
    assert _work(SplitWork(SplitRef("lfw", "test", None, {"attack": attack}), dataset=ds)) == (3, "attacked pairs")
    per_image = {**attack, "rows": "samples"}
    assert _work(SplitWork(SplitRef("lfw", "test", None, {"attack": per_image}), dataset=ds)) == (6, "attacked img")
