"""Generic datasets: class-named image folders, CSV files of paths and labels, and plain unlabelled image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facebench.data.confine import joined_strings, refuse_outside
from facebench.data.dataset import Dataset, DatasetLoader
from facebench.data.images import FileImages
from facebench.data.taxonomy import CANONICAL_EXPRESSIONS, canonical_name
from facebench.errors import ConfigError, DatasetNotFoundError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def _map_name(raw: str, name_map: dict | None) -> str | None:
    """Folder/CSV class name -> canonical name; a name mapped to null is skipped (None)."""
    if name_map and raw in name_map:
        value = name_map[raw]
        return None if value is None else canonical_name(value)
    return canonical_name(raw)


def _image_names(folder: Path) -> list[str]:
    """Sorted names of the entries of ``folder`` whose suffix (as ``Path.suffix``: after the last dot, not a
    leading one) is an image suffix; os.scandir, without a Path object per file."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries)
    return [n for n in names if 0 < n.rfind(".") < len(n) - 1 and n[n.rfind("."):].lower() in IMAGE_SUFFIXES]


def _canonical_sort(names) -> tuple[str, ...]:
    rank = {c: i for i, c in enumerate(CANONICAL_EXPRESSIONS)}
    return tuple(sorted(set(names), key=lambda c: (rank.get(c, len(rank)), c)))


class ImageFolder(DatasetLoader):
    """Generic <root>/<split>/<class>/*.jpg folders, class names mapped to the canonical taxonomy"""

    name = "imagefolder"
    capabilities = frozenset({"labels"})
    attribute_names = frozenset()  # label_space: the class folders, known once listed
    layout = (
        "  <path>/<split>/<class>/<image>.jpg   (e.g. train/happy/0001.jpg; class folder names such as\n"
        "  angry, happy, sad, surprise, fear, disgust, neutral, contempt are recognised; others need\n"
        "  `name_map: {folder: canonical_name}`, a null value skips a folder)\n"
        "  with `flat: true`: <path>/<class>/<image>.jpg and the single split `all`"
    )
    how_to_get = "any folder of face crops sorted into class-named subfolders"

    def __init__(self, path=None, data_root=None, *, name_map: dict | None = None, flat: bool = False,
                 splits: list[str] | None = None, dataset_name: str = "imagefolder"):
        super().__init__(path, data_root, name_map=name_map, flat=flat, splits=splits)
        self.name_map = name_map or {}
        self.flat = flat
        self.splits = ("all",) if flat else tuple(splits or ("train", "test"))
        self.dataset_name = dataset_name

    def required_paths(self, split):
        return [self.root if self.flat else self.root / split]

    def load(self, split: str) -> Dataset:
        self.check(split)
        base = self.root if self.flat else self.root / split
        paths, labels, ids = [], [], []
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            label = _map_name(class_dir.name, self.name_map)
            if label is None:
                continue
            names = _image_names(class_dir)
            folder = str(class_dir)
            paths += [os.path.join(folder, name) for name in names]
            labels += [label] * len(names)
            ids += [f"{class_dir.name}/{name}" for name in names]
        if not paths:
            raise DatasetNotFoundError(f"No images found under {base}.\n{self.layout_help()}")
        return Dataset(self.dataset_name, split, np.array(ids), _canonical_sort(labels), np.array(labels),
                       FileImages(paths), content_tag=self.fingerprint_tag())


class UnlabelledImages(DatasetLoader):
    """Any folder of images, searched recursively, without labels (an unlabelled test set, e.g. for ood_estimate)"""

    name = "images"
    capabilities = frozenset()
    attribute_names = frozenset()
    layout = ("  <path>/**/<image>.jpg   (every image file under the folder, at any depth, through linked folders\n"
              "  too, each real folder once; hidden files and folders are left out; the sample id is the path\n"
              "  relative to <path>; single split `all`)")
    how_to_get = "any folder of (face) images, e.g. frames from a deployment, with no labels"

    def __init__(self, path=None, data_root=None, *, dataset_name: str = "images"):
        super().__init__(path, data_root)
        self.splits = ("all",)
        self.dataset_name = dataset_name

    def required_paths(self, split):
        return [self.root]

    def load(self, split: str) -> Dataset:
        self.check(split)
        ids, paths, seen = [], [], set()
        for folder, dirs, _ in os.walk(self.root, followlinks=True):  # linked folders count; a loop is cut
            real = os.path.realpath(folder)
            if real in seen:
                dirs[:] = []
                continue
            seen.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(folder, self.root)
            for name in _image_names(Path(folder)):
                if not name.startswith("."):
                    ids.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
                    paths.append(os.path.join(folder, name))
        if not paths:
            raise DatasetNotFoundError(f"No images found under {self.root}.\n{self.layout_help()}")
        return Dataset(self.dataset_name, split, np.array(ids), (), None, FileImages(paths),
                       content_tag=self.fingerprint_tag())


