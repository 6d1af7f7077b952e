"""The ``attack`` dataset argument: an adversarially perturbed variant of a split, made in the execute step.

A suite (or the ``adversarial`` protocol's ``requires``) names an attacked split as::

    dataset_args: {attack: {kind: pgd, norm: linf, eps: 0.00784313725490196, steps: 10}}
    dataset_args: {attack: {kind: uap, method: sga, eps: "10/255", fit: {dataset: fer2013, split: train}}}

Conventions:

* Budgets are in [0, 1] pixel units of the attacked model's input frame (the engine's resized uint8 batch
  divided by 255); ``eps`` and ``step_size`` may be written ``"k/255"``. Adversarial inputs stay float: they
  are never quantised to uint8 before the model sees them (a PNG of them would differ by up to 0.5/255).
* ``pgd`` (torchattacks' defaults, spec 3.5): L-inf 10 steps, L2 40 steps; ``step_size`` defaults to
  eps/4 (L-inf: 2/255 at 8/255) or eps/5 (L2: 0.2 at 1.0); ``random_start`` on. ``fgsm``: one step of ``eps``.
  ``labels: true`` ascends the cross-entropy of the ground truth (samples whose class the head lacks use
  the clean prediction); ``labels: predicted`` that of the clean prediction. Random starts are drawn per
  chunk of ``batch_size`` samples (a fixed part of the spec, so results do not depend on the engine's batch).
  On verification pairs the probe of each pair is attacked towards its pair's goal (genuine: dodging,
  impostor: impersonation) and ``labels`` plays no part.
* ``uap``: one perturbation fitted on the ``fit`` split (``limit``: a seeded random subset of that many
  samples) with ``method: sga`` (L-inf, label-free clamped CE; one outer update of ``eps * step_decay`` per
  ``sga_batch_size`` faces, 250 as in the reference, so a small fit set needs a smaller batch or more epochs to
  reach eps) or ``deepfool`` (L-inf or L2), then added to every sample of the attacked split, ``clamp(x + v, 0, 1)``.
  On verification pairs (``facebench.pipeline.attack_pairs``) ``goal`` (``dodging``, default, or
  ``impersonation``) picks the fit split's pairs it is fitted on (genuine or impostor); classification ignores it.
* ``rows``: ``samples`` (default: the attacked head's outputs per sample) or ``pairs`` (verification: the
  features of each pair's attacked first image, ``facebench.pipeline.attack_pairs``).
* ``surrogate: MODEL`` or ``{model, args}``: the perturbation is computed on that model (transfer) and the
  model under test only predicts; the surrogate must be differentiable and crop the face as the model under test
  does; its perturbation is carried to the other model's frame (size, channels, colour order:
  ``facebench.engine.transfer``).

The normalised spec (every default filled in) enters the attacked split's content tag, so its predictions
have their own prediction-store entry (``facebench.pipeline.attack_stage``).
"""

from __future__ import annotations

import math
import re

import numpy as np

from facebench.errors import ConfigError, did_you_mean
from facebench.records import SplitRef

KINDS = ("fgsm", "pgd", "uap")
NORMS = ("linf", "l2")
UAP_METHODS = ("sga", "deepfool")
GOALS = ("dodging", "impersonation")
LABELS = ("true", "predicted")
_COMMON = ("kind", "eps", "norm", "seed", "surrogate", "batch_size", "rows")
ROWS = ("samples", "pairs")
_KEYS = {
    "fgsm": _COMMON + ("labels",),
    "pgd": _COMMON + ("labels", "steps", "step_size", "random_start"),
    "uap": _COMMON + ("method", "fit", "epochs", "sga_batch_size", "minibatch", "inner_iters", "step_decay", "beta",
                      "loss", "delta", "max_passes", "overshoot", "max_iter_df", "num_classes", "max_iterations", "goal"),
}
_FIT_KEYS = ("dataset", "split", "path", "dataset_args", "limit")
_FRACTION = re.compile(r"\s*([0-9.]+)\s*/\s*255\s*")
# SGA's defaults (spec 3.3: liuxuannan's gen_sga.sh / uap_sga) and DeepFool-UAP's (spec 3.2: LTS4)
_UAP_DEFAULTS = {"epochs": 20, "sga_batch_size": 250, "minibatch": 10, "inner_iters": 4, "step_decay": 0.1,
                 "beta": 9.0, "loss": "clamped_ce", "delta": 0.2, "max_passes": 10, "overshoot": 0.02, "max_iter_df": 10,
                 "num_classes": 10, "max_iterations": None}


def budget(value, what: str) -> float:
    """A budget in [0, 1] pixel units: a number, or ``"k/255"``; ConfigError otherwise."""
    if isinstance(value, str):
        match = _FRACTION.fullmatch(value)
        if match is None:
            raise ConfigError(f"{what} must be a number in [0, 1] pixel units or 'k/255' (e.g. '8/255'), got {value!r}.")
        value = float(match.group(1)) / 255.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a finite number >= 0 in [0, 1] pixel units (e.g. 8/255 = 0.0314), "
                          f"got {value!r}.")
    return float(value)


def _int(spec: dict, key: str, default, low: int = 1):
    value = spec.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"attack {key} must be an integer >= {low}, got {value!r}.")
    return value


def _choice(spec: dict, key: str, choices: tuple, default: str) -> str:
    value = spec.get(key, default)
    if value not in choices:
        raise ConfigError(f"attack {key} must be one of {', '.join(choices)}, got {value!r}.{did_you_mean(value, choices)}")
    return value


