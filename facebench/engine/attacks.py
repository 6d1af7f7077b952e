"""Per-sample white-box attacks (FGSM, PGD under L-inf or L2) on [0, 1] pixels, and their losses.

Conventions (``spec/robustness.md`` sections 3.5, 3.6 and 4.4):

* Inputs ``x`` are (B, C, H, W) float tensors in [0, 1]; budgets ``eps`` and step sizes ``alpha`` are in
  those units (8/255 means 8 grey levels). The model normalises inside: an attack calls
  ``objective(x01) -> (B,)`` per-sample losses, built from ``logits_fn(x01) -> logits`` or
  ``embed_fn(x01) -> embeddings`` (:func:`cross_entropy_objective`, :func:`verification_objective`;
  :func:`adapter_function` makes such a function from a ModelAdapter). The attack **ascends** the loss.
* After every step the perturbation is projected onto the eps-ball (L-inf: clamp to [-eps, eps]; L2:
  ``delta * min(1, eps / ||delta||_2)`` per sample) and ``x + delta`` is clamped to [0, 1]; clamping only
  shrinks ``|delta|``, so ``||x_adv - x|| <= eps`` holds for the result.
* Defaults are torchattacks' (spec 3.5): PGD L-inf eps 8/255, alpha 2/255, 10 steps; PGD L2 eps 1.0,
  alpha 0.2, 40 steps; random start on. L-inf starts at ``x + U(-eps, eps)``; L2 at a uniformly random
  direction times a radius ``U(0, 1) * eps`` -- and, unlike torchattacks' PGDL2 of commit 005d51c, the
  start is actually added. FGSM = one step of size eps from ``x`` (L-inf: ``eps * sign(grad)``; L2:
  ``eps * grad / ||grad||``); default eps 8/255 (torchattacks' old FGSM default was 0.007).
* The model must be in eval mode: :func:`adapter_function` sets it; the loss builders refuse a
  ``torch.nn.Module`` in training mode (:func:`check_eval_mode`); for other callables it is the caller's
  job. Gradients are always enabled inside an attack, even when it is called under ``torch.no_grad``.
* Random starts draw from a CPU ``torch.Generator`` (``seed``: an int or a generator) and are moved to
  ``x``'s device, so a seed gives the same start on every device.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from facebench.data.preprocess import pixel_divisor
from facebench.errors import ConfigError, ModelError

Objective = Callable[[torch.Tensor], torch.Tensor]  # x01 (B, C, H, W) -> per-sample loss (B,) to maximise
NORMS = ("linf", "l2")
GOALS = ("dodging", "impersonation")
#: torchattacks' defaults (spec 3.5): eps, alpha (step size), steps, per norm
PGD_DEFAULTS = {"linf": {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10},
                "l2": {"eps": 1.0, "alpha": 0.2, "steps": 40}}
FGSM_DEFAULT_EPS = 8 / 255
_TINY = 1e-12


# --------------------------------------------------------------------------- models
def require_differentiable(adapter, attack_name: str) -> None:
    """Raise ConfigError when ``adapter`` cannot give input gradients (ONNX, dlib, stored predictions), so a
    white-box attack named ``attack_name`` is refused before anything runs."""
    if getattr(adapter, "differentiable", True):
        return
    name = getattr(adapter, "name", type(adapter).__name__)
    raise ConfigError(f"{attack_name} needs input gradients (a white-box attack), but model {name!r} is not "
                      f"differentiable (it runs outside PyTorch autograd: onnxruntime, dlib or stored outputs). "
                      f"Pick a differentiable model, or run a transfer attack: fit the perturbation on a "
                      f"differentiable surrogate model and evaluate it on {name!r}.")


def adapter_function(adapter, head: str | None = None, features: bool = False,
                     attack_name: str = "an attack on gradients") -> Callable:
    """``x01 -> output`` of a ModelAdapter with gradients: ``x01`` (B, C, H, W) in [0, 1] is the engine's
    uint8 batch divided by 255 (the adapter's size, channels and colour order), normalised with the
    adapter's input spec ((x01 * 255 / d - mean) / std), then ``adapter.forward`` (not ``predict``, which
    runs under inference mode). Returns the head's logits, or the features when ``features``;
    ``attack_name`` goes into the refusal of a model that is not differentiable."""
    require_differentiable(adapter, attack_name)
    adapter.eval()
    heads = () if features else adapter.resolve_heads(None if head is None else [head])
    spec = adapter.input_spec
    divisor = pixel_divisor(spec.scale)

    def call(x01: torch.Tensor) -> torch.Tensor:
        pixels = x01 * 255.0
        scaled = pixels * spec.scale if divisor is None else pixels / divisor
        mean = torch.tensor(spec.mean, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
        std = torch.tensor(spec.std, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
        out = adapter.forward((scaled - mean) / std, heads, features)
        return out["features"] if features else out[heads[0]]

    return call


def check_eval_mode(fn: Callable) -> Callable:
    """Refuse a ``torch.nn.Module`` (or a bound method of one) in training mode: attacks need eval mode."""
    module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    if isinstance(module, torch.nn.Module) and module.training:
        raise ConfigError(f"the model {type(module).__name__} is in training mode; call .eval() before attacking "
                          f"it (batch norm and dropout must not change while gradients are taken).")
    return fn


# --------------------------------------------------------------------------- losses
def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (B,)."""
    return F.cross_entropy(logits, labels, reduction="none")


