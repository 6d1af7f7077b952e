"""Facial landmark localisation: NME, FR@t, AUC@t, CED, per-point and per-attribute errors.

Conventions (``shared/spec/landmarks.md``):

* The model's head returns (N, K, 2) points in the engine's input frame (the image, or its crop box, resized
  to ``InputSpec.size`` = (S_h, S_w), 0-based pixel centres); they are mapped back to original pixels with
  align_corners=False arithmetic, x = (x' + 0.5) * W / S_w - 0.5 (likewise y with H / S_h) for the whole
  image, x = x1 + (x' + 0.5) * (x2 - x1) / S_w - 0.5 through a crop box (x1, y1, x2, y2). The crop boxes are
  the image source's own (``FileImages.boxes``: the landmark loaders' ``crop: box | landmarks`` with a
  ``margin``), taken as ``decode_image`` cuts them (rounded, clamped to the image); the frame is recorded.
* Missed detections: the spec's GT-derived fallback box is offered as a frame for every image (the loaders'
  ``crop: landmarks``: the square of side max(w, h) of the ground-truth points about their tight box's centre,
  enlarged by the margin), not per miss: the engine runs a model once per image, so a second pass on the
  misses alone does not fit; ``missed_faces`` below chooses what a miss counts as.
* When the model's landmark scheme differs from the dataset's, points are mapped with
  ``landmark_schemes.map_points`` (group means; ibug68 -> five_point by the spec's rule) and the mapping is
  recorded in every record's conventions.
* NME_i = sum_k v_ik ||P_ik - G_ik|| / (d_i sum_k v_ik); the dataset NME is the plain mean over images, as a
  fraction (not x100). d_i: ``normaliser`` (default by the dataset's scheme: five_point -> eye_centres_5pt,
  ibug68 / wflw98 / cofw29 -> inter_ocular, aflw19 -> box = sqrt(w h) of the dataset's face box).
* FR@t = share of images with NME_i > t (strict); AUC@t = mean(max(0, t - NME_i)) / t (the exact integral of
  the step CED over [0, t], divided by t); CED(x) = share of images with NME_i <= x.
* Missed faces (the model's ``face_detected`` output is 0): ``missed_faces`` = ``failure`` (default: the image
  counts as NME = inf in FR, AUC and the CED; the mean NME is over the detected images), ``whole_image`` (the
  model's points from its whole-canvas fallback are scored like any other) or ``exclude`` (left out of every
  metric and counted). The policy and the detection rate are records.
* CIs: percentile bootstrap over images (``facebench.metrics.bootstrap.bootstrap_sample_means``; NME, FR and
  AUC are each a mean of per-image values).
* Swap check: the NME with the predicted points' left and right swapped (the dataset scheme's mirror pairs); a
  model whose swapped NME is lower is warned about (its points look mirrored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.errors import ConfigError, MetricInputError, did_you_mean
from facebench.metrics import bootstrap as bs
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice
from facebench.records import Requirements

#: The normaliser each dataset scheme is reported with by default (the benchmarks' conventions).
DEFAULT_NORMALISER = {"five_point": "eye_centres_5pt", "ibug68": "inter_ocular", "wflw98": "inter_ocular",
                      "cofw29": "inter_ocular", "aflw19": "box"}
MISSED_FACES = ("failure", "whole_image", "exclude")
BOX = "box"


def _schemes():
    from facebench.data import landmark_schemes

    return landmark_schemes


def _lm():
    from facebench.metrics import landmarks

    return landmarks


def _tag(t: float) -> str:
    """A threshold as written in metric names: 0.1 -> '0.1', 0.08 -> '0.08'."""
    return f"{float(t):g}"


@dataclass
class Scored:
    """Per-image results of one evaluation: the evaluated images' indices into the dataset, their NME
    (inf for a miss counted as failure), the points in original pixels (dataset scheme) and the normaliser."""

    keep: np.ndarray
    nme: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    visible: np.ndarray | None
    d: np.ndarray
    detected: np.ndarray


class LandmarksProtocol(Protocol):
    """Facial landmarks: NME (named normaliser), FR@t, AUC@t, CED, per-point and per-attribute NME, detection rate"""

    name = "landmarks"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        normaliser: str | None = None
        thresholds: list = field(default_factory=lambda: [0.10, 0.08])
        missed_faces: str = choice("failure", MISSED_FACES)
        model_scheme: str | None = None
        attributes: list | None = None
        max_groups: int = 20
        min_group_size: int = 30
        worst_cases: int = 6
        ced_max: float | None = None

    RANGES = {"max_groups": (1, None), "min_group_size": (1, None), "worst_cases": (0, 50), "ced_max": (0, None)}

    def __init__(self, **params):
        super().__init__(**params)
        ts = self.params.thresholds
        if not ts or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1 for t in ts):
            raise ConfigError(f"Protocol 'landmarks': thresholds must be a non-empty list of numbers in (0, 1] "
                              f"(NME as a fraction, e.g. [0.1, 0.08]); got {ts!r}.")

    def requirements(self, task=None) -> Requirements:
        named = tuple(self.params.attributes or ())  # the grouping attributes named (checked by validate)
        return Requirements(head=True, head_name=self.params.head, head_kind="landmarks", labels=False, attributes=bool(named),
                            attribute_names=named)

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, ctx: EvalContext) -> TaskResult:
        ds, lab = ctx.dataset, ctx.dataset.landmarks
        if lab is None:
            raise MetricInputError(f"{ds.name}/{ds.split} has no landmark annotations; the landmarks protocol needs "
                                   f"a landmark dataset (e.g. mtfl)")
        mapping, pred = self._points(ctx, lab)
        norm_name, d = self._normaliser(lab)
        detected = self._detected(ctx)
        scored = self._score(pred, lab, d, detected)
        conv = {"normaliser": norm_name, "missed_faces": self.params.missed_faces, "nme": "mean over images of "
                "sum_k v||P-G|| / (d sum_k v), as a fraction", "coordinates": "original pixels, 0-based",
                **{k: v for k, v in mapping.items() if k != "mapping_groups"}, **_bootstrap_conv(ctx)}
        records = self._headline(ctx, scored, norm_name, conv)
        records += self._detection_record(ctx, detected, conv)
        point_records, per_point = self._per_point(ctx, scored, lab.scheme, norm_name, conv)
        group_records, groups, warnings = self._groups(ctx, scored, norm_name, conv)
        swap, swap_warn = self._swap(scored, lab.scheme)
        details = {"normaliser": norm_name, "dataset_scheme": lab.scheme, **mapping,
                   "missed_faces": self._missed_details(ds, detected, scored),
                   "per_point": per_point, "groups": groups, "swap_check": swap,
                   "ced": self._ced(scored), "worst_cases": self._worst(ds, lab, scored)}
        warnings = swap_warn + self._missed_warning(ds, detected) + warnings
        return TaskResult(records + point_records + group_records, details, warnings)

    # -- inputs ----------------------------------------------------------------------------------------------
    def _model_scheme(self, ctx: EvalContext, k: int) -> str:
        """The model's scheme: ``model_scheme``, else the head's declared scheme, else the scheme whose point
        names are the head's labels, else the only scheme with K points."""
        sch = _schemes()
        explicit = self.params.model_scheme or getattr(ctx, "head_scheme", None)
        if explicit:
            return sch.get_scheme(explicit).name
        labels = tuple(ctx.head_labels)
        named = [s.name for s in sch.SCHEMES.values() if tuple(s.point_names) == labels]
        sized = [s.name for s in sch.SCHEMES.values() if len(s.point_names) == k]
        found = named or sized
        if len(found) != 1:
            raise ConfigError(f"landmarks: cannot tell the model's landmark scheme ({k} points, head labels "
                              f"{labels[:3]}...); set `model_scheme:` in the task params to one of "
                              f"{', '.join(sch.SCHEMES)}")
        return found[0]

    def _points(self, ctx: EvalContext, lab) -> tuple[dict, np.ndarray]:
        """The model's points in original pixels and the dataset's scheme, and the mapping's description."""
        raw = ctx.predictions.outputs.get(ctx.head)
        if raw is None or np.asarray(raw).ndim != 3 or np.asarray(raw).shape[2] != 2:
            got = None if raw is None else np.asarray(raw).shape
            raise MetricInputError(f"landmarks: head {ctx.head!r} must give (N, K, 2) points; got {got}. Use a "
                                   f"landmark model (a head of kind 'landmarks')")
        size = getattr(ctx, "input_size", None)
        if size is None:
            raise MetricInputError("landmarks: the model's input size is unknown (EvalContext.input_size); the "
                                   "points cannot be mapped back to original pixels")
        crops = crop_boxes(ctx.dataset)
        pts = to_original_pixels(np.asarray(raw, dtype=np.float64), lab.image_sizes, size, crops)
        src = self._model_scheme(ctx, pts.shape[1])
        mapping = {"model_scheme": src, "dataset_scheme": lab.scheme, "frame": frame_description(ctx.dataset, crops),
                   "mapping": "identity" if src == lab.scheme else f"map_points({src} -> {lab.scheme}): group means"
                                                                   f" of the model's points per dataset point"}
        if src != lab.scheme:
            pts = np.asarray(_schemes().map_points(pts, src, lab.scheme), dtype=np.float64)
            groups = _schemes().MAPPINGS.get((src, lab.scheme))
            mapping["mapping_groups"] = [list(g) for g in groups] if groups is not None else None
        if pts.shape[1:] != lab.points.shape[1:]:
            raise MetricInputError(f"landmarks: {pts.shape[1]} predicted points for {lab.points.shape[1]} annotated "
                                   f"({lab.scheme})")
        return mapping, pts

    def _normaliser(self, lab) -> tuple[str, np.ndarray]:
        """The normaliser's name and d_i of every image (from the ground truth; an error when 0)."""
        scheme = _schemes().get_scheme(lab.scheme)
        name = self.params.normaliser or DEFAULT_NORMALISER.get(lab.scheme)
        known = [*scheme.normalisers, BOX]
        if name not in known:
            raise ConfigError(f"landmarks: normaliser {name!r} is not defined for scheme {lab.scheme!r}."
                              f"{did_you_mean(str(name), known)} Normalisers: {', '.join(known)}.")
        if name == BOX:
            if lab.boxes is None:
                raise MetricInputError("landmarks: normaliser 'box' needs the dataset's face boxes; this dataset "
                                       "ships none (choose a point normaliser)")
            return name, np.asarray(_lm().box_normalisers(lab.boxes), dtype=np.float64)
        group_a, group_b = scheme.normalisers[name]
        return name, np.asarray(_lm().normaliser_distances(lab.points, group_a, group_b, lab.visible),
                                dtype=np.float64)

    @staticmethod
    def _detected(ctx: EvalContext) -> np.ndarray | None:
        """The model's ``face_detected`` flags (bool, N), or None when the model does not report them."""
        found = ctx.predictions.outputs.get("face_detected")
        return None if found is None else np.asarray(found).reshape(-1) >= 0.5

    def _score(self, pred, lab, d, detected) -> Scored:
        """Per-image NME under the missed-faces policy."""
        n = len(pred)
        hit = np.ones(n, dtype=bool) if detected is None else detected
        policy = self.params.missed_faces
        keep = np.flatnonzero(hit) if policy == "exclude" else np.arange(n)
        vis = None if lab.visible is None else np.asarray(lab.visible, dtype=bool)[keep]
        nme = np.asarray(_lm().per_image_nme(pred[keep], lab.points[keep], d[keep], vis), dtype=np.float64)
        if policy == "failure":
            nme = np.where(hit[keep], nme, np.inf)
        return Scored(keep, nme, pred[keep], lab.points[keep], vis, d[keep], hit[keep])

    # -- records ---------------------------------------------------------------------------------------------
    def _headline(self, ctx: EvalContext, s: Scored, norm: str, conv: dict) -> list[MetricRecord]:
        """NME (finite images), then FR@t and AUC@t per threshold, each with a CI over images."""
        finite = np.isfinite(s.nme)
        if not finite.any():
            raise MetricInputError("landmarks: no image with a detected face to score")
        nme_conv = {**conv, "images": "detected faces only" if not finite.all() else "all evaluated"}
        records = [MetricRecord(f"nme[{norm}]", float(s.nme[finite].mean()), _mean_ci(ctx, s.nme[finite]),
                                int(finite.sum()), nme_conv, headline=True, higher_is_better=False, unit="score")]
        for i, t in enumerate(self.params.thresholds):
            fail = (s.nme > t).astype(np.float64)
            area = np.maximum(0.0, t - s.nme) / t
            fr, auc = fr_auc(s.nme, t)
            records.append(MetricRecord(f"fr@{_tag(t)}[{norm}]", fr, _mean_ci(ctx, fail), len(s.nme),
                                        {**conv, "rule": "share of images with NME > t (strict)", "t": t},
                                        headline=i == 0, higher_is_better=False, unit="fraction"))
            records.append(MetricRecord(f"auc@{_tag(t)}[{norm}]", auc, _mean_ci(ctx, area), len(s.nme),
                                        {**conv, "rule": "exact integral of the step CED on [0, t] / t", "t": t},
                                        headline=i == 0, higher_is_better=True, unit="score"))
        return records

    @staticmethod
    def _detection_record(ctx: EvalContext, detected, conv: dict) -> list[MetricRecord]:
        if detected is None:
            return []
        flags = detected.astype(np.float64)
        rconv = {**conv, "rule": "share of images where the model's face detector found a face"}
        return [MetricRecord("detection_rate", float(flags.mean()), _mean_ci(ctx, flags), len(flags), rconv,
                             headline=True, higher_is_better=True, unit="fraction")]

    def _per_point(self, ctx, s: Scored, scheme_name: str, norm: str, conv: dict) -> tuple[list, list]:
        """Per-point NME (finite images; a point's mean over the images where it is visible), as records and a
        table in the dataset scheme's point order."""
        names = _schemes().get_scheme(scheme_name).point_names
        finite = np.isfinite(s.nme)
        vis = None if s.visible is None else s.visible[finite]
        err = _lm().point_errors(s.pred[finite], s.true[finite]) / s.d[finite, None]
        values = np.asarray(_lm().per_point_nme(s.pred[finite], s.true[finite], s.d[finite], vis), dtype=np.float64)
        records, table = [], []
        for k, name in enumerate(names):
            col = err[:, k] if vis is None else err[vis[:, k], k]
            records.append(MetricRecord(f"nme[{norm},point={name}]", float(values[k]),
                                        _mean_ci(ctx, col) if len(col) else None, int(len(col)), conv,
                                        higher_is_better=False, unit="score"))
            table.append({"point": name, "index": k, "nme": float(values[k]), "n": int(len(col))})
        return records, table

    def _group_columns(self, ds) -> list[str]:
        """The attributes to group by: ``attributes``, else every attribute with 2..max_groups values."""
        if self.params.attributes is not None:
            missing = [a for a in self.params.attributes if a not in ds.attributes]
            if missing:
                raise ConfigError(f"landmarks: {ds.name}/{ds.split} has no attribute {missing[0]!r}."
                                  f"{did_you_mean(str(missing[0]), list(ds.attributes))} "
                                  f"Attributes: {', '.join(ds.attributes) or 'none'}.")
            return list(self.params.attributes)
        return [a for a, v in ds.attributes.items() if 2 <= len(np.unique(np.asarray(v).astype(str)))
                <= self.params.max_groups]

    def _groups(self, ctx, s: Scored, norm: str, conv: dict) -> tuple[list, dict, list]:
        """NME, FR@t1 and AUC@t1 (t1 = the first threshold) per value of each grouping attribute."""
        t = self.params.thresholds[0]
        records, details, warnings = [], {}, []
        for attr in self._group_columns(ctx.dataset):
            values = np.asarray(ctx.dataset.attributes[attr]).astype(str)[s.keep]
            rows = []
            for g in sorted(set(values.tolist())):
                m = values == g
                row, recs = _group_row(ctx, s.nme[m], attr, g, t, norm, conv)
                records += recs
                rows.append(row)
                if m.sum() < self.params.min_group_size:
                    warnings.append(f"{attr}={g}: only {int(m.sum())} images")
            details[attr] = rows
        return records, details, warnings

    # -- details ---------------------------------------------------------------------------------------------
    def _swap(self, s: Scored, scheme_name: str) -> tuple[dict, list]:
        """The left/right swap check on the finite images."""
        scheme = _schemes().get_scheme(scheme_name)
        finite = np.isfinite(s.nme)
        if not scheme.mirror_pairs or not finite.any():
            return {"checked": False}, []
        vis = None if s.visible is None else s.visible[finite]
        res = {"checked": True, **_lm().swap_check(s.pred[finite], s.true[finite], s.d[finite], scheme.mirror_pairs,
                                                   vis).to_dict()}
        warn = []
        if res.get("mirrored"):
            warn.append(f"swap check: the NME with the model's left and right points swapped "
                        f"({res.get('nme_swapped'):.4f}) is below its NME ({res.get('nme'):.4f}); the model's points "
                        f"look mirrored (check its left/right convention against the dataset's)")
        return res, warn

    def _ced(self, s: Scored) -> dict:
        """The exact step CED on [0, ced_max] (default: twice the largest threshold, at most 1) over every
        evaluated image: a miss counted as failure never reaches it (its share of y stays out)."""
        top = min(1.0, self.params.ced_max or 2 * max(self.params.thresholds))
        finite = s.nme[np.isfinite(s.nme)]
        xs, ys = _lm().ced_points(finite, top)
        return {"x": [float(x) for x in xs], "y": [float(y) * len(finite) / len(s.nme) for y in ys],
                "thresholds": [float(t) for t in self.params.thresholds], "drawstyle": "steps-post"}

    def _worst(self, ds, lab, s: Scored) -> list[dict]:
        """The ``worst_cases`` images of highest finite NME: id, NME, predicted and true points, image size."""
        finite = np.flatnonzero(np.isfinite(s.nme))
        order = finite[np.lexsort((ds.ids[s.keep][finite], -s.nme[finite]))][: self.params.worst_cases]
        return [{"id": str(ds.ids[s.keep[i]]), "nme": float(s.nme[i]), "detected": bool(s.detected[i]),
                 "pred": np.round(s.pred[i], 3).tolist(), "true": np.round(s.true[i], 3).tolist(),
                 "image_size": [int(v) for v in lab.image_sizes[s.keep[i]]]} for i in order]

    def _missed_details(self, ds, detected, s: Scored) -> dict:
        if detected is None:
            return {"reported": False, "policy": self.params.missed_faces,
                    "reason": "the model does not report face detection (every image counted detected)"}
        missed = ~detected
        return {"reported": True, "policy": self.params.missed_faces, "images": int(len(detected)),
                "missed": int(missed.sum()), "evaluated": int(len(s.keep)),
                "excluded": int(len(detected) - len(s.keep)), "missed_ids": ds.ids[missed][:50].tolist()}

    def _missed_warning(self, ds, detected) -> list[str]:
        if detected is None or detected.all():
            return []
        what = {"failure": "counted as failures (NME = inf in FR, AUC and CED; left out of the mean NME)",
                "whole_image": "scored with the model's whole-image fallback points",
                "exclude": "left out of every metric"}[self.params.missed_faces]
        return [f"{ds.name}/{ds.split}: no face found in {int((~detected).sum())} of {len(detected)} images; "
                f"{what}"]


