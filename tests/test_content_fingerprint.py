"""Content-addressed fingerprints: file hashes behind the stat cache, datasets keyed by pixels,
models keyed by every file they are read from (external data, sidecars, checkpoints) and their code.

Oracles: hashlib.blake2b over the files' bytes (computed here, not by facebench), and runs that
must recompute (new store key, other predictions) or reuse.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import facebench.content as content
from facebench.data.dataset import Dataset
from facebench.data.generic import ImageFolder
from facebench.data.images import ArrayImages, FileImages
from facebench.data.transforms import TransformedImages
from facebench.engine.decoded import DecodedCache
from facebench.engine.store import PredictionStore
from facebench.runner import run_suite

CLASSES = ("happy", "sad", "neutral")
SUITE = """\
name: files
defaults:
  batch_size: 16
  bootstrap: 10
  shard_size: 64
  device: cpu
tasks:
  - name: folder
    dataset: imagefolder
    split: test
    protocol: closed_set
    path: {path}
"""


def blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@pytest.fixture
def warm_ok(monkeypatch):
    """Files written by the test are seconds old at most: let the stat cache remember them anyway."""
    monkeypatch.setattr(content, "RACY_WINDOW_NS", 0)


@pytest.fixture
def count_reads(monkeypatch):
    """Counts the files whose bytes ``facebench.content`` reads."""
    calls: list[str] = []
    real = content.hash_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(content, "hash_file", counting)
    return calls


def _png(path, seed, size=(48, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _folder(root, n=4):
    for c, cls in enumerate(CLASSES):
        for i in range(n):
            _png(root / "test" / cls / f"{i:02d}.png", 10 * c + i)
    return root


def _replace_class(root, cls, seed):
    """New pixels under the same file names (and the same byte sizes would not matter)."""
    for i, path in enumerate(sorted((root / "test" / cls).iterdir())):
        _png(path, 1000 + seed + i)


# -- the hasher -----------------------------------------------------------------------------------
def test_file_digests_are_blake2b_of_the_bytes(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(5)]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * content.READ_CHUNK + 17))  # several read chunks
    paths.append(big)
    got = content.file_digests(paths)
    assert got.shape == (6, 16) and got.dtype == np.uint8
    for row, path in zip(got, paths):
        assert row.tobytes() == blake(path.read_bytes())
    assert content.file_digest(big) == blake(big.read_bytes())


def test_missing_and_unreadable_files_hash_to_markers(tmp_path):
    (tmp_path / "a_dir.png").mkdir()  # a folder where a file should be: cannot be read as one
    got = content.file_digests([tmp_path / "gone.png", tmp_path / "a_dir.png"])
    assert got[0].tobytes() == content.MISSING and got[1].tobytes() == content.UNREADABLE
    assert content.MISSING != content.UNREADABLE
    assert not list((tmp_path / "cache" / "hashes").rglob("*.npz"))  # markers are never remembered


def test_warm_stat_cache_reads_no_file(tmp_path, warm_ok, count_reads):
    paths = [_png(tmp_path / "imgs" / f"{i}.png", i) for i in range(100)]  # > PARALLEL_MIN: the threaded path
    first = content.file_digests(paths)
    assert len(count_reads) == 100
    assert len(list((tmp_path / "cache" / "hashes").glob("*.npz"))) == 1  # one cache file per folder
    assert len(list((tmp_path / "cache" / "hashes" / "lists").glob("*.npz"))) == 1  # one snapshot per list
    count_reads.clear()
    assert np.array_equal(content.file_digests(paths), first)
    assert count_reads == []
    # one file rewritten: only it is read again
    _png(paths[7], 999)
    again = content.file_digests(paths)
    assert [os.path.basename(p) for p in count_reads] == ["7.png"]
    assert again[7].tobytes() == blake(paths[7].read_bytes()) != first[7].tobytes()
    assert np.array_equal(np.delete(again, 7, 0), np.delete(first, 7, 0))


def test_racily_clean_files_are_not_remembered(tmp_path, count_reads):
    path = _png(tmp_path / "new.png", 1)  # just written: inside the racy window
    content.file_digests([path])
    content.file_digests([path])
    assert len(count_reads) == 2
    old = 1_000_000_000 * 1_000_000_000  # mtime far in the past does not help: ctime is new too
    os.utime(path, ns=(old, old))
    content.file_digests([path])
    assert len(count_reads) == 3


def test_touch_keeps_the_digest_and_same_size_rewrite_with_old_mtime_changes_it(tmp_path, warm_ok, count_reads):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 64)
    st = os.stat(path)
    d0 = content.file_digest(path)
    os.utime(path, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns + 10**9))  # touch: same bytes
    assert content.file_digest(path) == d0
    # same size, other bytes, mtime put back: ctime still moves, so the file is read again
    path.write_bytes(b"b" * 64)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content.file_digest(path) == blake(b"b" * 64) != d0


def test_symlink_swapped_to_another_target(tmp_path, warm_ok):
    a, b = _png(tmp_path / "a.png", 1), _png(tmp_path / "b.png", 2)
    link = tmp_path / "link.png"
    link.symlink_to(a)
    assert content.file_digest(link) == blake(a.read_bytes())
    link.unlink()
    link.symlink_to(b)
    assert content.file_digest(link) == blake(b.read_bytes())


def test_corrupt_or_foreign_cache_files_count_as_empty(tmp_path, warm_ok, count_reads):
    paths = [_png(tmp_path / "imgs" / f"{i}.png", i) for i in range(3)]
    want = content.file_digests(paths)
    hashes = tmp_path / "cache" / "hashes"
    files = sorted(p for p in hashes.rglob("*.npz"))
    assert len(files) == 2  # the folder's cache and the list's snapshot
    for f in files:
        f.write_bytes(b"not an npz at all")
    count_reads.clear()
    assert np.array_equal(content.file_digests(paths), want) and len(count_reads) == 3
    # the cache file of another folder put in place of this folder's (and no snapshot): ignored, not trusted
    other = [_png(tmp_path / "other" / f"{i}.png", i + 50) for i in range(3)]
    content.file_digests(other)
    shutil.copy(content._cache_file(os.path.abspath(tmp_path / "other")),
                content._cache_file(os.path.abspath(tmp_path / "imgs")))
    for f in (hashes / "lists").iterdir():
        f.unlink()
    count_reads.clear()
    assert np.array_equal(content.file_digests(paths), want) and len(count_reads) == 3
    # the caches were rewritten: warm again
    count_reads.clear()
    assert np.array_equal(content.file_digests(paths), want) and count_reads == []


def test_per_folder_cache_serves_another_list_of_the_same_files(tmp_path, warm_ok, count_reads):
    paths = [_png(tmp_path / "imgs" / f"{i}.png", i) for i in range(6)]
    want = content.file_digests(paths)
    count_reads.clear()
    subset = [paths[4], paths[1], paths[2]]  # a new list (no snapshot yet) of known files
    assert np.array_equal(content.file_digests(subset), want[[4, 1, 2]]) and count_reads == []


def test_unwritable_cache_root_still_hashes(tmp_path, warm_ok):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    content.set_cache_root(blocker)
    try:
        path = _png(tmp_path / "x.png", 3)
        assert content.file_digest(path) == blake(path.read_bytes())
    finally:
        content.set_cache_root(None)
    assert blocker.read_text() == "a file where the cache folder should be"


def test_cache_root_follows_set_cache_root(tmp_path, warm_ok):
    content.set_cache_root(tmp_path / "elsewhere")
    try:
        content.file_digest(_png(tmp_path / "y.png", 4))
    finally:
        content.set_cache_root(None)
    assert len(list((tmp_path / "elsewhere" / "hashes").rglob("*.npz"))) == 2  # the folder's and the list's
    assert not (tmp_path / "cache" / "hashes").exists()


def test_code_digest_hashes_facebench_source_files_only():
    from facebench.models.synth_cnn import SynthCNNAdapter
    import facebench.models.synth_cnn as mod

    own = content.code_digest([SynthCNNAdapter])
    with open(mod.__file__, "rb") as f:
        expected = content.combine(mod.__name__, blake(f.read()))
    assert own == expected
    assert content.code_digest([SynthCNNAdapter, torch.nn.Linear]) == own  # torch is not facebench's code


# -- datasets -------------------------------------------------------------------------------------
def test_dataset_fingerprint_covers_image_bytes_not_mtimes(tmp_path, warm_ok):
    root = _folder(tmp_path / "faces")
    fp = ImageFolder(path=root).load("test").fingerprint()
    for path in (root / "test" / "sad").iterdir():  # touch: same bytes
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    assert ImageFolder(path=root).load("test").fingerprint() == fp
    _png(root / "test" / "sad" / "01.png", 777)  # other pixels, same name
    assert ImageFolder(path=root).load("test").fingerprint() != fp


def test_dataset_fingerprint_is_memoised(tmp_path, monkeypatch):
    root = _folder(tmp_path / "faces", n=2)
    ds = ImageFolder(path=root).load("test")
    calls = []
    real = content.file_digests
    monkeypatch.setattr(content, "file_digests", lambda paths: calls.append(list(paths)) or real(paths))
    fp = ds.fingerprint()
    assert [len(c) for c in calls].count(len(ds)) == 1  # the images, once (plus the decoder's source file)
    n = len(calls)
    assert ds.fingerprint() == fp and len(calls) == n  # the second call hashes nothing


def test_array_images_fingerprint_covers_pixels_and_not_order():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    ids = np.array([f"s{i}" for i in range(6)])
    labels = np.array(["a", "b"] * 3)

    def ds(arr, order=np.arange(6)):
        return Dataset("toy", "test", ids[order], ("a", "b"), labels[order], ArrayImages(arr[order]))

    fp = ds(array).fingerprint()
    assert ds(array, np.array([5, 3, 1, 0, 2, 4])).fingerprint() == fp  # same samples, other order
    changed = array.copy()
    changed[4, 2, 2, 1] ^= 1  # one bit of one pixel
    assert ds(changed).fingerprint() != fp



def test_annotations_fingerprint_covers_attributes_and_pairs_not_order():
    """Attributes and pairs are what fairness and verification read beside labels and pixels: any change in
    them changes the annotations fingerprint (never the dataset fingerprint, which keys stored predictions);
    the rows' order does not; a split with neither has none. Oracle for the pairs: the hand-made pair lists."""
    array = np.zeros((4, 8, 8, 3), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None]
    ids = np.array(["s0", "s1", "s2", "s3"])

    def ds(order=np.arange(4), race=("a", "b", "a", "b"), age=(20, 30, 40, 50), pairs=None):
        attributes = {"race": np.array(race)[order], "age": np.array(age)[order]}
        if pairs is not None:  # pairs name image positions: follow the rows' new order
            where = {int(o): i for i, o in enumerate(order)}
            pairs = {"a": np.array([where[a] for a in pairs[0]]), "b": np.array([where[b] for b in pairs[1]]),
                     "same": np.array(pairs[2]), "fold": np.array(pairs[3])}
        return Dataset("toy", "test", ids[order], (), None, ArrayImages(array[order]), attributes=attributes,
                       pairs=pairs)

    plain = Dataset("toy", "test", ids, (), None, ArrayImages(array))
    assert plain.annotations_fingerprint() is None
    base = ds().annotations_fingerprint()
    assert ds(np.array([2, 0, 3, 1])).annotations_fingerprint() == base
    assert ds(race=("a", "b", "b", "b")).annotations_fingerprint() != base
    assert ds(age=(20, 30, 40, 51)).annotations_fingerprint() != base
    assert ds().fingerprint() == ds(race=("a", "b", "b", "b")).fingerprint()  # predictions stay valid
    pairs = ([0, 2], [1, 3], [True, False], [1, 2])
    with_pairs = ds(pairs=pairs).annotations_fingerprint()
    assert with_pairs != base and ds(np.array([3, 1, 0, 2]), pairs=pairs).annotations_fingerprint() == with_pairs
    assert ds(pairs=([0, 2], [1, 3], [True, True], [1, 2])).annotations_fingerprint() != with_pairs
    assert ds(pairs=([0, 2], [1, 3], [True, False], [1, 1])).annotations_fingerprint() != with_pairs
    assert ds(pairs=([0, 2], [3, 1], [True, False], [1, 2])).annotations_fingerprint() != with_pairs


