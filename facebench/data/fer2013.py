"""FER2013 in its three common forms: the original CSV, the Kaggle image-folder repackaging, and FERPlus.

* ``fer2013``: ``fer2013.csv`` (``emotion,pixels,Usage``; 48x48 grey pixels as text), split by Usage.
* ``fer2013-images``: ``train/<class>/*.jpg`` + ``test/<class>/*.jpg``; the split comes from the
  file-name prefix (``Training_``, ``PublicTest_``, ``PrivateTest_``), not from the folder.
* ``ferplus``: the FER+ crowd votes (``fer2013new.csv``) joined to ``fer2013.csv`` **by row
  position** (the ``Image name`` column stops matching the row index after row 58).
"""

from __future__ import annotations

import os

import re
import warnings
from pathlib import Path

import numpy as np

from facebench.data.confine import confined_strings
from facebench.data._native import (MissingImages, NativeLoader, check_choice, list_dirs, list_images,
                                    resolve_file, summarize)
from facebench.data.dataset import resolve_data_root
from facebench.data.images import ArrayImages, FileImages
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError

USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
SIDE = 48
N_PIXELS = SIDE * SIDE
FER2013_CITATION = (
    "I. J. Goodfellow et al., Challenges in Representation Learning: A report on three machine learning "
    "contests, ICONIP 2013 (arXiv:1307.0414)"
)
FER2013_LICENSE = "no open licence (Kaggle ICML 2013 challenge data): research use only, do not redistribute"


# -- the CSV ------------------------------------------------------------------------------------
def read_fer2013_csv(path: Path, labels_only: bool = False):
    """The FER2013 CSV as a DataFrame of strings with stripped column names and values.

    ``labels_only`` skips the pixel column (for counting). Column names are stripped, so the Kaggle
    ``icml_face_data.csv`` spelling (`` Usage``, `` pixels``) is read as well.
    """
    import pandas as pd

    wanted = ("emotion", "Usage") if labels_only else ("emotion", "pixels", "Usage")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                            usecols=lambda c: c.strip() in wanted)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: not readable as the FER2013 CSV ({err}).") from None
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{path}: no column(s) {', '.join(missing)}; the FER2013 CSV has the header `emotion,pixels,Usage`. "
            f"Point `file:` at the original fer2013.csv (Kaggle's test.csv has no labels)."
        )
    for col in ("emotion", "Usage"):
        frame[col] = frame[col].str.strip()
    return frame


def fer2013_labels(emotion, path: Path, rows: np.ndarray | None = None) -> np.ndarray:
    """``emotion`` strings 0..6 -> canonical names (FER2013 order); a bad value names its file line."""
    values = np.asarray(emotion, dtype=str)
    ok = np.isin(values, [str(i) for i in range(7)])
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        row = int(rows[i]) if rows is not None else i
        raise ConfigError(f"{path}, line {row + 2}: emotion {values[i]!r} is not one of 0..6 "
                          f"(0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral).")
    order = np.array(LABEL_ORDERS["fer2013"])
    return order[values.astype(np.int64)]


