"""``mtcnn-5``: MTCNN's five points (eye centres, nose tip, mouth corners; scheme ``five_point``) as a landmark model.

The cascade (:mod:`facebench.models.mtcnn_net`) runs on the engine's RGB canvas (the whole image resized to
``size`` x ``size``; 150 = MTFL's AFLW faces, an identity resize), with facenet-pytorch's defaults
(``min_face_size`` 20, thresholds 0.6 / 0.7 / 0.7, pyramid factor 0.709). Of the detections the **largest**
box wins (``MTCNN.detect``'s ``select_largest``: area (x2 - x1) * (y2 - y1)); its O-Net points are the output.

Outputs as :mod:`facebench.models.dlib_landmarks`: ``"landmarks"`` (B, 5, 2) float32 in the input frame (the
canvas pixels as the package returns them), ``"face_detected"`` (B,) 1/0 and ``"face_box"`` (B, 4)
(x1, y1, x2, y2) of the detection. **No detection**: ``face_detected`` = 0, and the points are O-Net's on the
whole-canvas box (1, 1, S, S) (the cascade's 1-based corners: the crop is the whole canvas), which is also
the ``face_box`` given. Non-square images are stretched to the square canvas (see dlib_landmarks).

The point order is MTFL's ``five_point`` (subject's right eye = image-left eye first), so no mapping is
needed on MTFL. Weights: ``facebench models install mtcnn-5`` (the facenet-pytorch wheel's ``data/*.pt``,
read without importing the package, which needs torchvision).
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
from facebench.models.dlib_face import canvas_spec, canvas_uint8, package_file, settings_tensor
from facebench.models.dlib_landmarks import DEFAULT_SIZE
from facebench.models.install import FACENET_PYTORCH_VERSION
from facebench.models.mtcnn_net import MTCNNNets, detect, points_in_box

MTCNN_HINT = (f"Run `facebench models install mtcnn-5`, or `pip install --no-deps facenet-pytorch=="
              f"{FACENET_PYTORCH_VERSION}` (facebench reads its data/pnet.pt, rnet.pt and onet.pt without importing it).")


def mtcnn_weights_folder() -> Path | None:
    """``facenet_pytorch/data`` when it holds the three networks' files, else None."""
    files = [package_file("facenet_pytorch", "data", name) for name in MTCNNNets.FILES]
    return files[0].parent if all(files) else None


class MTCNNLandmarkAdapter(ModelAdapter):
    """MTCNN's five points (eye centres, nose, mouth corners; MTFL order) on the largest MTCNN face (facenet-pytorch weights)

    ``--model-args size=150,min_face_size=20,weights=FOLDER``. See :mod:`facebench.models.mtcnn_landmarks`."""

    name = "mtcnn-5"
    default_head = "landmarks"
    head_outputs = ("face_detected", "face_box")
    differentiable = False  # the cascade runs per image on uint8 canvases (dlib_face.canvas_uint8)
    preprocessing = Preprocessing(
        source=f"facenet-pytorch {FACENET_PYTORCH_VERSION}: MTCNN.detect(image, landmarks=True) "
               f"(models/utils/detect_face.py), largest box",
        crop="none: MTCNN detects on the whole image; facebench's engine first resizes it to a square RGB canvas "
             "(size=; torch resize, identity when the image has that size)")

    def __init__(self, size: int = DEFAULT_SIZE, min_face_size: float = 20.0, weights: str | None = None):
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise ConfigError(f"{self.name}: size must be an integer canvas side of at least 32 pixels, got {size!r}.")
        if isinstance(min_face_size, bool) or not isinstance(min_face_size, (int, float)) or min_face_size < 12:
            raise ConfigError(f"{self.name}: min_face_size must be a number of pixels >= 12 (P-Net's window), "
                              f"got {min_face_size!r}.")
        super().__init__(size=size, min_face_size=float(min_face_size), weights=weights)
        self.input_spec = canvas_spec(size)
        self.heads = {"landmarks": Head("landmarks", get_scheme("five_point").point_names, "landmarks", "five_point")}
        self.folder = self._folder(weights)
        try:
            self.module = MTCNNNets(self.folder)
        except (OSError, RuntimeError) as err:
            raise ModelError(f"{self.name}: the MTCNN weights in {self.folder} could not be read: {err}") from None
        self.no_face_count = 0

    def _folder(self, weights: str | None) -> Path:
        if weights:
            folder = Path(weights).expanduser()
            missing = [n for n in MTCNNNets.FILES if not (folder / n).is_file()]
            if missing:
                raise ModelError(f"{self.name}: {folder} lacks {', '.join(missing)} (facenet-pytorch's data folder).")
            return folder
        folder = mtcnn_weights_folder()
        if folder is None:
            raise ModelError(f"{self.name} needs MTCNN's weights from the PyPI package facenet-pytorch, which is not "
                             f"installed. {MTCNN_HINT} Or pass --model-args weights=FOLDER.")
        return folder

    def to(self, device):
        self.device = torch.device(device)  # the cascade runs per image on the CPU
        return self

    def channels_last(self):
        return self

    def parameters_for_fingerprint(self):
        cascade = {"min_face_size": self.settings["min_face_size"], "thresholds": [0.6, 0.7, 0.7], "factor": 0.709,
                   "face": "largest box, else O-Net on the whole canvas"}
        return list(self.module.state_dict().items()) + [("cascade", settings_tensor(cascade))]

    def landmarks_of(self, image: np.ndarray) -> tuple[np.ndarray, bool, tuple[float, ...]]:
        """One uint8 RGB canvas -> ((5, 2) points, detected, box)."""
        boxes, points = detect(self.module, image, self.settings["min_face_size"])
        if len(boxes):
            best = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1][0]
            return points[best], True, tuple(boxes[best, :4].tolist())
        h, w = image.shape[:2]
        box = (1.0, 1.0, float(w), float(h))
        return points_in_box(self.module, image, box), False, box

    def forward(self, batch: torch.Tensor, heads: tuple[str, ...], features: bool) -> dict[str, Any]:
        if features:
            raise ConfigError(f"Model {self.name!r} gives landmarks only (no features).")
        found = [self.landmarks_of(im) for im in canvas_uint8(batch, self.input_spec, self.name)]
        detected = torch.tensor([float(f[1]) for f in found], dtype=torch.float32)
        self.no_face_count += int((detected == 0).sum())
        out = {"face_detected": detected, "face_box": torch.tensor([f[2] for f in found], dtype=torch.float32)}
        points = torch.from_numpy(np.stack([f[0] for f in found]).astype(np.float32))
        out.update({h: points for h in heads})
        return {k: v.to(batch.device) for k, v in out.items()}
