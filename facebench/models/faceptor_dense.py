"""Faceptor's dense heads (landmarks, face parsing) on the 512x512 group-1 input (spec §1.5-1.6).

Coordinates: in the original image they are continuous, pixel i spanning [i, i + 1] (boxes and
decoded landmarks); in the S x S crop frame they are pixel-centred (hence the ``- 0.5``). With this
reading ``M1`` is exactly an ``align_corners=False`` crop-resize of the box, as the spec says.

* **Landmark crop** (``align_test_transform``): box (y1, x1, y2, x2) ->
  ``M1: x -> (x - x1) / (x2 - x1) * S - 0.5`` (same for y), then a zoom ``M2`` by ``scale_mu`` about
  the crop centre ((S - 1) / 2, (S - 1) / 2); the image is warped with ``M = M2 M1`` (bilinear,
  border 0) and normalised with the FaRL/CLIP mean and std. ``scale_mu`` is 0.8 for 300W, COFW and
  WFLW, 1.0 for AFLW-19.
* **Landmark decode** (``align_test_post_transform``): ``pts = landmark_norm * S - 0.5``, original
  pixel coordinates ``= M^-1 pts``. Landmark orders: 68 (300W, iBUG), 29 (COFW), 98 (WFLW), 19 (AFLW).
* **Parsing** (``celebam_test_transform``): the whole image resized to S x S (bilinear), logits
  through ``ParsingOutput`` (512 x 512) and resized back to the original H x W (bilinear, ``align_corners=False``), then argmax. Label names
  are the YAML ``label_names`` (CelebAMask-HQ 19 classes, LaPa 11 classes).

Not re-implemented: LaPa's test transform (five-point similarity alignment followed by a tanh-warp
with warp factor 0.8). The spec does not give the tanh-warp's formula, so ``parsing`` uses the
whole-image frame above for both heads and records ``frame="resize"``; LaPa F1 numbers from it are
not comparable with the paper's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from facebench.errors import ModelError

FARL_MEAN = (0.48145466, 0.4578275, 0.40821073)
FARL_STD = (0.26862954, 0.26130258, 0.27577711)
LANDMARK_SCALE_MU = {"300w": 0.8, "cofw": 0.8, "wflw": 0.8, "aflw": 1.0}
LANDMARK_POINTS = {"300w": 68, "cofw": 29, "wflw": 98, "aflw": 19}
PARSING_LABELS = {
    "celebam": ("background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re", "le", "nose", "imouth",
                "llip", "ulip", "hair", "glass", "hat", "earr", "neckl"),
    "lapa": ("background", "face_lr_rr", "lb", "rb", "le", "re", "nose", "ul", "im", "ll", "hair"),
}


def crop_matrix(box_y1x1y2x2: Sequence[float], size: int = 512, scale_mu: float = 1.0) -> np.ndarray:
    """3x3 affine ``M = M2 M1`` taking original pixel coordinates (x, y) into the S x S crop frame."""
    y1, x1, y2, x2 = (float(v) for v in box_y1x1y2x2)
    if not (x2 > x1 and y2 > y1):
        raise ModelError(f"landmark box {tuple(box_y1x1y2x2)} is empty; boxes are (y1, x1, y2, x2) with y2 > y1 "
                         f"and x2 > x1.")
    if scale_mu <= 0:
        raise ModelError(f"scale_mu must be positive, got {scale_mu}.")
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    m1 = np.array([[sx, 0.0, -x1 * sx - 0.5], [0.0, sy, -y1 * sy - 0.5], [0.0, 0.0, 1.0]])
    c = (size - 1) / 2.0
    m2 = np.array([[scale_mu, 0.0, c - scale_mu * c], [0.0, scale_mu, c - scale_mu * c], [0.0, 0.0, 1.0]])
    return m2 @ m1


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> torch.Tensor:
    """Warp an (H, W, 3) uint8 image into an S x S frame: ``out[v, u] = image(M^-1 (u, v))`` with (u, v)
    pixel-centred in the frame and ``M^-1 (u, v)`` continuous in the image; bilinear, zero outside.
    Returns a (3, S, S) float32 tensor in [0, 1]."""
    h, w = image.shape[:2]
    inv = np.linalg.inv(matrix)
    grid = np.arange(size, dtype=np.float64)
    u, v = np.meshgrid(grid, grid)  # output pixel centres, (S, S) each
    src_x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    src_y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    # grid_sample with align_corners=False: -1 and +1 are the image's outer edges (continuous 0 and W)
    norm = np.stack([2 * src_x / w - 1, 2 * src_y / h - 1], axis=-1)
    src = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    out = F.grid_sample(src, torch.from_numpy(norm).float().unsqueeze(0), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out[0]


def resize_image(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, S, S) float32 in [0, 1], bilinear, ``align_corners=False``, no antialias
    (``cv2.resize`` INTER_LINEAR)."""
    src = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    return F.interpolate(src, size=(size, size), mode="bilinear", align_corners=False)[0]


