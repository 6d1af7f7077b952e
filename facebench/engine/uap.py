"""Universal adversarial perturbations: one perturbation v (C, H, W) fitted on a set of inputs.

Conventions (``spec/robustness.md`` sections 3.1-3.4, 3.6 and 4.4):

* Inputs ``X`` are (N, C, H, W): float in [0, 1], or uint8 pixels (divided by 255 per batch, which keeps a
  large fit set small in memory). v is in [0, 1] units; it is applied as ``clamp(x + v, 0, 1)``
  (:func:`apply_perturbation`, broadcast, so a smaller last batch needs nothing special).
* :func:`deepfool_uap` is Moosavi-Dezfooli et al. (CVPR 2017) as in LTS4/universal's
  ``universal_pert.py``: passes over the shuffled fit set; for each sample not yet fooled by v, DeepFool
  (top ``num_classes`` classes, ``overshoot``, ``max_iter_df``) on ``x + v``; when DeepFool converged
  (``iterations < max_iter_df - 1``), ``v = proj(v + dr)``; stop when the fooling rate on the fit set
  reaches ``1 - delta`` or after ``max_passes``. Defaults: xi 10/255 (10 on [0, 255]), p inf, delta 0.2,
  10 passes (the MATLAB code's cap), overshoot 0.02, max_iter_df 10, num_classes 10. For p = 2 the default
  xi is the paper's 2000 on 224x224x3 [0, 255] pixels at the same per-element RMS for the input's size.
* Projections (:func:`proj_lp`): L-inf ``sign(v) * min(|v|, xi)``; L2 ``v * min(1, xi / ||v||_2)``. With
  ``reference_projection=True`` the L2 branch reproduces LTS4's ``proj_lp``, which rescales v onto the
  sphere ``v / ||v||_2 * xi`` even when it is inside (a bug kept for comparison only).
* :func:`sga_uap` is Stochastic Gradient Aggregation (Liu et al., ICCV 2023; liuxuannan's ``uap_sga``),
  L-inf: per outer batch of n samples, ``max(1, K * n // m)`` inner steps on random minibatches of
  ``m = min(minibatch, n)`` samples drawn from that batch without replacement, each
  ``v_inner = clamp(v_inner + step * sign(g), -eps, eps)``; then ``v = clamp(v + step * sign(mean(g)), -eps, eps)``
  over the inner gradients. ``step = eps * step_decay`` (:func:`sga_step_size`), constant across epochs
  as in the reference. Defaults: eps 10/255, beta 9, step_decay 0.1, minibatch 10, K 4, batch 250,
  20 epochs, momentum off. The loss is an :data:`IndexedObjective`; :func:`clean_label_objective` gives
  SGA's (clamped CE of the model's **clean predictions**, label-free) and :func:`reference_objective` the
  verification one (dodging / impersonation against each sample's reference embedding).
* Both return a :class:`UAPResult` (v, history); ``max_iterations`` caps the work (DeepFool-UAP: samples
  visited; SGA: outer batch updates) and ``progress(entry)`` is called with each history entry (one per
  pass / epoch). Shuffles and minibatches are drawn from a CPU generator (``seed``): deterministic.
* Evaluation (:func:`predict_labels`, :func:`embed`) needs no gradient: it takes any callable, so v fitted on
  model A evaluates on model B (transfer), whatever B is.
* Device: batches reach the callables on ``X``'s device and v lives there; put ``X`` where the model runs.
  Modules must be in eval mode (a module in training mode is refused: BN / dropout would change per batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from facebench.engine.attacks import check_eval_mode, clamped_cross_entropy, cosine_goal_loss, cpu_generator
from facebench.errors import ConfigError, ModelError

#: (x_adv (b, C, H, W), idx (b,) long indices into the fit set) -> per-sample loss (b,) to maximise
IndexedObjective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
DEEPFOOL_XI_LINF = 10 / 255
PAPER_L2_XI, PAPER_L2_DIMS = 2000 / 255, 3 * 224 * 224
_TINY = 1e-12


@dataclass
class UAPResult:
    """``perturbation`` (C, H, W) float in [0, 1] units; ``history`` one dict per pass / epoch."""

    perturbation: torch.Tensor
    history: list[dict] = field(default_factory=list)
    algorithm: str = ""
    settings: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs and evaluation
def _check_set(X: torch.Tensor) -> torch.Tensor:
    if not isinstance(X, torch.Tensor) or X.ndim != 4 or X.shape[0] == 0:
        raise ConfigError(f"the input set must be a non-empty (N, C, H, W) tensor, got "
                          f"{tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__}.")
    if X.dtype != torch.uint8:
        if not X.is_floating_point() or float(X.min()) < 0.0 or float(X.max()) > 1.0:
            raise ConfigError("the input set must be uint8 pixels or floats in [0, 1] (normalise inside the model).")
    return X


def as_unit(batch: torch.Tensor) -> torch.Tensor:
    """A batch as float in [0, 1]: uint8 divided by 255, floats unchanged."""
    return batch.float() / 255.0 if batch.dtype == torch.uint8 else batch


def apply_perturbation(x: torch.Tensor, perturbation: torch.Tensor | None) -> torch.Tensor:
    """``clamp(x + v, 0, 1)`` with v (C, H, W) broadcast over the batch (``None``: ``x`` as it is)."""
    x = as_unit(x)
    return x if perturbation is None else (x + perturbation.to(x.device, x.dtype)).clamp(0.0, 1.0)


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    return batch_size


@torch.no_grad()
def _outputs(fn: Callable, X: torch.Tensor, perturbation, batch_size: int) -> torch.Tensor:
    X = _check_set(X)
    parts = [fn(apply_perturbation(X[i : i + batch_size], perturbation)).detach().cpu()
             for i in range(0, X.shape[0], _check_batch_size(batch_size))]
    return torch.cat(parts)


def predict_labels(logits_fn: Callable, X: torch.Tensor, perturbation: torch.Tensor | None = None,
                   batch_size: int = 256) -> np.ndarray:
    """Predicted classes (N,) int64 of ``clamp(X + v, 0, 1)`` (``v`` None: clean), with any callable."""
    return _outputs(logits_fn, X, perturbation, batch_size).argmax(dim=1).numpy().astype(np.int64)


def embed(embed_fn: Callable, X: torch.Tensor, perturbation: torch.Tensor | None = None,
          batch_size: int = 256) -> np.ndarray:
    """Embeddings (N, D) float64 of ``clamp(X + v, 0, 1)`` (``v`` None: clean), with any callable."""
    return _outputs(embed_fn, X, perturbation, batch_size).double().numpy()


# --------------------------------------------------------------------------- projection
def _norm_name(p) -> str:
    if p in ("inf", "linf", math.inf):
        return "linf"
    if p in (2, "2", "l2"):
        return "l2"
    raise ConfigError(f"p must be 'inf' or 2 (the perturbation's norm), got {p!r}.")


def proj_lp(v: torch.Tensor, xi: float, p="inf", reference_projection: bool = False) -> torch.Tensor:
    """Project the whole perturbation ``v`` onto the ``xi``-ball of norm ``p`` ('inf' or 2). L2 is
    ``v * min(1, xi / ||v||_2)``; ``reference_projection=True`` gives LTS4's ``v / ||v||_2 * xi`` instead
    (onto the sphere even from inside; v = 0 stays 0)."""
    if _norm_name(p) == "linf":
        return torch.sign(v) * torch.clamp(v.abs(), max=xi)
    norm = v.norm()
    if reference_projection:
        return v if float(norm) == 0.0 else v / norm * xi
    return v * torch.clamp(xi / (norm + _TINY), max=1.0)


def default_xi(p, shape) -> float:
    """DeepFool-UAP's default budget in [0, 1] units: 10/255 for L-inf; for L2 the paper's 2000 on
    224x224x3 [0, 255] pixels at the same per-element RMS, ``2000/255 * sqrt(D / 150528)``."""
    if _norm_name(p) == "linf":
        return DEEPFOOL_XI_LINF
    return PAPER_L2_XI * math.sqrt(int(np.prod(shape)) / PAPER_L2_DIMS)


# --------------------------------------------------------------------------- DeepFool
def _class_gradients(logits_fn: Callable, x: torch.Tensor, classes: torch.Tensor):
    """(logits (K_all,), gradients (k, C, H, W)) at one image ``x`` (1, C, H, W) for ``classes`` (k,): one
    forward of k copies, each row's selected logit summed, one backward."""
    rows = x.detach().repeat(len(classes), *([1] * (x.ndim - 1))).requires_grad_(True)
    with torch.enable_grad():
        logits = logits_fn(rows)
        if not logits.requires_grad:
            raise ModelError("DeepFool needs gradients, but the model's output carries none: use a differentiable "
                             "model function (not under torch.no_grad), or fit on a differentiable surrogate.")
        (grads,) = torch.autograd.grad(logits[torch.arange(len(classes), device=classes.device), classes].sum(), rows)
    return logits[0].detach(), grads


