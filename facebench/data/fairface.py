"""FairFace (Karkkainen & Joo, WACV 2021): race-, gender- and age-balanced faces, from its label CSVs.

Native layout: ``fairface_label_train.csv`` / ``fairface_label_val.csv`` with the header
``file,age,gender,race,service_test`` (``file`` = ``train/1.jpg`` relative to the dataset folder)
and the images beside them. Labels are the ``target`` column (gender by default, lower-cased:
``female``/``male``; or race, 7 groups; or the 9 age bins); every sample also carries the
attributes ``gender``, ``race``, ``age_group`` and ``service_test``.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from facebench.data.confine import confined_paths
from facebench.data._native import NativeLoader, check_choice, summarize
from facebench.data.images import FileImages

FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_GENDERS = ("female", "male")
TARGETS = {"gender": FAIRFACE_GENDERS, "race": FAIRFACE_RACES, "age": FAIRFACE_AGES}


class FairFace(NativeLoader):
    """FairFace: faces balanced over 7 race groups, with gender and age-bin labels (label CSVs + images)"""

    name = "fairface"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"gender", "race", "age_group", "service_test"})

    @property
    def label_space(self) -> tuple[str, ...]:  # the classes of the `target` column
        return tuple(TARGETS[self.target])

    description = __doc__.splitlines()[0]
    citation = "Karkkainen, Joo. FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age. WACV 2021."
    license = "CC BY 4.0 (images from YFCC-100M, Flickr CC licences)"
    how_to_get = "https://github.com/joojs/fairface (padding=0.25 or 1.25 image zips and the label CSVs)"
    layout = (
        "  <path>/fairface_label_train.csv, <path>/fairface_label_val.csv   header file,age,gender,race,service_test\n"
        "  <path>/train/<n>.jpg, <path>/val/<n>.jpg                          (the `file` column, relative to <path>)\n"
        "  options: target gender|race|age (the labels), missing_images error|skip (leave out rows whose image\n"
        "  is absent, e.g. a partial download)"
    )
    splits = ("train", "val")
    split_aliases = {"test": "val", "validation": "val"}
    default_dirname = "fairface"
    expected_rows = {"train": 86744, "val": 10954}

    def __init__(self, path=None, data_root=None, *, target: str = "gender", missing_images: str = "error"):
        super().__init__(path, data_root, target=target, missing_images=missing_images)
        check_choice("fairface", "target", target, tuple(TARGETS))
        check_choice("fairface", "missing_images", missing_images, ("error", "skip"))
        self.target, self.missing_images = target, missing_images

    def _csv(self, split: str) -> Path:
        return self.root / f"fairface_label_{split}.csv"

    def required_paths(self, split):
        return [self._csv(split)]

    def _rows(self, split: str) -> list[dict]:
        path = self._csv(split)
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            need = {"file", "age", "gender", "race"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                raise self._not_found(f"{path}: header {reader.fieldnames} lacks {sorted(need)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                gender, race, age = row["gender"].strip().lower(), row["race"].strip(), row["age"].strip()
                if gender not in FAIRFACE_GENDERS or race not in FAIRFACE_RACES or age not in FAIRFACE_AGES:
                    raise self._not_found(f"{path}:{line}: unexpected values gender={row['gender']!r}, "
                                          f"race={race!r}, age={age!r}")
                rows.append({"file": row["file"].strip(), "gender": gender, "race": race, "age": age,
                             "service_test": str(row.get("service_test", "")).strip().lower() == "true"})
        return rows

    def summary(self, split: str) -> dict:
        self.check_labels(split)
        rows = self._rows(self.resolve_split(split))
        return summarize([r[self._column()] for r in rows], TARGETS[self.target], rows=len(rows))

    def _column(self) -> str:
        return "age" if self.target == "age" else self.target

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        rows = self._rows(split)
        confined_paths(self.root, [r["file"] for r in rows], str(self._csv(split)))  # before any file is looked at
        present = [(self.root / r["file"]).is_file() for r in rows]
        missing = len(rows) - sum(present)
        if missing and self.missing_images == "error":
            first = next(r["file"] for r, p in zip(rows, present) if not p)
            raise self._not_found(f"{missing} of {len(rows)} {split} images are absent (first: {self.root / first}). "
                                  f"Set `dataset_args: {{missing_images: skip}}` to evaluate the rows whose images exist.")
        if missing:
            warnings.warn(f"fairface/{split}: {missing} of {len(rows)} rows have no image and are left out",
                          stacklevel=2)
            rows = [r for r, p in zip(rows, present) if p]
        attributes = {"gender": np.array([r["gender"] for r in rows]), "race": np.array([r["race"] for r in rows]),
                      "age_group": np.array([r["age"] for r in rows]),
                      "service_test": np.array([r["service_test"] for r in rows])}
        return self._dataset(split, [r["file"] for r in rows], TARGETS[self.target],
                             [r[self._column()] for r in rows], FileImages([self.root / r["file"] for r in rows]),
                             attributes, extra_tag={"rows_without_image": missing})
