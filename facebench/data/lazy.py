"""Images computed on first access to their pixels (``LazyImages``): the generated sets' image source.

A generated split (the synthetic faces, procedural noise) is identified by its loader's tag, not by its bytes
(``Dataset.fingerprint``), so a run whose predictions are all in the store needs its ids and labels only.
``LazyImages`` holds a picklable ``render()`` that returns every image as one uint8 array and calls it the
first time pixels are read (``load``, ``array``, ``sample_digests``, ``content_fingerprint``); its length and
``subset`` need no pixels. It is an ``ArrayImages`` once rendered, so the engine treats it as one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facebench.data.images import ArrayImages
from facebench.errors import DataError


class LazyImages(ArrayImages):
    """``n`` in-memory images, rendered by ``render()`` (uint8, (n, H, W) or (n, H, W, C)) on first access.

    ``generated``: the pixels are a deterministic function of the loader's tag (see ``ArrayImages``).
    ``rendered`` says whether the pixels exist yet; subsets share their parent's rendering.
    """

    def __init__(self, render: Callable[[], np.ndarray], n: int, *, generated: bool = False):
        self._render, self._n, self._array = render, int(n), None
        self.generated = bool(generated)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            array = np.asarray(self._render())
            if array.dtype != np.uint8 or array.ndim not in (3, 4) or len(array) != self._n:
                raise DataError(f"LazyImages: render() must return a uint8 array of {self._n} images "
                                f"(N, H, W[, C]); got {array.dtype} {array.shape}")
            self._array = array if array.ndim == 4 else array[..., None]
        return self._array

    @property
    def rendered(self) -> bool:
        return self._array is not None

    def __len__(self) -> int:
        return self._n

    def subset(self, indices: np.ndarray) -> "LazyImages":
        idx = np.asarray(indices, dtype=np.int64)
        if self._array is not None:
            return LazyImages(_Rows(self._array, idx), len(idx), generated=self.generated)
        return LazyImages(_Rows(self, idx), len(idx), generated=self.generated)

    def describe(self) -> str:
        if self._array is None:
            return f"{self._n} in-memory images (rendered on first use)"
        return super().describe()

    def __getstate__(self) -> dict:
        """Pickled (DataLoader workers, torchrun) with its pixels when they exist, else with ``render``."""
        state = dict(self.__dict__)
        if state["_array"] is not None:
            state["_render"] = None
        return state


class _Rows:
    """``render`` of a subset: the rows ``indices`` of a source's pixels (a parent ``LazyImages`` renders
    once for all its subsets). A module-level class, so that it pickles."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, indices

    def __call__(self) -> np.ndarray:
        array = self.source.array if isinstance(self.source, ArrayImages) else self.source
        return array[self.indices]
