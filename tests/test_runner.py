"""End-to-end runs of the spine on small synthetic splits."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from facebench.cli import main
from facebench.errors import ConfigError, DatasetNotFoundError
from facebench.runner import run_suite

SUITE = """\
name: mini
defaults:
  batch_size: 32
  bootstrap: 100
  shard_size: 32
tasks:
  - name: clean
    dataset: synth
    split: test
    protocol: closed_set
    dataset_args: {n: 300}
  - name: clean-keep
    dataset: synth
    split: test
    protocol: closed_set
    dataset_args: {n: 300}
    params: {unsupported_classes: error}
"""


@pytest.fixture
def suite(tmp_path):
    p = tmp_path / "mini.yaml"
    p.write_text(SUITE)
    return p


def values(results):
    return {(r["task"], r["metric"]): (r["value"], r["ci"]) for r in results["records"]}


def test_run_writes_folder_and_reuses_store(suite, tmp_path):
    first = run_suite(suite, "synth-cnn", out=tmp_path / "a", progress=False)
    assert first.exit_code == 0
    for name in ("results.json", "manifest.json", "leaderboard.md"):
        assert (tmp_path / "a" / name).exists()
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["schema_version"] == 2  # 2: records carry higher_is_better and unit
    acc = [r for r in res["records"] if r["metric"] == "accuracy" and r["task"] == "clean"][0]
    assert 0.5 < acc["value"] < 1.0 and acc["ci"][0] <= acc["value"] <= acc["ci"][1] and acc["n"] == 300
    assert set(acc["fingerprints"]) == {"dataset", "model", "protocol", "preprocess", "annotations"}  # attributes
    # two tasks on one split: the model ran once
    timings = first.manifest["timings"]
    assert timings["clean"]["computed_samples"] == 300
    assert timings["clean"]["reused"] is False
    second = run_suite(suite, "synth-cnn", out=tmp_path / "b", progress=False)
    assert all(t["reused"] for t in second.manifest["timings"].values())
    # deterministic: same inputs and seed give the same bytes
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    assert "| clean |" in first.leaderboard and "mean class acc." in first.leaderboard


def test_interrupted_run_resumes_with_equal_results(suite, tmp_path, monkeypatch):
    reference = run_suite(suite, "synth-cnn", out=tmp_path / "ref", cache_dir=tmp_path / "cache-ref", progress=False)

    from facebench.models.synth_cnn import SynthCNNAdapter

    original = SynthCNNAdapter.forward
    calls = {"n": 0}

    def flaky(self, batch, heads, features):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, batch, heads, features)

    monkeypatch.setattr(SynthCNNAdapter, "forward", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, "synth-cnn", out=tmp_path / "x", cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "x" / "results.json").exists()
    monkeypatch.setattr(SynthCNNAdapter, "forward", original)
    resumed = run_suite(suite, "synth-cnn", out=tmp_path / "x", cache_dir=tmp_path / "cache", progress=False)
    t = resumed.manifest["timings"]["clean"]
    assert t["resumed_samples"] == 96 and t["computed_samples"] == 300 - 96
    assert values(resumed.results) == values(reference.results)


def test_killed_process_resumes(suite, tmp_path):
    """SIGKILL during inference: the shards on disk survive and the next run resumes from them."""
    cache = tmp_path / "cache"
    code = textwrap.dedent(f"""
        import time
        from facebench.models.synth_cnn import SynthCNNAdapter
        original = SynthCNNAdapter.forward
        def slow(self, batch, heads, features):
            time.sleep(0.3)
            return original(self, batch, heads, features)
        SynthCNNAdapter.forward = slow
        from facebench.cli import main
        main(["run", r"{suite}", "--model", "synth-cnn", "--out", r"{tmp_path / 'k'}", "--cache-dir", r"{cache}",
              "--no-progress"])
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    shards = []
    while time.time() < deadline:
        shards = list(cache.glob("predictions/*/shards/*.npz"))
        if len(shards) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(shards) >= 2, "no shard was written before the deadline"
    assert not list(cache.rglob("*.tmp")) or True  # a temp file may remain only under a dot-name; never read
    resumed = run_suite(suite, "synth-cnn", out=tmp_path / "k", cache_dir=cache, progress=False)
    assert resumed.manifest["timings"]["clean"]["resumed_samples"] >= 64
    reference = run_suite(suite, "synth-cnn", out=tmp_path / "r", cache_dir=tmp_path / "c2", progress=False)
    assert values(resumed.results) == values(reference.results)


