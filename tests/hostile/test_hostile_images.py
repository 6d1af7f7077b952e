"""Hostile image files: empty, truncated, bit-rotten, mislabelled or missing images, folders named
like images, and the unusual-but-valid files (16-bit, float, CMYK, palette, EXIF-rotated) that must
decode rather than fail. Each case runs ``facebench run`` (or ``validate``) on an image folder of 18
faces (or a CSV listing them) and must end with its exit code and message, without a traceback,
changing nothing outside the run folder and the cache. With ``on_bad_image: error`` (the default) a
bad file stops the run before the model loads: no run folder is written, only the cache (the content
digests' stat cache and the scan's memory of files that passed), which every case may change.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._imagefiles import write_png, write_tiff
from tests.hostile._harness import Case, check_case

RUN = ["--model", "synth-cnn", "--no-progress", "--no-figures"]
CLASSES = ("happy", "sad", "neutral")
SUITE = """\
name: faces
defaults: {{batch_size: 16, bootstrap: 10, shard_size: 64, device: cpu, num_workers: 0{extra}}}
tasks:
  - {{name: folder, dataset: {dataset}, split: {split}, protocol: closed_set, path: {path}{args}}}
"""
RNG = np.random.default_rng(7)
WRITTEN = ("out",)  # and "cache", which every case may change


# -- file contents -----------------------------------------------------------------------------------
def jpeg(size=(48, 48), mode="RGB", **save) -> bytes:
    shape = (*size, 4) if mode == "CMYK" else (*size, 3)
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode if mode == "CMYK" else None).save(
        buffer, "JPEG", **save)
    return buffer.getvalue()


def png(size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def bmp(size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, "BMP")
    return buffer.getvalue()


def bitrot_png() -> bytes:
    data = bytearray(png((64, 64)))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: the chunk's CRC no longer matches
    return bytes(data)


def bogus_huffman_jpeg() -> bytes:
    """SOI and EOI intact (passes the header scan); a Huffman table libjpeg rejects (fails to decode)."""
    data = bytearray(jpeg((64, 64)))
    at = data.find(b"\xff\xc4")
    data[at + 5 : at + 21] = b"\xff" * 16
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(exif=exif.tobytes())


def palette_png_with_transparency(tmp: Path) -> bytes:
    index = RNG.integers(0, 4, (48, 48)).astype(np.uint8)
    path = write_png(tmp / "p.png", index, "P", palette=RNG.integers(0, 256, (4, 3)).astype(np.uint8),
                     trns=bytes([0, 100]))
    data = path.read_bytes()
    path.unlink()
    return data


# -- case builders -----------------------------------------------------------------------------------
def faces(bad: dict | None = None, flags: tuple = (), extra: str = "", command: str = "run"):
    """18 good JPEG faces in tmp/faces/test/<class>/NN.jpg; ``bad`` maps 'class/name' to bytes, a
    callable(tmp) -> bytes, ``"dir"`` (a folder of that name) or ``None`` (the file removed)."""
    def setup(tmp: Path) -> list[str]:
        root = tmp / "faces"
        for cls in CLASSES:
            (root / "test" / cls).mkdir(parents=True, exist_ok=True)
            for i in range(6):
                (root / "test" / cls / f"{i:02d}.jpg").write_bytes(jpeg())
        for rel, content in (bad or {}).items():
            path = root / "test" / rel
            if content == "dir":
                path.mkdir()
            elif content is None:
                path.unlink()
            else:
                path.write_bytes(content(tmp) if callable(content) else content)
        suite = tmp / "s.yaml"
        suite.write_text(SUITE.format(dataset="imagefolder", split="test", path=root.as_posix(), args="", extra=extra))
        tail = [*RUN, "--out", str(tmp / "out")] if command == "run" else []
        return [command, str(suite), *tail, *flags]
    return setup


def listed(missing: int = 1, flags: tuple = ()):
    """A CSV of 10 faces of which the first ``missing`` are listed but absent."""
    def setup(tmp: Path) -> list[str]:
        (tmp / "img").mkdir()
        rows = ["path,label"]
        for i in range(10):
            if i >= missing:
                (tmp / "img" / f"{i}.jpg").write_bytes(jpeg())
            rows.append(f"img/{i}.jpg,{('happiness', 'sadness')[i % 2]}")
        (tmp / "labels.csv").write_text("\n".join(rows) + "\n")
        suite = tmp / "s.yaml"
        suite.write_text(SUITE.format(dataset="csv", split="all", path=(tmp / "labels.csv").as_posix(),
                                      args=", dataset_args: {classes: [happiness, sadness]}", extra=""))
        return ["run", str(suite), *RUN, "--out", str(tmp / "out"), *flags]
    return setup


SKIP = ("--on-bad-image", "skip")

CASES = [
    # on_bad_image: error (default): exit 2 before the model loads, the files listed, nothing written
    Case("zero-byte-jpg", faces({"happy/00.jpg": b""}), 2, "happy/00.jpg: empty file (0 bytes)"),
    Case("truncated-jpg", faces({"sad/01.jpg": jpeg()[:400]}), 2, "sad/01.jpg: truncated"),
    Case("truncated-png", faces({"sad/01.png": png()[:300]}), 2, "1 of 19 image files cannot be read"),
    Case("bitrot-png", faces({"neutral/x.png": bitrot_png()}), 2, "neutral/x.png"),
    Case("text-named-jpg", faces({"happy/02.jpg": b"just some text\n"}), 2, "not an image file pillow can read"),
    Case("html-named-png", faces({"happy/x.png": b"<html><body>404</body></html>"}), 2, "not an image file"),
    Case("folder-named-jpg", faces({"sad/dir.jpg": "dir"}), 2, "dir.jpg: is a folder, not a file"),
    Case("truncated-bmp", faces({"neutral/t.bmp": bmp()[:900]}), 2, "neutral/t.bmp"),
    Case("jpeg-header-only", faces({"happy/03.jpg": jpeg()[:20]}), 2, "happy/03.jpg"),
    Case("twelve-bad-listed-ten", faces({f"{c}/{i:02d}.jpg": b"" for c in CLASSES for i in range(4)}), 2,
         "... and 2 more"),
    Case("missing-file-in-csv", listed(1), 2, "img/0.jpg: missing"),
    Case("decode-fails-after-scan", faces({"sad/02.jpg": bogus_huffman_jpeg()}), 2,
         "failed to decode while predicting", WRITTEN),
    Case("suite-key-error-explicit", faces({"happy/00.jpg": b""}, extra=", on_bad_image: error"), 2,
         "on_bad_image: skip"),
    Case("validate-finds-bad-file", faces({"happy/00.jpg": b""}, command="validate"), 2,
         "1 of 18 image files cannot be read"),
    Case("unknown-policy-in-suite", faces(extra=", on_bad_image: ignore"), 2, "'on_bad_image' must be one of error, skip"),
    Case("unknown-policy-flag", faces(flags=("--on-bad-image", "ignore")), 2, "invalid choice"),
    Case("skip-every-file-bad", faces({f"{c}/{i:02d}.jpg": b"" for c in CLASSES for i in range(6)}, SKIP), 2,
         "18 of 18"),
    # on_bad_image: skip: the run goes on without them, counted and said aloud
    Case("skip-zero-byte", faces({"happy/00.jpg": b""}, SKIP), 0, "leaving out 1 of 18", WRITTEN),
    Case("skip-truncated-jpg", faces({"sad/01.jpg": jpeg()[:400]}, SKIP), 0, "leaving out 1 of 18", WRITTEN),
    Case("skip-text-and-folder", faces({"happy/02.jpg": b"text", "sad/d.jpg": "dir"}, SKIP), 0,
         "leaving out 2 of 19", WRITTEN),
    Case("skip-missing-in-csv", listed(2, SKIP), 0, "leaving out 2 of 10", WRITTEN),
    Case("skip-decode-fails-after-scan", faces({"sad/02.jpg": bogus_huffman_jpeg()}, SKIP), 0,
         "passed the header scan but do not decode", WRITTEN),
    Case("skip-from-suite-key", faces({"neutral/05.jpg": b""}, extra=", on_bad_image: skip"), 0,
         "leaving out 1 of 18", WRITTEN),
    Case("validate-skip-notes", faces({"happy/00.jpg": b""}, SKIP, command="validate"), 0, "leaving out 1 of 18"),
    # unusual but valid files decode (no bad image): the run succeeds
    Case("16bit-png", faces({"happy/g16.png": lambda t: write_png(t / "g.png", RNG.integers(
        0, 65536, (48, 48)).astype(np.uint16), "L").read_bytes()}), 0, "accuracy", WRITTEN),
    Case("16bit-rgb-tiff", faces({"sad/c16.tif": lambda t: write_tiff(t / "c.tif", RNG.integers(
        0, 65536, (48, 48, 3)).astype(np.uint16)).read_bytes()}), 0, "accuracy", WRITTEN),
    Case("float-tiff", faces({"neutral/f.tif": lambda t: write_tiff(
        t / "f.tif", RNG.random((48, 48)).astype(np.float32)).read_bytes()}), 0, "accuracy", WRITTEN),
    Case("cmyk-jpeg", faces({"happy/cmyk.jpg": jpeg(mode="CMYK")}), 0, "accuracy", WRITTEN),
    Case("exif-rotated-jpeg", faces({"sad/rot.jpg": exif_rotated_jpeg()}), 0, "accuracy", WRITTEN),
    Case("palette-png-transparent", faces({"neutral/p.png": palette_png_with_transparency}), 0, "accuracy",
         WRITTEN),
    Case("jpeg-trailing-bytes", faces({"happy/t.jpg": jpeg() + b"\x00" * 64 + b"trailer"}), 0, "accuracy",
         WRITTEN),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_images(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_case(dataclasses.replace(case, may_change=tuple({"cache", *case.may_change})), tmp_path)


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
