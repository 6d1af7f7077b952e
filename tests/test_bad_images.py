"""Unreadable image files: the header scan, ``on_bad_image: error | skip``, and what a run records."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from facebench.data.dataset import Dataset
from facebench.data.images import FileImages
from facebench.data.scan import (check_image_file, merge_summaries, scan_dataset, screen_dataset, summarize,
                                 without)
from facebench.errors import DataError
from facebench.runner import run_suite
from facebench.suite import validate_suite

RNG = np.random.default_rng(3)


def _jpeg_bytes(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png_bytes(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _corrupt_body_jpeg() -> bytes:
    """SOI ... EOI intact (passes the header scan) but a Huffman table that libjpeg rejects: fails to decode."""
    data = bytearray(_jpeg_bytes((64, 64)))
    at = data.find(b"\xff\xc4")  # DHT: marker, length (2), class/id (1), then 16 code counts
    data[at + 5 : at + 21] = b"\xff" * 16  # counts summing past 256 codes: "bogus Huffman table"
    return bytes(data)


# -- the header scan ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,content,reason", [
    ("ok.jpg", _jpeg_bytes(), None),
    ("ok.png", _png_bytes(), None),
    ("trailing.jpg", _jpeg_bytes() + b"garbage after EOI", None),  # no EOI at the end: decoded, and fine
    ("zero.jpg", b"", "empty file"),
    ("text.jpg", b"hello, I am not a JPEG\n", "not an image"),
    ("truncated.jpg", _jpeg_bytes((64, 64))[:700], "truncated"),
    ("truncated.png", _png_bytes((64, 64))[:300], ""),
    ("bitrot.png", None, ""),
    ("truncated.bmp", None, ""),
])
def test_check_image_file(tmp_path, name, content, reason):
    path = tmp_path / name
    if name == "bitrot.png":
        data = bytearray(_png_bytes((64, 64)))
        data[len(data) // 2] ^= 0xFF  # a flipped byte inside IDAT: its CRC no longer matches
        content = bytes(data)
    if name == "truncated.bmp":
        buffer = io.BytesIO()
        Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "BMP")
        content = buffer.getvalue()[:1000]
    path.write_bytes(content)
    found = check_image_file(str(path))
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_check_missing_and_folder(tmp_path):
    assert check_image_file(str(tmp_path / "absent.jpg")) == "missing"
    (tmp_path / "dir.jpg").mkdir()
    assert "folder" in check_image_file(str(tmp_path / "dir.jpg"))


def _dataset(tmp_path, n=8, bad=(), pairs=False):
    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(b"" if i in bad else _jpeg_bytes((8, 8)))
        paths.append(path)
    labels = np.array((["happiness", "sadness"] * n)[:n])
    groups = np.array((["A", "A", "B", "B"] * n)[:n])
    pair_arrays = None
    if pairs:
        pair_arrays = {"a": np.array([0, 1, 2, 4]), "b": np.array([3, 5, 6, 7]),
                       "same": np.array([True, False, True, False]), "fold": np.array([0, 0, 1, 1])}
    return Dataset("t", "test", [f"s{i}" for i in range(n)], ("happiness", "sadness"), labels, FileImages(paths),
                   attributes={"group": groups, "subject": np.array([f"p{i}" for i in range(n)])},
                   pairs=pair_arrays)


def test_scan_dataset_indices_and_summary(tmp_path):
    ds = _dataset(tmp_path, 8, bad=(1, 2, 7))
    bad = scan_dataset(ds)
    assert [i for i, _ in bad] == [1, 2, 7]
    summary = summarize(ds, bad)
    # labels alternate happiness/sadness: 1, 7 -> sadness, 2 -> happiness; groups A A B B A A B B
    assert summary["n"] == 3 and summary["of"] == 8
    assert summary["by_class"] == {"happiness": 1, "sadness": 2}
    assert summary["by_group"]["group"] == {"A": 1, "B": 2}
    assert summary["by_group"]["subject"] == {"p1": 1, "p2": 1, "p7": 1}  # 8 distinct values: broken down too
    assert [f["id"] for f in summary["files"]] == ["s1", "s2", "s7"]


def test_error_lists_the_first_ten_and_the_count(tmp_path):
    ds = _dataset(tmp_path, 16, bad=tuple(range(12)))
    with pytest.raises(DataError) as info:
        screen_dataset(ds, "error", print)
    text = str(info.value)
    assert "12 of 16 image files cannot be read" in text and "... and 2 more" in text
    assert text.count("empty file") == 10 and "on_bad_image: skip" in text


def test_skip_leaves_them_out_and_warns(tmp_path):
    ds = _dataset(tmp_path, 8, bad=(1, 2))
    logged = []
    kept, summary = screen_dataset(ds, "skip", logged.append)
    assert kept.ids.tolist() == ["s0", "s3", "s4", "s5", "s6", "s7"]
    assert summary["n"] == 2 and len(logged) == 1 and "leaving out 2 of 8" in logged[0]


def test_skip_with_every_file_bad_is_an_error(tmp_path):
    with pytest.raises(DataError, match="2 of 2"):
        screen_dataset(_dataset(tmp_path, 2, bad=(0, 1)), "skip", print)


def test_without_remaps_pairs(tmp_path):
    ds = _dataset(tmp_path, 8, pairs=True)
    kept = without(ds, [(1, "x"), (6, "x")])
    # pairs (0,3) (1,5) (2,6) (4,7): those touching 1 or 6 go; new indices: 0->0 3->2 4->3 7->5
    assert kept.pairs["a"].tolist() == [0, 3] and kept.pairs["b"].tolist() == [2, 5]
    assert kept.pairs["same"].tolist() == [True, False] and kept.pairs["fold"].tolist() == [0, 1]
    assert kept.ids[kept.pairs["a"]].tolist() == ["s0", "s4"] and kept.ids[kept.pairs["b"]].tolist() == ["s3", "s7"]


def test_merge_summaries():
    a = {"n": 2, "of": 10, "files": [{"id": "x"}, {"id": "y"}], "by_class": {"happiness": 2},
         "by_group": {"group": {"A": 2}}}
    b = {"n": 1, "of": 8, "files": [{"id": "z"}], "by_class": {"sadness": 1}, "by_group": {"group": {"A": 1}}}
    assert merge_summaries(a, b) == {"n": 3, "of": 10, "files": [{"id": "x"}, {"id": "y"}, {"id": "z"}],
                                     "by_class": {"happiness": 2, "sadness": 1}, "by_group": {"group": {"A": 3}}}
    assert merge_summaries(None, b) is b and merge_summaries(a, None) is a


# -- end to end on an image folder ---------------------------------------------------------------------

SUITE = """\
name: files
defaults:
  batch_size: 16
  bootstrap: 10
  shard_size: 64
  device: cpu
  num_workers: 0
