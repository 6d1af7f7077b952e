"""A declared face detector as a first-class input: ``dataset_args: {detector: NAME}`` on any dataset of image files.

Landmark and alignment models need a face box. A dataset that ships boxes uses them (the landmark loaders'
``crop: box``); otherwise a suite may declare a detector for the split::

    dataset_args: {detector: mtcnn-5}
    dataset_args: {detector: {model: dlib-68, args: {upsample: 1}, margin: 0.1, missed: whole_image}}

``model`` is a registered model whose forward gives ``face_box`` (x1, y1, x2, y2 in its input frame) and
``face_detected`` (1/0) beside its head (``head_outputs``: ``mtcnn-5``, ``dlib-68``, ``dlib-5``). It runs once per
image through the engine, so its outputs are stored and cached like any predictions (keyed by the detector's
fingerprint and the split's). Its boxes are scaled to original pixels (the engine's whole-image resize:
x * W / S_w, y * H / S_h, as continuous coordinates), grown about their centre to (1 + 2 margin) times their
sides, rounded and clamped to the image (the landmark loaders' rule), and become the split's crop boxes
(``FileImages.boxes``), so that the model under test sees the crops and the protocols map its outputs back
through them. Missed faces follow ``missed``: ``whole_image`` (default: the image is its own box) or
``exclude`` (the sample leaves the split). The detector, its fingerprint, the margin, the policy and the
counts go into the split's content tag (its fingerprint) and into results.json (the task's ``detection``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from facebench.errors import ConfigError, DataError, did_you_mean

MISSED = ("whole_image", "exclude")
BOX_OUTPUTS = ("face_box", "face_detected")
_KEYS = ("model", "args", "margin", "missed")


@dataclass(frozen=True)
class DetectorSpec:
    """The detector a split declares: registered ``model`` with ``args``, box ``margin`` and ``missed`` policy."""

    model: str
    args: dict = field(default_factory=dict, hash=False)
    margin: float = 0.0
    missed: str = "whole_image"

    def to_dict(self) -> dict:
        return {"model": self.model, "args": dict(self.args), "margin": self.margin, "missed": self.missed}


def parse_detector(value) -> DetectorSpec:
    """``NAME`` or ``{model, args, margin, missed}`` -> a checked ``DetectorSpec`` (ConfigErrors say what to fix)."""
    spec = {"model": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else None
    if spec is None or not isinstance(spec.get("model"), str):
        raise ConfigError(f"detector must be a model name or {{model: NAME, args, margin, missed}}; got {value!r}.")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ConfigError(f"detector has no option {unknown[0]!r}.{did_you_mean(unknown[0], _KEYS)} "
                          f"Options: {', '.join(_KEYS)}.")
    margin, missed, args = spec.get("margin", 0.0), spec.get("missed", "whole_image"), spec.get("args") or {}
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 2:
        raise ConfigError(f"detector margin must be a number in [0, 2] (the share of the box side added on each "
                          f"side), got {margin!r}.")
    if missed not in MISSED:
        raise ConfigError(f"detector missed must be one of {', '.join(MISSED)}, got {missed!r}.")
    if not isinstance(args, dict):
        raise ConfigError(f"detector args must be a mapping of the model's arguments, got {args!r}.")
    return DetectorSpec(spec["model"], dict(args), float(margin), missed)


def check_detector_model(spec: DetectorSpec) -> None:
    """Before anything loads: the detector is a registered model that declares face boxes (its class's
    ``head_outputs``; checked again on the built adapter)."""
    from facebench.registry import MODELS

    if spec.model not in MODELS.names():
        raise ConfigError(f"detector {spec.model!r} is not a registered model.{did_you_mean(spec.model, MODELS.names())} "
                          f"Detectors: models with face_box outputs, e.g. mtcnn-5, dlib-68, dlib-5.")
    _check_box_outputs(spec.model, MODELS.get(spec.model))


def _check_box_outputs(name: str, model) -> None:
    declared = tuple(getattr(model, "head_outputs", ()))
    missing = [o for o in BOX_OUTPUTS if o not in declared]
    if missing:
        raise ConfigError(f"model {name!r} cannot serve as a detector: its forward gives no {', '.join(missing)} "
                          f"(head_outputs {declared}). Use mtcnn-5, dlib-68 or dlib-5.")


def build_detector(spec: DetectorSpec):
    """The detector's adapter; a ConfigError when it gives no face boxes."""
    from facebench.registry import MODELS

    adapter = MODELS.get(spec.model)(**spec.args)
    _check_box_outputs(spec.model, adapter)
    return adapter