def test_annotations_fingerprint_follows_values_not_storage():
    """The same attribute values stored another way (a wider string dtype, because another split of the file had
    a longer value; int32 on one platform, int64 on another; NaN from 0/0 or from np.nan; -0.0) hash the same;
    a pair list's groups count."""
    array = np.zeros((3, 4, 4, 3), np.uint8)

    def fp(pairs=None, **attributes):
        return Dataset("toy", "test", np.array(["a", "b", "c"]), (), None, ArrayImages(array),
                       attributes=attributes, pairs=pairs).annotations_fingerprint()

    assert fp(race=np.array(["x", "y", "x"], dtype="<U1")) == fp(race=np.array(["x", "y", "x"], dtype="<U11"))
    assert fp(race=np.array(["x", "y", "x"], dtype=object)) == fp(race=np.array(["x", "y", "x"]))
    assert fp(age=np.array([20, 30, 40], np.int32)) == fp(age=np.array([20, 30, 40], np.int64))
    with np.errstate(invalid="ignore"):
        computed_nan = np.zeros(1) / np.zeros(1)
    assert fp(score=np.array([0.5, computed_nan[0], 0.0])) == fp(score=np.array([0.5, np.nan, -0.0]))
    assert fp(score=np.array([0.5, np.nan, 0.0])) != fp(score=np.array([0.5, 1.0, 0.0]))
    assert fp(flag=np.array([True, False, True])) != fp(flag=np.array([True, True, True]))
    assert fp(age=np.array([20, 30, 40])) != fp(age=np.array(["20", "30", "40"]))  # a number is not its text
    pairs = {"a": np.array([0]), "b": np.array([1]), "same": np.array([True]), "fold": np.array([1])}
    assert fp({**pairs, "group": np.array(["g1"])}) != fp({**pairs, "group": np.array(["g2"])}) != fp(pairs)

