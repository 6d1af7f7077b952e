"""A declared face detector (``dataset_args: {detector: ...}``): its options, its boxes mapped to original pixels by
hand, and a whole run where a detector that finds a bright square feeds a landmark model that only sees the crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facebench.data.preprocess import InputSpec
from facebench.errors import ConfigError
from facebench.models.base import Head, ModelAdapter
from facebench.pipeline.detect import (DetectorSpec, crops_from_detections, original_boxes, parse_detector,
                                       check_detector_model)
from facebench.registry import MODELS

FRAME = 40  # the fake models' square input frame


def test_parse_detector_options():
    assert parse_detector("mtcnn-5") == DetectorSpec("mtcnn-5")
    spec = parse_detector({"model": "dlib-68", "args": {"upsample": 2}, "margin": 0.25, "missed": "exclude"})
    assert (spec.model, spec.args, spec.margin, spec.missed) == ("dlib-68", {"upsample": 2}, 0.25, "exclude")
    for bad, message in (({"model": "m", "margn": 0.1}, "no option 'margn'.*margin"), (3, "a model name"),
                         ({"model": "m", "margin": 3}, r"margin must be a number in \[0, 2\]"),
                         ({"model": "m", "missed": "skip"}, "whole_image, exclude"),
                         ({"model": "m", "args": [1]}, "args must be a mapping")):
        with pytest.raises(ConfigError, match=message):
            parse_detector(bad)
    with pytest.raises(ConfigError, match="not a registered model.*mtcnn-5"):
        check_detector_model(parse_detector("mtcnn5"))


def test_boxes_to_original_pixels_by_hand():
    # frame 100 x 100, image 200 wide and 50 high: x doubles, y halves
    boxes = original_boxes(np.array([[10.0, 20.0, 50.0, 60.0]]), (100, 100), np.array([[200, 50]]))
    np.testing.assert_allclose(boxes, [[20.0, 10.0, 100.0, 30.0]])
    # margin 0.5: centre (60, 20), half sides (40, 10) x 2 -> (-20, 0, 140, 40), clamped to the 200 x 50 image
    crops = crops_from_detections(np.vstack([boxes, boxes]), np.array([1.0, 0.0]), np.array([[200, 50]] * 2), 0.5)
    np.testing.assert_allclose(crops, [[0.0, 0.0, 140.0, 40.0], [0.0, 0.0, 200.0, 50.0]])  # missed: the image


class _FrameModel(ModelAdapter):
    """A fake five-point model on a 40 x 40 frame (pixels / 255, no normalisation); subclasses give ``forward``."""

    def __init__(self):
        super().__init__()
        self.input_spec = InputSpec(size=(FRAME, FRAME), mean=(0.0,) * 3, std=(1.0,) * 3)
        self.heads = {"landmarks": Head("landmarks", ("a", "b", "c", "d", "e"), "landmarks", "five_point")}
        self.default_head = "landmarks"


class SquareDetector(_FrameModel):
    """Finds the bounding box of the frame pixels brighter than the midpoint of the fixtures' grey (40) and white
    (255): with square edges on the frame's pixel edges, the resize's blur leaves the box exact. None: missed."""

    name = "test-square-detector"
    head_outputs = ("face_detected", "face_box")

    def forward(self, batch, heads, features):
        bright = batch.mean(dim=1) > 147.5 / 255
        found, boxes = [], []
        for mask in bright:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            found.append(float(len(xs) > 0))
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, FRAME, FRAME])
        n = batch.shape[0]
        return {"landmarks": torch.zeros(n, 5, 2), "face_detected": torch.tensor(found),
                "face_box": torch.tensor(boxes, dtype=torch.float32)}


class CornerModel(_FrameModel):
    """A landmark model that puts its five points at fixed places of its own frame: it only knows the crop."""

    name = "test-corner-model"
    POINTS = np.array([[10.0, 10.0], [30.0, 10.0], [20.0, 20.0], [12.0, 30.0], [28.0, 30.0]])

    def forward(self, batch, heads, features):
        return {"landmarks": torch.tensor(self.POINTS, dtype=torch.float32).expand(batch.shape[0], 5, 2).clone()}


def _mtfl(root: Path, squares: list[tuple[int, int, int] | None], truth: np.ndarray) -> None:
    """MTFL's native layout (testing.txt: path, x1..x5, y1..y5, gender, smile, glasses, pose; AFLW/ images)."""
    (root / "AFLW").mkdir(parents=True)
    lines = []
    for i, square in enumerate(squares):
        image = np.full((80, 120, 3), 40, np.uint8)  # 120 wide, 80 high: the frame stretches it
        if square is not None:
            x, y, side = square
            image[y:y + side, x:x + side] = 255
        Image.fromarray(image).save(root / "AFLW" / f"face{i}.png")
        xs, ys = truth[i, :, 0], truth[i, :, 1]
        lines.append(" ".join([f"AFLW\\face{i}.png", *(f"{v:.2f}" for v in xs), *(f"{v:.2f}" for v in ys),
                               "1", "2", "2", "1"]))
    (root / "testing.txt").write_text("\n".join(lines) + "\n")
    (root / "training.txt").write_text("")


