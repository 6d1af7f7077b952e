"""Face boxes as the model's frame: the landmark loaders' ``crop: image | box | landmarks`` with a margin (the
crop boxes cut, hand-worked), the protocol's mapping back through a crop (hand-worked, and against the pixels
the engine actually makes from a ramp image), and the frame recorded in the results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facebench.data.dataset import Dataset, LandmarkLabels
from facebench.data.images import FileImages
from facebench.data.landmark_schemes import SCHEMES
from facebench.data.landmark_sets import MTFL, WFLW
from facebench.data.preprocess import InputSpec, prepare_uint8
from facebench.errors import ConfigError, DataError, MetricInputError
from facebench.protocols.base import EvalContext
from facebench.protocols.landmarks import LandmarksProtocol, crop_boxes, to_original_pixels
from facebench.records import Predictions


def _image(path, width, height, array=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((height, width, 3), 120, np.uint8) if array is None else array
    Image.fromarray(pixels).save(path)
    return path


def _wflw(root, rows):
    """A WFLW test list in its native layout: 196 coordinates, the box, six flags, the image path per line."""
    lists = root / "WFLW_annotations/list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    lines = [" ".join([*(f"{v:.6f}" for v in pts.reshape(-1)), *map(str, box), "0 0 0 0 0 0", name])
             for pts, box, name in rows]
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")


def _mtfl(root):
    """MTFL's testing.txt (CRLF, x1..x5 y1..y5, four attribute codes) and two images."""
    root.mkdir(parents=True)
    lines = ["AFLW/a.jpg 40 80 60 45 75 50 52 70 90 88 1 1 2 3", "AFLW/b.jpg 20 50 35 22 48 30 31 45 60 58 2 2 1 3"]
    (root / "testing.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))
    _image(root / "AFLW/a.png", 150, 150).rename(root / "AFLW/a.jpg")
    _image(root / "AFLW/b.png", 100, 80).rename(root / "AFLW/b.jpg")
    return root


def test_mapping_through_a_crop_hand_worked():
    # crop (10, 20, 74, 52): 64 wide, 32 high, into a frame S_h = 16, S_w = 32: x = 10 + (x' + .5) * 2 - .5,
    # y = 20 + (y' + .5) * 2 - .5
    pts = np.array([[[0.0, 0.0], [31.5, 15.5], [15.5, 7.5]]])
    out = to_original_pixels(pts, np.array([[200, 100]]), (16, 32), np.array([[10.0, 20, 74, 52]]))
    np.testing.assert_allclose(out, [[[10.5, 20.5], [73.5, 51.5], [41.5, 35.5]]])
    # no crop: the whole 200 x 100 image, x = (x' + .5) * 200 / 32 - .5
    whole = to_original_pixels(pts, np.array([[200, 100]]), (16, 32))
    np.testing.assert_allclose(whole[0, 0], [0.5 * 200 / 32 - 0.5, 0.5 * 100 / 16 - 0.5])


def test_wflw_box_crop_with_margin(tmp_path):
    root = tmp_path / "wflw"
    rng = np.random.default_rng(0)
    rows = [(rng.uniform(5, 40, (98, 2)), (3, 4, 50, 60), "e/a.jpg"), (rng.uniform(12, 30, (98, 2)), (10, 2, 40, 30),
            "e/a.jpg"), (rng.uniform(2, 18, (98, 2)), (0, 0, 20, 20), "f/b.jpg")]
    _wflw(root, rows)
    _image(root / "WFLW_images/e/a.png", 64, 48).rename(root / "WFLW_images/e/a.jpg")
    _image(root / "WFLW_images/f/b.png", 32, 40).rename(root / "WFLW_images/f/b.jpg")
    plain = WFLW(path=root).load("test")
    assert plain.images.boxes is None and "crop" not in plain.content_tag["options"]
    ds = WFLW(path=root, crop="box", margin=0.125).load("test")
    # box 1: centre (26.5, 32), half sides (23.5, 28) * 1.25 -> (-2.875, -3, 55.875, 67) -> rounded, clamped
    # to 64 x 48; box 2: (6.25, -1.5, 43.75, 33.5) -> rint (6, -2, 44, 34) -> (6, 0, 44, 34); box 3 on 32 x 40:
    # (-2.5, -2.5, 22.5, 22.5) -> rint (half to even) (-2, -2, 22, 22) -> (0, 0, 22, 22)
    assert ds.images.boxes.tolist() == [[0, 0, 56, 48], [6, 0, 44, 34], [0, 0, 22, 22]]
    assert [ds.images.load(i).shape[:2] for i in range(3)] == [(48, 56), (34, 38), (22, 22)]
    assert ds.landmarks.boxes.tolist() == plain.landmarks.boxes.tolist()  # the shipped boxes stay as they are
    assert np.array_equal(ds.landmarks.points, plain.landmarks.points)  # points stay in original pixels
    assert ds.content_tag["options"]["crop"] == "box" and ds.content_tag["options"]["margin"] == 0.125
    other = WFLW(path=root, crop="box", margin=0.2).load("test")
    assert len({plain.fingerprint(), ds.fingerprint(), other.fingerprint()}) == 3
    assert np.array_equal(crop_boxes(ds), ds.images.boxes)  # the protocol reads the boxes as cut
    _wflw(tmp_path / "outside", [(rows[0][0], (70, 50, 90, 60), "e/a.jpg")])  # beyond the 64 x 48 image
    _image(tmp_path / "outside/WFLW_images/e/a.png", 64, 48).rename(tmp_path / "outside/WFLW_images/e/a.jpg")
    with pytest.raises(DataError, match="box crop of record 0.*outside"):
        WFLW(path=tmp_path / "outside", crop="box").load("test")


def test_landmark_crop_and_bad_options(tmp_path):
    root = _mtfl(tmp_path / "mtfl")
    with pytest.raises(ConfigError, match="ships no face boxes.*crop: landmarks"):
        MTFL(path=root, crop="box").load("test")
    ds = MTFL(path=root, crop="landmarks", margin=0.15).load("test")
    # face a: points x 40..80, y 50..90 -> square of side 40 about (60, 70), times 1.3 -> side 52:
    # (34, 44, 86, 96); face b: x 20..50, y 30..60 -> side 30 about (35, 45), times 1.3 -> 39:
    # (15.5, 25.5, 54.5, 64.5) -> rounded half to even, as decode_image cuts: (16, 26, 54, 64)
    assert ds.images.boxes.tolist() == [[34, 44, 86, 96], [16, 26, 54, 64]]
    assert MTFL(path=root).load("test").images.boxes is None  # the whole image stays the default
    with pytest.raises(ConfigError, match="margin.*applies to"):
        MTFL(path=root, margin=0.1)
    with pytest.raises(ConfigError, match="crop.*must be one of"):
        MTFL(path=root, crop="boxes")
    for bad in (-0.1, 3, True, "0.1"):
        with pytest.raises(ConfigError, match="margin"):
            MTFL(path=root, crop="landmarks", margin=bad)


def test_engine_pixels_follow_the_mapping(tmp_path):
    """A ramp image (red = 2x, green = 2y) cut by FileImages and resized by the engine: each frame pixel's value
    says which original pixel it sampled, which must be where the protocol maps that frame point."""
    h, w = 90, 100
    ys, xs = np.mgrid[0:h, 0:w]
    ramp = np.stack([2 * xs, 2 * ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    path = _image(tmp_path / "ramp.png", w, h, ramp)
    boxes = np.array([[19.6, 10.2, 52.4, 41.5], [20, 10, 84, 42], [-5.2, 60.7, 40.4, 95]])
    n = len(boxes)
    lab = LandmarkLabels("five_point", np.zeros((n, 5, 2)), None, None, np.tile([w, h], (n, 1)))
    ds = Dataset("ramp", "test", np.array(["a", "b", "c"]), (), None, FileImages([path] * n, boxes), landmarks=lab)
    crops = crop_boxes(ds)
    assert crops.tolist() == [[20, 10, 52, 42], [20, 10, 84, 42], [0, 61, 40, 90]]
    outside = Dataset("ramp", "test", np.array(["a"]), (), None, FileImages([path], [[120.0, 0, 150, 20]]),
                      landmarks=lab.subset([0]))
    with pytest.raises(MetricInputError, match="outside its image"):
        crop_boxes(outside)
    spec = InputSpec(size=(64, 64), resize="torch", interpolation="bilinear", antialias=False)
    v, u = np.mgrid[2:62, 2:62]  # interior frame pixels (the resize clamps at the crop's edge)
    frame_pts = np.stack([u, v], axis=-1).reshape(1, -1, 2).astype(np.float64)
    for i in range(n):
        frame = prepare_uint8(ds.images.load(i), spec).to(torch.float64).numpy()
        where = to_original_pixels(frame_pts, lab.image_sizes[i:i + 1], (64, 64), crops[i:i + 1])[0]
        inside = (where[:, 0] <= w - 1) & (where[:, 1] <= h - 1)
        seen = np.stack([frame[0][v, u].reshape(-1), frame[1][v, u].reshape(-1)], axis=1) / 2
        assert np.abs(seen[inside] - where[inside]).max() <= 0.26  # uint8 rounding of 2x: a quarter pixel


def test_protocol_maps_through_the_crop_and_records_it(tmp_path):
    ds = MTFL(path=_mtfl(tmp_path / "mtfl"), crop="landmarks", margin=0.1).load("test")
    truth, crops = ds.landmarks.points, ds.images.boxes
    shift = np.array([[[1.5, 0.0]], [[0.0, -2.0]]])  # original pixels
    wanted = truth + shift
    # into the 32 x 32 frame by the inverse of x = x1 + (x' + .5)(x2 - x1) / S - .5, written out here
    frame = (wanted - crops[:, None, :2] + 0.5) * 32 / (crops[:, None, 2:] - crops[:, None, :2]) - 0.5
    names = SCHEMES["five_point"].point_names
    ctx = EvalContext(ds, Predictions(ds.ids, {"landmarks": frame.astype(np.float32)}), "landmarks", names,
                      n_resamples=0, input_size=(32, 32), head_scheme="five_point")
    res = LandmarksProtocol(attributes=[]).evaluate(ctx)
    rec = {r.metric: r for r in res.records}
    d = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)
    want = np.mean([1.5 / d[0], 2.0 / d[1]])
    assert rec["nme[eye_centres_5pt]"].value == pytest.approx(want, abs=1e-5)
    assert rec["nme[eye_centres_5pt]"].conventions["frame"].startswith("crop box (crop=landmarks,margin=0.1)")
    worst = {c["id"]: np.array(c["pred"]) for c in res.details["worst_cases"]}
    np.testing.assert_allclose(worst["AFLW/a.jpg"], wanted[0], atol=2e-3)
    plain = MTFL(path=tmp_path / "mtfl").load("test")
    ctx = EvalContext(plain, Predictions(plain.ids, {"landmarks": frame.astype(np.float32)}), "landmarks", names,
                      n_resamples=0, input_size=(32, 32), head_scheme="five_point")
    res = LandmarksProtocol(attributes=[]).evaluate(ctx)
    assert res.records[0].conventions["frame"] == "whole image" and res.records[0].value > 10 * want
