"""Attacks on verification pairs (``spec/robustness.md`` 3.4): each pair's probe perturbed, its partner clean.

Conventions:

* The probe is the **first** image of a pair (RobFR's ``lfw.py``); the reference is the attacking model's
  embedding of the clean second image. Similarity is the cosine of the embeddings.
* Per-sample attacks (``fgsm``, ``pgd``) move each probe towards its pair's goal, as RobFR pairs them:
  **dodging** on genuine pairs (ascend ``-cos(f(x + delta), f(y))``) and **impersonation** on impostor pairs
  (ascend ``+cos``). RobFR's BIM ascends +-MSE between embeddings; cosine is used here (the same ranking of
  normalised embeddings, and the score the verification protocol thresholds). Chunks of ``batch_size``
  pairs from the start, each seeded ``(seed, first pair index)``.
* ``uap``: one perturbation v fitted with SGA on the fit split's pairs of the spec's ``goal`` (dodging: its
  genuine pairs; impersonation: its impostor pairs), then added to the probe of **every** pair of the
  evaluated split, ``clamp(x + v, 0, 1)`` (spec 3.4's facebench decision). DeepFool-UAP needs class
  boundaries and is refused for pairs.
* The stored rows are the model under test's features of the attacked probes, one per pair, with the ids of
  ``facebench.data.attack_spec.pair_ids`` (``pair000000``, ...); the ``adversarial`` protocol reads them against the clean split's
  embeddings of the partners.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from facebench.data.attack_spec import PAIR_FEATURES as FEATURES
from facebench.errors import ConfigError


def check_pairs(dataset, spec: dict) -> None:
    """An attack on embeddings needs a pair list (and SGA for a universal perturbation)."""
    if dataset.pairs is None:
        raise ConfigError(f"{dataset.name}/{dataset.split}: an attack on embeddings perturbs the first image of each "
                          f"pair, but this split has no pair list; use a pairs dataset (lfw, rfw, pairs-csv).")
    if spec["kind"] == "uap" and spec["method"] != "sga":
        raise ConfigError("a universal perturbation for verification pairs is fitted with method: sga (DeepFool-UAP "
                          "crosses class boundaries, which embeddings do not have).")


def image_batches(dataset, spec, indices: np.ndarray, batch_size: int):
    """uint8 (B, C, H, W) batches of the images ``indices`` of ``dataset`` (repeats allowed), in that order."""
    from torch.utils.data import DataLoader, Subset

    from facebench.data.preprocess import PreparedImages

    subset = Subset(PreparedImages(dataset.images, spec), [int(i) for i in indices])
    yield from DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def embed_images(embed_fn: Callable, dataset, spec, indices: np.ndarray, batch_size: int, device) -> torch.Tensor:
    """``embed_fn`` of the clean images ``indices`` (float32, on ``device``)."""
    parts = [embed_fn(batch.to(device).float() / 255.0).float() for batch in
             image_batches(dataset, spec, indices, batch_size)]
    return torch.cat(parts) if parts else torch.zeros((0, 0), device=device)


def pair_goal_loss(embeddings: torch.Tensor, references: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Per pair: ``-cos`` for a genuine pair (dodging), ``+cos`` for an impostor pair (impersonation)."""
    cos = torch.nn.functional.cosine_similarity(embeddings, references.to(embeddings.dtype), dim=1)
    return torch.where(same.to(embeddings.device), -cos, cos)


def target_features(target, x01: torch.Tensor) -> np.ndarray:
    """The model under test's features of float inputs in [0, 1] (no uint8 rounding)."""
    from facebench.pipeline.attack_stage import normalised

    out = target.predict(normalised(x01, target.input_spec), heads=(), features=True)
    return out[FEATURES].detach().float().cpu().numpy()


