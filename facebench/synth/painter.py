"""The face painter of ``facebench.synth.generator``: signed distance fields, soft coverage, compositing.

Shapes are implicit: each part is a signed distance field over a grid of face-local coordinates, turned into soft
(anti-aliased) coverage ``1 / (1 + exp(clip(d / soft, -40, 40)))`` with a logistic edge of about one pixel, and
alpha-composited back to front in float32 (the few fields that NumPy's type rules make float64 -- the clothes,
ears, irises, nose shadow and nostrils -- stay float64: the bytes depend on it). The arithmetic of every pixel is
that of the renderer as first written (tests/_synth_reference.py), operation for operation; what changed is
which pixels are computed, in what order and layout -- none of which changes a bit:

* faces are painted ``BLOCK`` at a time, neighbours on the image together, channel-first and batch-last
  (3, H, W, B) so that a window's rows are long contiguous runs; every operation is per face and per pixel;
* each layer (``_LAYERS``) is evaluated only inside a pixel window per block, holding every pixel where its
  coverage can still move a float32 value. Outside it, painting is exactly the identity: a composite
  ``x + (c - x) * a`` leaves ``x > 0`` unchanged when ``|c - x| * a < x * 2**-25`` (half the float32 spacing
  below ``x``). The values a layer paints over stay above ``L``, the smallest of the background and of the colours
  painted so far (composites are convex combinations), and its colours are at most ``C``, so coverage
  ``a <= 2**-25 * min(1, L / C)`` suffices: the window is where ``d < reach * soft`` with
  ``reach = 25 ln 2 + ln max(1, C / L)`` per face and layer (17 to 21, about five pixels at 48 px). A face whose
  reach would pass the clip at 40 (a colour channel at or near 0, e.g. black hair clipped to 0) is painted on
  the whole grid, in a block of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

__all__ = ["BLOCK", "Frame", "box", "col", "render_faces"]

BLOCK = 64  # faces painted together (the working set stays in the CPU cache); never changes a value
EYE_V = -0.07  # eye centre height; the brows sit above it
_CLIP = 40.0  # cover() clips d / soft to [-_CLIP, _CLIP]
_HALF_SPACING = 25.0 * np.log(2.0)  # -ln of the relative half-spacing of float32 (2**-25)
_SLACK = 0.01  # added to the reach: rounding of the coverage and of the composite
# A float32 composite can land below the smaller of its operands by about 2**-23 of the larger (<= 1.1), once per
# paint (a few dozen per face); 0.999 x / 1.001 x cover the float32 rounding of the colours themselves.
_UNDERSHOOT = 1e-5
_BAND = 2  # blocks per band of faces sorted by height
_PIXEL_SLACK = 0.01  # pixels added to each side of a window: rounding of the face-local grid
_F32 = np.float32


def col(a) -> np.ndarray:
    """Per-sample vector (B,) as float32, for broadcasting over a batch-last (H, W, B) grid."""
    return np.asarray(a, dtype=_F32)


class Frame:
    """Face-local coordinates of a block's pixel grid, batch last: ``X`` (1, W, 1), ``Y`` (H, 1, 1) image
    coordinates in [-1, 1] (pixel centres), ``u``, ``v`` (H, W, B) face-local (rotated, scaled, centred; v grows
    downwards), ``soft`` (B,) the logistic edge scale (about one pixel, in face units). Batch last keeps a
    window's rows long, contiguous runs (w x B values)."""

    def __init__(self, p: dict, size: int):
        g = ((np.arange(size, dtype=_F32) + 0.5) / size) * 2.0 - 1.0  # pixel centres in [-1, 1]
        self.X, self.Y = g[None, :, None], g[:, None, None]
        cos, sin = col(np.cos(p["rot"])), col(np.sin(p["rot"]))
        s = col(p["scale"])
        dx, dy = self.X - col(p["cx"]), self.Y - col(p["cy"])
        self.u = (dx * cos + dy * sin) / s
        self.v = (-dx * sin + dy * cos) / s
        self.soft = (0.55 / size) / s

    def cover(self, d: np.ndarray) -> np.ndarray:
        """Soft coverage in [0, 1] of the region where the signed distance ``d`` is negative."""
        x = d / (self.soft if d.dtype == _F32 else self.soft.astype(d.dtype))  # the same quotient, no mixed loop
        np.clip(x, -_CLIP, _CLIP, out=x)
        np.exp(x, out=x)
        x += 1.0
        return np.divide(1.0, x, out=x)

    def crop(self, rows: slice, cols: slice) -> Frame:
        """The same frame restricted to a pixel window (views, no copies)."""
        sub = object.__new__(Frame)
        sub.X, sub.Y = self.X[:, cols], self.Y[rows]
        sub.u, sub.v = self.u[rows, cols], self.v[rows, cols]
        sub.soft = self.soft
        return sub


