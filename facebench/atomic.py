"""Atomic file writes, shared by every part that writes files (the prediction store, run folders,
reports, ``compare``'s outputs).

A file is written to a temporary name in its own folder, flushed to disk and renamed over the target,
so a killed process never leaves a half-written file behind. The file gets the mode a plain
``open(path, "w")`` would give it (``0o666 & ~umask``), not ``mkstemp``'s 0600.

This module imports only the standard library and NumPy, so that any layer may use it without an
arrow against the design (see ``tests/test_import_arrows.py``).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def current_umask() -> int:
    """The process's umask (read from /proc where possible; else set and restored at once)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path`` and rename it; the file gets the mode a plain
    ``open(path, "w")`` would (``0o666 & ~umask``), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool = False) -> bytes:
    """The bytes of an ``.npz`` holding ``arrays`` (deflated when ``compress``)."""
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an ``.npz`` file, written atomically."""
    atomic_write_bytes(path, npz_bytes(arrays))
