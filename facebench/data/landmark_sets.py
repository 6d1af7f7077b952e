"""Landmark datasets in their native layouts: MTFL, 300-W, WFLW and AFLW-19 (COFW-29: ``landmark_cofw``).

Every split is a ``Dataset`` without class labels whose ``landmarks`` (``LandmarkLabels``) hold the
ground-truth points in ORIGINAL-image pixels, 0-based (the centre of the top-left pixel is (0, 0)), in the
files' point order (the scheme named by the loader, ``facebench.data.landmark_schemes``), the face boxes the
dataset ships (x1, y1, x2, y2; None where it ships none) and each image's (width, height), read from the
file header with Pillow (no pixel is decoded; an EXIF-rotated file reports its turned size, as
``decode_image`` turns it). Per-sample attributes carry readable values (``pose: frontal``, ``smile: yes``).

Coordinate origins, per source (the spec: a 1-based source is shifted in the loader, never in the metric):

* MTFL ``training.txt`` / ``testing.txt``: the release does not document its origin; taken as 0-based, as
  given (no shift). An independent dlib check hints at a small x offset but does not prove one.
* 300-W ``.pts``: 1-based (the iBUG / Matlab convention; menpo's importer subtracts 1 too): 1 is subtracted.
* WFLW lists: taken as 0-based, as given (the common code reads them unchanged).
* AFLW-19 (HRNet / Faceptor csv): taken as 0-based, as given (HRNet adds 1 only inside its crop transform).

Images absent on disk: an error by default, naming how many and how to get them; with
``missing_images: skip`` the records whose image exists are loaded, the others counted in
``content_tag["rows_without_image"]`` and warned about (as ``fairface`` does).

The model's frame (``crop``, with ``margin``; both enter the dataset fingerprint when set):

* ``crop: image`` (default): the whole image; the only choice for a set without boxes unless ``landmarks``.
* ``crop: box``: the face box the dataset ships (WFLW's rectangle, AFLW-19's square), each side enlarged
  about the box centre to ``(1 + 2 margin)`` times its length; an error for a set that ships none (MTFL, 300-W).
* ``crop: landmarks``: a box from the ground truth (an oracle frame, like Faceptor's COFW crop): the square of
  side ``s = max(x_max - x_min, y_max - y_min)`` of the points, centred on their tight box's centre, then
  enlarged as above. Faceptor's ``scale_mu = 0.8`` zoom-out equals ``margin = 0.125`` (1 + 2m = 1 / 0.8).

The crop box is rounded to whole pixels and clamped to the image (``decode_image``'s rule, applied here so
that the stored box is the one cut), stored as the ``FileImages`` boxes; points stay in original pixels and
the ``landmarks`` protocol maps the model's points back through the box.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np

from facebench.data._native import NativeLoader, check_choice, find_child
from facebench.data.confine import joined_strings, refuse_outside
from facebench.data.dataset import Dataset, LandmarkLabels
from facebench.data.images import FileImages
from facebench.errors import ConfigError, DataError

_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def header_sizes(paths) -> np.ndarray:
    """(N, 2) int64 (width, height) of each image file from its header (Pillow's lazy open; an EXIF
    orientation of 5-8 swaps them, as decoding turns the image). A file Pillow cannot open is a DataError."""
    from PIL import Image

    out = np.empty((len(paths), 2), dtype=np.int64)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                w, h = im.size
                turned = im.getexif().get(_ORIENTATION, 1) in _TURNED
        except Exception as err:  # Pillow's plugins raise many types on corrupt headers
            raise DataError(f"cannot read the image header of {path} ({type(err).__name__}: {err}); "
                            f"replace or remove the file") from None
        out[i] = (h, w) if turned else (w, h)
    return out


def unique_ids(names) -> np.ndarray:
    """The names as ids; a name listed again gets ``#2``, ``#3``... (WFLW lists one line per face)."""
    seen: dict[str, int] = {}
    out = []
    for name in map(str, names):
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return np.asarray(out, dtype=str)


