"""The synthetic-face renderer as first written (facebench.synth.generator before its issue-18 speed-up): every
part evaluated on the whole pixel grid, channel-first. The oracle of the windowed renderer (tests/test_synth_render.py:
the same bytes for the same draws) and its peer in tests/benchmarks/test_bench_render.py. Kept verbatim but for the
imports and ``reference_render``."""

import numpy as np

from facebench.synth.generator import _CHUNK, _resample


def reference_render(draw) -> np.ndarray:
    """uint8 (N, size, size, 3) images of a ``SynthDraw`` (``draw_split``), painted by the code as first written."""
    return _render_chunks(**draw.parameters)


def _render_chunks(expr: np.ndarray, look: dict, occl: dict, chunk_seeds: np.ndarray, size: int, domain: str,
                   severity: float) -> np.ndarray:
    """uint8 (N, size, size, 3) images, rendered and corrupted ``_CHUNK`` faces at a time; chunk k draws its
    pixel noise from its own generator seeded by ``chunk_seeds[k]``."""
    n = expr.shape[0]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for k, start in enumerate(range(0, n, _CHUNK)):
        sl = slice(start, min(n, start + _CHUNK))
        crng = np.random.default_rng(int(chunk_seeds[k]))
        p = {key: val[sl] for key, val in look.items()}
        img = _render(p, expr[sl], size, crng)
        img = _corrupt(img, domain, severity, p, {key: val[sl] for key, val in occl.items()}, crng)
        images[sl] = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return images


def _col(a: np.ndarray) -> np.ndarray:
    """Per-sample vector (B,) -> (B, 1, 1) float32 for broadcasting over the grid."""
    return np.asarray(a, dtype=np.float32)[:, None, None]


def _paint(img: np.ndarray, cover: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-composite ``colour`` over channel-first ``img`` (B, 3, H, W) in place.

    colour is per sample (B, 3) or per pixel (B, 3, H, W); cover is (B, H, W).
    """
    colour = np.asarray(colour, dtype=np.float32)
    for c in range(3):
        plane = img[:, c]
        col = colour[:, c, None, None] if colour.ndim == 2 else colour[:, c]
        tmp = col - plane
        tmp *= cover
        plane += tmp


def _ellipse(u, v, cu, cv, a, b):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    x = (u - cu) / a
    y = (v - cv) / b
    return (np.sqrt(x * x + y * y) - 1.0) * np.minimum(a, b)


def _capsule(u, v, ax, ay, bx, by, r):
    """Signed distance to a thick segment from (ax, ay) to (bx, by) with radius r."""
    pax, pay = u - ax, v - ay
    bax, bay = bx - ax, by - ay
    h = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay), 0.0, 1.0)
    dx, dy = pax - bax * h, pay - bay * h
    return np.sqrt(dx * dx + dy * dy) - r


def _box(u, v, cu, cv, hw, hh):
    return np.maximum(np.abs(u - cu) - hw, np.abs(v - cv) - hh)


class _Frame:
    """Face-local coordinates of a chunk's pixel grid: ``X``, ``Y`` image coordinates in [-1, 1] (pixel
    centres), ``u``, ``v`` face-local (rotated, scaled, centred; v grows downwards), ``soft`` the logistic
    edge scale (about one pixel)."""

    def __init__(self, p: dict, size: int):
        g = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0  # pixel centres in [-1, 1]
        self.X, self.Y = g[None, None, :], g[None, :, None]
        cos, sin = _col(np.cos(p["rot"])), _col(np.sin(p["rot"]))
        s = _col(p["scale"])
        dx, dy = self.X - _col(p["cx"]), self.Y - _col(p["cy"])
        self.u = (dx * cos + dy * sin) / s
        self.v = (-dx * sin + dy * cos) / s
        self.soft = (0.55 / size) / s

    def cover(self, d):
        """Soft coverage in [0, 1] of the region where the signed distance ``d`` is negative."""
        return 1.0 / (1.0 + np.exp(np.clip(d / self.soft, -40.0, 40.0)))


_EYE_V = -0.07  # eye centre height; the brows sit above it


def _render(p: dict, e: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render a chunk of faces as float32 (B, size, size, 3) in [0, 1] (before noise clip).

    Parts are painted back to front: background, head (hair, clothes, neck, ears, face, hair cap), eyes,
    brows, nose, mouth; then the illumination gradient and sensor noise.
    """
    B = e.shape[0]
    f32 = np.float32
    fr = _Frame(p, size)
    skin = p["skin"].astype(f32)
    hair = p["hair"].astype(f32)
    # Background with a soft vertical gradient.
    img = np.empty((B, 3, size, size), dtype=f32)  # channel-first while painting
    img[...] = p["bg"].astype(f32)[:, :, None, None]
    img /= (1.0 + 0.12 * fr.Y)[:, None]
    _paint_head(img, fr, p, skin, hair)
    curve, mopen, mwidth, bang, bhgt, eopen, asym, wrinkle = (_col(e[:, i]) for i in range(e.shape[1]))
    _paint_eyes(img, fr, p, skin, eopen)
    _paint_brows(img, fr, hair, bang, bhgt)
    _paint_nose(img, fr, skin, wrinkle)
    _paint_mouth(img, fr, skin, curve, mopen, mwidth, asym)
    # Illumination gradient and sensor noise.
    phi = p["illum_phi"]
    ramp = _col(np.cos(phi)) * fr.X + _col(np.sin(phi)) * fr.Y
    img *= (1.0 + _col(p["illum_g"]) * ramp)[:, None]
    img += rng.standard_normal(img.shape, dtype=f32) * p["noise_sd"].astype(f32)[:, None, None, None]
    return np.ascontiguousarray(img.transpose(0, 2, 3, 1))


