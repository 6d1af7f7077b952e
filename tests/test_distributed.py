"""Multi-process inference (torchrun, gloo on CPU): sharding, equality with one process, resume."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from facebench.engine import distributed as fdist
from facebench.engine.store import PredictionStore
from facebench.errors import ConfigError
from facebench.runner import run_suite

SUITE = """\
name: dist
defaults:
  batch_size: 32
  bootstrap: 100
  shard_size: 64
  device: cpu
tasks:
  - name: clean
    dataset: synth
    split: test
    protocol: closed_set
    dataset_args: {n: 300}
"""
N = 300
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                "MASTER_PORT", "TORCHELASTIC_RUN_ID", "FACEBENCH_TEST_STOP_AFTER_SHARDS")


# -- pure helpers --------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7, 8, 16])
def test_shard_indices_cover_every_index_once(world):
    for n in [0, 1, 2, 3, 5, 7, 8, 15, 16, 17, 100, 300, 1001]:
        blocks = [fdist.shard_indices(n, r, world) for r in range(world)]
        joined = np.concatenate(blocks)
        assert joined.tolist() == list(range(n))  # contiguous, in rank order, no padding, no duplicates
        sizes = [len(b) for b in blocks]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == [n // world + (r < n % world) for r in range(world)]  # first n % world one larger


def test_shard_indices_rejects_bad_arguments():
    for args in [(5, 2, 2), (5, -1, 2), (5, 0, 0), (-1, 0, 1)]:
        with pytest.raises(ConfigError, match="0 <= rank < world_size"):
            fdist.shard_indices(*args)


def test_context_from_env_and_single_process_noops(monkeypatch):
    for var in TORCHRUN_ENV:
        monkeypatch.delenv(var, raising=False)
    ctx = fdist.init_from_env("cpu")  # nothing to join
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed, ctx.backend) == (0, 1, True, False, None)
    assert not torch.distributed.is_initialized()
    fdist.barrier()
    assert fdist.broadcast_object({"a": 1}) == {"a": 1} and fdist.all_gather_object(3) == [3]
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = fdist.context()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.distributed) == (3, 4, 1, False, True)
    assert fdist.rank_device("cpu", ctx) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert fdist.rank_device("auto", ctx) == torch.device("cpu")
    with pytest.raises(ConfigError, match="torchrun"):  # WORLD_SIZE without a rendezvous address
        fdist.init_from_env("cpu")


def test_rank_named_shards_are_read_back_together(tmp_path):
    store = PredictionStore(tmp_path)
    store.write_shard("k", 0, np.array(["a"]), {"h": np.zeros((1, 2))}, rank=0)
    store.write_shard("k", 0, np.array(["b"]), {"h": np.ones((1, 2))}, rank=1)
    store.write_shard("k", 1, np.array(["c"]), {"h": np.ones((1, 2))})
    ids, outs, nxt = store.read_shards("k", ["h"])
    assert sorted(np.concatenate(ids).tolist()) == ["a", "b", "c"] and nxt == 2
    assert len(list((store.entry_dir("k") / "shards").glob("*.npz"))) == 3


# -- two processes under torchrun (gloo, CPU) ----------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(suite, out, cache, nproc=2, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(FACEBENCH_CACHE=str(cache), OMP_NUM_THREADS="1", **env_extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "facebench", "run", str(suite), "--model", "synth-cnn", "--out", str(out),
           "--no-progress", "--quiet", "--no-figures"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def _stored(cache):
    store = PredictionStore(cache)
    entries = [r for r in store.entries() if r["meta"]]
    assert len(entries) == 1, entries
    return store.load(entries[0]["key"])


def _values(results):
    return {(r["task"], r["metric"]): (r["value"], r["ci"]) for r in results["records"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process run of the suite (in this process, its own store)."""
    root = tmp_path_factory.mktemp("single")
    suite = root / "dist.yaml"
    suite.write_text(SUITE)
    outcome = run_suite(suite, "synth-cnn", out=root / "out", cache_dir=root / "cache", progress=False)
    assert outcome.exit_code == 0
    return suite, outcome, _stored(root / "cache")


def _assert_same_as_reference(cache, out, reference):
    _, ref_outcome, ref_preds = reference
    preds = _stored(cache)
    assert preds.meta["n"] == N and len(np.unique(preds.ids)) == N
    aligned = preds.align(ref_preds.ids)
    for name, ref in ref_preds.outputs.items():
        assert aligned.outputs[name].dtype == np.float32
        # same samples through the same CPU kernels: bit-identical (allclose 1e-6 would do if a BLAS differed)
        assert np.array_equal(aligned.outputs[name], ref), name
    results = json.loads((out / "results.json").read_text())
    assert _values(results) == _values(ref_outcome.results)


