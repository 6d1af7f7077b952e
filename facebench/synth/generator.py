"""Deterministic procedural cartoon-face renderer (NumPy only).

``render_split`` draws a labelled set of small RGB face images whose facial-expression
class is carried by a handful of facial parameters (mouth curvature, opening, width and
asymmetry, brow angle and height, eye opening, nose wrinkle). Each class has a prototype
parameter vector; every sample gets its own expression intensity and Gaussian parameter
noise, so neighbouring classes overlap and a small CNN reaches roughly 80 % accuracy
rather than 100 %. Nuisance factors (position, scale, rotation, face shape, skin tone,
hair, clothes and background colours, illumination gradient, pixel noise) vary freely and
are independent of the label. Optional domain corruptions (blur, noise, low contrast, low
resolution, occlusion) are applied after rendering.

Everything is drawn from one NumPy generator seeded by ``(seed, split, domain, classes)``,
so the same call always returns identical bytes and different splits or domains never
share samples. Change ``GENERATOR_VERSION`` whenever the rendered bytes change: it goes
into dataset fingerprints.

Shapes are implicit: each part is a signed distance field over a batch x H x W grid in
face-local coordinates, turned into soft (anti-aliased) coverage with a logistic edge of
about one pixel, and alpha-composited back to front (``facebench.synth.painter``: each part
only where it can change a float32 value). Chunks of ``_CHUNK`` faces, each with its own
noise generator, render in threads; neither the threads nor the painter's blocks and windows
change a byte (tests/test_synth_render.py, tests/test_synth_pixels.py).
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from facebench.errors import ConfigError, did_you_mean
from facebench.synth.painter import Frame, box, col, render_faces

__all__ = [
    "BASIC_EXPRESSIONS",
    "COMPOUND_EXPRESSIONS",
    "COMPOUND_COMPONENTS",
    "DOMAINS",
    "SKIN_TONES",
    "FACE_SHAPES",
    "GENERATOR_VERSION",
    "FREQUENCY_ORDER",
    "PARAM_NAMES",
    "SynthDraw",
    "SynthSplit",
    "class_names",
    "class_counts",
    "draw_split",
    "expression_prototypes",
    "render_split",
]

GENERATOR_VERSION = "2"  # 2: low_resolution resampled by ordered taps, not BLAS (the same bytes on every CPU)

BASIC_EXPRESSIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
# Most to least frequent, as in RAF-DB's basic-expression training set.
FREQUENCY_ORDER = ("happiness", "neutral", "sadness", "surprise", "anger", "disgust", "fear")

COMPOUND_EXPRESSIONS = (
    "happily_surprised",
    "happily_disgusted",
    "sadly_angry",
    "fearfully_surprised",
    "angrily_disgusted",
)
COMPOUND_COMPONENTS = {
    "happily_surprised": ("happiness", "surprise"),
    "happily_disgusted": ("happiness", "disgust"),
    "sadly_angry": ("sadness", "anger"),
    "fearfully_surprised": ("fear", "surprise"),
    "angrily_disgusted": ("anger", "disgust"),
}

DOMAINS = ("clean", "blur", "noise", "low_contrast", "low_resolution", "occlusion")
SKIN_TONES = ("tone1", "tone2", "tone3", "tone4")  # light to dark
FACE_SHAPES = ("round", "oval", "long")

_CLASS_SETS = ("basic", "compound")

# ---------------------------------------------------------------------------------------
# Expression parameters
# ---------------------------------------------------------------------------------------

PARAM_NAMES = (
    "mouth_curve",  # + corners up (smile), - corners down (frown)
    "mouth_open",  # 0 closed .. 1 wide open
    "mouth_width",  # relative to neutral (1.0)
    "brow_angle",  # + inner ends raised (sad, fear), - inner ends lowered (anger)
    "brow_height",  # + raised, - lowered
    "eye_open",  # relative to neutral (1.0)
    "mouth_asym",  # one-sided upper-lip raise (disgust); sign drawn at random
    "nose_wrinkle",  # 0 .. 1
)

#                           curve  open  width  b_ang  b_hgt  eye   asym  wrinkle
_PROTOTYPES = {
    "neutral": np.array([0.00, 0.00, 1.00, 0.00, 0.00, 1.00, 0.00, 0.00]),
    "happiness": np.array([0.95, 0.35, 1.25, 0.10, 0.10, 0.75, 0.00, 0.00]),
    "sadness": np.array([-0.80, 0.00, 0.90, 0.90, -0.10, 0.80, 0.00, 0.00]),
    "surprise": np.array([0.00, 1.00, 0.80, 0.20, 1.00, 1.45, 0.00, 0.00]),
    "fear": np.array([-0.35, 0.55, 1.15, 0.80, 0.65, 1.35, 0.00, 0.00]),
    "disgust": np.array([-0.35, 0.15, 0.95, -0.35, -0.30, 0.70, 0.90, 0.85]),
    "anger": np.array([-0.35, 0.05, 0.90, -1.00, -0.50, 0.95, 0.00, 0.25]),
}
# Per-parameter noise scale (multiplied by _EXPRESSION_NOISE).
_PARAM_SD = np.array([0.45, 0.30, 0.15, 0.45, 0.40, 0.25, 0.40, 0.40])
_EXPRESSION_NOISE = 0.8
# Expression intensity: sample = neutral + intensity * (prototype - neutral) + noise.
_INTENSITY_RANGE = (0.55, 1.15)
_PARAM_LO = np.array([-1.6, 0.0, 0.6, -1.6, -1.2, 0.35, 0.0, 0.0])
_PARAM_HI = np.array([1.6, 1.4, 1.5, 1.6, 1.5, 1.8, 1.5, 1.0])

# ---------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------

_SKIN_RGB = np.array(
    [
        [0.96, 0.83, 0.72],
        [0.87, 0.67, 0.52],
        [0.65, 0.45, 0.31],
        [0.40, 0.26, 0.17],
    ]
)
_SKIN_TONE_P = np.array([0.40, 0.30, 0.18, 0.12])  # demographic-like imbalance
_FACE_AXES = np.array([[0.60, 0.68], [0.54, 0.74], [0.48, 0.80]])  # half-width, half-height
_HAIR_RGB = np.array(
    [
        [0.08, 0.06, 0.05],  # black
        [0.30, 0.18, 0.10],  # dark brown
        [0.55, 0.36, 0.18],  # light brown
        [0.85, 0.70, 0.40],  # blond
        [0.65, 0.25, 0.10],  # red
        [0.60, 0.60, 0.60],  # grey
    ]
)
_HAIR_P = np.array([0.30, 0.25, 0.15, 0.12, 0.08, 0.10])

_CHUNK = 256  # images rendered at a time (bounds memory; fixed so output never depends on it)


@dataclass(frozen=True)
class SynthSplit:
    """One rendered split. All arrays have length N."""

    images: np.ndarray  # uint8 (N, size, size, 3) RGB
    labels: np.ndarray  # str, canonical expression names
    ids: np.ndarray  # str, unique within a (split, domain, classes) call and stable
    skin_tone: np.ndarray  # str, one of SKIN_TONES
    face_shape: np.ndarray  # str, one of FACE_SHAPES
    domain: np.ndarray  # str, constant per call

    def __len__(self) -> int:
        return int(self.images.shape[0])


def class_names(classes: str = "basic") -> tuple[str, ...]:
    """The label vocabulary of a class set, in canonical order."""
    _check_choice("classes", classes, _CLASS_SETS)
    return BASIC_EXPRESSIONS if classes == "basic" else COMPOUND_EXPRESSIONS


def expression_prototypes(classes: str = "basic") -> dict[str, np.ndarray]:
    """Prototype parameter vector (ordered as PARAM_NAMES) of every class in a class set."""
    names = class_names(classes)
    if classes == "basic":
        return {c: _PROTOTYPES[c].copy() for c in names}
    return {c: 0.5 * (_PROTOTYPES[a] + _PROTOTYPES[b]) for c, (a, b) in COMPOUND_COMPONENTS.items()}


def class_counts(n: int, classes: str = "basic", imbalance: float = 4.0) -> dict[str, int]:
    """Exact per-class counts for ``n`` samples, in canonical class order.

    Frequencies decay geometrically from the most to the least frequent class with
    ``max/min == imbalance`` (frequency order FREQUENCY_ORDER for basic classes, tuple
    order for compound ones); counts are rounded by largest remainder so they sum to n.
    """
    names = class_names(classes)
    n = int(n)
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}.")
    imbalance = float(imbalance)
    if not np.isfinite(imbalance) or imbalance < 1.0:
        raise ConfigError(f"imbalance must be a finite number >= 1 (1 = balanced), got {imbalance}.")
    order = FREQUENCY_ORDER if classes == "basic" else COMPOUND_EXPRESSIONS
    k = len(order)
    weights = imbalance ** (-np.arange(k) / (k - 1))
    quota = n * weights / weights.sum()
    counts = np.floor(quota).astype(np.int64)
    remainder = quota - counts
    # Largest remainder first; ties go to the more frequent class (stable sort by rank).
    extra = np.argsort(-remainder, kind="stable")[: n - int(counts.sum())]
    counts[extra] += 1
    by_name = dict(zip(order, counts.tolist()))
    return {c: by_name[c] for c in names}


# ---------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------


def render_split(
    split: str,
    n: int,
    *,
    seed: int = 0,
    domain: str = "clean",
    classes: str = "basic",
    imbalance: float = 4.0,
    severity: float = 1.0,
    size: int = 48,
) -> SynthSplit:
    """Render ``n`` labelled synthetic faces.

    split: any name ("train", "val", "test", ...); it seeds the generator, so different
        splits never share samples.
    domain: one of DOMAINS; the corruption applied after rendering ("clean" = none).
    classes: "basic" (BASIC_EXPRESSIONS) or "compound" (COMPOUND_EXPRESSIONS).
    imbalance: ratio between the most and least frequent class; 1.0 = balanced.
    severity: strength of the domain corruption; 0 leaves the rendered faces untouched,
        1 is the reference strength, larger values are stronger. At severity s (and 48 px):
        blur = Gaussian sigma s px; noise = Gaussian sd 0.1 s (of full range);
        low_contrast = contrast x (1 - 0.7 s) about the image mean; low_resolution =
        area downsampling by 1 + 3 s (x4 at s = 1) then bilinear upsampling; occlusion =
        an opaque sunglasses band, lower-face mask or colour patch whose size grows with s.
    size: image side in pixels (the reference model expects 48).

    The same as ``draw_split(...)`` followed by its ``render()``.
    """
    d = draw_split(split, n, seed=seed, domain=domain, classes=classes, imbalance=imbalance, severity=severity,
                   size=size)
    return SynthSplit(images=d.render(), labels=d.labels, ids=d.ids, skin_tone=d.skin_tone,
                      face_shape=d.face_shape, domain=d.domain)


@dataclass(frozen=True, eq=False)
class SynthDraw:
    """Everything of one split but its pixels: labels, ids and attributes (all of length N) and the
    per-face parameters they were drawn with. ``render()`` paints the pixels: the bytes ``render_split``
    returns for the same arguments. Drawing is cheap (vectorised); rendering is the expensive part."""

    labels: np.ndarray  # str, canonical expression names
    ids: np.ndarray  # str, unique within a (split, domain, classes) call and stable
    skin_tone: np.ndarray  # str, one of SKIN_TONES
    face_shape: np.ndarray  # str, one of FACE_SHAPES
    domain: np.ndarray  # str, constant per call
    parameters: dict  # the arguments of ``_render_chunks``: face parameters, chunk seeds, size, domain, severity

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def size(self) -> int:
        return int(self.parameters["size"])

    def render(self) -> np.ndarray:
        """uint8 (N, size, size, 3) RGB images."""
        return _render_chunks(**self.parameters)


def draw_split(split: str, n: int, *, seed: int = 0, domain: str = "clean", classes: str = "basic",
               imbalance: float = 4.0, severity: float = 1.0, size: int = 48) -> SynthDraw:
    """The labels, ids, attributes and face parameters of ``render_split``'s split, without its pixels
    (arguments as there); the generator's draws are the same, in the same order, so the pixels that
    ``render()`` paints later are the same bytes."""
    severity, size = _check_render_args(split, domain, classes, severity, size, seed)
    counts = class_counts(n, classes, imbalance)
    n = int(n)
    names = class_names(classes)

    rng = np.random.default_rng([int(seed), _crc(split), _crc(domain), _crc(classes)])

    label_idx = np.repeat(np.arange(len(names)), [counts[c] for c in names])
    label_idx = label_idx[rng.permutation(n)]
    expr = _draw_expression(rng, label_idx, classes)
    look = _draw_appearance(rng, n)
    occl = _draw_occlusion(rng, n)
    chunk_seeds = rng.integers(0, 2**63 - 1, size=max(1, -(-n // _CHUNK)))

    suffix = "" if classes == "basic" else "compound-"
    empty = np.array([], dtype=str)
    return SynthDraw(
        labels=np.array(names, dtype=str)[label_idx] if n else empty,
        ids=np.array([f"{split}-{domain}-{suffix}{i:06d}" for i in range(n)], dtype=str),
        skin_tone=np.array(SKIN_TONES, dtype=str)[look["tone"]] if n else empty,
        face_shape=np.array(FACE_SHAPES, dtype=str)[look["shape"]] if n else empty,
        domain=np.full(n, domain, dtype=f"<U{max(1, len(domain))}"),
        parameters={"expr": expr, "look": look, "occl": occl, "chunk_seeds": chunk_seeds, "size": size,
                    "domain": domain, "severity": severity},
    )


def _check_render_args(split, domain, classes, severity, size, seed) -> tuple[float, int]:
    """ConfigError on a bad ``render_split`` argument; returns (severity, size) as float and int."""
    if not isinstance(split, str) or not split:
        raise ConfigError(f"split must be a non-empty string, got {split!r}.")
    _check_choice("domain", domain, DOMAINS)
    _check_choice("classes", classes, _CLASS_SETS)
    severity = float(severity)
    if not np.isfinite(severity) or severity < 0:
        raise ConfigError(f"severity must be a finite number >= 0, got {severity}.")
    size = int(size)
    if size < 16:
        raise ConfigError(f"size must be >= 16 pixels, got {size}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    return severity, size


def _render_chunks(expr: np.ndarray, look: dict, occl: dict, chunk_seeds: np.ndarray, size: int, domain: str,
                   severity: float) -> np.ndarray:
    """uint8 (N, size, size, 3) images, rendered and corrupted ``_CHUNK`` faces at a time; chunk k draws its
    pixel noise from its own generator seeded by ``chunk_seeds[k]``. Chunks share nothing, so they run in
    threads (NumPy releases the GIL in its loops) and the bytes never depend on the number of threads."""
    n = expr.shape[0]
    images = np.empty((n, size, size, 3), dtype=np.uint8)

    def chunk(k: int) -> None:
        sl = slice(k * _CHUNK, min(n, (k + 1) * _CHUNK))
        crng = np.random.default_rng(int(chunk_seeds[k]))
        p = {key: val[sl] for key, val in look.items()}
        img = _render(p, expr[sl], size, crng)
        img = _corrupt(img, domain, severity, p, {key: val[sl] for key, val in occl.items()}, crng)
        np.clip(img, 0.0, 1.0, out=img)  # img is this chunk's own array
        img *= 255.0
        images[sl] = np.rint(img, out=img)  # integral values in [0, 255]: the uint8 cast is exact

    chunks = range(-(-n // _CHUNK))
    threads = min(render_threads(), len(chunks))
    if threads <= 1:
        for k in chunks:
            chunk(k)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(chunk, chunks))
    return images


def render_threads() -> int:
    """Threads that render chunks: the CPUs this process may run on (its affinity mask on Linux), at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


