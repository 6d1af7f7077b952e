"""Synthetic low resolution (spec 2.4, protocol ``lfw_lr@k``): down-sample to k px and back up.

``degrade_resolution(image, k, out_size)`` resizes the uint8 image so that its SHORT side is k px (the long
side scaled by the same factor, rounded, at least 1 px; a square crop becomes k x k) with Pillow's BICUBIC
filter, which is antialiased when shrinking (its support grows with the reduction factor, unlike
``cv2.resize(INTER_CUBIC)``), then resizes to ``out_size`` with BICUBIC again. Pillow only (no OpenCV, no
torchvision); record Pillow's version with results (``PILLOW_VERSION``).
"""

from __future__ import annotations

import numbers

import numpy as np
import PIL
from PIL import Image

from facebench.errors import ConfigError, DataError

PILLOW_VERSION = PIL.__version__
FILTER = "pillow-bicubic"  #: both directions; Pillow's resampling is antialiased when down-sampling


def _check_image(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise DataError(f"degrade_resolution needs a uint8 image, got dtype {arr.dtype}; convert with "
                        "np.clip(x, 0, 255).astype(np.uint8) first")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise DataError(f"degrade_resolution needs an (H, W), (H, W, 1) or (H, W, 3) image, got shape {arr.shape}")
    if min(arr.shape[:2]) < 1:
        raise DataError(f"degrade_resolution got an empty image of shape {arr.shape}")
    return arr


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ConfigError(f"{name} must be a positive integer number of pixels, got {value!r}")
    return int(value)


def _out_shape(out_size, arr: np.ndarray) -> tuple[int, int]:
    """(height, width): None -> the input's size; an int -> square; a (height, width) pair."""
    if out_size is None:
        return arr.shape[0], arr.shape[1]
    if isinstance(out_size, numbers.Integral) and not isinstance(out_size, bool):
        side = _check_size(out_size, "out_size")
        return side, side
    if isinstance(out_size, (tuple, list)) and len(out_size) == 2:
        return _check_size(out_size[0], "out_size height"), _check_size(out_size[1], "out_size width")
    raise ConfigError(f"out_size must be None, an int or a (height, width) pair, got {out_size!r}")


def low_resolution_shape(height: int, width: int, k: int) -> tuple[int, int]:
    """(height, width) with the short side k and the long side scaled by k / short side (rounded, >= 1)."""
    short = min(height, width)
    scale = k / short
    return (k, max(1, round(width * scale))) if height == short else (max(1, round(height * scale)), k)


def degrade_resolution(image, k: int, out_size=None) -> np.ndarray:
    """``image`` (uint8, (H, W), (H, W, 1) or (H, W, 3)) down to short side ``k`` and back up to ``out_size``
    ((height, width), an int for a square, None for the input's size), BICUBIC both ways. k must not exceed
    the short side; k equal to it with out_size the input's size returns the image unchanged (a copy)."""
    arr = _check_image(image)
    k = _check_size(k, "k")
    if k > min(arr.shape[:2]):
        raise ConfigError(f"k = {k} px is larger than the image's short side ({min(arr.shape[:2])} px); "
                          "degrade_resolution only down-samples: choose k <= the short side")
    out_h, out_w = _out_shape(out_size, arr)
    low_h, low_w = low_resolution_shape(arr.shape[0], arr.shape[1], k)
    squeeze = arr.ndim == 3 and arr.shape[2] == 1
    img = Image.fromarray(arr[..., 0] if squeeze else arr)
    if (low_h, low_w) != img.size[::-1]:
        img = img.resize((low_w, low_h), Image.Resampling.BICUBIC)
    if (out_h, out_w) != img.size[::-1]:
        img = img.resize((out_w, out_h), Image.Resampling.BICUBIC)
    out = np.array(img)
    return out[..., None] if squeeze else out
