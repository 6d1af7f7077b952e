"""Digital corruptions (ImageNet-C): contrast, elastic transform, pixelate, JPEG and (validation) saturate.

Each function takes a float image in [0, 1] (H, W, 3) and its severity constant (plus a
``numpy.random.Generator`` for the elastic transform) and returns values on the 0-255 scale. Pixelate and
JPEG go through Pillow exactly as the reference does; the elastic transform replaces OpenCV's
``getAffineTransform`` / ``warpAffine`` (bilinear, border reflect-101) with NumPy and
``scipy.ndimage.map_coordinates`` (order 1, mode 'mirror'), which agrees up to OpenCV's fixed-point
interpolation weights.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from ._common import CIFAR_32, IMAGENET_224, TINY_64, blur, hsv_to_rgb, rgb_to_hsv, to_uint8_exact

CONTRAST = {IMAGENET_224: (0.4, 0.3, 0.2, 0.1, 0.05), TINY_64: (0.4, 0.3, 0.2, 0.1, 0.05),
            CIFAR_32: (0.75, 0.5, 0.4, 0.3, 0.15)}
#: (alpha, sigma, affine shift) as fractions of a base length, and the base as a multiple of the image's short
#: side: ImageNet-C writes 244 * (...) for 224 px images ("244 should have been 224"), kept as 244/224; the
#: 64 and 32 px scripts use the image size itself (IMSIZE * (...)).
_B224, _B = 244 / 224, 1.0
ELASTIC = {IMAGENET_224: ((2, 0.7, 0.1, _B224), (2, 0.08, 0.2, _B224), (0.05, 0.01, 0.02, _B224),
                          (0.07, 0.01, 0.02, _B224), (0.12, 0.01, 0.02, _B224)),
           TINY_64: ((0, 0, 0.08, _B), (0.05, 0.3, 0.06, _B), (0.1, 0.08, 0.06, _B), (0.1, 0.03, 0.03, _B),
                     (0.16, 0.03, 0.02, _B)),
           CIFAR_32: ((0, 0, 0.08, _B), (0.05, 0.2, 0.07, _B), (0.08, 0.06, 0.06, _B), (0.1, 0.04, 0.05, _B),
                      (0.1, 0.03, 0.03, _B))}
#: resize factor: down to (int(W c), int(H c)) with BOX, back with BOX
PIXELATE = {IMAGENET_224: (0.6, 0.5, 0.4, 0.3, 0.25), TINY_64: (0.9, 0.8, 0.7, 0.6, 0.5),
            CIFAR_32: (0.95, 0.9, 0.85, 0.75, 0.65)}
JPEG_QUALITY = {IMAGENET_224: (25, 18, 15, 10, 7), TINY_64: (65, 58, 50, 40, 25), CIFAR_32: (80, 65, 58, 50, 40)}
#: (scale, shift) of the HSV saturation
SATURATE = {IMAGENET_224: ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
            TINY_64: ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
            CIFAR_32: ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))}


def contrast(x: np.ndarray, c: float) -> np.ndarray:
    """(x - m) * c + m with m the mean over the image, per channel. m is computed from the exact integer sum
    of the 0-255 values, so a constant image stays exactly unchanged (spec 4.2); the reference's float64
    ``np.mean`` can land one ulp off and, after ``np.uint8`` truncation, lower such an image by one level."""
    counts = to_uint8_exact(x).astype(np.int64).sum(axis=(0, 1), keepdims=True)
    means = counts / (x.shape[0] * x.shape[1]) / 255.0
    return np.clip((x - means) * c + means, 0, 1) * 255


def saturate(x: np.ndarray, c: tuple) -> np.ndarray:
    """HSV saturation S -> clip(S * scale + shift, 0, 1) (float HSV, skimage conventions)."""
    hsv = rgb_to_hsv(x)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def pixelate_size(height: int, width: int, c: float) -> tuple[int, int]:
    """The intermediate (height, width): int(H c), int(W c), at least 1 (224 px: 134, 112, 89, 67, 56)."""
    return max(1, int(height * c)), max(1, int(width * c))


def pixelate(x: np.ndarray, c: float) -> np.ndarray:
    """Pillow BOX resize to ``pixelate_size`` and BOX back to the original size (the reference's filters)."""
    img = Image.fromarray(to_uint8_exact(x))
    small_h, small_w = pixelate_size(x.shape[0], x.shape[1], c)
    img = img.resize((small_w, small_h), Image.Resampling.BOX).resize((x.shape[1], x.shape[0]),
                                                                       Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float64)


def jpeg_compression(x: np.ndarray, quality: int) -> np.ndarray:
    """Pillow JPEG save at ``quality`` (Pillow's other defaults: 4:2:0 subsampling) and decode."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8_exact(x)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float64)


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix M with M @ (x, y, 1) = dst for the three (x, y) points of src (cv2.getAffineTransform)."""
    design = np.hstack([src.astype(np.float64), np.ones((3, 1))])
    return np.linalg.solve(design, dst.astype(np.float64)).T


def _warp_affine(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """cv2.warpAffine semantics: out(col, row) = img(inverse(M) @ (col, row, 1)), bilinear, reflect-101."""
    h, w = img.shape[:2]
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    src_y = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    return np.stack([ndimage.map_coordinates(img[..., k], [src_y, src_x], order=1, mode="mirror")
                     for k in range(img.shape[-1])], axis=-1)


def elastic_transform(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Random affine (three points around the centre moved by ``rng.uniform(-shift, shift, (3, 2))``), then
    displacement fields dx, dy = blur(U(-1, 1), sigma, mode 'reflect', truncate 3) * alpha (two
    ``rng.uniform`` draws of (H, W), dx first); rows move by dy, columns by dx, bilinear, mode 'reflect'.
    alpha, sigma and shift are the table's fractions times base * short side (see ``ELASTIC``). The
    reference's points use (H//2, W//2) as (x, y): identical for square images, kept for others."""
    alpha_f, sigma_f, shift_f, base_factor = c
    img = x.astype(np.float32)
    h, w = img.shape[:2]
    base = base_factor * min(h, w)
    centre = np.float32((h, w)) // 2
    half = min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-shift_f * base, shift_f * base, size=src.shape).astype(np.float32)
    img = _warp_affine(img, affine_from_points(src, dst))
    dx = (blur(rng.uniform(-1, 1, size=(h, w)), sigma_f * base, mode="reflect", truncate=3) * alpha_f * base)
    dy = (blur(rng.uniform(-1, 1, size=(h, w)), sigma_f * base, mode="reflect", truncate=3) * alpha_f * base)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = [rows + dy.astype(np.float32), cols + dx.astype(np.float32)]
    out = np.stack([ndimage.map_coordinates(img[..., k], coords, order=1, mode="reflect")
                    for k in range(img.shape[-1])], axis=-1)
    return np.clip(out, 0, 1) * 255
