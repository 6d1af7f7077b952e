import numpy as np
import pytest
import torch
from PIL import Image

from facebench.data.images import ArrayImages, FileImages, decode_image
from facebench.data.preprocess import InputSpec, normalise_batch, prepare_uint8
from facebench.errors import ConfigError


def test_luma_matches_pillow_convert_L():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    spec = InputSpec(size=(20, 30), channels=1, mean=(0.5,), std=(0.5,))
    ours = prepare_uint8(rgb, spec)[0].numpy().astype(int)
    pil = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert np.abs(ours - pil).max() <= 1  # Pillow rounds in fixed point


def test_grey_to_rgb_and_bgr():
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4)
    out = prepare_uint8(grey, InputSpec(size=(4, 4)))
    assert out.shape == (3, 4, 4) and torch.equal(out[0], out[2])
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    bgr = prepare_uint8(rgb, InputSpec(size=(4, 4), color_order="BGR"))
    assert bgr[2].max() == 200 and bgr[0].max() == 0


def test_resize_and_centre_crop():
    img = np.zeros((100, 60, 3), np.uint8)
    img[20:80, :, :] = 255  # the centre 60x60 square is white
    out = prepare_uint8(img, InputSpec(size=(30, 30), crop_fraction=1.0))
    assert out.shape == (3, 30, 30) and out.dtype == torch.uint8
    cropped = prepare_uint8(img, InputSpec(size=(30, 30), crop_fraction=1.0 - 1e-9))
    assert cropped.min() >= 250  # centre crop of the shorter side keeps only the white square


def test_normalise_formula():
    batch = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    spec = InputSpec(size=(1, 2), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = normalise_batch(batch, spec)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(-1.0)) and torch.allclose(x[0, :, 0, 1], torch.tensor(1.0))


def test_normalise_is_the_formula_bit_for_bit_and_leaves_its_input_alone():
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (4, 3, 9, 7), dtype=torch.uint8, generator=g)
    spec = InputSpec(size=(9, 7), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    expected = (batch.float() / 255 - mean) / std  # the formula, out of place (ToTensor + Normalize)
    assert torch.equal(normalise_batch(batch, spec), expected)
    odd = InputSpec(size=(9, 7), scale=0.003)  # 1/scale is not a whole number: multiplied
    half = torch.tensor(0.5).view(1, 1, 1, 1)
    assert torch.equal(normalise_batch(batch, odd), (batch.float() * 0.003 - half) / half)
    floats = batch.float()
    before = floats.clone()
    normalise_batch(floats, spec, dtype=torch.float32)  # already float32: must not be normalised in place
    assert torch.equal(floats, before)


def test_bad_spec():
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        InputSpec(channels=2)
    with pytest.raises(ConfigError, match="mean/std need 1 values"):
        InputSpec(channels=1, mean=(0.5, 0.5, 0.5), std=(0.5,))


def test_decode_grey_rgb_and_box(tmp_path):
    Image.fromarray(np.full((10, 12), 7, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((10, 12, 3), 9, np.uint8)).save(tmp_path / "c.png")
    assert decode_image(tmp_path / "g.png").shape == (10, 12, 1)
    assert decode_image(tmp_path / "c.png").shape == (10, 12, 3)
    assert decode_image(tmp_path / "c.png", box=(2, 3, 8, 7)).shape == (4, 6, 3)
    src = FileImages([tmp_path / "g.png", tmp_path / "c.png"])
    assert len(src.subset([1])) == 1 and src.subset([1]).load(0).shape == (10, 12, 3)
    arr = ArrayImages(np.zeros((3, 5, 5), np.uint8))
    assert arr.load(0).shape == (5, 5, 1)
