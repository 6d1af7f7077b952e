"""Low-resolution face recognition sets in their release layouts: XQLFW, SCface and TinyFace.

* **XQLFW** (Knoche, Hörmann, Rigoll 2021): LFW's protocol with a large intra-pair quality difference.
  ``xqlfw_pairs.txt`` has LFW's ``pairs.txt`` format (header ``10 300``, then 10 folds x (300 genuine
  ``name n1 n2`` + 300 impostor ``name1 n1 name2 n2`` lines)); images ``<name>/<name>_<4 digits>.jpg``
  under ``xqlfw_aligned_112/`` (the MTCNN-aligned release ``xqlfw_aligned_112.zip``) or
  ``lfw_original_imgs_min_qual0.85variant11/`` (``xqlfw.zip``); release files listed on
  ``Martlgap/xqlfw : docs/pages/download.html``. The authors' evaluator (``Martlgap/xqlfw :
  code/evaluate.py``) is sklearn ``KFold(10, shuffle=False)`` over the pairs in file order (= the 10 blocks
  of the pair file, the ``fold`` of each pair here), cosine distance, thresholds ``np.arange(0, 2, 0.001)``,
  "same" iff distance < threshold, mean held-out accuracy: ``facebench.metrics.verification.xqlfw_10fold``.
  The split provides ``pairs`` like ``lfw``, so the ``verification`` protocol runs on it unchanged.
* **SCface** (Grgic, Delac, Grgic 2011): 130 subjects; gallery = one visible-light mugshot per subject,
  ``mugshot_frontal_cropped_all/<id>_frontal.<ext>``; probes = surveillance images
  ``surveillance_cameras_distance_<d>/<camera folder>/<id>_cam<c>_<d>.<ext>``, distance label d = 1 / 2 / 3
  = 4.20 m / 2.60 m / 1.00 m (far / medium / close); folder and file layout as read by Idiap's
  ``bob.db.scface`` (``create.py::add_files``), distances from Idiap's protocol README (spec robustness.md
  2.1). Splits: ``test`` = subjects 051-130 (the 80 test identities of the LRFR works that fine-tune on
  the first 50, e.g. an ``SCfaceDataset`` with ``test_start_index = 50``), ``train`` = 001-050, ``all``.
* **TinyFace** (Cheng, Zhu, Gong, ACCV 2018): ``tinyface/Testing_Set/{Probe, Gallery_Match,
  Gallery_Distractor}`` (also the aligned copies with the three folders directly under the root, e.g.
  ``tinyface_aligned_112/``); identity = the integer before the first ``_`` of a probe or match file name,
  distractors have none (label -100 in ``Kartik-3004/PETALface : validation_lq/tinyface_helper.py``, whose
  file walk is recursive for the distractors). Option ``distractors: false`` leaves them out.

SCface and TinyFace splits hold probes and gallery together: attributes ``subject`` (identity, "" for a
distractor) and ``role`` (``probe`` | ``gallery`` | ``distractor``) tell them apart for the
``identification`` protocol; SCface adds ``distance`` ("1", "2", "3"; "" for mugshots) and ``camera``
(``cam<c>``, ``mugshot``). Sample ids are image paths relative to the split's image root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from facebench.data._native import NativeLoader, check_choice, list_dirs, list_images
from facebench.data.confine import joined_strings
from facebench.data.dataset import Dataset
from facebench.data.images import FileImages
from facebench.data.pairs import LFWPairs
from facebench.errors import ConfigError

ROLES = ("probe", "gallery", "distractor")
#: SCface distance labels and the subject-to-camera distance in metres (Idiap protocol README)
SCFACE_DISTANCES = {"1": 4.20, "2": 2.60, "3": 1.00}


def identification_dataset(loader, split: str, root: Path, rows: list[tuple], extra: dict | None = None) -> Dataset:
    """A split of probes and gallery items from rows (relative path, subject, role); ``extra``: more
    attribute columns (one value per row). Images are read lazily from ``root / path``."""
    if not rows:
        raise loader._not_found(f"no image found under {root}")
    rels, subjects, roles = (np.asarray(c, dtype=str) for c in zip(*rows))
    attributes = {"subject": subjects, "role": roles, **{k: np.asarray(v, dtype=str) for k, v in (extra or {}).items()}}
    return Dataset(loader.name, split, rels, (), None, FileImages(joined_strings(root, rels)), attributes=attributes,
                   content_tag=loader.fingerprint_tag())


# -- XQLFW -------------------------------------------------------------------------------------------------
class XQLFW(LFWPairs):
    """XQLFW: LFW's 6,000 pairs in 10 folds with one side degraded (xqlfw_pairs.txt), aligned 112 px or original images"""

    name = "xqlfw"
    description = __doc__.splitlines()[0]
    citation = ("Knoche, Hörmann, Rigoll. Cross-Quality LFW: A Database for Analyzing Cross-Resolution Image Face "
                "Recognition in Unconstrained Environments. FG 2021 (arXiv 2108.10290).")
    license = "MIT (the authors' repository); images derived from LFW press photos owned by their copyright holders"
    how_to_get = ("https://martlgap.github.io/xqlfw/pages/download.html (xqlfw_aligned_112.zip or xqlfw.zip, "
                  "and xqlfw_pairs.txt)")
    layout = (
        "  <path>/xqlfw_pairs.txt     LFW pairs.txt format: header `10 300`, per fold 300 `name n1 n2` +\n"
        "                             300 `name1 n1 name2 n2` lines\n"
        "  <path>/xqlfw_aligned_112/<name>/<name>_<4 digits>.jpg            (images: aligned, the default)\n"
        "  <path>/lfw_original_imgs_min_qual0.85variant11/<name>/<name>_<4 digits>.jpg   (images: original)\n"
        "  options images aligned|original, missing_images error|skip, folds [1..10]"
    )
    default_dirname = "xqlfw"
    pairs_file = "xqlfw_pairs.txt"
    IMAGE_DIRS = {"aligned": ("xqlfw_aligned_112", "xqlfw_aligned_112/xqlfw_aligned_112"),
                  "original": ("lfw_original_imgs_min_qual0.85variant11",
                               "xqlfw/lfw_original_imgs_min_qual0.85variant11")}

    def __init__(self, path=None, data_root=None, *, images: str = "aligned", missing_images: str = "error",
                 folds=None):
        check_choice("xqlfw", "images", images, tuple(self.IMAGE_DIRS))
        super().__init__(path, data_root, missing_images=missing_images, folds=folds)
        self.options["images"] = images
        self.images = images
        self.image_dirs = self.IMAGE_DIRS[images]

    def image_root(self) -> Path:
        """The image folder of the chosen variant; its absence is an error naming the other variant if present."""
        for sub in self.image_dirs:
            if (self.root / sub).is_dir():
                return self.root / sub
        other = next((v for v, subs in self.IMAGE_DIRS.items() if v != self.images
                      and any((self.root / s).is_dir() for s in subs)), None)
        hint = f" (the {other} images are there: set `dataset_args: {{images: {other}}}`)" if other else ""
        raise self._not_found(f"{self.root / self.image_dirs[0]} does not exist{hint}")

    def required_paths(self, split):
        found = [self.root / d for d in self.image_dirs if (self.root / d).is_dir()]
        return [self.root / self.pairs_file, (found or [self.root / self.image_dirs[0]])[0]]

    def label_paths(self, split):
        return [self.root / self.pairs_file]