def to_original_pixels(points: np.ndarray, image_sizes, input_size, crops=None) -> np.ndarray:
    """(N, K, 2) points of the engine's input frame (the image, or its crop box, resized to ``input_size`` =
    (S_h, S_w), 0-based pixel centres, align_corners=False) in original pixels: x = (x' + 0.5) * W / S_w - 0.5
    for the whole image; x = x1 + (x' + 0.5) * (x2 - x1) / S_w - 0.5 through ``crops`` (N, 4) x1, y1, x2, y2
    (whole pixels, as cut)."""
    if crops is None:
        sizes, offset = np.asarray(image_sizes, dtype=np.float64), np.zeros((len(points), 2))
    else:
        crops = np.asarray(crops, dtype=np.float64)
        sizes, offset = crops[:, 2:] - crops[:, :2], crops[:, :2]
    s_h, s_w = (input_size, input_size) if np.isscalar(input_size) else tuple(input_size)
    scale = np.stack([sizes[:, 0] / float(s_w), sizes[:, 1] / float(s_h)], axis=1)[:, None, :]
    return offset[:, None, :] + (points + 0.5) * scale - 0.5


def crop_boxes(ds) -> np.ndarray | None:
    """The crop box of every image as ``decode_image`` cuts it (the image source's ``boxes`` rounded half to
    even, clamped to [0, W] x [0, H] of ``landmarks.image_sizes``), or None when the images are not cropped."""
    boxes = getattr(ds.images, "boxes", None)
    if boxes is None:
        return None
    out = np.rint(np.asarray(boxes, dtype=np.float64))
    out[:, :2] = np.maximum(out[:, :2], 0)
    out[:, 2:] = np.minimum(out[:, 2:], np.asarray(ds.landmarks.image_sizes, dtype=np.float64))
    if ((out[:, 2:] - out[:, :2]) <= 0).any():
        raise MetricInputError(f"{ds.name}/{ds.split}: a crop box lies outside its image; the points cannot be "
                               f"mapped back (check the loader's crop boxes)")
    return out


