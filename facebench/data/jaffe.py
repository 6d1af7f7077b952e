"""JAFFE (Japanese Female Facial Expression): 213 posed 256x256 grey TIFFs of 10 subjects.

Labels come from the file names ``KA.AN1.39.tiff``: subject code (KA), expression code (AN, DI, FE,
HA, NE, SA, SU) with a repetition index (1), image number (39). ``.tif``/``.tiff`` in any case,
doubled or empty dot-separated parts (``KA.AN1..39.tiff``, ``KA.AN1.39.tiff.tiff``) are tolerated;
image files whose names cannot be parsed are skipped and listed in ``loader.skipped`` (and warned).
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from facebench.data._native import NativeLoader, subject_folds, summarize
from facebench.data.images import FileImages
from facebench.data.taxonomy import LABEL_ORDERS

CODES = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness", "NE": "neutral", "SA": "sadness",
         "SU": "surprise"}
_TIFF = re.compile(r"(\.tiff?)+$", re.IGNORECASE)
_EXPRESSION = re.compile(r"^([A-Za-z]{2})(\d*)$")


def parse_jaffe_name(name: str) -> tuple[str, str, str] | None:
    """``KA.AN1.39.tiff`` -> (subject ``KA``, canonical label, image number ``39``), or None."""
    stem = _TIFF.sub("", name)
    if stem == name:
        return None
    parts = [p for p in stem.split(".") if p]
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].isdigit():
        return None
    m = _EXPRESSION.match(parts[1])
    if m is None or m.group(1).upper() not in CODES:
        return None
    return parts[0].upper(), CODES[m.group(1).upper()], parts[2]


class JAFFE(NativeLoader):
    """JAFFE: 213 posed grey 256x256 TIFFs of 10 Japanese female subjects, labels from names like KA.AN1.39.tiff"""

    name = "jaffe"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"subject", "fold"})
    label_space = LABEL_ORDERS["jaffe"]
    description = "JAFFE: 213 posed grey 256x256 TIFFs of 10 Japanese female subjects, labels from names like KA.AN1.39.tiff"
    citation = ("M. J. Lyons, S. Akamatsu, M. Kamachi, J. Gyoba, Coding Facial Expressions with Gabor Wavelets, "
                "FG 1998 (doi:10.5281/zenodo.3451524)")
    license = "non-commercial research only, under the JAFFE terms of use; do not redistribute"
    how_to_get = "request at https://zenodo.org/record/3451524 (JAFFE terms of use)"
    layout = (
        "  <path>/KA.AN1.39.tiff ...   (any folder depth) subject code . expression code AN DI FE HA NE SA SU\n"
        "      + repetition index . image number; .tif/.tiff; names that cannot be parsed are skipped\n"
        "  split: all (attributes subject, fold = one fold per subject for leave-one-subject-out)"
    )
    splits = ("all",)
    default_dirname = "jaffe"

    def __init__(self, path=None, data_root=None):
        super().__init__(path, data_root)
        self.skipped: list[str] = []

    def _index(self):
        ids, labels, paths, subjects = [], [], [], []
        skipped = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or not _TIFF.search(name):
                    continue  # README, thumbnails, ...
                parsed = parse_jaffe_name(name)
                rel = os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")
                if parsed is None:
                    skipped.append(rel)
                    continue
                subject, label, _ = parsed
                ids.append(rel)
                labels.append(label)
                paths.append(os.path.join(folder, name))
                subjects.append(subject)
        if skipped and skipped != self.skipped:
            warnings.warn(f"jaffe: skipped {len(skipped)} file(s) whose names are not SUBJECT.EXPRn.NUMBER.tiff: "
                          f"{', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}", stacklevel=3)
        self.skipped = skipped
        if not ids:
            raise self._not_found(f"no JAFFE images (KA.AN1.39.tiff) under {self.root}.")
        return ids, labels, paths, subjects

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check(split)
        ids, labels, _, _ = self._index()
        out = summarize(labels, LABEL_ORDERS["jaffe"], rows=len(ids) + len(self.skipped))
        if self.skipped:
            out["note"] = f"skipped {len(self.skipped)} unparseable name(s): {', '.join(self.skipped[:3])}"
        return out

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        ids, labels, paths, subjects = self._index()
        subjects_arr = np.array(subjects)
        return self._dataset(split, ids, LABEL_ORDERS["jaffe"], labels, FileImages(paths),
                             attributes={"subject": subjects_arr,
                                         "fold": subject_folds(subjects_arr, len(set(subjects)))})
