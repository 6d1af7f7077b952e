"""Decode an image file to uint8 pixels, faithfully, whatever its mode and bit depth.

Conventions (the README repeats them):

- Output: uint8 (H, W, 3) RGB, or (H, W, 1) for grey files (modes 1, L, LA, I;16, I, F).
- EXIF orientation is applied first (``PIL.ImageOps.exif_transpose`` semantics, all 8 values), so
  pixels, sizes and crop boxes are in the orientation a viewer shows (browsers, OpenCV's ``imread``):
  the orientation annotators saw when they drew the boxes.
- 16-bit samples (grey, RGB, RGBA, LA; PNG and TIFF) keep their high byte: ``v >> 8``, i.e.
  ``floor(v / 256)``. This is Pillow's own rule for 16-bit RGB(A) PNG/TIFF, used for grey too, so
  an 8-bit value stored as 16 bits (``v8 * 257``) comes back as ``v8``.
- 32-bit integer images (mode I) are read as 16-bit: clipped to [0, 65535], then ``v >> 8``.
- Float images (mode F): when every finite value lies in [0, 1], ``round(v * 255)``; otherwise the
  values are taken as 8-bit intensities, ``round(clip(v, 0, 255))``. NaN becomes 0.
- Transparency (LA, RGBA, PA, P with a transparent colour) is composited on black:
  ``round(c * a / 255)`` -- the zero border that face alignment (``warpAffine``) pads with.
- 1-bit: 0 and 255. Palette: its RGB colours. CMYK (Adobe inverted CMYK and YCCK JPEG included,
  which Pillow/libjpeg undo), YCbCr, LAB, HSV: Pillow's conversion to RGB.
- ``box`` = (left, top, right, bottom) in pixels of the oriented image, rounded, clamped to the image.

Every failure (missing, empty, truncated, not an image, a box outside the image) is a
``BadImageError`` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from facebench.errors import BadImageError

_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_ORIENTATION = 0x0112


def decode_image(path: str | Path, box: Sequence[float] | None = None) -> np.ndarray:
    """Decode ``path`` to uint8 (H, W, 3) RGB or (H, W, 1) grey under the module's conventions."""
    try:
        with Image.open(path) as im:
            im = _oriented(im)
            array = to_uint8(im)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(f"image file {path} does not exist") from None
    except Exception as err:  # Pillow's plugins raise many types on corrupt data
        raise BadImageError(f"cannot decode image {path}: {type(err).__name__}: {err}") from None
    array = array[..., None] if array.ndim == 2 else array
    return array if box is None else _crop(array, box, path)


def _oriented(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation tag says (unchanged without one)."""
    if im.getexif().get(_ORIENTATION, 1) in (None, 1):
        return im
    return ImageOps.exif_transpose(im)


def to_uint8(im: Image.Image) -> np.ndarray:
    """Pixels of an opened image as uint8 (H, W) grey or (H, W, 3) RGB (see the module docstring)."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return np.asarray(im, dtype=np.uint8)
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode in _GREY_16:
        return (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
    if mode == "I":
        return (np.clip(np.asarray(im, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
    if mode == "F":
        return float_to_uint8(np.asarray(im, dtype=np.float64))
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA") if mode == "La" else im, dtype=np.uint8)
        return on_black(la[..., 0], la[..., 1])
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return on_black(rgba[..., :3], rgba[..., 3:])
    return np.asarray(im.convert("RGB"), dtype=np.uint8)  # P, RGBX, CMYK, YCbCr, LAB, HSV


def on_black(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite on a black background: ``round(c * a / 255)`` in integers."""
    return ((colour.astype(np.uint32) * alpha + 127) // 255).astype(np.uint8)


def float_to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] data (every finite value) scaled by 255, anything else clipped to [0, 255]; rounded; NaN -> 0."""
    finite = values[np.isfinite(values)]
    scale = 255.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 1.0
    values = np.nan_to_num(values * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(values, 0.0, 255.0)).astype(np.uint8)


def _crop(array: np.ndarray, box: Sequence[float], path) -> np.ndarray:
    height, width = array.shape[:2]
    left, top, right, bottom = (int(round(float(v))) for v in box)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, width), min(bottom, height)
    if right <= left or bottom <= top:
        raise BadImageError(f"crop box {tuple(box)} of {path} lies outside its {width}x{height} pixels "
                            f"(after EXIF orientation); fix the box in the dataset's annotations")
    return array[top:bottom, left:right]
