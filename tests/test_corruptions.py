"""ImageNet-C corruptions (facebench.data.corruptions): spec 4.2 golden vectors, each corruption against an
independent computation on a fixed image and seed, determinism, seeds, tables, and dtype/shape/range for
every corruption x severity at 64 and 224 px."""

from __future__ import annotations

import colorsys
import hashlib
import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from facebench.data import corruptions as C
from facebench.data.corruptions import _common, digital, noise, weather
from facebench.errors import ConfigError, DataError

SEED = 1234


def smooth_face_like(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic colour test image: gradients, a bright ellipse and mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ellipse = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.4) ** 2 < 1
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 - 0.3 * xx * yy], axis=-1)
    base[ellipse] = base[ellipse] * 0.5 + np.array([0.45, 0.35, 0.3])
    base += rng.normal(0, 0.03, base.shape)
    return np.uint8(np.clip(base, 0, 1) * 255)


IMG224 = smooth_face_like(224)
IMG64 = smooth_face_like(64, seed=1)


def as01(img):
    return img.astype(np.float64) / 255.0


# -- every corruption x severity: dtype, shape, range, determinism ----------------------------------------------
@pytest.mark.parametrize("name", C.ALL_CORRUPTIONS)
@pytest.mark.parametrize("image", [IMG64, IMG224], ids=["64px", "224px"])
def test_every_severity_gives_uint8_of_the_same_shape_and_is_reproducible(name, image):
    for severity in C.SEVERITIES:
        first = C.corrupt(image, name, severity, seed=SEED)
        again = C.corrupt(image, name, severity, seed=SEED)
        assert first.image.dtype == np.uint8 and first.image.shape == image.shape
        assert 0 <= first.image.min() and first.image.max() <= 255
        np.testing.assert_array_equal(first.image, again.image)
        assert (first.name, first.severity, first.seed) == (name, severity, SEED)
        assert first.table == (C.IMAGENET_224 if image.shape[0] == 224 else C.TINY_64)


@pytest.mark.parametrize("name", [n for n in C.ALL_CORRUPTIONS if C.REGISTRY[n].random])
def test_random_corruptions_change_with_the_seed(name):
    a = C.corrupt(IMG64, name, 3, seed=1).image
    b = C.corrupt(IMG64, name, 3, seed=2).image
    assert not np.array_equal(a, b)


def test_the_registry_lists_15_benchmark_and_4_validation_corruptions_with_five_constants_per_table():
    assert len(C.BENCHMARK_CORRUPTIONS) == 15 and len(C.VALIDATION_CORRUPTIONS) == 4
    assert C.BENCHMARK_CORRUPTIONS[0] == "gaussian_noise" and C.BENCHMARK_CORRUPTIONS[-1] == "jpeg_compression"
    assert set(C.REGISTRY) == set(C.ALL_CORRUPTIONS)
    for entry in C.REGISTRY.values():
        assert set(entry.constants) == set(C.TABLES)
        assert all(len(v) == 5 for v in entry.constants.values())
        assert entry.exact or entry.note


def test_spec_constants_spot_checks():
    assert C.severity_constant("gaussian_noise", 5, C.IMAGENET_224) == 0.38
    assert C.severity_constant("shot_noise", 1, C.CIFAR_32) == 500
    assert C.severity_constant("defocus_blur", 4, C.TINY_64) == (2.5, 0.01)
    assert C.severity_constant("glass_blur", 3, C.IMAGENET_224) == (1, 2, 3)
    assert C.severity_constant("snow", 5, C.IMAGENET_224) == (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)
    assert C.severity_constant("contrast", 1, C.CIFAR_32) == 0.75
    assert [C.severity_constant("jpeg_compression", s, C.TINY_64) for s in C.SEVERITIES] == [65, 58, 50, 40, 25]
    assert C.severity_constant("elastic_transform", 1, C.IMAGENET_224)[:3] == (2, 0.7, 0.1)


# -- tables, seeds, inputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("side, table", [(224, C.IMAGENET_224), (112, C.IMAGENET_224), (96, C.IMAGENET_224),
                                         (95, C.TINY_64), (64, C.TINY_64), (48, C.TINY_64), (47, C.CIFAR_32),
                                         (32, C.CIFAR_32)])
def test_table_rule_on_the_short_side(side, table):
    assert C.table_for(side) == table
    assert C.table_for((side, side + 50, 3)) == table