def attribute_counts(attributes: dict[str, np.ndarray]) -> dict[str, int]:
    """``{"attr=value": n}`` over every attribute, values in sorted order (the data check's counts)."""
    counts = {}
    for key, values in attributes.items():
        names, n = np.unique(np.asarray(values).astype(str), return_counts=True)
        counts.update({f"{key}={v}": int(c) for v, c in zip(names.tolist(), n.tolist())})
    return counts


class LandmarkLoader(NativeLoader):
    """Base of the landmark loaders: ``records(split)`` parses the label side (rows: relative image path,
    points (K, 2) 0-based, box or None, attributes); ``load`` checks the images and builds the Dataset."""

    scheme: ClassVar[str] = ""
    capabilities = frozenset({"attributes"})
    label_space = ()
    missing_hint: ClassVar[str] = ""  # how to get absent images (the error and the data check say it)

    def __init__(self, path=None, data_root=None, *, missing_images: str = "error", crop: str = "image",
                 margin: float = 0.0, **options):
        if crop != "image" or margin:  # set only when used: default fingerprints stay as they were
            options = {**options, "crop": crop, "margin": margin}
        super().__init__(path, data_root, missing_images=missing_images, **options)
        check_choice(self.name, "missing_images", missing_images, ("error", "skip"))
        check_crop(self.name, crop, margin)
        self.missing_images = missing_images
        self.crop, self.margin = crop, float(margin)

    def image_root(self, split: str) -> Path:
        return self.root

    def records(self, split: str) -> dict:
        """{"files": (N,) str, "points": (N, K, 2), "boxes": (N, 4) or None, "attributes": {name: (N,)}}."""
        raise NotImplementedError

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        table = self.records(split)
        n = len(table["files"])
        out = {"n": n, "counts": attribute_counts(table["attributes"]), "rows": n}
        absent = int((~self._present(split, table["files"])).sum())
        if absent:
            out["note"] = f"{absent:,} of {n:,} records have no image file. {self.missing_hint}".rstrip()
        return out

    def _present(self, split: str, files: np.ndarray) -> np.ndarray:
        paths = joined_strings(self.image_root(split), files)
        return np.array([os.path.isfile(p) for p in paths], dtype=bool)

    def _kept(self, split: str, files: np.ndarray) -> np.ndarray:
        """Indices of the records whose image exists; an error (count, first absent, how to get them)
        when some are absent and ``missing_images`` is ``error``, or when none exists."""
        refuse_outside(self.image_root(split), files, f"{self.name} {split} labels")
        present = self._present(split, files)
        n, absent = len(files), int((~present).sum())
        if absent and (self.missing_images == "error" or absent == n):
            first = self.image_root(split) / str(files[np.flatnonzero(~present)[0]])
            skip = ("" if absent == n else " Or set `dataset_args: {missing_images: skip}` to evaluate the "
                    "records whose images exist (the others are counted in the results).")
            raise self._not_found(f"{absent:,} of {n:,} {split} records have no image file (first: {first}). "
                                  f"{self.missing_hint}{skip}")
        if absent:
            warnings.warn(f"{self.name}/{split}: {absent:,} of {n:,} records have no image file and are left "
                          f"out", stacklevel=3)
        return np.flatnonzero(present)

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check_labels(split)
        table = self.records(split)
        keep = self._kept(split, table["files"])
        files = table["files"][keep]
        paths = joined_strings(self.image_root(split), files)
        boxes = None if table["boxes"] is None else table["boxes"][keep]
        labels = LandmarkLabels(self.scheme, table["points"][keep], None, boxes, header_sizes(paths))
        crops = frame_boxes(labels, self.crop, self.margin, f"{self.name}/{split}")
        tag = {**self.fingerprint_tag(), "rows_without_image": int(len(table["files"]) - len(keep))}
        return Dataset(self.name, split, unique_ids(files), (), None, FileImages(paths, crops),
                       attributes={k: np.asarray(v)[keep] for k, v in table["attributes"].items()},
                       content_tag=tag, landmarks=labels)

    def _bad(self, path: Path, line: int, what: str) -> DataError:
        return DataError(f"{path}:{line}: {what}.\n" + self.layout_help())


