"""LaPa's test transform (FaRL / Faceptor ``lapa_test_transform``): five-point similarity alignment onto a
template, then a tanh-warp (RoI Tanh-warping, Lin et al. CVPR 2019), and its inverse for the predictions.

Written for facebench (pure NumPy) from the published definition of the transform (the FaRL authors'
``blueprint.ml.augmenters`` and ``facer`` packages; ``shared/spec/faceptor.md`` §1.5):

* Pixel coordinates: (x, y) with pixel centres at integers (0 .. W - 1), as ``cv2.remap`` reads them.
* Alignment ``M`` (3 x 3): the least-squares similarity (rotation, uniform scale, shift) taking the five points
  (LaPa's 106-point indices 104, 105, 54, 84, 90: eye centres, nose tip, mouth corners) onto the template
  ``T = (t + 1) (S - 1) / 2`` with t = ([196, 226], [316, 226], [256, 286], [220, 360.4], [292, 360.4]) / 256 - 1.
* Forward warp (original -> warped frame, used to bring predictions back): p = M x; u = 2 p / S - 1 per axis;
  where u > 1 - f: u <- tanh((u - 1 + f) / f) f + 1 - f, where u < -1 + f: u <- tanh((u + 1 - f) / f) f - 1 + f
  (f = warp factor; f = 0 is the plain affine); back to pixels (u + 1) S / 2.
* Inverse (warped frame -> original, the sampling map of the warped image): the same with arctanh, its argument
  clamped to [-0.999, 0.999], then ``M^-1``.
* Images (and logits) are resampled bilinearly with 0 outside; label maps by nearest neighbour.
"""

from __future__ import annotations

import numpy as np

from facebench.errors import DataError

LAPA_FIVE = (104, 105, 54, 84, 90)
TEMPLATE = (np.array([[196.0, 226.0], [316.0, 226.0], [256.0, 286.0], [220.0, 360.4], [292.0, 360.4]])
            / 256.0 - 1.0)
LAPA_WARP_FACTOR = 0.8
ARCTANH_CLAMP = 0.999


def similarity_matrix(src, dst) -> np.ndarray:
    """3 x 3 least-squares similarity [[a, b, dx], [-b, a, dy], [0, 0, 1]] taking ``src`` (n, 2) onto
    ``dst`` (n, 2): a = sum(d . s) / sum|s|^2, b = sum(d_x s_y - d_y s_x) / sum|s|^2 over centred points."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise DataError(f"similarity: need two (n >= 2, 2) point sets of one shape, got {src.shape}, {dst.shape}")
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    norm = float((s ** 2).sum())
    if norm <= 0:
        raise DataError("similarity: the source points coincide; no alignment is defined")
    a = float((d * s).sum()) / norm
    b = float((d[:, 0] * s[:, 1] - d[:, 1] * s[:, 0]).sum()) / norm
    dx = md[0] - a * ms[0] - b * ms[1]
    dy = md[1] + b * ms[0] - a * ms[1]
    return np.array([[a, b, dx], [-b, a, dy], [0.0, 0.0, 1.0]])


def face_align_matrix(points5, size: int = 512) -> np.ndarray:
    """``M`` taking five face points (eye centres, nose tip, mouth corners; pixels) onto the template in an
    S x S frame, ``T = (t + 1) (S - 1) / 2``."""
    return similarity_matrix(points5, (TEMPLATE + 1.0) * (size - 1) / 2.0)


def lapa_align_matrix(points106, size: int = 512) -> np.ndarray:
    """``face_align_matrix`` of LaPa's points 104, 105, 54, 84, 90 (of its 106)."""
    pts = np.asarray(points106, dtype=np.float64)
    if pts.shape != (106, 2):
        raise DataError(f"LaPa alignment needs the 106 landmarks (106, 2), got shape {pts.shape}")
    return face_align_matrix(pts[list(LAPA_FIVE)], size)


def _apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    homog = xy @ matrix[:2, :2].T + matrix[:2, 2]
    return homog