def _paint_head(img: np.ndarray, fr: _Frame, p: dict, skin: np.ndarray, hair: np.ndarray) -> None:
    """Hair behind the head, clothes, neck, ears, the shaded face and the hair cap over the forehead."""
    u, v, cover = fr.u, fr.v, fr.cover
    fa, fb = _col(p["fa"]), _col(p["fb"])
    hair_back = np.maximum(
        _ellipse(u, v, 0.0, -0.06 - _col(p["hair_top"]) * 0.5, fa + 0.09, fb * 0.78 + _col(p["hair_top"])),
        v - _col(p["hair_side"]),
    )
    _paint(img, cover(hair_back), hair)
    _paint(img, cover(_ellipse(u, v, 0.0, 1.55, 1.0, 0.62)), p["clothes"])
    _paint(img, cover(_box(u, v, 0.0, 1.0, 0.21, 0.55)), skin * 0.82)
    for side in (-1.0, 1.0):
        _paint(img, cover(_ellipse(u, v, side * fa, 0.0, 0.09, 0.14)), skin * 0.92)

    # Face with a gentle shading towards the edge.
    face_d = _ellipse(u, v, 0.0, 0.0, fa, fb)
    r2 = (u / fa) ** 2 + (v / fb) ** 2
    shade = (1.0 - 0.10 * np.clip(r2, 0.0, 1.0))[:, None]
    _paint(img, cover(face_d), skin[:, :, None, None] * shade)

    # Hair cap over the forehead (intersection of the head outline and v < hairline).
    cap = np.maximum(
        _ellipse(u, v, 0.0, -0.02 - _col(p["hair_top"]) * 0.5, fa + 0.06, fb * 0.8 + _col(p["hair_top"])),
        v - (_col(p["hairline"]) + 0.35 * u * u),
    )
    _paint(img, cover(cap), hair)


def _paint_eyes(img: np.ndarray, fr: _Frame, p: dict, skin: np.ndarray, eopen: np.ndarray) -> None:
    """White sclera, dark iris clipped to the sclera, eyelid-coloured outline; height follows ``eye_open``."""
    u, v, cover = fr.u, fr.v, fr.cover
    B = img.shape[0]
    eh = 0.062 * eopen
    iris = np.clip(p["pupil"][:, None] + np.array([0.05, 0.03, 0.0]), 0, 1)
    for side in (-1.0, 1.0):
        d_eye = _ellipse(u, v, side * 0.22, _EYE_V, 0.115, eh)
        _paint(img, cover(d_eye - 0.018), skin * 0.55)  # lash line
        sclera = cover(d_eye)
        _paint(img, sclera, np.full((B, 3), 0.96, dtype=np.float32))
        d_iris = _ellipse(u, v, side * 0.22, _EYE_V, 0.055, 0.055)
        _paint(img, sclera * cover(d_iris), iris)