CROPS = ("image", "box", "landmarks")


def check_crop(dataset: str, crop: str, margin) -> None:
    """``crop`` one of CROPS; ``margin`` a number in [0, 2] (a share of the box side added on each side)."""
    check_choice(dataset, "crop", crop, CROPS)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 2:
        raise ConfigError(f"{dataset}: `margin` must be a number in [0, 2] (the share of the box's side added on "
                          f"each side; Faceptor's scale_mu 0.8 is margin 0.125), got {margin!r}.")
    if crop == "image" and margin:
        raise ConfigError(f"{dataset}: `margin` applies to `crop: box` or `crop: landmarks`; with `crop: image` "
                          f"(the whole image) leave it out.")


def landmark_boxes(points: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2: the square of side max(w, h) of each face's points, centred on their tight box."""
    lo, hi = points.min(axis=1), points.max(axis=1)
    centre, half = (lo + hi) / 2, (hi - lo).max(axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def enlarged(boxes: np.ndarray, margin: float) -> np.ndarray:
    """Each box grown about its centre to (1 + 2 margin) times its width and height."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * (1 + 2 * margin)
    return np.concatenate([centre - half, centre + half], axis=1)


def clamped_crops(boxes: np.ndarray, image_sizes: np.ndarray) -> np.ndarray:
    """The crop ``decode_image`` cuts for each box: rounded to whole pixels (half to even), clamped to
    [0, W] x [0, H]; (N, 4) float64 whole numbers (an empty crop stays empty: the caller checks)."""
    out = np.rint(np.asarray(boxes, dtype=np.float64))
    wh = np.asarray(image_sizes, dtype=np.float64)
    out[:, :2] = np.maximum(out[:, :2], 0)
    out[:, 2:] = np.minimum(out[:, 2:], wh)
    return out


def frame_boxes(labels: LandmarkLabels, crop: str, margin: float, where: str) -> np.ndarray | None:
    """The crop box of every image under ``crop`` / ``margin`` (None for the whole image), as cut."""
    if crop == "image":
        return None
    if crop == "box" and labels.boxes is None:
        raise ConfigError(f"{where} ships no face boxes, so `crop: box` has nothing to cut; use `crop: landmarks` "
                          f"(a box from the ground-truth points) or `crop: image`.")
    source = labels.boxes if crop == "box" else landmark_boxes(labels.points)
    crops = clamped_crops(enlarged(source, margin), labels.image_sizes)
    empty = np.flatnonzero((crops[:, 2] <= crops[:, 0]) | (crops[:, 3] <= crops[:, 1]))
    if len(empty):
        raise DataError(f"{where}: the {crop} crop of record {int(empty[0])} ({source[empty[0]].tolist()}) lies "
                        f"outside its {labels.image_sizes[empty[0]].tolist()} image ({len(empty)} such records); "
                        f"fix the boxes or use `crop: image`.")
    return crops


# -- MTFL ----------------------------------------------------------------------------------------------------
MTFL_FILES = {"train": "training.txt", "test": "testing.txt"}
MTFL_IMAGE_DIRS = {"train": ("lfw_5590", "net_7876"), "test": ("AFLW",)}
MTFL_CODES = {
    "gender": {"1": "male", "2": "female"},
    "smile": {"1": "yes", "2": "no"},
    "glasses": {"1": "yes", "2": "no"},
    "pose": {"1": "left_profile", "2": "left", "3": "frontal", "4": "right", "5": "right_profile"},
}


class MTFL(LandmarkLoader):
    """MTFL: 5 landmarks + gender/smile/glasses/pose (TCDCN); train 10,000 LFW+web faces, test 2,995 AFLW faces

    Points (five_point): image-left eye centre, image-right eye centre, nose, left and right mouth corners of
    an upright face; as labels they are anatomical (point 0 = the subject's RIGHT eye; 4 upside-down test
    faces have it on the image right). Coordinates are taken as 0-based, as given: the release does not
    document its origin (see the module docstring). No face box is shipped (``boxes`` is None).
    """

    name = "mtfl"
    scheme = "five_point"
    attribute_names = frozenset(MTFL_CODES)
    description = __doc__.splitlines()[0]
    citation = ("Z. Zhang, P. Luo, C. C. Loy, X. Tang. Facial Landmark Detection by Deep Multi-task Learning. "
                "ECCV 2014")
    license = ("research use (CUHK MMLab); the AFLW images are research-only and may not be redistributed")
    how_to_get = "http://mmlab.ie.cuhk.edu.hk/projects/TCDCN.html (MTFL.zip)"
    missing_hint = ("The images are part of MTFL.zip (http://mmlab.ie.cuhk.edu.hk/projects/TCDCN.html): unpack "
                    "its lfw_5590/, net_7876/ and AFLW/ folders beside training.txt and testing.txt.")
    layout = (
        "  <path>/training.txt, <path>/testing.txt   one face per line (CRLF): `<image> x1..x5 y1..y5 gender\n"
        "      smile glasses pose`; gender 1 male 2 female; smile/glasses 1 yes 2 no; pose 1 left profile,\n"
        "      2 left, 3 frontal, 4 right, 5 right profile; training paths use backslashes\n"
        "  <path>/lfw_5590/*.jpg, <path>/net_7876/*.jpg (train), <path>/AFLW/*.jpg (test)\n"
        "  options: missing_images error|skip (skip: records without an image are left out and counted);\n"
        "      crop image|landmarks, margin (the model's frame; MTFL ships no boxes)"
    )
    splits = ("train", "test")
    split_aliases = {"training": "train", "testing": "test"}
    default_dirname = "mtfl"
    expected_rows = {"train": 10000, "test": 2995}

    def label_paths(self, split):
        return [self.root / MTFL_FILES[self.resolve_split(split)]]

    def required_paths(self, split):
        """The label file and the split's image folders (only the label file with ``missing_images: skip``)."""
        split = self.resolve_split(split)
        folders = () if self.missing_images == "skip" else MTFL_IMAGE_DIRS[split]
        return [*self.label_paths(split), *(self.root / d for d in folders)]

    def records(self, split: str) -> dict:
        path = self.root / MTFL_FILES[split]
        rows = [(i + 1, line.split()) for i, line in enumerate(path.read_bytes().decode("ascii").splitlines())
                if line.strip()]  # every record after the first starts with a space; a last line holds " "
        for line, fields in rows:
            if len(fields) != 15:
                raise self._bad(path, line, f"expected 15 fields (path, 10 coordinates, 4 attributes), "
                                            f"got {len(fields)}")
        files = np.array([f[0].replace("\\", "/") for _, f in rows], dtype=str)
        try:
            coords = np.array([f[1:11] for _, f in rows], dtype=np.float64).reshape(-1, 10)
        except ValueError:
            line = next(ln for ln, f in rows if not _all_numbers(f[1:11]))
            raise self._bad(path, line, "a coordinate is not a number") from None
        points = np.stack([coords[:, :5], coords[:, 5:]], axis=2)  # x1..x5 y1..y5 -> (N, 5, (x, y))
        attributes = {name: self._codes(path, rows, 11 + k, name) for k, name in enumerate(MTFL_CODES)}
        return {"files": files, "points": points, "boxes": None, "attributes": attributes}

    def _codes(self, path: Path, rows: list, column: int, name: str) -> np.ndarray:
        codes = MTFL_CODES[name]
        for line, fields in rows:
            if fields[column] not in codes:
                raise self._bad(path, line, f"{name} code {fields[column]!r} is not one of {', '.join(codes)}")
        return np.array([codes[f[column]] for _, f in rows], dtype=str)


def _all_numbers(cells) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


# -- 300-W ---------------------------------------------------------------------------------------------------
W300_FOLDERS = {
    "afw": "afw", "helen_train": "helen/trainset", "lfpw_train": "lfpw/trainset",
    "helen_test": "helen/testset", "lfpw_test": "lfpw/testset", "ibug": "ibug",
    "indoor": "300W/01_Indoor", "outdoor": "300W/02_Outdoor",
}
W300_SPLITS = {
    "train": ("afw", "helen_train", "lfpw_train"),
    "common": ("lfpw_test", "helen_test"),
    "challenging": ("ibug",),
    "full": ("lfpw_test", "helen_test", "ibug"),
    "private": ("indoor", "outdoor"),
}
W300_SET = {"afw": "train", "helen_train": "train", "lfpw_train": "train", "helen_test": "common",
            "lfpw_test": "common", "ibug": "challenging", "indoor": "private", "outdoor": "private"}
W300_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class W300(LandmarkLoader):
    """300-W: 68 iBUG points in .pts files beside the images; common / challenging / full / private test sets

    Common = LFPW test + HELEN test (554), challenging = iBUG (135), full = both (689), private = the 300-W
    competition's 01_Indoor + 02_Outdoor (600), train = AFW + HELEN train + LFPW train (3,148). The .pts
    coordinates are 1-based (iBUG/Matlab): 1 is subtracted on load. No box is read (the iBUG box files
    are not beside the images): ``boxes`` is None.
    """

    name = "300w"
    scheme = "ibug68"
    attribute_names = frozenset({"subset", "set"})
    description = __doc__.splitlines()[0]
    citation = ("C. Sagonas, E. Antonakos, G. Tzimiropoulos, S. Zafeiriou, M. Pantic. 300 Faces In-the-Wild "
                "Challenge: database and results. Image and Vision Computing 47, 2016")
    license = "research use only (iBUG, Imperial College London); the images keep their owners' terms"
    how_to_get = "https://ibug.doc.ic.ac.uk/resources/300-W/ (afw, helen, lfpw, ibug and 300W archives)"
    missing_hint = "Every .pts file needs its image (same name, .png or .jpg) beside it."
    layout = (
        "  <path>/afw/, <path>/helen/{trainset,testset}/, <path>/lfpw/{trainset,testset}/, <path>/ibug/,\n"
        "  <path>/300W/01_Indoor/, <path>/300W/02_Outdoor/   each image beside its .pts file\n"
        "      (`version: 1`, `n_points: 68`, `{`, 68 lines `x y` 1-based, `}`)\n"
        "  splits: train, common (lfpw + helen test), challenging (ibug), full (= common + challenging;\n"
        "      `test` is its alias), private (300W indoor + outdoor); options: missing_images error|skip,\n"
        "      crop image|landmarks, margin (the model's frame; no boxes are read)"
    )
    splits = ("train", "common", "challenging", "full", "private")
    split_aliases = {"test": "full"}
    default_dirname = "300w"
    expected_sizes = {"train": 3148, "common": 554, "challenging": 135, "full": 689, "private": 600}

    def required_paths(self, split):
        return [self.root / W300_FOLDERS[s] for s in W300_SPLITS[self.resolve_split(split)]]

    def records(self, split: str) -> dict:
        files, points, subsets = [], [], []
        for subset in W300_SPLITS[split]:
            folder = self.root / W300_FOLDERS[subset]
            for pts in sorted(folder.glob("*.pts")):
                points.append(self.read_pts(pts) - 1.0)  # 1-based -> 0-based
                files.append(f"{W300_FOLDERS[subset]}/{_image_beside(pts).name}")
                subsets.append(subset)
        subsets = np.asarray(subsets, dtype=str)
        return {"files": np.asarray(files, dtype=str), "points": np.asarray(points).reshape(-1, 68, 2),
                "boxes": None,
                "attributes": {"subset": subsets, "set": np.asarray([W300_SET[s] for s in subsets], dtype=str)}}

    def read_pts(self, path: Path) -> np.ndarray:
        """The (68, 2) points of one iBUG .pts file, as written (1-based)."""
        lines = [ln.strip() for ln in path.read_text(encoding="ascii", errors="replace").splitlines() if ln.strip()]
        try:
            n = int(next(ln for ln in lines if ln.startswith("n_points")).split(":")[1])
            body = lines[lines.index("{") + 1: lines.index("}")]
            values = np.array([ln.split() for ln in body], dtype=np.float64)
        except (StopIteration, ValueError, IndexError):
            raise self._bad(path, 1, "not an iBUG .pts file (`n_points: 68`, `{`, one `x y` per line, `}`)") \
                from None
        if n != 68 or values.shape != (68, 2):
            raise self._bad(path, 1, f"expected 68 points of 2 coordinates, got n_points {n} and "
                                     f"{values.shape[0]} lines")
        return values


def _image_beside(pts: Path) -> Path:
    """The image with the .pts file's name (the first suffix found; .png when none exists)."""
    for suffix in W300_IMAGE_SUFFIXES:
        candidate = pts.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return pts.with_suffix(W300_IMAGE_SUFFIXES[0])


# -- WFLW ----------------------------------------------------------------------------------------------------
WFLW_LIST = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{}.txt"
WFLW_ATTRIBUTES = ("large_pose", "expression", "illumination", "make_up", "occlusion", "blur")


class WFLW(LandmarkLoader):
    """WFLW: 98 points, face rectangles and 6 attribute flags per face (train 7,500, test 2,500 faces)

    One line per face: 196 coordinates (x0 y0 ... x97 y97), the face rectangle x_min y_min x_max y_max,
    the flags pose, expression, illumination, make-up, occlusion, blur (0/1), the image path under
    WFLW_images/. The flags become the attributes large_pose, expression, illumination, make_up, occlusion,
    blur (yes/no): the six WFLW test subsets. Coordinates are taken as 0-based, as given. An image with
    several faces has one line per face: later ones get ids ``<path>#2``... .
    """

    name = "wflw"
    scheme = "wflw98"
    attribute_names = frozenset(WFLW_ATTRIBUTES)
    description = __doc__.splitlines()[0]
    citation = ("W. Wu, C. Qian, S. Yang, Q. Wang, Y. Cai, Q. Zhou. Look at Boundary: A Boundary-Aware Face "
                "Alignment Algorithm. CVPR 2018")
    license = "research use only; the images come from WIDER FACE (its terms apply)"
    how_to_get = "https://wywu.github.io/projects/LAB/WFLW.html (WFLW_images.tar.gz, WFLW_annotations.tar.gz)"
    missing_hint = "Unpack WFLW_images.tar.gz into <path>/WFLW_images/."
    layout = (
        "  <path>/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt\n"
        "      one face per line: 196 coordinates, 4 box values, 6 attribute flags, image path\n"
        "  <path>/WFLW_images/<event folder>/<image>.jpg; options: missing_images error|skip,\n"
        "      crop image|box|landmarks, margin (the model's frame)"
    )
    splits = ("train", "test")
    default_dirname = "wflw"
    expected_rows = {"train": 7500, "test": 2500}

    def label_paths(self, split):
        return [self.root / WFLW_LIST.format(self.resolve_split(split))]

    def required_paths(self, split):
        return [*self.label_paths(split), self.root / "WFLW_images"]

    def image_root(self, split: str) -> Path:
        return self.root / "WFLW_images"

    def records(self, split: str) -> dict:
        path = self.label_paths(split)[0]
        rows = [(i + 1, ln.split()) for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines())
                if ln.strip()]
        for line, fields in rows:
            if len(fields) != 207 or not _all_numbers(fields[:206]):
                raise self._bad(path, line, f"expected 196 coordinates, 4 box values, 6 flags and the image "
                                            f"path (207 fields), got {len(fields)}")
        values = np.array([f[:206] for _, f in rows], dtype=np.float64).reshape(-1, 206)
        flags = values[:, 200:206]
        if not np.isin(flags, (0, 1)).all():
            line = rows[int(np.flatnonzero(~np.isin(flags, (0, 1)).all(axis=1))[0])][0]
            raise self._bad(path, line, "an attribute flag is not 0 or 1")
        attributes = {name: np.where(flags[:, k] == 1, "yes", "no") for k, name in enumerate(WFLW_ATTRIBUTES)}
        return {"files": np.array([f[206] for _, f in rows], dtype=str),
                "points": values[:, :196].reshape(-1, 98, 2), "boxes": values[:, 196:200],
                "attributes": attributes}


# -- AFLW-19 -------------------------------------------------------------------------------------------------
AFLW_FILES = {"train": "face_landmarks_aflw_train.csv", "test": "face_landmarks_aflw_test.csv",
              "frontal": "face_landmarks_aflw_test_frontal.csv"}


class AFLW19(LandmarkLoader):
    """AFLW-19: 19 points per face in HRNet's csv (image, scale, box size, centre, 19 x 2 points); full / frontal

    Columns: image_name, scale, box_size, center_w, center_h, then x, y of the 19 points. The box is the
    square of side ``box_size`` around the centre, so its sqrt(w*h) equals ``box_size``: the AFLW-19 NME
    normaliser (HRNet / SAN). Coordinates are taken as 0-based, as given. Splits: train (20,000), test
    (the full test set, 4,386) and frontal (its 1,314 frontal faces).
    """

    name = "aflw19"
    scheme = "aflw19"
    capabilities = frozenset()
    attribute_names = frozenset()
    description = __doc__.splitlines()[0]
    citation = ("M. Koestinger, P. Wohlhart, P. M. Roth, H. Bischof. Annotated Facial Landmarks in the Wild. "
                "ICCV Workshops 2011; 19-point protocol: S. Zhu et al., CVPR 2016 (CCL)")
    license = "research use only (AFLW licence agreement, TU Graz); no redistribution"
    how_to_get = ("AFLW images from https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/aflw/ "
                  "(licence agreement); the csv files from HRNet-Facial-Landmark-Detection's data/aflw/")
    missing_hint = "Put the AFLW images under <path>/images/ as the csv's image_name says (e.g. 0/image00002.jpg)."
    layout = (
        "  <path>/face_landmarks_aflw_{train,test,test_frontal}.csv   header row, then per face: image_name,\n"
        "      scale, box_size, center_w, center_h, x0, y0, ..., x18, y18\n"
        "  <path>/images/<image_name>; splits: train, test (full), frontal; options: missing_images error|skip,\n"
        "      crop image|box|landmarks, margin (the model's frame)"
    )
    splits = ("train", "test", "frontal")
    split_aliases = {"full": "test"}
    default_dirname = "aflw"
    expected_rows = {"train": 20000, "test": 4386, "frontal": 1314}

    def label_paths(self, split):
        return [find_child(self.root, AFLW_FILES[self.resolve_split(split)])]

    def required_paths(self, split):
        return [*self.label_paths(split), self.root / "images"]

    def image_root(self, split: str) -> Path:
        return self.root / "images"

    def records(self, split: str) -> dict:
        path = self.label_paths(split)[0]
        rows = [(i + 1, [c.strip() for c in ln.split(",")])
                for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines()) if ln.strip()][1:]  # header
        for line, cells in rows:
            if len(cells) != 43 or not _all_numbers(cells[1:]):
                raise self._bad(path, line, f"expected image_name, scale, box_size, center_w, center_h and 38 "
                                            f"coordinates (43 numbers after the name), got {len(cells)} cells")
        values = np.array([c[1:] for _, c in rows], dtype=np.float64).reshape(-1, 42)
        size, cx, cy = values[:, 1], values[:, 2], values[:, 3]
        if (size <= 0).any():
            raise self._bad(path, rows[int(np.flatnonzero(size <= 0)[0])][0], "box_size must be positive")
        boxes = np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], axis=1)
        return {"files": np.array([c[0] for _, c in rows], dtype=str),
                "points": values[:, 4:].reshape(-1, 19, 2), "boxes": boxes, "attributes": {}}