def test_generated_data_is_fingerprinted_by_its_tag_not_its_bytes():
    """The synthetic faces and procedural noise: the same fingerprint on every machine (CI baselines)."""
    from facebench.data.nonfaces import NoiseImages

    a, b = np.zeros((2, 4, 4, 1), np.uint8), np.ones((2, 4, 4, 1), np.uint8)
    ids = np.array(["x", "y"])
    tagged = [Dataset("g", "test", ids, (), None, ArrayImages(arr), content_tag={"generator": 3}) for arr in (a, b)]
    assert tagged[0].fingerprint() == tagged[1].fingerprint()
    untagged = [Dataset("g", "test", ids, (), None, ArrayImages(arr)) for arr in (a, b)]
    assert untagged[0].fingerprint() != untagged[1].fingerprint()
    noise = NoiseImages(n=4).load("test")
    assert noise.images.generated and noise.fingerprint() == NoiseImages(n=4).load("test").fingerprint()
    assert noise.fingerprint() != NoiseImages(n=4, seed=1).load("test").fingerprint()


def test_transformed_and_labels_only_sources(tmp_path, warm_ok):
    paths = [_png(tmp_path / f"{i}.png", i) for i in range(3)]
    spec = {"name": "gaussian_noise", "severity": 2, "seed": 0}
    before = TransformedImages(FileImages(paths), spec).content_fingerprint()
    assert TransformedImages(FileImages(paths), {**spec, "seed": 1}).content_fingerprint() != before
    _png(paths[2], 99)
    assert TransformedImages(FileImages(paths), spec).content_fingerprint() != before

    class NoContent:  # e.g. a labels-only placeholder: nothing to hash, the fingerprint still works
        def __len__(self):
            return 3

    assert TransformedImages(NoContent(), spec).content_fingerprint() is None
    Dataset("x", "test", np.array(["a", "b", "c"]), (), None, NoContent()).fingerprint()


