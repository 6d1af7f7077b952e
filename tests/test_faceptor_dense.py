"""Faceptor dense heads: the landmark crop and its inverse worked by hand, the warp against a plain
crop-resize, and landmarks / parsing through the adapter against the golden fixture's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facebench.errors import ModelError
from facebench.models import faceptor as fp
from facebench.models.faceptor_dense import (FARL_MEAN, FARL_STD, PARSING_LABELS, crop_matrix, decode_landmarks,
                                             resize_image, warp_affine)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "faceptor"
needs_golden = pytest.mark.skipif(not (GOLDEN / "checkpoint.pth").exists(),
                                  reason=f"Faceptor golden fixture not found at {GOLDEN}")


def test_crop_corners_map_back_to_the_box():
    box = (20.0, 10.0, 120.0, 90.0)  # y1, x1, y2, x2
    m = crop_matrix(box, size=512, scale_mu=1.0)
    # normalised (0, 0) and (1, 1) are the crop frame's outer corners -> the box corners
    back = decode_landmarks(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]), m, 512)
    np.testing.assert_allclose(back, [[10, 20], [90, 120], [50, 70]], atol=1e-9)
    # M1 by hand: x -> (x - x1) / (x2 - x1) * 512 - 0.5
    np.testing.assert_allclose(m @ [50.0, 70.0, 1.0], [0.5 * 512 - 0.5, 0.5 * 512 - 0.5, 1.0])
    np.testing.assert_allclose(m @ [10.0, 20.0, 1.0], [-0.5, -0.5, 1.0])


def test_zoom_out_by_scale_mu():
    box = (0.0, 0.0, 100.0, 100.0)
    m = crop_matrix(box, size=512, scale_mu=0.8)
    # the frame's corners now reach (box size / 2) / 0.8 = 62.5 px from the centre (50, 50)
    back = decode_landmarks(np.array([[0.0, 0.0], [1.0, 1.0]]), m, 512)
    np.testing.assert_allclose(back, [[-12.5, -12.5], [112.5, 112.5]], atol=1e-9)
    with pytest.raises(ModelError, match="empty"):
        crop_matrix((5, 5, 5, 9))


def test_warp_equals_crop_resize():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    box = (8, 4, 40, 36)  # a 32 x 32 crop starting at row 8, column 4
    warped = warp_affine(image, crop_matrix(box, size=96), 96)
    crop = torch.from_numpy(image[8:40, 4:36]).permute(2, 0, 1).float().unsqueeze(0) / 255
    want = F.interpolate(crop, size=(96, 96), mode="bilinear", align_corners=False)[0]
    # the interior agrees exactly (at the border interpolate clamps inside the crop, the warp reads neighbours)
    torch.testing.assert_close(warped[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], rtol=0, atol=1e-5)
    # a box covering the whole image at its own size is the identity
    same = warp_affine(image, crop_matrix((0, 0, 64, 48), size=64), 64)
    assert same.shape == (3, 64, 64)
    torch.testing.assert_close(resize_image(image[:, :, :], 64)[:, :, :], F.interpolate(
        torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255, size=(64, 64), mode="bilinear",
        align_corners=False)[0])


def _uint8_from_farl(x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(FARL_MEAN).view(3, 1, 1)
    std = torch.tensor(FARL_STD).view(3, 1, 1)
    return torch.round((x * std + mean) * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy()


@needs_golden
def test_adapter_landmarks_and_parsing_match_fixture():
    inputs = torch.load(GOLDEN / "inputs.pt", weights_only=True)["image_128"]
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    assert adapter.module.cfg.dense_input_size == 128
    assert adapter.dense_heads == {"landmarks": ("300w", "cofw", "wflw", "aflw"), "parsing": ("celebam", "lapa")}
    images = [_uint8_from_farl(x) for x in inputs]
    # a box over the whole 128 x 128 image and no zoom: the warp is the identity, so the decoded
    # landmarks are the fixture's normalised landmarks times 128 (continuous pixel coordinates)
    for dataset, k in (("300w", 68), ("wflw", 98)):
        pts = adapter.landmarks(images, [(0, 0, 128, 128)] * 3, dataset=dataset, scale_mu=1.0, batch_size=2)
        assert pts.shape == (3, k, 2)
        np.testing.assert_allclose(pts, expected[f"align_{dataset}/landmark"].double().numpy() * 128, atol=2e-3)
    for dataset in ("celebam", "lapa"):
        maps = adapter.parsing(images, dataset=dataset)
        logits = expected[f"parsing_{dataset}/logits"]
        up = F.interpolate(logits, size=(512, 512), mode="bilinear", align_corners=False)
        want = F.interpolate(up, size=(128, 128), mode="bilinear", align_corners=False).argmax(1).numpy()
        assert len(maps) == 3 and maps[0].shape == (128, 128)
        assert (np.stack(maps) == want).mean() > 0.999
        assert np.stack(maps).max() < len(PARSING_LABELS[dataset])
    # original sizes other than the frame: parsing comes back at the image's own size
    tall = np.zeros((150, 90, 3), dtype=np.uint8)
    assert adapter.parsing([tall])[0].shape == (150, 90)
    with pytest.raises(ModelError, match="not one of"):
        adapter.landmarks(images, [(0, 0, 1, 1)] * 3, dataset="helen")
    with pytest.raises(ModelError, match="3 images but 1 boxes"):
        adapter.landmarks(images, [(0, 0, 1, 1)])
    with pytest.raises(ModelError, match=r"\(H, W, 3\) uint8"):
        adapter.parsing([np.zeros((4, 4, 3), dtype=np.float32)])


@needs_golden
def test_base_checkpoint_lacks_full_only_dense_heads(tmp_path):
    state = torch.load(GOLDEN / "checkpoint.pth", map_location="cpu", weights_only=True)["state_dict"]
    base = {k: v for k, v in state.items() if not any(f".{t}." in k for t in ("age_utkface", "affect_ferplus",
            "parsing_lapa", "align_cofw", "align_wflw", "align_aflw"))}
    torch.save({"step": 0, "state_dict": base}, tmp_path / "base.pth")
    with pytest.warns(UserWarning):
        adapter = fp.FaceptorAdapter(checkpoint=str(tmp_path / "base.pth"), config=str(GOLDEN / "config.json"),
                                     head="ferplus")
    assert adapter.dense_heads == {"landmarks": ("300w",), "parsing": ("celebam",)}
    with pytest.raises(ModelError, match="no align_wflw head"):
        adapter.landmarks([np.zeros((8, 8, 3), np.uint8)], [(0, 0, 8, 8)], dataset="wflw")