def frame_description(ds, crops) -> str:
    """What the model saw, for the records: the whole image, or the loader's crop option and margin."""
    if crops is None:
        return "whole image"
    options = ds.content_tag.get("options", {}) if isinstance(ds.content_tag, dict) else {}
    how = f"crop={options.get('crop', 'box')},margin={options.get('margin', 0)}"
    return f"crop box ({how}): x = x1 + (x' + 0.5)(x2 - x1) / S - 0.5"


def fr_auc(nme: np.ndarray, t: float) -> tuple[float, float]:
    """FR@t and AUC@t of per-image NMEs where inf marks a miss counted as failure: the metrics of the finite
    ones (``facebench.metrics.landmarks``) reweighted to all images (a miss fails and adds no area)."""
    finite = nme[np.isfinite(nme)]
    if not len(finite):
        return 1.0, 0.0
    share = len(finite) / len(nme)
    return (float(_lm().failure_rate(finite, t)) * share + (1.0 - share),
            float(_lm().auc(finite, t)) * share)


def _bootstrap_conv(ctx: EvalContext) -> dict:
    if ctx.n_resamples <= 0:
        return {}
    return {"bootstrap": f"percentile,resamples={ctx.n_resamples},unit=image,seed={ctx.seed}",
            "confidence": ctx.confidence}


