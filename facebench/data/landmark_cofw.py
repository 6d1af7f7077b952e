"""COFW-29 in its native release: ``COFW_test_color.mat`` / ``COFW_train_color.mat`` (images inside the file).

Variables (test / train): ``IsT`` / ``IsTr`` a cell array of images (H x W grey or H x W x 3 RGB, uint8),
``phisT`` / ``phisTr`` (N x 87): x of the 29 points, y of the 29 points, 29 occlusion flags (1 = occluded),
``bboxesT`` / ``bboxesTr`` (N x 4): face box x, y, width, height. Matlab wrote them, 1-based: the loader
subtracts 1 from the points and the box corner (0-based pixels, as ``LandmarkLabels`` says).

Occluded points are annotated (their positions are estimated by the annotators) and stay in the NME, the
COFW convention (HRNet, mmpose): ``visible`` is None and the flags go to ``LandmarkLabels.occluded``; the
per-image attribute ``occlusion`` says how many points are occluded (none, 1-4, 5-9, 10+).

The file is read with ``scipy.io.loadmat`` (Matlab v5 files) or, for a v7.3 (HDF5) file, with ``h5py``,
whose arrays come transposed (Matlab is column-major) and are turned back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facebench.data._native import NativeLoader
from facebench.data.dataset import Dataset, LandmarkLabels
from facebench.data.landmark_sets import LandmarkLoader, attribute_counts
from facebench.errors import DataError

COFW_FILES = {"test": "COFW_test_color.mat", "train": "COFW_train_color.mat"}
COFW_KEYS = {"test": ("IsT", "phisT", "bboxesT"), "train": ("IsTr", "phisTr", "bboxesTr")}


class ListImages:
    """Images held in memory as a list of uint8 arrays of different sizes, (H, W, C) each."""

    def __init__(self, images: list[np.ndarray]):
        self.images = [np.ascontiguousarray(im if im.ndim == 3 else im[..., None], dtype=np.uint8)
                       for im in images]

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> np.ndarray:
        return self.images[i]

    def subset(self, indices) -> "ListImages":
        return ListImages([self.images[i] for i in np.asarray(indices, dtype=np.int64).tolist()])

    def describe(self) -> str:
        return f"{len(self)} in-memory images of varying sizes"

    def sample_digests(self) -> np.ndarray:
        """(N, 16) uint8: BLAKE2b-128 of each image's shape and bytes, computed once."""
        digests = getattr(self, "_digests", None)
        if digests is None:
            from facebench.content import combine

            rows = [bytes.fromhex(combine(str(im.shape), im.tobytes())) for im in self.images]
            digests = self._digests = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 16)
        return digests

    def content_fingerprint(self, order: np.ndarray | None = None) -> str:
        from facebench.content import combine

        order = np.arange(len(self)) if order is None else np.asarray(order, dtype=np.int64)
        return combine("image-list", self.sample_digests()[order].tobytes())

    def content_stamp(self) -> dict:
        return {"content": self.content_fingerprint()}


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file: the format signature at byte 0 or 512 x 2^k (the superblock's places;
    Matlab v7.3 puts it at 512, behind its text header). Read without h5py, which only v7.3 files need."""
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048, 4096):
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def read_cofw_mat(path: Path, keys: tuple[str, str, str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(images, phis (N, 87), boxes (N, 4)) of a COFW .mat file, v5 (scipy) or v7.3 (h5py), as Matlab has them."""
    import scipy.io

    if _is_hdf5(path):  # Matlab v7.3: HDF5 behind a 512-byte Matlab header
        return _read_hdf5(path, keys)
    images_key, phis_key, boxes_key = keys
    mat = scipy.io.loadmat(str(path))
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DataError(f"{path}: no variable(s) {', '.join(missing)}; a COFW file holds {', '.join(keys)}")
    cells = mat[images_key].reshape(-1)
    return [np.asarray(im) for im in cells], np.asarray(mat[phis_key], float), np.asarray(mat[boxes_key], float)