# -- SCface ------------------------------------------------------------------------------------------------
_MUGSHOT = re.compile(r"^(\d+)_frontal$", re.IGNORECASE)
_SURVEILLANCE = re.compile(r"^(\d+)_cam(\d+)_([123])$", re.IGNORECASE)


class SCface(NativeLoader):
    """SCface: 130 subjects, one mugshot gallery image each, surveillance probes from 5 cameras at 3 distances"""

    name = "scface"
    capabilities = frozenset({"attributes"})
    attribute_names = frozenset({"subject", "role", "distance", "camera"})
    description = __doc__.splitlines()[0]
    citation = ("Grgic, Delac, Grgic. SCface - surveillance cameras face database. Multimedia Tools and "
                "Applications 51(3), 2011.")
    license = "research use under the SCface release agreement (University of Zagreb); no redistribution"
    how_to_get = "https://www.scface.org/ (signed release agreement)"
    layout = (
        "  <path>/mugshot_frontal_cropped_all/<id>_frontal.jpg           (gallery; <id> = 001..130)\n"
        "  <path>/surveillance_cameras_distance_<d>/<camera>/<id>_cam<c>_<d>.jpg   (probes; d = 1, 2, 3 =\n"
        "  4.20 m, 2.60 m, 1.00 m), <path> = the SCface_database folder (or its parent); options distances\n"
        "  [1, 2, 3], cameras [1..5] (default: every camera found); splits test (subjects 051-130), train\n"
        "  (001-050), all"
    )
    splits = ("test", "train", "all")
    default_dirname = "scface"
    SUBJECTS = {"test": (51, 130), "train": (1, 50), "all": (1, 10 ** 6)}

    def __init__(self, path=None, data_root=None, *, distances=(1, 2, 3), cameras=None):
        distances = _int_list("scface", "distances", distances, allowed=(1, 2, 3))
        cameras = None if cameras is None else _int_list("scface", "cameras", cameras)
        options = {"distances": distances, **({"cameras": cameras} if cameras is not None else {})}
        super().__init__(path, data_root, **options)
        if self.root is not None and not (self.root / "mugshot_frontal_cropped_all").exists() \
                and (self.root / "SCface_database").is_dir():
            self.root = self.root / "SCface_database"
        self.distances, self.cameras = distances, cameras

    def required_paths(self, split):
        return [self.root / "mugshot_frontal_cropped_all"] + \
            [self.root / f"surveillance_cameras_distance_{d}" for d in self.distances]

    def _in_split(self, subject: str, split: str) -> bool:
        low, high = self.SUBJECTS[split]
        return low <= int(subject) <= high

    def _gallery(self, split: str) -> list[tuple]:
        rows = []
        for name in list_images(self.root / "mugshot_frontal_cropped_all"):
            m = _MUGSHOT.match(Path(name).stem)
            if m is None:
                raise self._not_found(f"{self.root / 'mugshot_frontal_cropped_all' / name}: a mugshot is named "
                                      f"<id>_frontal.<ext>, e.g. 001_frontal.JPG")
            if self._in_split(m.group(1), split):
                rows.append((f"mugshot_frontal_cropped_all/{name}", m.group(1), "gallery", "", "mugshot"))
        return rows

    def _probes(self, split: str, d: int) -> list[tuple]:
        folder, rows, seen = self.root / f"surveillance_cameras_distance_{d}", [], 0
        for cam_dir in list_dirs(folder):
            names = list_images(folder / cam_dir)
            seen += len(names)
            for name in names:
                m = _SURVEILLANCE.match(Path(name).stem)
                if m is None or int(m.group(3)) != d:
                    raise self._not_found(f"{folder / cam_dir / name}: a probe in {folder.name} is named "
                                          f"<id>_cam<c>_{d}.<ext>, e.g. 001_cam1_{d}.jpg")
                if self._in_split(m.group(1), split) and (self.cameras is None or int(m.group(2)) in self.cameras):
                    camera = f"cam{int(m.group(2))}"
                    rows.append((f"{folder.name}/{cam_dir}/{name}", m.group(1), "probe", str(d), camera))
        if not seen:
            raise self._not_found(f"no probe image <id>_cam<c>_{d}.<ext> in the camera folders of {folder}")
        return rows

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        rows = self._gallery(split) + [r for d in self.distances for r in self._probes(split, d)]
        subjects = [f"{int(r[1]):03d}" for r in rows]
        return identification_dataset(self, split, self.root, [(r[0], s, r[2]) for r, s in zip(rows, subjects)],
                                      {"distance": [r[3] for r in rows], "camera": [r[4] for r in rows]})

    def summary(self, split: str) -> dict:
        ds = self.load(split)
        roles = ds.attributes["role"]
        return {"n": len(ds), "counts": {r: int((roles == r).sum()) for r in ("gallery", "probe")}, "rows": None}