def original_boxes(frame_boxes: np.ndarray, frame_size, image_sizes: np.ndarray) -> np.ndarray:
    """(N, 4) boxes of the engine's input frame (S_h, S_w) -> original pixels: x * W / S_w, y * H / S_h."""
    b = np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4)
    sx = np.asarray(image_sizes[:, 0], dtype=np.float64) / float(frame_size[1])
    sy = np.asarray(image_sizes[:, 1], dtype=np.float64) / float(frame_size[0])
    return b * np.stack([sx, sy, sx, sy], axis=1)


def crops_from_detections(boxes: np.ndarray, found: np.ndarray, image_sizes: np.ndarray, margin: float) -> np.ndarray:
    """Crop boxes as cut: detected boxes grown by ``margin`` and clamped; the whole image where none was found
    (or where the grown box is empty after clamping)."""
    from facebench.data.landmark_sets import clamped_crops, enlarged

    whole = np.concatenate([np.zeros((len(image_sizes), 2)), np.asarray(image_sizes, dtype=np.float64)], axis=1)
    crops = clamped_crops(enlarged(boxes, margin), image_sizes)
    empty = (crops[:, 2] <= crops[:, 0]) | (crops[:, 3] <= crops[:, 1])
    return np.where((np.asarray(found) > 0.5)[:, None] & ~empty[:, None], crops, whole)


def detected_split(dataset, spec: DetectorSpec, predict: Callable, log: Callable[[str], None]):
    """``dataset`` cropped to the faces that ``predict(detector, dataset)`` (the engine, through the store) finds:
    returns (the new dataset, the detection summary for results.json)."""
    from facebench.data.images import FileImages
    from facebench.data.landmark_sets import header_sizes

    images = dataset.images
    if type(images) is not FileImages or images.boxes is not None:
        raise ConfigError(f"{dataset.name}/{dataset.split}: a detector needs the whole image files (a loader's "
                          f"default `crop: image`, no transform); this split's images are {images.describe()}.")
    detector = build_detector(spec)
    preds = predict(detector, dataset)
    found = np.asarray(preds.outputs["face_detected"], dtype=np.float64).reshape(-1) > 0.5
    sizes = header_sizes(images.paths)
    boxes = original_boxes(preds.outputs["face_box"], detector.input_spec.size, sizes)
    crops = crops_from_detections(boxes, found, sizes, spec.margin)
    summary = {"model": spec.model, "args": dict(spec.args), "margin": spec.margin, "missed_policy": spec.missed,
               "fingerprint": detector.fingerprint(), "n": int(len(found)),
               "detected": int(found.sum()), "missed": int((~found).sum()),
               "detection_rate": float(found.mean()) if len(found) else None}
    tag = {**dataset.content_tag, "detector": {k: v for k, v in summary.items() if k != "detection_rate"}}
    out = dataclasses.replace(dataset, images=FileImages(images.paths, crops), content_tag=tag,
                              attributes={**dataset.attributes, "face_detected": np.where(found, "yes", "no")})
    if spec.missed == "exclude" and (~found).any():
        if not found.any():
            raise DataError(f"{dataset.name}/{dataset.split}: detector {spec.model} found no face in any of the "
                            f"{len(found)} images, so `missed: exclude` leaves nothing; use `missed: whole_image`.")
        out = out.subset(np.flatnonzero(found))
    log(f"{dataset.name}/{dataset.split}: detector {spec.model} found {summary['detected']} of {summary['n']} faces"
        + (f"; {summary['missed']} missed ({spec.missed})" if summary["missed"] else ""))
    return out, summary
