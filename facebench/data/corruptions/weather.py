"""Weather corruptions (ImageNet-C): snow, frost, fog, brightness and (validation) spatter.

Each function takes a float image in [0, 1] (H, W, 3), its severity constant and (except brightness) a
``numpy.random.Generator``, and returns floats on the 0-255 scale. Without OpenCV or ImageMagick:
snow's motion blur is ``_common.motion_blur_array`` and spatter's Canny / distance transform / histogram
equalisation are NumPy/SciPy versions written here, so snow and spatter are not bit-identical to ImageNet-C;
frost uses a procedural texture (``FROST_SOURCE``), not the reference's photos.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import (CIFAR_32, IMAGENET_224, TINY_64, blur, clipped_zoom, hsv_to_rgb, motion_blur_array,
                      next_power_of_two, plasma_fractal, rgb_to_hsv)

#: (loc, scale, zoom, threshold, blur radius, blur sigma, blend); blur angle ~ U(-135, -45) degrees
SNOW = {IMAGENET_224: ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                       (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                       (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        TINY_64: ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
                  (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
        CIFAR_32: ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                   (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))}
#: (image weight, frost weight, texture scale); the scale is the reference's photo resize (1, 0.3, 0.2)
FROST = {IMAGENET_224: ((1, 0.4, 1.0), (0.8, 0.6, 1.0), (0.7, 0.7, 1.0), (0.65, 0.7, 1.0), (0.6, 0.75, 1.0)),
         TINY_64: ((1, 0.3, 0.3), (0.9, 0.4, 0.3), (0.8, 0.45, 0.3), (0.75, 0.5, 0.3), (0.7, 0.55, 0.3)),
         CIFAR_32: ((1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2))}
#: (fog strength, wibble decay); map size = next power of two >= the image's long side (256 at 224 px)
FOG = {IMAGENET_224: ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
       TINY_64: ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
       CIFAR_32: ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))}
BRIGHTNESS = {IMAGENET_224: (0.1, 0.2, 0.3, 0.4, 0.5), TINY_64: (0.1, 0.2, 0.3, 0.4, 0.5),
              CIFAR_32: (0.05, 0.1, 0.15, 0.2, 0.3)}
#: (loc, scale, sigma, threshold, intensity / mud sigma, mode: 0 water, 1 mud)
SPATTER = {IMAGENET_224: ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                          (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)),
           TINY_64: ((0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0), (0.65, 0.3, 1, 0.69, 0.6, 0),
                     (0.65, 0.1, 0.7, 0.68, 0.6, 1), (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
           CIFAR_32: ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                      (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1))}

#: Where frost's texture comes from. The reference blends a random crop of one of its frost photographs;
#: facebench does not ship those photos, so the texture is synthesised (``frost_texture``) and frost results
#: are NOT comparable with ImageNet-C's frost numbers (same blend weights, different texture).
FROST_SOURCE = ("procedural: seeded ice-needle texture (facebench.data.corruptions.weather.frost_texture), "
                "not the ImageNet-C frost photographs")
_FROST_TINT = np.array([0.84, 0.92, 1.0])  # bluish white, as the photos' ice


def snow(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Snow layer N(loc, scale) (one ``rng.normal`` draw of (H, W)) -> clipped_zoom -> values < threshold set
    to 0 -> uint8 -> motion blur at angle ~ ``rng.uniform(-135, -45)`` (rounded to uint8) -> /255; image
    blended with max(x, gray * 1.5 + 0.5) (gray = 0.299 R + 0.587 G + 0.114 B) and the layer added twice
    (as is and rotated 180 degrees)."""
    loc, scale, zoom, threshold, radius, sigma, blend = c
    img = x.astype(np.float32)
    layer = clipped_zoom(rng.normal(loc, scale, size=img.shape[:2])[..., None], zoom)[..., 0]
    layer[layer < threshold] = 0
    layer8 = (np.clip(layer, 0, 1) * 255).astype(np.uint8)
    angle = rng.uniform(-135, -45)
    layer = np.clip(np.floor(motion_blur_array(layer8, radius, sigma, angle) + 0.5), 0, 255)[..., None] / 255.0
    gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = blend * img + (1 - blend) * np.maximum(img, gray[..., None] * 1.5 + 0.5)
    return np.clip(img + layer + np.rot90(layer, k=2), 0, 1) * 255


