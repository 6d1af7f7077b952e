"""The fast data path: the decoded uint8 cache, channels-last, torch.compile, AMP in the store key,
and out-of-memory halving."""

import dataclasses
import os
import pickle
import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image

from facebench.data.generic import ImageFolder
from facebench.data.preprocess import prepare_uint8
from facebench.engine import decoded as dec
from facebench.engine.decoded import CachedImages, DecodedCache
from facebench.engine.inference import InferenceSettings, _Forward, prediction_key, run_inference
from facebench.engine.store import PredictionStore
from facebench.errors import ModelError
from facebench.models.base import Head, ModelAdapter
from facebench.models.synth_cnn import SynthCNNAdapter

CLASSES = ("angry", "happy", "neutral")


@pytest.fixture()
def folder(tmp_path):
    """An image folder in its native layout: images of different sizes, grey and colour."""
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for c, cls in enumerate(CLASSES):
        for i in range(7):
            h, w = 40 + 7 * i, 50 + 3 * c
            shape = (h, w) if i % 3 == 0 else (h, w, 3)
            path = root / "test" / cls / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root


def _settings(**kw):
    return InferenceSettings(batch_size=8, device="cpu", progress=False, shard_size=16, **kw)


def _run(adapter, dataset, cache, **kw):
    return run_inference(adapter, dataset, PredictionStore(cache), heads=("expression",), features=True,
                         settings=_settings(**kw))


def test_cache_holds_the_preprocessed_images_and_gives_the_same_predictions(folder, tmp_path):
    dataset = ImageFolder(path=folder).load("test")
    adapter = SynthCNNAdapter()
    spec = adapter.input_spec
    off, _ = _run(adapter, dataset, tmp_path / "off", decode_cache=False)
    assert not (tmp_path / "off" / "decoded").exists()
    on, _ = _run(adapter, dataset, tmp_path / "on")
    entries = DecodedCache(tmp_path / "on").entries()
    assert len(entries) == 1 and entries[0]["meta"]["n"] == len(dataset)
    cached = np.load(tmp_path / "on" / "decoded" / entries[0]["key"] / "images.npy")
    expected = np.stack([prepare_uint8(dataset.images.load(i), spec).numpy() for i in range(len(dataset))])
    assert cached.dtype == np.uint8 and np.array_equal(cached, expected)
    for name in ("expression", "features"):
        np.testing.assert_array_equal(on.outputs[name], off.outputs[name])


def test_warm_cache_reads_no_image_file(folder, tmp_path, monkeypatch):
    dataset = ImageFolder(path=folder).load("test")
    adapter = SynthCNNAdapter()
    first, _ = _run(adapter, dataset, tmp_path / "c")
    PredictionStore(tmp_path / "c").clear()  # predictions gone, decoded images kept

    def no_decoding(self, i):
        raise AssertionError("an image file was decoded although the cache is warm")

    monkeypatch.setattr(type(dataset.images), "load", no_decoding)
    second, report = _run(adapter, dataset, tmp_path / "c")
    assert report.computed_samples == len(dataset) and not report.reused
    np.testing.assert_array_equal(second.outputs["expression"], first.outputs["expression"])


def test_an_edited_file_gets_a_new_cache_entry(folder, tmp_path):
    dataset = ImageFolder(path=folder).load("test")
    cache = DecodedCache(tmp_path)
    spec = SynthCNNAdapter().input_spec
    key = cache.key(dataset, spec)
    assert key == cache.key(ImageFolder(path=folder).load("test"), spec)
    target = folder / "test" / "happy" / "001.png"
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(target)
    os.utime(target, ns=(1, 1))
    assert cache.key(ImageFolder(path=folder).load("test"), spec) != key
    other = dataclasses.replace(spec, size=(32, 32))
    assert cache.key(dataset, other) != key  # another uint8 preprocessing, another entry


def test_a_same_size_replacement_that_keeps_the_mtime_gets_a_new_entry(folder, tmp_path):
    """What ``cp -p`` / ``rsync -a`` of another image of the same byte size does: size and mtime
    are unchanged, the change time and inode are not."""
    import shutil

    cache = DecodedCache(tmp_path)
    spec = SynthCNNAdapter().input_spec
    key = cache.key(ImageFolder(path=folder).load("test"), spec)
    target, donor = folder / "test" / "happy" / "001.png", tmp_path / "donor.png"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-13] ^= 0xFF  # same size, other bytes (inside the PNG trailer: a different file)
    donor.write_bytes(bytes(data))
    os.utime(donor, ns=(before.st_atime_ns, before.st_mtime_ns))
    shutil.copy2(donor, tmp_path / "staged.png")
    os.replace(tmp_path / "staged.png", target)  # a new inode, same size and mtime
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert cache.key(ImageFolder(path=folder).load("test"), spec) != key