def _suite(tmp_path: Path, detector: str) -> Path:
    suite = tmp_path / f"det-{len(list(tmp_path.glob('det-*.yaml')))}.yaml"
    suite.write_text(f"name: det\ndefaults: {{bootstrap: 0}}\ntasks:\n"
                     f"  - {{name: mtfl, dataset: mtfl, split: test, path: {tmp_path / 'mtfl'}, protocol: landmarks, "
                     f"dataset_args: {{detector: {detector}}}, params: {{normaliser: eye_centres_5pt}}}}\n")
    return suite


def test_detector_feeds_the_crop_to_the_model(tmp_path):
    """Image 0: a 30 px square at (60, 20); image 1: none (missed, whole image); image 2: a 42 px square at
    (9, 30) (edges on the 40 x 40 frame's pixel edges: x / 3, y / 2). The model's fixed frame points map back through each crop: x = x1 + (x' + 0.5) (x2 - x1) / 40 - 0.5."""
    from facebench.runner import run_suite

    squares = [(60, 20, 30), None, (9, 30, 42)]
    truth = np.stack([CornerModel.POINTS * 0.75 + [60, 20] + i for i in range(3)])
    _mtfl(tmp_path / "mtfl", squares, truth)
    MODELS.register(SquareDetector.name)(SquareDetector)
    try:
        outcome = run_suite(_suite(tmp_path, SquareDetector.name), adapter=CornerModel(), out=tmp_path / "run",
                            cache_dir=tmp_path / "store", progress=False, log=lambda m: None)
        said = []
        again = run_suite(_suite(tmp_path, f"{{model: {SquareDetector.name}, missed: exclude}}"),
                          adapter=CornerModel(), out=tmp_path / "run2", cache_dir=tmp_path / "store", progress=False,
                          log=said.append)
        MODELS.register("test-corner-model")(CornerModel)  # no face_box: not a detector
        with pytest.raises(ConfigError, match="cannot serve as a detector.*no face_box"):  # before any model runs
            run_suite(_suite(tmp_path, "test-corner-model"), adapter=CornerModel(), out=tmp_path / "run3",
                      cache_dir=tmp_path / "store", progress=False, log=said.append)
    finally:
        MODELS._entries.pop("test-corner-model", None)
        MODELS._entries.pop(SquareDetector.name, None)
    assert outcome.exit_code == 0, outcome.results
    task = outcome.results["tasks"][0]
    assert task["detection"]["detected"] == 2 and task["detection"]["missed"] == 1
    assert task["detection"]["model"] == SquareDetector.name and task["detection"]["fingerprint"]
    crops = np.array([[60, 20, 90, 50], [0, 0, 120, 80], [9, 30, 51, 72]], dtype=float)  # detections found
    # in the 40 x 40 frame of the stretched 120 x 80 image: x / 3, y / 2; back to pixels: exact here
    pred = np.stack([c[:2] + (CornerModel.POINTS + 0.5) * (c[2:] - c[:2]) / FRAME - 0.5 for c in crops])
    d = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)
    want = np.linalg.norm(pred - truth, axis=2).mean(axis=1) / d
    records = {r["metric"]: r for r in outcome.results["records"]}
    nme = records["nme[eye_centres_5pt]"]
    assert nme["value"] == pytest.approx(want.mean(), abs=1e-9)
    # missed: exclude leaves image 1 out; the detector's outputs come from the store (same detector, same split)
    task2 = again.results["tasks"][0]
    assert task2["n"] == 2 and task2["detection"]["missed"] == 1 and task2["detection"]["missed_policy"] == "exclude"
    nme2 = {r["metric"]: r for r in again.results["records"]}["nme[eye_centres_5pt]"]
    assert nme2["value"] == pytest.approx(want[[0, 2]].mean(), abs=1e-9)
    assert any("reused the stored detections of test-square-detector" in m for m in said)
    # sample_counts: the missed face (image 1) counted overall and in its groups (MTFL's gender 1 = male, ...)
    counts = task["sample_counts"]
    assert (counts["evaluated"], counts["skipped"], counts["no_face"]) == (3, 0, 1)
    assert counts["by_group"]["gender"] == {"male": {"evaluated": 3, "skipped": 0, "no_face": 1}}
    board = (tmp_path / "run" / "leaderboard.md").read_text()
    assert "## Samples left out or without a face" in board and "| mtfl | 3 | 0 | 1 (33.3%) |" in board
    assert "mtfl: left out and without a face per gender" in board
