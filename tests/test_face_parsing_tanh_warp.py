"""LaPa's alignment + tanh-warp test transform: hand-worked values, round trips, and the resampling against
OpenCV's remap (the FaRL code's own resampler)."""

from __future__ import annotations

import numpy as np
import pytest

from facebench.data import tanh_warp as tw
from facebench.errors import DataError


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(5, 2))
    s, t = 1.3, np.deg2rad(20)
    true = np.array([[s * np.cos(t), s * np.sin(t), 7.0], [-s * np.sin(t), s * np.cos(t), -3.0], [0, 0, 1]])
    dst = src @ true[:2, :2].T + true[:2, 2]
    np.testing.assert_allclose(tw.similarity_matrix(src, dst), true, atol=1e-12)
    with pytest.raises(DataError, match="coincide"):
        tw.similarity_matrix(np.ones((5, 2)), dst)


def test_template_points_align_onto_the_template():
    size = 512
    template = (tw.TEMPLATE + 1) * (size - 1) / 2  # e.g. the left eye at (196 / 256) * 511 / 2 ... in [0, 511]
    np.testing.assert_allclose(template[0], [196 / 256 * 511 / 2, 226 / 256 * 511 / 2])
    pts = np.zeros((106, 2))
    pts[list(tw.LAPA_FIVE)] = template * 0.5 + 10  # the same face at half size, shifted
    m = tw.lapa_align_matrix(pts, size)
    np.testing.assert_allclose(m, [[2, 0, -20], [0, 2, -20], [0, 0, 1]], atol=1e-9)
    with pytest.raises(DataError, match=r"\(106, 2\)"):
        tw.lapa_align_matrix(np.zeros((68, 2)))


def test_tanh_band_by_hand():
    eye = np.eye(3)
    # S = 4, f = 0.5: u = 2x / 4 - 1; x = 3 gives u = 0.5 = 1 - f, on the linear side (strict >)
    np.testing.assert_allclose(tw.warp_points([[3.0, 2.0]], eye, 4, 0.5), [[3.0, 2.0]])
    # x = 4: u = 1 -> tanh(1) * 0.5 + 0.5; back to pixels (u + 1) * 4 / 2
    want = (np.tanh(1.0) * 0.5 + 0.5 + 1) * 2
    np.testing.assert_allclose(tw.warp_points([[4.0, 0.0]], eye, 4, 0.5), [[want, (np.tanh(-1.0) * 0.5 - 0.5 + 1) * 2]])
    # warp factor 0 is the affine alone
    m = np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 1.0], [0, 0, 1]])
    xy = np.array([[10.0, 20.0], [-5.0, 3.0]])
    np.testing.assert_allclose(tw.warp_points(xy, m, 64, 0.0), xy @ m[:2, :2].T + m[:2, 2])
    # every point of the plane lands inside the warped frame
    far = np.array([[1e4, -1e4], [-3e3, 5e2]])
    out = tw.warp_points(far, eye, 64, 0.8)
    assert (out >= 0).all() and (out <= 64).all()


def test_continuous_band_edge_and_round_trip():
    eye = np.eye(3)
    edge = (1 - 0.8 + 1) / 2 * 100  # u = 1 - f in a 100-pixel frame
    for eps in (1e-6, -1e-6):
        got = tw.warp_points([[edge + eps, 50.0]], eye, 100, 0.8)[0, 0]
        assert got == pytest.approx(edge + eps, abs=1e-9)  # slope 1 at the band's edge
    rng = np.random.default_rng(1)
    m = tw.similarity_matrix(rng.uniform(0, 300, (5, 2)), (tw.TEMPLATE + 1) * 511 / 2)
    xy = rng.uniform(0, 300, size=(200, 2))
    warped = tw.warp_points(xy, m, 512, 0.8)
    inside = (np.abs(warped / 512 * 2 - 1) < 0.79).all(axis=1)  # away from the arctanh clamp
    np.testing.assert_allclose(tw.unwarp_points(warped[inside], m, 512, 0.8), xy[inside], atol=1e-6)
    maps = tw.sampling_map(m, 32, 0.8)
    assert maps.shape == (32, 32, 2)
    np.testing.assert_allclose(maps[3, 5], tw.unwarp_points([[5.0, 3.0]], m, 32, 0.8)[0])
    inv = tw.inverse_sampling_map(m, 32, (10, 12), 0.8)
    assert inv.shape == (10, 12, 2)
    np.testing.assert_allclose(inv[4, 7], tw.warp_points([[7.0, 4.0]], m, 32, 0.8)[0])