def clamped_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample ``min(CE, beta)`` (SGD-UAP / SGA's clamped loss: fooled samples stop pulling)."""
    return torch.clamp(cross_entropy(logits, labels), max=beta)


def cosine_goal_loss(embeddings: torch.Tensor, references: torch.Tensor, goal: str) -> torch.Tensor:
    """Per-sample verification loss to maximise: ``-cos(e, ref)`` for dodging (push a genuine pair apart),
    ``+cos(e, ref)`` for impersonation (pull an impostor pair together)."""
    _check_goal(goal)
    sim = F.cosine_similarity(embeddings, references.to(embeddings.dtype).expand_as(embeddings), dim=1)
    return -sim if goal == "dodging" else sim


def _check_goal(goal: str) -> None:
    if goal not in GOALS:
        raise ConfigError(f"goal must be 'dodging' (genuine pairs) or 'impersonation' (impostor pairs), got {goal!r}.")


def cross_entropy_objective(logits_fn: Callable, labels: torch.Tensor, targeted: bool = False) -> Objective:
    """Untargeted: ascend CE of ``labels`` (true or clean-predicted classes). Targeted: ``labels`` are the
    targets and the attack ascends ``-CE`` (descends towards them)."""
    sign = -1.0 if targeted else 1.0
    check_eval_mode(logits_fn)
    return lambda x: sign * cross_entropy(logits_fn(x), labels.to(x.device))


def verification_objective(embed_fn: Callable, references: torch.Tensor, goal: str) -> Objective:
    """Cosine dodging / impersonation loss against per-sample reference embeddings (B, D) (or one (D,))."""
    _check_goal(goal)
    check_eval_mode(embed_fn)
    return lambda x: cosine_goal_loss(embed_fn(x), references.to(x.device), goal)


# --------------------------------------------------------------------------- geometry
def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped (B, 1, ..., 1) to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def project_linf(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Clamp every element to [-eps, eps]."""
    return delta.clamp(-eps, eps)


def project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-sample projection onto the L2 ball: ``delta * min(1, eps / ||delta||_2)`` (inside: unchanged)."""
    return delta * torch.clamp(eps / (_flat_norm(delta) + _TINY), max=1.0)


def _project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    return project_linf(delta, eps) if norm == "linf" else project_l2(delta, eps)


def _step_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """L-inf: ``sign(grad)``; L2: ``grad / ||grad||_2`` per sample (zero gradient: no move)."""
    return grad.sign() if norm == "linf" else grad / (_flat_norm(grad) + _TINY)


def cpu_generator(seed) -> torch.Generator:
    """``seed`` itself when it is a torch.Generator, else a new CPU generator seeded with the integer."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer or a torch.Generator, got {seed!r}.")
    return torch.Generator().manual_seed(seed)


def random_start_point(x: torch.Tensor, eps: float, norm: str, seed=0) -> torch.Tensor:
    """``clamp(x + delta0, 0, 1)``: L-inf ``delta0 ~ U(-eps, eps)``; L2 ``delta0`` a uniformly random direction
    times ``U(0, 1) * eps`` per sample (drawn on the CPU generator ``seed``, moved to ``x``'s device)."""
    gen = cpu_generator(seed)
    shape = tuple(x.shape)
    if norm == "linf":
        delta = (torch.rand(shape, generator=gen, device=gen.device) * 2 - 1) * eps
    else:
        direction = torch.randn(shape, generator=gen, device=gen.device)
        radius = torch.rand((shape[0],) + (1,) * (len(shape) - 1), generator=gen, device=gen.device) * eps
        delta = direction / (_flat_norm(direction) + _TINY) * radius
    return (x + delta.to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- attacks
def _gradient(objective: Objective, x_adv: torch.Tensor) -> torch.Tensor:
    """d(sum of per-sample losses)/dx at ``x_adv``, with gradients enabled whatever the caller's mode."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = objective(x_adv)
        if not isinstance(loss, torch.Tensor) or loss.shape != x_adv.shape[:1]:
            got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ConfigError(f"an attack objective must return one loss per sample, shape ({x_adv.shape[0]},); "
                              f"got {got}.")
        if not loss.requires_grad:
            raise ModelError("the model's output carries no gradient (it ran under torch.no_grad / inference "
                             "mode, or outside PyTorch): use a differentiable model function, or a transfer attack.")
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    return grad


def _check_input(x: torch.Tensor) -> torch.Tensor:
    if torch.is_inference_mode_enabled():
        raise ConfigError("attacks need gradients and cannot run inside torch.inference_mode(); call them outside it.")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ConfigError(f"attack inputs must be a float (B, C, H, W) tensor in [0, 1], got "
                          f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}.")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ConfigError(f"attack inputs must be pixels in [0, 1] (normalise inside the model), got values in "
                          f"[{lo:.4g}, {hi:.4g}].")
    return x.detach().clone()


def _check_budget(norm: str, eps: float, alpha: float, steps: int) -> None:
    if norm not in NORMS:
        raise ConfigError(f"norm must be 'linf' or 'l2', got {norm!r}.")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ConfigError(f"eps must be a finite number >= 0 in [0, 1] pixel units (e.g. 8/255), got {eps!r}.")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"alpha (the step size) must be a positive number in [0, 1] pixel units, got {alpha!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}.")


def pgd(objective: Objective, x: torch.Tensor, *, norm: str = "linf", eps: float | None = None,
        alpha: float | None = None, steps: int | None = None, random_start: bool = True, seed=0) -> torch.Tensor:
    """Projected gradient ascent of ``objective`` from ``x`` (B, C, H, W) in [0, 1]; returns ``x_adv`` with
    ``||x_adv - x||_norm <= eps`` per sample and values in [0, 1]. ``None`` parameters take
    :data:`PGD_DEFAULTS` for the norm; ``random_start`` starts from :func:`random_start_point` (``seed``)."""
    defaults = PGD_DEFAULTS.get(norm, PGD_DEFAULTS["linf"])
    eps = defaults["eps"] if eps is None else eps
    alpha = defaults["alpha"] if alpha is None else alpha
    steps = defaults["steps"] if steps is None else steps
    _check_budget(norm, eps, alpha, steps)
    x0 = _check_input(x)
    x_adv = random_start_point(x0, eps, norm, seed) if random_start else x0.clone()
    for _ in range(steps):
        grad = _gradient(objective, x_adv)
        stepped = x_adv + alpha * _step_direction(grad, norm)
        x_adv = (x0 + _project(stepped - x0, eps, norm)).clamp(0.0, 1.0).detach()
    return x_adv


def fgsm(objective: Objective, x: torch.Tensor, *, eps: float = FGSM_DEFAULT_EPS, norm: str = "linf") -> torch.Tensor:
    """Fast gradient (sign) method: one step of size ``eps`` from ``x`` (L-inf ``eps * sign(grad)``, L2
    ``eps * grad / ||grad||``), clamped to [0, 1]. Equals :func:`pgd` with one step, ``alpha = eps``, no
    random start."""
    if eps == 0:
        return _check_input(x)
    return pgd(objective, x, norm=norm, eps=eps, alpha=eps, steps=1, random_start=False)


def attack_in_batches(attack: Callable, x: torch.Tensor, batch_size: int, *per_sample) -> torch.Tensor:
    """Run ``attack(x_batch, *per_sample_batch)`` over ``x`` in chunks of ``batch_size`` (the last may be
    smaller); ``per_sample`` tensors (labels, references) are sliced alongside. Returns the concatenation."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    parts = [attack(x[i : i + batch_size], *(t[i : i + batch_size] for t in per_sample))
             for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts) if parts else x.detach().clone()
