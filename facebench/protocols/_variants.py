"""Shared by the robustness protocols (``corruption``, ``resolution``): transformed copies of a task's split as
extra splits, the inner protocol that scores each copy, and verification at thresholds fitted on clean pairs.

Conventions: a variant is the task's own split with the variant's transform after its own (``data.transforms``),
so it keeps the split's ids, labels and pairs and has its own store entry; the inner protocol (``closed_set``,
``verification`` or ``landmarks``) scores a variant through an ``EvalContext`` of the variant's dataset and
predictions, with the task's bootstrap when the protocol's ``variant_cis`` is on (default: each variant's
value gets the inner protocol's CI where it has one) and none otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import verification as vm
from facebench.protocols.base import EvalContext, ExtraSplit, SplitRef

INNERS = ("closed_set", "verification", "landmarks")
#: the inner protocol's headline record scored on each variant, and whether it is an error (lower is better)
INNER_METRIC = {"closed_set": ("accuracy", False), "verification": ("accuracy[10fold,insightface]", False),
                "landmarks": ("nme[", True)}


def make_inner(name: str, params: dict, owner: str):
    """The inner protocol ``name`` built with ``params`` (verification's flip-sum is refused: a variant's
    transform cannot be combined with the mirrored copy it would need)."""
    if name not in INNERS:
        raise ConfigError(f"Protocol {owner!r}: inner must be one of {', '.join(INNERS)}; got {name!r}.")
    if not isinstance(params, dict):
        raise ConfigError(f"Protocol {owner!r}: inner_params must be a mapping; got {params!r}.")
    if name == "closed_set":
        from facebench.protocols.closed_set import ClosedSetProtocol as cls
    elif name == "verification":
        from facebench.protocols.verification import VerificationProtocol as cls
        if params.get("flip", False):
            raise ConfigError(f"Protocol {owner!r}: inner_params.flip: true is not supported (the flip-sum "
                              "needs a mirrored copy of every transformed variant); use flip: false.")
        params = {**params, "flip": False}
    else:
        from facebench.protocols.landmarks import LandmarksProtocol as cls
    try:
        return cls(**params)
    except ConfigError as err:
        raise ConfigError(f"Protocol {owner!r}, inner_params for {name}: {err}") from None


def variant_ref(task, transform: dict, features: bool) -> SplitRef:
    """The task's split with ``transform`` applied after the task's own transforms, if any (the variant of the
    images the task scores; predicted, with features when the inner protocol reads them)."""
    from facebench.data.transforms import followed_by

    args = {**dict(task.dataset_args), "transform": followed_by(task.dataset_args.get("transform"), dict(transform))}
    return SplitRef(task.dataset, task.split, task.path, args, predictions=True, features=features)


def inner_context(ctx: EvalContext, extra: ExtraSplit, bootstrap: bool = False) -> EvalContext:
    """``ctx`` with the variant's dataset and predictions (aligned to its ids), no extras; the bootstrap of
    ``ctx`` when ``bootstrap`` (the variant's CIs), else none."""
    if extra.predictions is None:
        raise MetricInputError(f"{extra.dataset.name}/{extra.dataset.split}: the variant has no predictions")
    return dataclasses.replace(ctx, dataset=extra.dataset, predictions=extra.predictions.align(extra.dataset.ids),
                               extras={}, n_resamples=ctx.n_resamples if bootstrap else 0)


def headline_record(result, inner: str):
    """The inner protocol's scored record in ``result`` (a TaskResult): its value and CI."""
    prefix, _ = INNER_METRIC[inner]
    for rec in result.records:
        if rec.metric == prefix or (prefix.endswith("[") and rec.metric.startswith(prefix) and rec.headline):
            return rec
    raise MetricInputError(f"the {inner} result has no {prefix!r} record")


def headline_value(result, inner: str) -> tuple[str, float]:
    """(record name, value) of the inner protocol's scored metric in ``result`` (a TaskResult)."""
    rec = headline_record(result, inner)
    return rec.metric, float(rec.value)


def embeddings(ctx: EvalContext) -> np.ndarray:
    """L2-normalised features of ``ctx``'s split (no flip-sum)."""
    return vm.l2_normalize(np.asarray(ctx.predictions.outputs["features"], dtype=np.float64))


def pair_arrays(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, same, fold) of a pairs dataset."""
    if ds.pairs is None:
        raise MetricInputError(f"{ds.name}/{ds.split} has no pair list; verification needs a pairs dataset")
    p = ds.pairs
    return p["a"], p["b"], p["same"].astype(bool), p["fold"].astype(int)


def clean_fold_thresholds(clean_dist: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """Per fold id, the insightface squared-L2 threshold fitted on the OTHER folds of the clean pairs."""
    res = vm.insightface_10fold(clean_dist, same, folds)
    return {int(f): float(t) for f, t in zip(np.unique(folds).tolist(), res["thresholds"])}


def accuracy_at_thresholds(dist: np.ndarray, same: np.ndarray, folds: np.ndarray, thresholds: dict) -> float:
    """Mean over folds of the held-out accuracy of ``dist < threshold[fold]`` (thresholds from clean pairs)."""
    accs = []
    for f, t in thresholds.items():
        m = folds == f
        accs.append(float(np.mean((dist[m] < t) == same[m])))
    return float(np.mean(accs))


def tar_at_clean_threshold(clean_cos: np.ndarray, cos: np.ndarray, same: np.ndarray, far: float) -> dict:
    """TAR and FAR of ``cos`` at the cosine threshold fitted on the clean pairs for ``far`` (largest clean FAR
    <= far); an unresolvable target gives None values and the reason."""
    row = vm.tar_at_far(clean_cos, same, [far])[far]
    if not row.get("resolved"):
        return {"tar": None, "far": None, "threshold": None, "reason": row.get("reason")}
    t = row["threshold"]
    return {"tar": float(np.mean(cos[same] >= t)), "far": float(np.mean(cos[~same] >= t)), "threshold": float(t),
            "clean_tar": row["tar"], "clean_far": row["far"]}


def no_face_count(predictions) -> int | None:
    """Images where the model's detector found no face (its ``face_detected`` output < 0.5; the model then
    embedded its fallback), or None for a model that does not report detection."""
    found = predictions.outputs.get("face_detected") if predictions is not None else None
    return None if found is None else int((np.asarray(found).reshape(-1) < 0.5).sum())


def far_tag(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")