def test_resampling_matches_opencv_remap():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, size=(20, 30, 3)).astype(np.float32)
    # positions on OpenCV's 1/32 sub-pixel grid, some outside the image
    xy = (rng.integers(-64, 31 * 32, size=(15, 17, 2)) / 32.0).astype(np.float32)
    xy[..., 1] = np.clip(xy[..., 1], -2, 21)
    want = cv2.remap(image, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
    np.testing.assert_allclose(tw.remap_bilinear(image, xy.astype(np.float64)), want, atol=1e-3)
    labels = rng.integers(0, 11, size=(20, 30)).astype(np.uint8)
    soft = xy + np.float32(0.01)  # no position exactly half-way between pixels
    want = cv2.remap(labels, soft[..., 0], soft[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
    np.testing.assert_array_equal(tw.remap_nearest(labels, soft.astype(np.float64)), want)


def test_identity_alignment_without_warp_keeps_the_image():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(16, 16, 3)).astype(np.uint8)
    grid = tw.sampling_map(np.eye(3), 16, 0.0)
    np.testing.assert_allclose(tw.remap_bilinear(image, grid), image)
    back = tw.inverse_sampling_map(np.eye(3), 16, (16, 16), 0.0)
    np.testing.assert_array_equal(tw.remap_nearest(image[..., 0], back), image[..., 0])


# -- the LaPa pipeline assembled around Faceptor's lapa head (golden fixture) ----------------------------------------
GOLDEN = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "faceptor"


def _lapa_logits_pipeline(adapter, image: np.ndarray, points106: np.ndarray, size: int, warp_factor: float):
    """LaPa's test transform around the network, as FaRL / Faceptor run it: align + tanh-warp the image into
    the S x S frame, logits there, inverse-warp the logits to the image's own size (bilinear), argmax."""
    import torch
    import torch.nn.functional as F

    from facebench.models.faceptor_dense import farl_normalise
    from facebench.models.faceptor_net import parsing_output

    m = tw.lapa_align_matrix(points106, size)
    warped = tw.remap_bilinear(image, tw.sampling_map(m, size, warp_factor))
    x = torch.from_numpy(warped / 255.0).float().permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        logits = adapter.module(farl_normalise(x), tasks=("parsing_lapa",))["parsing_lapa"]
        logits = parsing_output(logits, adapter.module.cfg.parsing_out_size).permute(0, 3, 1, 2)
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)  # the S frame
    frame = logits[0].permute(1, 2, 0).numpy().astype(np.float64)
    back = tw.remap_bilinear(frame, tw.inverse_sampling_map(m, size, image.shape, warp_factor))
    return back.argmax(axis=-1)


@pytest.mark.skipif(not (GOLDEN / "checkpoint.pth").exists(), reason="Faceptor golden fixture not found")
def test_lapa_pipeline_with_faceptor_reduces_to_the_resize_frame_and_flows_through_the_protocol(tmp_path):
    import torch
    from PIL import Image

    from facebench.data.dataset import Dataset, ParsingLabels
    from facebench.data.images import ArrayImages
    from facebench.data.parsing_sets import LAPA_CLASSES
    from facebench.models import faceptor as fp
    from facebench.models.faceptor_dense import FARL_MEAN, FARL_STD
    from facebench.protocols.base import EvalContext
    from facebench.protocols.face_parsing import FaceParsingProtocol, to_input_frame
    from facebench.records import Predictions

    x = torch.load(GOLDEN / "inputs.pt", weights_only=True)["image_128"][2]  # the astronaut face
    mean, std = torch.tensor(FARL_MEAN).view(3, 1, 1), torch.tensor(FARL_STD).view(3, 1, 1)
    image = torch.round((x * std + mean) * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy()
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    size = adapter.module.cfg.dense_input_size  # 128 in the fixture, 512 in the real model
    points = np.zeros((106, 2))
    points[list(tw.LAPA_FIVE)] = (tw.TEMPLATE + 1) * (size - 1) / 2  # the face already on the template: M = I
    plain = _lapa_logits_pipeline(adapter, image, points, size, 0.0)
    resized = np.asarray(adapter.parsing([image], dataset="lapa")[0])
    assert (plain == resized).mean() > 0.999  # no alignment, no warp: the whole-image frame
    warped = _lapa_logits_pipeline(adapter, image, points, size, tw.LAPA_WARP_FACTOR)
    assert warped.shape == image.shape[:2] and (warped != resized).any()
    # through the protocol, against a ground truth taken from the resize frame
    Image.fromarray(resized.astype(np.uint8)).save(tmp_path / "gt.png")
    ds = Dataset("lapa-fixture", "test", np.array(["astronaut"]), (), None,
                 ArrayImages(image[None]), parsing=ParsingLabels(LAPA_CLASSES, [((-1, str(tmp_path / "gt.png")),)],
                                                                points=points[None]))
    stored = to_input_frame([warped], size)
    res = FaceParsingProtocol().evaluate(EvalContext(ds, Predictions(ds.ids, {"parsing": stored}), "parsing",
                                                     LAPA_CLASSES, n_resamples=0))
    acc = {r.metric: r.value for r in res.records}["pixel_accuracy"]
    assert acc == pytest.approx((warped == resized).mean())
