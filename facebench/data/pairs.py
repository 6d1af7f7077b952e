"""Face-verification pair lists: LFW View 2, RFW, and a generic CSV of pairs.

A verification split is a ``Dataset`` whose samples are the distinct images the pairs use (the
model embeds each image once) plus ``pairs``: image indices ``a`` and ``b``, ``same`` (genuine
pair), ``fold`` (0..9) and, for RFW, ``group`` (the race subset). ``attributes["subject"]`` is the
identity of each image, used to resample whole identities in bootstrap CIs.

* **LFW** ``pairs.txt`` (View 2): header ``10<TAB>300``, then 10 folds x (300 matched lines
  ``name n1 n2`` + 300 mismatched lines ``name1 n1 name2 n2``); images
  ``lfw/<name>/<name>_<4 digits>.jpg``.
* **RFW** ``test/txts/<Race>/<Race>_pairs.txt`` (tab-separated: 3 fields = genuine, 4 = impostor);
  images ``test/data/<Race>/<name>/<name>_<4 digits>.jpg``; 10 contiguous folds per race (the
  insightface ``KFold(10, shuffle=False)`` over each race's pair order).
* **pairs-csv**: header ``image_a,image_b,same[,fold][,group][,subject_a,subject_b]``; paths
  relative to the CSV's folder; ``same`` in {1, 0, true, false}; folds default to 10 contiguous blocks.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from facebench.data.confine import confined_paths
from facebench.data._native import NativeLoader, check_choice, find_child
from facebench.data.dataset import Dataset
from facebench.data.images import FileImages

RFW_RACES = ("African", "Asian", "Caucasian", "Indian")


def contiguous_folds(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold id per item: ``n_folds`` contiguous blocks, the first ``n % n_folds`` one larger (sklearn KFold)."""
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def _image_name(name: str, index: str) -> str:
    return f"{name}/{name}_{int(index):04d}.jpg"


def build_pairs_dataset(loader, split: str, entries: list[tuple], image_root: Path, missing: str,
                        allow_outside: bool = False) -> Dataset:
    """``entries`` = (path_a, path_b, same, fold, group, subject_a, subject_b) with image paths relative to
    ``image_root``; pairs with an absent image are an error, or left out (``missing == "skip"``); a path
    leaving ``image_root`` is an error unless ``allow_outside`` (see facebench.data.confine)."""
    confined_paths(image_root, [r for e in entries for r in e[:2]], f"{loader.name} pairs", allow_outside,
                   [f"pair {i // 2 + 1}" for i in range(2 * len(entries))])
    exists: dict[str, bool] = {}

    def present(rel: str) -> bool:
        if rel not in exists:
            exists[rel] = (image_root / rel).is_file()
        return exists[rel]

    kept = [e for e in entries if present(e[0]) and present(e[1])]
    dropped = len(entries) - len(kept)
    if dropped and missing == "error":
        absent = next(r for e in entries for r in e[:2] if not present(r))
        raise loader._not_found(f"{dropped} of {len(entries)} pairs use absent images (first: {image_root / absent}). "
                                f"Set `dataset_args: {{missing_images: skip}}` to evaluate the pairs whose images exist.")
    if dropped:
        warnings.warn(f"{loader.name}/{split}: {dropped} of {len(entries)} pairs use absent images and are left out",
                      stacklevel=3)
    if not kept:
        raise loader._not_found(f"none of the {len(entries)} pairs has both images under {image_root}")
    index: dict[str, int] = {}
    subjects: list[str] = []
    for a, b, _, _, _, sa, sb in kept:
        for rel, subject in ((a, sa), (b, sb)):
            if rel not in index:
                index[rel] = len(index)
                subjects.append(subject)
    ids = list(index)
    pairs = {"a": np.array([index[e[0]] for e in kept]), "b": np.array([index[e[1]] for e in kept]),
             "same": np.array([bool(e[2]) for e in kept]), "fold": np.array([int(e[3]) for e in kept])}
    if any(e[4] is not None for e in kept):
        pairs["group"] = np.array([str(e[4]) for e in kept])
    tag = {**loader.fingerprint_tag(), "pairs_left_out": dropped}
    return Dataset(loader.name, split, np.array(ids), (), None, FileImages([image_root / r for r in ids]),
                   attributes={"subject": np.array(subjects)}, content_tag=tag, pairs=pairs)