# ---------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f'Unknown {what} "{value}". Choose one of: {", ".join(choices)}.'
            + did_you_mean(value, choices)
        )


def _draw_expression(rng: np.random.Generator, label_idx: np.ndarray, classes: str) -> np.ndarray:
    n = label_idx.shape[0]
    neutral = _PROTOTYPES["neutral"]
    if classes == "basic":
        protos = np.stack([_PROTOTYPES[c] for c in BASIC_EXPRESSIONS])
        target = protos[label_idx]
    else:
        first = np.stack([_PROTOTYPES[COMPOUND_COMPONENTS[c][0]] for c in COMPOUND_EXPRESSIONS])
        second = np.stack([_PROTOTYPES[COMPOUND_COMPONENTS[c][1]] for c in COMPOUND_EXPRESSIONS])
        mix = rng.uniform(0.4, 0.6, size=(n, 1))
        target = mix * first[label_idx] + (1.0 - mix) * second[label_idx]
    intensity = rng.uniform(*_INTENSITY_RANGE, size=(n, 1))
    noise = rng.standard_normal((n, len(PARAM_NAMES))) * (_PARAM_SD * _EXPRESSION_NOISE)
    params = neutral + intensity * (target - neutral) + noise
    params = np.clip(params, _PARAM_LO - 1.0, _PARAM_HI + 1.0)
    params[:, 1] = np.maximum(params[:, 1], 0.0)  # mouth opening
    params = np.clip(params, _PARAM_LO, _PARAM_HI)
    side = rng.choice(np.array([-1.0, 1.0]), size=n)  # which side the lip is raised
    params[:, 6] *= side
    return params.astype(np.float32)