# ---------------------------------------------------------------------------------------
# Distance fields and compositing (the arithmetic of every pixel is fixed: same operations, same order)
# ---------------------------------------------------------------------------------------


def paint(img: np.ndarray, cover: np.ndarray, colour) -> None:
    """Alpha-composite ``colour`` over channel-first, batch-last ``img`` (3, H, W, B) in place:
    ``img += (colour - img) * cover`` in float32 (a float64 cover multiplies in float64, rounded to float32).

    colour is per sample (B, 3) or per pixel (3, H, W, B); cover is (H, W, B).
    """
    colour = np.asarray(colour, dtype=_F32)
    if colour.ndim == 2:
        colour = _channels(colour)
    tmp = colour - img
    tmp *= cover
    img += tmp


def _channels(colour: np.ndarray) -> np.ndarray:
    """Per-sample colours (B, 3) as a contiguous (3, 1, 1, B) (a strided one makes NumPy loop over channels)."""
    return np.ascontiguousarray(colour.T)[:, None, None, :]


def ellipse(u, v, cu, cv, a, b):
    """Approximate signed distance to an axis-aligned ellipse (negative inside)."""
    x, y = _scaled(u, cu, a), _scaled(v, cv, b)
    x *= x
    y *= y
    x += y
    np.sqrt(x, out=x)
    x -= 1.0
    return x * np.minimum(a, b)


def _scaled(u, c, a):
    """(u - c) / a, as a new array; u - 0.0 is u itself, bit for bit, so a centre at 0.0 skips the pass."""
    if isinstance(c, float) and c == 0.0:
        return u / a
    x = u - c
    x /= a
    return x


def capsule(u, v, ax, ay, bx, by, r):
    """Signed distance to a thick segment from (ax, ay) to (bx, by) with radius r."""
    dx, dy = u - ax, v - ay
    bax, bay = bx - ax, by - ay
    h = dx * bax
    h += dy * bay
    h /= bax * bax + bay * bay
    np.clip(h, 0.0, 1.0, out=h)
    dx -= bax * h
    dy -= bay * h
    dx *= dx
    dy *= dy
    dx += dy
    np.sqrt(dx, out=dx)
    dx -= r
    return dx


def box(u, v, cu, cv, hw, hh):
    """Signed (Chebyshev) distance to an axis-aligned box."""
    return np.maximum(np.abs(u - cu) - hw, np.abs(v - cv) - hh)


# ---------------------------------------------------------------------------------------
# Windows: the pixels of a block where a layer can change a value
# ---------------------------------------------------------------------------------------


def _vec(a) -> np.ndarray:
    """A per-face parameter as a float64 vector (for window bounds; the painting itself uses ``col``)."""
    return np.asarray(a, dtype=np.float64)


def ellipse_box(cu, cv, a, b, margin) -> tuple:
    """Face-local bounds (u0, u1, v0, v1) of ``ellipse(...) < margin``: sqrt(x^2 + y^2) < 1 + margin / min(a, b)."""
    k = 1.0 + margin / np.minimum(a, b)
    return cu - a * k, cu + a * k, cv - b * k, cv + b * k


