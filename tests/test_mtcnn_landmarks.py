"""mtcnn-5: facebench's MTCNN cascade (facebench/models/mtcnn_net.py) against facenet-pytorch's own.

Conformance on 60 real MTFL test faces: every detection's five points and box equal those of the package's
``MTCNN(device="cpu").detect(image, landmarks=True)`` (1e-4 px). The package cannot be imported here as it
is: its detect_face imports torchvision (whose CPU ops do not load beside this torch build) for
``batched_nms`` only, and its package __init__ imports ``requests``. The test gives it a stand-in torchvision
whose ``batched_nms`` is written here independently (a plain Python greedy loop in float32, per index, by
descending score), and an empty ``requests``; everything else (networks, pyramid, regression, crops,
the final NumPy NMS, the largest-box order) is the package's code.
Needs `pip install --no-deps facenet-pytorch==2.6.0`; skips otherwise.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from facebench.data.decode import decode_image
from facebench.data.landmark_schemes import get_scheme
from facebench.models import mtcnn_landmarks as ml
from facebench.models import mtcnn_net

needs_weights = pytest.mark.skipif(ml.mtcnn_weights_folder() is None,
                                   reason="facenet-pytorch not installed (facebench models install mtcnn-5)")
N_REAL = 60


def _greedy_batched_nms(boxes, scores, idxs, threshold):
    """torchvision.ops.batched_nms's contract: kept indices by descending score; IoU (no +1 areas) > t drops."""
    b = boxes.detach().numpy().astype(np.float32)
    s, ids = scores.detach().numpy(), idxs.numpy()
    keep = []
    for i in np.argsort(-s, kind="stable"):
        for j in keep:
            if ids[j] != ids[i]:
                continue
            w = max(np.float32(0), min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            h = max(np.float32(0), min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = np.float32(w * h)
            union = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            if inter / union > threshold:
                break
        else:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


@pytest.fixture
def package_mtcnn(monkeypatch):
    """facenet-pytorch's MTCNN with the stand-in torchvision and requests (see the module docstring)."""
    stand_ins = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops",
        "torchvision.ops.boxes", "requests", "requests.adapters")}
    stand_ins["torchvision.ops.boxes"].batched_nms = _greedy_batched_nms
    stand_ins["requests.adapters"].HTTPAdapter = object
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in [m for m in sys.modules if m.startswith("facenet_pytorch")]:
        monkeypatch.delitem(sys.modules, name)
    from facenet_pytorch.models.mtcnn import MTCNN

    return MTCNN(device="cpu")


def _mtfl_rgb(shared_data, n):
    files = sorted((shared_data / "mtfl" / "AFLW").glob("*.jpg"))[:n]
    if len(files) < n:
        pytest.skip("fewer MTFL test images than needed")
    images = [decode_image(f) for f in files]
    return files, [np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im for im in images]


@needs_weights
def test_cascade_equals_the_package_on_mtfl(shared_data, package_mtcnn):
    files, images = _mtfl_rgb(shared_data, N_REAL)
    nets = mtcnn_net.MTCNNNets(ml.mtcnn_weights_folder())
    detected = 0
    for f, image in zip(files, images):
        boxes, probs, points = package_mtcnn.detect(image, landmarks=True)
        mine_boxes, mine_points = mtcnn_net.detect(nets, image)
        if boxes is None:
            assert len(mine_boxes) == 0, f.name
            continue
        detected += 1
        boxes, probs, points = (np.asarray(a, dtype=np.float64) for a in (boxes, probs, points))  # object arrays
        order = np.argsort((mine_boxes[:, 2] - mine_boxes[:, 0]) * (mine_boxes[:, 3] - mine_boxes[:, 1]))[::-1]
        assert len(mine_boxes) == len(boxes), f.name
        np.testing.assert_allclose(mine_points[order], points, atol=1e-4, err_msg=f.name)
        np.testing.assert_allclose(mine_boxes[order, :4], boxes, atol=1e-4, err_msg=f.name)
        np.testing.assert_allclose(mine_boxes[order, 4], probs, atol=1e-6, err_msg=f.name)
    assert detected >= 50


@needs_weights
def test_adapter_points_scheme_and_order(shared_data):
    from facebench.data.preprocess import normalise_batch, prepare_uint8

    files, images = _mtfl_rgb(shared_data, 16)
    adapter = ml.MTCNNLandmarkAdapter()
    head = adapter.heads["landmarks"]
    assert head.kind == "landmarks" and head.scheme == "five_point"
    assert head.labels == get_scheme("five_point").point_names
    batch = normalise_batch(torch.stack([prepare_uint8(im, adapter.input_spec) for im in images]), adapter.input_spec)
    out = adapter.predict(batch)
    assert out["landmarks"].shape == (16, 5, 2) and out["face_box"].shape == (16, 4)
    found = out["face_detected"].bool().numpy()
    assert found.sum() >= 12
    # against MTFL's ground truth (testing.txt: x1..x5 y1..y5): the order is five_point's, not mirrored
    truth = {}
    for line in (shared_data / "mtfl" / "testing.txt").read_text().splitlines():
        parts = line.split()
        if parts:
            v = np.array(parts[1:11], dtype=float)
            truth[parts[0].replace("\\", "/").split("/")[-1]] = np.stack([v[:5], v[5:]], axis=1)
    gt = np.stack([truth[f.name] for f in files])[found]
    pts = out["landmarks"].numpy()[found]
    d = np.linalg.norm(gt[:, 0] - gt[:, 1], axis=1)
    nme = (np.linalg.norm(pts - gt, axis=2).mean(axis=1) / d)
    mirrored = (np.linalg.norm(pts[:, [1, 0, 2, 4, 3]] - gt, axis=2).mean(axis=1) / d)
    assert np.median(nme) < 0.15 and np.median(mirrored) > 2 * np.median(nme)


@needs_weights
def test_miss_runs_onet_on_the_whole_canvas():
    adapter = ml.MTCNNLandmarkAdapter(size=64)
    out = adapter.predict(torch.full((1, 3, 64, 64), 0.5))
    assert out["face_detected"].tolist() == [0.0] and out["face_box"].tolist() == [[1, 1, 64, 64]]
    grey = np.full((64, 64, 3), 128, dtype=np.uint8)
    expected = mtcnn_net.points_in_box(adapter.module, grey, (1.0, 1.0, 64.0, 64.0))
    np.testing.assert_array_equal(out["landmarks"][0].numpy(), expected)
    assert adapter.no_face_count == 1


def test_nms_min_and_nms_hand_worked():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.9])
    # IoU(1, 0) = 81 / 119 = 0.68: kept at 0.7, dropped at 0.5; box 3 equals box 0 (IoU 1), later on the tie
    assert mtcnn_net.nms(boxes, scores, 0.7).tolist() == [1, 0, 2]
    assert mtcnn_net.nms(boxes, scores, 0.5).tolist() == [1, 2]
    small = np.array([[0, 0, 9, 9], [2, 2, 5, 5], [50, 50, 60, 60]], dtype=np.float32)
    # the small box lies inside the big one: overlap over the smaller box = 1 > 0.7
    assert mtcnn_net.nms_min(small, np.array([0.8, 0.9, 0.1], dtype=np.float32), 0.7).tolist() == [1, 2]


def test_bad_settings(tmp_path):
    from facebench.errors import ConfigError, ModelError

    with pytest.raises(ConfigError, match="min_face_size"):
        ml.MTCNNLandmarkAdapter(min_face_size=5)
    with pytest.raises(ModelError, match="pnet.pt"):
        ml.MTCNNLandmarkAdapter(weights=str(tmp_path))
