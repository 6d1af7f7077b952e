"""Aligned face chips cached by content, beside the decoded images: each canvas is aligned once.

The canvas adapters (``dlib-resnet``, ``sface``) receive the engine's uint8 canvas and detect, landmark
and align the face themselves; that step (dlib's HOG detector, YuNet) costs far more than the recognition
network. Its result -- the aligned uint8 chip and whether a face was found -- is kept under the cache root
(``FACEBENCH_CACHE`` or ``--cache-dir``, the folder that holds ``predictions/`` and ``decoded/``)::

    chips/<settings key>/meta.json        the model and everything a chip depends on besides the canvas
    chips/<settings key>/<32 hex>.chip    one chip, named by the content digest of its canvas

Keys. ``<32 hex>`` is BLAKE2b-128 of the canvas itself (shape, dtype and uint8 bytes): the exact image
the detector is given, so it stands for the source image's content *and* the engine's resize to the
canvas (another file, crop, canvas size or resize arithmetic gives other bytes; a renamed or touched
file, or another file with the same pixels, gives the same). ``<settings key>`` hashes the rest: the
detector's and aligner's build (dlib's version, build time and binary; or onnxruntime's version), the
bytes of their model files (5-point shape predictor; YuNet), the chip parameters and the code version of
the facebench functions that make the chip.

File format (``.chip``): ``FBCHIP1\\n``, uint16 height, width, channels, uint8 detected (1/0), the chip's
bytes (H x W x C), then BLAKE2b-128 of the file name's digest and everything before it. A file of another
length, magic, shape or checksum (truncated, overwritten, copied under another name) is corrupt: it is
reported once per folder (``CacheWarning``), removed and recomputed, never used. Chips are written under a
temporary name and renamed, so a killed run leaves no half chip; a cache folder that cannot be written is
reported once and the chips are computed without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import uuid
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facebench.cache_policy import ENTRY_KEY, cache_unavailable, warn_once
from facebench.fingerprint import hash_object

FOLDER = "chips"
MAGIC = b"FBCHIP1\n"
HEADER = struct.Struct("<8sHHHB")  # magic, height, width, channels, detected
CHECK = 16  # bytes of the trailing BLAKE2b checksum
FORMAT = 1

#: ``compute(images) -> (chips (B, H, W, C) uint8, detected flags)``: the adapter's own alignment.
Compute = Callable[[list], tuple[np.ndarray, Sequence[bool]]]


def canvas_digest(image: np.ndarray) -> bytes:
    """BLAKE2b-128 of a uint8 image's shape, dtype and bytes (the name of its chip)."""
    image = np.ascontiguousarray(image)
    h = hashlib.blake2b(f"{image.shape}{image.dtype.str}".encode(), digest_size=16)
    h.update(memoryview(image).cast("B"))
    return h.digest()


def encode_chip(name: bytes, chip: np.ndarray, detected: bool) -> bytes:
    """The ``.chip`` file of ``chip`` (uint8 H x W x C) stored under the digest ``name``."""
    body = HEADER.pack(MAGIC, *chip.shape, int(bool(detected))) + np.ascontiguousarray(chip, np.uint8).tobytes()
    return body + hashlib.blake2b(name + body, digest_size=CHECK).digest()


def decode_chip(name: bytes, data: bytes, shape: tuple[int, int, int]) -> tuple[np.ndarray, bool] | str:
    """(chip, detected) of a ``.chip`` file's bytes, or what is wrong with them."""
    size = HEADER.size + int(np.prod(shape)) + CHECK
    if len(data) != size:
        return f"{len(data)} bytes, expected {size}"
    magic, h, w, c, detected = HEADER.unpack_from(data)
    if magic != MAGIC or (h, w, c) != tuple(shape) or detected > 1:
        return f"header {magic!r} {h}x{w}x{c} detected={detected}, expected {MAGIC!r} {'x'.join(map(str, shape))}"
    if hashlib.blake2b(name + data[:-CHECK], digest_size=CHECK).digest() != data[-CHECK:]:
        return "checksum mismatch"
    chip = np.frombuffer(data, np.uint8, count=size - HEADER.size - CHECK, offset=HEADER.size).reshape(shape)
    return chip.copy(), bool(detected)


def default_root() -> Path:
    """The cache root in use: the folder of the content-hash cache (``run_suite`` points it at ``--cache-dir``)."""
    from facebench.content import cache_dir

    return cache_dir().parent


