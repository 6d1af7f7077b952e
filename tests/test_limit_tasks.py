"""``--limit N`` (a deterministic subset per split, marked partial) and ``--tasks GLOB`` (part of a suite)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.limit import limited
from facebench.errors import ConfigError
from facebench.pipeline.plan import select_tasks
from facebench.suite import load_suite

REPO = Path(__file__).resolve().parents[1]


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _dataset(ids, pairs=None) -> Dataset:
    n = len(ids)
    return Dataset("d", "test", np.array(ids), ("a", "b"), np.array(["a", "b"] * (n // 2) + ["a"] * (n % 2)),
                   ArrayImages(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)), pairs=pairs)


def test_limit_keeps_the_lowest_digests_whatever_the_order():
    ids = [f"img{i:03d}" for i in range(50)]
    want = sorted(sorted(ids, key=_digest)[:7])
    ds = limited(_dataset(ids), 7)
    assert sorted(ds.ids.tolist()) == want and ds.content_tag["limit"] == 7
    assert ds.ids.tolist() == [i for i in ids if i in want]  # the split's own order
    shuffled = list(np.random.default_rng(0).permutation(ids))
    assert sorted(limited(_dataset(shuffled), 7).ids.tolist()) == want
    full = _dataset(ids)
    assert limited(full, 50) is full and limited(full, None) is full
    assert limited(full, 7).fingerprint() != full.fingerprint()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
            limited(full, bad)


def test_limit_on_pairs_keeps_pairs_and_their_images():
    ids = [f"p{i}" for i in range(8)]
    pairs = {"a": np.array([0, 2, 4, 6, 1]), "b": np.array([1, 3, 5, 7, 2]),
             "same": np.array([True, False, True, False, True]), "fold": np.array([0, 0, 1, 1, 0])}
    ds = _dataset(ids, pairs)
    keys = [f"{ids[a]}\n{ids[b]}" for a, b in zip(pairs["a"], pairs["b"])]
    chosen = sorted(np.argsort([_digest(k) for k in keys], kind="stable")[:2])
    out = limited(ds, 2)
    assert len(out.pairs["a"]) == 2
    got = [(out.ids[a], out.ids[b]) for a, b in zip(out.pairs["a"], out.pairs["b"])]
    assert got == [(ids[pairs["a"][c]], ids[pairs["b"][c]]) for c in chosen]
    np.testing.assert_array_equal(out.pairs["same"], pairs["same"][chosen])
    np.testing.assert_array_equal(out.pairs["fold"], pairs["fold"][chosen])
    assert set(out.ids.tolist()) == {x for pair in got for x in pair}  # only the images the pairs use


def test_select_tasks_by_glob():
    suite = load_suite(REPO / "suites" / "demo.yaml")
    names = [t.name for t in select_tasks(suite, ["synth-open*", "synth-fairness"]).tasks]
    assert names == ["synth-open-set-compound", "synth-open-set-leave-one-out", "synth-fairness"]
    assert select_tasks(suite, None) is suite and select_tasks(suite) is suite
    with pytest.raises(ConfigError, match="'nope' matches no task.*synth-closed-set"):
        select_tasks(suite, ["nope"])


def test_run_with_limit_and_tasks_is_marked_partial(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "facebench", "run", str(REPO / "suites" / "demo.yaml"), "--model", "synth-cnn",
           "--limit", "40", "--tasks", "synth-closed*", "--out", str(out), "--no-progress", "--no-figures",
           "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["partial"] == {"limit": 40, "tasks": ["synth-closed*"]}
    assert [(t["name"], t["n"]) for t in results["tasks"]] == [("synth-closed-set", 40)]
    assert "Partial run" in (out / "leaderboard.md").read_text()
    from facebench.suite import make_loader

    task = next(t for t in load_suite(REPO / "suites" / "demo.yaml").tasks if t.name == "synth-closed-set")
    full = make_loader(task, None).load(task.split).ids.tolist()
    samples = np.load(out / "samples.npz", allow_pickle=False)
    assert sorted(map(str, samples["synth-closed-set/ids"])) == sorted(sorted(full, key=_digest)[:40])
    bad = subprocess.run(cmd[:-2] + ["--limit", "0"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "'limit' must be an integer >= 1" in bad.stderr


def test_list_suites_shows_local_and_bundled(tmp_path):
    local = tmp_path / "suites"
    local.mkdir()
    (local / "mine.yaml").write_text("name: mine\ndescription: my own suite\ntasks:\n"
                                     "  - {name: a, dataset: synth, split: test, protocol: closed_set}\n")
    (local / "broken.yaml").write_text("name: broken\ntasks: 3\n")
    done = subprocess.run([sys.executable, "-m", "facebench", "list", "suites"], capture_output=True, text=True,
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    mine = next(line for line in lines if line.startswith("mine "))
    assert "1 task " in mine and "my own suite" in mine and str(local / "mine.yaml") in mine
    assert any(line.startswith("broken ") and "invalid" in line for line in lines)
    demo = next(line for line in lines if line.startswith("demo "))  # bundled beside the package
    assert "7 tasks" in demo and str(REPO / "suites" / "demo.yaml") in demo
