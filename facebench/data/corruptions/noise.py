"""Noise corruptions (ImageNet-C): gaussian, shot, impulse and speckle noise.

Each function takes a float image in [0, 1] (H, W, 3), its severity constant and a
``numpy.random.Generator``, and returns floats on the 0-255 scale (the reference's ``clip(.., 0, 1) * 255``).
Constants per table (spec 1.2 and hendrycks/robustness make_{imagenet,tinyimagenet,cifar}_c.py), severities 1-5.
"""

from __future__ import annotations

import numpy as np

from ._common import CIFAR_32, IMAGENET_224, TINY_64

GAUSSIAN_NOISE = {IMAGENET_224: (0.08, 0.12, 0.18, 0.26, 0.38), TINY_64: (0.04, 0.08, 0.12, 0.15, 0.18),
                  CIFAR_32: (0.04, 0.06, 0.08, 0.09, 0.10)}
SHOT_NOISE = {IMAGENET_224: (60, 25, 12, 5, 3), TINY_64: (250, 100, 50, 30, 15), CIFAR_32: (500, 250, 100, 75, 50)}
IMPULSE_NOISE = {IMAGENET_224: (0.03, 0.06, 0.09, 0.17, 0.27), TINY_64: (0.01, 0.02, 0.05, 0.08, 0.14),
                 CIFAR_32: (0.01, 0.02, 0.03, 0.05, 0.07)}
SPECKLE_NOISE = {IMAGENET_224: (0.15, 0.2, 0.35, 0.45, 0.6), TINY_64: (0.15, 0.2, 0.25, 0.3, 0.35),
                 CIFAR_32: (0.06, 0.1, 0.12, 0.16, 0.2)}


def gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """x + N(0, sigma^2) per value (one ``rng.normal`` draw of x's shape); sigma = 0 is the identity."""
    return np.clip(x + rng.normal(0.0, sigma, size=x.shape), 0, 1) * 255


def shot_noise(x: np.ndarray, lam: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson(x * lam) / lam per value (one ``rng.poisson`` draw)."""
    return np.clip(rng.poisson(x * lam) / lam, 0, 1) * 255


def impulse_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper per value, as skimage's ``random_noise(mode='s&p', amount)`` with salt_vs_pepper 0.5:
    a value is replaced when U1 < amount, by 1 (salt) when U2 < 0.5 else by 0 (pepper); U1 then U2 are two
    ``rng.random`` draws of x's shape."""
    flipped = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    out = np.where(flipped & salt, 1.0, x)
    out = np.where(flipped & ~salt, 0.0, out)
    return np.clip(out, 0, 1) * 255


def speckle_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """x + x * N(0, sigma^2) per value (validation corruption)."""
    return np.clip(x + x * rng.normal(0.0, sigma, size=x.shape), 0, 1) * 255