def _squash(u: np.ndarray, f: float, inverse: bool) -> np.ndarray:
    """The tanh (or, inverse, the clamped arctanh) on the outer band |u| > 1 - f of normalised coordinates."""
    if f <= 0:
        return u
    hi, lo = u > 1.0 - f, u < -1.0 + f
    out = u.copy()
    fn = (lambda z: np.arctanh(np.clip(z, -ARCTANH_CLAMP, ARCTANH_CLAMP))) if inverse else np.tanh
    out[hi] = fn((u[hi] - 1.0 + f) / f) * f + 1.0 - f
    out[lo] = fn((u[lo] + 1.0 - f) / f) * f - 1.0 + f
    return out


def _frame(size) -> np.ndarray:
    h, w = (size, size) if np.isscalar(size) else size
    return np.array([float(w), float(h)])


def warp_points(xy, matrix, size, warp_factor: float = LAPA_WARP_FACTOR) -> np.ndarray:
    """Original-image points (n, 2) -> the warped S x S frame (the forward warp)."""
    wh = _frame(size)
    p = _apply(np.asarray(matrix, dtype=np.float64), np.asarray(xy, dtype=np.float64))
    return (_squash(p / wh * 2.0 - 1.0, float(warp_factor), inverse=False) + 1.0) / 2.0 * wh


def unwarp_points(xy, matrix, size, warp_factor: float = LAPA_WARP_FACTOR) -> np.ndarray:
    """Warped-frame points (n, 2) -> original-image points (the inverse warp, arctanh clamped)."""
    wh = _frame(size)
    u = np.asarray(xy, dtype=np.float64) / wh * 2.0 - 1.0
    p = (_squash(u, float(warp_factor), inverse=True) + 1.0) / 2.0 * wh
    return _apply(np.linalg.inv(np.asarray(matrix, dtype=np.float64)), p)


def _grid(h: int, w: int) -> np.ndarray:
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([xx, yy], axis=-1).reshape(-1, 2)


def sampling_map(matrix, size, warp_factor: float = LAPA_WARP_FACTOR) -> np.ndarray:
    """(S, S, 2) original-image (x, y) read by each pixel of the warped frame."""
    h, w = (size, size) if np.isscalar(size) else size
    return unwarp_points(_grid(h, w), matrix, (h, w), warp_factor).reshape(h, w, 2)


def inverse_sampling_map(matrix, size, image_shape, warp_factor: float = LAPA_WARP_FACTOR) -> np.ndarray:
    """(H, W, 2) warped-frame (x, y) read by each original-image pixel (to bring predictions back)."""
    h, w = image_shape[:2]
    return warp_points(_grid(h, w), matrix, size, warp_factor).reshape(h, w, 2)


