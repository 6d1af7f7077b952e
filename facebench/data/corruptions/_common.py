"""Shared helpers of the corruption families: constant tables, filters, zoom, HSV, plasma fractal, motion blur.

Conventions: images are float arrays in [0, 1] of shape (H, W, 3) (RGB) unless a docstring says otherwise;
randomness only through the ``numpy.random.Generator`` passed in (never the global NumPy state).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: The three constant tables of hendrycks/robustness (spec 1.2): ImageNet-C (make_imagenet_c.py, 224 px),
#: Tiny-ImageNet-C (make_tinyimagenet_c.py, 64 px) and CIFAR-10-C (make_cifar_c.py, 32 px).
IMAGENET_224 = "imagenet-c-224"
TINY_64 = "tiny-imagenet-c-64"
CIFAR_32 = "cifar-10-c-32"
TABLES = (IMAGENET_224, TINY_64, CIFAR_32)


def blur(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur over the two image axes only (no blur across channels); defaults are those of
    ``skimage.filters.gaussian`` (mode 'nearest', truncate 4), which the reference calls."""
    sigmas = (sigma, sigma) + (0,) * (x.ndim - 2)
    return ndimage.gaussian_filter(np.asarray(x, dtype=np.float64), sigma=sigmas, mode=mode, truncate=truncate)


def clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` keeping the size: centre crop of ceil(n / factor) per axis, linear
    ``scipy.ndimage.zoom`` (order 1), centre trim back to n. The reference crops a square of the height;
    here each axis uses its own length (identical for square images)."""
    h, w = img.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    zoomed = ndimage.zoom(img[top:top + ch, left:left + cw], (factor, factor) + (1,) * (img.ndim - 2), order=1)
    trim_top, trim_left = (zoomed.shape[0] - h) // 2, (zoomed.shape[1] - w) // 2
    return zoomed[trim_top:trim_top + h, trim_left:trim_left + w]


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] to HSV in [0, 1] (skimage.color.rgb2hsv conventions: S = 0 where V = 0 or the pixel is
    gray, hue 0 for gray pixels). Float, not PIL's 8-bit 'HSV' mode."""
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    safe = np.where(delta == 0, 1.0, delta)
    s = np.where(delta == 0, 0.0, delta / np.where(v == 0, 1.0, v))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    h = np.where(v == b, 4.0 + (r - g) / safe, 0.0)
    h = np.where(v == g, 2.0 + (b - r) / safe, h)
    h = np.where(v == r, (g - b) / safe, h)
    h = np.where(delta == 0, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_hsv` (the six-sector formula of colorsys and skimage.color.hsv2rgb)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.astype(int) % 6
    choices = [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.zeros(hsv.shape, dtype=np.float64)
    for k, rgb in enumerate(choices):
        out = np.where((sector == k)[..., None], rgb, out)
    return out


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map (the reference's ``plasma_fractal``) of side ``mapsize`` (a power of two),
    scaled to [0, 1]. Each step adds ``wibble * U(-wibble, wibble)`` (the reference's product, kept), wibble
    starts at 100 and is divided by ``wibbledecay`` after each step; neighbours wrap around (np.roll)."""
    grid = np.zeros((mapsize, mapsize), dtype=np.float64)
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half::step, half::step] = square / 4 + wibble * rng.uniform(-wibble, wibble, square.shape)
        centres, corners = grid[half::step, half::step], grid[0::step, 0::step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0::step, half::step] = left / 4 + wibble * rng.uniform(-wibble, wibble, left.shape)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half::step, 0::step] = top / 4 + wibble * rng.uniform(-wibble, wibble, top.shape)
        step, wibble = half, wibble / wibbledecay
    grid -= grid.min()
    return grid / grid.max()


def next_power_of_two(n: int) -> int:
    """The smallest power of two >= n (fog's map size: 256 for 224 px, 64 for 64 px, 32 for 32 px)."""
    return 1 << max(0, int(n - 1).bit_length())


def motion_blur_array(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """One-sided Gaussian motion blur, written after ImageMagick's MotionBlurImage semantics (the reference
    calls it through Wand): width = 2*ceil(radius)+1 taps, weight_i ~ exp(-i^2 / (2 sigma^2)) (normalised),
    tap i reads the pixel at (row + ceil(i sin a - 0.5), col + ceil(i cos a - 0.5)), a in degrees (ImageMagick's
    rounding); edge pixels repeat
    beyond the border. ``img`` is (H, W) or (H, W, C) in any range; float64 out, not rounded."""
    width = int(2 * np.ceil(radius) + 1)
    taps = np.arange(width, dtype=np.float64)
    weights = np.exp(-taps ** 2 / (2.0 * sigma ** 2))
    weights /= weights.sum()
    rad = np.deg2rad(angle)
    rows = np.ceil(taps * np.sin(rad) - 0.5).astype(int)
    cols = np.ceil(taps * np.cos(rad) - 0.5).astype(int)
    pad = width
    spec = ((pad, pad), (pad, pad)) + ((0, 0),) * (img.ndim - 2)
    padded = np.pad(np.asarray(img, dtype=np.float64), spec, mode="edge")
    h, w = img.shape[:2]
    out = np.zeros(img.shape, dtype=np.float64)
    for weight, dr, dc in zip(weights, rows, cols):
        out += weight * padded[pad + dr:pad + dr + h, pad + dc:pad + dc + w]
    return out


def to_float(x_uint8: np.ndarray) -> np.ndarray:
    """uint8 in [0, 255] to float64 in [0, 1] (the reference's ``np.array(x) / 255.``)."""
    return np.asarray(x_uint8, dtype=np.float64) / 255.0


def to_uint8_exact(x01: np.ndarray) -> np.ndarray:
    """Float in [0, 1] that came from uint8 (x = u / 255) back to exactly u (rounded, not truncated)."""
    return np.clip(np.rint(np.asarray(x01) * 255.0), 0, 255).astype(np.uint8)
