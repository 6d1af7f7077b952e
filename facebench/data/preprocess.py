"""Preprocessing driven by a model's input spec (decode with Pillow elsewhere; resize here).

Pipeline for one image (uint8, H x W x C, RGB or grey):
  1. channel conversion: grey -> repeat to 3 channels, or RGB -> grey by ``grey`` (below); RGB -> BGR
     when asked;
  2. centre crop to ``crop_fraction`` of the shorter side's square (1.0 = no crop, keep aspect);
  3. resize to ``size`` = (height, width) with ``interpolation`` done the way ``resize`` names, in uint8
     (same size: no resize, as OpenCV and Pillow do):

     * ``torch``: ``torch.nn.functional.interpolate`` (``align_corners=False``), antialiased when
       shrinking unless ``antialias=False`` (facebench's own pipeline);
     * ``opencv``: ``cv2.resize(..., INTER_LINEAR)`` of an x86-64 ``opencv-python`` 4.x wheel,
       reproduced bit for bit without OpenCV: half-pixel centres, 11-bit fixed-point weights
       (float32 offsets rounded half to even), horizontal pass in int32, vertical pass as OpenCV's
       SIMD kernel computes it (``((r0 >> 4) * b0 >> 16) + ((r1 >> 4) * b1 >> 16) + 2 >> 2``); never
       antialiased, so shrinking by more than 2x skips source pixels;
     * ``pillow``: Pillow's resampling (what torchvision's ``Resize`` runs on a PIL image), whose
       filters widen with the scale: always antialiased; horizontal pass first, as Pillow <= 12 does
       (:func:`resize_pillow`).
  Grey conversion ``grey``: ``bt601`` L = 0.299 R + 0.587 G + 0.114 B in float32, rounded half to
  even; ``opencv`` ``cv2.cvtColor(RGB2GRAY)``'s 15-bit fixed point (9798 R + 19235 G + 3735 B +
  2^14) >> 15; ``pillow`` ``Image.convert("L")``'s 16-bit fixed point (19595 R + 38470 G + 7471 B +
  2^15) >> 16. A grey source image is used as it is (all three give back v for R = G = B = v).
The batch is then normalised on the device: x = (pixel / d - mean) / std with d = 1/scale when that
is a whole number (255, 256: torchvision's ``ToTensor``, fer and most packages divide), else
(pixel * scale - mean) / std. Steps 1-3 run per sample in loader workers (or once, into the
decoded-image cache) and yield uint8 C x H x W; normalisation runs per batch on the device the
model runs on (on CUDA in the prefetcher's side stream, see ``facebench.engine.prefetch``): only
uint8 pixels cross from the host.

A model's package pipeline is declared as data by :class:`Preprocessing` (where it was read, the
resize, grey conversion and crop or alignment); adapters build their ``InputSpec`` from it.
"""

from __future__ import annotations

import functools

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

from facebench.errors import ConfigError, DataError
from facebench.fingerprint import hash_object

