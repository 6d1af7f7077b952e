"""``faceapi-expression``, ``faceapi-age-gender``, ``faceapi-recognition``: face-api's networks in PyTorch.

The weights are the TF.js manifests and uint8-quantised shards that the npm package
``@vladmandic/face-api`` 1.7.15 ships in ``package/model/`` (MIT); the graphs are
:mod:`facebench.models.faceapi_nets`. Neither Node nor TF.js is needed to run them.

Where the weights are found (the first that exists):

1. ``--model-args weights=PATH``: the ``npm pack`` tarball, the unpacked package folder, or its
   ``model/`` folder;
2. ``$FACEBENCH_NPM_DIR/vladmandic-face-api-1.7.15.tgz`` (``FACEBENCH_NPM_DIR`` defaults to
   ``~/.cache/facebench/npm``), read straight from the tarball, else its unpacked
   ``$FACEBENCH_NPM_DIR/face-api/package``.

Input pipeline: face-api's own (``NetInput.toBatchTensor``), on a square RGB *canvas* that the
engine hands over: the whole image resized to ``size`` x ``size`` (pixel values 0..255, no
mean/std). The adapter resizes the canvas to the net's input (112, or 150 for recognition) with
TF.js's legacy bilinear kernel (``src = dst * in / out``, no antialiasing), subtracts
``[122.782, 117.001, 104.298]`` and divides by 255. Set ``size`` to the dataset's image side (48
for FER2013, 224 for FairFace, 200 for UTKFace) and the engine passes the file's pixels through
untouched, so the input is exactly face-api's; otherwise the engine's resize (antialiased bilinear)
makes the canvas first. Non-square images are stretched to the canvas, where face-api would pad
them to a square with zeros (``faceapi_input`` does that for images handled directly). Grey
images are repeated to RGB, as ``tf.browser.fromPixels`` does. Feed face crops (face-api feeds the
detector's box, or the landmark-aligned box).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from facebench.data.preprocess import InputSpec, Preprocessing
from facebench.errors import ConfigError, ModelError
from facebench.models.base import Head, ModelAdapter
from facebench.models.faceapi_nets import (
    AgeGenderNet,
    FaceExpressionNet,
    FaceRecognitionNet,
    normalise,
    resize_bilinear_tf,
)
from facebench.models.faceapi_weights import MANIFEST_SUFFIX, WeightSource, read_weights_manifest

FACEAPI_VERSION = "1.7.15"
FACEAPI_TARBALL = f"vladmandic-face-api-{FACEAPI_VERSION}.tgz"
NPM_DIR_ENV = "FACEBENCH_NPM_DIR"
ARCHIVE_MODEL_DIR = "package/model"
INSTALL_HINT = (
    f"Run `facebench models install faceapi-expression` (one tarball serves the three face-api models), or get the "
    f"weights with `mkdir -p ~/.cache/facebench/npm && cd ~/.cache/facebench/npm && npm pack "
    f"@vladmandic/face-api@{FACEAPI_VERSION}` (a 12.7 MB tarball; facebench reads it in place, no unpacking "
    f"and no Node needed to run the models). Put it elsewhere by setting {NPM_DIR_ENV}=FOLDER, or pass "
    f"--model-args weights=PATH (the tarball, the unpacked package folder or its model/ folder)."
)
# face-api's FACE_EXPRESSION_LABELS (neutral, happy, sad, angry, fearful, disgusted, surprised) as canonical names
EXPRESSION_LABELS = ("neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise")


def npm_dir() -> Path:
    """The folder holding ``npm pack`` tarballs: ``$FACEBENCH_NPM_DIR``, else ``~/.cache/facebench/npm``."""
    return Path(os.environ.get(NPM_DIR_ENV) or "~/.cache/facebench/npm").expanduser()


def _folder_source(folder: Path, manifest: str) -> WeightSource | None:
    """A folder holding the manifest itself, or ``model/`` or ``package/model/`` with it."""
    for sub in ("", "model", ARCHIVE_MODEL_DIR):
        if (folder / sub / manifest).is_file():
            return WeightSource(folder, sub)
    return None


def weight_source(weights: str | None, model_name: str, what: str) -> WeightSource:
    """Where ``<model_name>-weights_manifest.json`` and its shards are read from (see the module docstring)."""
    manifest = model_name + MANIFEST_SUFFIX
    if weights:
        path = Path(str(weights)).expanduser()
        if path.is_file():
            return WeightSource(path, ARCHIVE_MODEL_DIR)
        source = _folder_source(path, manifest) if path.is_dir() else None
        if source is None:
            raise ModelError(f"{what}: weights={path} is neither face-api's npm tarball nor a folder holding "
                             f"{manifest} (directly, in model/ or in package/model/).")
        return source
    root = npm_dir()
    if (root / FACEAPI_TARBALL).is_file():
        return WeightSource(root / FACEAPI_TARBALL, ARCHIVE_MODEL_DIR)
    source = _folder_source(root / "face-api" / "package", manifest)
    if source is None:
        raise ModelError(f"{what} needs face-api's {manifest}, found neither {root / FACEAPI_TARBALL} nor an "
                         f"unpacked {root / 'face-api' / 'package'}. {INSTALL_HINT}")
    return source


def canvas_spec(size: int) -> InputSpec:
    """The RGB canvas these adapters receive: the whole image resized to size x size, raw pixel values."""
    return InputSpec(size=(size, size), channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)


class _FaceApiAdapter(ModelAdapter):
    """Shared: weights lookup, the canvas, face-api's resize and normalisation."""

    preprocessing = Preprocessing(
        source="@vladmandic/face-api 1.7.15: NetInput.toBatchTensor (padToSquare, tf.image.resizeBilinear without "
               "antialiasing) and normalize ((RGB - channel means) / 255)",
        crop="face-api feeds a detected face box; facebench feeds the dataset's crop resized by the engine to a "
             "size= canvas (torch resize; a no-op when size equals the image side), then pads and resizes it as "
             "face-api does (faceapi_nets)")

    model_name = ""  # the manifest's stem in face-api's model/ folder
    net_size = 112  # face-api's toBatchTensor size
    network = None  # the nn.Module class built from the manifest's arrays

    def __init__(self, weights: str | None = None, size: int | None = None):
        size = self.net_size if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
            raise ConfigError(f"{self.name}: size must be the canvas side in pixels, an integer from 16 to 4096 "
                              f"(the dataset's image side keeps its pixels as they are), got {size!r}.")
        super().__init__(weights=weights, size=size)
        self.input_spec = canvas_spec(size)
        self.heads = dict(type(self).heads)
        self.source = weight_source(weights, self.model_name, self.name)
        self.module = self.network(read_weights_manifest(self.source, self.model_name + MANIFEST_SUFFIX)).eval()

    def model_files(self):
        """The tarball (or, unpacked, the manifest) the weights were read from."""
        root = self.source.root
        return {"weights": root if self.source.is_archive else root / self.source.model_dir /
                (self.model_name + MANIFEST_SUFFIX)}

    def net_input(self, batch: torch.Tensor) -> torch.Tensor:
        """The engine's canvas batch (B, 3, S, S) of pixel values -> face-api's normalised net input."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ModelError(f"{self.name}: expected a (B, 3, H, W) RGB batch, got shape {tuple(batch.shape)}.")
        return normalise(resize_bilinear_tf(batch, self.net_size))


class FaceApiExpressionAdapter(_FaceApiAdapter):
    """face-api faceExpressionNet in PyTorch (npm @vladmandic/face-api, 112x112 RGB, 7 basic expressions)

    A 4-block densely connected depthwise-separable CNN (324k parameters, uint8-quantised weights),
    trained by face-api.js's author on "a variety of images from publicly available datasets as well
    as images scraped from the web"; no accuracy is published (facebench measures 58.9% on FER2013
    PrivateTest, image folders, ``size=48``; 58.7% with the default 112 canvas). Input: see the module
    docstring (``size`` = the canvas side, default 112; 48 keeps FER2013's pixels).

    Outputs: head ``expression``, the log-softmax of the classifier's logits (softmax gives face-api's
    probabilities), classes in face-api's order as canonical names: neutral, happiness, sadness,
    anger, fear, disgust, surprise; ``features``: the 256-d average-pooled bottleneck (the FC input).
    """

    name = "faceapi-expression"
    model_name = "face_expression_model"
    network = FaceExpressionNet
    input_spec = canvas_spec(112)
    heads = {"expression": Head("expression", EXPRESSION_LABELS)}
    default_head = "expression"
    feature_dim = 256

    def forward(self, batch, heads, features):
        logits, pooled = self.module(self.net_input(batch))
        out = {"expression": F.log_softmax(logits, dim=1)}
        if features:
            out["features"] = pooled
        return out


class FaceApiAgeGenderAdapter(_FaceApiAdapter):
    """face-api ageGenderNet in PyTorch (npm @vladmandic/face-api, 112x112 RGB): age regression and gender

    TinyXception (2 main blocks, 512-d bottleneck) with two linear heads, uint8-quantised weights.
    face-api.js's README reports age MAE 5.25 (UTK), 4.23 (FGNET), 6.24 (ChaLearn), 6.54 (Wiki), 6.23
    (MegaAge) and gender accuracy 0.93-0.97. Input: see the module docstring (``size`` = canvas
    side, default 112).

    Heads: ``age`` (kind "regression", shape (B, 1)): the network's age in years, unrounded;
    ``gender``: log-softmax over (female, male) (face-api's own order is male, female; reordered);
    ``features``: the 512-d average-pooled bottleneck.
    """

    name = "faceapi-age-gender"
    model_name = "age_gender_model"
    network = AgeGenderNet
    input_spec = canvas_spec(112)
    heads = {"age": Head("age", ("age",), "regression"), "gender": Head("gender", ("female", "male"))}
    default_head = "age"
    feature_dim = 512

    def forward(self, batch, heads, features):
        age, gender, pooled = self.module(self.net_input(batch))
        out = {}
        if "age" in heads:
            out["age"] = age[:, None]
        if "gender" in heads:
            out["gender"] = F.log_softmax(gender, dim=1)[:, [1, 0]]  # (male, female) -> (female, male)
        if features:
            out["features"] = pooled
        return out


class FaceApiRecognitionAdapter(_FaceApiAdapter):
    """face-api faceRecognitionNet in PyTorch (dlib's ResNet, uint8-quantised; 128-d descriptors from 150x150 RGB)

    Davis King's dlib ResNet (99.38% on LFW in dlib) as face-api re-expresses and quantises it; same
    person when the Euclidean distance is below 0.6. Unlike ``dlib-resnet`` it does no alignment: it
    embeds the crop it is given, as face-api does with a detection box (face-api divides pixels by
    255, dlib by 256). Input: see the module docstring (``size`` = canvas side, default 150).

    Features only: ``heads = {}``; ``predict(batch, heads=(), features=True)`` returns
    ``{"features": (B, 128)}``, the raw descriptors (not L2-normalised).
    """

    name = "faceapi-recognition"
    model_name = "face_recognition_model"
    net_size = 150
    network = FaceRecognitionNet
    input_spec = canvas_spec(150)
    heads: dict = {}
    default_head = None
    feature_dim = 128

    def forward(self, batch, heads, features):
        unknown = [h for h in heads if h is not None]
        if unknown:
            raise ConfigError(f"Model {self.name!r} has no heads (it gives 128-d features only); asked for {unknown}.")
        return {"features": self.module(self.net_input(batch))}