tasks:
  - name: folder
    dataset: imagefolder
    split: test
    protocol: closed_set
    path: {path}
"""


def _folder(tmp_path, bad: dict[str, bytes]) -> tuple:
    root = tmp_path / "faces"
    for c, cls in enumerate(("happy", "sad", "neutral")):
        for i in range(6):
            path = root / "test" / cls / f"{i:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_jpeg_bytes((48, 48)))
    for rel, content in bad.items():
        (root / "test" / rel).write_bytes(content)
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(path=root.as_posix()))
    return suite, root


@pytest.fixture
def no_model(monkeypatch):
    """The model factory raises: a run that gets to it has loaded the model."""
    import facebench.runner as runner

    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runner, "make_model", boom)


def test_error_stops_before_the_model_loads(tmp_path, no_model):
    suite, _ = _folder(tmp_path, {"happy/00.jpg": b"", "sad/03.jpg": b"not an image"})
    with pytest.raises(DataError) as info:
        run_suite(suite, "synth-cnn", out=tmp_path / "out", progress=False, log=lambda m: None)
    text = str(info.value)
    assert "2 of 18 image files cannot be read" in text
    assert "happy/00.jpg: empty file" in text and "sad/03.jpg: not an image" in text
    assert not (tmp_path / "out").exists()


def test_skip_counts_them_per_task_and_group(tmp_path):
    suite, _ = _folder(tmp_path, {"happy/00.jpg": b"", "happy/01.jpg": _jpeg_bytes()[:300],
                                  "neutral/05.jpg": b"text"})
    logged = []
    outcome = run_suite(suite, "synth-cnn", out=tmp_path / "out", progress=False, log=logged.append,
                        overrides={"on_bad_image": "skip"})
    assert outcome.exit_code == 0
    row = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"][0]
    assert row["status"] == "ok" and row["n"] == 15
    bad = row["bad_images"]
    assert bad["n"] == 3 and bad["of"] == 18
    assert bad["by_class"] == {"happiness": 2, "neutral": 1}
    assert sorted(f["id"] for f in bad["files"]) == ["happy/00.jpg", "happy/01.jpg", "neutral/05.jpg"]
    assert any("leaving out 3 of 18" in m for m in logged)


def test_file_that_fails_only_at_decode_is_skipped_and_counted(tmp_path):
    suite, root = _folder(tmp_path, {"sad/02.jpg": _corrupt_body_jpeg()})
    assert check_image_file(str(root / "test" / "sad" / "02.jpg")) is None  # passes the header scan
    logged = []
    outcome = run_suite(suite, "synth-cnn", out=tmp_path / "out", progress=False, log=logged.append,
                        overrides={"on_bad_image": "skip"})
    row = outcome.results["tasks"][0]
    assert outcome.exit_code == 0 and row["n"] == 17
    assert row["bad_images"]["n"] == 1 and row["bad_images"]["files"][0]["id"] == "sad/02.jpg"
    assert any("passed the header scan but do not decode" in m for m in logged)


def test_file_that_fails_only_at_decode_with_error(tmp_path):
    suite, _ = _folder(tmp_path, {"sad/02.jpg": _corrupt_body_jpeg()})
    with pytest.raises(DataError, match="failed to decode while predicting") as info:
        run_suite(suite, "synth-cnn", out=tmp_path / "out", progress=False, log=lambda m: None)
    assert "sad/02.jpg" in str(info.value)


def test_validate_runs_the_same_scan(tmp_path):
    from facebench.suite import SuiteError

    suite, _ = _folder(tmp_path, {"happy/00.jpg": b""})
    with pytest.raises(SuiteError, match="1 of 18 image files cannot be read"):
        validate_suite(suite)
    _, notes = validate_suite(suite, {"on_bad_image": "skip"})
    assert any("leaving out 1 of 18" in n for n in notes)
    validate_suite(suite, check_data=False)  # no data checks: no scan


def test_suite_rejects_an_unknown_policy(tmp_path):
    from facebench.suite import SuiteError

    suite, _ = _folder(tmp_path, {})
    suite.write_text(suite.read_text().replace("  device: cpu\n", "  device: cpu\n  on_bad_image: ignore\n"))
    with pytest.raises(SuiteError, match="'on_bad_image' must be one of error, skip"):
        validate_suite(suite)


def test_files_that_passed_are_not_scanned_again(tmp_path, monkeypatch):
    import facebench.data.scan as scan

    ds = _dataset(tmp_path, 8, bad=(3,))
    opened = []
    real = scan._jpeg_complete
    monkeypatch.setattr(scan, "_jpeg_complete", lambda path: opened.append(path) or real(path))
    assert [i for i, _ in scan_dataset(ds)] == [3]
    assert len(opened) == 7  # the empty file fails before the JPEG check
    opened.clear()
    again = Dataset(ds.name, ds.split, ds.ids, ds.classes, ds.labels, FileImages(ds.images.paths),
                    attributes=ds.attributes)
    assert [i for i, _ in scan_dataset(again)] == [3]
    assert opened == []  # 7 remembered by content; the bad one is rescanned, never remembered
    (tmp_path / "5.jpg").write_bytes(b"now broken")  # new content under the same name: scanned again
    again = Dataset(ds.name, ds.split, ds.ids, ds.classes, ds.labels, FileImages(ds.images.paths),
                    attributes=ds.attributes)
    assert [i for i, _ in scan_dataset(again)] == [3, 5]
