"""Test-only writers of image files from raw numpy arrays (no Pillow on the writing side), so the
decoder's output can be checked against numpy arithmetic on the very array written."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

PNG_COLOR = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: Path, array: np.ndarray, mode: str, *, palette: np.ndarray | None = None,
              trns: bytes | None = None) -> Path:
    """``array`` (H, W) or (H, W, C), uint8 or uint16 (big-endian 16-bit samples), as a PNG of ``mode``."""
    array = np.asarray(array)
    h, w = array.shape[:2]
    depth = 16 if array.dtype == np.uint16 else 8
    rows = array.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row
    body = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, PNG_COLOR[mode], 0, 0, 0))
    if palette is not None:
        body += _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        body += _chunk(b"tRNS", trns)
    body += _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def write_tiff(path: Path, array: np.ndarray) -> Path:
    """An uncompressed little-endian baseline TIFF of ``array`` (H, W) or (H, W, 3): uint8/uint16/int32/float32."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    spp = 1 if array.ndim == 2 else array.shape[2]
    bits = array.dtype.itemsize * 8
    fmt = {"u": 1, "i": 2, "f": 3}[array.dtype.kind]
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, spp, bits), (259, 3, 1, 1), (262, 3, 1, 1 if spp == 1 else 2),
            (273, 4, 1, None), (277, 3, 1, spp), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1),
            (339, 3, spp, fmt)]
    ifd_size = 2 + 12 * len(tags) + 4
    extra = b""
    extra_at = 8 + ifd_size
    entries = []
    for tag, kind, count, value in tags:
        if count > 1:  # per-sample values live after the IFD
            entries.append((tag, kind, count, extra_at + len(extra)))
            extra += struct.pack("<" + "H" * count, *([value] * count))
        else:
            entries.append((tag, kind, count, value))
    data_at = extra_at + len(extra)
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in entries:
        value = data_at if value is None else value
        if kind == 3 and count == 1:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + extra + data)
    return path