def attack_pairs(spec: dict, model, target, dataset, device, v: torch.Tensor | None = None,
                 done: Callable[[int], None] = lambda n: None) -> dict:
    """``{"features": (n_pairs, D)}``: the target's embeddings of every pair's attacked probe. ``v`` given: the
    universal perturbation added to each probe; else fgsm / pgd on ``model`` towards each pair's goal.
    ``done(n)`` after each chunk of ``n`` pairs (progress)."""
    from facebench.engine.attacks import adapter_function, fgsm, pgd
    from facebench.engine.transfer import frame_batches, to_frame, transferred

    a, b = dataset.pairs["a"], dataset.pairs["b"]
    same = torch.from_numpy(dataset.pairs["same"].astype(bool))
    batch_size, source, frame = spec["batch_size"], model.input_spec, target.input_spec
    refs = None
    if v is not None:
        v, source = to_frame(v, source, frame, spec["norm"]), frame  # the universal v, in the target's frame
    elif spec["eps"] > 0:
        embed_fn = adapter_function(model, features=True, attack_name=f"the {spec['kind']} attack")
        refs = embed_images(embed_fn, dataset, source, b, batch_size, device)
    parts, start = [], 0
    for us, ut in frame_batches(dataset, source, frame, batch_size, indices=a):
        xs = us.to(device).float() / 255.0
        xt = xs if ut is us else ut.to(device).float() / 255.0
        stop = start + len(us)
        if v is not None:
            x_adv = (xt + v).clamp(0.0, 1.0)
        elif refs is None:
            x_adv = xt
        else:
            ref, goal = refs[start:stop], same[start:stop]
            objective = lambda x, ref=ref, goal=goal: pair_goal_loss(embed_fn(x), ref, goal)  # noqa: E731
            if spec["kind"] == "fgsm":
                adv = fgsm(objective, xs, eps=spec["eps"], norm=spec["norm"])
            else:
                seed = int(np.random.SeedSequence([spec["seed"], start]).generate_state(1)[0])
                adv = pgd(objective, xs, norm=spec["norm"], eps=spec["eps"], alpha=spec["step_size"],
                          steps=spec["steps"], random_start=spec["random_start"], seed=seed)
            x_adv = transferred(adv.detach(), xs, xt, source, frame, spec["norm"])
        parts.append(target_features(target, x_adv.detach()))
        start = stop
        done(len(us))
    return {FEATURES: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)}


def fit_pairs_uap(spec: dict, model, fit, device, log: Callable[[str], None]):
    """SGA on ``model``'s embeddings: the fit split's pairs of the spec's goal (dodging: genuine, impersonation:
    impostor), probes perturbed towards the goal against their clean partners. Returns a ``UAPResult``."""
    from facebench.engine.attacks import adapter_function
    from facebench.engine.uap import reference_objective, sga_uap

    check_pairs(fit, spec)
    goal = spec["goal"]
    keep = fit.pairs["same"].astype(bool) == (goal == "dodging")
    if not keep.any():
        raise ConfigError(f"the uap fit split {fit.name}/{fit.split} has no {'genuine' if goal == 'dodging' else 'impostor'} "
                          f"pairs to fit a {goal} perturbation on.")
    a, b = fit.pairs["a"][keep], fit.pairs["b"][keep]
    embed_fn = adapter_function(model, features=True, attack_name=f"the uap attack ({spec['method']})")
    refs = embed_images(embed_fn, fit, model.input_spec, b, spec["batch_size"], device)
    X = torch.cat(list(image_batches(fit, model.input_spec, a, 256))).to(device)
    log(f"fitting a universal {goal} perturbation (sga, eps {spec['eps']:.5g}) on {len(a)} pairs of "
        f"{fit.name}/{fit.split}")
    return sga_uap(reference_objective(embed_fn, refs, goal), X, eps=spec["eps"], epochs=spec["epochs"],
                   batch_size=spec["sga_batch_size"], minibatch=spec["minibatch"], inner_iters=spec["inner_iters"],
                   step_decay=spec["step_decay"], max_iterations=spec["max_iterations"],
                   progress=lambda entry: log(f"  uap sga ({goal}): {entry}"), seed=spec["seed"])
