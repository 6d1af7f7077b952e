import numpy as np
import pytest

from facebench.engine.store import PredictionStore, Predictions
from facebench.errors import ModelError


def test_save_load_and_outputs(tmp_path):
    store = PredictionStore(tmp_path)
    key = store.key("m", "p", "d")
    assert not store.has(key, ["expression"])
    preds = Predictions(np.array(["b", "a"]), {"expression": np.arange(4, dtype=np.float32).reshape(2, 2)})
    store.save(key, preds, {"model": "m"})
    assert store.has(key, ["expression"]) and not store.has(key, ["expression", "features"])
    loaded = store.load(key)
    assert loaded.ids.tolist() == ["b", "a"]
    aligned = loaded.align(np.array(["a", "b"]))
    assert aligned.outputs["expression"].tolist() == [[2, 3], [0, 1]]
    with pytest.raises(KeyError, match="no stored prediction"):
        loaded.align(np.array(["c"]))
    assert [r["key"] for r in store.entries()] == [key]
    assert store.clear() == 1 and store.entries() == []


def test_shards_and_no_temp_files_left(tmp_path):
    store = PredictionStore(tmp_path)
    store.write_shard("k", 0, np.array(["a"]), {"h": np.zeros((1, 2))})
    store.write_shard("k", 1, np.array(["b"]), {"h": np.ones((1, 2))})
    ids, outs, nxt = store.read_shards("k", ["h"])
    assert [i.tolist() for i in ids] == [["a"], ["b"]] and nxt == 2
    ids, _, _ = store.read_shards("k", ["h", "features"])
    assert ids == []  # shards without the requested outputs are not used
    assert not list(tmp_path.rglob("*.tmp"))


def test_corrupt_shard_is_ignored(tmp_path):
    store = PredictionStore(tmp_path)
    store.write_shard("k", 0, np.array(["a"]), {"h": np.zeros((1, 2))})
    (store.entry_dir("k") / "shards" / "shard-000001.npz").write_bytes(b"garbage")
    ids, _, nxt = store.read_shards("k", ["h"])
    assert len(ids) == 1 and nxt == 2


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path / "x"))
    assert PredictionStore().root == tmp_path / "x"


def test_every_kind_of_broken_shard_is_skipped_and_the_rest_is_read(tmp_path):
    store = PredictionStore(tmp_path)
    store.write_shard("k", 0, np.array(["a0", "a1"]), {"h": np.zeros((2, 2)), "f": np.zeros((2, 3))})
    store.write_shard("k", 1, np.array(["b0", "b1"]), {"h": np.ones((2, 2)), "f": np.ones((2, 3))})
    store.write_shard("k", 2, np.array(["c0", "c1"]), {"h": np.full((2, 2), 2.0), "f": np.full((2, 3), 2.0)})
    store.write_shard("k", 3, np.array(["d0", "d1"]), {"h": np.zeros((2, 2)), "f": np.zeros((1, 3))})  # rows differ
    shard_dir = store.entry_dir("k") / "shards"
    good = (shard_dir / "shard-000001.npz").read_bytes()
    (shard_dir / "shard-000001.npz").write_bytes(good[: len(good) // 2])  # truncated: BadZipFile
    (shard_dir / "shard-000004.npz").write_bytes(b"")  # empty: EOFError
    (shard_dir / "shard-000005.npz").write_bytes(b"not a zip at all" * 10)
    ids, outs, nxt = store.read_shards("k", ["h", "f"])
    assert [i.tolist() for i in ids] == [["a0", "a1"], ["c0", "c1"]]
    assert [o[0, 0] for o in outs["h"]] == [0.0, 2.0] and [o[0, 0] for o in outs["f"]] == [0.0, 2.0]
    assert nxt == 6  # new shards never overwrite the broken ones' names


def test_predictions_refuse_outputs_with_other_row_counts():
    with pytest.raises(ModelError, match="other row counts"):
        Predictions(np.array(["a", "b"]), {"h": np.zeros((2, 2)), "f": np.zeros((1, 3))})


def test_an_interruption_between_two_outputs_loses_nothing_on_resume(tmp_path, monkeypatch):
    """Ctrl-C (or out of memory) while the second output of a batch is copied: the shard flushed
    on the way out holds whole batches only, and the resumed entry equals an uninterrupted run."""
    from facebench.data.synthetic import SynthFaces
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.models.synth_cnn import SynthCNNAdapter

    class Interrupting(dict):
        def __getitem__(self, name):
            if name == "features":
                raise KeyboardInterrupt("while copying the second output")
            return super().__getitem__(name)

    adapter = SynthCNNAdapter()
    forward, calls = adapter.forward, []

    def flaky_forward(batch, heads, features):
        out = forward(batch, heads, features)
        calls.append(1)
        return Interrupting(out) if len(calls) == 4 else out

    dataset = SynthFaces(n=40).load("test")
    settings = InferenceSettings(batch_size=8, device="cpu", progress=False, shard_size=16)
    ref, _ = run_inference(SynthCNNAdapter(), dataset, PredictionStore(tmp_path / "ref"), heads=("expression",),
                           features=True, settings=settings)
    store = PredictionStore(tmp_path / "run")
    monkeypatch.setattr(adapter, "forward", flaky_forward)
    with pytest.raises(KeyboardInterrupt):
        run_inference(adapter, dataset, store, heads=("expression",), features=True, settings=settings)
    monkeypatch.undo()
    got, report = run_inference(SynthCNNAdapter(), dataset, store, heads=("expression",), features=True,
                                settings=settings)
    assert report.resumed_samples == 24 and report.computed_samples == 16
    for name in ("expression", "features"):
        np.testing.assert_array_equal(got.align(ref.ids).outputs[name], ref.outputs[name])