def _paint_brows(img: np.ndarray, fr: _Frame, hair: np.ndarray, bang: np.ndarray, bhgt: np.ndarray) -> None:
    """Thick segments; the inner end raised by +brow_angle, the whole brow by +brow_height."""
    base = _EYE_V - 0.15 - 0.075 * bhgt
    inner_v = base - 0.075 * bang
    outer_v = base + 0.02 * bang + 0.01
    brow_col = hair * 0.75
    for side in (-1.0, 1.0):
        d = _capsule(fr.u, fr.v, side * 0.09, inner_v, side * 0.34, outer_v, 0.032)
        _paint(img, fr.cover(d), brow_col)


def _paint_nose(img: np.ndarray, fr: _Frame, skin: np.ndarray, wrinkle: np.ndarray) -> None:
    """Soft shadow, nostrils, and wrinkle lines over the bridge (``nose_wrinkle``)."""
    u, v, cover = fr.u, fr.v, fr.cover
    _paint(img, 0.35 * cover(_ellipse(u, v, 0.03, 0.10, 0.045, 0.11)), skin * 0.7)
    for side in (-1.0, 1.0):
        _paint(img, 0.8 * cover(_ellipse(u, v, side * 0.045, 0.20, 0.03, 0.02)), skin * 0.45)
    wr = np.clip(wrinkle, 0.0, 1.0)
    for dv in (-0.02, 0.03):
        d = _capsule(u, v, -0.07, 0.0 + dv, 0.07, 0.0 + dv + 0.005, 0.012)
        _paint(img, wr * 0.9 * cover(d), skin * 0.5)


def _paint_mouth(img: np.ndarray, fr: _Frame, skin: np.ndarray, curve, mopen, mwidth, asym) -> None:
    """An upper-lip centre line vu(x) bending with the curvature and tilted by the asymmetry, a lower
    boundary vl = vu + opening * (1 - t^2); lips are the region thickened by r, the dark interior the
    region itself, teeth a band below vu."""
    u, v, cover = fr.u, fr.v, fr.cover
    B, f32 = img.shape[0], np.float32
    my = 0.38
    w = 0.19 * mwidth
    t = np.clip(u / w, -1.2, 1.2)
    vu = my - 0.11 * curve * t * t - 0.09 * np.abs(asym) * np.maximum(t * np.sign(asym + 1e-9), 0.0) ** 2
    vl = vu + 0.17 * mopen * (1.0 - np.minimum(t * t, 1.0)) + 0.004
    d_in = np.maximum(np.maximum(vu - v, v - vl), np.abs(u) - w)
    lip_col = np.clip(skin * np.array([0.85, 0.55, 0.55], dtype=f32) + np.array([0.08, 0.0, 0.0], f32), 0, 1)
    _paint(img, cover(d_in - 0.025), lip_col)
    interior = cover(d_in)
    _paint(img, interior, np.tile(np.array([[0.25, 0.04, 0.06]], dtype=f32), (B, 1)))
    teeth = interior * cover(v - (vu + 0.045))
    _paint(img, teeth * np.clip(mopen * 2.0, 0.0, 1.0), np.full((B, 3), 0.93, dtype=f32))


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
    if sigma <= 0:
        return img
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = img
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if radius < img.shape[axis] else "edge")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for j, kj in enumerate(k):
            acc += kj * np.take(padded, np.arange(j, j + n), axis=axis)
        out = acc
    return out


def _occlude(img: np.ndarray, severity: float, p: dict, occl: dict) -> np.ndarray:
    """Opaque occluder in face coordinates: sunglasses band, lower-face mask or a patch."""
    B = img.shape[0]
    fr = _Frame(p, img.shape[1])
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
    d = _box(fr.u, fr.v, _col(cu), _col(cv), _col(hw), _col(hh)) - 0.02
    colour = np.where(
        (kind == 0)[:, None],
        np.full((B, 3), 0.06),
        np.where((kind == 1)[:, None], np.array([0.75, 0.85, 0.95]), occl["colour"]),
    ).astype(np.float32)
    cov = fr.cover(d)[..., None]
    return img + cov * (colour[:, None, None, :] - img)
