"""Faithful decoding: every mode and bit depth against numpy arithmetic on the array written to the file.

The files are written by the byte-level writers of ``tests/_imagefiles.py`` (PNG, TIFF) or, where
Pillow is the only writer at hand (CMYK/YCCK JPEG, EXIF tags), from raw arrays whose expected decode
is computed here with numpy, never by the code under test.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from _imagefiles import write_png, write_tiff
from facebench.data.decode import decode_image
from facebench.data.images import FileImages, decode_image as reexported
from facebench.errors import BadImageError

RNG = np.random.default_rng(16)


def _u16(shape):
    values = RNG.integers(0, 65536, shape).astype(np.uint16)
    values.flat[:4] = [0, 255, 65280, 65535]  # the ends and the byte boundaries
    return values


def test_images_module_keeps_decode_image():
    assert reexported is decode_image


def test_8bit_grey_and_rgb_unchanged(tmp_path):
    grey, rgb = RNG.integers(0, 256, (5, 7)).astype(np.uint8), RNG.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(decode_image(write_png(tmp_path / "g.png", grey, "L")), grey[..., None])
    np.testing.assert_array_equal(decode_image(write_png(tmp_path / "c.png", rgb, "RGB")), rgb)


@pytest.mark.parametrize("writer", ["png", "tiff"])
def test_16bit_grey_keeps_the_high_byte(tmp_path, writer):
    values = _u16((6, 9))
    path = (write_png(tmp_path / "g16.png", values, "L") if writer == "png"
            else write_tiff(tmp_path / "g16.tif", values))
    out = decode_image(path)
    assert out.shape == (6, 9, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], values // 256)
    assert out[..., 0].std() > 20  # not the all-white face of convert("L")


def test_16bit_grey_replicated_8bit_values_round_trip(tmp_path):
    v8 = np.arange(256, dtype=np.uint16).reshape(16, 16)
    out = decode_image(write_png(tmp_path / "rep.png", v8 * 257, "L"))
    np.testing.assert_array_equal(out[..., 0], v8)


@pytest.mark.parametrize("writer", ["png", "tiff"])
def test_16bit_rgb_keeps_the_high_byte(tmp_path, writer):
    values = _u16((4, 6, 3))
    path = (write_png(tmp_path / "c16.png", values, "RGB") if writer == "png"
            else write_tiff(tmp_path / "c16.tif", values))
    np.testing.assert_array_equal(decode_image(path), (values >> 8).astype(np.uint8))


def test_float_tiff_in_unit_range_scales_by_255(tmp_path):
    values = RNG.random((5, 6)).astype(np.float32)
    values[0, :3] = [0.0, 1.0, 0.5]
    out = decode_image(write_tiff(tmp_path / "f.tif", values))
    np.testing.assert_array_equal(out[..., 0], np.floor(values.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    assert out[0, 1, 0] == 255 and out.max() > 200  # not black


def test_float_tiff_outside_unit_range_is_clipped_8bit(tmp_path):
    values = np.array([[-3.0, 0.4, 2.0, 100.6], [254.5, 255.0, 300.0, np.nan]], np.float32)
    out = decode_image(write_tiff(tmp_path / "f.tif", values))
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 2, 101], [254, 255, 255, 0]])  # rint: 254.5 -> 254


def test_int32_tiff_is_read_as_16bit(tmp_path):
    values = np.array([[-5, 0, 255, 256], [65535, 70000, 32768, 1000]], np.int32)
    out = decode_image(write_tiff(tmp_path / "i.tif", values))
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 0, 1], [255, 255, 128, 3]])


def test_palette_without_transparency(tmp_path):
    palette = RNG.integers(0, 256, (6, 3)).astype(np.uint8)
    index = RNG.integers(0, 6, (5, 7)).astype(np.uint8)
    out = decode_image(write_png(tmp_path / "p.png", index, "P", palette=palette))
    np.testing.assert_array_equal(out, palette[index])


def test_palette_with_transparency_on_black(tmp_path):
    palette = RNG.integers(0, 256, (4, 3)).astype(np.uint8)
    alpha = np.array([0, 128, 255, 77], np.uint8)  # tRNS: one alpha per palette entry
    index = RNG.integers(0, 4, (5, 7)).astype(np.uint8)
    out = decode_image(write_png(tmp_path / "pt.png", index, "P", palette=palette, trns=alpha.tobytes()))
    expected = np.floor(palette[index].astype(np.float64) * alpha[index][..., None] / 255 + 0.5)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def test_la_composited_on_black(tmp_path):
    la = RNG.integers(0, 256, (5, 7, 2)).astype(np.uint8)
    la[0, 0], la[0, 1] = (200, 0), (200, 255)
    out = decode_image(write_png(tmp_path / "la.png", la, "LA"))
    expected = np.floor(la[..., 0].astype(np.float64) * la[..., 1] / 255 + 0.5)
    assert out.shape == (5, 7, 1)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 200


def test_rgba_composited_on_black(tmp_path):
    rgba = RNG.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    out = decode_image(write_png(tmp_path / "rgba.png", rgba, "RGBA"))
    expected = np.floor(rgba[..., :3].astype(np.float64) * rgba[..., 3:] / 255 + 0.5)
    np.testing.assert_array_equal(out, expected)


def test_rgba_16bit_high_byte_then_composited(tmp_path):
    rgba = _u16((4, 5, 4))
    out = decode_image(write_png(tmp_path / "rgba16.png", rgba, "RGBA"))
    hi = (rgba >> 8).astype(np.float64)
    np.testing.assert_array_equal(out, np.floor(hi[..., :3] * hi[..., 3:] / 255 + 0.5))


def test_one_bit(tmp_path):
    bits = RNG.integers(0, 2, (6, 10)).astype(bool)
    path = tmp_path / "b.png"
    Image.fromarray(bits).save(path)  # mode "1"
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(decode_image(path)[..., 0], bits * 255)


def _cmyk_target():
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[...] = (40, 120, 200, 60)
    cmyk[8:, :, 0], cmyk[:, 8:, 3] = 220, 10
    return cmyk


def _rgb_of_cmyk(cmyk):
    """Independent CMYK -> RGB: R = (255 - C)(255 - K) / 255, likewise G (M) and B (Y)."""
    c = cmyk.astype(np.float64)
    return (255 - c[..., :3]) * (255 - c[..., 3:]) / 255


def test_cmyk_jpeg_adobe_inverted(tmp_path):
    cmyk = _cmyk_target()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, "CMYK").save(path, quality=100, subsampling=0)  # Pillow writes Adobe inverted CMYK
    assert b"Adobe" in path.read_bytes()
    out = decode_image(path)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(np.float64) - _rgb_of_cmyk(cmyk)).max() <= 2


def test_ycck_jpeg(tmp_path):
    """A YCCK JPEG (Adobe transform 2): C, M, Y stored as the YCbCr of (255-C', ...), libjpeg undoes it."""
    cmyk = _cmyk_target()
    c, m, y, k = (cmyk[..., i].astype(np.float64) for i in range(4))
    # libjpeg decodes YCCK to R, G, B (from YCbCr) then 255 - R ...; Pillow inverts Adobe data: C = R.
    stored = np.stack([0.299 * c + 0.587 * m + 0.114 * y,
                       128 - 0.168736 * c - 0.331264 * m + 0.5 * y,
                       128 + 0.5 * c - 0.418688 * m - 0.081312 * y, 255 - k], axis=-1)
    written = np.clip(np.rint(255 - stored), 0, 255).astype(np.uint8)  # Pillow inverts CMYK on writing
    buffer = io.BytesIO()
    Image.fromarray(written, "CMYK").save(buffer, "JPEG", quality=100, subsampling=0)
    data = bytearray(buffer.getvalue())
    at = data.find(b"Adobe")
    assert data[at + 11] == 0
    data[at + 11] = 2  # APP14 transform: YCCK
    path = tmp_path / "ycck.jpg"
    path.write_bytes(bytes(data))
    out = decode_image(path)
    assert np.abs(out.astype(np.float64) - _rgb_of_cmyk(cmyk)).max() <= 3


def _asymmetric():
    return RNG.integers(0, 256, (4, 6, 3)).astype(np.uint8)


# EXIF orientation -> what a viewer shows, as numpy index arithmetic on the stored array
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_exif_orientation_applied(tmp_path, orientation):
    stored = _asymmetric()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    np.testing.assert_array_equal(decode_image(path), ORIENTED[orientation](stored))


def test_box_is_in_the_oriented_image(tmp_path):
    stored = _asymmetric()
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "o6.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    shown = np.rot90(stored, -1)  # 6 x 4
    np.testing.assert_array_equal(decode_image(path, box=(1, 2, 3, 5)), shown[2:5, 1:3])
    np.testing.assert_array_equal(decode_image(path, box=(-4, -4, 99, 99)), shown)  # clamped


def test_box_outside_the_image_is_a_clear_error(tmp_path):
    path = write_png(tmp_path / "g.png", np.zeros((4, 4), np.uint8), "L")
    with pytest.raises(BadImageError, match="outside its 4x4 pixels"):
        decode_image(path, box=(10, 10, 20, 20))


@pytest.mark.parametrize("content,fragment", [
    (b"", "cannot decode"),
    (b"this is not an image", "cannot decode"),
    (None, "does not exist"),
])
def test_unreadable_files_raise_bad_image_error_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "face.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadImageError, match=fragment) as info:
        decode_image(path)
    assert "face.png" in str(info.value)


def test_truncated_png_raises_bad_image_error(tmp_path):
    path = write_png(tmp_path / "t.png", RNG.integers(0, 256, (64, 64, 3)).astype(np.uint8), "RGB")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BadImageError, match="t.png"):
        decode_image(path)


def test_file_images_use_the_faithful_decoder(tmp_path):
    values = _u16((3, 3))
    images = FileImages([write_png(tmp_path / "a.png", values, "L")])
    np.testing.assert_array_equal(images.load(0)[..., 0], values >> 8)
