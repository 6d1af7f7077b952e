"""Image sources: where a dataset's pixels come from (files decoded with Pillow, or arrays).

A source is indexable (``load(i) -> uint8 array H x W x C``), has a length, supports
``subset(indices)`` and is picklable so DataLoader workers can use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from facebench.fingerprint import hash_object


from facebench.data.decode import decode_image  # noqa: E402,F401  (faithful decoding: see that module)


def _stats(paths) -> list:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            # ctime and inode too: a same-size rewrite within a coarse mtime tick, or a copy that
            # keeps mtimes (cp -p, rsync -a, archives), still changes them
            out.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        except OSError:
            out.append(None)
    return out


class FileImages:
    """Images read from files (optionally cropped by a per-image box)."""

    def __init__(self, paths: Sequence[str | Path], boxes: np.ndarray | None = None):
        self.paths = [str(p) for p in paths]
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> np.ndarray:
        box = None if self.boxes is None else self.boxes[i]
        return decode_image(self.paths[i], box)

    def subset(self, indices: np.ndarray) -> "FileImages":
        idx = np.asarray(indices, dtype=np.int64)
        return FileImages([self.paths[i] for i in idx], None if self.boxes is None else self.boxes[idx])

    def describe(self) -> str:
        return f"{len(self)} image files"

    def content_stamp(self) -> dict:
        """Paths, boxes, byte sizes, modification and change times and inodes (one ``stat`` per file, no reading):
        what the decoded-image cache keys on, so an edited or replaced file is decoded again."""
        if len(self.paths) > 4096:  # os.stat releases the GIL: threads overlap the system calls
            from concurrent.futures import ThreadPoolExecutor

            chunks = [self.paths[i : i + 2048] for i in range(0, len(self.paths), 2048)]
            with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool:
                stats = [s for part in pool.map(_stats, chunks) for s in part]
        else:
            stats = _stats(self.paths)
        # the paths as strings: the same JSON as the Path objects give (str), five times faster
        return {"paths": hash_object([str(p) for p in self.paths]), "stats": hash_object(stats),
                "boxes": None if self.boxes is None else hash_object(self.boxes.round(6).tolist())}


class ArrayImages:
    """Images held in memory as a uint8 array (N, H, W, C)."""

    def __init__(self, array: np.ndarray):
        array = np.asarray(array)
        if array.dtype != np.uint8 or array.ndim not in (3, 4):
            raise ValueError("ArrayImages needs a uint8 array of shape (N, H, W) or (N, H, W, C)")
        self.array = array if array.ndim == 4 else array[..., None]

    def __len__(self) -> int:
        return len(self.array)

    def load(self, i: int) -> np.ndarray:
        return self.array[i]

    def subset(self, indices: np.ndarray) -> "ArrayImages":
        return ArrayImages(self.array[np.asarray(indices, dtype=np.int64)])

    def describe(self) -> str:
        return f"{len(self)} in-memory images of shape {self.array.shape[1:]}"