def deepfool(logits_fn: Callable, x: torch.Tensor, num_classes: int = 10, overshoot: float = 0.02,
             max_iter: int = 10) -> tuple[torch.Tensor, int]:
    """DeepFool (Moosavi-Dezfooli et al. 2016) on one image ``x`` (1, C, H, W) in [0, 1]: ``((1 + overshoot) *
    r_tot (C, H, W), iterations)`` over the top ``num_classes`` clean classes; each step moves to the nearest
    linearised boundary, ``(pert + 1e-4) * w / ||w||``; the perturbed image is clamped to [0, 1]."""
    with torch.no_grad():
        order = logits_fn(x)[0].argsort(descending=True)[:num_classes]
    label, r_tot, pert_image, iterations = int(order[0]), torch.zeros_like(x[0]), x, 0
    current = label
    while current == label and iterations < max_iter and len(order) > 1:
        logits, grads = _class_gradients(logits_fn, pert_image, order)
        w_all = grads[1:] - grads[:1]
        f_all = (logits[order[1:]] - logits[order[0]]).abs()
        distances = f_all / (w_all.flatten(1).norm(dim=1) + _TINY)
        k = int(distances.argmin())
        w = w_all[k]
        r_tot = r_tot + (float(distances[k]) + 1e-4) * w / (w.norm() + _TINY)
        pert_image = (x + (1 + overshoot) * r_tot).clamp(0.0, 1.0)
        iterations += 1
        with torch.no_grad():
            current = int(logits_fn(pert_image)[0].argmax())
    return (1 + overshoot) * r_tot, iterations