def decode_pixels(pixels, path: Path, rows: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Space-separated pixel strings -> uint8 array (N, 48, 48), parsed by numpy in chunks."""
    pixels = list(pixels)
    out = np.empty((len(pixels), SIDE, SIDE), dtype=np.uint8)
    for start in range(0, len(pixels), chunk):
        part = pixels[start:start + chunk]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = np.fromstring(" ".join(part), dtype=np.int16, sep=" ")
        except ValueError:
            values = None
        if values is None or values.size != len(part) * N_PIXELS or values.min() < 0 or values.max() > 255:
            _raise_bad_pixels(part, path, rows[start:start + chunk])
        out[start:start + len(part)] = values.reshape(len(part), SIDE, SIDE).astype(np.uint8)
    return out


def row_ids(prefix: str, rows: np.ndarray) -> np.ndarray:
    """``f"{prefix}{row:05d}"`` for each (non-negative) row number, as one string operation."""
    rows = np.asarray(rows, dtype=np.int64)
    return np.char.add(prefix, np.char.zfill(rows.astype(str), 5)) if len(rows) else np.zeros(0, dtype=str)


def last_rows(names: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each distinct name, the last of ``rows`` that carries it (``names[i]`` is the name of ``rows[i]``)."""
    if not len(names):
        return np.zeros(0, dtype=np.int64)
    reverse = names[::-1]
    _, first_from_end = np.unique(reverse, return_index=True)
    return np.asarray(rows)[len(names) - 1 - first_from_end]


def _raise_bad_pixels(part, path, rows):
    for text, row in zip(part, rows):
        tokens = text.split()
        if len(tokens) != N_PIXELS:
            raise ConfigError(f"{path}, line {int(row) + 2}: {len(tokens)} pixel values, expected {N_PIXELS} "
                              f"(48x48); the file is truncated or not the original fer2013.csv.")
        bad = [t for t in tokens if not t.isdigit() or int(t) > 255]
        if bad:
            raise ConfigError(f"{path}, line {int(row) + 2}: pixel value {bad[0]!r} is not an integer 0..255.")
    raise ConfigError(f"{path}: the pixel column could not be parsed.")


class FER2013(NativeLoader):
    """FER2013 original CSV (emotion, 48x48 grey pixels as text, Usage): train/val/test = Training/PublicTest/PrivateTest"""

    name = "fer2013"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"usage"})
    label_space = LABEL_ORDERS["fer2013"]
    description = "FER2013 original CSV (emotion, 48x48 grey pixels as text, Usage): train/val/test = Training/PublicTest/PrivateTest"
    citation = FER2013_CITATION
    license = FER2013_LICENSE
    how_to_get = ("Kaggle 'challenges-in-representation-learning-facial-expression-recognition-challenge' "
                  "(fer2013.tar.gz -> fer2013/fer2013.csv, 35,887 rows, 301 MB)")
    layout = (
        "  <path>/fer2013.csv   header `emotion,pixels,Usage`; one row per face: emotion 0..6 (0 angry,\n"
        "  1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral), 2,304 space-separated grey values\n"
        "  (48x48, row-major), Usage Training (28,709) / PublicTest (3,589) / PrivateTest (3,589)\n"
        "  option `file: NAME.csv` reads another CSV name (relative to <path>, or absolute); <path> may\n"
        "  also be the CSV file itself"
    )
    splits = ("train", "val", "test")
    default_dirname = "fer2013"
    expected_sizes = {"train": 28709, "val": 3589, "test": 3589}

    def __init__(self, path=None, data_root=None, *, file: str = "fer2013.csv"):
        super().__init__(path, data_root)
        self.file = file
        self._frame = None

    @property
    def csv_path(self) -> Path | None:
        if self.root is None:
            return None
        if self.root.suffix.lower() == ".csv" and not self.root.is_dir():
            return self.root
        return resolve_file(self.root, self.file)

    def required_paths(self, split):
        return [self.csv_path]

    def frame(self):
        if self._frame is None:
            self._frame = read_fer2013_csv(self.csv_path)
        return self._frame

    def _rows(self, frame, split) -> np.ndarray:
        rows = np.flatnonzero(frame["Usage"].to_numpy() == USAGE[split])
        if len(rows) == 0:
            raise self._not_found(
                f"{self.csv_path} has no {USAGE[split]} rows (it has {len(frame):,} rows in all; the full file has "
                f"35,887). The file is truncated or not the original fer2013.csv.")
        return rows

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        frame = self.frame()
        rows = self._rows(frame, split)
        labels = fer2013_labels(frame["emotion"].to_numpy()[rows], self.csv_path, rows)
        pixels = decode_pixels(frame["pixels"].to_numpy()[rows], self.csv_path, rows)
        ids = row_ids("fer2013-", rows)
        return self._dataset(split, ids, LABEL_ORDERS["fer2013"], labels, ArrayImages(pixels),
                             attributes={"usage": frame["Usage"].to_numpy()[rows].astype(str)})

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        frame = self._frame if self._frame is not None else read_fer2013_csv(self.csv_path, labels_only=True)
        rows = np.flatnonzero(frame["Usage"].to_numpy() == USAGE[split])
        labels = fer2013_labels(frame["emotion"].to_numpy()[rows], self.csv_path, rows)
        return summarize(labels, LABEL_ORDERS["fer2013"], rows=len(rows))


