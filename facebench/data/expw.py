"""ExpW (Expression in-the-Wild): web images with one line per annotated face in ``label/label.lst``.

Line format: ``image_name face_id top left right bottom confidence label`` (note: top before left);
label 0..6 = angry, disgust, fear, happy, sad, surprise, neutral. One image can hold several faces,
so the sample id is ``<image_name>#<face_id>`` and each face is cropped by its box.
"""

from __future__ import annotations

import numpy as np

from facebench.data.confine import confined_paths
from facebench.data._native import NativeLoader, summarize
from facebench.data.images import FileImages
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError


class ExpW(NativeLoader):
    """ExpW: 91,793 web faces with 7 expressions, label/label.lst boxes (top left right bottom) over image/origin/"""

    name = "expw"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"confidence"})
    label_space = LABEL_ORDERS["expw"]
    description = "ExpW: 91,793 web faces with 7 expressions, label/label.lst boxes (top left right bottom) over image/origin/"
    citation = ("Z. Zhang, P. Luo, C. C. Loy, X. Tang, From Facial Expression Recognition to Interpersonal Relation "
                "Prediction, IJCV 126(5), 2018")
    license = "non-commercial research only (ExpW terms); do not redistribute"
    how_to_get = "http://mmlab.ie.cuhk.edu.hk/projects/socialrelation/index.html (ExpW download: image/ and label/)"
    layout = (
        "  <path>/label/label.lst   lines `image_name face_id top left right bottom confidence label`,\n"
        "      label 0..6 = angry, disgust, fear, happy, sad, surprise, neutral\n"
        "  <path>/image/origin/<image_name>   faces are cropped by their box (`crop: false` keeps the image);\n"
        "      `min_confidence: c` keeps faces whose detector confidence is >= c\n"
        "  split: all (ids <image_name>#<face_id>, attribute confidence)"
    )
    splits = ("all",)
    default_dirname = "expw"
    expected_sizes = {"all": 91793}

    def __init__(self, path=None, data_root=None, *, crop: bool = True, min_confidence: float = 0.0):
        try:
            min_confidence = float(min_confidence)
        except (TypeError, ValueError):
            raise ConfigError(f"expw: `min_confidence` must be a number, got {min_confidence!r}.") from None
        super().__init__(path, data_root, crop=bool(crop), min_confidence=min_confidence)
        self.crop, self.min_confidence = bool(crop), min_confidence
        self._table = None

    @property
    def label_file(self):
        return self.root / "label" / "label.lst"

    def label_paths(self, split):
        return [self.label_file]

    def required_paths(self, split):
        return [self.label_file, self.root / "image" / "origin"]

    def table(self):
        """(ids, image names, boxes (left, top, right, bottom), confidences, label indices) of every line."""
        if self._table is None:
            ids, names, boxes, conf, values = [], [], [], [], []
            seen = set()
            duplicates = 0
            with open(self.label_file, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    parts = line.split()
                    if not parts:
                        continue
                    try:
                        name, face = parts[0], parts[1]
                        top, left, right, bottom = (float(v) for v in parts[2:6])
                        confidence, value = float(parts[6]), int(parts[7])
                        well_formed = len(parts) == 8
                    except (IndexError, ValueError):  # too few fields, or not numbers
                        well_formed = False
                    if not well_formed:
                        raise ConfigError(f"{self.label_file}, line {lineno}: expected `image_name face_id top left "
                                          f"right bottom confidence label`, got {line.strip()!r}.") from None
                    if not 0 <= value <= 6:
                        raise ConfigError(f"{self.label_file}, line {lineno}: label {value} is outside 0..6.")
                    key = f"{name}#{face}"
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                    ids.append(key)
                    names.append(name)
                    boxes.append((left, top, right, bottom))
                    conf.append(confidence)
                    values.append(value)
            self.duplicates = duplicates
            self._table = (np.array(ids), np.array(names), np.array(boxes, dtype=np.float64).reshape(-1, 4),
                           np.array(conf, dtype=np.float64), np.array(values, dtype=np.int64))
        return self._table

    def _rows(self):
        ids, names, boxes, conf, values = self.table()
        return np.flatnonzero(conf >= self.min_confidence)

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        ids, _, _, _, values = self.table()
        rows = self._rows()
        out = summarize(np.array(LABEL_ORDERS["expw"])[values[rows]], LABEL_ORDERS["expw"], rows=len(ids))
        if self.duplicates:
            out["note"] = f"{self.duplicates} repeated image#face line(s) ignored"
        return out

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        ids, names, boxes, conf, values = self.table()
        rows = self._rows()
        if len(rows) == 0:
            raise self._not_found(f"no faces in {self.label_file} (with confidence >= {self.min_confidence}).")
        origin = self.root / "image" / "origin"
        images = FileImages(confined_paths(origin, list(names[rows]), str(self.label_file)),
                            boxes[rows] if self.crop else None)
        return self._dataset(split, ids[rows], LABEL_ORDERS["expw"], np.array(LABEL_ORDERS["expw"])[values[rows]],
                             images, attributes={"confidence": conf[rows]})