def _read_hdf5(path: Path, keys: tuple[str, str, str]):
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path} is a Matlab v7.3 (HDF5) file, which needs h5py: pip install h5py "
                        "(or save it from Matlab as v7: save(..., '-v7'))") from None

    images_key, phis_key, boxes_key = keys
    with h5py.File(path, "r") as f:
        missing = [k for k in keys if k not in f]
        if missing:
            raise DataError(f"{path}: no variable(s) {', '.join(missing)}; a COFW file holds {', '.join(keys)}")
        refs = np.asarray(f[images_key]).reshape(-1)
        images = [np.asarray(f[ref]).T for ref in refs]  # (C, W, H) / (W, H) -> (H, W, C) / (H, W)
        return images, np.asarray(f[phis_key], float).T, np.asarray(f[boxes_key], float).T


class COFW(LandmarkLoader):
    """COFW-29: 29 points with occlusion flags and face boxes, images inside COFW_test_color.mat (507 faces)

    Points 1-based in the file, 0-based here; occluded points stay in the NME (``LandmarkLabels.occluded``).
    Splits: test (507 faces), train (COFW_train_color.mat, 1,345 faces).
    """

    name = "cofw29"
    scheme = "cofw29"
    attribute_names = frozenset({"occlusion"})
    description = __doc__.splitlines()[0]
    citation = ("X. P. Burgos-Artizzu, P. Perona, P. Dollar. Robust face landmark estimation under occlusion. "
                "ICCV 2013")
    license = "research use (Caltech); the images come from the web and keep their owners' terms"
    how_to_get = "https://data.caltech.edu/records/bc0bf-nc666 (COFW_test_color.mat, COFW_train_color.mat)"
    layout = (
        "  <path>/COFW_test_color.mat (IsT images, phisT 507 x 87 = 29 x, 29 y, 29 occlusion flags,\n"
        "      bboxesT 507 x 4 = x y w h, 1-based), <path>/COFW_train_color.mat (IsTr, phisTr, bboxesTr)\n"
        "  Matlab v5 (scipy) or v7.3 (HDF5, h5py) files are both read"
    )
    splits = ("test", "train")
    default_dirname = "cofw"
    expected_sizes = {"test": 507, "train": 1345}

    def __init__(self, path=None, data_root=None):
        NativeLoader.__init__(self, path, data_root)  # the images live in the .mat file: no missing_images
        self.missing_images = "error"

    def label_paths(self, split):
        return [self.root / COFW_FILES[self.resolve_split(split)]]

    def _read(self, split: str) -> tuple[list[np.ndarray], dict]:
        path = self.label_paths(split)[0]
        images, phis, boxes = read_cofw_mat(path, COFW_KEYS[split])
        n = len(images)
        if phis.shape != (n, 87) or boxes.shape != (n, 4):
            raise DataError(f"{path}: expected {COFW_KEYS[split][1]} of shape ({n}, 87) and "
                            f"{COFW_KEYS[split][2]} of shape ({n}, 4) for {n} images; got {phis.shape}, "
                            f"{boxes.shape}")
        occluded = phis[:, 58:87] > 0.5
        table = {"points": np.stack([phis[:, :29], phis[:, 29:58]], axis=2) - 1.0,
                 "boxes": np.column_stack([boxes[:, :2] - 1.0, boxes[:, :2] - 1.0 + boxes[:, 2:]]),
                 "occluded": occluded,
                 "attributes": {"occlusion": _occlusion_bins(occluded.sum(axis=1))}}
        return images, table

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        images, table = self._read(split)
        return {"n": len(images), "counts": attribute_counts(table["attributes"]), "rows": len(images)}

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        images, table = self._read(split)
        source = ListImages(images)
        sizes = np.array([(im.shape[1], im.shape[0]) for im in source.images], dtype=np.int64).reshape(-1, 2)
        labels = LandmarkLabels(self.scheme, table["points"], None, table["boxes"], sizes, table["occluded"])
        ids = np.array([f"{split}_{i + 1:04d}" for i in range(len(images))], dtype=str)
        return Dataset(self.name, split, ids, (), None, source, attributes=table["attributes"],
                       content_tag=self.fingerprint_tag(), landmarks=labels)


def _occlusion_bins(counts: np.ndarray) -> np.ndarray:
    """Occluded points per face as a readable bin: none, 1-4, 5-9, 10+."""
    edges, names = np.array([1, 5, 10]), np.array(["none", "1-4", "5-9", "10+"])
    return names[np.searchsorted(edges, counts, side="right")]
