"""FairFace (Karkkainen & Joo, WACV 2021): race-, gender- and age-balanced faces, from its label CSVs.

Native layout: ``fairface_label_train.csv`` / ``fairface_label_val.csv`` with the header
``file,age,gender,race,service_test`` (``file`` = ``train/1.jpg`` relative to the dataset folder)
and the images beside them. Labels are the ``target`` column (gender by default, lower-cased:
``female``/``male``; or race, 7 groups; or the 9 age bins); every sample also carries the
attributes ``gender``, ``race``, ``age_group`` and ``service_test``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from facebench.data.confine import joined_strings, refuse_outside
from facebench.data._native import NativeLoader, check_choice, summarize
from facebench.data.generic import read_csv_strings
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

    def _table(self, split: str) -> dict[str, np.ndarray]:
        """The split's label CSV as columns (file, gender, race, age: str arrays; service_test: bool), every row
        checked against the FairFace values; the first bad row is named by its file line."""
        path = self._csv(split)
        need = {"file", "age", "gender", "race"}
        frame = read_csv_strings(path) if path.read_text(encoding="utf-8", errors="replace").strip() else None
        if frame is None or not need <= set(frame.columns):
            raise self._not_found(f"{path}: header {None if frame is None else list(frame.columns)} lacks {sorted(need)}")
        cells = {c: frame[c].to_numpy().astype(str) for c in ("file", "gender", "race", "age")}
        gender = np.char.lower(np.char.strip(cells["gender"]))
        race, age = np.char.strip(cells["race"]), np.char.strip(cells["age"])
        bad = np.flatnonzero(~(np.isin(gender, FAIRFACE_GENDERS) & np.isin(race, FAIRFACE_RACES)
                               & np.isin(age, FAIRFACE_AGES)))
        if len(bad):
            i = int(bad[0])
            raise self._not_found(f"{path}:{i + 2}: unexpected values gender={str(cells['gender'][i])!r}, "
                                  f"race={str(race[i])!r}, age={str(age[i])!r}")
        service = (np.char.lower(np.char.strip(frame["service_test"].to_numpy().astype(str))) == "true"
                   if "service_test" in frame.columns else np.zeros(len(frame), dtype=bool))
        return {"file": np.char.strip(cells["file"]), "gender": gender, "race": race, "age": age,
                "service_test": service}

    def summary(self, split: str) -> dict:
        self.check_labels(split)
        table = self._table(self.resolve_split(split))
        return summarize(table[self._column()], TARGETS[self.target], rows=len(table["file"]))

    def _column(self) -> str:
        return "age" if self.target == "age" else self.target

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        table = self._table(split)
        files = table["file"]
        refuse_outside(self.root, files, str(self._csv(split)))  # before any file is looked at
        paths = joined_strings(self.root, files)
        present = np.array([os.path.isfile(p) for p in paths], dtype=bool)  # one stat per image
        n, missing = len(files), int((~present).sum())
        if missing and self.missing_images == "error":
            first = files[np.flatnonzero(~present)[0]]
            raise self._not_found(f"{missing} of {n} {split} images are absent (first: {self.root / str(first)}). "
                                  f"Set `dataset_args: {{missing_images: skip}}` to evaluate the rows whose images exist.")
        if missing:
            warnings.warn(f"fairface/{split}: {missing} of {n} rows have no image and are left out", stacklevel=2)
        keep = np.flatnonzero(present)
        attributes = {"gender": table["gender"][keep], "race": table["race"][keep], "age_group": table["age"][keep],
                      "service_test": table["service_test"][keep]}
        return self._dataset(split, files[keep], TARGETS[self.target], table[self._column()][keep],
                             FileImages([paths[i] for i in keep.tolist()]), attributes,
                             extra_tag={"rows_without_image": missing})