def test_decoded_cache_key_follows_content(tmp_path, warm_ok):
    from facebench.models.synth_cnn import SynthCNNAdapter

    root = _folder(tmp_path / "faces", n=2)
    spec = SynthCNNAdapter.input_spec
    cache = DecodedCache(tmp_path / "cache")
    key = cache.key(ImageFolder(path=root).load("test"), spec)
    path = root / "test" / "happy" / "00.png"
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.key(ImageFolder(path=root).load("test"), spec) == key  # touched: same bytes
    _png(path, 4242)
    assert cache.key(ImageFolder(path=root).load("test"), spec) != key


def test_replaced_images_mean_new_predictions_in_the_next_run(tmp_path, warm_ok):
    root = _folder(tmp_path / "faces")
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(path=root.as_posix()))
    logs: list[str] = []
    first = run_suite(suite, "synth-cnn", out=tmp_path / "r1", progress=False, log=logs.append)
    same = run_suite(suite, "synth-cnn", out=tmp_path / "r2", progress=False, log=logs.append)
    assert any("reused stored predictions" in m for m in logs)  # unchanged files: reused
    assert same.manifest["store_keys"] == first.manifest["store_keys"]
    _replace_class(root, "sad", seed=5)  # other pixels under the same names
    logs.clear()
    again = run_suite(suite, "synth-cnn", out=tmp_path / "r3", progress=False, log=logs.append)
    assert not any("reused" in m for m in logs)
    key1, key3 = first.manifest["store_keys"]["folder"], again.manifest["store_keys"]["folder"]
    assert key1 != key3
    assert again.manifest["timings"]["folder"]["reused"] is False
    store = PredictionStore(tmp_path / "cache")
    p1, p3 = store.load(key1).align(np.array(sorted(store.load(key1).ids))), store.load(key3)
    p3 = p3.align(p1.ids)
    sad = np.char.startswith(p1.ids.astype(str), "sad/")
    assert not np.allclose(p1.outputs["expression"][sad], p3.outputs["expression"][sad])
    np.testing.assert_allclose(p1.outputs["expression"][~sad], p3.outputs["expression"][~sad], rtol=1e-5, atol=1e-6)
    (row1,), (row3,) = first.results["tasks"], again.results["tasks"]
    assert row1["fingerprints"]["dataset"] != row3["fingerprints"]["dataset"]