class ChipCache:
    """The chips of one model's settings: ``chips(images, compute)`` reads those present and computes,
    stores and returns the others. ``root``: the cache root (default :func:`default_root`, looked up at
    each call). ``hits`` / ``misses`` count the chips read / computed by this object."""

    def __init__(self, model: str, settings: dict, shape: tuple[int, int, int], root: str | Path | None = None):
        self.model, self.settings, self.shape = model, settings, tuple(int(v) for v in shape)
        self.key = hash_object({"model": model, "settings": settings, "shape": list(self.shape), "format": FORMAT},
                               length=24)
        self.root = None if root is None else Path(root)
        self.hits = self.misses = 0

    @property
    def dir(self) -> Path:
        return (self.root or default_root()) / FOLDER / self.key

    def chips(self, images: list[np.ndarray], compute: Compute) -> tuple[np.ndarray, list[bool]]:
        """((B, H, W, C) uint8 chips, detected flags) of uint8 images, each computed once across runs."""
        folder = self.dir
        names = [canvas_digest(im) for im in images]
        out = np.empty((len(images), *self.shape), dtype=np.uint8)
        detected = [False] * len(images)
        todo = []
        for i, name in enumerate(names):
            found = self._read(folder, name)
            if found is None:
                todo.append(i)
            else:
                out[i], detected[i] = found
        self.hits += len(images) - len(todo)
        self.misses += len(todo)
        if todo:
            chips, flags = compute([images[i] for i in todo])
            for j, i in enumerate(todo):
                out[i], detected[i] = chips[j], bool(flags[j])
            self._write(folder, [(names[i], out[i], detected[i]) for i in todo])
        return out, detected

    def _read(self, folder: Path, name: bytes) -> tuple[np.ndarray, bool] | None:
        """(chip, detected) of a valid file; None when absent, or corrupt (reported, removed)."""
        path = folder / f"{name.hex()}.chip"
        try:
            found = decode_chip(name, path.read_bytes(), self.shape)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            found = f"unreadable: {type(err).__name__}: {err}"
        if not isinstance(found, str):
            return found
        warn_once(f"corrupt-chips:{folder}",
                  f"face-chip cache file {path} is corrupt ({found}): removed and the chip recomputed (later "
                  f"corrupt chips of {folder} are handled the same way, without a warning). To start afresh: "
                  f"`facebench cache clear --only chips`.")
        try:
            path.unlink()
        except OSError:
            pass
        return None

    def _write(self, folder: Path, items: list[tuple[bytes, np.ndarray, bool]]) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "meta.json").is_file():
                meta = {"model": self.model, "shape": list(self.shape), "settings": self.settings, "format": FORMAT}
                _write_atomic(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True).encode())
            for name, chip, detected in items:
                _write_atomic(folder / f"{name.hex()}.chip", encode_chip(name, chip, detected))
        except OSError as err:  # read-only, full or vanished cache folder: the chips are simply not kept
            cache_unavailable(folder.parent.parent, err)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


# -- housekeeping (facebench cache ls / clear) ---------------------------------------------------------
def _is_chip_folder(path: Path) -> bool:
    """A folder facebench wrote: a real folder named like a key, holding a meta.json or .chip files."""
    if path.is_symlink() or not path.is_dir() or not ENTRY_KEY.fullmatch(path.name):
        return False
    return (path / "meta.json").is_file() or any(path.glob("*.chip"))


def chip_entries(root: str | Path) -> list[dict]:
    """One row per settings folder under ``<root>/chips``: key, meta (None if unreadable), chips, bytes."""
    base = Path(root) / FOLDER
    rows = []
    try:
        folders = sorted(p for p in base.iterdir() if _is_chip_folder(p))
    except OSError:
        return rows
    for folder in folders:
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            meta = None
        files = [f for f in folder.iterdir() if f.is_file()]
        rows.append({"key": folder.name, "meta": meta if isinstance(meta, dict) else None,
                     "chips": sum(f.suffix == ".chip" for f in files),
                     "bytes": sum(f.stat().st_size for f in files)})
    return rows


def clear_chips(root: str | Path, keys: list[str] | None = None) -> int:
    """Remove the settings folders of ``keys`` (all when None) that are facebench's; returns how many."""
    removed = 0
    for row in chip_entries(root):
        if keys is None or row["key"] in keys:
            shutil.rmtree(Path(root) / FOLDER / row["key"], ignore_errors=True)
            removed += 1
    return removed