def test_in_memory_images_are_not_cached(tmp_path):
    from facebench.data.synthetic import SynthFaces

    dataset = SynthFaces(n=16).load("test")
    assert DecodedCache(tmp_path).key(dataset, SynthCNNAdapter().input_spec) is None


def test_an_interrupted_build_leaves_no_entry(folder, tmp_path, monkeypatch):
    dataset = ImageFolder(path=folder).load("test")
    spec = SynthCNNAdapter().input_spec
    cache = DecodedCache(tmp_path)
    calls = {"n": 0}
    real = dec.PreparedImages.__getitem__

    def interrupted(self, i):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(dec.PreparedImages, "__getitem__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.build(cache.key(dataset, spec), dataset, spec, progress=False)
    assert cache.entries() == [] and list(cache.dir.iterdir()) == []  # no half entry, no temporary folder
    monkeypatch.setattr(dec.PreparedImages, "__getitem__", real)
    built = cache.build(cache.key(dataset, spec), dataset, spec, progress=False)
    assert built is not None and len(built) == len(dataset)


def test_a_broken_entry_in_the_way_is_replaced_by_the_next_build(folder, tmp_path):
    dataset = ImageFolder(path=folder).load("test")
    spec = SynthCNNAdapter().input_spec
    cache = DecodedCache(tmp_path)
    key = cache.key(dataset, spec)
    cache.build(key, dataset, spec, progress=False)
    npy = cache.dir / key / "images.npy"
    good = npy.read_bytes()
    npy.write_bytes(good[: len(good) // 3])  # truncated: the entry no longer loads
    assert cache.get(key, dataset, spec) is None
    rebuilt = cache.build(key, dataset, spec, progress=False)
    assert rebuilt is not None and npy.read_bytes() == good
    assert not list(cache.dir.glob(".tmp-*"))


def test_stale_temporary_folder_of_a_dead_process_is_removed(folder, tmp_path):
    dataset = ImageFolder(path=folder).load("test")
    spec = SynthCNNAdapter().input_spec
    cache = DecodedCache(tmp_path)
    stale = cache.dir / ".tmp-abc-12345678"
    stale.mkdir(parents=True)
    import json
    import socket

    (stale / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))
    cache.build(cache.key(dataset, spec), dataset, spec, progress=False)
    assert not stale.exists()


def test_a_live_build_is_told_from_a_dead_one_by_its_lock_not_its_process_id(folder, tmp_path):
    """Containers sharing a hostname but not a PID namespace: the owner's pid looks dead from here.
    A build whose lock is held stays; one whose lock is free (its process is gone) is removed."""
    import json
    import socket

    from facebench.engine.decoded import LOCK_NAME, _hold_lock

    dataset = ImageFolder(path=folder).load("test")
    spec = SynthCNNAdapter().input_spec
    cache = DecodedCache(tmp_path)
    live, dead = cache.dir / ".tmp-live-00000001", cache.dir / ".tmp-dead-00000002"
    for path in (live, dead):
        path.mkdir(parents=True)
        (path / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))
    held = _hold_lock(live / LOCK_NAME)  # a running build elsewhere
    _hold_lock(dead / LOCK_NAME).close()  # a build whose process died: the lock file stays, unlocked
    try:
        cache.build(cache.key(dataset, spec), dataset, spec, progress=False)
        assert live.exists() and not dead.exists()
    finally:
        held.close()
    entry = next(p for p in cache.dir.iterdir() if not p.name.startswith("."))
    assert sorted(p.name for p in entry.iterdir()) == ["images.npy", "meta.json"]


def test_no_room_on_disk_falls_back_to_decoding_in_line(folder, tmp_path, monkeypatch):
    dataset = ImageFolder(path=folder).load("test")
    adapter = SynthCNNAdapter()
    reference, _ = _run(adapter, dataset, tmp_path / "ref", decode_cache=False)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dec.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    with pytest.warns(UserWarning, match="not caching decoded"):
        preds, _ = _run(adapter, dataset, tmp_path / "full")
    assert DecodedCache(tmp_path / "full").entries() == []
    np.testing.assert_array_equal(preds.outputs["expression"], reference.outputs["expression"])


def test_resumed_run_uses_the_cache_only_when_it_exists(folder, tmp_path):
    """A run resumed from shards with no cache decodes its remaining images in line (building the whole
    split's cache for a few images would cost more); it still equals an uninterrupted run."""
    dataset = ImageFolder(path=folder).load("test")
    adapter = SynthCNNAdapter()
    reference, _ = _run(adapter, dataset, tmp_path / "ref")
    store = PredictionStore(tmp_path / "r")
    key = prediction_key(adapter, dataset, store)
    store.write_shard(key, 0, reference.ids[:16], {k: v[:16] for k, v in reference.outputs.items()})
    resumed, report = _run(adapter, dataset, tmp_path / "r")
    assert report.resumed_samples == 16 and DecodedCache(tmp_path / "r").entries() == []
    np.testing.assert_array_equal(resumed.outputs["expression"], reference.outputs["expression"])


def test_cached_images_rows_subsets_batches_and_pickling(tmp_path):
    array = np.arange(6 * 1 * 2 * 2, dtype=np.uint8).reshape(6, 1, 2, 2)
    np.save(tmp_path / "images.npy", array)
    images = CachedImages(tmp_path / "images.npy")
    assert len(images) == 6 and images.load(2).shape == (2, 2, 1)
    np.testing.assert_array_equal(images.load(2)[..., 0], array[2, 0])
    sub = images.subset([5, 1, 2, 3])
    np.testing.assert_array_equal(sub.batch(0, 4).numpy(), array[[5, 1, 2, 3]])
    np.testing.assert_array_equal(sub.batch(1, 4).numpy(), array[1:4])  # contiguous rows: a slice
    np.testing.assert_array_equal(sub.subset([0, 2]).batch(0, 2).numpy(), array[[5, 2]])
    images.array  # opened
    clone = pickle.loads(pickle.dumps(sub))
    assert clone._array is None and len(pickle.dumps(sub)) < 1000  # pickles by path, not by pixels
    np.testing.assert_array_equal(clone.batch(0, 4).numpy(), array[[5, 1, 2, 3]])


# -- forward options ------------------------------------------------------------------------------
class _Greedy(ModelAdapter):
    """Sums pixels; raises an out-of-memory error for batches larger than ``limit``."""

    name = "greedy"

    def __init__(self, limit):
        super().__init__(limit=limit)
        from facebench.data.preprocess import InputSpec

        self.input_spec = InputSpec(size=(4, 4), channels=1, mean=(0.0,), std=(1.0,))
        self.heads = {"expression": Head("expression", ("a", "b"))}
        self.default_head = "expression"
        self.limit, self.sizes = limit, []

    def forward(self, batch, heads, features):
        self.sizes.append(batch.shape[0])
        if batch.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        s = batch.flatten(1).sum(1, keepdim=True)
        return {"expression": torch.cat([s, -s], 1)}


def test_out_of_memory_halves_the_batch_and_keeps_every_sample():
    adapter = _Greedy(limit=3)
    forward = _Forward(adapter, ("expression",), False, _settings(), torch.device("cpu"), _nullcontext())
    x = torch.arange(10 * 16, dtype=torch.float32).reshape(10, 1, 4, 4)
    out = forward(x)["expression"]
    np.testing.assert_array_equal(out[:, 0].numpy(), x.flatten(1).sum(1).numpy())
    assert forward.halvings == [4, 2] and forward.micro == 2
    assert adapter.sizes[:3] == [8, 4, 2]  # the first batch was split until it fitted
    adapter.sizes.clear()
    forward(x[:6])
    assert adapter.sizes == [2, 2, 2]  # the smaller size is kept


class _GraphReplay(_Greedy):
    """Like a CUDA-graph replay: every call writes its outputs into the same static buffer."""

    def forward(self, batch, heads, features):
        out = super().forward(batch, heads, features)["expression"]
        if not hasattr(self, "static"):
            self.static = torch.empty(64, 2)
        self.static[: len(out)] = out
        return {"expression": self.static[: len(out)]}


def test_out_of_memory_under_cuda_graphs_keeps_each_part():
    adapter = _GraphReplay(limit=3)
    forward = _Forward(adapter, ("expression",), False, _settings(), torch.device("cpu"), _nullcontext())
    forward.compiled = True  # as after adapter.compile(mode="reduce-overhead")
    adapter.uncompile = lambda: None
    x = torch.arange(10 * 16, dtype=torch.float32).reshape(10, 1, 4, 4)
    out = forward(x)["expression"]
    np.testing.assert_array_equal(out[:, 0].numpy(), x.flatten(1).sum(1).numpy())


def test_out_of_memory_with_one_image_says_what_to_do():
    forward = _Forward(_Greedy(limit=0), ("expression",), False, _settings(), torch.device("cpu"), _nullcontext())
    with pytest.raises(ModelError, match="single image"):
        forward(torch.zeros(3, 1, 4, 4))


def test_other_errors_are_not_mistaken_for_out_of_memory():
    class Broken(_Greedy):
        def forward(self, batch, heads, features):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    forward = _Forward(Broken(limit=9), ("expression",), False, _settings(), torch.device("cpu"), _nullcontext())
    with pytest.raises(RuntimeError, match="shapes"):
        forward(torch.zeros(3, 1, 4, 4))
    assert forward.halvings == []


def test_channels_last_and_compile_give_the_same_predictions(tmp_path, monkeypatch):
    from facebench.data.synthetic import SynthFaces

    dataset = SynthFaces(n=40).load("test")
    reference, _ = _run(SynthCNNAdapter(), dataset, tmp_path / "a")
    cl, _ = _run(SynthCNNAdapter(), dataset, tmp_path / "b", channels_last=True)
    np.testing.assert_allclose(cl.outputs["expression"], reference.outputs["expression"], atol=1e-5)
    # torch.compile with the eager backend (no C++ compiler needed): the wiring, not inductor
    real_compile = torch.compile
    used = {}

    def eager_compile(fn, mode=None, backend="inductor"):
        used["mode"] = mode
        return real_compile(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    adapter = SynthCNNAdapter()
    compiled, _ = _run(adapter, dataset, tmp_path / "c", compile="reduce-overhead")
    assert used == {"mode": "reduce-overhead"} and adapter._compiled_forward is None  # undone after the run
    np.testing.assert_allclose(compiled.outputs["expression"], reference.outputs["expression"], atol=1e-5)


def test_a_failing_compile_falls_back_to_eager(tmp_path, monkeypatch):
    from facebench.data.synthetic import SynthFaces

    dataset = SynthFaces(n=20).load("test")
    reference, _ = _run(SynthCNNAdapter(), dataset, tmp_path / "a")

    def broken_compile(fn, mode=None, backend="inductor"):
        def run(*args):
            raise RuntimeError("InductorError: no working C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="running it eagerly"):
        preds, _ = _run(SynthCNNAdapter(), dataset, tmp_path / "b", compile=True)
    np.testing.assert_array_equal(preds.outputs["expression"], reference.outputs["expression"])


def test_mixed_precision_is_part_of_the_store_key(tmp_path):
    from facebench.data.synthetic import SynthFaces

    dataset = SynthFaces(n=24).load("test")
    adapter = SynthCNNAdapter()
    store = PredictionStore(tmp_path)
    keys = {amp: prediction_key(adapter, dataset, store, amp) for amp in ("none", None, False, "bf16", True)}
    assert keys["none"] == keys[None] == keys[False] == prediction_key(adapter, dataset, store)
    assert keys["bf16"] == keys[True] != keys["none"]
    fp32, _ = _run(adapter, dataset, tmp_path)
    bf16, report = _run(adapter, dataset, tmp_path, amp="bf16")
    assert not report.reused and report.key == keys["bf16"]  # not served from the fp32 entry
    assert np.abs(bf16.outputs["expression"] - fp32.outputs["expression"]).max() < 0.1


def test_cli_flags_reach_the_suite_defaults():
    from facebench.cli import _overrides, build_parser

    args = build_parser().parse_args(["run", "s.yaml", "--decode-cache", "off", "--channels-last", "--compile"])
    o = _overrides(args)
    assert (o["decode_cache"], o["channels_last"], o["compile"]) == (False, True, True)
    args = build_parser().parse_args(["run", "s.yaml", "--compile", "max-autotune"])
    o = _overrides(args)
    assert o["compile"] == "max-autotune" and "decode_cache" not in o and "channels_last" not in o


def test_cache_command_lists_and_clears_decoded_entries(folder, tmp_path, capsys):
    from facebench.cli import main

    dataset = ImageFolder(path=folder).load("test")
    _run(SynthCNNAdapter(), dataset, tmp_path / "c")
    assert main(["cache", "ls", "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "decoded-image cache" in out and "imagefolder/test" in out and "uint8 21x3x48x48" in out
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "c"), "--only", "decoded"]) == 0
    assert DecodedCache(tmp_path / "c").entries() == [] and PredictionStore(tmp_path / "c").entries()
    shutil.rmtree(tmp_path / "c")


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()