class LFWPairs(NativeLoader):
    """LFW View 2: 6,000 verification pairs in 10 folds (pairs.txt), images lfw/<name>/<name>_<4 digits>.jpg"""

    name = "lfw"
    capabilities = frozenset({"pairs", "attributes"})
    attribute_names = frozenset({"subject"})
    description = __doc__.splitlines()[0]
    citation = "Huang, Ramesh, Berg, Learned-Miller. Labeled Faces in the Wild. UMass TR 07-49, 2007."
    license = "research use; images are press photos owned by their copyright holders"
    how_to_get = "http://vis-www.cs.umass.edu/lfw/ (lfw.tgz and pairs.txt)"
    layout = (
        "  <path>/pairs.txt        header `10<TAB>300`; per fold 300 `name n1 n2` + 300 `name1 n1 name2 n2` lines\n"
        "  <path>/lfw/<name>/<name>_<4 digits>.jpg   (also accepted: <path>/lfw-deepfunneled/, <path>/lfw_funneled/,\n"
        "  or the identity folders directly in <path>); option missing_images error|skip"
    )
    splits = ("test",)
    split_aliases = {"view2": "test", "all": "test"}
    default_dirname = "lfw"

    def __init__(self, path=None, data_root=None, *, missing_images: str = "error"):
        super().__init__(path, data_root, missing_images=missing_images)
        check_choice("lfw", "missing_images", missing_images, ("error", "skip"))
        self.missing_images = missing_images

    def required_paths(self, split):
        return [self.root / "pairs.txt"]

    def image_root(self) -> Path:
        for sub in ("lfw", "lfw-deepfunneled", "lfw_funneled", "lfw-funneled"):
            if (self.root / sub).is_dir():
                return self.root / sub
        return self.root

    def entries(self) -> list[tuple]:
        path = self.root / "pairs.txt"
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
        try:
            n_sets, n_per = int(lines[0][0]), int(lines[0][1])
        except (IndexError, ValueError):
            raise self._not_found(f"{path}: first line should be `<folds><TAB><pairs per half-fold>`, "
                                  f"got {' '.join(lines[0]) if lines else '(empty file)'}") from None
        body = lines[1:]
        if len(body) != 2 * n_sets * n_per:
            raise self._not_found(f"{path}: header says {n_sets} x 2 x {n_per} = {2 * n_sets * n_per} pairs, "
                                  f"the file has {len(body)}")
        out = []
        for i, fields in enumerate(body):
            fold = i // (2 * n_per)
            if len(fields) == 3:
                name, n1, n2 = fields
                out.append((_image_name(name, n1), _image_name(name, n2), True, fold, None, name, name))
            elif len(fields) == 4:
                a, n1, b, n2 = fields
                out.append((_image_name(a, n1), _image_name(b, n2), False, fold, None, a, b))
            else:
                raise self._not_found(f"{path}:{i + 2}: expected 3 or 4 fields, got {len(fields)}")
        return out

    def summary(self, split: str) -> dict:
        self.check_labels(split)
        entries = self.entries()
        same = sum(e[2] for e in entries)
        return {"n": len(entries), "counts": {"genuine pairs": same, "impostor pairs": len(entries) - same},
                "rows": len(entries)}

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        return build_pairs_dataset(self, split, self.entries(), self.image_root(), self.missing_images)


