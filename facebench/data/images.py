"""Image sources: where a dataset's pixels come from (files decoded with Pillow, or arrays).

A source is indexable (``load(i) -> uint8 array H x W x C``), has a length, supports
``subset(indices)`` and is picklable so DataLoader workers can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def decode_image(path: str | Path, box: Sequence[float] | None = None) -> np.ndarray:
    """Decode a file to uint8 RGB (H, W, 3); grey files become 1 channel (H, W, 1).

    ``box`` = (left, top, right, bottom) in pixels crops after decoding (clamped to the image).
    """
    with Image.open(path) as im:
        if im.mode in ("1", "LA", "I", "I;16", "F"):
            im = im.convert("L")
        elif im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        if box is not None:
            left, top, right, bottom = (int(round(v)) for v in box)
            left, top = max(left, 0), max(top, 0)
            right, bottom = min(right, im.width), min(bottom, im.height)
            im = im.crop((left, top, right, bottom))
        array = np.asarray(im, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


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