def _int_list(dataset: str, option: str, value, allowed=None) -> list[int]:
    """A non-empty list of distinct positive integers (one integer is accepted), within ``allowed`` if given."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    ok = isinstance(values, (list, tuple)) and values and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
    if not ok or len(set(values)) != len(values) or (allowed and any(v not in allowed for v in values)):
        within = f" among {list(allowed)}" if allowed else ""
        raise ConfigError(f"{dataset}: `{option}` must be a list of distinct integers{within}, e.g. "
                          f"`dataset_args: {{{option}: [1, 2]}}`; got {value!r}.")
    return sorted(int(v) for v in values)


# -- TinyFace ----------------------------------------------------------------------------------------------
class TinyFace(NativeLoader):
    """TinyFace: native low-resolution faces; probes searched in Gallery_Match plus 153k Gallery_Distractor faces"""

    name = "tinyface"
    capabilities = frozenset({"attributes"})
    attribute_names = frozenset({"subject", "role"})
    description = __doc__.splitlines()[0]
    citation = "Cheng, Zhu, Gong. Low-Resolution Face Recognition. ACCV 2018."
    license = "research use (QMUL TinyFace terms)"
    how_to_get = "https://qmul-tinyface.github.io/ (tinyface.zip)"
    layout = (
        "  <path>/tinyface/Testing_Set/Probe/<id>_<n>.jpg, Gallery_Match/<id>_<n>.jpg, Gallery_Distractor/**.jpg\n"
        "  (also <path>/Testing_Set/... or the three folders directly in <path>, as aligned copies such as\n"
        "  tinyface_aligned_112/ have them); <id> = the identity, an integer; option distractors true|false"
    )
    splits = ("test",)
    split_aliases = {"testing": "test"}
    default_dirname = "tinyface"
    FOLDERS = ("Probe", "Gallery_Match", "Gallery_Distractor")

    def __init__(self, path=None, data_root=None, *, distractors: bool = True):
        if not isinstance(distractors, bool):
            raise ConfigError(f"tinyface: `distractors` must be true or false; got {distractors!r}.")
        super().__init__(path, data_root, **({} if distractors else {"distractors": False}))
        self.distractors = distractors

    def test_root(self) -> Path:
        """The folder holding Probe/, Gallery_Match/ and Gallery_Distractor/."""
        for sub in ("tinyface/Testing_Set", "Testing_Set", "."):
            if (self.root / sub / "Probe").is_dir():
                return (self.root / sub) if sub != "." else self.root
        return self.root / "tinyface" / "Testing_Set"

    def required_paths(self, split):
        folders = self.FOLDERS if self.distractors else self.FOLDERS[:2]
        return [self.test_root() / f for f in folders]

    def _labelled(self, folder: str, role: str) -> list[tuple]:
        rows = []
        for name in list_images(self.test_root() / folder):
            head = name.split("_", 1)[0]
            if "_" not in name or not head.isdigit():
                raise self._not_found(f"{self.test_root() / folder / name}: TinyFace names a {role} image "
                                      f"<identity>_<n>.<ext> with an integer identity, e.g. 1_2.jpg")
            rows.append((f"{folder}/{name}", str(int(head)), role))
        return rows

    def _distractors(self) -> list[tuple]:
        base = self.test_root() / "Gallery_Distractor"
        rows = []
        for dirpath, dirnames, _ in os.walk(base):
            dirnames.sort()
            rel = Path(dirpath).relative_to(base).as_posix()
            prefix = "Gallery_Distractor/" + ("" if rel == "." else rel + "/")
            rows += [(prefix + name, "", "distractor") for name in list_images(Path(dirpath))]
        return rows

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        rows = self._labelled("Probe", "probe") + self._labelled("Gallery_Match", "gallery")
        if self.distractors:
            rows += self._distractors()
        return identification_dataset(self, split, self.test_root(), rows)

    def summary(self, split: str) -> dict:
        ds = self.load(split)
        roles = ds.attributes["role"]
        return {"n": len(ds), "counts": {r: int((roles == r).sum()) for r in ROLES}, "rows": None}