# -- models ---------------------------------------------------------------------------------------
def _onnx_model(path, weight):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(weight.astype(np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    return path


def test_onnx_external_data_file_is_in_the_model_fingerprint(tmp_path, warm_ok):
    pytest.importorskip("onnxruntime")
    from facebench.models.generic import OnnxAdapter, onnx_external_data

    rng = np.random.default_rng(0)
    path = _onnx_model(tmp_path / "m" / "model.onnx", rng.normal(size=(48, 7)))
    assert onnx_external_data(path) == [tmp_path / "m" / "model.onnx.data"]
    fp = OnnxAdapter(file=str(path), classes="rafdb").fingerprint()
    assert OnnxAdapter(file=str(path), classes="rafdb").fingerprint() == fp
    graph_bytes = path.read_bytes()
    other = _onnx_model(tmp_path / "o" / "model.onnx", rng.normal(size=(48, 7)))
    assert other.read_bytes() == graph_bytes  # the graph file is the same: only the weights differ
    shutil.copy(tmp_path / "o" / "model.onnx.data", tmp_path / "m" / "model.onnx.data")
    assert path.read_bytes() == graph_bytes
    assert OnnxAdapter(file=str(path), classes="rafdb").fingerprint() != fp


def test_onnx_external_data_conventions_without_the_onnx_package(tmp_path, monkeypatch):
    from facebench.models.generic import onnx_external_data

    path = _onnx_model(tmp_path / "model.onnx", np.ones((48, 7)))
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx fails
    assert onnx_external_data(path) == [tmp_path / "model.onnx.data"]
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(b"\x08\x07 no external tensors here")
    assert onnx_external_data(plain) == []


def test_torchscript_file_and_sidecar_are_in_the_fingerprint(tmp_path, warm_ok):
    from facebench.models.generic import TorchScriptAdapter

    def save(seed):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 7))
        torch.jit.save(torch.jit.script(net), str(tmp_path / "m.pt"))

    save(0)
    args = dict(file=str(tmp_path / "m.pt"), size=8, classes="rafdb")
    fp = TorchScriptAdapter(**args).fingerprint()
    (tmp_path / "m.pt.json").write_text('{"output": "logits"}')  # a sidecar that changes no setting
    with_sidecar = TorchScriptAdapter(**args).fingerprint()
    assert with_sidecar != fp
    save(1)
    assert TorchScriptAdapter(**args).fingerprint() not in (fp, with_sidecar)