def remap_bilinear(image: np.ndarray, xy_map: np.ndarray) -> np.ndarray:
    """``out[i, j] = image(xy_map[i, j])`` with bilinear interpolation, 0 outside the image (float64;
    ``image`` (H, W) or (H, W, C), e.g. an RGB image or per-class logits)."""
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape[:2]
    x, y = xy_map[..., 0], xy_map[..., 1]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    out = np.zeros(xy_map.shape[:2] + img.shape[2:], dtype=np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            weight = np.where(inside, wx * wy, 0.0)
            vals = img[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += (weight[..., None] if img.ndim == 3 else weight) * vals
    return out


def remap_nearest(labels: np.ndarray, xy_map: np.ndarray, outside: int = 0) -> np.ndarray:
    """``out[i, j] = labels[round(y), round(x)]`` at ``xy_map[i, j]``, ``outside`` beyond the map."""
    lab = np.asarray(labels)
    h, w = lab.shape[:2]
    xi = np.floor(xy_map[..., 0] + 0.5).astype(np.int64)
    yi = np.floor(xy_map[..., 1] + 0.5).astype(np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    return np.where(inside, lab[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], outside).astype(lab.dtype)


class WarpFrame:
    """The per-sample warp of a split read with LaPa's test transform: ``matrices`` (N, 3, 3) alignment
    matrices, the warped frame's ``size`` (S x S) and the ``warp_factor``. Predictions made in the warped
    frame (or in that frame resized to a model's input) come back to each original image through
    :meth:`back_to_image`."""

    def __init__(self, matrices, size: int = 512, warp_factor: float = LAPA_WARP_FACTOR):
        self.matrices = np.asarray(matrices, dtype=np.float64)
        if self.matrices.ndim != 3 or self.matrices.shape[1:] != (3, 3):
            raise DataError(f"warp frame: matrices must be (N, 3, 3), got shape {self.matrices.shape}")
        self.size, self.warp_factor = int(size), float(warp_factor)

    def __len__(self) -> int:
        return len(self.matrices)

    def subset(self, indices) -> "WarpFrame":
        return WarpFrame(self.matrices[np.asarray(indices, dtype=np.int64)], self.size, self.warp_factor)

    def describe(self) -> dict:
        return {"transform": "five-point alignment + tanh-warp (LaPa test transform)", "size": self.size,
                "warp_factor": self.warp_factor}

    def fingerprint_bytes(self, order) -> bytes:
        order = np.asarray(order, dtype=np.int64)
        head = np.array([self.size, self.warp_factor], dtype="<f8").tobytes()
        return head + np.round(self.matrices[order], 9).astype("<f8").tobytes()

    def warp_image(self, i: int, image: np.ndarray) -> np.ndarray:
        """Image ``i`` (H, W[, C]) uint8 in the S x S warped frame (bilinear, 0 outside, rounded to uint8)."""
        out = remap_bilinear(image, sampling_map(self.matrices[i], self.size, self.warp_factor))
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _back_map(self, i: int, frame_shape, image_shape) -> np.ndarray:
        """(H, W, 2) xy in a prediction of ``frame_shape`` (the S x S frame resized to S_h x S_w, pixel centres
        scaled) read by each pixel of image ``i``."""
        xy = inverse_sampling_map(self.matrices[i], self.size, image_shape, self.warp_factor)
        h, w = frame_shape[:2]
        xy[..., 0] = (xy[..., 0] + 0.5) * w / self.size - 0.5
        xy[..., 1] = (xy[..., 1] + 0.5) * h / self.size - 0.5
        return xy

    def back_to_image(self, i: int, label_map: np.ndarray, image_shape) -> np.ndarray:
        """A label map predicted in the warped frame brought back to image ``i``'s ``image_shape`` (H, W) by
        nearest neighbour, background (0) outside the frame."""
        return remap_nearest(label_map, self._back_map(i, np.shape(label_map), image_shape), outside=0)

    def back_logits(self, i: int, logits: np.ndarray, image_shape) -> np.ndarray:
        """(S_h, S_w, C) per-class scores in the warped frame brought back to image ``i`` (H, W, C) bilinearly,
        0 outside the frame (the authors' inverse warp of the logits before the argmax)."""
        return remap_bilinear(logits, self._back_map(i, np.shape(logits), image_shape))


class WarpedImages:
    """An image source whose images are brought into a :class:`WarpFrame` on load (picklable; the decoded
    cache keeps the warped pixels). Its content fingerprint covers the base source and the warp."""

    def __init__(self, images, frame: WarpFrame):
        if len(images) != len(frame):
            raise DataError(f"warped images: {len(images)} images but {len(frame)} warp matrices")
        self.images, self.frame = images, frame

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> np.ndarray:
        return self.frame.warp_image(i, self.images.load(i))

    def subset(self, indices) -> "WarpedImages":
        return WarpedImages(self.images.subset(indices), self.frame.subset(indices))

    def describe(self) -> str:
        return f"{self.images.describe()}, tanh-warped to {self.frame.size} x {self.frame.size}"

    def sample_digests(self):
        base = getattr(self.images, "sample_digests", None)
        return base() if callable(base) else None

    def content_fingerprint(self, order=None):
        from facebench.content import code_digest, combine

        base = getattr(self.images, "content_fingerprint", None)
        base = base(order) if callable(base) else None
        if base is None:
            return None
        order = np.arange(len(self)) if order is None else np.asarray(order, dtype=np.int64)
        return combine("tanh_warp", base, self.frame.fingerprint_bytes(order),
                       code_digest([WarpFrame]))  # the code: this module's source

    def content_stamp(self):
        base = getattr(self.images, "content_stamp", None)
        if not callable(base) or base() is None:
            return None
        return {"content": self.content_fingerprint()}