def test_too_small_images_bad_names_and_severities_are_refused():
    with pytest.raises(DataError, match="at least 32"):
        C.table_for(31)
    with pytest.raises(ConfigError, match="unknown corruption 'fogg'"):
        C.corrupt(IMG64, "fogg", 1, seed=0)
    for bad in (0, 6, 2.0, True):
        with pytest.raises(ConfigError, match="severity"):
            C.corrupt(IMG64, "fog", bad, seed=0)
    with pytest.raises(DataError, match="uint8"):
        C.corrupt(IMG64.astype(np.float32), "fog", 1, seed=0)
    with pytest.raises(DataError, match="alpha"):
        C.corrupt(np.zeros((64, 64, 4), np.uint8), "fog", 1, seed=0)
    with pytest.raises(ConfigError, match="table"):
        C.corrupt(IMG64, "fog", 1, seed=0, table="imagenet")
    for bad_seed in (-1, 1.5, "7"):
        with pytest.raises(ConfigError, match="seed"):
            C.corrupt(IMG64, "fog", 1, seed=bad_seed)
    with pytest.raises(ConfigError, match="base_seed"):
        C.variant_seed("x", 0, "fog", 1)


def test_an_explicit_table_overrides_the_size_rule():
    out = C.corrupt(IMG64, "pixelate", 5, seed=0, table=C.IMAGENET_224)
    assert out.table == C.IMAGENET_224
    assert np.array_equal(out.image, digital.pixelate(as01(IMG64), 0.25).astype(np.uint8))


def test_variant_seed_is_blake2b_of_the_key_and_distinguishes_its_parts():
    expected = int.from_bytes(hashlib.blake2b(b"7|12|fog|3", digest_size=8).digest(), "big") & (2 ** 63 - 1)
    assert C.variant_seed(7, 12, "fog", 3) == expected
    seeds = {C.variant_seed(7, i, n, s) for i in range(3) for n in ("fog", "snow") for s in (1, 2)}
    assert len(seeds) == 12
    assert C.variant_seed(7, "Aaron_0001", "fog", 1) != C.variant_seed(8, "Aaron_0001", "fog", 1)
    with pytest.raises(ConfigError):
        C.variant_seed(7, 1, "nope", 1)


def test_grayscale_images_are_replicated_corrupted_and_returned_as_luma():
    gray = IMG64[..., 0]
    out = C.corrupt(gray, "gaussian_noise", 2, seed=5)
    rgb = C.corrupt(np.repeat(gray[..., None], 3, axis=2), "gaussian_noise", 2, seed=5).image
    assert out.image.shape == gray.shape and out.image.dtype == np.uint8
    rgb = rgb.astype(np.int64)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16  # ITU-R 601-2, PIL 'L'
    np.testing.assert_array_equal(out.image, luma.astype(np.uint8))
    assert C.corrupt(gray[..., None], "contrast", 1, seed=0).image.shape == (64, 64, 1)