def _draw_appearance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    tone = rng.choice(len(SKIN_TONES), size=n, p=_SKIN_TONE_P)
    shape = rng.integers(0, len(FACE_SHAPES), size=n)
    skin = _SKIN_RGB[tone] * rng.normal(1.0, 0.035, size=(n, 1)) + rng.normal(0, 0.015, size=(n, 3))
    hair_idx = rng.choice(len(_HAIR_RGB), size=n, p=_HAIR_P)
    hair = _HAIR_RGB[hair_idx] * rng.uniform(0.8, 1.15, size=(n, 1)) + rng.normal(0, 0.02, size=(n, 3))
    bg = rng.uniform(0.1, 0.95, size=(n, 3))
    bg = 0.55 * bg + 0.45 * bg.mean(axis=1, keepdims=True)  # muted colours
    clothes = rng.uniform(0.05, 0.95, size=(n, 3))
    axes = _FACE_AXES[shape] * rng.uniform(0.96, 1.04, size=(n, 2))
    return {
        "tone": tone,
        "shape": shape,
        "skin": np.clip(skin, 0.0, 1.0),
        "hair": np.clip(hair, 0.0, 1.0),
        "bg": bg,
        "clothes": clothes,
        "fa": axes[:, 0],
        "fb": axes[:, 1],
        "cx": np.clip(rng.normal(0.0, 0.045, size=n), -0.12, 0.12),
        "cy": np.clip(rng.normal(0.03, 0.045, size=n), -0.09, 0.15),
        "scale": rng.uniform(0.82, 0.97, size=n),
        "rot": np.clip(rng.normal(0.0, np.deg2rad(6.0), size=n), -np.deg2rad(15), np.deg2rad(15)),
        "hair_top": rng.uniform(0.04, 0.16, size=n),  # volume above the head
        "hair_side": rng.uniform(-0.2, 0.55, size=n),  # how far down the sides hair reaches
        "hairline": rng.uniform(-0.50, -0.40, size=n),
        "pupil": rng.uniform(0.05, 0.30, size=n),  # iris darkness
        "illum_g": rng.uniform(0.0, 0.30, size=n),
        "illum_phi": rng.uniform(0.0, 2 * np.pi, size=n),
        "noise_sd": rng.uniform(0.005, 0.025, size=n),
    }