def farl_normalise(batch: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1] -> (x - FaRL mean) / FaRL std."""
    mean = torch.tensor(FARL_MEAN, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(FARL_STD, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def decode_landmarks(landmark_norm: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(K, 2) normalised xy in the crop -> (K, 2) original pixel xy: ``M^-1 (norm * S - 0.5)``."""
    pts = np.asarray(landmark_norm, dtype=np.float64) * size - 0.5
    homog = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    return (np.linalg.inv(matrix) @ homog.T).T[:, :2]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ModelError(f"faceptor dense heads take (H, W, 3) uint8 RGB images; got shape {image.shape}, "
                         f"dtype {image.dtype}.")
    return image


def _check_head(kind: str, name: str, available: dict, tasks: dict) -> str:
    task = f"{'align' if kind == 'landmarks' else 'parsing'}_{name}"
    if name not in available:
        raise ModelError(f"faceptor {kind}: dataset={name!r} is not one of {', '.join(available)}.")
    if task not in tasks:
        have = sorted(t for t in tasks if t.startswith(task.split("_")[0] + "_"))
        raise ModelError(f"faceptor checkpoint has no {task} head (it has {', '.join(have) or 'none'}); "
                         f"Faceptor-Base has only celebam parsing and 300w landmarks.")
    return task


@torch.no_grad()
def predict_landmarks(net, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]], dataset: str = "300w",
                      size: int = 512, scale_mu: float | None = None, batch_size: int = 16) -> np.ndarray:
    """Landmarks (N, K, 2) in original pixel xy for RGB uint8 images and face boxes (y1, x1, y2, x2)."""
    from facebench.models.faceptor_net import align_output

    task = _check_head("landmarks", dataset, LANDMARK_POINTS, net.cfg.tasks)
    if len(images) != len(boxes):
        raise ModelError(f"faceptor landmarks: {len(images)} images but {len(boxes)} boxes.")
    mu = LANDMARK_SCALE_MU[dataset] if scale_mu is None else float(scale_mu)
    device = next(net.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        chunk = range(start, min(start + batch_size, len(images)))
        mats = [crop_matrix(boxes[i], size, mu) for i in chunk]
        batch = torch.stack([warp_affine(_as_rgb(images[i]), m, size) for i, m in zip(chunk, mats)])
        logits = net(farl_normalise(batch.to(device)), tasks=(task,))[task]
        norm = align_output(logits.float(), net.cfg.softargmax_clamp)["landmark"].cpu().double().numpy()
        out.extend(decode_landmarks(p, m, size) for p, m in zip(norm, mats))
    return np.stack(out) if out else np.zeros((0, LANDMARK_POINTS[dataset], 2))


@torch.no_grad()
def predict_parsing(net, images: Sequence[np.ndarray], dataset: str = "celebam", size: int = 512,
                    frame=None) -> list[np.ndarray]:
    """Label maps (H, W) int64 at each image's original resolution. Whole-image frame (``frame`` None, see
    module doc): logits (4S/16 grid) -> ``ParsingOutput`` (512 x 512) -> original H x W -> argmax. With a warp
    ``frame`` (``facebench.data.tanh_warp.WarpFrame``, one matrix per image: LaPa's test transform): each image
    warped into the frame, resized to S, logits -> ``ParsingOutput`` -> the frame's size -> back to the image
    by the inverse warp (bilinear, 0 outside) -> argmax."""
    from facebench.models.faceptor_net import parsing_output

    task = _check_head("parsing", dataset, PARSING_LABELS, net.cfg.tasks)
    if frame is not None and len(frame) != len(images):
        raise ModelError(f"faceptor parsing: {len(images)} images but a warp frame of {len(frame)}.")
    device = next(net.parameters()).device
    maps = []
    for i, image in enumerate(images):
        image = _as_rgb(image)
        seen = image if frame is None else frame.warp_image(i, image)
        x = farl_normalise(resize_image(seen, size).unsqueeze(0).to(device))
        logits = net(x, tasks=(task,))[task].float()
        logits = parsing_output(logits, net.cfg.parsing_out_size).permute(0, 3, 1, 2)  # ParsingOutput frame
        logits = F.interpolate(logits, size=seen.shape[:2], mode="bilinear", align_corners=False)
        if frame is None:
            maps.append(logits[0].argmax(dim=0).cpu().numpy())
        else:
            back = frame.back_logits(i, logits[0].permute(1, 2, 0).double().cpu().numpy(), image.shape[:2])
            maps.append(back.argmax(axis=2))
    return maps