# -- noise ----------------------------------------------------------------------------------------------------
def test_gaussian_noise_is_x_plus_sigma_times_the_generators_normals():
    rng = np.random.default_rng(SEED)
    z = rng.standard_normal(IMG224.shape)
    expected = np.uint8(np.clip(as01(IMG224) + 0.18 * z, 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(IMG224, "gaussian_noise", 3, SEED).image, expected)


def test_gaussian_noise_with_sigma_zero_is_the_identity():
    out = noise.gaussian_noise(as01(IMG64), 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(np.uint8(np.rint(out)), IMG64)


def test_shot_noise_is_poisson_counts_over_lambda():
    counts = np.random.default_rng(SEED).poisson(lam=as01(IMG224) * 12)
    expected = np.uint8(np.clip(counts / 12, 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(IMG224, "shot_noise", 3, SEED).image, expected)


def test_impulse_noise_replaces_about_amount_of_the_values_by_0_or_255():
    out = C.corrupt(IMG224, "impulse_noise", 4, SEED).image  # amount 0.17
    u = np.random.default_rng(SEED).random((2,) + IMG224.shape)
    expected = IMG224.copy()
    for idx in zip(*np.nonzero(u[0] < 0.17)):
        expected[idx] = 255 if u[1][idx] < 0.5 else 0
    np.testing.assert_array_equal(out, expected)
    changed = out != IMG224
    assert 0.15 < changed.mean() < 0.19 and set(np.unique(out[changed])) <= {0, 255}


def test_speckle_noise_is_multiplicative():
    z = np.random.default_rng(SEED).standard_normal(IMG224.shape)
    x = as01(IMG224)
    np.testing.assert_array_equal(C.corrupt(IMG224, "speckle_noise", 2, SEED).image,
                                  np.uint8(np.clip(x + x * 0.2 * z, 0, 1) * 255))


# -- blur -----------------------------------------------------------------------------------------------------
def _separable_gaussian_nearest(x, sigma, truncate=4.0):
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    rows = sum(t * padded[i:i + h] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + w] for i, t in enumerate(taps))


def test_gaussian_blur_matches_a_separable_kernel_with_edge_padding():
    expected = np.uint8(np.clip(_separable_gaussian_nearest(as01(IMG224), 2.0), 0, 1) * 255)
    out = C.corrupt(IMG224, "gaussian_blur", 2, SEED).image
    assert np.abs(out.astype(int) - expected).max() <= 1 and (out == expected).mean() > 0.99


def test_defocus_blur_matches_a_direct_disk_convolution():
    radius, alias = 4, 0.5  # severity 2
    grid = np.arange(-8, 9)
    disk = np.array([[1.0 if i * i + j * j <= radius * radius else 0.0 for j in grid] for i in grid])
    disk /= disk.sum()
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias ** 2))
    g /= g.sum()
    padded_disk = np.pad(disk, 1, mode="reflect")  # numpy 'reflect' = OpenCV reflect-101
    kernel = sum(g[a] * g[b] * padded_disk[a:a + 17, b:b + 17] for a in range(3) for b in range(3))
    x = as01(IMG64)
    padded = np.pad(x, ((8, 8), (8, 8), (0, 0)), mode="reflect")
    conv = sum(kernel[a, b] * padded[a:a + 64, b:b + 64] for a in range(17) for b in range(17))
    expected = np.uint8(np.clip(conv, 0, 1) * 255)
    out = C.corrupt(IMG64, "defocus_blur", 2, SEED, table=C.IMAGENET_224).image
    assert np.abs(out.astype(int) - expected).max() <= 1 and (out == expected).mean() > 0.99


