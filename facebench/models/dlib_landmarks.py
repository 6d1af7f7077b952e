"""``dlib-68`` and ``dlib-5``: dlib's shape predictors as landmark models (issue 20).

Each adapter receives the engine's RGB *canvas* (the whole image resized to ``size`` x ``size``), turns it
back into uint8 and runs, once per image, what dlib's own examples run:

1. ``dlib.get_frontal_face_detector()`` (HOG) with ``upsample`` doublings (default 1); the **largest**
   detection (by box area, the first on ties) is the face;
2. the shape predictor on that box: ``shape_predictor_68_face_landmarks.dat`` (iBUG 300-W markup, scheme
   ``ibug68``) or ``shape_predictor_5_face_landmarks.dat`` (scheme ``dlib5``, below);
3. **no detection**: ``face_detected`` = 0 and the predictor runs on the whole-canvas box
   ``(0, 0, S-1, S-1)``, so that the protocol can apply its own missed-face policy.

Outputs (``predict(batch, heads=("landmarks",))``):

* ``"landmarks"``: (B, K, 2) float32 (x, y) in the **input frame** (the canvas, 0-based pixel centres).
  dlib gives whole-pixel points. With the engine's ``align_corners=False`` resize, original pixels are
  ``x_orig = (x + 0.5) * W / S - 0.5`` (and the same for y with H) (:func:`to_original`);
* ``"face_detected"`` (B,) float32 1/0 and ``"face_box"`` (B, 4) float32 ``(left, top, right, bottom)`` of
  the box used, in the input frame (dlib's inclusive rectangle). Both are stored with the predictions
  (``head_outputs``), so the detection runs once per image and canvas setting.

Canvas and aspect ratio: ``size`` should match the images when they are all one square size (MTFL's AFLW
test faces are 150x150: ``size=150``, the default, is an identity resize, and the points equal dlib's
own on the original image). Non-square images are **stretched** to the square canvas, which distorts the
faces that the detector and the predictor see (their points are still mapped back exactly, but they are
the points of a distorted face); there is no aspect-preserving letterbox yet: use a dataset of square
crops, or one size per run. Images larger than the canvas are shrunk (faces under about 40 px on the
canvas are missed at upsample 1).

``dlib5`` point order (dlib's 5-point model; names use the SUBJECT's side as in
:mod:`facebench.data.landmark_schemes`): 0 left eye outer corner (iBUG 45), 1 left eye inner corner
(iBUG 42), 2 right eye outer corner (iBUG 36), 3 right eye inner corner (iBUG 39), 4 nose base (under
the nose, near iBUG 33), as ``landmark_schemes.SCHEMES["dlib5"]`` names them. It has no mouth points, so it
cannot be mapped to MTFL's ``five_point`` (the protocol says so); 68-point sets map to it.

Weights: face-recognition-models 0.3.0 (``facebench models install dlib-68``); the 68-point model is
trained on iBUG 300-W (non-commercial licence), the 5-point model is CC0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.data.landmark_schemes import get_scheme
from facebench.data.preprocess import Preprocessing
from facebench.errors import ConfigError, ModelError
from facebench.models.base import Head, ModelAdapter
from facebench.models.dlib_face import (DLIB_BIN_VERSION, FACE_RECOGNITION_MODELS_VERSION, SHAPE5_FILE, DlibAligner,
                                        canvas_spec, canvas_uint8, check_upsample, digest_tensor, dlib_build,
                                        existing_file, import_dlib, package_file, settings_tensor)

SHAPE68_FILE = "shape_predictor_68_face_landmarks.dat"
DEFAULT_SIZE = 150  # MTFL's AFLW test faces: an identity resize


def landmarks_hint(model: str) -> str:
    return (f"Run `facebench models install {model}`, or `pip install --no-deps "
            f"face-recognition-models=={FACE_RECOGNITION_MODELS_VERSION} dlib-bin=={DLIB_BIN_VERSION}` "
            f"(facebench reads the package's .dat files without importing it).")


def to_original(points: np.ndarray, size: tuple[int, int], image_sizes: np.ndarray) -> np.ndarray:
    """(N, K, 2) input-frame points on a canvas of ``size`` = (height, width) -> original pixels of images
    of ``image_sizes`` (N, 2) = (width, height): x_orig = (x + 0.5) * W / S_w - 0.5 (align_corners=False)."""
    pts = np.asarray(points, dtype=np.float64)
    wh = np.asarray(image_sizes, dtype=np.float64)[:, None, :]
    canvas = np.array([size[1], size[0]], dtype=np.float64)
    return (pts + 0.5) * wh / canvas - 0.5


class DlibLandmarkAdapter(ModelAdapter):
    """A dlib shape predictor on the largest HOG face of the canvas (see the module docstring)."""

    predictor_file: str = ""
    parts: int = 0
    scheme: str = ""
    default_head = "landmarks"
    head_outputs = ("face_detected", "face_box")
    differentiable = False  # dlib runs on uint8 canvases: no input gradients
    preprocessing = Preprocessing(
        source=f"dlib-bin {DLIB_BIN_VERSION} + face-recognition-models {FACE_RECOGNITION_MODELS_VERSION}: "
               f"get_frontal_face_detector()(image, upsample), shape_predictor(image, largest box) "
               f"(python_examples/face_landmark_detection.py)",
        crop="none: dlib detects on the whole image; facebench's engine first resizes it to a square RGB canvas "
             "(size=; torch resize, bilinear, antialiased when shrinking; identity when the image has that size)")

    def __init__(self, shape_predictor: str | None = None, upsample: int = 1, size: int = DEFAULT_SIZE):
        upsample = check_upsample(upsample, self.name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise ConfigError(f"{self.name}: size must be an integer canvas side of at least 32 pixels, got {size!r}.")
        super().__init__(shape_predictor=shape_predictor, upsample=upsample, size=size)
        self.input_spec = canvas_spec(size)
        self.heads = {"landmarks": Head("landmarks", self.point_names(), "landmarks", self.scheme)}
        self.path = self._predictor_path(shape_predictor)
        self.aligner = DlibAligner(import_dlib(self.name, landmarks_hint(self.name)), self.path, upsample,
                                   self.name, parts=self.parts)
        self.no_face_count = 0
        self._weights = [("shape_predictor_sha256", digest_tensor(self.path))]

    def point_names(self) -> tuple[str, ...]:
        """The head's labels: the point names of the adapter's scheme (``landmark_schemes``)."""
        return get_scheme(self.scheme).point_names

    def _predictor_path(self, shape_predictor: str | None) -> Path:
        if shape_predictor:
            return existing_file(shape_predictor, self.name, f"dlib's {self.predictor_file}")
        path = package_file("face_recognition_models", "models", self.predictor_file)
        if path is None:
            raise ModelError(f"{self.name} needs {self.predictor_file} from the PyPI package face-recognition-models, "
                             f"which is not installed. {landmarks_hint(self.name)} "
                             f"Or pass --model-args shape_predictor=PATH.")
        return path

    def parameters_for_fingerprint(self):
        settings = {"detector": "dlib.get_frontal_face_detector", "upsample": self.aligner.upsample,
                    "face": "largest, else whole canvas", "landmarks": self.parts, "dlib": dlib_build(self.aligner.dlib)}
        return self._weights + [("landmarking", settings_tensor(settings))]

    def landmarks(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 RGB canvases -> (points (B, K, 2), detected (B,), boxes (B, 4)), float32, input frame."""
        points = np.empty((len(images), self.parts, 2), dtype=np.float32)
        detected = np.empty(len(images), dtype=np.float32)
        boxes = np.empty((len(images), 4), dtype=np.float32)
        for i, image in enumerate(images):
            box, found = self.aligner.face_box(image)
            shape = self.aligner.predictor(image, box)
            points[i] = [(shape.part(k).x, shape.part(k).y) for k in range(self.parts)]
            detected[i] = float(found)
            boxes[i] = (box.left(), box.top(), box.right(), box.bottom())
        self.no_face_count += int((detected == 0).sum())
        return points, detected, boxes

    def forward(self, batch: torch.Tensor, heads: tuple[str, ...], features: bool) -> dict[str, Any]:
        if features:
            raise ConfigError(f"Model {self.name!r} gives landmarks only (no features).")
        points, detected, boxes = self.landmarks(canvas_uint8(batch, self.input_spec, self.name))
        out = {"face_detected": torch.from_numpy(detected), "face_box": torch.from_numpy(boxes)}
        out.update({h: torch.from_numpy(points) for h in heads})
        return {k: v.to(batch.device) for k, v in out.items()}


class Dlib68Adapter(DlibLandmarkAdapter):
    """dlib's 68-point shape predictor (iBUG 300-W markup) on the largest HOG face; points in the input frame

    ``--model-args upsample=0|1|2,size=150,shape_predictor=PATH``. See :mod:`facebench.models.dlib_landmarks`."""

    name = "dlib-68"
    predictor_file = SHAPE68_FILE
    parts = 68
    scheme = "ibug68"


class Dlib5Adapter(DlibLandmarkAdapter):
    """dlib's 5-point shape predictor (eye corners and nose base) on the largest HOG face; points in the input frame

    ``--model-args upsample=0|1|2,size=150,shape_predictor=PATH``. Its scheme ``dlib5`` has no mouth points.
    See :mod:`facebench.models.dlib_landmarks`."""

    name = "dlib-5"
    predictor_file = SHAPE5_FILE
    parts = 5
    scheme = "dlib5"
