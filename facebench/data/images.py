"""Image sources: where a dataset's pixels come from (files decoded with Pillow, or arrays).

A source is indexable (``load(i) -> uint8 array H x W x C``), has a length, supports
``subset(indices)`` and is picklable so DataLoader workers can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from facebench.data.decode import decode_image  # noqa: E402,F401  (faithful decoding: see that module)
from facebench.errors import DataError


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

    def sample_digests(self) -> np.ndarray:
        """(N, 16) uint8: the content digest of each file (``facebench.content``: a stat cache in front
        of BLAKE2b; a missing or unreadable file gets a fixed marker), computed once per source."""
        digests = getattr(self, "_digests", None)
        if digests is None:
            from facebench.content import file_digests

            digests = self._digests = file_digests(self.paths)
        return digests

    def content_fingerprint(self, order: np.ndarray | None = None) -> str:
        """Hash of the files' bytes and crop boxes, in ``order`` (default: source order), and of the
        decoder's code version. Paths are not part of it: the same bytes under other names give the same."""
        from facebench.content import code_digest, combine

        order = np.arange(len(self)) if order is None else np.asarray(order, dtype=np.int64)
        boxes = b"" if self.boxes is None else np.round(self.boxes[order], 6).astype("<f8").tobytes()
        return combine("files", self.sample_digests()[order].tobytes(), boxes, code_digest([decode_image]))

    def content_stamp(self) -> dict:
        """What the decoded-image cache keys on: the content fingerprint in source order."""
        return {"content": self.content_fingerprint()}


class ArrayImages:
    """Images held in memory as a uint8 array (N, H, W, C)."""

    def __init__(self, array: np.ndarray):
        array = np.asarray(array)
        if array.dtype != np.uint8 or array.ndim not in (3, 4):
            raise DataError("ArrayImages needs a uint8 array of shape (N, H, W) or (N, H, W, C)")
        self.array = array if array.ndim == 4 else array[..., None]

    def __len__(self) -> int:
        return len(self.array)

    def load(self, i: int) -> np.ndarray:
        return self.array[i]

    def subset(self, indices: np.ndarray) -> "ArrayImages":
        return ArrayImages(self.array[np.asarray(indices, dtype=np.int64)])

    def describe(self) -> str:
        return f"{len(self)} in-memory images of shape {self.array.shape[1:]}"

    # True for pixels that are a deterministic function of the loader's tag (generator, seed): the
    # dataset fingerprint then uses the tag, not the bytes (see ``Dataset.fingerprint``)
    generated = False

    def sample_digests(self) -> np.ndarray:
        """(N, 16) uint8: BLAKE2b-128 of each image's bytes (with its shape and dtype), computed once."""
        digests = getattr(self, "_digests", None)
        if digests is None:
            from facebench.content import array_digests

            digests = self._digests = array_digests(self.array)
        return digests

    def content_fingerprint(self, order: np.ndarray | None = None) -> str:
        """Hash of the images' bytes in ``order`` (default: source order)."""
        from facebench.content import combine

        order = np.arange(len(self)) if order is None else np.asarray(order, dtype=np.int64)
        return combine("arrays", self.sample_digests()[order].tobytes())