def test_two_processes_equal_one(reference, tmp_path):
    suite = reference[0]
    proc = _torchrun(suite, tmp_path / "out", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("results.json, manifest.json") == 1, proc.stderr[-4000:]  # rank 0 speaks alone
    _assert_same_as_reference(tmp_path / "cache", tmp_path / "out", reference)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["distributed"] == {"world_size": 2, "backend": "gloo"}
    t = manifest["timings"]["clean"]
    assert (t["resumed_samples"], t["computed_samples"], t["reused"]) == (0, N, False)
    assert not list((tmp_path / "cache").rglob("shards"))  # the finished entry replaced the shards


def test_interrupted_two_process_run_resumes(reference, tmp_path):
    suite = reference[0]
    cache, out = tmp_path / "cache", tmp_path / "out"
    stopped = _torchrun(suite, out, cache, FACEBENCH_TEST_STOP_AFTER_SHARDS="1")
    assert stopped.returncode != 0
    assert not (out / "results.json").exists()
    shards = sorted(p.name for p in cache.glob("predictions/*/shards/*.npz"))
    assert shards and all("-rank0000" in name for name in shards), shards  # rank-unique names
    assert not list(cache.glob("predictions/*/predictions.npz"))
    # the same shards also resume under one process (any world size reads every rank's shards)
    single_cache = tmp_path / "cache-single"
    shutil.copytree(cache, single_cache)
    single = run_suite(suite, "synth-cnn", out=tmp_path / "out-single", cache_dir=single_cache, progress=False)
    assert single.manifest["timings"]["clean"]["resumed_samples"] > 0
    _assert_same_as_reference(single_cache, tmp_path / "out-single", reference)

    resumed = _torchrun(suite, out, cache)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    t = json.loads((out / "manifest.json").read_text())["timings"]["clean"]
    assert t["resumed_samples"] > 0 and t["resumed_samples"] % 64 == 0  # whole shards of 64
    assert t["resumed_samples"] + t["computed_samples"] == N
    _assert_same_as_reference(cache, out, reference)


def test_two_processes_build_the_decoded_cache_together(tmp_path):
    """File images under torchrun: both ranks decode their block into one cache entry, which a
    single process then reads; predictions equal a single process that never used the cache."""
    from PIL import Image

    from facebench.engine.decoded import DecodedCache

    rng = np.random.default_rng(1)
    for cls in ("happy", "sad", "neutral"):
        for i in range(23):
            path = tmp_path / "faces" / "test" / cls / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40 + i, 44, 3), dtype=np.uint8)).save(path)
    suite = tmp_path / "files.yaml"
    suite.write_text(SUITE.replace("dataset: synth", "dataset: imagefolder").replace(
        "dataset_args: {n: 300}", f"path: {(tmp_path / 'faces').as_posix()}"))
    single = run_suite(suite, "synth-cnn", out=tmp_path / "single", cache_dir=tmp_path / "c1", progress=False,
                       overrides={"decode_cache": False})
    proc = _torchrun(suite, tmp_path / "out", tmp_path / "c2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    entries = DecodedCache(tmp_path / "c2").entries()
    assert len(entries) == 1 and entries[0]["meta"]["n"] == 69
    assert not list((tmp_path / "c2" / "decoded").glob(".tmp-*"))
    entry = tmp_path / "c2" / "decoded" / entries[0]["key"]
    assert sorted(p.name for p in entry.iterdir()) == ["images.npy", "meta.json"]  # the rank parts were joined
    ref = _stored(tmp_path / "c1")
    got = _stored(tmp_path / "c2").align(ref.ids)
    # equal to float32 rounding: ranks run batches of other shapes, and on a many-core machine torch's CPU
    # kernels then sum in another order (4.8e-7 seen on 16 cores; bit-identical on 2)
    np.testing.assert_allclose(got.outputs["expression"], ref.outputs["expression"], rtol=1e-5, atol=1e-5)
    got_values, ref_values = _values(json.loads((tmp_path / "out" / "results.json").read_text())), _values(single.results)
    assert got_values.keys() == ref_values.keys()
    for key, (value, ci) in ref_values.items():  # the same to float rounding (see above)
        assert got_values[key][0] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key
        assert (got_values[key][1] is None) == (ci is None), key
        if ci is not None:
            assert got_values[key][1] == pytest.approx(ci, rel=1e-6, abs=1e-9), key


RANKS_DISAGREE = """\
import sys
from pathlib import Path
from facebench.data.generic import ImageFolder
from facebench.engine import distributed as fdist
from facebench.engine.decoded import DecodedCache
from facebench.engine.inference import InferenceSettings, _with_decoded_images
from facebench.engine.store import PredictionStore
from facebench.models.synth_cnn import SynthCNNAdapter

root = Path(sys.argv[1])
ctx = fdist.init_from_env("cpu")
dataset = ImageFolder(path=root / "faces").load("test")
spec = SynthCNNAdapter().input_spec
real_get = DecodedCache.get
looks = []

def get(self, key, ds, sp):  # rank 0's first look came just before a concurrent job published the entry
    looks.append(key)
    return None if ctx.rank == 0 and len(looks) == 1 else real_get(self, key, ds, sp)

DecodedCache.get = get
source = _with_decoded_images(dataset, spec, PredictionStore(root / "cache"), InferenceSettings(progress=False),
                              ctx, may_build=True)
fdist.barrier()
print(f"rank {ctx.rank} done: {type(source.images).__name__}", flush=True)
"""


def test_ranks_that_disagree_on_the_decoded_entry_do_not_hang(tmp_path):
    """Rank 0 sees no entry, rank 1 sees one: rank 0's answer holds for both, so they build
    together instead of rank 0 waiting alone in the build's collectives."""
    from PIL import Image

    from facebench.data.generic import ImageFolder
    from facebench.engine.decoded import DecodedCache
    from facebench.models.synth_cnn import SynthCNNAdapter

    rng = np.random.default_rng(0)
    for cls in ("angry", "happy"):
        for i in range(6):
            path = tmp_path / "faces" / "test" / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    dataset = ImageFolder(path=tmp_path / "faces").load("test")
    spec = SynthCNNAdapter().input_spec
    cache = DecodedCache(tmp_path / "cache")
    cache.build(cache.key(dataset, spec), dataset, spec, progress=False)  # the "concurrent job"'s entry
    script = tmp_path / "disagree.py"
    script.write_text(RANKS_DISAGREE)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(script),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 done: CachedImages" in proc.stdout and "rank 1 done: CachedImages" in proc.stdout
