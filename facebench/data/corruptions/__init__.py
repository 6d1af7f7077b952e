"""ImageNet-C corruptions for face images: registry, ``corrupt``, ``table_for`` and ``variant_seed``.

The 15 benchmark corruptions (``BENCHMARK_CORRUPTIONS``, canonical order of hendrycks/robustness) and the 4
validation ones (``VALIDATION_CORRUPTIONS``), severities 1-5, with the constants of the reference scripts
(``ImageNet-C/create_c/make_imagenet_c.py``, ``make_tinyimagenet_c.py``, ``make_cifar_c.py``) in three
tables (``TABLES``), implemented with NumPy, SciPy and Pillow only. ``Corruption.exact`` says whether a
corruption follows the reference formula step by step (float details aside) or re-implements an OpenCV /
ImageMagick step or an asset (``Corruption.note`` says which).

Conventions: input uint8 (H, W, 3) RGB, (H, W) or (H, W, 1) grayscale, short side >= 32 px; output uint8 of
the input's shape, ``np.uint8(np.clip(out, 0, 255))`` (truncation, as the reference's ``np.uint8``); all
randomness from ``numpy.random.default_rng(seed)``; corrupt after the face crop and before the model's resize;
no JPEG-85 re-save (the released ImageNet-C files have one, spec 1.1: add it in the protocol if wanted).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from PIL import Image

from facebench.errors import ConfigError, DataError

from . import blur, digital, noise, weather
from ._common import CIFAR_32, IMAGENET_224, TABLES, TINY_64, to_float
from .weather import FROST_SOURCE

BENCHMARK_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                         "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                         "elastic_transform", "pixelate", "jpeg_compression")
VALIDATION_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = BENCHMARK_CORRUPTIONS + VALIDATION_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 32  #: smallest short side accepted (the CIFAR-10-C scale)
#: Table rule on the short side s: s >= 96 -> ImageNet-C (224) constants (face crops of 112 px and up, as
#: imagecorruptions applies them at any size); 48 <= s < 96 -> Tiny-ImageNet-C (64); s < 48 -> CIFAR-10-C (32).
TABLE_THRESHOLDS = ((96, IMAGENET_224), (48, TINY_64), (0, CIFAR_32))


@dataclass(frozen=True)
class Corruption:
    """One registry entry: ``apply(x01, constant[, rng])`` returns values on the 0-255 scale."""

    name: str
    family: str
    apply: Callable
    constants: Mapping[str, tuple]  # table -> the five severity constants
    random: bool  # draws from the generator (else the seed does not matter)
    exact: bool  # follows the reference's formula step by step (see note when False)
    note: str = ""


def _entry(name, family, module, table, random=True, exact=True, note=""):
    return Corruption(name, family, getattr(module, name), table, random, exact, note)


_NOT_IM = "ImageMagick motion blur re-implemented in NumPy (_common.motion_blur_array): not ImageNet-C-identical"
REGISTRY: dict[str, Corruption] = {c.name: c for c in (
    _entry("gaussian_noise", "noise", noise, noise.GAUSSIAN_NOISE),
    _entry("shot_noise", "noise", noise, noise.SHOT_NOISE),
    _entry("impulse_noise", "noise", noise, noise.IMPULSE_NOISE),
    _entry("defocus_blur", "blur", blur, blur.DEFOCUS_BLUR, random=False),
    _entry("glass_blur", "blur", blur, blur.GLASS_BLUR),
    _entry("motion_blur", "blur", blur, blur.MOTION_BLUR, exact=False, note=_NOT_IM),
    _entry("zoom_blur", "blur", blur, blur.ZOOM_BLUR, random=False),
    _entry("snow", "weather", weather, weather.SNOW, exact=False, note=_NOT_IM),
    _entry("frost", "weather", weather, weather.FROST, exact=False, note=FROST_SOURCE),
    _entry("fog", "weather", weather, weather.FOG),
    _entry("brightness", "weather", weather, weather.BRIGHTNESS, random=False),
    _entry("contrast", "digital", digital, digital.CONTRAST, random=False),
    _entry("elastic_transform", "digital", digital, digital.ELASTIC,
           note="OpenCV's warpAffine replaced by SciPy bilinear sampling (fixed-point weights differ)"),
    _entry("pixelate", "digital", digital, digital.PIXELATE, random=False),
    _entry("jpeg_compression", "digital", digital, digital.JPEG_QUALITY, random=False),
    _entry("speckle_noise", "noise", noise, noise.SPECKLE_NOISE),
    _entry("gaussian_blur", "blur", blur, blur.GAUSSIAN_BLUR, random=False),
    _entry("spatter", "weather", weather, weather.SPATTER, exact=False,
           note="OpenCV Canny, distance transform and equalizeHist re-implemented with NumPy/SciPy"),
    _entry("saturate", "digital", digital, digital.SATURATE, random=False),
)}


@dataclass(frozen=True)
class CorruptedImage:
    """What ``corrupt`` returns: the image and the settings that made it (record them with results)."""

    image: np.ndarray
    name: str
    severity: int
    seed: int
    table: str


def table_for(size) -> str:
    """The constant table for an image: ``size`` is its short side (int) or its shape ((H, W) or (H, W, C));
    the rule is ``TABLE_THRESHOLDS`` on the short side (>= 96: ImageNet-C 224; 48-95: Tiny-ImageNet-C 64;
    32-47: CIFAR-10-C 32). Sizes below ``MIN_SIDE`` are a DataError."""
    side = int(size) if np.isscalar(size) else int(min(tuple(size)[:2]))
    if side < MIN_SIDE:
        raise DataError(f"images for corruptions need a short side of at least {MIN_SIDE} px, got {side}; "
                        "resize the face crop first (the smallest reference table is CIFAR-10-C at 32 px)")
    return next(table for threshold, table in TABLE_THRESHOLDS if side >= threshold)


def get_corruption(name: str) -> Corruption:
    """The registry entry of ``name``; a ConfigError listing the names otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown corruption {name!r}; choose one of: {', '.join(ALL_CORRUPTIONS)}")
    return REGISTRY[name]


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
        raise ConfigError(f"corruption severity must be an integer 1-5, got {severity!r}")
    return int(severity)