def capsule_box(ax, ay, bx, by, r, margin) -> tuple:
    """Face-local bounds of ``capsule(...) < margin`` (a true distance: the segment's box grown by r + margin)."""
    g = r + margin
    return np.minimum(ax, bx) - g, np.maximum(ax, bx) + g, np.minimum(ay, by) - g, np.maximum(ay, by) + g


def layer_reach(layers: list, p: dict) -> np.ndarray:
    """(len(layers), B) reach of each layer's coverage in units of ``soft`` (see the module docstring); inf where
    it would pass the clip. A layer's values stay above the smallest of the background floor and the colours
    painted so far, its own included (less the rounding of the composites); its colour bound is the largest of
    its own colours."""
    low = _vec(p["bg"]) / 1.12  # the background gradient divides by 1 + 0.12 Y < 1.12
    reach = []
    for layer in layers:
        colours = np.stack([np.broadcast_to(_vec(c), low.shape) for c in layer.colours(p)])
        low = np.minimum(low, colours.min(axis=0))
        reach.append(_reach(colours.max(axis=0) * 1.001, low * 0.999 - _UNDERSHOOT))
    return np.stack(reach)


def _reach(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """25 ln 2 + ln max(1, high / low), worst channel, per face (B, 3) -> (B,); inf from the clip on."""
    ratio = np.divide(high, low, out=np.full(low.shape, np.inf), where=low > 0)
    reach = _HALF_SPACING + np.log(np.maximum(ratio, 1.0)).max(axis=1) + _SLACK
    return np.where(reach < _CLIP, reach, np.inf)


def pixel_boxes(p: dict, size: int, bounds: tuple) -> np.ndarray:
    """(B, 4) int64 per face: rows [r0, r1) and columns [c0, c1) of the pixels whose centres fall in the image
    of its face-local box ``bounds`` = (u0, u1, v0, v1[, active]) (0.01 pixel of slack: float32 rounding of the
    grid is far smaller); the whole grid for a non-finite box, nothing (size, 0, size, 0) for an inactive face."""
    u0, u1, v0, v1 = (np.broadcast_to(_vec(b), p["cx"].shape) for b in bounds[:4])
    cos, sin, s = np.cos(p["rot"]), np.sin(p["rot"]), _vec(p["scale"])
    with np.errstate(invalid="ignore"):
        uc, hu, vc, hv = (u0 + u1) * 0.5, (u1 - u0) * 0.5, (v0 + v1) * 0.5, (v1 - v0) * 0.5
        # x = cx + s (u cos - v sin), y = cy + s (u sin + v cos) over the box: centre +- half extent
        x, ex = p["cx"] + s * (uc * cos - vc * sin), s * (hu * np.abs(cos) + hv * np.abs(sin))
        y, ey = p["cy"] + s * (uc * sin + vc * cos), s * (hu * np.abs(sin) + hv * np.abs(cos))
        pos = (np.stack([y - ey, y + ey, x - ex, x + ex], axis=1) + 1.0) * (size / 2.0) - 0.5
    full = ~np.isfinite(pos).all(axis=1)
    pos[full] = 0.0
    out = np.stack([np.ceil(pos[:, 0] - _PIXEL_SLACK), np.floor(pos[:, 1] + _PIXEL_SLACK) + 1.0,
                    np.ceil(pos[:, 2] - _PIXEL_SLACK), np.floor(pos[:, 3] + _PIXEL_SLACK) + 1.0], axis=1)
    out = np.clip(out, 0, size).astype(np.int64)
    out[full] = (0, size, 0, size)
    if len(bounds) > 4:
        out[~np.asarray(bounds[4], dtype=bool)] = (size, 0, size, 0)
    return out


def blocks(full: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> list:
    """Index blocks of at most BLOCK faces, neighbours on the image grouped together (sorted by cy into bands
    of _BAND blocks, each band by cx) so that a block's windows stay tight; the faces painted on the whole grid
    (``full``) get blocks of their own."""
    out = []
    for group in (np.flatnonzero(~full), np.flatnonzero(full)):
        group = group[np.argsort(cy[group], kind="stable")]
        for i in range(0, group.size, _BAND * BLOCK):
            band = group[i:i + _BAND * BLOCK]
            band = band[np.argsort(cx[band], kind="stable")]
            out += [band[j:j + BLOCK] for j in range(0, band.size, BLOCK)]
    return out


# ---------------------------------------------------------------------------------------
# Painting a chunk of faces
# ---------------------------------------------------------------------------------------


def render_faces(p: dict, e: np.ndarray, size: int, noise: np.ndarray) -> np.ndarray:
    """Render a chunk of faces as float32 (B, size, size, 3) in [0, 1] (before noise clip).

    p: the chunk's appearance draws; e: (B, len(PARAM_NAMES)) float32 expression parameters; noise: the
    chunk's (B, 3, size, size) standard normal pixel noise. The layers of ``_LAYERS`` are painted back to
    front over the background (head: hair, clothes, neck, ears, face, hair cap; eyes, brows, nose, mouth);
    then the illumination gradient and sensor noise.
    """
    reach = layer_reach(_LAYERS, p)
    margins = reach * ((0.55 / size) / _vec(p["scale"]))  # face units (inf * soft = inf)
    boxes = np.stack([pixel_boxes(p, size, layer.bounds(p, e, m)) for layer, m in zip(_LAYERS, margins)])
    out = np.empty((e.shape[0], size, size, 3), dtype=_F32)
    for idx in blocks(~np.isfinite(reach).all(axis=0), p["cx"], p["cy"]):
        near, far = boxes[:, idx, 0::2].min(axis=1).tolist(), boxes[:, idx, 1::2].max(axis=1).tolist()
        windows = [None if r0 >= r1 or c0 >= c1 else (slice(r0, r1), slice(c0, c1))
                   for (r0, c0), (r1, c1) in zip(near, far)]
        pb = {key: val[idx] for key, val in p.items()}
        out[idx] = _render_block(pb, e[idx], size, windows, noise[idx])
    return out


def _render_block(p: dict, e: np.ndarray, size: int, windows: list, noise: np.ndarray) -> np.ndarray:
    """One block of faces as (b, size, size, 3); ``windows[k]``: (rows, cols) of layer k or None; noise
    (b, 3, size, size)."""
    fr = Frame(p, size)
    img = np.empty((3, size, size, e.shape[0]), dtype=_F32)  # channel-first, batch-last while painting
    np.divide(_channels(p["bg"].astype(_F32)), 1.0 + 0.12 * fr.Y, out=img)  # background, soft vertical gradient
    for layer, win in zip(_LAYERS, windows):
        if win is not None:
            rows, cols = win
            layer.draw(img[:, rows, cols], fr.crop(rows, cols), p, e)
    phi = p["illum_phi"]
    ramp = col(np.cos(phi)) * fr.X + col(np.sin(phi)) * fr.Y
    img *= 1.0 + col(p["illum_g"]) * ramp
    img += noise.transpose(1, 2, 3, 0) * p["noise_sd"].astype(_F32)
    return img.transpose(3, 1, 2, 0)


# ---------------------------------------------------------------------------------------
# The face: layers (face-local bounds at the given margin, and the painting inside a window), back to front
# ---------------------------------------------------------------------------------------


def _hair_back_shape(p: dict, as_) -> tuple:
    top = as_(p["hair_top"])
    return -0.06 - top * 0.5, as_(p["fa"]) + 0.09, as_(p["fb"]) * 0.78 + top


def _hair_back_bounds(p, e, m) -> tuple:
    u0, u1, v0, v1 = ellipse_box(0.0, *_hair_back_shape(p, _vec), m)
    return u0, u1, v0, np.minimum(v1, _vec(p["hair_side"]) + m)  # cut at v < hair_side


def _hair_back(img, fr, p, e) -> None:
    """Hair behind the head: the head outline grown, down to ``hair_side``."""
    d = np.maximum(ellipse(fr.u, fr.v, 0.0, *_hair_back_shape(p, col)), fr.v - col(p["hair_side"]))
    paint(img, fr.cover(d), p["hair"].astype(_F32))


def _clothes(img, fr, p, e) -> None:
    paint(img, fr.cover(ellipse(fr.u, fr.v, 0.0, 1.55, 1.0, 0.62)), p["clothes"])


def _neck(img, fr, p, e) -> None:
    paint(img, fr.cover(box(fr.u, fr.v, 0.0, 1.0, 0.21, 0.55)), p["skin"].astype(_F32) * 0.82)


def _ear(img, fr, p, e, side: float) -> None:
    paint(img, fr.cover(ellipse(fr.u, fr.v, side * col(p["fa"]), 0.0, 0.09, 0.14)), p["skin"].astype(_F32) * 0.92)


def _face(img, fr, p, e) -> None:
    """The face ellipse with a gentle shading towards the edge."""
    fa, fb = col(p["fa"]), col(p["fb"])
    x, y = fr.u / fa, fr.v / fb
    x *= x
    y *= y
    r2 = x + y  # (u / fa)**2 + (v / fb)**2: the ellipse's sum too (x**2 is x * x), computed once
    shade = 1.0 - 0.10 * np.clip(r2, 0.0, 1.0)
    np.sqrt(r2, out=x)
    x -= 1.0
    face_d = x * np.minimum(fa, fb)  # ellipse(u, v, 0.0, 0.0, fa, fb)
    paint(img, fr.cover(face_d), _channels(p["skin"].astype(_F32)) * shade)


def _cap_shape(p: dict, as_) -> tuple:
    top = as_(p["hair_top"])
    return -0.02 - top * 0.5, as_(p["fa"]) + 0.06, as_(p["fb"]) * 0.8 + top


def _cap_bounds(p, e, m) -> tuple:
    u0, u1, v0, v1 = ellipse_box(0.0, *_cap_shape(p, _vec), m)
    return u0, u1, v0, np.minimum(v1, _vec(p["hairline"]) + 0.35 * np.maximum(u0 * u0, u1 * u1) + m)


def _cap(img, fr, p, e) -> None:
    """Hair cap over the forehead: the head outline cut at v < hairline + 0.35 u^2."""
    u, v = fr.u, fr.v
    d = np.maximum(ellipse(u, v, 0.0, *_cap_shape(p, col)), v - (col(p["hairline"]) + 0.35 * u * u))
    paint(img, fr.cover(d), p["hair"].astype(_F32))


def _iris(p: dict) -> np.ndarray:
    return np.clip(p["pupil"][:, None] + np.array([0.05, 0.03, 0.0]), 0, 1)


def _eye_bounds(p, e, m, side: float) -> tuple:
    return ellipse_box(side * 0.22, EYE_V, 0.115, 0.062 * _vec(e[:, 5]), m)


def _eye(img, fr, p, e, side: float) -> None:
    """White sclera with an eyelid-coloured outline; height follows ``eye_open``."""
    B, cu, eh = img.shape[-1], side * 0.22, 0.062 * col(e[:, 5])
    d_eye = ellipse(fr.u, fr.v, cu, EYE_V, 0.115, eh)
    paint(img, fr.cover(d_eye - 0.018), p["skin"].astype(_F32) * 0.55)  # lash line
    paint(img, fr.cover(d_eye), np.full((B, 3), 0.96, dtype=_F32))


def _iris_bounds(p, e, m, side: float) -> tuple:
    """Where both the sclera and the iris reach (their product is below the reach outside either)."""
    iris, sclera = ellipse_box(side * 0.22, EYE_V, 0.055, 0.055, m), _eye_bounds(p, e, m, side)
    return (np.maximum(iris[0], sclera[0]), np.minimum(iris[1], sclera[1]),
            np.maximum(iris[2], sclera[2]), np.minimum(iris[3], sclera[3]))


def _iris_layer(img, fr, p, e, side: float) -> None:
    """The dark iris clipped to the sclera."""
    cu, eh = side * 0.22, 0.062 * col(e[:, 5])
    sclera = fr.cover(ellipse(fr.u, fr.v, cu, EYE_V, 0.115, eh))
    d_iris = ellipse(fr.u, fr.v, cu, EYE_V, 0.055, 0.055)
    paint(img, sclera * fr.cover(d_iris), _iris(p))


def _brow_segment(e: np.ndarray, side: float, as_) -> tuple:
    """The brow as a segment (ax, ay, bx, by, r): inner end raised by +brow_angle, all by +brow_height."""
    bang, bhgt = as_(e[:, 3]), as_(e[:, 4])
    base = EYE_V - 0.15 - 0.075 * bhgt
    return side * 0.09, base - 0.075 * bang, side * 0.34, base + 0.02 * bang + 0.01, 0.032


def _brow(img, fr, p, e, side: float) -> None:
    d = capsule(fr.u, fr.v, *_brow_segment(e, side, col))
    paint(img, fr.cover(d), p["hair"].astype(_F32) * 0.75)


def _nose_shadow(img, fr, p, e) -> None:
    paint(img, 0.35 * fr.cover(ellipse(fr.u, fr.v, 0.03, 0.10, 0.045, 0.11)), p["skin"].astype(_F32) * 0.7)


def _nostril(img, fr, p, e, side: float) -> None:
    d = ellipse(fr.u, fr.v, side * 0.045, 0.20, 0.03, 0.02)
    paint(img, 0.8 * fr.cover(d), p["skin"].astype(_F32) * 0.45)


def _wrinkle_segment(dv: float) -> tuple:
    return -0.07, 0.0 + dv, 0.07, 0.0 + dv + 0.005, 0.012


def _wrinkle(img, fr, p, e, dv: float) -> None:
    """A wrinkle line over the bridge, as dark as ``nose_wrinkle``."""
    wr = np.clip(col(e[:, 7]), 0.0, 1.0)
    d = capsule(fr.u, fr.v, *_wrinkle_segment(dv))
    paint(img, wr * 0.9 * fr.cover(d), p["skin"].astype(_F32) * 0.5)


_MOUTH_Y = 0.38
_MOUTH_INSIDE = np.array([[0.25, 0.04, 0.06]], dtype=_F32)


def _lip_colour(skin: np.ndarray) -> np.ndarray:
    return np.clip(skin * np.array([0.85, 0.55, 0.55], dtype=_F32) + np.array([0.08, 0.0, 0.0], _F32), 0, 1)


def _mouth_bounds(p, e, m) -> tuple:
    """|u| - w < 0.025 + m, and vu - 0.025 - m < v < vl + 0.025 + m with t^2 <= 1.44 bounding vu and vl."""
    curve, mopen, asym = (_vec(e[:, i]) for i in (0, 1, 6))
    w = 0.19 * _vec(e[:, 2]) + 0.025 + m
    top = _MOUTH_Y - 1.44 * (0.11 * np.maximum(curve, 0.0) + 0.09 * np.abs(asym)) - 0.025 - m
    bottom = _MOUTH_Y + 1.44 * 0.11 * np.maximum(-curve, 0.0) + 0.17 * mopen + 0.004 + 0.025 + m
    return -w, w, top, bottom


def _mouth(img, fr, p, e) -> None:
    """An upper-lip centre line vu(x) bending with the curvature and tilted by the asymmetry, a lower
    boundary vl = vu + opening * (1 - t^2); lips are the region thickened by r, the dark interior the
    region itself, teeth a band below vu."""
    u, v, cover = fr.u, fr.v, fr.cover
    B = img.shape[-1]
    curve, mopen, mwidth, asym = (col(e[:, i]) for i in (0, 1, 2, 6))
    w = 0.19 * mwidth
    t = np.clip(u / w, -1.2, 1.2)
    vu = _MOUTH_Y - 0.11 * curve * t * t - 0.09 * np.abs(asym) * np.maximum(t * np.sign(asym + 1e-9), 0.0) ** 2
    vl = vu + 0.17 * mopen * (1.0 - np.minimum(t * t, 1.0)) + 0.004
    d_in = np.maximum(np.maximum(vu - v, v - vl), np.abs(u) - w)
    paint(img, cover(d_in - 0.025), _lip_colour(p["skin"].astype(_F32)))
    interior = cover(d_in)
    paint(img, interior, np.tile(_MOUTH_INSIDE, (B, 1)))
    teeth_open = np.clip(mopen * 2.0, 0.0, 1.0)
    if teeth_open.any():  # an all-zero factor paints nothing
        teeth = interior * cover(v - (vu + 0.045))
        paint(img, teeth * teeth_open, np.full((B, 3), 0.93, dtype=_F32))


@dataclass(frozen=True)
class _Layer:
    """One step of the painting: ``bounds(p, e, margin)`` the face-local box (u0, u1, v0, v1[, active]) outside
    which every distance field of the layer exceeds ``margin`` (per face; active False: the face paints nothing);
    ``draw(img, frame, p, e)`` paints the layer inside a window; ``colours(p)`` every colour it paints with
    ((B, 3) arrays or scalars)."""

    bounds: Callable
    draw: Callable
    colours: Callable


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=_F32)


def _sided(bounds, draw, colours, sides=(-1.0, 1.0)) -> list:
    return [_Layer(partial(bounds, side=s), partial(draw, side=s), colours) for s in sides]


def _ear_bounds(p, e, m, side: float) -> tuple:
    return ellipse_box(side * _vec(p["fa"]), 0.0, 0.09, 0.14, m)


def _lash_bounds(p, e, m, side: float) -> tuple:
    return _eye_bounds(p, e, m + 0.018, side)  # the lash line is d_eye - 0.018


def _brow_bounds(p, e, m, side: float) -> tuple:
    return capsule_box(*_brow_segment(e, side, _vec), m)


def _nostril_bounds(p, e, m, side: float) -> tuple:
    return ellipse_box(side * 0.045, 0.20, 0.03, 0.02, m)


def _wrinkle_bounds(p, e, m, dv: float) -> tuple:
    return (*capsule_box(*_wrinkle_segment(dv), m), e[:, 7] > 0)  # no wrinkle (factor 0) paints nothing


def _skin(k: float):
    return lambda p: [_f32(p["skin"]) * k]


# Back to front: head (hair behind, clothes, neck, ears, face, hair cap), the left eye (lash line and sclera,
# then iris) and the right one, brows, nose (shadow, nostrils, wrinkles), mouth.
_LAYERS = [
    _Layer(_hair_back_bounds, _hair_back, lambda p: [_f32(p["hair"])]),
    _Layer(lambda p, e, m: ellipse_box(0.0, 1.55, 1.0, 0.62, m), _clothes, lambda p: [p["clothes"]]),
    _Layer(lambda p, e, m: (-0.21 - m, 0.21 + m, 0.45 - m, 1.55 + m), _neck, _skin(0.82)),
    *_sided(_ear_bounds, _ear, _skin(0.92)),
    _Layer(lambda p, e, m: ellipse_box(0.0, 0.0, _vec(p["fa"]), _vec(p["fb"]), m), _face,
           lambda p: [_f32(p["skin"]) * 0.9, _f32(p["skin"])]),  # shaded 0.9 .. 1
    _Layer(_cap_bounds, _cap, lambda p: [_f32(p["hair"])]),
    *[layer for side in (-1.0, 1.0) for layer in (
        _Layer(partial(_lash_bounds, side=side), partial(_eye, side=side), lambda p: [_f32(p["skin"]) * 0.55, 0.96]),
        _Layer(partial(_iris_bounds, side=side), partial(_iris_layer, side=side), lambda p: [_iris(p)]))],
    *_sided(_brow_bounds, _brow, lambda p: [_f32(p["hair"]) * 0.75]),
    _Layer(lambda p, e, m: ellipse_box(0.03, 0.10, 0.045, 0.11, m), _nose_shadow, _skin(0.7)),
    *_sided(_nostril_bounds, _nostril, _skin(0.45)),
    *[_Layer(partial(_wrinkle_bounds, dv=dv), partial(_wrinkle, dv=dv), _skin(0.5)) for dv in (-0.02, 0.03)],
    _Layer(_mouth_bounds, _mouth, lambda p: [_lip_colour(_f32(p["skin"])), _MOUTH_INSIDE, 0.93]),
]
