"""Image transforms applied on top of any registered dataset: ``dataset_args: {transform: NAME}`` or
``{transform: {name: NAME, severity: 1..5}}`` in a suite, or a list of them applied in order (``[{name:
gaussian_blur, severity: 3}, hflip]``: the mirror of the blurred image, as a flip-sum protocol asks of a corrupted
split).

The transformed split keeps its sample ids and labels; the transform enters the dataset's content
tag, so it has its own fingerprint and prediction-store entry. Random corruptions are seeded per
sample (from the sample index and ``seed``), so a transformed split is the same on every run.

* ``hflip`` -- horizontal mirror (verification flip-sum, test-time augmentation);
* ``gaussian_noise`` -- add N(0, sigma^2) per pixel, sigma = (8, 16, 24, 36, 48)[s-1] grey levels;
* ``gaussian_blur`` -- Gaussian blur with radius (0.5, 1, 1.5, 2.5, 3.5)[s-1] px (Pillow);
* ``jpeg`` -- re-encode with JPEG quality (60, 35, 20, 12, 7)[s-1];
* ``pixelate`` -- downsample by (1.5, 2, 3, 4, 6)[s-1] (box), then upsample (nearest) to the original size;
* ``contrast`` -- blend towards the mean grey level with factor (0.7, 0.5, 0.35, 0.25, 0.15)[s-1];
* ``occlusion`` -- a grey square covering (10, 18, 26, 34, 42)[s-1] % of the image area, placed at random.

Two more families take their own options (``facebench.protocols.corruption`` / ``.resolution`` ask for them):

* ``imagenet_c.<corruption>`` -- ``{name, severity: 1..5, seed, table: auto | TABLE}``: the ImageNet-C corruption
  of ``facebench.data.corruptions`` (any of its 19), seeded per sample with
  ``variant_seed(seed, sample index, corruption, severity)``; ``table`` names the constant table
  (``imagenet-c-224``, ``tiny-imagenet-c-64``, ``cifar-10-c-32``) or ``auto`` (``table_for`` the image's short
  side: the table used is then recorded per image size, see ``imagenet_c_table``);
* ``resolution`` -- ``{name, size: k}``: ``data.resolution.degrade_resolution(image, k)``, the short side down to
  k px with antialiased bicubic and back up to the image's size (deterministic, no seed).
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from facebench.errors import ConfigError, did_you_mean
from facebench.fingerprint import canonical_json

SEVERITIES = (1, 2, 3, 4, 5)
NOISE_SIGMA = (8, 16, 24, 36, 48)
BLUR_RADIUS = (0.5, 1.0, 1.5, 2.5, 3.5)
JPEG_QUALITY = (60, 35, 20, 12, 7)
PIXELATE_FACTOR = (1.5, 2.0, 3.0, 4.0, 6.0)
CONTRAST_FACTOR = (0.7, 0.5, 0.35, 0.25, 0.15)
OCCLUSION_AREA = (0.10, 0.18, 0.26, 0.34, 0.42)


def _pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _back(pil_image, channels: int) -> np.ndarray:
    out = np.asarray(pil_image, dtype=np.uint8)
    return out[..., None] if out.ndim == 2 else out[..., :channels]


def hflip(image, severity, rng):
    return np.ascontiguousarray(image[:, ::-1])


def gaussian_noise(image, severity, rng):
    noisy = image.astype(np.float64) + rng.normal(0.0, NOISE_SIGMA[severity - 1], size=image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def gaussian_blur(image, severity, rng):
    from PIL import ImageFilter

    return _back(_pil(image).filter(ImageFilter.GaussianBlur(BLUR_RADIUS[severity - 1])), image.shape[-1])


def jpeg(image, severity, rng):
    from PIL import Image

    buffer = io.BytesIO()
    _pil(image).save(buffer, format="JPEG", quality=JPEG_QUALITY[severity - 1])
    buffer.seek(0)
    return _back(Image.open(buffer).convert("L" if image.shape[-1] == 1 else "RGB"), image.shape[-1])


def pixelate(image, severity, rng):
    from PIL import Image

    h, w = image.shape[:2]
    f = PIXELATE_FACTOR[severity - 1]
    small = _pil(image).resize((max(1, round(w / f)), max(1, round(h / f))), Image.BOX)
    return _back(small.resize((w, h), Image.NEAREST), image.shape[-1])


def contrast(image, severity, rng):
    x = image.astype(np.float64)
    mean = x.mean()
    return np.clip(np.rint(mean + CONTRAST_FACTOR[severity - 1] * (x - mean)), 0, 255).astype(np.uint8)


def occlusion(image, severity, rng):
    h, w = image.shape[:2]
    side = int(round(np.sqrt(OCCLUSION_AREA[severity - 1] * h * w)))
    side = max(1, min(side, h, w))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    out = image.copy()
    out[top:top + side, left:left + side] = 128
    return out


TRANSFORMS: dict[str, Callable] = {"hflip": hflip, "gaussian_noise": gaussian_noise, "gaussian_blur": gaussian_blur,
                                   "jpeg": jpeg, "pixelate": pixelate, "contrast": contrast, "occlusion": occlusion}


IMAGENET_C_PREFIX = "imagenet_c."
RESOLUTION = "resolution"
AUTO_TABLE = "auto"


def imagenet_c_table(table: str, shape) -> str:
    """The constant table an ``imagenet_c.*`` transform uses on an image of ``shape``: ``table`` itself, or for
    ``auto`` the table of its short side (``data.corruptions.table_for``)."""
    from facebench.data.corruptions import table_for

    return table_for(shape) if table == AUTO_TABLE else table


def imagenet_c(image, spec: dict, index: int | str):
    """One ImageNet-C corruption (``spec``: name ``imagenet_c.<corruption>``, severity, seed, table) of the
    sample at ``index`` (an int; ``"index/step"`` for a later step of a list), with the seed
    ``variant_seed(seed, index, corruption, severity)``."""
    from facebench.data.corruptions import corrupt, variant_seed

    name = spec["name"][len(IMAGENET_C_PREFIX):]
    seed = variant_seed(spec["seed"], index if isinstance(index, str) else int(index), name, spec["severity"])
    return corrupt(image, name, spec["severity"], seed, imagenet_c_table(spec["table"], np.shape(image))).image


def resolution(image, spec: dict, index: int | str):
    """``image`` down to short side ``spec["size"]`` px and back up to its own size (Pillow bicubic both ways)."""
    from facebench.data.resolution import degrade_resolution
    from facebench.errors import DataError

    if spec["size"] > min(np.shape(image)[:2]):
        raise DataError(f"transform resolution: size {spec['size']} px exceeds the image's short side "
                        f"({min(np.shape(image)[:2])} px, sample {index}); choose sizes below the face crop's side")
    return degrade_resolution(image, spec["size"])


#: transform families whose functions read their whole spec: ``fn(image, spec, sample index)`` (``"index/step"`` at
#: a later step of a list)
SPEC_TRANSFORMS: dict[str, Callable] = {RESOLUTION: resolution}


def _spec_function(name: str) -> Callable | None:
    if name.startswith(IMAGENET_C_PREFIX):
        return imagenet_c
    return SPEC_TRANSFORMS.get(name)


def _family_code(name: str) -> list:
    """The functions whose source files an ``imagenet_c.*`` / ``resolution`` variant's content depends on."""
    if name.startswith(IMAGENET_C_PREFIX):
        from facebench.data import corruptions
        from facebench.data.corruptions import _common

        return [corruptions.corrupt, corruptions.get_corruption(name[len(IMAGENET_C_PREFIX):]).apply,
                _common.to_float]
    if name == RESOLUTION:
        from facebench.data.resolution import degrade_resolution

        return [degrade_resolution]
    return []