# -- the image-folder repackaging -------------------------------------------------------------------
FOLDER_CLASSES = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                  "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}
PREFIX_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_AUGMENTED_COPY = re.compile(r"\.(jpe?g|png)\d+\.(jpe?g|png)$", re.IGNORECASE)  # e.g. x.jpg0.jpg


class FER2013Images(NativeLoader):
    """FER2013 image folders (Kaggle repackaging, train/ and test/<class>/*.jpg); split from the Training_/PublicTest_/PrivateTest_ prefix"""

    name = "fer2013-images"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"usage"})
    label_space = LABEL_ORDERS["fer2013"]
    description = ("FER2013 image folders (Kaggle repackaging, train/ and test/<class>/*.jpg); split from the "
                   "Training_/PublicTest_/PrivateTest_ prefix")
    citation = FER2013_CITATION
    license = FER2013_LICENSE
    how_to_get = ("Kaggle dataset 'msambare/fer2013' (archive.zip -> train/, test/); 48x48 grey JPEGs re-encoded "
                  "from the CSV (pixels differ slightly from CSV-based pipelines; names are not CSV row indices)")
    layout = (
        "  <path>/train/<class>/Training_<n>.jpg                 (28,709 images)\n"
        "  <path>/test/<class>/PublicTest_<n>.jpg, PrivateTest_<n>.jpg   (3,589 + 3,589)\n"
        "  <class> in angry disgust fear happy neutral sad surprise; split train = train/, val = the\n"
        "  PublicTest_ files of test/, test = the PrivateTest_ files of test/; with `merge_test: true`\n"
        "  the splits are train and test = all of test/ (PublicTest + PrivateTest, 7,178 images)"
    )
    splits = ("train", "val", "test")
    default_dirname = "fer2013_images"
    expected_sizes = {"train": 28709, "val": 3589, "test": 3589}

    def __init__(self, path=None, data_root=None, *, merge_test: bool = False):
        super().__init__(path, data_root, merge_test=bool(merge_test))
        self.merge_test = bool(merge_test)
        if self.merge_test:
            self.splits = ("train", "test")
            self.expected_sizes = {"train": 28709, "test": 7178}
        self.skipped: list[str] = []

    def _folder(self, split) -> Path:
        return self.root / ("train" if split == "train" else "test")

    def required_paths(self, split):
        return [self._folder(split)]

    def _index(self, split):
        split = self.resolve_split(split)
        self.check(split)
        folder = self._folder(split)
        ids, labels, paths, usage = [], [], [], []
        for cls in list_dirs(folder):
            label = FOLDER_CLASSES.get(cls.lower())
            if label is None:
                raise self._not_found(f"unexpected class folder {folder / cls}; expected the folders "
                                      f"{', '.join(FOLDER_CLASSES)}.")
            class_folder = os.path.join(folder, cls)  # joined as strings: no Path object per image
            for name in list_images(folder / cls):
                if _AUGMENTED_COPY.search(name):
                    self.skipped.append(f"{cls}/{name} (augmented copy)")
                    continue
                prefix = name.split("_", 1)[0]
                file_split = PREFIX_USAGE.get(prefix)
                if split == "train":
                    if file_split not in (None, "train"):
                        self.skipped.append(f"train/{cls}/{name} (prefix {prefix}_ in train/)")
                        continue
                elif not self.merge_test:
                    if file_split is None:
                        raise self._not_found(
                            f"{folder / cls / name} has no PublicTest_/PrivateTest_ prefix, so its split cannot be "
                            f"told. Set `merge_test: true` to use all of test/ as the split `test`.")
                    if file_split != split:
                        continue
                ids.append(f"{cls}/{name}")
                labels.append(label)
                paths.append(os.path.join(class_folder, name))
                usage.append({"train": "Training", "val": "PublicTest", "test": "PrivateTest"}.get(file_split, ""))
        if not ids:
            raise self._not_found(f"no {split} images under {folder}.")
        return split, ids, labels, paths, usage

    def load(self, split: str):
        split, ids, labels, paths, usage = self._index(split)
        return self._dataset(split, ids, LABEL_ORDERS["fer2013"], labels, FileImages(paths),
                             attributes={"usage": np.array(usage)})

    def summary(self, split: str) -> dict:
        _, ids, labels, _, _ = self._index(split)
        return summarize(labels, LABEL_ORDERS["fer2013"], rows=len(ids))


