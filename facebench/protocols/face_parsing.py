"""Face parsing: per-class F1 and IoU, mean F1 without background, mIoU, overall F1, from one confusion matrix.

Conventions (``shared/spec/protocols.md`` §8.1; ``facebench.metrics.parsing``):

* **Stored predictions.** The model's head gives an (N, S_h, S_w) integer label map per image in the engine's
  input frame (the whole image resized to ``InputSpec.size``), class ids in the head's label order. The
  protocol maps each map to its ground truth's size by nearest neighbour on pixel centres (output row r reads
  row floor((r + 0.5) S_h / H), the ``nearest-exact`` rule; likewise columns), so a fixed-shape store holds
  every image. For a split read through LaPa's test transform (``align: tanh_warp``) the input frame is the
  warped face instead, and each map comes back to its image through the inverse warp (``WarpFrame``). An adapter whose parsing output is already at each image's own size (Faceptor's
  ``adapter.parsing``) is stored with ``to_input_frame`` (the same rule the other way); when S equals the
  label maps' size (CelebAMask-HQ: 512) both steps are the identity. Results record the frame.
* **Classes.** The head's labels are mapped onto the dataset's classes by name (identity when equal;
  ``class_map: {model name: dataset name}`` for differently named classes); a head class with no dataset class
  is an error. Background is the dataset's class id 0.
* **Metrics.** One confusion matrix over every scored pixel of the split; per-class F1 = 2 TP / (#true +
  #pred) and IoU = TP / (#true + #pred - TP); ``f1_mean`` = mean F1 over the foreground classes (background
  left out: the LaPa / CelebAMask-HQ "F1-mean" of Faceptor, FaRL and DML-CSR, the headline); ``miou`` = mean
  IoU over all classes, background included (as the segmentation papers on CelebAMask-HQ report mIoU), and
  ``miou_fg`` without it; ``overall_f1`` = micro F1 over the foreground classes; ``pixel_accuracy``. A class
  absent from both truth and prediction has no value and leaves the means.
* **CIs.** Percentile bootstrap over images: per-image confusion matrices summed with multinomial weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import parsing as pm
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult
from facebench.records import Requirements

FRAME = ("(N, S_h, S_w) label map in the engine's input frame (whole image resized to the input size), "
         "nearest neighbour on pixel centres to each ground-truth label map's size")


WARP_BACK = ("the label map in the warped frame (resized to the input size) brought back to each image by the "
             "inverse warp, nearest neighbour, background outside the frame")


def nearest_indices(n_out: int, n_in: int) -> np.ndarray:
    """Source index of each of ``n_out`` output pixels when ``n_in`` pixels are resized to ``n_out`` by
    nearest neighbour on pixel centres: floor((i + 0.5) n_in / n_out), clipped to the last pixel."""
    idx = np.floor((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out).astype(np.int64)
    return np.minimum(idx, n_in - 1)


def resize_nearest(label_map: np.ndarray, size) -> np.ndarray:
    """An (H, W) label map resized to ``size`` = (h, w) by nearest neighbour on pixel centres."""
    m = np.asarray(label_map)
    h, w = int(size[0]), int(size[1])
    return m[nearest_indices(h, m.shape[0])[:, None], nearest_indices(w, m.shape[1])[None, :]]


def to_input_frame(label_maps, size) -> np.ndarray:
    """(N, S_h, S_w) uint8 from label maps at each image's own size (a list of (H_i, W_i) integer arrays),
    for the prediction store: each resized by ``resize_nearest`` to ``size`` = (S_h, S_w) (or one int)."""
    s = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    out = np.empty((len(label_maps), *s), dtype=np.uint8)
    for i, m in enumerate(label_maps):
        m = np.asarray(m)
        if m.ndim != 2 or (m.size and (m.min() < 0 or m.max() > 255)):
            raise MetricInputError(f"parsing: label map {i} must be (H, W) with ids in [0, 255], got shape "
                                   f"{m.shape}")
        out[i] = resize_nearest(m, s)
    return out


@dataclass
class Scored:
    """Per-image confusion matrices (N, C, C) int64 and the dataset's class names."""

    per_image: np.ndarray
    classes: tuple


