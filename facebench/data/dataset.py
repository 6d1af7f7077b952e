"""The Dataset abstraction and the DatasetLoader interface that registered datasets implement.

A ``Dataset`` is one split: stable sample ids, an image source, labels as canonical class names,
the dataset's own class order, and optional per-sample attributes (subject, group, domain, ...).
Its fingerprint hashes the sorted (id, label) pairs, the loader's content tag and the bytes of
every input image, so a store entry is reused only for the same samples, labels and pixels.
Landmark datasets also carry ``LandmarkLabels`` (points in original-image pixels, 0-based), face-parsing
datasets ``ParsingLabels`` (label maps read lazily from their files); both are hashed too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from facebench.errors import DataError, DatasetNotFoundError
from facebench.fingerprint import hash_object


@dataclass
class LandmarkLabels:
    """Ground-truth landmarks of a split, one row per sample (in the Dataset's sample order).

    ``scheme``: a key of ``facebench.data.landmark_schemes.SCHEMES`` (its point order is the files' order);
    ``points``: (N, K, 2) float64 (x, y) in ORIGINAL-image pixels, 0-based (the centre of the top-left pixel
    is (0, 0)): loaders convert 1-based sources; ``visible``: (N, K) bool, False where the dataset marks a
    point as absent (such points leave the NME), None = all visible; ``boxes``: (N, 4) float64 face boxes
    (x1, y1, x2, y2) the dataset ships, None if it ships none; ``image_sizes``: (N, 2) int64 (width, height)
    of each original image; ``occluded``: (N, K) bool, points annotated but marked occluded (COFW): they
    stay in the NME, None = not annotated. Checked on construction (shapes, dtypes, finite values, K =
    the scheme's point count).
    """

    scheme: str
    points: np.ndarray
    visible: np.ndarray | None
    boxes: np.ndarray | None
    image_sizes: np.ndarray
    occluded: np.ndarray | None = None

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float64)
        if self.points.ndim != 3 or self.points.shape[2] != 2:
            raise DataError(f"landmarks ({self.scheme}): points must be (N, K, 2), got shape {self.points.shape}")
        n, k = self.points.shape[:2]
        _check_scheme(self.scheme, k)
        if not np.isfinite(self.points).all():
            raise DataError(f"landmarks ({self.scheme}): {int((~np.isfinite(self.points)).any(axis=(1, 2)).sum())} "
                            f"samples have non-finite points; a loader must drop or fix them")
        self.visible = _flags(self.visible, (n, k), self.scheme, "visible")
        self.occluded = _flags(self.occluded, (n, k), self.scheme, "occluded")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64)
            if self.boxes.shape != (n, 4) or not np.isfinite(self.boxes).all():
                raise DataError(f"landmarks ({self.scheme}): boxes must be finite (N, 4) = ({n}, 4), "
                                f"got shape {self.boxes.shape}")
        self.image_sizes = np.asarray(self.image_sizes)
        if self.image_sizes.shape != (n, 2) or (self.image_sizes.size and self.image_sizes.min() <= 0):
            raise DataError(f"landmarks ({self.scheme}): image_sizes must be (N, 2) = ({n}, 2) positive "
                            f"(width, height), got shape {self.image_sizes.shape}")
        self.image_sizes = self.image_sizes.astype(np.int64)

    def __len__(self) -> int:
        return len(self.points)

    def subset(self, indices) -> "LandmarkLabels":
        idx = np.asarray(indices, dtype=np.int64)
        pick = (lambda a: None if a is None else a[idx])
        return LandmarkLabels(self.scheme, self.points[idx], pick(self.visible), pick(self.boxes),
                              self.image_sizes[idx], pick(self.occluded))

    def fingerprint_record(self, order: np.ndarray) -> dict:
        """What the dataset fingerprint hashes, rows in ``order``: the scheme and the arrays' bytes."""
        from facebench.content import combine

        arrays = [self.points[order].astype("<f8"), self.image_sizes[order].astype("<i8")]
        arrays += [a[order] for a in (self.visible, self.boxes, self.occluded) if a is not None]
        present = [a is not None for a in (self.visible, self.boxes, self.occluded)]
        return {"scheme": self.scheme, "present": present,
                "arrays": combine("landmarks", *(np.ascontiguousarray(a).tobytes() for a in arrays))}


def _check_scheme(scheme: str, k: int) -> None:
    """The scheme must be registered and have ``k`` points (ConfigError with did-you-mean on a bad name)."""
    from facebench.data.landmark_schemes import get_scheme

    expected = len(get_scheme(scheme).point_names)
    if expected != k:
        raise DataError(f"landmarks: scheme {scheme!r} has {expected} points, the labels have {k}")


def _flags(values, shape: tuple[int, int], scheme: str, name: str) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != shape:
        raise DataError(f"landmarks ({scheme}): {name} must be (N, K) = {shape}, got shape {values.shape}")
    return values.astype(bool)


@dataclass
class ParsingLabels:
    """Ground-truth face-parsing label maps of a split, read lazily, one source per sample (Dataset order).

    ``classes``: class names in id order (id 0 = background). ``sources[i]``: a tuple of (class id, path)
    pairs: a single pair with id -1 is a label-map PNG whose pixel values are the class ids (LaPa); else
    binary part masks merged in the tuple's order, a pixel > 0 taking the part's id and later parts
    overwriting earlier ones (CelebAMask-HQ), at the part files' size. ``mask_size`` (h, w): the size of a
    sample with no part file (all background). ``ignore_index``: a true label that is not scored (None: none).
    Label maps are in the label files' own frame (CelebAMask-HQ: 512 x 512 for 1024 x 1024 images). ``points``: (N, K, 2) landmarks
    in original-image pixels that a test transform aligns on (LaPa's 106), None if the dataset has none.
    ``frame``: a ``tanh_warp.WarpFrame`` when the images were warped (LaPa's ``align: tanh_warp``): predictions
    are then in the warped frame and come back to each image through it (None: the whole image)."""

    classes: tuple
    sources: list
    mask_size: tuple | None = None
    ignore_index: int | None = 255
    points: np.ndarray | None = None
    frame: Any = None

    def __post_init__(self):
        self.classes = tuple(str(c) for c in self.classes)
        if self.frame is not None and len(self.frame) != len(self.sources):
            raise DataError(f"parsing labels: a warp frame of {len(self.frame)} samples for {len(self.sources)} maps")
        self.sources = [tuple((int(k), str(p)) for k, p in src) for src in self.sources]
        for i, src in enumerate(self.sources):
            bad = [k for k, _ in src if not -1 <= k < len(self.classes) or (k == -1 and len(src) != 1)]
            if bad or (not src and self.mask_size is None):
                raise DataError(f"parsing labels: sample {i} has a bad source {src[:3]} (ids must lie in "
                                f"[0, {len(self.classes)}), -1 only for a single label map; an empty source "
                                f"needs mask_size)")
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float64)
            if self.points.ndim != 3 or len(self.points) != len(self.sources) or self.points.shape[2] != 2:
                raise DataError(f"parsing labels: points must be (N, K, 2) with N = {len(self.sources)}, got "
                                f"shape {self.points.shape}")

    def __len__(self) -> int:
        return len(self.sources)

    def read(self, i: int) -> np.ndarray:
        """The (H, W) uint8 label map of sample ``i``."""
        src = self.sources[i]
        if len(src) == 1 and src[0][0] == -1:
            return _read_mask(src[0][1])
        out = None
        for k, path in src:
            mask = _read_mask(path)
            out = np.zeros(mask.shape, dtype=np.uint8) if out is None else out
            if mask.shape != out.shape:
                raise DataError(f"parsing labels: {path} is {mask.shape}, the other parts {out.shape}")
            out[mask > 0] = k
        return np.zeros(tuple(self.mask_size), dtype=np.uint8) if out is None else out

    def subset(self, indices) -> "ParsingLabels":
        idx = np.asarray(indices, dtype=np.int64)
        return ParsingLabels(self.classes, [self.sources[int(i)] for i in idx], self.mask_size, self.ignore_index,
                             None if self.points is None else self.points[idx],
                             None if self.frame is None else self.frame.subset(idx))

    def fingerprint_record(self, order: np.ndarray) -> dict:
        """What the dataset fingerprint hashes, rows in ``order``: classes, the sources' class ids and the
        bytes of every label file (paths are not part of it)."""
        from facebench.content import combine, file_digests

        rows = [self.sources[int(i)] for i in order]
        digests = file_digests([p for src in rows for _, p in src])
        points = None if self.points is None else combine("points", self.points[order].astype("<f8").tobytes())
        record = {"classes": list(self.classes), "ids": [[k for k, _ in src] for src in rows],
                  "mask_size": None if self.mask_size is None else list(self.mask_size),
                  "ignore_index": self.ignore_index, "files": combine("parsing", digests.tobytes()),
                  "points": points}
        if self.frame is not None:  # absent otherwise: whole-image fingerprints stay as they were
            record["frame"] = combine("warp_frame", self.frame.fingerprint_bytes(order))
        return record


def _read_mask(path: str) -> np.ndarray:
    """A label or mask PNG as (H, W) uint8 raw values (palette indices for a 'P' image; the first channel of
    a 3-channel file, as the CelebAMask-HQ and LaPa tools read them)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except Exception as err:  # Pillow raises many types on a bad file
        raise DataError(f"cannot read the label map {path} ({type(err).__name__}: {err}); replace the "
                        f"file") from None
    arr = arr[..., 0] if arr.ndim == 3 else arr
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.bool_):
        raise DataError(f"label map {path}: expected an 8-bit single-channel PNG, got shape {arr.shape}, "
                        f"dtype {arr.dtype}")
    return arr.astype(np.uint8)


def _canonical_values(values: np.ndarray) -> tuple[str, bytes]:
    """(kind, bytes) of an attribute column that depend on its values only, not on how an array stores them:
    text as UTF-8 joined by NUL (whatever the string width), integers as int64, booleans as 0/1 bytes, reals as
    float64 with one NaN; anything else by each value's ``str``. The shape is flattened with its length."""
    flat = values.reshape(len(values), -1) if values.ndim > 1 else values
    if values.dtype.kind == "b":
        return f"bool{flat.shape[1:]}", np.ascontiguousarray(flat, dtype=np.uint8).tobytes()
    if values.dtype.kind in "iu":
        return f"int{flat.shape[1:]}", np.ascontiguousarray(flat, dtype="<i8").tobytes()
    if values.dtype.kind == "f":
        real = np.where(np.isnan(flat), np.nan, flat).astype("<f8") + 0.0  # one NaN; -0.0 is 0.0
        return f"real{flat.shape[1:]}", np.ascontiguousarray(real).tobytes()
    return f"text{flat.shape[1:]}", "\0".join(map(str, flat.ravel().tolist())).encode()


@dataclass
class Dataset:
    name: str
    split: str
    ids: np.ndarray
    classes: tuple[str, ...]
    labels: np.ndarray | None
    images: Any  # FileImages | ArrayImages
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    content_tag: dict = field(default_factory=dict)
    pairs: dict | None = None  # verification: {"a", "b": image indices, "same": bool, "fold": int[, "group": str]}
    landmarks: LandmarkLabels | None = None  # landmark datasets: ground-truth points per sample
    parsing: ParsingLabels | None = None  # face-parsing datasets: ground-truth label maps per sample
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        n = len(self.ids)
        if _has_duplicates(self.ids):
            raise DataError(f"dataset {self.name}/{self.split}: sample ids are not unique")
        if len(self.images) != n:
            raise DataError(f"dataset {self.name}/{self.split}: {len(self.images)} images for {n} ids")
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(str)
            if len(self.labels) != n:
                raise DataError(f"dataset {self.name}/{self.split}: {len(self.labels)} labels for {n} ids")
            known = np.isin(self.labels, np.asarray(self.classes, dtype=str))
            unknown = sorted(set(self.labels[~known].tolist()))
            if unknown:
                raise DataError(f"dataset {self.name}/{self.split}: labels {unknown} not in classes {self.classes}")
        for key, values in self.attributes.items():
            if len(values) != n:
                raise DataError(f"dataset {self.name}/{self.split}: attribute {key!r} has {len(values)} values for {n} ids")
        if self.pairs is not None:
            self.pairs = {k: np.asarray(v) for k, v in self.pairs.items()}
            m = len(self.pairs["a"])
            for key in ("a", "b", "same", "fold"):
                if key not in self.pairs or len(self.pairs[key]) != m:
                    raise DataError(f"dataset {self.name}/{self.split}: pairs need equal-length 'a', 'b', 'same', "
                                    f"'fold' arrays")
            if m and (self.pairs["a"].max() >= n or self.pairs["b"].max() >= n):
                raise DataError(f"dataset {self.name}/{self.split}: a pair refers to an image index >= {n}")
        if self.landmarks is not None and len(self.landmarks) != n:
            raise DataError(f"dataset {self.name}/{self.split}: {len(self.landmarks)} landmark rows for {n} ids")
        if self.parsing is not None and len(self.parsing) != n:
            raise DataError(f"dataset {self.name}/{self.split}: {len(self.parsing)} label maps for {n} ids")

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """Hash of the sorted (id, label) pairs, the class order, the loader's content tag and the
        content of every input image, in id order (``images.content_fingerprint(order)``: file bytes
        through the stat cache of ``facebench.content``, array bytes, transforms; sources without one,
        such as labels-only placeholders, and generated data add nothing), and the landmark labels when
        present (scheme, points, flags, boxes, image sizes). Computed once per Dataset object."""
        if self._fingerprint is None:
            order = np.argsort(self.ids, kind="stable")
            labels = self.labels[order].tolist() if self.labels is not None else None
            record = {
                "name": self.name,
                "split": self.split,
                "ids": self.ids[order].tolist(),
                "labels": labels,
                "classes": list(self.classes),
                "content": self.content_tag,
            }
            content = getattr(self.images, "content_fingerprint", None)
            # generated data (a ``generator`` version in the tag, or a source marked ``generated``: the
            # synthetic faces, procedural noise) is identified by its loader's tag (generator version, seed,
            # parameters), the same on every machine, not by bytes that floating point may change by one
            # grey level from one platform to another
            generated = "generator" in self.content_tag or getattr(self.images, "generated", False)
            images = content(order) if callable(content) and not generated else None
            if images is not None:
                record["images"] = images
            if self.landmarks is not None:
                record["landmarks"] = self.landmarks.fingerprint_record(order)
            if self.parsing is not None:
                record["parsing"] = self.parsing.fingerprint_record(order)
            self._fingerprint = hash_object(record)
        return self._fingerprint

    def annotations_fingerprint(self) -> str | None:
        """Hash of what protocols read beside the labels and pixels: each per-sample attribute (name and values in
        id order, by value: ``_canonical_values``) and the pair list (:meth:`pairs_fingerprint`); None when the
        split has neither. Kept apart from :meth:`fingerprint`, which keys the stored predictions (they do not depend
        on attributes or pairs)."""
        if not self.attributes and self.pairs is None:
            return None
        order = np.argsort(self.ids, kind="stable")
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(self.attributes):
            kind, data = _canonical_values(np.asarray(self.attributes[name])[order])
            h.update(f"attribute|{name}|{kind}|{len(order)}\0".encode())
            h.update(data)
        h.update(f"pairs|{self.pairs_fingerprint()}".encode())
        return h.hexdigest()  # not memoised: attributes edited in place count (the evaluation key reads this)

    def pairs_fingerprint(self) -> str | None:
        """Hash of the pair list (image ids of both sides, same flags, folds), None without pairs."""
        if self.pairs is None:
            return None
        return hash_object({"a": self.ids[self.pairs["a"]].tolist(), "b": self.ids[self.pairs["b"]].tolist(),
                            "same": self.pairs["same"].astype(bool).tolist(),
                            "fold": self.pairs["fold"].astype(int).tolist(),
                            "group": self.pairs["group"].tolist() if "group" in self.pairs else None})

    def subset(self, indices) -> "Dataset":
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(
            name=self.name,
            split=self.split,
            ids=self.ids[idx],
            classes=self.classes,
            labels=None if self.labels is None else self.labels[idx],
            images=self.images.subset(idx),
            attributes={k: np.asarray(v)[idx] for k, v in self.attributes.items()},
            content_tag=self.content_tag,
            landmarks=None if self.landmarks is None else self.landmarks.subset(idx),
            parsing=None if self.parsing is None else self.parsing.subset(idx),
        )  # pairs are not carried over: their indices refer to the full image list

    def class_counts(self) -> dict[str, int]:
        if self.labels is None:
            return {}
        return {c: int(np.sum(self.labels == c)) for c in self.classes}


def _has_duplicates(values: np.ndarray) -> bool:
    """Whether a str array holds a value twice (a sort and a neighbour comparison: 10^6 ids in well under
    a second, where ``np.unique`` on strings takes seconds)."""
    ordered = np.sort(values)
    return bool(len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any())


def resolve_data_root(data_root: str | Path | None) -> Path | None:
    """``--data-root`` / suite ``data_root`` first, then the FACEBENCH_DATA environment variable."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("FACEBENCH_DATA")
    return Path(env).expanduser() if env else None


class DatasetLoader:
    """Base class of registered datasets.

    Subclasses set the class attributes (they form the dataset card) and implement ``load``;
    ``check`` must be cheap (no image decoding) and raise ``DatasetNotFoundError`` naming the
    expected layout, so that a run stops before any model is loaded.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    license: ClassVar[str] = ""
    how_to_get: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    default_dirname: ClassVar[str] = ""
    needs_files: ClassVar[bool] = True
    # what every split provides, as data (facebench.records.CAPABILITIES: labels, pairs, attributes); checked
    # against a protocol's Requirements by `facebench validate` with nothing loaded. None: undeclared (not checked)
    capabilities: ClassVar[frozenset | None] = None
    # the names of every split's per-sample attributes (``Dataset.attributes``) and the label space (class names,
    # in order) of its labels, as data; a loader whose options decide them declares a property. None: known only
    # once the data is read (`validate` then says it could not check them)
    attribute_names: ClassVar[frozenset | None] = None
    label_space: ClassVar[tuple | None] = None

    def __init__(self, path: str | Path | None = None, data_root: str | Path | None = None, **options):
        self.options = options
        root = resolve_data_root(data_root)
        if path is not None:
            path = Path(path).expanduser()
            self.root = path if path.is_absolute() or root is None else root / path
        elif root is not None and self.default_dirname:
            self.root = root / self.default_dirname
        else:
            self.root = None

    # -- to implement ---------------------------------------------------------------------
    def load(self, split: str) -> Dataset:
        raise NotImplementedError

    def required_paths(self, split: str) -> list[Path]:
        """Files/folders that must exist for ``split`` (used by ``check``)."""
        return [self.root] if self.root is not None else []

    # -- shared -----------------------------------------------------------------------------
    def check(self, split: str) -> None:
        if split not in self.splits:
            from facebench.errors import ConfigError, did_you_mean

            raise ConfigError(
                f"Dataset {self.name!r} has no split {split!r}.{did_you_mean(split, self.splits)} "
                f"Splits: {', '.join(self.splits)}."
            )
        if not self.needs_files:
            return
        if self.root is None:
            raise DatasetNotFoundError(
                f"Dataset {self.name!r}: no location given. Set `path:` for the task in the suite, "
                f"pass --data-root DIR (expects DIR/{self.default_dirname or '<dataset>'}), or set FACEBENCH_DATA.\n"
                + self.layout_help()
            )
        missing = [p for p in self.required_paths(split) if not p.exists()]
        if missing:
            raise DatasetNotFoundError(
                f"Dataset {self.name!r} ({split}): {missing[0]} does not exist.\n" + self.layout_help()
            )

    def layout_help(self) -> str:
        text = f"Expected layout:\n{self.layout.rstrip()}" if self.layout else ""
        if self.how_to_get:
            text += f"\nHow to get it: {self.how_to_get}"
        return text

    def fingerprint_tag(self) -> dict:
        return {"loader": type(self).__name__, "options": self.options}
