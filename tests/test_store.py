import numpy as np
import pytest

from facebench.engine.store import PredictionStore, Predictions


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