class FaceParsingProtocol(Protocol):
    """Face parsing: per-class F1 and IoU, mean F1 without background (LaPa / CelebAMask-HQ), mIoU, overall F1"""

    name = "face_parsing"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        class_map: dict | None = None
        worst_cases: int = 6

    RANGES = {"worst_cases": (0, 100)}

    def requirements(self, task=None) -> Requirements:
        return Requirements(head=True, head_name=self.params.head, head_kind="parsing", labels=False)

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        ds = ctx.dataset
        lab = getattr(ds, "parsing", None)
        if lab is None:
            raise MetricInputError(f"{ds.name}/{ds.split} has no parsing label maps; the face_parsing protocol "
                                   f"needs a face-parsing dataset (lapa, celebamask-hq)")
        maps = self._maps(ctx)  # the shape first: a classifier's head is told it is not a parsing head
        lut, mapping = self._lut(ctx, lab.classes)
        scored = self._score(ctx, maps, lab, lut)
        conv = {"prediction_frame": FRAME if lab.frame is None else {**lab.frame.describe(), "back": WARP_BACK},
                "class_mapping": mapping, "background": lab.classes[0],
                "confusion": "one histogram over every scored pixel of the split",
                "ignore_index": lab.ignore_index, **_bootstrap_conv(ctx)}
        total = scored.per_image.sum(axis=0)
        samples = self._resamples(ctx, scored)
        records = self._headline(total, samples, len(ds), conv, ctx.confidence)
        class_records, table = self._per_class(total, samples, lab.classes, len(ds), conv, ctx.confidence)
        details = {"classes": list(lab.classes), "class_table": table, "class_mapping": mapping,
                   "prediction_frame": FRAME, "confusion_matrix": total.tolist(),
                   "worst_cases": self._worst(ds.ids, scored)}
        return TaskResult(records + class_records, details, self._warnings(total, lab.classes))

    # -- inputs ----------------------------------------------------------------------------------------------
    def _lut(self, ctx: EvalContext, classes: tuple) -> tuple[np.ndarray, str]:
        """Model id -> dataset id (a lookup table over the head's labels) and how it was built."""
        labels = tuple(ctx.head_labels)
        if labels == tuple(classes):
            return np.arange(len(classes), dtype=np.int64), "identity"
        names = dict(self.params.class_map or {})
        unknown = [k for k in names if k not in labels]
        if unknown:
            raise ConfigError(f"face_parsing: class_map names model classes {unknown} the head does not have "
                              f"(head classes: {', '.join(labels)})")
        target = [names.get(c, c) for c in labels]
        missing = [f"{c} -> {t}" if c != t else c for c, t in zip(labels, target) if t not in classes]
        if missing:
            raise MetricInputError(f"face_parsing: the head's classes {missing} are not classes of the dataset "
                                   f"({', '.join(classes)}); map them with `class_map: {{model name: dataset "
                                   f"name}}` in the task params")
        lut = np.asarray([list(classes).index(t) for t in target], dtype=np.int64)
        renamed = [f"{c}->{t}" for c, t in zip(labels, target) if c != t]
        return lut, "by name" + (f" (class_map: {', '.join(renamed)})" if renamed else "")

    def _maps(self, ctx: EvalContext) -> np.ndarray:
        raw = ctx.predictions.outputs.get(ctx.head)
        arr = None if raw is None else np.asarray(raw)
        if arr is None or arr.ndim != 3 or len(arr) != len(ctx.dataset):
            got = None if arr is None else arr.shape
            raise MetricInputError(f"face_parsing: head {ctx.head!r} must give an (N, S_h, S_w) label map per "
                                   f"image (N = {len(ctx.dataset)}); got {got}. Use a face-parsing model")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.array_equal(arr, np.round(arr)):
                raise MetricInputError(f"face_parsing: head {ctx.head!r} holds non-integer values; it must "
                                       f"store class ids (argmax of the logits), not scores")
            arr = arr.astype(np.int64)
        return arr

    def _score(self, ctx: EvalContext, maps: np.ndarray, lab, lut: np.ndarray) -> Scored:
        """Each image's prediction mapped to its label map's size and to dataset ids, then its confusion."""
        c = len(lab.classes)
        per_image = np.zeros((len(maps), c, c), dtype=np.int64)
        for i in range(len(maps)):
            true = lab.read(i)
            pred = (resize_nearest(maps[i], true.shape) if lab.frame is None else
                    lab.frame.back_to_image(i, maps[i], true.shape)).astype(np.int64)
            if pred.size and (pred.min() < 0 or pred.max() >= len(lut)):
                raise MetricInputError(f"face_parsing: image {ctx.dataset.ids[i]} has predicted ids outside the "
                                       f"head's {len(lut)} classes (max {int(pred.max())})")
            per_image[i] = pm.confusion_matrix(true, lut[pred], c, lab.ignore_index)
        return Scored(per_image, tuple(lab.classes))

    @staticmethod
    def _resamples(ctx: EvalContext, s: Scored) -> np.ndarray | None:
        if ctx.n_resamples <= 0 or not len(s.per_image):
            return None
        return pm.bootstrap_confusions(s.per_image, ctx.n_resamples, ctx.seed)

    # -- records ---------------------------------------------------------------------------------------------
    @staticmethod
    def _headline(total, samples, n: int, conv: dict, confidence: float) -> list[MetricRecord]:
        """f1_mean and miou (headline), miou_fg, overall_f1 and pixel_accuracy, each with its CI."""
        specs = [("f1_mean", lambda m: pm.mean_f1(m, exclude=(0,)), True, "score",
                  "mean F1 over the foreground classes (background left out)"),
                 ("miou", lambda m: pm.mean_iou(m), True, "score", "mean IoU over all classes, background included"),
                 ("miou_fg", lambda m: pm.mean_iou(m, exclude=(0,)), False, "score",
                  "mean IoU over the foreground classes (background left out)"),
                 ("overall_f1", lambda m: pm.overall_f1(m), False, "score",
                  "micro F1 over the foreground classes: 2 sum TP / (sum #true + sum #pred)"),
                 ("pixel_accuracy", pm.pixel_accuracy, False, "fraction", "share of scored pixels labelled right")]
        out = []
        for name, fn, headline, unit, rule in specs:
            ci = None if samples is None else bs.percentile_interval(fn(samples), confidence)
            out.append(MetricRecord(name, float(fn(total)), ci, n, {**conv, "rule": rule}, headline=headline,
                                    higher_is_better=True, unit=unit))
        return out

    @staticmethod
    def _per_class(total, samples, classes, n: int, conv: dict, confidence: float) -> tuple[list, list]:
        """f1[class=X] and iou[class=X] records and the class table (pixels in truth and prediction)."""
        f1, iou = pm.per_class_f1(total), pm.per_class_iou(total)
        f1_s = None if samples is None else pm.per_class_f1(samples)
        iou_s = None if samples is None else pm.per_class_iou(samples)
        records, table = [], []
        for k, name in enumerate(classes):
            for metric, values, draws in (("f1", f1, f1_s), ("iou", iou, iou_s)):
                ci = None if draws is None or np.isnan(values[k]) else bs.percentile_interval(draws[:, k], confidence)
                records.append(MetricRecord(f"{metric}[class={name}]", float(values[k]), ci, n, conv,
                                            higher_is_better=True, unit="score"))
            table.append({"class": name, "id": k, "f1": _num(f1[k]), "iou": _num(iou[k]),
                          "true_pixels": int(total[k].sum()), "predicted_pixels": int(total[:, k].sum())})
        return records, table

    def _worst(self, ids, s: Scored) -> list[dict]:
        """The ``worst_cases`` images of lowest per-image foreground mean F1 (ties by id)."""
        if not self.params.worst_cases or not len(s.per_image):
            return []
        scores = np.asarray(pm.mean_f1(s.per_image, exclude=(0,)), dtype=np.float64)
        scores = np.where(np.isnan(scores), np.inf, scores)
        order = np.lexsort((np.asarray(ids).astype(str), scores))[: self.params.worst_cases]
        return [{"id": str(ids[i]), "f1_mean": _num(scores[i])} for i in order if np.isfinite(scores[i])]

    @staticmethod
    def _warnings(total, classes) -> list[str]:
        absent = [c for k, c in enumerate(classes) if total[k].sum() == 0]
        return [f"classes with no ground-truth pixel in this split (their F1 is 0 when predicted, else no "
                f"value): {', '.join(absent)}"] if absent else []


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _bootstrap_conv(ctx: EvalContext) -> dict:
    if ctx.n_resamples <= 0:
        return {}
    return {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=image,seed={ctx.seed}",
            "confidence": ctx.confidence}
