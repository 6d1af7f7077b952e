"""Low-resolution robustness (spec ``robustness.md`` 2.4, ``lfw_lr@k``): the metric per down-sampled size.

Each size k is an extra split (role ``resolution:<k>``) made by the ``resolution`` transform
(``data.resolution.degrade_resolution``: the loaded face crop's short side down to k px and back to its own size
with Pillow's antialiased bicubic, then the model's usual resize), predicted once into the store, so re-scoring
needs no model. The crop must be larger than every k (e.g. FER2013's 48 px faces: k <= 32).

* ``inner: closed_set``: ``accuracy[<k>px]`` per k, scored by the closed_set protocol's code (with its CI over
  samples when ``variant_cis``, the default), clean accuracy with its CI (``accuracy[clean]``).
* ``inner: verification`` (embeddings L2-normalised, no flip-sum): per mode and k,
  ``probe_only`` (primary; cross-resolution HR-LR: the ``probe_side`` image of each pair, ``first`` by default,
  embedded from the degraded split and the other from the clean split) and ``both`` (LR-LR):
  ``verification_accuracy[<mode>,<k>px]`` (10-fold, insightface squared-L2 convention, thresholds fitted on the
  degraded training folds), ``accuracy_at_clean_threshold[...]`` (each fold at the threshold fitted on the other
  CLEAN folds) and ``tar@far<x>_at_clean_threshold[...]`` (the cosine threshold at FAR <= ``far`` on the clean
  pairs; the FAR it gives on the degraded pairs is in the conventions).

``resolution_below[<series>]``: the largest k whose metric is below ``fraction`` x clean
(``metrics.robustness.metric_threshold_resolution``; with ``interpolate`` the crossing on the line between
sizes), None (``value: null``) when no size falls below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.data.resolution import FILTER, PILLOW_VERSION
from facebench.data.transforms import RESOLUTION
from facebench.errors import ConfigError
from facebench.metrics import robustness as rb
from facebench.metrics import verification as vm
from facebench.protocols import _variants as var
from facebench.protocols.base import EvalContext, MetricRecord, Protocol, TaskResult, choice
from facebench.records import Requirements

ROLE_PREFIX = "resolution:"
MODES = ("probe_only", "both")


def role(size: int) -> str:
    return f"{ROLE_PREFIX}{size}"


class ResolutionProtocol(Protocol):
    """Low-resolution robustness: accuracy (classification) or verification (probe-only and both sides, clean thresholds) per down-sampled size"""

    name = "resolution"
    version = "1"

    @dataclass
    class Params:
        sizes: list = field(default_factory=lambda: [8, 12, 16, 20, 24, 32])
        inner: str = choice("closed_set", ("closed_set", "verification"))
        inner_params: dict = field(default_factory=dict)
        modes: list = field(default_factory=lambda: list(MODES))
        probe_side: str = choice("first", ("first", "second"))
        fraction: float = 0.9
        interpolate: bool = False
        far: float = 1e-3
        variant_cis: bool = True

    RANGES = {"fraction": (0, 1), "far": (0, 1)}

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        if not isinstance(p.sizes, list) or not p.sizes or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in p.sizes) or len(set(p.sizes)) != len(p.sizes):
            raise ConfigError(f"Protocol 'resolution': sizes must be a non-empty list of distinct integers >= 1 "
                              f"(pixels of the short side); got {p.sizes!r}.")
        if not isinstance(p.modes, list) or not p.modes or any(m not in MODES for m in p.modes):
            raise ConfigError(f"Protocol 'resolution': modes must be a non-empty list of {', '.join(MODES)}; "
                              f"got {p.modes!r}.")
        if p.fraction <= 0:
            raise ConfigError(f"Protocol 'resolution': fraction must lie in (0, 1]; got {p.fraction!r}.")
        self.inner = var.make_inner(p.inner, p.inner_params, self.name)

    def requirements(self, task=None) -> Requirements:
        return self.inner.requirements(task)

    def split_needs(self, role_name: str) -> frozenset:
        return self.inner.requirements().capabilities() if role_name.startswith(ROLE_PREFIX) else frozenset()

    def requires(self, task) -> dict:
        features = self.inner.requirements(task).features
        return {role(k): var.variant_ref(task, {"name": RESOLUTION, "size": int(k)}, features)
                for k in self.params.sizes}

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        p = self.params
        clean = self.inner.evaluate(ctx)
        metric, clean_value = var.headline_value(clean, p.inner)
        sizes = sorted(p.sizes, reverse=True)
        cis = {}
        if p.inner == "closed_set":
            recs = [var.headline_record(self.inner.evaluate(var.inner_context(ctx, ctx.extras[role(k)], p.variant_cis)),
                                        p.inner) for k in sizes]
            series, cis = {"accuracy": [float(r.value) for r in recs]}, {"accuracy": [r.ci for r in recs]}
            cleans, extra = {"accuracy": clean_value}, {}
        else:
            series, cleans, extra = self._verification(ctx, sizes, clean_value)
        conv = {"inner": p.inner, "inner_metric": metric, "resampling": f"{FILTER} down and up (Pillow "
                f"{PILLOW_VERSION})", "size": "short side in px after down-sampling"}
        records = self._clean_records(clean, metric, conv, cleans)
        records += self._series_records(series, sizes, conv, len(ctx.dataset), cis)
        below, below_records = self._thresholds(series, cleans, sizes, conv)
        details = {"inner": p.inner, "inner_metric": metric, "sizes": sizes, "clean": cleans, "fraction": p.fraction,
                   "interpolate": p.interpolate, "resolution_below": below, "filter": FILTER,
                   "pillow": PILLOW_VERSION, "primary": next(iter(series)),
                   "curves": {name: {"x": sizes, "y": values} for name, values in series.items()},
                   "clean_details": clean.details, **extra}
        return TaskResult(records + below_records, details, clean.warnings, clean.samples)

    def _verification(self, ctx: EvalContext, sizes: list, clean_value: float) -> tuple[dict, dict, dict]:
        """Per series (mode x metric) the values by size; the clean value of each; the pairing described."""
        p = self.params
        a, b, same, folds = var.pair_arrays(ctx.dataset)
        clean_emb = var.embeddings(ctx)
        clean_dist = _sq_l2(clean_emb[a], clean_emb[b])
        clean_cos = vm.pair_scores(clean_emb[a], clean_emb[b], "cosine")
        thresholds = var.clean_fold_thresholds(clean_dist, same, folds)
        clean_tar = var.tar_at_clean_threshold(clean_cos, clean_cos, same, p.far)
        tag = var.far_tag(p.far)
        series, info = {}, {}
        lows = {k: var.inner_context(ctx, ctx.extras[role(k)]) for k in sizes}
        no_face = {"clean": var.no_face_count(ctx.predictions),
                   **{f"{k}px": var.no_face_count(lows[k].predictions) for k in sizes}}
        for mode in p.modes:
            for k in sizes:
                low = var.embeddings(lows[k])
                ea, eb = pair_embeddings(clean_emb, low, a, b, mode, p.probe_side)
                dist, cos = _sq_l2(ea, eb), vm.pair_scores(ea, eb, "cosine")
                tar = var.tar_at_clean_threshold(clean_cos, cos, same, p.far)
                values = {f"verification_accuracy[{mode}]": vm.insightface_10fold(dist, same, folds)["accuracy_mean"],
                          f"accuracy_at_clean_threshold[{mode}]": var.accuracy_at_thresholds(dist, same, folds,
                                                                                              thresholds),
                          f"tar@far{tag}_at_clean_threshold[{mode}]": tar["tar"]}
                for name, v in values.items():
                    series.setdefault(name, []).append(v)
                info[f"{mode},{k}px"] = {"far_at_clean_threshold": tar["far"], "threshold": tar["threshold"]}
        cleans = {name: (clean_tar["tar"] if name.startswith("tar@") else clean_value) for name in series}
        extra = {"pairing": {"probe_only": f"the {p.probe_side} image of each pair degraded, the other clean",
                             "both": "both images degraded"}, "modes": list(p.modes), "far": p.far,
                 "clean_fold_thresholds_sqL2": thresholds, "clean_tar": clean_tar, "operating_points": info,
                 "no_face_images": no_face if no_face["clean"] is not None else "the model does not report detection"}
        return series, cleans, extra

    def _clean_records(self, clean, metric: str, conv: dict, cleans: dict) -> list:
        rec = next(r for r in clean.records if r.metric == metric)
        out = [MetricRecord(f"{_short(self.params.inner)}[clean]", rec.value, rec.ci, rec.n,
                            {**conv, **rec.conventions}, headline=True, higher_is_better=True, unit=rec.unit)]
        for name, value in cleans.items():
            if name.startswith("tar@"):
                out.append(MetricRecord(f"{name.split('[')[0]}[clean]", value, None, rec.n,
                                        {**conv, "far": self.params.far}, higher_is_better=True, unit="rate"))
                break
        return out

    def _series_records(self, series: dict, sizes: list, conv: dict, n: int, cis: dict) -> list:
        """One record per series and size; ``cis``: per series, the CI of each size where there is one."""
        primary = next(iter(series))
        records = []
        for name, values in series.items():
            base, _, mode = name.partition("[")
            tail = (mode[:-1] + ",") if mode else ""
            for k, v, ci in zip(sizes, values, cis.get(name, [None] * len(sizes))):
                records.append(MetricRecord(f"{base}[{tail}{k}px]", v, ci, n, {**conv, "size_px": k},
                                            headline=name == primary and k == 16, higher_is_better=True,
                                            unit="rate" if base.startswith("tar@") else "fraction"))
        return records

    def _thresholds(self, series: dict, cleans: dict, sizes: list, conv: dict) -> tuple[dict, list]:
        p, primary = self.params, next(iter(series))
        below, records = {}, []
        for name, values in series.items():
            ok = [(k, v) for k, v in zip(sizes, values) if v is not None]
            if cleans[name] is None or not ok:
                below[name] = None
                continue
            below[name] = rb.metric_threshold_resolution([k for k, _ in ok], [v for _, v in ok], cleans[name],
                                                         p.fraction, interpolate=p.interpolate)
            base, _, mode = name.partition("[")
            records.append(MetricRecord(f"resolution_below[{base}{',' + mode[:-1] if mode else ''}]", below[name],
                                        None, None,
                                        {**conv, "rule": f"largest size (px) with metric < {p.fraction:g} x clean"
                                         + (" (interpolated)" if p.interpolate else ""), "clean": cleans[name],
                                         "unit": "px"},
                                        headline=name == primary, higher_is_better=False, unit="count"))
        return below, records


def pair_embeddings(clean: np.ndarray, low: np.ndarray, a: np.ndarray, b: np.ndarray, mode: str,
                    probe_side: str) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings of the pairs' first images, of their second images): ``both`` takes both from the degraded
    split; ``probe_only`` the ``probe_side`` image from the degraded split and the other from the clean one."""
    if mode == "both":
        return low[a], low[b]
    return (low[a], clean[b]) if probe_side == "first" else (clean[a], low[b])


def _sq_l2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum((x - y) ** 2, axis=1)


def _short(inner: str) -> str:
    return "accuracy" if inner == "closed_set" else "verification_accuracy"