# -- FERPlus ---------------------------------------------------------------------------------------
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                "unknown", "NF")
FERPLUS_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


def ferplus_labels(votes: np.ndarray, vote: str = "plurality", ties: str = "drop") -> np.ndarray:
    """Per row, the winning class index 0..7 in FER+ order, or -1 when the row is excluded.

    ``plurality``: the emotion with the most votes; excluded when unknown or NF has at least as many
    votes as the best emotion, and (``ties: drop``) when two emotions share the most votes;
    ``ties: first`` takes the first in FER+ column order instead.
    ``majority``: the FER+ reference code's majority mode: single votes are removed as noise, the winner
    needs more than half of the remaining votes (unknown and NF included), rows won by unknown or NF
    and rows without such a winner are excluded.
    """
    votes = np.asarray(votes, dtype=np.int64)
    emotions = votes[:, :8]
    if vote == "plurality":
        best = emotions.max(axis=1)
        label = emotions.argmax(axis=1)
        excluded = votes[:, 8:].max(axis=1) >= best
        if ties == "drop":
            excluded |= (emotions == best[:, None]).sum(axis=1) > 1
    else:
        kept = np.where(votes > 1, votes, 0)
        total = kept.sum(axis=1)
        label = kept.argmax(axis=1)
        excluded = (2 * kept.max(axis=1) <= total) | (label >= 8)
    return np.where(excluded, -1, label)