def _mean_ci(ctx: EvalContext, values: np.ndarray):
    """Percentile CI of the mean of per-image ``values`` (None without bootstrap or values)."""
    if ctx.n_resamples <= 0 or len(values) == 0:
        return None
    samples = bs.bootstrap_sample_means(np.asarray(values, dtype=np.float64), n_resamples=ctx.n_resamples,
                                        seed=ctx.seed)
    return bs.percentile_interval(samples, ctx.confidence)


def _group_row(ctx, nme: np.ndarray, attr: str, g: str, t: float, norm: str, conv: dict) -> tuple[dict, list]:
    """One group's row (n, NME over finite images, FR@t, AUC@t) and its records."""
    finite = np.isfinite(nme)
    mean = float(nme[finite].mean()) if finite.any() else float("nan")
    fr, auc = fr_auc(nme, t)
    gconv = {**conv, "group": f"{attr}={g}", "t": t}
    records = [MetricRecord(f"nme[{norm},{attr}={g}]", mean, _mean_ci(ctx, nme[finite]), int(finite.sum()), gconv,
                            higher_is_better=False, unit="score"),
               MetricRecord(f"fr@{_tag(t)}[{norm},{attr}={g}]", fr, _mean_ci(ctx, (nme > t).astype(np.float64)),
                            len(nme), gconv, higher_is_better=False, unit="fraction")]
    row = {"group": g, "n": int(len(nme)), "n_finite": int(finite.sum()), "nme": mean if finite.any() else None,
           "fr": fr, "auc": auc}
    return row, records
