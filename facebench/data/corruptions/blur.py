"""Blur corruptions (ImageNet-C): defocus, glass, motion, zoom and (validation) gaussian blur.

Each function takes a float image in [0, 1] (H, W, 3) and its severity constant (plus a
``numpy.random.Generator`` for glass and motion blur) and returns floats on the 0-255 scale.
Pixel-unit constants (sigmas, radii, deltas) are used as the chosen table gives them; only the reference's
hard-coded image size (224 / 64 / 32) is replaced by the image's own size.
Without OpenCV, scikit-image or ImageMagick (spec 1.3): skimage ``gaussian`` -> ``scipy.ndimage.gaussian_filter``
(mode 'nearest', truncate 4); ``cv2.filter2D`` / ``cv2.GaussianBlur`` (border reflect-101) ->
``scipy.ndimage.correlate`` (mode 'mirror'); ImageMagick's motion blur -> a NumPy re-implementation
(``_common.motion_blur_array``; not bit-identical to ImageNet-C).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import CIFAR_32, IMAGENET_224, TINY_64, blur, clipped_zoom, motion_blur_array

GAUSSIAN_BLUR = {IMAGENET_224: (1, 2, 3, 4, 6), TINY_64: (0.5, 0.75, 1, 1.25, 1.5), CIFAR_32: (0.4, 0.6, 0.7, 0.8, 1)}
#: (sigma, max_delta, iterations)
GLASS_BLUR = {IMAGENET_224: ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
              TINY_64: ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
              CIFAR_32: ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))}
#: (radius, alias_blur)
DEFOCUS_BLUR = {IMAGENET_224: ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
                TINY_64: ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
                CIFAR_32: ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))}
#: (radius, sigma); angle ~ U(-45, 45) degrees
MOTION_BLUR = {IMAGENET_224: ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
               TINY_64: ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
               CIFAR_32: ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))}
#: zoom factors = np.arange(start, stop, step) (the reference's arange, float end effects included)
_SMALL_ZOOMS = ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01))
ZOOM_BLUR = {IMAGENET_224: ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)),
             TINY_64: _SMALL_ZOOMS, CIFAR_32: _SMALL_ZOOMS}


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Per-channel Gaussian blur (validation corruption)."""
    return np.clip(blur(x, sigma), 0, 1) * 255


def glass_sources(height: int, width: int, delta: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """For each pixel (row-major flat index) the flat index of the pixel whose value it ends up holding.

    The reference visits rows ``range(H - delta, delta, -1)`` and, inside each, columns
    ``range(W - delta, delta, -1)``, draws ``dx, dy`` in [-delta, delta) and runs
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on NumPy views: that copies x[h', w'] into x[h, w] and leaves
    x[h', w'] as it was (not a swap). This follows those semantics exactly; all offsets come from one
    ``rng.integers(-delta, delta, size=(iterations, rows, cols, 2))`` draw, (dx, dy) last."""
    rows = range(height - delta, delta, -1)
    cols = range(width - delta, delta, -1)
    offsets = rng.integers(-delta, delta, size=(iterations, len(rows), len(cols), 2)).tolist()
    source = list(range(height * width))
    for per_iteration in offsets:
        for h, per_row in zip(rows, per_iteration):
            for w, (dx, dy) in zip(cols, per_row):
                source[h * width + w] = source[(h + dy) * width + (w + dx)]
    return np.asarray(source, dtype=np.int64)


def glass_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Blur (sigma), quantise to uint8, local pixel moves (``glass_sources``), blur again."""
    sigma, delta, iterations = c
    img = np.uint8(blur(x, sigma) * 255)
    h, w = img.shape[:2]
    moved = img.reshape(h * w, -1)[glass_sources(h, w, int(delta), int(iterations), rng)].reshape(img.shape)
    return np.clip(blur(moved / 255.0, sigma), 0, 1) * 255


def _gaussian_taps(ksize: int, sigma: float) -> np.ndarray:
    """OpenCV's getGaussianKernel for sigma > 0: exp(-(i - (ksize-1)/2)^2 / (2 sigma^2)), normalised."""
    i = np.arange(ksize) - (ksize - 1) / 2.0
    taps = np.exp(-i ** 2 / (2.0 * sigma ** 2))
    return taps / taps.sum()


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk: support arange(-8, 9) if radius <= 8 else arange(-r, r+1); disk =
    (X^2 + Y^2 <= r^2) / count (float32); then a separable Gaussian of 3 taps (radius <= 8) or 5 taps with
    sigma alias_blur, border reflect-101 (as ``cv2.GaussianBlur``)."""
    half = 8 if radius <= 8 else int(radius)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    taps = _gaussian_taps(3 if radius <= 8 else 5, alias_blur)
    smoothed = ndimage.correlate1d(disk.astype(np.float64), taps, axis=0, mode="mirror")
    return ndimage.correlate1d(smoothed, taps, axis=1, mode="mirror")


def defocus_blur(x: np.ndarray, c: tuple) -> np.ndarray:
    """Each channel correlated with ``defocus_kernel`` (border reflect-101, as cv2.filter2D)."""
    kernel = defocus_kernel(*c)
    channels = [ndimage.correlate(x[..., k], kernel, mode="mirror") for k in range(x.shape[-1])]
    return np.clip(np.stack(channels, axis=-1), 0, 1) * 255


def motion_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Motion blur of the uint8 image along an angle ~ ``rng.uniform(-45, 45)``, rounded to integers as the
    reference's PNG round trip through ImageMagick is (``_common.motion_blur_array``; not ImageNet-C-identical)."""
    radius, sigma = c
    angle = rng.uniform(-45, 45)
    blurred = motion_blur_array(np.rint(x * 255.0), radius, sigma, angle)
    return np.clip(np.floor(blurred + 0.5), 0, 255)


def zoom_blur(x: np.ndarray, c: tuple) -> np.ndarray:
    """(x + sum_z clipped_zoom(x, z)) / (len(zooms) + 1) in float32, zooms = np.arange(*c)."""
    zooms = np.arange(*c)
    img = x.astype(np.float32)
    out = np.zeros_like(img)
    for factor in zooms:
        out += clipped_zoom(img, factor)
    return np.clip((img + out) / (len(zooms) + 1), 0, 1) * 255
