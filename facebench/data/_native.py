"""Shared pieces of the native dataset loaders (fer2013, ferplus, rafdb, affectnet, ckplus, ...).

``NativeLoader`` adds to ``DatasetLoader``:

* split aliases (``split_aliases``), resolved before the split is checked;
* ``summary(split)``: sample and class counts from the label side only (label files, folder
  listings), never decoding an image, so ``facebench data check`` can count a dataset whose
  images are absent;
* ``expected_sizes`` / ``expected_rows``: the published split sizes (samples / label-file rows),
  compared by the data check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Iterable

import numpy as np

from facebench.data.dataset import Dataset, DatasetLoader
from facebench.errors import ConfigError, DatasetNotFoundError, did_you_mean

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


class NativeLoader(DatasetLoader):
    """Base class of the loaders for public datasets in their native layouts."""

    split_aliases: ClassVar[dict[str, str]] = {}
    expected_sizes: ClassVar[dict[str, int]] = {}  # published samples per split (default options)
    expected_rows: ClassVar[dict[str, int]] = {}  # published label-file rows per split

    # -- splits ---------------------------------------------------------------------------
    def resolve_split(self, split: str) -> str:
        split = self.split_aliases.get(split, split)
        if split not in self.splits:
            raise ConfigError(
                f"Dataset {self.name!r} has no split {split!r}.{did_you_mean(split, self.splits)} "
                f"Splits: {', '.join(self.splits)}."
            )
        return split

    def check(self, split: str) -> None:
        super().check(self.resolve_split(split))

    # -- label side ---------------------------------------------------------------------------
    def label_paths(self, split: str) -> list[Path]:
        """Files needed to count samples (a subset of ``required_paths``)."""
        return self.required_paths(split)

    def check_labels(self, split: str) -> None:
        """Like ``check`` but only for the label side (used by ``summary``)."""
        split = self.resolve_split(split)
        if self.root is None:
            raise DatasetNotFoundError(
                f"Dataset {self.name!r}: no location given. Set `path:` or pass --data-root DIR "
                f"(expects DIR/{self.default_dirname}).\n" + self.layout_help()
            )
        for p in self.label_paths(split):
            if not p.exists():
                raise DatasetNotFoundError(f"Dataset {self.name!r} ({split}): {p} does not exist.\n"
                                           + self.layout_help())

    def summary(self, split: str) -> dict:
        """{"n": samples, "counts": {class: n}, "rows": raw label lines or None} without decoding images.

        The default loads the split (loaders whose ``load`` decodes or needs images override it).
        """
        ds = self.load(split)
        return {"n": len(ds), "counts": ds.class_counts(), "rows": None}

    def _not_found(self, message: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(f"Dataset {self.name!r}: {message}\n" + self.layout_help())

    def _dataset(self, split: str, ids, classes, labels, images, attributes=None, extra_tag=None) -> Dataset:
        tag = self.fingerprint_tag()
        if extra_tag:
            tag = {**tag, **extra_tag}
        return Dataset(self.name, split, np.asarray(ids), tuple(classes), np.asarray(labels), images,
                       attributes=attributes or {}, content_tag=tag)


def summarize(labels: Iterable[str], classes: Iterable[str], rows: int | None = None) -> dict:
    labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).astype(str)
    counts = {c: int(np.sum(labels == c)) for c in classes}
    return {"n": int(len(labels)), "counts": counts, "rows": rows}


class MissingImages:
    """Placeholder image source for a labels-only dataset: any attempt to read a pixel says why."""

    def __init__(self, n: int, reason: str):
        self.n = int(n)
        self.reason = reason

    def __len__(self) -> int:
        return self.n

    def load(self, i: int) -> np.ndarray:
        raise DatasetNotFoundError(self.reason)

    def subset(self, indices) -> "MissingImages":
        return MissingImages(len(np.asarray(indices)), self.reason)

    def describe(self) -> str:
        return f"{self.n} samples without images (labels only)"


def list_images(folder: Path) -> list[str]:
    """Sorted names of the image files directly inside ``folder`` (os.scandir: fast for 10^4-10^5 files)."""
    with os.scandir(folder) as it:
        names = [e.name for e in it if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith(".")
                 and e.is_file()]
    names.sort()
    return names


def list_dirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        names = [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
    names.sort()
    return names


def find_child(folder: Path, name: str) -> Path:
    """``folder/name``, matching the name case-insensitively when the exact spelling is absent."""
    exact = folder / name
    if exact.exists() or not folder.is_dir():
        return exact
    for child in folder.iterdir():
        if child.name.lower() == name.lower():
            return child
    return exact


def resolve_file(base: Path, name: str | os.PathLike) -> Path:
    """``name`` as given when absolute, otherwise relative to ``base``."""
    p = Path(name).expanduser()
    return p if p.is_absolute() else base / p


def subject_folds(subjects: np.ndarray, n_folds: int) -> np.ndarray:
    """Subject-disjoint folds: sorted unique subject ids dealt round-robin into ``n_folds`` folds."""
    unique = sorted(set(subjects.tolist()))
    fold_of = {s: i % n_folds for i, s in enumerate(unique)}
    return np.array([fold_of[s] for s in subjects.tolist()], dtype=np.int64)


def check_choice(dataset: str, option: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"{dataset}: `{option}` must be one of {', '.join(map(repr, choices))}, got {value!r}."
            f"{did_you_mean(str(value), [str(c) for c in choices])}"
        )