def frost_texture(height: int, width: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A frost-like RGB texture in [0, 255] (float), seeded by ``rng``: a plasma haze (diamond-square) plus
    about one bright ice needle per 40 / scale^2 pixels (random start, angle, length U(4, 30) * scale px,
    drawn as points along the segment, accumulated), blurred by 0.6 * scale px, normalised to [0, 1],
    mixed 0.45 haze + 0.55 needles and tinted bluish white. Draw order: haze, then the needles."""
    side = next_power_of_two(max(height, width))
    haze = plasma_fractal(side, 2.0, rng)[:height, :width]
    count = max(1, int(height * width * scale ** 2 / 40))
    start = rng.random((count, 2)) * (height, width)
    angle = rng.uniform(0, np.pi, count)
    length = rng.uniform(4, 30, count) * max(scale, 0.2)
    t = np.linspace(0.0, 1.0, 16)
    rows = (start[:, :1] + np.sin(angle)[:, None] * length[:, None] * t).astype(int) % height
    cols = (start[:, 1:] + np.cos(angle)[:, None] * length[:, None] * t).astype(int) % width
    needles = np.zeros((height, width))
    np.add.at(needles, (rows.ravel(), cols.ravel()), 1.0)
    needles = blur(needles, 0.6 * max(scale, 0.5))
    needles /= max(needles.max(), 1e-12)
    texture = 0.45 * haze + 0.55 * np.sqrt(needles)
    return np.clip(texture, 0, 1)[..., None] * _FROST_TINT * 255


def frost(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """clip(a * x_255 + b * texture, 0, 255) with the procedural ``frost_texture`` (see ``FROST_SOURCE``)."""
    a, b, scale = c
    texture = frost_texture(x.shape[0], x.shape[1], scale, rng)
    return np.clip(a * x * 255.0 + b * texture, 0, 255)


def fog(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """x + strength * plasma_fractal(map size, decay)[:H, :W]; out = x * max / (max + strength), max = x.max()
    before the fog."""
    strength, decay = c
    top = x.max()
    fractal = plasma_fractal(next_power_of_two(max(x.shape[:2])), decay, rng)[:x.shape[0], :x.shape[1]]
    return np.clip((x + strength * fractal[..., None]) * top / (top + strength), 0, 1) * 255


def brightness(x: np.ndarray, amount: float) -> np.ndarray:
    """HSV value V -> clip(V + amount, 0, 1) (float HSV, skimage conventions)."""
    hsv = rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + amount, 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1) * 255


def canny_edges(gray: np.ndarray, low: float, high: float) -> np.ndarray:
    """Boolean Canny edge map of a 2-D uint8-valued image: 3x3 Sobel gradients (border replicated), L1
    magnitude |gx| + |gy| (OpenCV's default), non-maximum suppression along the gradient direction quantised
    to 0/45/90/135 degrees, hysteresis: pixels above ``low`` kept when 8-connected to a pixel above ``high``."""
    img = np.asarray(gray, dtype=np.float64)
    gx = ndimage.sobel(img, axis=1, mode="nearest")
    gy = ndimage.sobel(img, axis=0, mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    direction = (np.round(np.rad2deg(np.arctan2(gy, gx)) / 45.0).astype(int)) % 4
    steps = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    padded = np.pad(mag, 1)
    h, w = mag.shape
    keep = np.zeros(mag.shape, dtype=bool)
    for k, (dr, dc) in steps.items():
        ahead = padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
        behind = padded[1 - dr:1 - dr + h, 1 - dc:1 - dc + w]
        keep |= (direction == k) & (mag > ahead) & (mag >= behind)
    weak = keep & (mag > low)
    labels, _ = ndimage.label(weak, structure=np.ones((3, 3)))
    strong_labels = np.unique(labels[weak & (mag > high)])
    return np.isin(labels, strong_labels[strong_labels > 0])


def equalize_histogram(img: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist for uint8: lut[v] = round(255 * (cdf[v] - count[first]) / (N - count[first]))
    from the first occupied bin on (lut 0 below it); a one-valued image maps to that value unchanged."""
    values = np.asarray(img, dtype=np.uint8)
    hist = np.bincount(values.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == values.size:
        return values.copy()
    cdf = np.cumsum(hist) - hist[first]
    lut = np.clip(np.floor(cdf * (255.0 / (values.size - hist[first])) + 0.5), 0, 255)
    lut[:first] = 0
    return lut.astype(np.uint8)[values]


def _water_mask(liquid: np.ndarray) -> np.ndarray:
    """The water branch's shading map (before the colour): edges of the liquid layer -> distance to the
    nearest edge (exact Euclidean, capped at 20) -> 3x3 box (uint8) -> histogram equalisation -> emboss
    kernel (saturated to uint8) -> 3x3 box (uint8), all borders reflect-101."""
    layer = (liquid * 255).astype(np.uint8)
    edges = canny_edges(layer, 50, 150)
    dist = ndimage.distance_transform_edt(~edges) if edges.any() else np.full(layer.shape, 20.0)
    dist = np.minimum(dist, 20.0)
    dist = ndimage.uniform_filter(dist, size=3, mode="mirror").astype(np.uint8)
    dist = equalize_histogram(dist).astype(np.float64)
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
    dist = np.clip(np.floor(ndimage.correlate(dist, emboss, mode="mirror") + 0.5), 0, 255)
    return np.clip(np.floor(ndimage.uniform_filter(dist, size=3, mode="mirror") + 0.5), 0, 255)


def spatter(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Liquid layer N(loc, scale) (one ``rng.normal`` draw of (H, W)) blurred by sigma, values < threshold set
    to 0. Water (mode 0): shading = layer * ``_water_mask``, normalised to max 1, times intensity, adds pale
    turquoise (175, 238, 238)/255. Mud (mode 1): m = blur(layer > threshold, intensity), m < 0.8 set to 0,
    x * (1 - m) + m * brown (63, 42, 20)/255. Validation corruption; not bit-identical to ImageNet-C."""
    loc, scale, sigma, threshold, intensity, mode = c
    img = x.astype(np.float32)
    liquid = blur(rng.normal(loc, scale, size=img.shape[:2]), sigma)
    liquid[liquid < threshold] = 0
    if mode == 0:
        shade = liquid * _water_mask(liquid)
        top = shade.max()
        shade = (shade / top if top > 0 else shade) * intensity
        colour = np.array([175, 238, 238]) / 255.0
        return np.clip(img + shade[..., None] * colour, 0, 1) * 255
    m = blur((liquid > threshold).astype(np.float32), intensity)
    m[m < 0.8] = 0
    colour = np.array([63, 42, 20]) / 255.0
    return np.clip(img * (1 - m[..., None]) + m[..., None] * colour, 0, 1) * 255