class RFWPairs(NativeLoader):
    """RFW: 6,000 verification pairs per race (African, Asian, Caucasian, Indian), 10 folds each"""

    name = "rfw"
    capabilities = frozenset({"pairs", "attributes"})
    attribute_names = frozenset({"subject"})  # the race is the pairs' `group`
    description = __doc__.splitlines()[0]
    citation = "Wang, Deng, Hu, Tao, Huang. Racial Faces in-the-Wild. ICCV 2019."
    license = "research use after the BUPT agreement (http://whdeng.cn/RFW/)"
    how_to_get = "http://whdeng.cn/RFW/testing.html (request access; test.tar.gz)"
    layout = (
        "  <path>/test/txts/<Race>/<Race>_pairs.txt   tab-separated; `name idx1 idx2` (genuine) or\n"
        "  `name1 idx1 name2 idx2` (impostor); Race in African, Asian, Caucasian, Indian\n"
        "  <path>/test/data/<Race>/<name>/<name>_<4 digits>.jpg\n"
        "  splits: all (the four races, pairs grouped by race) or one race (african, asian, caucasian, indian)"
    )
    splits = ("all",) + tuple(r.lower() for r in RFW_RACES)
    split_aliases = {"test": "all"}
    default_dirname = "rfw"

    def __init__(self, path=None, data_root=None, *, missing_images: str = "error"):
        super().__init__(path, data_root, missing_images=missing_images)
        check_choice("rfw", "missing_images", missing_images, ("error", "skip"))
        self.missing_images = missing_images

    def _races(self, split: str) -> tuple[str, ...]:
        return RFW_RACES if split == "all" else tuple(r for r in RFW_RACES if r.lower() == split)

    def _pairs_file(self, race: str) -> Path:
        return find_child(self.root / "test" / "txts" / race, f"{race}_pairs.txt")

    def required_paths(self, split):
        return [self._pairs_file(r) for r in self._races(self.resolve_split(split))]

    def entries(self, split: str) -> list[tuple]:
        out = []
        for race in self._races(split):
            path = self._pairs_file(race)
            rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in path.read_text().splitlines() if ln.strip()]
            folds = contiguous_folds(len(rows))
            for i, fields in enumerate(rows):
                fields = [f.strip() for f in fields]
                if len(fields) == 3:
                    name, n1, n2 = fields
                    out.append((f"{race}/{_image_name(name, n1)}", f"{race}/{_image_name(name, n2)}", True,
                                folds[i], race, f"{race}/{name}", f"{race}/{name}"))
                elif len(fields) == 4:
                    a, n1, b, n2 = fields
                    out.append((f"{race}/{_image_name(a, n1)}", f"{race}/{_image_name(b, n2)}", False, folds[i],
                                race, f"{race}/{a}", f"{race}/{b}"))
                else:
                    raise self._not_found(f"{path}:{i + 1}: expected 3 or 4 tab-separated fields, got {len(fields)}")
        return out

    def summary(self, split: str) -> dict:
        self.check_labels(split)
        entries = self.entries(self.resolve_split(split))
        counts = {r: sum(1 for e in entries if e[4] == r) for r in self._races(self.resolve_split(split))}
        return {"n": len(entries), "counts": counts, "rows": len(entries)}

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        return build_pairs_dataset(self, split, self.entries(split), self.root / "test" / "data",
                                   self.missing_images)


class PairsCSV(NativeLoader):
    """Any verification pair list as CSV: image_a,image_b,same[,fold][,group][,subject_a,subject_b]"""

    name = "pairs-csv"
    capabilities = frozenset({"pairs", "attributes"})
    attribute_names = frozenset({"subject"})
    description = __doc__.splitlines()[0]
    layout = (
        "  <path> = a CSV file (or a folder holding pairs.csv) with the header\n"
        "  image_a,image_b,same[,fold][,group][,subject_a,subject_b]; image paths relative to the CSV's folder;\n"
        "  same 1/0/true/false; folds default to 10 contiguous blocks; subjects default to the image's parent folder"
    )
    splits = ("test",)
    split_aliases = {"all": "test"}

    def __init__(self, path=None, data_root=None, *, missing_images: str = "error", allow_outside_root: bool = False):
        super().__init__(path, data_root, missing_images=missing_images,
                         **({"allow_outside_root": True} if allow_outside_root else {}))
        check_choice("pairs-csv", "missing_images", missing_images, ("error", "skip"))
        self.missing_images = missing_images
        self.allow_outside_root = bool(allow_outside_root)

    def _file(self) -> Path:
        return self.root if self.root is None or self.root.suffix.lower() == ".csv" else self.root / "pairs.csv"

    def required_paths(self, split):
        return [self._file()]

    def entries(self) -> list[tuple]:
        path = self._file()
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"image_a", "image_b", "same"} <= set(reader.fieldnames):
                raise self._not_found(f"{path}: header {reader.fieldnames} lacks image_a, image_b, same")
            rows = list(reader)
        folds = contiguous_folds(len(rows))
        out = []
        for i, row in enumerate(rows):
            same = str(row["same"]).strip().lower()
            if same not in ("1", "0", "true", "false"):
                raise self._not_found(f"{path}:{i + 2}: same={row['same']!r}; use 1/0 or true/false")
            a, b = row["image_a"].strip(), row["image_b"].strip()
            fold = int(row["fold"]) if row.get("fold") not in (None, "") else int(folds[i])
            group = row.get("group") or None
            sa = row.get("subject_a") or str(Path(a).parent)
            sb = row.get("subject_b") or str(Path(b).parent)
            out.append((a, b, same in ("1", "true"), fold, group, sa, sb))
        return out

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        return build_pairs_dataset(self, split, self.entries(), self._file().parent, self.missing_images,
                                   self.allow_outside_root)