def test_glass_blur_moves_pixels_like_the_reference_loop_on_numpy_views():
    sigma, delta, iterations = 0.7, 2, 1  # Tiny-ImageNet-C severity 4
    x = np.uint8(ndimage.gaussian_filter(as01(IMG64), (sigma, sigma, 0), mode="nearest") * 255)
    n = len(range(64 - delta, delta, -1))
    offsets = np.random.default_rng(SEED).integers(-delta, delta, size=(iterations, n, n, 2))
    for it in range(iterations):
        for i, h in enumerate(range(64 - delta, delta, -1)):
            for j, w in enumerate(range(64 - delta, delta, -1)):
                dx, dy = offsets[it, i, j]
                x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]  # the reference's statement, verbatim
    expected = np.uint8(np.clip(ndimage.gaussian_filter(x / 255.0, (sigma, sigma, 0), mode="nearest"), 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(IMG64, "glass_blur", 4, SEED).image, expected)


def test_motion_blur_spreads_one_bright_pixel_along_the_drawn_angle_with_gaussian_weights():
    img = np.zeros((64, 64, 3), np.uint8)
    img[32, 32] = 255
    radius, sigma = 10, 2  # Tiny-ImageNet-C severity 3
    angle = np.deg2rad(np.random.default_rng(SEED).uniform(-45, 45))
    out = C.corrupt(img, "motion_blur", 3, SEED).image[..., 0].astype(float)
    weights = np.exp(-np.arange(2 * radius + 1) ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    expected = np.zeros((64, 64))
    for i, wgt in enumerate(weights):  # out(r, c) reads in(r + round(i sin a), c + round(i cos a))
        expected[32 - round(i * np.sin(angle)), 32 - round(i * np.cos(angle))] += wgt
    assert np.abs(out - np.floor(255 * expected + 0.5)).max() <= 1


def _bilinear_zoom_axis(a, n_out, axis):
    n_in = a.shape[axis]
    pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = (pos - lo).reshape([-1 if k == axis else 1 for k in range(a.ndim)])
    return np.take(a, lo, axis=axis) * (1 - frac) + np.take(a, lo + 1, axis=axis) * frac


def test_zoom_blur_averages_the_image_with_centre_zooms():
    x = as01(IMG64).astype(np.float32)
    zooms = np.arange(1, 1.11, 0.01)  # Tiny-ImageNet-C severity 2 (12 factors from np.arange's float end)
    acc = x.astype(np.float64).copy()
    for z in zooms:
        ch = int(np.ceil(64 / z))
        top = (64 - ch) // 2
        n_out = int(round(ch * z))
        crop = x[top:top + ch, top:top + ch].astype(np.float64)
        big = _bilinear_zoom_axis(_bilinear_zoom_axis(crop, n_out, 0), n_out, 1)
        t = (n_out - 64) // 2
        acc += big[t:t + 64, t:t + 64]
    expected = np.uint8(np.clip(acc / (len(zooms) + 1), 0, 1) * 255)
    out = C.corrupt(IMG64, "zoom_blur", 2, SEED).image
    assert len(zooms) == 12
    assert np.abs(out.astype(int) - expected).max() <= 1 and (out == expected).mean() > 0.98


# -- weather --------------------------------------------------------------------------------------------------
def test_brightness_on_black_gives_25_at_severity_1():
    out = C.corrupt(np.zeros((224, 224, 3), np.uint8), "brightness", 1, SEED).image
    assert (out == 25).all()


HSV_CHANGES = {"brightness": lambda h, s, v, c: (h, s, min(v + c, 1.0)),
               "saturate": lambda h, s, v, c: (h, min(max(s * c[0] + c[1], 0.0), 1.0), v)}


@pytest.mark.parametrize("name", sorted(HSV_CHANGES))
def test_hsv_corruptions_match_colorsys_pixel_by_pixel(name):
    change = HSV_CHANGES[name]
    severity = 4
    c = C.severity_constant(name, severity, C.IMAGENET_224)
    out = C.corrupt(IMG224, name, severity, SEED).image
    for r, col in [(0, 0), (50, 120), (112, 112), (200, 30), (223, 223)]:
        rgb = IMG224[r, col] / 255.0
        expected = colorsys.hsv_to_rgb(*change(*colorsys.rgb_to_hsv(*rgb), c))
        assert np.array_equal(out[r, col], np.uint8(np.clip(expected, 0, 1) * 255)), (r, col)


def test_snow_without_flakes_is_the_gray_blend():
    blend = 0.7
    x = as01(IMG64)
    out = weather.snow(x, (0.0, 0.0, 1, 0.5, 10, 4, blend), np.random.default_rng(0))  # layer N(0, 0) < 0.5
    x32 = x.astype(np.float32)
    gray = 0.299 * x32[..., :1] + 0.587 * x32[..., 1:2] + 0.114 * x32[..., 2:]
    expected = np.clip(blend * x32 + (1 - blend) * np.maximum(x32, gray * 1.5 + 0.5), 0, 1) * 255
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_snow_only_brightens_over_the_gray_blend():
    out = C.corrupt(IMG224, "snow", 3, SEED).image.astype(int)
    base = weather.snow(as01(IMG224), (0.0, 0.0, 1, 0.5, 12, 8, 0.7), np.random.default_rng(0))
    assert (out >= np.uint8(base).astype(int) - 1).all() and (out > np.uint8(base) + 20).mean() > 0.05


def test_frost_is_the_reference_blend_with_the_procedural_texture():
    assert "procedural" in C.FROST_SOURCE and C.REGISTRY["frost"].note == C.FROST_SOURCE
    a, b, scale = C.severity_constant("frost", 3, C.IMAGENET_224)
    texture = weather.frost_texture(224, 224, scale, np.random.default_rng(SEED))
    expected = np.uint8(np.clip(a * IMG224.astype(float) + b * texture, 0, 255))
    np.testing.assert_array_equal(C.corrupt(IMG224, "frost", 3, SEED).image, expected)
    assert texture.min() >= 0 and texture.max() <= 255
    assert (texture[..., 2] >= texture[..., 1]).all() and (texture[..., 1] >= texture[..., 0]).all()
    other = weather.frost_texture(224, 224, scale, np.random.default_rng(SEED + 1))
    assert not np.allclose(texture, other)


def test_plasma_fractal_spans_0_to_1_and_fog_follows_its_formula():
    fractal = _common.plasma_fractal(256, 2.0, np.random.default_rng(SEED))
    assert fractal.shape == (256, 256) and fractal.min() == 0 and fractal.max() == 1
    x = as01(IMG224)
    top = x.max()
    expected = np.uint8(np.clip((x + 2.0 * fractal[:224, :224, None]) * top / (top + 2.0), 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(IMG224, "fog", 2, SEED).image, expected)


def test_equalize_histogram_and_canny_on_hand_checked_inputs():
    img = np.array([[0, 0, 10, 10], [10, 20, 20, 20]], np.uint8)  # counts 2, 3, 3 -> cdf 2, 5, 8
    np.testing.assert_array_equal(weather.equalize_histogram(img),
                                  [[0, 0, 128, 128], [128, 255, 255, 255]])  # 255 * (cdf - 2) / 6: 0, 127.5, 255
    step = np.zeros((16, 16), np.uint8)
    step[:, 8:] = 200
    edges = weather.canny_edges(step, 50, 150)
    assert edges[:, 7:9].any(axis=1).all() and not edges[:, :6].any() and not edges[:, 10:].any()


def test_spatter_water_only_adds_turquoise_and_mud_blends_towards_brown():
    water = C.corrupt(IMG224, "spatter", 1, SEED).image.astype(int)
    assert (water >= IMG224.astype(int) - 1).all() and (water != IMG224).any()
    mud = C.corrupt(IMG224, "spatter", 5, SEED).image.astype(int)
    changed = np.any(mud != IMG224, axis=-1)
    assert changed.any()
    brown = np.array([63, 42, 20])
    assert (np.abs(mud[changed] - brown).sum(-1) <= np.abs(IMG224[changed].astype(int) - brown).sum(-1) + 3).all()


# -- digital --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("severity, c", list(enumerate((0.4, 0.3, 0.2, 0.1, 0.05), start=1)))
def test_contrast_is_the_per_channel_mean_formula(severity, c):
    x = as01(IMG224)
    m = x.reshape(-1, 3).mean(axis=0)
    expected = np.uint8(np.clip((x - m) * c + m, 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(IMG224, "contrast", severity, SEED).image, expected)


@pytest.mark.parametrize("name", ["contrast", "pixelate"])
def test_a_constant_image_is_unchanged_by_contrast_and_pixelate(name):
    flat = np.full((224, 224, 3), 137, np.uint8)
    for severity in C.SEVERITIES:
        np.testing.assert_array_equal(C.corrupt(flat, name, severity, SEED).image, flat)


@pytest.mark.parametrize("side, sizes", [(224, [134, 112, 89, 67, 56]), (112, [67, 56, 44, 33, 28])])
def test_pixelate_intermediate_sizes(side, sizes):
    table = C.table_for(side)
    got = [digital.pixelate_size(side, side, C.severity_constant("pixelate", s, table))[0] for s in C.SEVERITIES]
    assert got == sizes


def test_pixelate_is_box_down_and_box_up_with_pillow():
    small = Image.fromarray(IMG224).resize((89, 89), Image.Resampling.BOX)
    expected = np.asarray(small.resize((224, 224), Image.Resampling.BOX))
    np.testing.assert_array_equal(C.corrupt(IMG224, "pixelate", 3, SEED).image, expected)


@pytest.mark.parametrize("severity, quality", list(enumerate((25, 18, 15, 10, 7), start=1)))
def test_jpeg_compression_uses_the_quality_table(severity, quality):
    buffer = io.BytesIO()
    Image.fromarray(IMG224).save(buffer, "JPEG", quality=quality)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    out = C.corrupt(IMG224, "jpeg_compression", severity, SEED).image
    assert out.shape == IMG224.shape
    np.testing.assert_array_equal(out, expected)


def test_elastic_transform_without_displacement_is_the_identity_up_to_float32_truncation():
    out = digital.elastic_transform(as01(IMG64), (0, 0, 0, 1.0), np.random.default_rng(SEED))
    assert np.abs(np.uint8(out).astype(int) - IMG64).max() <= 1


def test_elastic_affine_solves_the_three_point_problem_and_moves_the_image():
    matrix = np.array([[1.1, 0.2, -3.0], [-0.1, 0.9, 4.0]])
    src = np.float32([[42, 42], [42, 22], [22, 22]])
    dst = (matrix @ np.c_[src, np.ones(3)].T).T
    np.testing.assert_allclose(digital.affine_from_points(src, dst), matrix, atol=1e-5)
    moved = C.corrupt(IMG64, "elastic_transform", 5, SEED).image
    assert not np.array_equal(moved, IMG64) and np.abs(moved.mean() - IMG64.mean()) < 10


def test_no_corruption_touches_numpys_global_random_state():
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    for name in C.ALL_CORRUPTIONS:
        C.corrupt(IMG64, name, 3, seed=SEED)
    after = np.random.get_state()
    assert np.array_equal(before, after[1]) and after[2] == 624