def test_missing_dataset_stops_before_model_is_loaded(tmp_path, monkeypatch):
    p = tmp_path / "s.yaml"
    p.write_text(SUITE.replace("dataset: synth\n    split: test\n    protocol: closed_set\n    dataset_args: {n: 300}\n  - name: clean-keep",
                               f"dataset: imagefolder\n    path: {tmp_path / 'missing'}\n    split: test\n    protocol: closed_set\n  - name: clean-keep"))
    import facebench.runner as runner

    def boom(*a, **k):
        raise AssertionError("model loaded before the data check")

    monkeypatch.setattr(runner, "make_model", boom)
    with pytest.raises(DatasetNotFoundError) as info:
        run_suite(p, "synth-cnn", out=tmp_path / "o", progress=False)
    assert "missing/test does not exist" in str(info.value) and "Expected layout" in str(info.value)
    assert not (tmp_path / "o").exists()


def test_skipped_task_is_reported_not_crashed(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(SUITE.replace("  shard_size: 32", "  shard_size: 32\n  missing_data: skip").replace(
        "  - name: clean-keep\n    dataset: synth",
        f"  - name: clean-keep\n    path: {tmp_path / 'missing'}\n    dataset: imagefolder").replace(
        "    dataset_args: {n: 300}\n    params", "    params"))
    out = run_suite(p, "synth-cnn", out=tmp_path / "o", progress=False)
    tasks = {t["name"]: t for t in out.results["tasks"]}
    assert tasks["clean-keep"]["status"] == "skipped" and "does not exist" in tasks["clean-keep"]["reason"]
    assert not [r for r in out.results["records"] if r["task"] == "clean-keep"]
    assert "skipped" in out.leaderboard


def test_out_folder_never_silently_overwritten(suite, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(suite), "--model", "synth-cnn", "--no-progress", "--quiet"]) == 0
    assert (tmp_path / "reports" / "mini" / "synth-cnn" / "results.json").exists()
    assert main(["run", str(suite), "--model", "synth-cnn", "--no-progress", "--quiet"]) == 0
    assert (tmp_path / "reports" / "mini" / "synth-cnn-2" / "results.json").exists()
    out = tmp_path / "reports" / "mini" / "synth-cnn"
    with pytest.raises(ConfigError, match="--force"):
        run_suite(suite, "synth-cnn", out=out, progress=False)
    assert main(["run", str(suite), "--model", "synth-cnn", "--out", str(out), "--no-progress", "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["run", str(suite), "--model", "synth-cnn", "--out", str(out), "--force", "--no-progress",
                 "--quiet"]) == 0


def test_cli_prints_leaderboard_and_cache_commands(suite, tmp_path, capsys):
    cache = tmp_path / "cc"
    assert main(["run", str(suite), "--model", "synth-cnn", "--out", str(tmp_path / "o"), "--cache-dir", str(cache),
                 "--bootstrap", "50", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy %" in printed and "## clean: per class" in printed
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "synth-cnn on synth/test" in listing and "complete" in listing
    assert main(["cache", "clear", "--cache-dir", str(cache)]) == 0
    assert "removed 1 entry" in capsys.readouterr().out


def test_bad_model_args_and_unknown_model(suite, tmp_path, capsys):
    assert main(["run", str(suite), "--model", "synth-cn", "--out", str(tmp_path / "o")]) == 2
    assert 'Did you mean "synth-cnn"' in capsys.readouterr().err
    assert main(["run", str(suite), "--model", "synth-cnn", "--model-args", "weigths=x", "--out",
                 str(tmp_path / "o")]) == 2
    assert 'Did you mean "weights"' in capsys.readouterr().err