def _surrogate(value) -> dict | None:
    if value is None:
        return None
    spec = {"model": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else None
    if spec is None or not isinstance(spec.get("model"), str) or set(spec) - {"model", "args"} \
            or not isinstance(spec.get("args", {}) or {}, dict):
        raise ConfigError(f"attack surrogate must be a model name or {{model: NAME, args: {{...}}}}, got {value!r}.")
    return {"model": spec["model"], "args": dict(spec.get("args") or {})}


def _fit(value) -> dict:
    if isinstance(value, str):
        value = {"split": value}
    if not isinstance(value, dict) or "dataset" not in value or "split" not in value:
        raise ConfigError(f"a uap attack needs fit: {{dataset, split[, path, dataset_args, limit]}} (the split the "
                          f"perturbation is fitted on), got {value!r}.")
    unknown = sorted(set(value) - set(_FIT_KEYS))
    if unknown:
        raise ConfigError(f"attack fit has no key {unknown[0]!r}.{did_you_mean(unknown[0], _FIT_KEYS)} "
                          f"Keys: {', '.join(_FIT_KEYS)}.")
    args = value.get("dataset_args") or {}
    if not isinstance(args, dict) or "attack" in args:
        raise ConfigError(f"attack fit dataset_args must be a mapping without an attack, got {args!r}.")
    limit = _int(value, "limit", None)
    return {"dataset": str(value["dataset"]), "split": str(value["split"]), "path": value.get("path"),
            "dataset_args": dict(args), "limit": limit}


def _per_sample(spec: dict, kind: str) -> dict:
    norm = _choice(spec, "norm", NORMS, "linf")
    eps = budget(spec.get("eps", 8 / 255 if norm == "linf" else 1.0), "attack eps")
    out = {"norm": norm, "eps": eps, "labels": _choice(spec, "labels", LABELS, "true")}
    if kind == "pgd":
        step = spec.get("step_size")
        out["step_size"] = budget(step, "attack step_size") if step is not None else eps / (4 if norm == "linf" else 5)
        out["steps"] = _int(spec, "steps", 10 if norm == "linf" else 40)
        out["random_start"] = spec.get("random_start", True)
        if not isinstance(out["random_start"], bool):
            raise ConfigError(f"attack random_start must be true or false, got {out['random_start']!r}.")
        if out["step_size"] <= 0 and eps > 0:
            raise ConfigError("attack step_size must be > 0.")
    return out


def _universal(spec: dict) -> dict:
    method = _choice(spec, "method", UAP_METHODS, "sga")
    norm = _choice(spec, "norm", NORMS if method == "deepfool" else ("linf",), "linf")
    eps = budget(spec.get("eps", 10 / 255), "attack eps")
    if eps <= 0:
        raise ConfigError("a uap attack needs eps > 0 (the perturbation's budget).")
    out = {"method": method, "norm": norm, "eps": eps, "fit": _fit(spec.get("fit")),
           "goal": _choice(spec, "goal", GOALS, "dodging")}
    sga = ("epochs", "sga_batch_size", "minibatch", "inner_iters", "step_decay", "beta", "loss")
    deepfool = ("delta", "max_passes", "overshoot", "max_iter_df", "num_classes")
    keys, other = (sga, deepfool) if method == "sga" else (deepfool, sga)
    misplaced = sorted(set(spec) & set(other))
    if misplaced:
        raise ConfigError(f"{misplaced[0]} is an option of the other uap method; method {method} takes "
                          f"{', '.join(keys)}.")
    for key in keys + ("max_iterations",):
        default = _UAP_DEFAULTS[key]
        if isinstance(default, int) or key == "max_iterations":
            out[key] = _int(spec, key, default)
        elif isinstance(default, float):
            value = spec.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ConfigError(f"attack {key} must be a number >= 0, got {value!r}.")
            out[key] = float(value)
        else:
            out[key] = _choice(spec, key, ("clamped_ce", "logit"), default)
    return out


def parse_attack(value) -> dict:
    """``{kind, ...}`` -> the normalised attack spec (every default filled in); a ConfigError that names the
    key and what it takes for anything else."""
    if not isinstance(value, dict) or value.get("kind") not in KINDS:
        kind = value.get("kind") if isinstance(value, dict) else None
        raise ConfigError(f"attack must be a mapping with kind: {' | '.join(KINDS)}, got {value!r}."
                          f"{did_you_mean(kind, KINDS) if isinstance(kind, str) else ''}")
    kind = value["kind"]
    unknown = sorted(set(value) - set(_KEYS[kind]))
    if unknown:
        raise ConfigError(f"a {kind} attack has no option {unknown[0]!r}.{did_you_mean(unknown[0], _KEYS[kind])} "
                          f"Options: {', '.join(_KEYS[kind])}.")
    out = {"kind": kind, **(_universal(value) if kind == "uap" else _per_sample(value, kind))}
    seed = value.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"attack seed must be an integer >= 0, got {seed!r}.")
    out.update(seed=seed, batch_size=_int(value, "batch_size", 128), surrogate=_surrogate(value.get("surrogate")),
               rows=_choice(value, "rows", ROWS, "samples"))
    return out


#: the output stored for an attack on verification pairs: the features of each pair's attacked probe
PAIR_FEATURES = "features"


def pair_ids(dataset) -> np.ndarray:
    """The row ids of an attack on ``dataset``'s pairs, one per pair in pair order: ``pair000000``, ..."""
    return np.array([f"pair{k:06d}" for k in range(len(dataset.pairs["a"]))])


def fit_ref(spec: dict) -> SplitRef | None:
    """The split a uap attack is fitted on (labels and pixels only, no predictions), else None."""
    fit = spec.get("fit") if spec.get("kind") == "uap" else None
    if fit is None:
        return None
    return SplitRef(fit["dataset"], fit["split"], fit["path"], dict(fit["dataset_args"]), predictions=False)