def test_state_dict_checkpoint_is_in_the_fingerprint(tmp_path, warm_ok, count_reads):
    from facebench.models.synth_cnn import DEFAULT_WEIGHTS, SynthCNNAdapter

    ckpt = tmp_path / "w.pt"
    shutil.copy(DEFAULT_WEIGHTS, ckpt)
    fp = SynthCNNAdapter(weights=str(ckpt)).fingerprint()
    st = os.stat(ckpt)
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    assert SynthCNNAdapter(weights=str(ckpt)).fingerprint() == fp
    state = torch.load(ckpt, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 1e-3
    torch.save(state, ckpt)
    assert SynthCNNAdapter(weights=str(ckpt)).fingerprint() != fp
    count_reads.clear()
    SynthCNNAdapter(weights=str(ckpt)).fingerprint()
    assert str(ckpt) not in count_reads  # warm: the checkpoint file is not read again for its digest


def test_checkpoint_file_bytes_count_even_when_the_loaded_weights_are_equal(tmp_path, warm_ok, monkeypatch):
    """A checkpoint file re-saved with extra content (e.g. other metadata) is another file: new fingerprint,
    although the state dict the adapter loads is the same tensor for tensor."""
    from facebench.models.synth_cnn import DEFAULT_WEIGHTS, SynthCNNAdapter

    ckpt = tmp_path / "w.pt"
    shutil.copy(DEFAULT_WEIGHTS, ckpt)
    adapter = SynthCNNAdapter(weights=str(ckpt))
    fp = adapter.fingerprint()
    with open(ckpt, "ab") as f:
        f.write(b"\0trailing bytes torch.load ignores")
    fresh = SynthCNNAdapter(weights=str(ckpt))
    assert all(torch.equal(a, b) for a, b in zip(adapter.module.state_dict().values(),
                                                 fresh.module.state_dict().values()))
    assert fresh.fingerprint() != fp


def test_adapter_code_version_is_in_the_fingerprint(monkeypatch):
    from facebench.models.synth_cnn import SynthCNNAdapter

    fp = SynthCNNAdapter().fingerprint()
    monkeypatch.setattr(content, "code_digest", lambda objects: "another version of the code")
    assert SynthCNNAdapter().fingerprint() != fp


def test_python_adapter_source_file_is_in_the_fingerprint(tmp_path, warm_ok):
    from facebench.models.generic import PythonAdapter

    src = tmp_path / "user_model.py"
    body = ("import torch\n"
            "def build():\n"
            "    torch.manual_seed(0)\n"
            "    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 7))\n"
            "    return net, {'size': 8, 'classes': 'rafdb'}\n")
    src.write_text(body)
    fp = PythonAdapter(target=f"{src}:build").fingerprint()
    src.write_text(body + "# an edit that changes no weight\n")
    assert PythonAdapter(target=f"{src}:build").fingerprint() != fp


# -- per-sample keys ------------------------------------------------------------------------------------
def test_editing_one_image_recomputes_that_sample_only(tmp_path, warm_ok):
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.models.synth_cnn import SynthCNNAdapter

    root = _folder(tmp_path / "faces")
    adapter = SynthCNNAdapter()
    settings = InferenceSettings(batch_size=4, shard_size=64, progress=False, device="cpu")
    store = PredictionStore(tmp_path / "cache")
    first, report = run_inference(adapter, ImageFolder(path=root).load("test"), store, heads=("expression",),
                                  settings=settings)
    assert report.computed_samples == 12
    _png(root / "test" / "sad" / "02.png", 4321)  # one image edited
    ds = ImageFolder(path=root).load("test")
    again, report = run_inference(adapter, ds, store, heads=("expression",), settings=settings)
    assert (report.reused, report.computed_samples, report.resumed_samples) == (False, 1, 11)
    # oracle: a fresh store computes the whole edited split
    fresh, _ = run_inference(adapter, ImageFolder(path=root).load("test"), PredictionStore(tmp_path / "fresh"),
                             heads=("expression",), settings=settings)
    np.testing.assert_allclose(again.outputs["expression"], fresh.outputs["expression"], rtol=1e-5, atol=1e-5)
    edited = ds.ids == "sad/02.png"
    assert not np.allclose(again.outputs["expression"][edited], first.outputs["expression"][edited])
    # and the finished entry is complete: the next run reuses it whole
    _, report = run_inference(adapter, ImageFolder(path=root).load("test"), store, heads=("expression",),
                              settings=settings)
    assert report.reused


def test_per_sample_reuse_needs_the_same_model(tmp_path, warm_ok):
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.models.synth_cnn import DEFAULT_WEIGHTS, SynthCNNAdapter

    root = _folder(tmp_path / "faces", n=2)
    settings = InferenceSettings(batch_size=4, shard_size=64, progress=False, device="cpu")
    store = PredictionStore(tmp_path / "cache")
    run_inference(SynthCNNAdapter(), ImageFolder(path=root).load("test"), store, heads=("expression",),
                  settings=settings)
    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] * 1.5
    torch.save(state, tmp_path / "other.pt")
    _png(root / "test" / "sad" / "01.png", 55)
    _, report = run_inference(SynthCNNAdapter(weights=str(tmp_path / "other.pt")), ImageFolder(path=root).load("test"),
                              store, heads=("expression",), settings=settings)
    assert report.computed_samples == 6 and report.resumed_samples == 0