def _fooling(logits_fn, X, v, clean: np.ndarray, batch_size: int) -> float:
    return float(np.mean(predict_labels(logits_fn, X, v, batch_size) != clean))


def _deepfool_pass(logits_fn, X, v, order, budget: int, cfg: dict) -> tuple[torch.Tensor, int, int]:
    """One pass over ``order`` (at most ``budget`` samples): (v, visited, updates); ``cfg["clean"]`` holds
    the clean predictions."""
    visited = updates = 0
    for i in order.tolist()[:budget]:
        x = apply_perturbation(X[i : i + 1], None)
        visited += 1
        with torch.no_grad():
            if int(logits_fn(apply_perturbation(x, v)).argmax()) != int(cfg["clean"][i]):
                continue  # already fooled by v
        dr, iterations = deepfool(logits_fn, apply_perturbation(x, v), cfg["num_classes"], cfg["overshoot"],
                                  cfg["max_iter_df"])
        if iterations < cfg["max_iter_df"] - 1:
            v = proj_lp(v + dr, cfg["xi"], cfg["p"], cfg["reference_projection"])
            updates += 1
    return v, visited, updates


def deepfool_uap(logits_fn: Callable, X: torch.Tensor, *, xi: float | None = None, p="inf", delta: float = 0.2,
                 max_passes: int = 10, overshoot: float = 0.02, max_iter_df: int = 10, num_classes: int = 10,
                 reference_projection: bool = False, batch_size: int = 256, max_iterations: int | None = None,
                 progress: Callable | None = None, seed=0) -> UAPResult:
    """Moosavi-Dezfooli's universal perturbation of ``X`` (see the module docstring). History entries:
    ``pass``, ``fooling_rate`` (prediction change on ``X``), ``updates``, ``visited``, ``norm``."""
    X = _check_set(X)
    check_eval_mode(logits_fn)
    cfg = {"xi": default_xi(p, X.shape[1:]) if xi is None else float(xi), "p": _norm_name(p), "delta": delta,
           "max_passes": max_passes, "overshoot": overshoot, "max_iter_df": max_iter_df,
           "num_classes": num_classes, "reference_projection": bool(reference_projection)}
    _check_counts(max_iterations, max_passes=max_passes, max_iter_df=max_iter_df, num_classes=num_classes)
    if not isinstance(delta, (int, float)) or not 0 <= delta < 1 or not cfg["xi"] > 0:
        raise ConfigError(f"delta must be in [0, 1) (target fooling rate 1 - delta) and xi > 0; got {delta!r}, {xi!r}.")
    gen, clean = cpu_generator(seed), predict_labels(logits_fn, X, None, batch_size)
    state = dict(cfg, clean=clean)
    v, history, budget, rate = torch.zeros(X.shape[1:], dtype=torch.float32, device=X.device), [], max_iterations, 0.0
    while rate < 1 - delta and len(history) < max_passes and (budget is None or budget > 0):
        order = torch.randperm(X.shape[0], generator=gen)
        v, visited, updates = _deepfool_pass(logits_fn, X, v, order, X.shape[0] if budget is None else budget, state)
        budget = None if budget is None else budget - visited
        rate = _fooling(logits_fn, X, v, clean, batch_size)
        entry = {"pass": len(history) + 1, "fooling_rate": rate, "updates": updates, "visited": visited,
                 "norm": _perturbation_norm(v, cfg["p"])}
        _record(history, entry, progress)
    return UAPResult(v.detach(), history, "deepfool", cfg)


