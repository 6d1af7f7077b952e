"""AffectNet (manually annotated part): training.csv / validation.csv with face boxes and expression ids.

Expression ids 0..7 are neutral, happy, sad, surprise, fear, disgust, anger, contempt (the canonical
order); 8, 9 and 10 (none, uncertain, non-face) are excluded. AffectNet has no public test set: the
field evaluates on the official validation set, so the split ``test`` is accepted as an alias of
``val`` (the returned dataset's split is ``val``, so both names share one cache entry).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facebench.data.confine import confined_strings
from facebench.data._native import NativeLoader, check_choice, resolve_file, summarize
from facebench.data.images import FileImages
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError

COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")
FILES = {"train": "training.csv", "val": "validation.csv"}
_FULL_IMAGE = (0.0, 0.0, 1e9, 1e9)  # crop box that keeps the whole image (decode_image clamps it)


class AffectNet(NativeLoader):
    """AffectNet: in-the-wild faces with 8 expressions (training.csv / validation.csv, face boxes); 7 classes without contempt"""

    name = "affectnet"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"valence", "arousal"})
    description = ("AffectNet: in-the-wild faces with 8 expressions (training.csv / validation.csv, face boxes); "
                   "7 classes without contempt")
    citation = ("A. Mollahosseini, B. Hasani, M. H. Mahoor, AffectNet: A Database for Facial Expression, Valence, "
                "and Arousal Computing in the Wild, IEEE Trans. Affective Computing 10(1), 2019")
    license = "research only, under the AffectNet licence agreement (University of Denver); do not redistribute"
    how_to_get = "request access at http://mohammadmahoor.com/affectnet/ (academic licence agreement)"
    layout = (
        "  <path>/training.csv, <path>/validation.csv   header `subDirectory_filePath,face_x,face_y,\n"
        "      face_width,face_height,facial_landmarks,expression,valence,arousal` (a header-less\n"
        "      validation.csv is read with the same columns); expression 0..7 = neutral, happy, sad,\n"
        "      surprise, fear, disgust, anger, contempt; 8 none, 9 uncertain, 10 non-face are excluded\n"
        "  <path>/Manually_Annotated_Images/<subDirectory_filePath>   (e.g. 689/737db2...e1.jpg); the face\n"
        "      is cropped by the box (option `crop: false` keeps the whole image; `image_dir:` renames the folder)\n"
        "  splits: train, val (the official validation set; `test` is accepted as its alias)"
    )
    splits = ("train", "val")
    split_aliases = {"test": "val"}
    default_dirname = "affectnet"

    def __init__(self, path=None, data_root=None, *, classes: int = 8, crop: bool = True,
                 image_dir: str = "Manually_Annotated_Images"):
        try:
            classes = int(classes)
        except (TypeError, ValueError):
            classes = -1
        check_choice("affectnet", "classes", classes, (8, 7))
        super().__init__(path, data_root, classes=classes, crop=bool(crop))
        self.n_classes, self.crop, self.image_dir_name = classes, bool(crop), image_dir
        # the commonly cited sizes of the manually annotated part (500 validation images per class)
        self.expected_sizes = {"train": 287651, "val": 4000} if classes == 8 else {"train": 283901, "val": 3500}
        self._frames: dict[str, object] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return LABEL_ORDERS["affectnet"][: self.n_classes]

    label_space = classes

    @property
    def image_dir(self) -> Path:
        return resolve_file(self.root, self.image_dir_name)

    def label_paths(self, split):
        return [self.root / FILES[self.resolve_split(split)]]

    def required_paths(self, split):
        return [*self.label_paths(split), self.image_dir]

    def read(self, split: str):
        """The split's CSV as a DataFrame of strings (all rows, ids 8-10 included)."""
        import pandas as pd

        split = self.resolve_split(split)
        if split not in self._frames:
            path = self.root / FILES[split]
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline()
            has_header = "subDirectory_filePath" in first
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, header=0 if has_header else None,
                                names=None if has_header else list(COLUMNS),
                                usecols=lambda c: str(c).strip() != "facial_landmarks")  # long and unused
            frame.columns = [str(c).strip() for c in frame.columns]
            missing = [c for c in COLUMNS if c not in frame.columns and c != "facial_landmarks"]
            if missing:
                raise ConfigError(f"{path}: no column(s) {', '.join(missing)}; expected the AffectNet header "
                                  f"`{','.join(COLUMNS)}`.")
            self._frames[split] = frame
        return self._frames[split]

    def _select(self, split):
        frame = self.read(split)
        expression = pd_numeric(frame["expression"])
        if np.isnan(expression).any():
            row = int(np.flatnonzero(np.isnan(expression))[0])
            raise ConfigError(f"{self.root / FILES[split]}, row {row + 1}: expression "
                              f"{frame['expression'].iloc[row]!r} is not a number.")
        keep = (expression >= 0) & (expression < self.n_classes)
        return frame, np.flatnonzero(keep), expression

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        frame, rows, expression = self._select(split)
        labels = np.array(self.classes)[expression[rows].astype(np.int64)]
        return summarize(labels, self.classes, rows=len(frame))

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        frame, rows, expression = self._select(split)
        sub = frame.iloc[rows]
        rel = sub["subDirectory_filePath"].str.strip().to_numpy().astype(str)
        paths = confined_strings(self.image_dir, rel, "AffectNet labels")
        boxes = None
        if self.crop:
            x, y, w, h = (pd_numeric(sub[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
            boxes = np.stack([x, y, x + w, y + h], axis=1)
            bad = np.isnan(boxes).any(axis=1) | (w <= 0) | (h <= 0)
            boxes[bad] = _FULL_IMAGE
        ids = _unique_ids(rel)
        attributes = {"valence": pd_numeric(sub["valence"]), "arousal": pd_numeric(sub["arousal"])}
        labels = np.array(self.classes)[expression[rows].astype(np.int64)]
        return self._dataset(split, ids, self.classes, labels, FileImages(paths, boxes), attributes=attributes)


def pd_numeric(series) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(series.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)


def _unique_ids(names: np.ndarray) -> np.ndarray:
    """The file paths as ids; a path listed twice gets ``#2``, ``#3``... on its later rows."""
    import pandas as pd

    names = np.asarray(names, dtype=str)
    occurrence = pd.Series(names).groupby(names, sort=False).cumcount().to_numpy() + 1  # 1 = first row of a path
    out = names.astype(object)
    for i in np.flatnonzero(occurrence > 1).tolist():  # the rare repeated rows
        out[i] = f"{names[i]}#{occurrence[i]}"
    return np.asarray(out.tolist(), dtype=str) if len(out) else names
