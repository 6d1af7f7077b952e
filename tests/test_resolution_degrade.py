"""Synthetic low resolution (facebench.data.resolution.degrade_resolution): spec 2.4 / 4.3."""

from __future__ import annotations

import numpy as np
import pytest

from facebench.data.resolution import degrade_resolution, low_resolution_shape
from facebench.errors import ConfigError, DataError


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 3.0)[..., None] * np.cos(yy / 5.0)[..., None] + rng.normal(0, 20, (h, w, 3))
    return np.uint8(np.clip(base, 0, 255))


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _antialiased_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows of weights: output pixel i reads input j with weight cubic((j + 0.5 - centre) / scale), the kernel
    stretched by the reduction factor (antialiasing), normalised; written from the filter's definition."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    taps = _keys_cubic((np.arange(n_in)[None, :] + 0.5 - centres[:, None]) / stretch)
    return taps / taps.sum(axis=1, keepdims=True)


def test_k_equal_to_the_input_size_returns_the_same_image():  # spec 4.3: lfw_lr@k with k = input size
    img = textured(112, 112)
    out = degrade_resolution(img, 112, 112)
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_down_and_up_matches_a_separable_antialiased_bicubic_computation():
    img = textured(112, 112, seed=3)
    down, up = _antialiased_bicubic_matrix(112, 16), _antialiased_bicubic_matrix(16, 112)
    x = img.astype(np.float64)
    small = np.einsum("ij,hjc->hic", down, x)  # horizontal pass, then rounded to 8 bits as Pillow stores it
    small = np.clip(np.rint(np.einsum("ij,jwc->iwc", down, np.clip(np.rint(small), 0, 255))), 0, 255)
    big = np.clip(np.rint(np.einsum("ij,hjc->hic", up, small)), 0, 255)
    big = np.clip(np.rint(np.einsum("ij,jwc->iwc", up, big)), 0, 255)
    out = degrade_resolution(img, 16, 112).astype(int)
    assert np.abs(out - big).max() <= 1 and np.abs(out - big).mean() < 0.01  # no antialiasing: ~14


def test_down_sampling_is_antialiased():
    checker = np.uint8(((np.indices((112, 112)).sum(axis=0) % 2) * 255)[..., None].repeat(3, axis=2))
    out = degrade_resolution(checker, 16, 16)  # out_size = k: the low-resolution image itself
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - 128).max() <= 3  # averaged, no aliased black/white pixels


def test_smaller_k_loses_more_detail():
    img = textured(112, 112, seed=1)
    errors = [np.mean((degrade_resolution(img, k, 112).astype(float) - img) ** 2) for k in (32, 16, 8)]
    assert errors[0] < errors[1] < errors[2]


def test_shapes_grayscale_and_out_size():
    gray = textured(112, 96)[..., 0]
    assert degrade_resolution(gray, 16, (112, 96)).shape == (112, 96)
    assert degrade_resolution(gray[..., None], 16).shape == (112, 96, 1)
    assert degrade_resolution(textured(112, 96), 12, 224).shape == (224, 224, 3)
    assert degrade_resolution(gray, 8).dtype == np.uint8


@pytest.mark.parametrize("h, w, k, expected", [(112, 112, 16, (16, 16)), (112, 96, 16, (19, 16)),
                                               (96, 112, 16, (16, 19)), (112, 96, 8, (9, 8))])
def test_the_short_side_becomes_k(h, w, k, expected):
    assert low_resolution_shape(h, w, k) == expected


def test_bad_arguments_say_what_to_do():
    img = textured(64, 64)
    with pytest.raises(ConfigError, match="only down-samples"):
        degrade_resolution(img, 65)
    for bad in (0, -3, 8.0, True):
        with pytest.raises(ConfigError, match="positive integer"):
            degrade_resolution(img, bad)
    with pytest.raises(ConfigError, match="out_size"):
        degrade_resolution(img, 8, "112")
    with pytest.raises(DataError, match="uint8"):
        degrade_resolution(img.astype(np.float32), 8)
    with pytest.raises(DataError, match="shape"):
        degrade_resolution(np.zeros((64, 64, 4), np.uint8), 8)