def _draw_occlusion(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "kind": rng.integers(0, 3, size=n),  # 0 sunglasses band, 1 lower-face mask, 2 patch
        "colour": rng.uniform(0.0, 1.0, size=(n, 3)),
        "px": rng.uniform(-0.35, 0.35, size=n),
        "py": rng.uniform(-0.35, 0.45, size=n),
        "pw": rng.uniform(0.18, 0.30, size=n),
        "ph": rng.uniform(0.14, 0.26, size=n),
        "shift": rng.normal(0.0, 0.04, size=n),
    }


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------


def _render(p: dict, e: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render a chunk of faces as float32 (B, size, size, 3) in [0, 1] (before noise clip): see
    ``facebench.synth.painter.render_faces``. The sensor noise is the chunk generator's first draw."""
    noise = rng.standard_normal((e.shape[0], 3, size, size), dtype=np.float32)
    return render_faces(p, e, size, noise)


# ---------------------------------------------------------------------------------------
# Domain corruptions (operate on float images in [0, 1]; severity 0 == identity)
# ---------------------------------------------------------------------------------------


def _corrupt(img, domain, severity, p, occl, rng):
    # Draw the corruption's randomness unconditionally so the draws, and hence every other
    # sample, do not depend on the severity.
    noise = rng.standard_normal(img.shape, dtype=np.float32) if domain == "noise" else None
    if domain == "clean" or severity == 0.0:
        return img
    size = img.shape[1]
    if domain == "blur":
        return _gaussian_blur(img, sigma=1.0 * severity * size / 48.0)  # 1 px at 48 px
    if domain == "noise":
        return img + noise * np.float32(0.10 * severity)
    if domain == "low_contrast":
        k = np.float32(max(0.0, 1.0 - 0.7 * severity))
        mean = img.mean(axis=(1, 2, 3), keepdims=True)
        return mean + (img - mean) * k
    if domain == "low_resolution":
        factor = 1.0 + 3.0 * severity  # x4 at severity 1
        return _resample(img, max(2, int(round(size / factor))))
    if domain == "occlusion":
        return _occlude(img, severity, p, occl)
    raise AssertionError(domain)


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the two spatial axes of (B, H, W, 3), reflect-padded, taps summed in order;
    ``_BLUR_BLOCK`` faces at a time (each face on its own: the block only keeps the passes in the CPU cache)."""
    if sigma <= 0:
        return img
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = np.empty_like(img)
    for b in range(0, img.shape[0], _BLUR_BLOCK):
        out[b:b + _BLUR_BLOCK] = _blur_block(img[b:b + _BLUR_BLOCK], k, radius)
    return out


_BLUR_BLOCK = 32


def _blur_block(img: np.ndarray, k: np.ndarray, radius: int) -> np.ndarray:
    out = img
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if radius < img.shape[axis] else "edge")
        acc, term = np.zeros_like(out), np.empty_like(out)
        n = out.shape[axis]
        for j, kj in enumerate(k):
            tap = padded[:, j:j + n] if axis == 1 else padded[:, :, j:j + n]
            acc += np.multiply(kj, tap, out=term)
        out = acc
    return out


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix averaging source pixels over each destination pixel's footprint."""
    edges = np.linspace(0.0, src, dst + 1)
    m = np.zeros((dst, src), dtype=np.float32)
    for i in range(dst):
        lo, hi = edges[i], edges[i + 1]
        for j in range(int(np.floor(lo)), int(np.ceil(hi))):
            m[i, j] = min(hi, j + 1) - max(lo, j)
        m[i] /= m[i].sum()
    return m


def _bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix for bilinear upsampling with pixel-centre alignment."""
    pos = (np.arange(dst) + 0.5) * src / dst - 0.5
    pos = np.clip(pos, 0.0, src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    frac = (pos - lo).astype(np.float32)
    m = np.zeros((dst, src), dtype=np.float32)
    m[np.arange(dst), lo] += 1.0 - frac
    m[np.arange(dst), hi] += frac
    return m


def _resample(img: np.ndarray, low: int) -> np.ndarray:
    """Area-average down to ``low`` px, then bilinear back up, along both spatial axes of (B, H, W, 3).

    Each filter is applied as an ordered sum of its non-zero taps (elementwise float32 products and sums,
    exact IEEE operations), never through a BLAS matrix product, whose summation order and rounding depend
    on the CPU (an AVX-512 machine rounded a few pixels differently from an AVX2 one)."""
    size = img.shape[1]
    down, up = _taps(_area_matrix(size, low)), _taps(_bilinear_matrix(low, size))
    small = _apply_taps(_apply_taps(img, *down, axis=1), *down, axis=2)
    return _apply_taps(_apply_taps(small, *up, axis=1), *up, axis=2)


def _taps(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i``'s non-zero columns of ``m`` in ascending order, padded with weight-0 taps to one width."""
    rows = [np.flatnonzero(row) for row in m]
    width = max(len(r) for r in rows)
    index = np.zeros((m.shape[0], width), dtype=np.intp)
    weight = np.zeros((m.shape[0], width), dtype=np.float32)
    for i, cols in enumerate(rows):
        index[i, :len(cols)] = cols
        weight[i, :len(cols)] = m[i, cols]
    return index, weight


def _apply_taps(img: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """out[..., i, ...] = sum_t weight[i, t] * img[..., index[i, t], ...] along ``axis``, t in order."""
    shape = [1] * img.ndim
    shape[axis] = index.shape[0]
    out = None
    for t in range(index.shape[1]):
        term = np.take(img, index[:, t], axis=axis) * weight[:, t].reshape(shape)
        out = term if out is None else out + term
    return out


def _occlude(img: np.ndarray, severity: float, p: dict, occl: dict) -> np.ndarray:
    """Opaque occluder in face coordinates: sunglasses band, lower-face mask or a patch."""
    B = img.shape[0]
    fr = Frame(p, img.shape[1])
    kind = occl["kind"]
    sev = float(severity)
    sh = occl["shift"]
    # Half-height of each occluder grows with severity (sizes at severity 1 in comments).
    cu = np.where(kind == 2, occl["px"], 0.0)
    cv = np.select([kind == 0, kind == 1], [-0.07 + sh, 0.42 + sh], occl["py"])
    hw = np.select([kind == 0, kind == 1], [0.42 + 0.0 * sh, 0.36], occl["pw"] * min(1.5, 0.5 + 0.5 * sev))
    hh = np.select(
        [kind == 0, kind == 1],
        [0.10 * sev, 0.20 * sev],  # sunglasses band; mask from nose to chin
        occl["ph"] * min(1.5, 0.5 + 0.5 * sev),
    )
    hh = np.maximum(hh, 1e-3)
    d = box(fr.u, fr.v, col(cu), col(cv), col(hw), col(hh)) - 0.02
    colour = np.where(
        (kind == 0)[:, None],
        np.full((B, 3), 0.06),
        np.where((kind == 1)[:, None], np.array([0.75, 0.85, 0.95]), occl["colour"]),
    ).astype(np.float32)
    cov = np.moveaxis(fr.cover(d), -1, 0)[..., None]  # the frame is batch-last
    return img + cov * (colour[:, None, None, :] - img)
