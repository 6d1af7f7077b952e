"""RAF-DB (Real-world Affective Faces): the basic (7 classes) and compound (11 classes) releases.

Both ship ``EmoLabel/list_patition_label.txt`` (sic) with lines ``<name> <label>``, **1-based**
labels, and the split in the name prefix (``train_`` / ``test_``); aligned 100x100 crops are
``Image/aligned/<stem>_aligned.jpg``, the original photos ``Image/original/<name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from facebench.data.confine import confined_paths
from facebench.data._native import NativeLoader, summarize
from facebench.data.images import FileImages
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError, DatasetNotFoundError

LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
RAF_CITATION = ("S. Li, W. Deng, J. Du, Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression "
                "Recognition in the Wild, CVPR 2017; S. Li, W. Deng, IEEE TIP 28(1), 2019")
RAF_LICENSE = "non-commercial research only, under the RAF-DB release agreement (BUPT); do not redistribute"
RAF_HOW = "request access at http://www.whdeng.cn/RAF/model1.html (sign the agreement; the labels come with the images)"

COMPOUND_CLASSES: tuple[str, ...] = (
    "happily_surprised", "happily_disgusted", "sadly_fearful", "sadly_angry", "sadly_surprised", "sadly_disgusted",
    "fearfully_angry", "fearfully_surprised", "angrily_surprised", "angrily_disgusted", "disgustedly_surprised",
)


class _RafLoader(NativeLoader):
    class_names: ClassVar[tuple[str, ...]] = ()
    splits = ("train", "test")

    @property
    def attribute_names(self) -> frozenset:  # gender, race and age only with `manual_attributes: true`
        return frozenset({"gender", "race", "age"}) if self.manual_attributes else frozenset()

    def __init__(self, path=None, data_root=None, *, aligned: bool = True, manual_attributes: bool = False):
        super().__init__(path, data_root, aligned=bool(aligned), manual_attributes=bool(manual_attributes))
        self.aligned = bool(aligned)
        self.manual_attributes = bool(manual_attributes)
        self._lines = None

    @property
    def label_file(self) -> Path:
        path = self.root / LABEL_FILE
        if not path.exists():  # the release README spells it "partition"; accept a corrected copy
            fixed = path.with_name("list_partition_label.txt")
            if fixed.exists():
                return fixed
        return path

    @property
    def image_dir(self) -> Path:
        return self.root / "Image" / ("aligned" if self.aligned else "original")

    def label_paths(self, split):
        return [self.label_file]

    def required_paths(self, split):
        paths = [self.label_file, self.image_dir]
        if self.manual_attributes:
            paths.append(self.root / "Annotation" / "manual")
        return paths

    def read_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(names, 0-based label indices) of every line of the label file."""
        if self._lines is None:
            names, values = [], []
            n = len(self.class_names)
            with open(self.label_file, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    parts = line.split()
                    if not parts:
                        continue
                    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                        raise ConfigError(f"{self.label_file}, line {lineno}: expected `<image name> <label>`, "
                                          f"got {line.strip()!r}.")
                    value = int(parts[1])
                    if not 1 <= value <= n:
                        hint = (" RAF-DB labels are 1-based; a 0 suggests a list already shifted by `label - 1`."
                                if value == 0 else "")
                        raise ConfigError(f"{self.label_file}, line {lineno}: label {value} is outside 1..{n}.{hint}")
                    names.append(parts[0])
                    values.append(value - 1)
            self._lines = (np.array(names), np.array(values, dtype=np.int64))
        return self._lines

    def _split_rows(self, names: np.ndarray, split: str) -> np.ndarray:
        return np.flatnonzero(np.char.startswith(names.astype(str), f"{split}_"))

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        names, values = self.read_labels()
        rows = self._split_rows(names, split)
        return summarize(np.array(self.class_names)[values[rows]], self.class_names, rows=len(rows))

    def image_name(self, name: str) -> str:
        """The image file of label-file entry ``name``, relative to ``image_dir``."""
        stem = name.rsplit(".", 1)[0]
        return f"{stem}_aligned.jpg" if self.aligned else name

    def image_path(self, name: str) -> Path:
        return self.image_dir / self.image_name(name)

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        names, values = self.read_labels()
        rows = self._split_rows(names, split)
        if len(rows) == 0:
            raise self._not_found(f"{self.label_file} has no lines starting with {split}_.")
        chosen = names[rows]
        ids = np.array([n.rsplit(".", 1)[0] for n in chosen])
        attributes = self._manual_attributes(ids) if self.manual_attributes else {}
        return self._dataset(split, ids, self.class_names, np.array(self.class_names)[values[rows]],
                             FileImages(confined_paths(self.image_dir, [self.image_name(n) for n in chosen],
                                                       str(self.label_file))), attributes=attributes)

    def _manual_attributes(self, stems: np.ndarray) -> dict[str, np.ndarray]:
        """gender, race and age group from ``Annotation/manual/<stem>_manu_attri.txt`` (lines 6-8)."""
        folder = self.root / "Annotation" / "manual"
        gender = {"0": "male", "1": "female", "2": "unsure"}
        race = {"0": "caucasian", "1": "african-american", "2": "asian"}
        age = {"0": "0-3", "1": "4-19", "2": "20-39", "3": "40-69", "4": "70+"}
        out = {"gender": [], "race": [], "age": []}
        for stem in stems:
            path = folder / f"{stem}_manu_attri.txt"
            try:
                lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            except OSError:
                raise DatasetNotFoundError(f"{path} does not exist (needed by `manual_attributes: true`).") from None
            if len(lines) < 8:
                raise ConfigError(f"{path}: expected 5 landmark lines then gender, race and age lines.")
            for key, table, value in zip(("gender", "race", "age"), (gender, race, age), lines[5:8]):
                out[key].append(table.get(value, value))
        return {k: np.array(v) for k, v in out.items()}


class RAFDB(_RafLoader):
    """RAF-DB basic: 7 expressions in the wild, EmoLabel/list_patition_label.txt (1-based labels), aligned 100x100 crops"""

    name = "rafdb"
    capabilities = frozenset({"labels", "attributes"})
    label_space = LABEL_ORDERS["rafdb"]
    description = ("RAF-DB basic: 7 expressions in the wild, EmoLabel/list_patition_label.txt (1-based labels), "
                   "aligned 100x100 crops")
    citation = RAF_CITATION
    license = RAF_LICENSE
    how_to_get = RAF_HOW + " (basic emotion set)"
    layout = (
        "  <path>/EmoLabel/list_patition_label.txt   15,339 lines `train_00001.jpg 5` / `test_0001.jpg 5`;\n"
        "      labels 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral; the name prefix\n"
        "      gives the split (train 12,271 / test 3,068)\n"
        "  <path>/Image/aligned/train_00001_aligned.jpg   (default; `aligned: false` reads\n"
        "  <path>/Image/original/train_00001.jpg)\n"
        "  optional <path>/Annotation/manual/train_00001_manu_attri.txt (gender, race, age) with\n"
        "  `manual_attributes: true`"
    )
    default_dirname = "rafdb"
    class_names = LABEL_ORDERS["rafdb"]
    expected_sizes = {"train": 12271, "test": 3068}


class RAFDBCompound(_RafLoader):
    """RAF-DB compound: 11 compound expressions (e.g. happily_surprised), same label-file layout; unknown classes for open-set"""

    name = "rafdb-compound"
    capabilities = frozenset({"labels", "attributes"})
    label_space = COMPOUND_CLASSES
    description = ("RAF-DB compound: 11 compound expressions (e.g. happily_surprised), same label-file layout; "
                   "unknown classes for open-set")
    citation = RAF_CITATION
    license = RAF_LICENSE
    how_to_get = RAF_HOW + " (compound emotion set)"
    layout = (
        "  <path>/EmoLabel/list_patition_label.txt   lines `train_0001.jpg 6` / `test_0001.jpg 6`; labels\n"
        "      1..11 = happily surprised, happily disgusted, sadly fearful, sadly angry, sadly surprised,\n"
        "      sadly disgusted, fearfully angry, fearfully surprised, angrily surprised, angrily disgusted,\n"
        "      disgustedly surprised; the name prefix gives the split\n"
        "  <path>/Image/aligned/train_0001_aligned.jpg   (default; `aligned: false` reads\n"
        "  <path>/Image/original/train_0001.jpg)"
    )
    default_dirname = "rafdb_compound"
    class_names = COMPOUND_CLASSES