def _check_options(spec: dict, allowed: tuple) -> None:
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ConfigError(f"transform {spec.get('name')!r} has no option {unknown[0]!r}."
                          f"{did_you_mean(unknown[0], allowed)} Options: {', '.join(allowed)}.")


def _integer(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ConfigError(f"transform {what} must be an integer >= {low}; got {value!r}.")
    return int(value)


def _parse_imagenet_c(spec: dict) -> dict:
    """``{name: imagenet_c.<corruption>, severity=3, seed=0, table=auto}``, validated."""
    from facebench.data.corruptions import ALL_CORRUPTIONS, TABLES

    _check_options(spec, ("name", "severity", "seed", "table"))
    corruption = spec["name"][len(IMAGENET_C_PREFIX):]
    if corruption not in ALL_CORRUPTIONS:
        raise ConfigError(f"unknown corruption {corruption!r} in transform {spec['name']!r}."
                          f"{did_you_mean(corruption, ALL_CORRUPTIONS)} Corruptions: {', '.join(ALL_CORRUPTIONS)}.")
    severity = spec.get("severity", 3)
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ConfigError(f"transform severity must be one of 1..5; got {severity!r}.")
    table = spec.get("table", AUTO_TABLE)
    if table != AUTO_TABLE and table not in TABLES:
        raise ConfigError(f"transform {spec['name']!r}: table must be {AUTO_TABLE!r} or one of "
                          f"{', '.join(TABLES)}; got {table!r}.{did_you_mean(str(table), TABLES)}")
    return {"name": spec["name"], "severity": int(severity), "seed": _integer(spec.get("seed", 0), "seed", 0),
            "table": table}


def _parse_resolution(spec: dict) -> dict:
    """``{name: resolution, size: k}`` (k >= 1 px, required), validated."""
    _check_options(spec, ("name", "size"))
    if "size" not in spec:
        raise ConfigError("transform 'resolution' needs `size`: the short side in px to down-sample to, "
                          "e.g. {name: resolution, size: 16}.")
    return {"name": RESOLUTION, "size": _integer(spec["size"], "size", 1)}


def parse_transform(value: Any) -> dict:
    """``"hflip"`` or ``{name, severity=3, seed=0}`` -> a normalised dict (validated)."""
    spec = {"name": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("name"), str) and _spec_function(spec["name"]):
        return _parse_resolution(spec) if spec["name"] == RESOLUTION else _parse_imagenet_c(spec)
    if spec is None or "name" not in spec:
        raise ConfigError(f"transform must be a name, {{name, severity, seed}} or a list of them; got {value!r}. "
                          f"Transforms: {', '.join(TRANSFORMS)}.")
    unknown = set(spec) - {"name", "severity", "seed"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"transform has no option {key!r}.{did_you_mean(key, ('name', 'severity', 'seed'))}")
    name = spec["name"]
    if name not in TRANSFORMS:
        raise ConfigError(f"unknown transform {name!r}.{did_you_mean(name, TRANSFORMS)} "
                          f"Transforms: {', '.join(TRANSFORMS)}, {RESOLUTION}, {IMAGENET_C_PREFIX}<corruption>.")
    severity = int(spec.get("severity", 3))
    if severity not in SEVERITIES:
        raise ConfigError(f"transform severity must be one of 1..5; got {spec.get('severity')!r}.")
    out = {"name": name, "severity": severity, "seed": int(spec.get("seed", 0))}
    if name == "hflip":
        out = {"name": "hflip"}
    return out


def parse_transforms(value: Any) -> list[dict]:
    """A transform or a non-empty list of them (applied first to last) -> their normalised specs."""
    if isinstance(value, (list, tuple)):
        if not value or any(isinstance(v, (list, tuple)) for v in value):
            raise ConfigError(f"a list of transforms must be non-empty and flat, e.g. [{{name: gaussian_blur, "
                              f"severity: 3}}, hflip]; got {value!r}.")
        return [parse_transform(v) for v in value]
    return [parse_transform(value)]


def followed_by(value: Any, last: Any) -> Any:
    """The transform ``value`` (None: none; one transform or a list) then ``last``: ``last`` alone when there is
    no ``value`` (so an untransformed split's variants keep their keys), else the list."""
    if value is None:
        return last
    return [*(value if isinstance(value, (list, tuple)) else [value]), last]


def with_flip(value: Any) -> Any:
    """The transform of the mirrored view of a split transformed by ``value``: ``hflip`` applied last."""
    return followed_by(value, "hflip")


class TransformedImages:
    """An image source with a transform applied on load, seeded per sample index and, from the second step of a
    list of transforms on (``step`` >= 1), per step too: ``[gaussian_noise, gaussian_noise]`` draws two
    independent noises (one seed for both would add the same noise twice)."""

    def __init__(self, images, spec: dict, index: np.ndarray | None = None, step: int = 0):
        self.images, self.spec, self.step = images, spec, int(step)
        self.index = np.arange(len(images)) if index is None else np.asarray(index, dtype=np.int64)
        self.spec_fn = _spec_function(spec["name"])  # a family reading its whole spec (None: the classic ones)
        self.fn = self.spec_fn or TRANSFORMS[spec["name"]]

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> np.ndarray:
        index = int(self.index[i])
        if self.spec_fn is not None:  # the step joins the sample's key in the family's own seed
            return self.spec_fn(self.images.load(i), self.spec, index if not self.step else f"{index}/{self.step}")
        rng = np.random.default_rng([self.spec.get("seed", 0), index, *([self.step] if self.step else [])])
        return self.fn(self.images.load(i), self.spec.get("severity", 1), rng)

    def subset(self, indices) -> "TransformedImages":
        idx = np.asarray(indices, dtype=np.int64)
        return TransformedImages(self.images.subset(idx), self.spec, self.index[idx], self.step)

    def describe(self) -> str:
        return f"{self.images.describe()}, transformed by {self.spec}"

    def sample_digests(self) -> np.ndarray | None:
        """The base source's per-sample digests (``None`` when it has none)."""
        base = getattr(self.images, "sample_digests", None)
        return base() if callable(base) else None

    def content_fingerprint(self, order: np.ndarray | None = None) -> str | None:
        """Hash of the base source's content, the transform's spec, each sample's seed index and the
        transforms' code version, in ``order`` (``None`` when the base source has no content fingerprint)."""
        from facebench.content import code_digest, combine

        base = getattr(self.images, "content_fingerprint", None)
        base = base(order) if callable(base) else None
        if base is None:
            return None
        order = np.arange(len(self)) if order is None else np.asarray(order, dtype=np.int64)
        step = [f"step {self.step}".encode()] if self.step else []  # absent for a first step: keys as before
        return combine("transformed", base, canonical_json(self.spec), self.index[order].astype("<i8").tobytes(),
                       *step, code_digest([type(self), self.fn, *_family_code(self.spec["name"])]))

    def content_stamp(self) -> dict | None:
        """What the decoded-image cache keys on (``None``: the base source is not cacheable)."""
        base = getattr(self.images, "content_stamp", None)
        if not callable(base) or base() is None:
            return None
        return {"content": self.content_fingerprint()}


class TransformedLoader:
    """Wraps a dataset loader: same checks and splits, images transformed (a list: first to last), content tag
    extended by the spec (a list of specs for a list)."""

    def __init__(self, loader, transform: Any):
        self.loader = loader
        self.specs = parse_transforms(transform)
        self.spec = self.specs[0] if len(self.specs) == 1 else self.specs  # [x] is x: one key for the same images

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def check(self, split: str) -> None:
        self.loader.check(split)

    def load(self, split: str):
        from dataclasses import replace

        ds = self.loader.load(split)
        images = ds.images
        for step, spec in enumerate(self.specs):
            images = TransformedImages(images, spec, step=step)
        return replace(ds, images=images, content_tag={**ds.content_tag, "transform": self.spec})