def _perturbation_norm(v: torch.Tensor, p: str) -> float:
    return float(v.abs().max()) if p == "linf" else float(v.norm())


def _record(history: list, entry: dict, progress: Callable | None) -> None:
    history.append(entry)
    if progress is not None:
        progress(entry)


def _check_counts(max_iterations=None, **counts) -> None:
    """Each of ``counts`` an integer >= 1; ``max_iterations`` None (no cap) or an integer >= 1."""
    if max_iterations is not None:
        counts["max_iterations"] = max_iterations
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}.")


# --------------------------------------------------------------------------- SGA
def sga_step_size(eps: float, step_decay: float) -> float:
    """SGA's step, ``eps * step_decay`` (10/255 with 0.1 -> 1/255)."""
    return eps * step_decay


def clean_label_objective(logits_fn: Callable, X: torch.Tensor, loss: str = "clamped_ce", beta: float = 9.0,
                          batch_size: int = 256) -> IndexedObjective:
    """SGA's label-free loss on the model's clean predictions of ``X``: ``min(CE, beta)`` (``"clamped_ce"``)
    or the negative clean-class logit (``"logit"``)."""
    if loss not in ("clamped_ce", "logit"):
        raise ConfigError(f"loss must be 'clamped_ce' or 'logit', got {loss!r}.")
    check_eval_mode(logits_fn)
    labels = torch.from_numpy(predict_labels(logits_fn, X, None, batch_size))

    def objective(x_adv: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        logits, y = logits_fn(x_adv), labels[idx.cpu()].to(x_adv.device)
        if loss == "clamped_ce":
            return clamped_cross_entropy(logits, y, beta)
        return -logits.gather(1, y[:, None])[:, 0]

    return objective


def reference_objective(embed_fn: Callable, references: torch.Tensor, goal: str) -> IndexedObjective:
    """Verification loss for a universal perturbation of probes: cosine to each probe's reference embedding
    ``references[idx]`` (N, D), negated for dodging (see :func:`facebench.engine.attacks.cosine_goal_loss`)."""
    check_eval_mode(embed_fn)
    return lambda x_adv, idx: cosine_goal_loss(embed_fn(x_adv), references[idx.cpu()].to(x_adv.device), goal)


def _delta_gradient(objective: IndexedObjective, xb: torch.Tensor, idx: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Gradient of the minibatch's mean loss with respect to the shared perturbation ``v``."""
    d = v.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = objective((xb + d).clamp(0.0, 1.0), idx)
        if not loss.requires_grad:
            raise ModelError("SGA needs gradients, but the model's output carries none: use a differentiable "
                             "model function, or fit on a differentiable surrogate and transfer.")
        (grad,) = torch.autograd.grad(loss.mean(), d)
    return grad


def _sga_batch(objective, xb, idx, v, gen, cfg) -> torch.Tensor:
    """One outer SGA update on the batch ``xb`` (its fit-set indices ``idx``): aggregated inner gradients."""
    n = xb.shape[0]
    m = min(cfg["minibatch"], n)
    inner, grads = v.clone(), []
    for _ in range(max(1, cfg["inner_iters"] * n // m)):
        pick = torch.randperm(n, generator=gen)[:m]
        g = _delta_gradient(objective, xb[pick.to(xb.device)], idx[pick], inner)
        inner = (inner + cfg["step"] * g.sign()).clamp(-cfg["eps"], cfg["eps"])
        grads.append(g)
    aggregate = torch.stack(grads).mean(dim=0)
    if cfg["momentum"]:
        l1 = aggregate.abs().sum()
        cfg["velocity"] = 0.9 * cfg["velocity"] + (aggregate / l1 if float(l1) > 0 else aggregate)
        aggregate = cfg["velocity"]
    return (v + cfg["step"] * aggregate.sign()).clamp(-cfg["eps"], cfg["eps"])


@torch.no_grad()
def _mean_objective(objective: IndexedObjective, X: torch.Tensor, v: torch.Tensor, batch_size: int) -> float:
    total = 0.0
    for i in range(0, X.shape[0], batch_size):
        idx = torch.arange(i, min(i + batch_size, X.shape[0]))
        total += float(objective(apply_perturbation(X[i : i + batch_size], v), idx).sum())
    return total / X.shape[0]


def sga_uap(objective: IndexedObjective, X: torch.Tensor, *, eps: float = 10 / 255, epochs: int = 20,
            batch_size: int = 250, minibatch: int = 10, inner_iters: int = 4, step_decay: float = 0.1,
            momentum: bool = False, max_iterations: int | None = None, progress: Callable | None = None,
            seed=0) -> UAPResult:
    """Stochastic Gradient Aggregation (see the module docstring) of ``objective`` over ``X``, shuffled per
    epoch. History entries: ``epoch``, ``objective`` (mean loss on ``X`` at v), ``updates``, ``norm`` (L-inf)."""
    X = _check_set(X)
    _check_counts(max_iterations, epochs=epochs, batch_size=batch_size, minibatch=minibatch, inner_iters=inner_iters)
    if not (isinstance(eps, (int, float)) and isinstance(step_decay, (int, float)) and eps > 0 and step_decay > 0):
        raise ConfigError(f"eps and step_decay must be positive (step = eps * step_decay), "
                          f"got {eps!r}, {step_decay!r}.")
    cfg = {"eps": float(eps), "step": sga_step_size(eps, step_decay), "minibatch": minibatch, "epochs": epochs,
           "inner_iters": inner_iters, "batch_size": batch_size, "momentum": bool(momentum), "velocity": 0.0}
    gen, history, updates = cpu_generator(seed), [], 0
    v = torch.zeros(X.shape[1:], dtype=torch.float32, device=X.device)
    for epoch in range(epochs):
        order = torch.randperm(X.shape[0], generator=gen)
        for start in range(0, X.shape[0], batch_size):
            if max_iterations is not None and updates >= max_iterations:
                break
            idx = order[start : start + batch_size]
            v = _sga_batch(objective, apply_perturbation(X[idx.to(X.device)], None), idx, v, gen, cfg)
            updates += 1
        entry = {"epoch": epoch + 1, "objective": _mean_objective(objective, X, v, batch_size), "updates": updates,
                 "norm": float(v.abs().max())}
        _record(history, entry, progress)
        if max_iterations is not None and updates >= max_iterations:
            break
    cfg.pop("velocity")
    return UAPResult(v.detach(), history, "sga", cfg)