RESIZES = ("torch", "opencv", "pillow")
GREYS = ("bt601", "opencv", "pillow")
# interpolation names each resize supports (torch: F.interpolate's modes that take uint8)
INTERPOLATIONS = {"torch": ("bilinear", "bicubic", "nearest", "nearest-exact", "area"),
                  "opencv": ("bilinear",),
                  "pillow": ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")}
# RGB -> grey in fixed point: (weights, shift); bt601 is computed in float32
_GREY_FIXED = {"opencv": ((9798, 19235, 3735), 15), "pillow": ((19595, 38470, 7471), 16)}
# the uint8 fields added after the decoded-image cache was keyed: left out of the key at their defaults
_PIPELINE_DEFAULTS = {"resize": "torch", "antialias": None, "grey": "bt601"}


@dataclass(frozen=True)
class InputSpec:
    """What a model expects. ``mean``/``std`` apply after dividing pixels by 1/``scale`` (see the module
    docstring); ``resize``, ``interpolation``, ``antialias`` and ``grey`` say how the uint8 tensor is made.
    ``antialias=None`` is the resize's own behaviour (torch: antialiased when shrinking with bilinear or
    bicubic; OpenCV: never; Pillow: always); OpenCV and Pillow cannot be asked for the other."""

    size: tuple[int, int] = (112, 112)
    channels: int = 3
    color_order: str = "RGB"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    scale: float = 1.0 / 255.0
    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    extra: dict = field(default_factory=dict)
    resize: str = "torch"
    antialias: bool | None = None
    grey: str = "bt601"

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ConfigError(f"InputSpec.channels must be 1 or 3, got {self.channels}")
        if self.color_order not in ("RGB", "BGR"):
            raise ConfigError(f"InputSpec.color_order must be 'RGB' or 'BGR', got {self.color_order!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(f"InputSpec mean/std need {self.channels} values each, got {self.mean} / {self.std}")
        if not 0 < self.crop_fraction <= 1:
            raise ConfigError("InputSpec.crop_fraction must be in (0, 1]")
        self._check_pipeline()

    def _check_pipeline(self) -> None:
        if self.resize not in RESIZES:
            raise ConfigError(f"InputSpec.resize must be one of {', '.join(RESIZES)} (whose resize arithmetic to "
                              f"reproduce), got {self.resize!r}")
        if self.grey not in GREYS:
            raise ConfigError(f"InputSpec.grey must be one of {', '.join(GREYS)} (the RGB -> grey formula), "
                              f"got {self.grey!r}")
        known = INTERPOLATIONS[self.resize]
        if self.interpolation not in known:
            raise ConfigError(f"InputSpec: resize={self.resize!r} supports interpolation {', '.join(known)}; "
                              f"got {self.interpolation!r}")
        if self.antialias not in (None, True, False):
            raise ConfigError(f"InputSpec.antialias must be true, false or null, got {self.antialias!r}")
        if self.resize == "opencv" and self.antialias:
            raise ConfigError("InputSpec: cv2.resize's INTER_LINEAR never antialiases; leave antialias unset "
                              "(or false) with resize='opencv', or use resize='pillow' or 'torch'")
        if self.resize == "pillow" and self.antialias is False:
            raise ConfigError("InputSpec: Pillow's filters always antialias when shrinking; leave antialias "
                              "unset (or true) with resize='pillow', or use resize='opencv' or 'torch'")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def uint8_dict(self) -> dict:
        """The part that makes the uint8 tensor (everything before ``normalise_batch``): the
        decoded-image cache's key. ``resize``/``antialias``/``grey`` enter only when they differ from
        their defaults, so entries made before they existed keep their keys."""
        d = {"size": list(self.size), "channels": self.channels, "color_order": self.color_order,
             "crop_fraction": self.crop_fraction, "interpolation": self.interpolation, "extra": self.extra}
        d.update({k: getattr(self, k) for k, v in _PIPELINE_DEFAULTS.items() if getattr(self, k) != v})
        return d

    def fingerprint(self) -> str:
        return hash_object(self.to_dict())


@dataclass(frozen=True)
class Preprocessing:
    """A model package's own preprocessing, declared as data (``ModelAdapter.preprocessing``).

    ``source``: the package, version and code the pipeline was read from. ``resize``,
    ``interpolation``, ``antialias`` and ``grey``: as in :class:`InputSpec`, what the package does to
    the face crop. ``crop``: what the package crops or aligns and what facebench feeds instead.
    ``spec(**fields)`` builds the adapter's ``InputSpec`` with these and the given fields (size,
    channels, mean, std, ...)."""

    source: str
    crop: str
    resize: str = "torch"
    interpolation: str = "bilinear"
    antialias: bool | None = None
    grey: str = "bt601"

    def __post_init__(self):
        if not self.source.strip() or not self.crop.strip():
            raise ConfigError("Preprocessing needs a source (package, version, file) and a crop description")
        InputSpec(**self.spec_fields())  # the same checks

    def spec_fields(self) -> dict:
        return {"resize": self.resize, "interpolation": self.interpolation, "antialias": self.antialias,
                "grey": self.grey}

    def spec(self, **kwargs) -> InputSpec:
        return InputSpec(**kwargs, **self.spec_fields())

    def matches(self, spec: InputSpec) -> bool:
        """Whether ``spec`` resizes and converts as declared."""
        return all(getattr(spec, k) == v for k, v in self.spec_fields().items())

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _grey(image: np.ndarray, formula: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 1) uint8 grey by ``formula`` (one of ``GREYS``)."""
    if formula == "bt601":
        rgb = image.astype(np.float32)
        grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]
    (wr, wg, wb), shift = _GREY_FIXED[formula]
    rgb = image.astype(np.int32)
    grey = (rgb[..., 0] * wr + rgb[..., 1] * wg + rgb[..., 2] * wb + (1 << (shift - 1))) >> shift
    return grey.astype(np.uint8)[..., None]


@functools.lru_cache(maxsize=256)
def _opencv_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cv2.resize INTER_LINEAR's source indices and 11-bit weights along one axis, unclamped:
    (index i0, index i0 + 1, weight of i0, weight of i0 + 1). Offsets are computed as OpenCV does:
    float32((d + 0.5) * (1 / (dst / src)) - 0.5), floor, float32 fraction, each weight rounded
    half to even from float32."""
    scale = 1.0 / (dst / src)
    f = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    frac = (f - i0.astype(np.float32)).astype(np.float32)
    w0 = np.rint((np.float32(1.0) - frac) * np.float32(2048)).astype(np.int32)
    w1 = np.rint(frac * np.float32(2048)).astype(np.int32)
    return i0, i0 + 1, w0, w1


def _opencv_columns(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal taps: OpenCV clamps a column that falls outside to the edge pixel with weight 2048."""
    i0, _, w0, w1 = _opencv_taps(src, dst)
    outside = (i0 < 0) | (i0 >= src - 1)
    i0 = np.clip(i0, 0, src - 1)
    w0, w1 = np.where(outside, 2048, w0).astype(np.int32), np.where(outside, 0, w1).astype(np.int32)
    return i0, np.minimum(i0 + 1, src - 1), w0, w1


def resize_opencv_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8 equal to ``cv2.resize(image, (w, h))`` (INTER_LINEAR) of an
    x86-64 opencv-python 4.x wheel. Rows keep their unclamped weights (OpenCV clamps only the row
    index), columns are clamped (see ``_opencv_columns``); only the source rows used are resampled."""
    h, w = image.shape[:2]
    y0, y1, b0, b1 = _opencv_taps(h, size[0])
    x0, x1, a0, a1 = _opencv_columns(w, size[1])
    y0, y1 = np.clip(y0, 0, h - 1), np.clip(y1, 0, h - 1)
    used, where = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    src = image[used].astype(np.int32)
    rows = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]  # x 2048, in int32
    r0, r1 = rows[where[: len(y0)]] >> 4, rows[where[len(y0):]] >> 4
    out = ((r0 * b0[:, None, None]) >> 16) + ((r1 * b1[:, None, None]) >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


_PIL_FILTERS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "NEAREST", "lanczos": "LANCZOS",
                "box": "BOX", "hamming": "HAMMING"}


def resize_pillow(image: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """(H, W, C) uint8 -> (h, w, C) uint8 by Pillow's resampling filter, horizontal pass first: two
    ``PIL.Image.resize`` calls, (w, H) then (w, h), each a single pass of Pillow's convolution (8-bit
    intermediate, as one call makes it). That is ``Image.resize((w, h), filter)`` of Pillow <= 12
    (the torchvision ``Resize`` the packages ran); Pillow 13 runs the vertical pass first for some
    shapes, which moves a few pixels by one grey level."""
    from PIL import Image

    grey = image.shape[2] == 1
    resample = getattr(Image.Resampling, _PIL_FILTERS[interpolation])
    pil = Image.fromarray(image[..., 0] if grey else image)
    if pil.width != size[1]:
        pil = pil.resize((size[1], pil.height), resample)
    if pil.height != size[0]:
        pil = pil.resize((size[1], size[0]), resample)
    out = np.asarray(pil)
    return out[..., None] if grey else out


def _resize_torch(image: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """F.interpolate on the uint8 (C, H, W) tensor; antialiased when asked or by default for bilinear/bicubic."""
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    smooth = spec.interpolation in ("bilinear", "bicubic")
    antialias = smooth if spec.antialias is None else (spec.antialias and smooth)
    return F.interpolate(tensor[None], size=tuple(spec.size), mode=spec.interpolation, antialias=antialias,
                         align_corners=False if smooth else None)[0]


def prepare_uint8(image: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """One decoded image (H, W) or (H, W, C) uint8 -> uint8 tensor (channels, *spec.size)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        raise DataError(f"images must be uint8, got {image.dtype}")
    if image.shape[2] == 4:
        image = image[..., :3]
    if spec.channels == 1 and image.shape[2] == 3:
        image = _grey(image, spec.grey)
    elif spec.channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if spec.channels == 3 and spec.color_order == "BGR":
        image = image[..., ::-1]
    h, w = image.shape[:2]
    if spec.crop_fraction < 1.0:
        side = int(round(min(h, w) * spec.crop_fraction))
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top : top + side, left : left + side]
    image = np.ascontiguousarray(image)
    if (image.shape[0], image.shape[1]) != tuple(spec.size):
        if spec.resize == "opencv":
            image = resize_opencv_linear(image, tuple(spec.size))
        elif spec.resize == "pillow":
            image = np.ascontiguousarray(resize_pillow(image, tuple(spec.size), spec.interpolation))
        else:
            return _resize_torch(_writable(image), spec).contiguous()
    return torch.from_numpy(_writable(image)).permute(2, 0, 1).contiguous()


def _writable(image: np.ndarray) -> np.ndarray:
    """Pillow's buffers are read-only; torch wants writable memory."""
    return image if image.flags.writeable else image.copy()


class PreparedImages(torch.utils.data.Dataset):
    """``images`` decoded and cropped/resized/converted to uint8 (C, H, W) one sample at a time
    (:func:`prepare_uint8`); what DataLoader workers run."""

    def __init__(self, images, spec: InputSpec):
        self.images, self.spec = images, spec

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return prepare_uint8(self.images.load(i), self.spec)


def pixel_divisor(scale: float) -> float | None:
    """1/scale when it is a whole number (255, 256): pixels are then divided by it, as torchvision's
    ``ToTensor`` (``div(255)``) and fer (``x / 255.0``) do; None: multiplied by ``scale``. In float32
    ``x * (1/255)`` and ``x / 255`` differ in the last bit for 111 of the 256 grey levels."""
    inverse = 1.0 / scale
    return float(round(inverse)) if abs(inverse - round(inverse)) < 1e-9 * inverse else None


@functools.lru_cache(maxsize=64)
def _mean_std(mean: tuple, std: tuple, divisor: float | None, dtype: torch.dtype, device: torch.device):
    # made once per device: building them per batch would copy from pageable memory each time,
    # which on CUDA makes the host wait for every queued kernel (no overlap of loading and compute).
    # The divisor is a tensor too: CUDA divides by a Python scalar as a multiplication by its
    # reciprocal, by a tensor exactly (IEEE division, as on the CPU).
    with torch.inference_mode(False):  # ordinary tensors, usable outside inference mode too
        made = (torch.tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1),
                torch.tensor(std, dtype=dtype, device=device).view(1, -1, 1, 1),
                None if divisor is None else torch.tensor(divisor, dtype=dtype, device=device))
    if device.type == "cuda":
        # made on whatever stream is current (the prefetcher's side stream, say) and then used on
        # others: wait once, here, until the copies are done
        torch.cuda.current_stream(device).synchronize()
    return made


def normalise_batch(batch: torch.Tensor, spec: InputSpec, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, C, H, W) on any device -> float (x / d - mean) / std with d = 1/scale a whole number
    (:func:`pixel_divisor`), else (x * scale - mean) / std.

    In place on one new tensor: the same operations in the same order (bit-identical results), and
    on a CPU 4x faster than allocating a temporary per operation (13 vs 53 ms for 256x3x112x112)."""
    mean, std, divisor = _mean_std(tuple(spec.mean), tuple(spec.std), pixel_divisor(spec.scale), dtype,
                                   batch.device)
    x = batch.to(dtype=dtype, copy=True)
    x = x.mul_(spec.scale) if divisor is None else x.div_(divisor)
    return x.sub_(mean).div_(std)
