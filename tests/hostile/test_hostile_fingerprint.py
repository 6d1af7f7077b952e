"""Hostile inputs to content fingerprints: a broken stat cache, files swapped under the same name,
ONNX external data missing or changed.

Most cases run once in ``setup`` (warming the store and the stat cache), break one thing, and run
again. The contract: a broken cache never breaks a run (the digests are recomputed, and unchanged
content still reuses its predictions); changed content under the same name is never reused
(``RECOMPUTE``: the output must not say "reused"); a model whose files are incomplete stops with
exit 2 and a clear message.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facebench.content as content
from tests.hostile._harness import MINI_SUITE, Case, check_case, run_cli, write

FLAGS = ["--model", "synth-cnn", "--no-progress", "--quiet", "--no-figures"]
CHANGE = ("cache", "out", "first")
REUSED = "reused stored predictions"
RECOMPUTE = {"image-bytes-swapped", "image-same-size-old-mtime", "image-copied-keeping-mtime", "symlink-swapped",
             "onnx-external-data-swapped", "torchscript-swapped"}


def _bmp(path: Path, seed: int) -> Path:
    """A 48x48 BMP: every such file has the same byte size, whatever its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
    return path


def _folder_suite(tmp: Path, link: bool = False) -> Path:
    for c, cls in enumerate(("happy", "sad", "neutral")):
        for i in range(4):
            _bmp(tmp / "faces" / "test" / cls / f"{i}.bmp", 10 * c + i)
    if link:  # one sample is a symlink into a pool of files
        (tmp / "faces" / "test" / "sad" / "3.bmp").unlink()
        _bmp(tmp / "pool" / "a.bmp", 500)
        _bmp(tmp / "pool" / "b.bmp", 501)
        (tmp / "faces" / "test" / "sad" / "3.bmp").symlink_to(tmp / "pool" / "a.bmp")
    return write(tmp / "files.yaml", f"""\
        name: files
        defaults:
          batch_size: 16
          bootstrap: 10
        tasks:
          - name: folder
            dataset: imagefolder
            split: test
            protocol: closed_set
            path: {(tmp / 'faces').as_posix()}
        """)


def _first_run(tmp: Path, argv: list[str]) -> None:
    code, output = run_cli(argv + ["--out", str(tmp / "first")])
    assert code == 0, output


def _warm(tmp: Path, link: bool = False) -> list[str]:
    """The folder suite, run once; returns the arguments of the second run."""
    argv = ["run", str(_folder_suite(tmp, link)), *FLAGS]
    _first_run(tmp, argv)
    return argv + ["--out", str(tmp / "out")]


def _hash_files(tmp: Path) -> list[Path]:
    files = sorted((tmp / "cache" / "hashes").rglob("*.npz"))  # per-folder caches and list snapshots
    assert files, "the first run left no stat cache"
    return files


# -- a broken stat cache: recomputed, and unchanged content is still reused ---------------------------
def stat_cache_garbage(tmp):
    argv = _warm(tmp)
    for f in _hash_files(tmp):
        f.write_bytes(b"\x00garbage, not an npz")
    return argv


def stat_cache_truncated(tmp):
    argv = _warm(tmp)
    for f in _hash_files(tmp):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return argv


def stat_cache_is_a_folder(tmp):
    argv = _warm(tmp)
    for f in _hash_files(tmp):
        f.unlink()
        (f / "inside").mkdir(parents=True)
    return argv


def stat_cache_of_another_folder(tmp):
    argv = _warm(tmp)
    files = _hash_files(tmp)
    for a, b in zip(files, files[1:] + files[:1]):  # each folder gets its neighbour's cache file
        shutil.copy(a, b.with_suffix(".swap"))
    for f in files:
        os.replace(f.with_suffix(".swap"), f)
    return argv


def stat_cache_wrong_shapes(tmp):
    argv = _warm(tmp)
    for f in _hash_files(tmp):
        with np.load(f) as data:
            arrays = dict(data)
        arrays["digests"] = arrays["digests"][:1]  # fewer digests than names
        np.savez(f, **arrays)
    return argv


def hashes_folder_is_a_file(tmp):
    argv = _warm(tmp)
    shutil.rmtree(tmp / "cache" / "hashes")
    (tmp / "cache" / "hashes").write_text("a file where the stat cache folder should be")
    return argv


def cache_root_is_a_file(tmp):
    (tmp / "cache_file").write_text("not a folder")
    return ["run", str(_folder_suite(tmp)), *FLAGS, "--out", str(tmp / "out"), "--cache-dir", str(tmp / "cache_file")]


# -- content changed under the same name: never reused --------------------------------------------------
def image_bytes_swapped(tmp):
    argv = _warm(tmp)
    _bmp(tmp / "faces" / "test" / "sad" / "1.bmp", 999)
    return argv


def image_same_size_old_mtime(tmp):
    argv = _warm(tmp)
    path = tmp / "faces" / "test" / "happy" / "2.bmp"
    st = os.stat(path)
    _bmp(path, 998)
    assert os.stat(path).st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime put back
    return argv


