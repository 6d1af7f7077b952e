"""Age and attribute datasets: UTKFace (labels in file names), CelebA (40 binary attributes) and
ChaLearn LAP 2015 (apparent age with per-image annotation mean and std)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from facebench.data.confine import confined_paths
from facebench.data._native import NativeLoader, find_child, list_images
from facebench.data.dataset import Dataset
from facebench.data.images import FileImages
from facebench.data.taxonomy import CELEBA_ATTRIBUTES
from facebench.errors import ConfigError

UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")
UTK_GENDERS = ("male", "female")
_UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d{17})\.jpg(\.chip\.jpg)?$")


def _first_existing(candidates: list[Path]) -> Path:
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def read_label_lines(path: Path, separator: str, name_column: int, value_columns: tuple[int, ...],
                     expected: str) -> tuple[list[str], np.ndarray]:
    """Label-file lines -> (image names, float values (n, len(value_columns))).

    Fields are split on the regex ``separator``; blank lines are skipped; a first line whose values
    do not parse is a header; any other such line is an error naming the file, line and ``expected``.
    """
    names, values = [], []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        fields = [f.strip() for f in re.split(separator, line.strip())]
        try:
            row = [float(fields[c]) for c in value_columns]
        except (IndexError, ValueError):
            if i == 0:
                continue
            raise ConfigError(f"{path}:{i + 1}: expected `{expected}`, got {line!r}") from None
        names.append(fields[name_column])
        values.append(row)
    return names, np.array(values, dtype=np.float64).reshape(-1, len(value_columns))


class _AgeLabelFileLoader(NativeLoader):
    """An age dataset given by one label file per split over one image folder per split."""

    separator = r"\s+"
    name_column = 0
    value_columns: dict[str, int] = {"age": 1}
    expected_line = "<image> <age>"

    def _label_file(self, split: str) -> Path:
        raise NotImplementedError

    def _image_dir(self, split: str) -> Path:
        raise NotImplementedError

    def label_paths(self, split):
        return [self._label_file(self.resolve_split(split))]

    def required_paths(self, split):
        split = self.resolve_split(split)
        return [self._label_file(split), self._image_dir(split)]

    def _read(self, split):
        return read_label_lines(self._label_file(split), self.separator, self.name_column,
                                tuple(self.value_columns.values()), self.expected_line)

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        names, values = self._read(split)
        folder = self._image_dir(split)
        attributes = {key: values[:, j] for j, key in enumerate(self.value_columns)}
        return Dataset(self.name, split, np.array(names), (), None, FileImages([folder / n for n in names]),
                       attributes=attributes, content_tag=self.fingerprint_tag())

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        names, _ = self._read(split)
        return {"n": len(names), "counts": {}, "rows": len(names)}


class UTKFace(NativeLoader):
    """UTKFace: faces with age, gender and race in file names [age]_[gender]_[race]_[datetime].jpg.chip.jpg"""

    name = "utkface"
    capabilities = frozenset({"attributes"})
    attribute_names = frozenset({"age", "gender", "race"})
    description = __doc__.splitlines()[0]
    citation = "Zhang, Song, Qi. Age Progression/Regression by Conditional Adversarial Autoencoder. CVPR 2017."
    license = "non-commercial research only (official UTKFace README); image copyright stays with the owners"
    how_to_get = "https://susanqq.github.io/UTKFace/ (UTKFace.tar.gz aligned crops, or crop_part1..3)"
    layout = (
        "  <path>/<age>_<gender>_<race>_<yyyymmddHHMMSSfff>.jpg.chip.jpg   (or one sub-folder: UTKFace/,\n"
        "  crop_part1/ ...); age 0-116; gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian,\n"
        "  4 Others; names that do not follow the pattern are reported and skipped (split `all`)\n"
        "  splits train / test as in Faceptor's protocol: <path>/label/train.csv, <path>/label/test.csv\n"
        "  (a header line, then `<index>,<image>,<age>,...`) over the images in <path>/data/"
    )
    splits = ("all", "train", "test")
    default_dirname = "utkface"

    def image_dir(self) -> Path:
        if self.root is None or not self.root.is_dir():
            return self.root
        if list_images(self.root):
            return self.root
        for sub in ("data", "UTKFace", "crop_part1", "crop_part2", "crop_part3", "utkface_aligned_cropped"):
            if (self.root / sub).is_dir():
                return self.root / sub
        return self.root

    def required_paths(self, split):
        if split == "all":
            return [self.root]
        return [self.root / "label" / f"{split}.csv", self.root / "data"]

    def _split_names(self, split) -> list[tuple[str, float]]:
        names, values = read_label_lines(self.root / "label" / f"{split}.csv", ",", 1, (2,),
                                         "<index>,<image>,<age>,...")
        return list(zip(names, values[:, 0].tolist()))

    def load(self, split: str) -> Dataset:
        self.check(split)
        if split != "all":
            rows = self._split_names(split)
            folder = self.root / "data"
            parsed = [_UTK_NAME.match(n) for n, _ in rows]
            return Dataset(self.name, split, np.array([n for n, _ in rows]), (), None,
                           FileImages(confined_paths(folder, [n for n, _ in rows], f"{self.name} labels")),
                           attributes={"age": np.array([a for _, a in rows]),
                                       "gender": np.array([UTK_GENDERS[int(m.group(2))] if m else "unknown"
                                                           for m in parsed]),
                                       "race": np.array([UTK_RACES[int(m.group(3))] if m else "unknown"
                                                         for m in parsed])},
                           content_tag=self.fingerprint_tag())
        folder = self.image_dir()
        names, ages, genders, races, skipped = [], [], [], [], []
        for name in list_images(folder):
            m = _UTK_NAME.match(name)
            if not m:
                skipped.append(name)
                continue
            names.append(name)
            ages.append(float(m.group(1)))
            genders.append(UTK_GENDERS[int(m.group(2))])
            races.append(UTK_RACES[int(m.group(3))])
        self.skipped = skipped
        if skipped:
            warnings.warn(f"utkface: skipped {len(skipped)} file names that do not follow "
                          f"<age>_<gender>_<race>_<datetime>.jpg.chip.jpg: {skipped[:5]}", stacklevel=2)
        return Dataset(self.name, split, np.array(names), (), None, FileImages([folder / n for n in names]),
                       attributes={"age": np.array(ages), "gender": np.array(genders), "race": np.array(races)},
                       content_tag=self.fingerprint_tag())

    def summary(self, split: str) -> dict:
        ds = self.load(split)
        return {"n": len(ds), "counts": {}, "rows": len(ds) + len(getattr(self, "skipped", []))}


class CelebA(NativeLoader):
    """CelebA: 202,599 faces with 40 binary attributes (list_attr_celeba.txt, list_eval_partition.txt)"""

    name = "celeba"
    capabilities = frozenset({"attributes"})
    attribute_names = frozenset({"targets"})  # (n, 40) binary, columns in CELEBA_ATTRIBUTES order
    description = __doc__.splitlines()[0]
    citation = "Liu, Luo, Wang, Tang. Deep Learning Face Attributes in the Wild. ICCV 2015."
    license = "non-commercial research only (CelebA agreement)"
    how_to_get = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Img/img_align_celeba, Anno/, Eval/)"
    layout = (
        "  <path>/Anno/list_attr_celeba.txt     line 1: count; line 2: the 40 attribute names; then\n"
        "                                       `000001.jpg -1  1 ...` (1 = present, -1 = absent)\n"
        "  <path>/Eval/list_eval_partition.txt  `000001.jpg 0` (0 train, 1 val, 2 test)\n"
        "  <path>/Img/img_align_celeba/000001.jpg\n"
        "  (the files may also sit directly in <path>)"
    )
    splits = ("train", "val", "test")
    default_dirname = "celeba"
    _PARTS = {"train": "0", "val": "1", "test": "2"}

    def _attr_file(self) -> Path:
        return _first_existing([self.root / "Anno" / "list_attr_celeba.txt", self.root / "list_attr_celeba.txt"])

    def _partition_file(self) -> Path:
        return _first_existing([self.root / "Eval" / "list_eval_partition.txt",
                                self.root / "list_eval_partition.txt"])

    def _image_dir(self) -> Path:
        return _first_existing([self.root / "Img" / "img_align_celeba", self.root / "img_align_celeba"])

    def label_paths(self, split):
        return [self._attr_file(), self._partition_file()]

    def required_paths(self, split):
        return self.label_paths(split) + [self._image_dir()]

    def _read(self, split):
        lines = self._attr_file().read_text().splitlines()
        names = tuple(lines[1].split())
        if names != CELEBA_ATTRIBUTES:
            raise ConfigError(f"{self._attr_file()}: line 2 should list the 40 CelebA attributes in the standard "
                              f"order; got {names[:4]}...")
        part = dict(line.split()[:2] for line in self._partition_file().read_text().splitlines() if line.strip())
        wanted = self._PARTS[split]
        ids, rows = [], []
        for line in lines[2:]:
            fields = line.split()
            if not fields or part.get(fields[0]) != wanted:
                continue
            if len(fields) != 41:
                raise ConfigError(f"{self._attr_file()}: line for {fields[0]} has {len(fields) - 1} values, not 40")
            ids.append(fields[0])
            rows.append(fields[1:])
        targets = (np.array(rows, dtype=np.int64) > 0).astype(np.int64).reshape(-1, 40)
        return ids, targets

    def load(self, split: str) -> Dataset:
        self.check(split)
        ids, targets = self._read(split)
        return Dataset(self.name, split, np.array(ids), CELEBA_ATTRIBUTES, None,
                       FileImages([find_child(self._image_dir(), i) for i in ids]),
                       attributes={"targets": targets}, content_tag=self.fingerprint_tag())

    def summary(self, split: str) -> dict:
        self.check_labels(split)
        ids, _ = self._read(split)
        return {"n": len(ids), "counts": {}, "rows": len(ids)}


class CLAP2015(_AgeLabelFileLoader):
    """ChaLearn LAP 2015 apparent age: label files name;mean;std per split, images per split folder"""

    name = "clap2015"
    capabilities = frozenset({"attributes"})
    attribute_names = frozenset({"age", "age_std"})
    description = __doc__.splitlines()[0]
    citation = "Escalera et al. ChaLearn Looking at People 2015: Apparent Age and Cultural Event Recognition. ICCVW 2015."
    license = "research use (ChaLearn LAP 2015 terms)"
    how_to_get = "https://chalearnlap.cvc.uab.cat/dataset/18/description/ (train, valid, test with ground truth)"
    layout = (
        "  <path>/<split>/<image>.jpg        split folders train, valid (val), test\n"
        "  <path>/<split>_gt.csv            `image;mean;std` or `image,mean,stdv` (a header line is skipped);\n"
        "                                   option `labels: FILE` names another file per split, with `{split}`"
    )
    splits = ("train", "val", "test")
    split_aliases = {"valid": "val", "validation": "val"}
    default_dirname = "clap2015"
    _FOLDERS = {"train": "train", "val": "valid", "test": "test"}
    separator = r"[;,]"
    value_columns = {"age": 1, "age_std": 2}
    expected_line = "image;mean;std"

    def __init__(self, path=None, data_root=None, *, labels: str | None = None):
        super().__init__(path, data_root)
        self.labels_pattern = labels

    def _label_file(self, split) -> Path:
        if self.labels_pattern:
            return self.root / self.labels_pattern.format(split=self._FOLDERS[split])
        folder = self._FOLDERS[split]
        return _first_existing([self.root / f"{folder}_gt.csv", self.root / f"{folder}.txt",
                                self.root / f"{split}_gt.csv"])

    def _image_dir(self, split) -> Path:
        return self.root / self._FOLDERS[split]


class MORPH2(_AgeLabelFileLoader):
    """MORPH II age estimation in the layout of Faceptor's RANDOM_80_20 protocol: label/<protocol>/<split>.txt"""

    name = "morph2"
    capabilities = frozenset({"attributes"})
    attribute_names = frozenset({"age"})
    description = __doc__.splitlines()[0]
    citation = "Ricanek, Tesafaye. MORPH: A Longitudinal Image Database of Normal Adult Age-Progression. FG 2006."
    license = "academic licence from the University of North Carolina Wilmington (MORPH II)"
    how_to_get = "https://uncw.edu/myuncw/research/innovation-commercialization/technology-portfolio/morph"
    layout = (
        "  <path>/data/<image>                       face images (names as in the label files)\n"
        "  <path>/label/RANDOM_80_20/train.txt       lines `<image> <age>` (whitespace separated)\n"
        "  <path>/label/RANDOM_80_20/test.txt        (option `protocol:` names another label folder)"
    )
    splits = ("train", "test")
    default_dirname = "morph2"

    def __init__(self, path=None, data_root=None, *, protocol: str = "RANDOM_80_20"):
        super().__init__(path, data_root, protocol=protocol)
        self.protocol = protocol

    def _label_file(self, split) -> Path:
        return self.root / "label" / self.protocol / f"{split}.txt"

    def _image_dir(self, split) -> Path:
        return self.root / "data"
