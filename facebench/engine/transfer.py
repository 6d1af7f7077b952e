"""Moving a perturbation from one model's input frame to another's (transfer attacks between any two adapters).

A model's input frame is the engine's uint8 tensor for it (``facebench.data.preprocess``): the loaded face crop
(its central ``crop_fraction``), resized to the model's ``size``, in its channel layout. Two frames of the same
crop differ only in size, channels and colour order, so a perturbation ``delta`` made in the attacking model's
frame (values in [0, 1] pixel units) is carried over as:

* **size**: bilinear resampling (``align_corners=False``, no antialiasing). Each output value is a convex
  combination of input values, so an L-inf budget holds exactly (``|delta'| <= eps``);
* **channels**: grey -> colour repeats the one channel; colour -> grey weighs the three with the target's
  grey formula (``InputSpec.grey``: BT.601 0.299 / 0.587 / 0.114; the OpenCV and Pillow fixed-point
  weights), the linear part of how its grey frame is made (convex again); RGB <-> BGR reverses the order;
* **L2 budgets**: resampling changes the number of elements, so ``delta'`` is rescaled to the same per-element
  RMS as ``delta`` (``||delta'||_2 = ||delta||_2 * sqrt(D' / D)``), RobFR's convention for budgets across sizes.

The perturbed input of the model under test is ``clamp(x' + delta', 0, 1)`` with ``x'`` its own clean frame.
Frames that crop differently (``crop_fraction``) or declare other geometry (``extra``) do not cover the same
pixels: :func:`check_frames` refuses them with the reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facebench.errors import ConfigError

#: the mapping's version: part of the store key of every transfer attack between different frames
VERSION = "1"
#: RGB weights of each grey formula of ``facebench.data.preprocess`` (its fixed-point weights, normalised)
GREY_WEIGHTS = {"bt601": (0.299, 0.587, 0.114), "opencv": (9798 / 32768, 19235 / 32768, 3735 / 32768),
                "pillow": (19595 / 65536, 38470 / 65536, 7471 / 65536)}


def same_frame(a, b) -> bool:
    """Whether two input specs give the same frame (size, channels and colour order)."""
    return (tuple(a.size), a.channels, a.color_order) == (tuple(b.size), b.channels, b.color_order)


def check_frames(source, target, source_name: str, target_name: str) -> None:
    """ConfigError unless a perturbation in ``source``'s frame can be carried to ``target``'s (same crop)."""
    if source.crop_fraction != target.crop_fraction or dict(source.extra) != dict(target.extra):
        raise ConfigError(f"a transfer attack from {source_name} to {target_name} needs both models to see the same "
                          f"image region, but they crop differently (crop_fraction {source.crop_fraction} vs "
                          f"{target.crop_fraction}, extra {dict(source.extra)} vs {dict(target.extra)}); pick a "
                          f"surrogate with the same crop.")


def to_frame(delta: torch.Tensor, source, target, norm: str = "linf") -> torch.Tensor:
    """``delta`` ((N, C, H, W) or (C, H, W), in ``source``'s frame) carried to ``target``'s frame (see the
    module docstring)."""
    if same_frame(source, target):
        return delta
    single = delta.dim() == 3
    d = delta[None] if single else delta
    norms, elements = d.flatten(1).norm(dim=1), d[0].numel()
    if source.color_order != target.color_order and d.shape[1] == 3 and target.channels == 3:
        d = d.flip(1)
    if d.shape[1] != target.channels and target.channels == 1:
        rgb = d if source.color_order == "RGB" else d.flip(1)
        w = torch.tensor(GREY_WEIGHTS[target.grey], dtype=d.dtype, device=d.device).view(1, 3, 1, 1)
        d = (rgb * w).sum(dim=1, keepdim=True) / float(w.sum())
    elif d.shape[1] != target.channels:
        d = d.expand(-1, 3, -1, -1)
    if tuple(d.shape[-2:]) != tuple(target.size):
        d = F.interpolate(d, size=tuple(target.size), mode="bilinear", align_corners=False)
    if norm == "l2":  # the same per-element RMS as before
        scale = norms * (d[0].numel() / elements) ** 0.5 / d.flatten(1).norm(dim=1).clamp_min(1e-12)
        d = d * scale.view(-1, 1, 1, 1)
    d = d.contiguous()
    return d[0] if single else d


def frame_batches(dataset, source, target, batch_size: int, indices=None):
    """``(x_source, x_target)`` uint8 batches of ``dataset``'s images (``indices``: those, in that order, repeats
    allowed; default all) in both frames; the same tensor twice when the frames are the same."""
    from torch.utils.data import DataLoader, Subset

    from facebench.data.preprocess import PreparedImages

    def loader(spec):
        images = PreparedImages(dataset.images, spec)
        data = images if indices is None else Subset(images, [int(i) for i in indices])
        return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)

    if same_frame(source, target) and source.crop_fraction == target.crop_fraction:
        for batch in loader(target):
            yield batch, batch
        return
    yield from zip(loader(source), loader(target))


def transferred(x_adv_source: torch.Tensor, x_source: torch.Tensor, x_target: torch.Tensor, source, target,
                norm: str = "linf") -> torch.Tensor:
    """The target's perturbed input: ``clamp(x_target + to_frame(x_adv_source - x_source), 0, 1)`` (floats in
    [0, 1]); ``x_adv_source`` itself when both frames are the same."""
    if x_target is x_source:
        return x_adv_source
    return (x_target + to_frame(x_adv_source - x_source, source, target, norm)).clamp(0.0, 1.0)
