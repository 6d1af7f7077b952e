"""Facial-landmark metrics (pure NumPy, float64) as ``shared/spec/landmarks.md`` fixes them.

Inputs are explicit arrays: predictions P and ground truth G of shape (N, K, 2) in original-image pixels,
an optional (N, K) bool visibility mask v (None = every point visible; a point that is not visible has no
usable ground truth and is left out of every sum), and per-image normalising distances d (N,). This module
knows no landmark scheme: callers pass the index groups of a normaliser (``landmark_schemes`` holds them).

* Per-image NME_i = sum_k v_ik ||P_ik - G_ik|| / (d_i sum_k v_ik); the dataset NME is the plain mean of
  NME_i over images (not pooled over points), as a FRACTION (0.0512, not 5.12 %).
* Per-point NME_k = mean over the images where point k is visible of ||P_ik - G_ik|| / d_i.
* FR@t = fraction of images with NME_i > t (strict). CED(x) = fraction with NME_i <= x.
* AUC@t = (1/t) * integral_0^t CED(x) dx, computed exactly: mean_i max(0, t - NME_i) / t.
* A normaliser of 0 (or not finite), or one with a group of no visible point (fewer than 2 visible
  normaliser points), is a MetricInputError naming the image, never a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import MetricInputError

from ._validation import as_array, as_float64, check_positive_real, check_values
from .bootstrap import ConfidenceInterval, bootstrap_sample_means

__all__ = [
    "point_errors", "normaliser_distances", "box_normalisers", "per_image_nme", "mean_nme", "per_point_nme",
    "failure_rate", "auc", "ced_points", "SwapCheck", "swap_check", "bootstrap_cis",
]

#: Thresholds of the spec: WFLW's FR@0.1 / AUC@0.1 and the 300-W papers' AUC@0.08.
DEFAULT_THRESHOLDS = (0.10, 0.08)


def _images(indices, limit: int = 5) -> str:
    idx = [int(i) for i in np.asarray(indices).ravel()]
    shown = ", ".join(str(i) for i in idx[:limit])
    return f"image {shown}" if len(idx) == 1 else f"{len(idx)} images (first: {shown})"


def _points(x, name: str) -> np.ndarray:
    arr = as_float64(as_array(x, name), name)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MetricInputError(f"{name} must be a non-empty (N, K, 2) array of (x, y) points; got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        raise MetricInputError(f"{name} has NaN or inf at {_images(np.flatnonzero(bad))} (0-based); "
                               "points must be finite (map missing detections to a fallback first)")
    return arr


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = _points(pred, "pred"), _points(gt, "gt")
    if p.shape != g.shape:
        raise MetricInputError(f"pred {p.shape} and gt {g.shape} must have the same (N, K, 2) shape")
    return p, g


def _visible(visible, shape: tuple[int, int]) -> np.ndarray:
    if visible is None:
        return np.ones(shape, dtype=bool)
    v = as_array(visible, "visible")
    if v.shape != shape:
        raise MetricInputError(f"visible must be an (N, K) = {shape} bool mask; got shape {v.shape}")
    if v.dtype != np.bool_:
        if not np.isin(v, (0, 1)).all():
            raise MetricInputError("visible must hold True/False (or 0/1) per point")
        v = v.astype(bool)
    return v


def _norms(norm, n: int) -> np.ndarray:
    d = as_float64(as_array(norm, "norm"), "norm").ravel()
    if d.size != n:
        raise MetricInputError(f"norm has {d.size} value(s); need one normalising distance per image ({n})")
    bad = ~(np.isfinite(d) & (d > 0))
    if bad.any():
        raise MetricInputError(f"normaliser is 0, negative or not finite at {_images(np.flatnonzero(bad))} "
                               "(0-based); check that image's ground truth (coincident normaliser points?)")
    return d


def point_errors(pred, gt) -> np.ndarray:
    """(N, K) Euclidean distances ||P_ik - G_ik|| in pixels."""
    p, g = _pair(pred, gt)
    return np.hypot(*(p - g).transpose(2, 0, 1))


def _group_means(g: np.ndarray, v: np.ndarray, group, label: str) -> np.ndarray:
    idx = np.asarray(group, dtype=np.int64).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= g.shape[1]:
        raise MetricInputError(f"normaliser group {label} must be non-empty indices in 0..{g.shape[1] - 1}; "
                               f"got {list(np.asarray(group).ravel())}")
    w = v[:, idx].astype(np.float64)
    count = w.sum(axis=1)
    empty = count == 0
    if empty.any():
        raise MetricInputError(f"fewer than 2 visible normaliser points at {_images(np.flatnonzero(empty))} "
                               f"(0-based): no point of group {label} {idx.tolist()} is visible; "
                               "use another normaliser (e.g. the box) or leave these images out")
    return (g[:, idx] * w[..., None]).sum(axis=1) / count[:, None]


def normaliser_distances(gt, group_a, group_b, visible=None) -> np.ndarray:
    """(N,) d_i = ||mean(G_i[group_a]) - mean(G_i[group_b])||, each mean over the group's visible points.

    ``((36,), (45,))`` is iBUG-68's outer-corner inter-ocular distance; ``(range(36, 42), range(42, 48))`` its
    inter-pupil distance. MetricInputError naming the image for a group without a visible point or d_i = 0."""
    g = _points(gt, "gt")
    v = _visible(visible, g.shape[:2])
    a, b = _group_means(g, v, group_a, "a"), _group_means(g, v, group_b, "b")
    d = np.hypot(*(a - b).T)
    _norms(d, g.shape[0])
    return d


def box_normalisers(boxes) -> np.ndarray:
    """(N,) sqrt(w * h) of (N, 4) ground-truth face boxes (x1, y1, x2, y2): w = x2 - x1, h = y2 - y1 (the
    HRNet / mmpose AFLW-19 ``box_size``; not the box width that some papers use)."""
    b = as_float64(as_array(boxes, "boxes"), "boxes")
    if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
        raise MetricInputError(f"boxes must be a non-empty (N, 4) array of (x1, y1, x2, y2); got shape {b.shape}")
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    bad = ~(np.isfinite(b).all(axis=1) & (w > 0) & (h > 0))
    if bad.any():
        raise MetricInputError(f"empty or non-finite face box (x2 <= x1 or y2 <= y1) at "
                               f"{_images(np.flatnonzero(bad))} (0-based); the box normaliser needs a real box")
    return np.sqrt(w * h)


def per_image_nme(pred, gt, norm, visible=None) -> np.ndarray:
    """(N,) NME_i = sum_k v_ik ||P_ik - G_ik|| / (d_i sum_k v_ik), a fraction of the normaliser ``norm`` (N,)."""
    err = point_errors(pred, gt)
    v = _visible(visible, err.shape)
    d = _norms(norm, err.shape[0])
    count = v.sum(axis=1)
    if (count == 0).any():
        raise MetricInputError(f"no visible point at {_images(np.flatnonzero(count == 0))} (0-based); "
                               "leave such images out before computing the NME")
    return np.where(v, err, 0.0).sum(axis=1) / (d * count)


def mean_nme(nme) -> float:
    """Dataset NME: the plain mean of the per-image NME (a fraction)."""
    return float(_nme_vector(nme).mean())


def per_point_nme(pred, gt, norm, visible=None) -> np.ndarray:
    """(K,) NME_k = mean over images with point k visible of ||P_ik - G_ik|| / d_i; NaN for a point that is
    visible in no image."""
    err = point_errors(pred, gt)
    v = _visible(visible, err.shape)
    d = _norms(norm, err.shape[0])
    count = v.sum(axis=0)
    total = np.where(v, err / d[:, None], 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nme_vector(nme) -> np.ndarray:
    arr = check_values(nme, "nme", allow_inf=False)
    if (arr < 0).any():
        raise MetricInputError(f"nme holds a negative value at index {int(np.flatnonzero(arr < 0)[0])}; "
                               "per-image NMEs are distances over a positive normaliser")
    return arr


def _threshold(t) -> float:
    t = check_positive_real(t, "threshold", " (an NME threshold as a fraction, e.g. 0.1 not 10)")
    if t > 1:
        raise MetricInputError(f"threshold {t:g} is above 1; NME thresholds are fractions (0.1, not 10)")
    return t


def failure_rate(nme, threshold: float = 0.10) -> float:
    """FR@t = fraction of images with NME_i > t (strict: NME_i == t is not a failure)."""
    return float(np.mean(_nme_vector(nme) > _threshold(threshold)))


def auc(nme, threshold: float = 0.10) -> float:
    """AUC@t = (1/t) * integral_0^t CED(x) dx, exact for the step CED: mean_i max(0, t - NME_i) / t."""
    t = _threshold(threshold)
    return float(np.mean(np.maximum(0.0, t - _nme_vector(nme))) / t)


def ced_points(nme, threshold: float = 0.10) -> tuple[np.ndarray, np.ndarray]:
    """The step CED on [0, t]: x = 0, every distinct NME_i below t, and t; y = CED(x) = fraction of
    NME_i <= x. Draw it as a step that holds each y until the next x (``where="post"``); the area under
    that step over [0, t], divided by t, is :func:`auc`."""
    t = _threshold(threshold)
    v = np.sort(_nme_vector(nme))
    xs = np.unique(np.concatenate([[0.0], v[v < t], [t]]))
    ys = np.searchsorted(v, xs, side="right") / v.size
    return xs, ys


@dataclass(frozen=True)
class SwapCheck:
    """NME of the predictions as they are and with every left/right mirror pair swapped.

    ``mirrored`` (swapped NME lower than plain NME) is a warning: the model's points are probably
    labelled from the viewer's side, or the wrong scheme was declared. ``images_lower`` is the fraction of
    images whose swapped NME is lower."""

    nme: float
    nme_swapped: float
    images_lower: float

    @property
    def mirrored(self) -> bool:
        return self.nme_swapped < self.nme

    def to_dict(self) -> dict:
        return {"nme": self.nme, "nme_swapped": self.nme_swapped, "images_lower": self.images_lower,
                "mirrored": self.mirrored}


def _swap_permutation(mirror_pairs, k: int) -> np.ndarray:
    perm = np.arange(k)
    pairs = np.asarray(mirror_pairs, dtype=np.int64).reshape(-1, 2)
    flat = pairs.ravel()
    if pairs.size == 0 or flat.min() < 0 or flat.max() >= k or np.unique(flat).size != flat.size:
        raise MetricInputError(f"mirror_pairs must be non-empty (right, left) pairs of distinct indices in "
                               f"0..{k - 1}; got {np.asarray(mirror_pairs).tolist()}")
    perm[pairs[:, 0]], perm[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    return perm


def swap_check(pred, gt, norm, mirror_pairs, visible=None) -> SwapCheck:
    """Compare the NME of ``pred`` with that of ``pred`` with each (right, left) pair's labels exchanged
    (the point positions stay; only which label each carries swaps)."""
    p, g = _pair(pred, gt)
    perm = _swap_permutation(mirror_pairs, p.shape[1])
    plain = per_image_nme(p, g, norm, visible)
    swapped = per_image_nme(p[:, perm], g, norm, visible)
    return SwapCheck(float(plain.mean()), float(swapped.mean()), float(np.mean(swapped < plain)))


def bootstrap_cis(nme, thresholds=DEFAULT_THRESHOLDS, n_resamples: int = 1000, seed: int = 0,
                  confidence: float = 0.95, clusters=None) -> dict[str, ConfidenceInterval]:
    """Percentile bootstrap CIs over images of NME (key ``"nme"``), FR@t and AUC@t (keys ``"fr@0.1"``,
    ``"auc@0.08"``: ``f"{name}@{t:g}"``). Each is a mean of per-image values (NME_i, [NME_i > t],
    max(0, t - NME_i) / t), resampled by :func:`bootstrap_sample_means` (``clusters``: e.g. subject ids)."""
    v = _nme_vector(nme)
    per_image = {"nme": v}
    for t in thresholds:
        t = _threshold(t)
        per_image[f"fr@{t:g}"] = (v > t).astype(np.float64)
        per_image[f"auc@{t:g}"] = np.maximum(0.0, t - v) / t
    unit = "sample" if clusters is None else "cluster"
    return {key: ConfidenceInterval.from_samples(
                bootstrap_sample_means(vals, n_resamples=n_resamples, seed=seed, clusters=clusters),
                confidence=confidence, unit=unit)
            for key, vals in per_image.items()}