class FERPlus(NativeLoader):
    """FERPlus: FER2013 relabelled by 10 crowd votes per face (fer2013new.csv joined to fer2013.csv by row), 8 or 7 classes"""

    name = "ferplus"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"usage", "image_name"})
    description = ("FERPlus: FER2013 relabelled by 10 crowd votes per face (fer2013new.csv joined to fer2013.csv "
                   "by row), 8 or 7 classes")
    citation = ("E. Barsoum, C. Zhang, C. Canton Ferrer, Z. Zhang, Training Deep Networks for Facial Expression "
                "Recognition with Crowd-Sourced Label Distribution, ICMI 2016 (arXiv:1608.01041)")
    license = "labels: MIT (Microsoft); pixels: FER2013 (research use only)"
    how_to_get = ("labels: github.com/microsoft/FERPlus (fer2013new.csv); pixels: the FER2013 fer2013.csv from "
                  "Kaggle, placed at <data_root>/fer2013/fer2013.csv or given with `fer2013_csv:`")
    layout = (
        "  <path>/fer2013new.csv   header `Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,\n"
        "  fear,contempt,unknown,NF`; 35,887 rows in the row order of fer2013.csv (Training 28,709 /\n"
        "  PublicTest 3,589 / PrivateTest 3,589); joined to fer2013.csv BY ROW POSITION (the names drift\n"
        "  from the row index after row 58)\n"
        "  images: csv (default)  pixels from `fer2013_csv` (default <data_root>/fer2013/fer2013.csv)\n"
        "          folders        <path>/data/FER2013Train|FER2013Valid|FER2013Test/<Image name>.png\n"
        "                         (written by FERPlus's generate_training_data.py)\n"
        "          none           labels only (counts, label statistics; reading a pixel is an error)"
    )
    splits = ("train", "val", "test")
    default_dirname = "ferplus"
    expected_rows = {"train": 28709, "val": 3589, "test": 3589}  # label-file rows (samples depend on the vote)

    def __init__(self, path=None, data_root=None, *, classes: int = 8, vote: str = "plurality", ties: str = "drop",
                 images: str = "csv", fer2013_csv: str | None = None, allow_partial: bool = False):
        try:
            classes = int(classes)
        except (TypeError, ValueError):
            classes = -1
        check_choice("ferplus", "classes", classes, (8, 7))
        check_choice("ferplus", "vote", vote, ("plurality", "majority"))
        check_choice("ferplus", "ties", ties, ("drop", "first"))
        check_choice("ferplus", "images", images, ("csv", "folders", "none"))
        super().__init__(path, data_root, classes=classes, vote=vote, ties=ties if vote == "plurality" else None,
                         images=images, allow_partial=bool(allow_partial))
        self.n_classes, self.vote, self.ties, self.images = classes, vote, ties, images
        self.allow_partial = bool(allow_partial)
        root = resolve_data_root(data_root)
        if fer2013_csv is not None:
            p = Path(fer2013_csv).expanduser()
            self.fer2013_csv = p if p.is_absolute() or root is None else root / p
        elif root is not None:
            self.fer2013_csv = root / "fer2013" / "fer2013.csv"
        elif self.root is not None:
            self.fer2013_csv = self.label_file.parent.parent / "fer2013" / "fer2013.csv"
        else:
            self.fer2013_csv = None
        self._votes = None
        self._pixel_frame = None

    @property
    def classes(self) -> tuple[str, ...]:
        return LABEL_ORDERS["ferplus"][: self.n_classes]

    label_space = classes

    @property
    def label_file(self) -> Path | None:
        if self.root is None:
            return None
        if self.root.suffix.lower() == ".csv" and not self.root.is_dir():
            return self.root
        return self.root / "fer2013new.csv"

    def label_paths(self, split):
        return [self.label_file]

    def required_paths(self, split):
        paths = [self.label_file]
        if self.images == "csv":
            paths.append(self.fer2013_csv)
        elif self.images == "folders":
            paths.append(self.label_file.parent / "data" / FERPLUS_FOLDERS[split])
        return paths

    def layout_help(self) -> str:
        text = super().layout_help()
        if self.images == "csv":
            text += ("\nFERPlus needs the FER2013 pixels: set `fer2013_csv:` to fer2013.csv, or `images: none` to "
                     "read the labels alone.")
        return text

    def votes(self):
        """fer2013new.csv as a DataFrame (Usage, Image name, 10 integer vote columns)."""
        if self._votes is None:
            import pandas as pd

            frame = pd.read_csv(self.label_file, dtype=str, keep_default_na=False)
            frame.columns = [c.strip() for c in frame.columns]
            missing = [c for c in ("Usage", "Image name", *VOTE_COLUMNS) if c not in frame.columns]
            if missing:
                raise ConfigError(f"{self.label_file}: no column(s) {', '.join(missing)}; expected the FER+ header "
                                  f"`Usage,Image name,{','.join(VOTE_COLUMNS)}`.")
            frame["Usage"] = frame["Usage"].str.strip()
            frame["Image name"] = frame["Image name"].str.strip()
            for col in VOTE_COLUMNS:
                values = pd.to_numeric(frame[col], errors="coerce")
                if values.isna().any():
                    row = int(np.flatnonzero(values.isna().to_numpy())[0])
                    raise ConfigError(f"{self.label_file}, line {row + 2}: vote count {frame[col].iloc[row]!r} "
                                      f"in column {col!r} is not a number.")
                frame[col] = values.astype(np.int64)
            self._votes = frame
        return self._votes

    def _labels(self, frame) -> np.ndarray:
        index = ferplus_labels(frame[list(VOTE_COLUMNS)].to_numpy(), self.vote, self.ties)
        index[index >= self.n_classes] = -1
        return index

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        frame = self.votes()
        in_split = frame["Usage"].to_numpy() == USAGE[split]
        index = self._labels(frame)[in_split]
        labels = np.array(self.classes)[index[index >= 0]]
        return summarize(labels, self.classes, rows=int(in_split.sum()))

    def _pixels(self):
        if self._pixel_frame is None:
            self._pixel_frame = read_fer2013_csv(self.fer2013_csv)
        return self._pixel_frame

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        frame = self.votes()
        usage = frame["Usage"].to_numpy()
        names = frame["Image name"].to_numpy().astype(str)
        index = self._labels(frame)
        keep = (usage == USAGE[split]) & (index >= 0)
        if self.images == "csv":
            pixel_frame = self._pixels()
            n_px, n_lab = len(pixel_frame), len(frame)
            if n_px > n_lab:
                raise self._not_found(f"{self.fer2013_csv} has {n_px:,} rows but {self.label_file} has {n_lab:,}; "
                                      f"they are joined by row position and must hold the same rows.")
            if n_px < n_lab and not self.allow_partial:
                raise self._not_found(
                    f"{self.fer2013_csv} has {n_px:,} rows but {self.label_file} has {n_lab:,}; they are joined by "
                    f"row position, so use the complete fer2013.csv, or set `allow_partial: true` to keep only the "
                    f"first {n_px:,} rows.")
            px_usage = pixel_frame["Usage"].to_numpy()
            mismatch = np.flatnonzero(px_usage != usage[:n_px])
            if len(mismatch):
                r = int(mismatch[0])
                raise self._not_found(
                    f"row {r} is {px_usage[r]} in {self.fer2013_csv} but {usage[r]} in {self.label_file}: the files "
                    f"do not come from the same release (they are joined by row position).")
            keep[n_px:] = False
            rows = np.flatnonzero(keep)
            if len(rows) == 0:
                raise self._not_found(f"no {USAGE[split]} rows of {self.label_file} fall within the {n_px:,} rows "
                                      f"of {self.fer2013_csv}.")
            images = ArrayImages(decode_pixels(pixel_frame["pixels"].to_numpy()[rows], self.fer2013_csv, rows))
        elif self.images == "folders":
            folder = self.label_file.parent / "data" / FERPLUS_FOLDERS[split]
            # generate_training_data.py writes each named row to <folder>/<name>, so a name used twice holds
            # the pixels of its last row: the earlier rows with that name have no image of their own.
            in_split = np.flatnonzero((usage == USAGE[split]) & (names != ""))
            has_image = np.zeros(len(frame), dtype=bool)
            has_image[last_rows(names[in_split], in_split)] = True
            rows = np.flatnonzero(keep & has_image)
            images = FileImages(confined_strings(folder, names[rows], "FER+ labels"))
        else:
            rows = np.flatnonzero(keep)
            images = MissingImages(len(rows), "ferplus was loaded with `images: none` (labels only); set `images: "
                                              "csv` and `fer2013_csv:` to read the pixels.")
        ids = row_ids("ferplus-", rows)
        labels = np.array(self.classes)[index[rows]]
        return self._dataset(split, ids, self.classes, labels, images,
                             attributes={"usage": usage[rows].astype(str), "image_name": names[rows]})