def image_copied_keeping_mtime(tmp):
    argv = _warm(tmp)
    other = _bmp(tmp / "elsewhere" / "x.bmp", 997)
    target = tmp / "faces" / "test" / "neutral" / "0.bmp"
    st = os.stat(target)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.copy2(other, target)  # cp -p: bytes replaced, size and mtime as before
    return argv


def symlink_swapped(tmp):
    argv = _warm(tmp, link=True)
    link = tmp / "faces" / "test" / "sad" / "3.bmp"
    link.unlink()
    link.symlink_to(tmp / "pool" / "b.bmp")
    return argv


def image_touched(tmp):
    argv = _warm(tmp)
    path = tmp / "faces" / "test" / "sad" / "0.bmp"
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns + 10**9, st.st_mtime_ns + 10**9))  # same bytes
    return argv


# -- model files ----------------------------------------------------------------------------------------
def _onnx(folder: Path, seed: int) -> Path:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(seed).normal(size=(48, 7)).astype(np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    return folder / "model.onnx"


def _onnx_argv(tmp: Path, path: Path) -> list[str]:
    suite = write(tmp / "mini.yaml", MINI_SUITE)
    return ["run", str(suite), "--model", "onnx", "--model-args", f"file={path},classes=rafdb",
            "--no-progress", "--quiet", "--no-figures"]


def onnx_external_data_missing(tmp):
    path = _onnx(tmp / "m", 0)
    (tmp / "m" / "model.onnx.data").unlink()
    return _onnx_argv(tmp, path) + ["--out", str(tmp / "out")]


def onnx_external_data_truncated(tmp):
    path = _onnx(tmp / "m", 0)
    data = tmp / "m" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    return _onnx_argv(tmp, path) + ["--out", str(tmp / "out")]


def onnx_external_data_swapped(tmp):
    path = _onnx(tmp / "m", 0)
    argv = _onnx_argv(tmp, path)
    _first_run(tmp, argv)
    _onnx(tmp / "other", 1)
    shutil.copy(tmp / "other" / "model.onnx.data", tmp / "m" / "model.onnx.data")  # same graph file, new weights
    return argv + ["--out", str(tmp / "out")]


def _script(path: Path, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 7))
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def torchscript_swapped(tmp):
    path = _script(tmp / "m.pt", 0)
    argv = ["run", str(write(tmp / "mini.yaml", MINI_SUITE)), "--model", "torchscript", "--model-args",
            f"file={path},size=8,classes=rafdb", "--no-progress", "--quiet", "--no-figures"]
    _first_run(tmp, argv)
    _script(path, 1)
    return argv + ["--out", str(tmp / "out")]


def torchscript_sidecar_broken(tmp):
    path = _script(tmp / "m.pt", 0)
    (tmp / "m.pt.json").write_text('{"size": 8, ')
    return ["run", str(write(tmp / "mini.yaml", MINI_SUITE)), "--model", "torchscript", "--model-args",
            f"file={path},classes=rafdb", "--no-progress", "--quiet", "--no-figures", "--out", str(tmp / "out")]


CASES = [
    Case("stat-cache-garbage", stat_cache_garbage, 0, REUSED, CHANGE),
    Case("stat-cache-truncated", stat_cache_truncated, 0, REUSED, CHANGE),
    Case("stat-cache-is-a-folder", stat_cache_is_a_folder, 0, REUSED, CHANGE),
    Case("stat-cache-of-another-folder", stat_cache_of_another_folder, 0, REUSED, CHANGE),
    Case("stat-cache-wrong-shapes", stat_cache_wrong_shapes, 0, REUSED, CHANGE),
    Case("hashes-folder-is-a-file", hashes_folder_is_a_file, 0, REUSED, CHANGE),
    Case("cache-root-is-a-file", cache_root_is_a_file, 0, "wrote", ("out",)),  # the warning goes to `warnings`
    Case("image-bytes-swapped", image_bytes_swapped, 0, "wrote", CHANGE),
    Case("image-same-size-old-mtime", image_same_size_old_mtime, 0, "wrote", CHANGE),
    Case("image-copied-keeping-mtime", image_copied_keeping_mtime, 0, "wrote", CHANGE),
    Case("symlink-swapped", symlink_swapped, 0, "wrote", CHANGE),
    Case("image-touched", image_touched, 0, REUSED, CHANGE),
    Case("onnx-external-data-missing", onnx_external_data_missing, 2, "could not be loaded by onnxruntime", CHANGE),
    Case("onnx-external-data-truncated", onnx_external_data_truncated, 2, "could not be loaded by onnxruntime",
         CHANGE),
    Case("onnx-external-data-swapped", onnx_external_data_swapped, 0, "wrote", CHANGE),
    Case("torchscript-swapped", torchscript_swapped, 0, "wrote", CHANGE),
    Case("torchscript-sidecar-broken", torchscript_sidecar_broken, 2, "not valid JSON", CHANGE),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_fingerprint(case, tmp_path, monkeypatch):
    monkeypatch.setattr(content, "RACY_WINDOW_NS", 0)  # files written seconds ago may be remembered
    output = check_case(case, tmp_path)
    if case.id in RECOMPUTE:
        assert "reused" not in output.lower(), f"{case.id}: changed content was reused:\n{output}"