def _check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {seed!r} (see variant_seed)")
    return int(seed)


def severity_constant(name: str, severity: int, table: str):
    """The reference constant of corruption ``name`` at ``severity`` (1-5) in ``table``."""
    if table not in TABLES:
        raise ConfigError(f"unknown corruption table {table!r}; choose one of: {', '.join(TABLES)}")
    return get_corruption(name).constants[table][_check_severity(severity) - 1]


def variant_seed(base_seed: int, sample_index, name: str, severity: int) -> int:
    """A stable 63-bit seed for one (sample, corruption, severity): the first 8 bytes (big-endian, top bit
    cleared) of BLAKE2b-64 over ``f"{base_seed}|{sample_index}|{name}|{severity}"``. ``sample_index`` may be
    an int or a sample id string; the same inputs give the same seed on every machine and Python version."""
    get_corruption(name)
    key = f"{_check_seed(base_seed, 'base_seed')}|{sample_index}|{name}|{_check_severity(severity)}".encode("utf-8")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & ((1 << 63) - 1)


def _as_rgb(image) -> tuple[np.ndarray, str]:
    """(RGB uint8 (H, W, 3), layout) with layout 'rgb', 'gray' (H, W) or 'gray1' (H, W, 1)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise DataError(f"corrupt() needs a uint8 image, got dtype {arr.dtype}; convert with "
                        "np.clip(x, 0, 255).astype(np.uint8) (or x * 255 for [0, 1] floats) first")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        return np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2), "gray" if arr.ndim == 2 else "gray1"
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr, "rgb"
    raise DataError(f"corrupt() needs an (H, W, 3) RGB or (H, W) grayscale image, got shape {arr.shape}; "
                    "drop an alpha channel with image[..., :3]")


def _back_to_layout(rgb: np.ndarray, layout: str) -> np.ndarray:
    """Grayscale inputs come back as Pillow's 'L' conversion (ITU-R 601-2 luma) of the corrupted RGB."""
    if layout == "rgb":
        return rgb
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    return gray if layout == "gray" else gray[..., None]


def corrupt(image, name: str, severity: int, seed: int, table: str | None = None) -> CorruptedImage:
    """Corrupt one uint8 image with ``name`` at ``severity`` (1-5), drawing from
    ``numpy.random.default_rng(seed)`` (see ``variant_seed``). ``table`` defaults to ``table_for(shape)``.
    Grayscale (H, W) / (H, W, 1) images are replicated to RGB, corrupted, and converted back with luma."""
    entry = get_corruption(name)
    rgb, layout = _as_rgb(image)
    chosen = table_for(rgb.shape) if table is None else table
    constant = severity_constant(name, severity, chosen)
    seed = _check_seed(seed)
    x = to_float(rgb)
    out = entry.apply(x, constant, np.random.default_rng(seed)) if entry.random else entry.apply(x, constant)
    result = np.uint8(np.clip(np.asarray(out, dtype=np.float64), 0, 255))
    return CorruptedImage(_back_to_layout(result, layout), name, int(severity), seed, chosen)


__all__ = ["ALL_CORRUPTIONS", "BENCHMARK_CORRUPTIONS", "CIFAR_32", "CorruptedImage", "Corruption", "FROST_SOURCE",
           "IMAGENET_224", "MIN_SIDE", "REGISTRY", "SEVERITIES", "TABLES", "TABLE_THRESHOLDS", "TINY_64",
           "VALIDATION_CORRUPTIONS", "corrupt", "get_corruption", "severity_constant", "table_for",
           "variant_seed"]