class CsvDataset(DatasetLoader):
    """Generic CSV of image paths, labels and optional attribute columns (subject, group, domain)"""

    name = "csv"
    capabilities = frozenset({"labels", "attributes"})

    @property
    def attribute_names(self) -> frozenset | None:  # the CSV's other columns (known once read) unless named
        return frozenset(self.attribute_columns) if self.attribute_columns else None

    @property
    def label_space(self) -> tuple[str, ...] | None:  # option `classes`, else the labels found in the file
        return self.class_order

    layout = (
        "  <path>  a CSV file with a header; columns: `path` (image file, relative to `image_root`,\n"
        "  default the CSV's folder), `label` (class name, or an integer index into `classes`),\n"
        "  optional `split` (values name the splits), optional `id`; every other column becomes a\n"
        "  per-sample attribute (e.g. subject, race, gender, domain); paths that leave the image root\n"
        "  (absolute, or `..` above it) are refused unless `allow_outside_root: true`"
    )
    how_to_get = "write one: path,label[,split][,subject,...]"

    def __init__(self, path=None, data_root=None, *, image_root: str | None = None, path_column: str = "path",
                 label_column: str = "label", split_column: str = "split", id_column: str | None = None,
                 classes: list[str] | None = None, name_map: dict | None = None,
                 attribute_columns: list[str] | None = None, dataset_name: str = "csv",
                 allow_outside_root: bool = False):
        super().__init__(path, data_root, image_root=image_root, path_column=path_column,
                         label_column=label_column, split_column=split_column, id_column=id_column,
                         classes=classes, name_map=name_map, attribute_columns=attribute_columns,
                         **({"allow_outside_root": True} if allow_outside_root else {}))
        self.allow_outside_root = bool(allow_outside_root)
        self.image_root = image_root
        self.columns = dict(path=path_column, label=label_column, split=split_column, id=id_column)
        self.class_order = tuple(canonical_name(c) for c in classes) if classes else None
        self.name_map = name_map or {}
        self.attribute_columns = attribute_columns
        self.dataset_name = dataset_name
        self._frame = None
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def splits(self):  # known only after reading the file
        frame = self._read() if self.root is not None and self.root.exists() else None
        if frame is None or self.columns["split"] not in frame.columns:
            return ("all",)
        return tuple(sorted(self._factorized(self.columns["split"])[1].tolist()))

    def _read(self):
        if self._frame is None:
            frame = read_csv_strings(self.root)
            for role in ("path", "label"):
                if self.columns[role] not in frame.columns:
                    raise ConfigError(
                        f"{self.root}: no column {self.columns[role]!r} (columns: {list(frame.columns)}). "
                        f"Pass `{role}_column:` in the task's dataset_args."
                    )
            self._frame = frame
        return self._frame

    def _factorized(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes per file row, distinct values as a str array) of one column, computed once per file."""
        if name not in self._codes:
            codes, uniques = pd_factorize(self._read()[name])
            self._codes[name] = (codes, np.asarray(uniques, dtype=str))
        return self._codes[name]

    def _attribute(self, name: str, rows: np.ndarray) -> np.ndarray:
        """A per-sample attribute (a group key) at file rows ``rows``: its distinct values taken by the codes."""
        codes, uniques = self._factorized(name)
        return uniques[codes[rows]]

    def _image_root(self) -> Path:
        image_root = Path(self.image_root) if self.image_root else self.root.parent
        return image_root if image_root.is_absolute() else self.root.parent / image_root

    def _split_rows(self, split: str) -> np.ndarray | None:
        """File row positions (0 = first row under the header) of ``split``; None: every row."""
        if self.columns["split"] not in self._read().columns:
            return None
        codes, uniques = self._factorized(self.columns["split"])
        return np.flatnonzero(codes == np.flatnonzero(uniques == split)[0])

    def _strings(self, name: str, rows: np.ndarray | None) -> np.ndarray:
        """A column of many distinct values (paths, ids) as a str array, at file rows ``rows``."""
        values = self._read()[name].to_numpy()
        return (values if rows is None else values[rows]).astype(str)

    def _refuse_outside(self, rels: np.ndarray, rows: np.ndarray | None) -> None:
        """Refuses image paths that leave the image root, naming them by file line (the header is line 1)."""
        if not self.allow_outside_root:
            line = (lambda i: f"line {i + 2}") if rows is None else (lambda i: f"line {int(rows[i]) + 2}")
            refuse_outside(self._image_root(), rels, str(self.root), line)

    def check(self, split: str) -> None:
        """Also refuses image paths that leave the image root (cheap: no image is opened)."""
        super().check(split)
        if self.root.is_file():
            rows = self._split_rows(split)
            self._refuse_outside(self._strings(self.columns["path"], rows), rows)

    def _label_of(self, value: str) -> str | None:
        """One label cell -> canonical class name; None: a class that the name map skips."""
        if self.class_order and value.strip().lstrip("-").isdigit():
            index = int(value)
            if not 0 <= index < len(self.class_order):
                raise ConfigError(f"{self.root}: label index {index} outside classes {self.class_order}")
            return self.class_order[index]
        return _map_name(value, self.name_map)

    def _labels(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """(kept positions within the split, their labels, the classes), each distinct cell mapped once in
        order of first appearance (so the first bad row in file order is the one reported)."""
        codes, uniques = self._factorized(self.columns["label"])
        codes = codes if rows is None else codes[rows]
        present, first = np.unique(codes, return_index=True)
        mapped = np.full(len(uniques), None, dtype=object)
        for code in present[np.argsort(first, kind="stable")].tolist():
            mapped[code] = self._label_of(uniques[code].item())
        named = np.array([m is not None for m in mapped], dtype=bool)
        keep = np.flatnonzero(named[codes])
        names = np.asarray(np.where(named, mapped, ""), dtype=str)
        classes = self.class_order or _canonical_sort(m for m in mapped[present].tolist() if m is not None)
        return keep, names[codes[keep]], classes

    def load(self, split: str) -> Dataset:
        super().check(split)
        rows = self._split_rows(split)
        rels = self._strings(self.columns["path"], rows)
        self._refuse_outside(rels, rows)  # what `check` does, on the paths read once
        keep, labels, classes = self._labels(rows)
        rows, rels = (keep if rows is None else rows[keep]), rels[keep]
        paths = joined_strings(self._image_root(), rels)
        ids = self._strings(self.columns["id"], rows) if self.columns["id"] else rels
        skip = {c for c in self.columns.values() if c}
        attr_cols = self.attribute_columns or [c for c in self._read().columns if c not in skip]
        attributes = {c: self._attribute(c, rows) for c in attr_cols}
        return Dataset(self.dataset_name, split, ids, classes, labels, FileImages(paths),
                       attributes=attributes, content_tag=self.fingerprint_tag())


def pd_factorize(series) -> tuple[np.ndarray, object]:
    """``pandas.factorize`` keeping a missing value as a value of its own (as ``str`` would print it)."""
    import pandas as pd

    return pd.factorize(series, use_na_sentinel=False)


def _pyarrow_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def read_csv_strings(path: Path, **options):
    """A CSV file as a DataFrame of strings (empty cells stay ``""``), read by pandas with the pyarrow
    engine when pyarrow is installed, else (and for a file pyarrow refuses, e.g. a row shorter than the
    header) its C engine, so the result does not depend on the engine; an unreadable file is a ConfigError."""
    import pandas as pd

    frame = None
    if _pyarrow_available():
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow", **options)
        except (ValueError, OSError):  # the C engine decides, and words the error
            frame = None
    if frame is None:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, engine="c", **options)
        except (ValueError, OSError) as err:  # pandas' parser errors are ValueErrors; bad UTF-8 too
            raise ConfigError(f"{path}: not a readable CSV file ({' '.join(str(err).split())[:200]}).") from None
    if not isinstance(frame.index, pd.RangeIndex):  # the C engine makes extra leading fields an index
        raise ConfigError(f"{path}: not a readable CSV file (rows have more fields than the header's "
                          f"{len(frame.columns)}).")
    return frame
