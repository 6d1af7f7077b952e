"""Face-verification pair lists: LFW View 2, RFW, and a generic CSV of pairs.

A verification split is a ``Dataset`` whose samples are the distinct images the pairs use (the
model embeds each image once) plus ``pairs``: image indices ``a`` and ``b``, ``same`` (genuine
pair), ``fold`` (0..9) and, for RFW, ``group`` (the race subset). ``attributes["subject"]`` is the
identity of each image, used to resample whole identities in bootstrap CIs.

* **LFW** ``pairs.txt`` (View 2): header ``10<TAB>300``, then 10 folds x (300 matched lines
  ``name n1 n2`` + 300 mismatched lines ``name1 n1 name2 n2``); images
  ``lfw/<name>/<name>_<4 digits>.jpg`` (or ``images/<name>/...``). Folds are numbered 1..10 as
  in pairs.txt (its k-th block of 600 lines is fold k); option ``folds`` keeps some of them.
* **RFW** ``test/txts/<Race>/<Race>_pairs.txt`` (tab-separated: 3 fields = genuine, 4 = impostor);
  images ``test/data/<Race>/<name>/<name>_<4 digits>.jpg``; 10 contiguous folds per race (the
  insightface ``KFold(10, shuffle=False)`` over each race's pair order).
* **pairs-csv**: header ``image_a,image_b,same[,fold][,group][,subject_a,subject_b]``; paths
  relative to the CSV's folder; ``same`` in {1, 0, true, false}; folds default to 10 contiguous blocks.

Pairs with an absent image: an error by default; with ``missing_images: skip`` they are left out of
the evaluation but never silently: the split's ``content_tag["pairs_missing"]``
(:func:`missing_report`) counts them per fold (genuine / impostor), a fold without a complete pair
is listed as absent, and a warning says so; the verification protocol reports the same counts.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from facebench.data.confine import joined_strings, needs_pathlib, refuse_outside
from facebench.data._native import NativeLoader, check_choice, find_child
from facebench.data.dataset import Dataset
from facebench.data.generic import pd_factorize, read_csv_strings
from facebench.data.images import FileImages
from facebench.errors import ConfigError

RFW_RACES = ("African", "Asian", "Caucasian", "Indian")


def contiguous_folds(n: int, n_folds: int = 10) -> np.ndarray:
    """Fold id per item: ``n_folds`` contiguous blocks, the first ``n % n_folds`` one larger (sklearn KFold)."""
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def _image_name(name: str, index: str) -> str:
    return f"{name}/{name}_{int(index):04d}.jpg"


#: the columns of a pair table: image paths relative to the image root, genuine flag, fold, group (or None),
#: the identity of each side
PAIR_COLUMNS = ("a", "b", "same", "fold", "group", "subject_a", "subject_b")


def pair_table(entries: list[tuple]) -> dict[str, np.ndarray]:
    """Entries (path_a, path_b, same, fold, group, subject_a, subject_b) as a pair table of columns."""
    cols = list(zip(*entries)) if entries else [()] * len(PAIR_COLUMNS)
    table = {k: np.asarray(v, dtype=str) for k, v in zip(PAIR_COLUMNS, cols) if k not in ("same", "fold", "group")}
    table["same"] = np.asarray(cols[2], dtype=bool)
    table["fold"] = np.asarray(cols[3], dtype=np.int64)
    table["group"] = np.asarray(cols[4], dtype=object)
    return table


def _interleaved(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """first[0], second[0], first[1], second[1], ... (both sides of each pair, in pair order)."""
    return np.column_stack([first, second]).reshape(-1) if len(first) else np.zeros(0, dtype=str)


def _present(root: Path, rels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(whether each distinct image file exists, the distinct index of each entry): one stat per image."""
    codes, uniques = pd_factorize(rels)
    paths = joined_strings(root, np.asarray(uniques, dtype=str))
    return np.array([os.path.isfile(p) for p in paths], dtype=bool), codes


def missing_report(table: dict, complete: np.ndarray) -> dict:
    """Pairs whose images are not both present, per fold: ``{"listed", "missing", "folds": [{"fold",
    "listed", "missing", "genuine_missing", "impostor_missing"}, ...]}`` (folds in increasing order; a fold
    whose ``missing`` equals ``listed`` has no complete pair and is absent from the evaluation)."""
    folds, same = np.asarray(table["fold"], dtype=np.int64), np.asarray(table["same"], dtype=bool)
    rows = []
    for f in np.unique(folds).tolist():
        mine, lost = folds == f, (folds == f) & ~complete
        rows.append({"fold": int(f), "listed": int(mine.sum()), "missing": int(lost.sum()),
                     "genuine_missing": int((lost & same).sum()), "impostor_missing": int((lost & ~same).sum())})
    return {"listed": int(len(folds)), "missing": int((~complete).sum()), "folds": rows}


def describe_missing(report: dict) -> str:
    """One sentence on the pairs left out: how many, per fold (genuine / impostor), and the absent folds."""
    rows = report["folds"]
    absent = [r for r in rows if r["listed"] and r["missing"] == r["listed"]]
    partial = [r for r in rows if r["missing"] and r["missing"] < r["listed"]]
    present = [r for r in rows if r["missing"] < r["listed"]]
    listed_present = sum(r["listed"] for r in present)
    text = (f"{listed_present - sum(r['missing'] for r in present)} of {listed_present} pairs evaluated in "
            f"{len(present)} folds ({fold_ranges([r['fold'] for r in present])}), "
            f"{sum(r['missing'] for r in present)} missing (an image absent)")
    if partial:
        text += ": " + ", ".join(f"fold {r['fold']}: {r['missing']} ({r['genuine_missing']} genuine, "
                                 f"{r['impostor_missing']} impostor)" for r in partial)
    if absent:
        plural = "s" if len(absent) > 1 else ""
        text += (f"; fold{plural} {fold_ranges([r['fold'] for r in absent])} absent (none of their "
                 f"{sum(r['listed'] for r in absent)} pairs has both images)")
    return text


def fold_ranges(folds) -> str:
    """Fold numbers as ranges: [1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'."""
    out, run = [], []
    for f in sorted(int(x) for x in folds):
        if run and f != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(f)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def build_pairs_dataset(loader, split: str, table: dict, image_root: Path, missing: str,
                        allow_outside: bool = False) -> Dataset:
    """A verification split from a pair table (``pair_table``; paths relative to ``image_root``): pairs with
    an absent image are an error, or left out (``missing == "skip"``), counted per fold in
    ``content_tag["pairs_missing"]`` (:func:`missing_report`) and warned about; a path leaving ``image_root``
    is an error unless ``allow_outside`` (see facebench.data.confine). Images are numbered in order of first use."""
    sides = _interleaved(table["a"], table["b"])
    if not allow_outside:
        refuse_outside(image_root, sides, f"{loader.name} pairs", lambda i: f"pair {i // 2 + 1}")
    exists, codes = _present(image_root, sides)
    ok = exists[codes]
    complete = ok[0::2] & ok[1::2]
    kept = np.flatnonzero(complete)
    n, dropped = len(table["a"]), len(table["a"]) - len(kept)
    if dropped and missing == "error":
        absent = sides[np.flatnonzero(~ok)[0]]
        raise loader._not_found(f"{dropped} of {n} pairs use absent images (first: {image_root / str(absent)}). "
                                f"Set `dataset_args: {{missing_images: skip}}` to evaluate the pairs whose images "
                                f"exist (the missing ones are then counted per fold in the results).")
    if not len(kept):
        raise loader._not_found(f"none of the {n} pairs has both images under {image_root}")
    report = missing_report(table, complete)
    if dropped:
        warnings.warn(f"{loader.name}/{split}: {describe_missing(report)}", stacklevel=3)
    return _pairs_dataset(loader, split, table, kept, image_root, report)


def _pairs_dataset(loader, split: str, table: dict, kept: np.ndarray, image_root: Path, report: dict) -> Dataset:
    """The Dataset of the kept pairs: one sample per distinct image, numbered in order of first use, with the
    subject of its first use."""
    sides = _interleaved(table["a"][kept], table["b"][kept])
    index, ids = pd_factorize(sides)
    ids = np.asarray(ids, dtype=str)
    first = np.unique(index, return_index=True)[1]  # codes follow first use, so these positions are increasing
    subjects = _interleaved(table["subject_a"][kept], table["subject_b"][kept])[first]
    pairs = {"a": index[0::2].astype(np.int64), "b": index[1::2].astype(np.int64),
             "same": table["same"][kept].astype(bool), "fold": table["fold"][kept].astype(np.int64)}
    group = table["group"][kept]
    if any(g is not None for g in group.tolist()):
        pairs["group"] = np.array([str(g) for g in group.tolist()])
    tag = {**loader.fingerprint_tag(), "pairs_missing": report}
    return Dataset(loader.name, split, ids, (), None, FileImages(joined_strings(image_root, ids)),
                   attributes={"subject": np.asarray(subjects, dtype=str)}, content_tag=tag, pairs=pairs)


def parent_strings(rels) -> np.ndarray:
    """``str(Path(rel).parent)`` for each ``rel``: the text before the last ``/`` (``.`` without one), through
    pathlib for the rare rows it would rewrite first (doubled or trailing slashes, ``.`` parts, absolute)."""
    rels = np.asarray(rels, dtype=str)
    if not rels.size:
        return rels
    parts = np.char.rpartition(rels, "/")
    out = np.where(parts[:, 1] == "/", parts[:, 0], ".").tolist()
    for i in np.flatnonzero(needs_pathlib(rels)).tolist():
        out[i] = str(Path(str(rels[i])).parent)
    return np.asarray(out, dtype=str)


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
        "  <path>/lfw/<name>/<name>_<4 digits>.jpg   (also accepted: <path>/images/, <path>/lfw-deepfunneled/,\n"
        "  <path>/lfw_funneled/, or the identity folders directly in <path>); options missing_images error|skip\n"
        "  (skip: pairs with an absent image are left out and counted per fold), folds [1..10] (pairs.txt's\n"
        "  blocks to keep, default all)"
    )
    splits = ("test",)
    split_aliases = {"view2": "test", "all": "test"}
    default_dirname = "lfw"
    image_dirs = ("lfw", "images", "lfw-deepfunneled", "lfw_funneled", "lfw-funneled")
    pairs_file = "pairs.txt"  # the pair list under <path> (XQLFW: xqlfw_pairs.txt, same format)

    def __init__(self, path=None, data_root=None, *, missing_images: str = "error", folds=None):
        options = {"missing_images": missing_images, **({"folds": folds} if folds is not None else {})}
        super().__init__(path, data_root, **options)
        check_choice("lfw", "missing_images", missing_images, ("error", "skip"))
        self.missing_images = missing_images
        self.folds = _fold_choice(folds)

    def required_paths(self, split):
        return [self.root / self.pairs_file]

    def image_root(self) -> Path:
        for sub in self.image_dirs:
            if (self.root / sub).is_dir():
                return self.root / sub
        return self.root

    def entries(self) -> list[tuple]:
        """(path_a, path_b, same, fold 1..n, None, subject_a, subject_b) per line of pairs.txt, in file order."""
        path = self.root / self.pairs_file
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
            fold = i // (2 * n_per) + 1
            if len(fields) == 3:
                name, n1, n2 = fields
                out.append((_image_name(name, n1), _image_name(name, n2), True, fold, None, name, name))
            elif len(fields) == 4:
                a, n1, b, n2 = fields
                out.append((_image_name(a, n1), _image_name(b, n2), False, fold, None, a, b))
            else:
                raise self._not_found(f"{path}:{i + 2}: expected 3 or 4 fields, got {len(fields)}")
        return out

    def selected(self) -> list[tuple]:
        """``entries`` of the folds kept by the ``folds`` option (all by default)."""
        entries = self.entries()
        if self.folds is None:
            return entries
        present = sorted({e[3] for e in entries})
        unknown = sorted(set(self.folds) - set(present))
        if unknown:
            raise ConfigError(f"{self.name}: folds {unknown} are not in {self.root / self.pairs_file}, whose folds are "
                              f"{fold_ranges(present)}; choose among those.")
        return [e for e in entries if e[3] in self.folds]

    def summary(self, split: str) -> dict:
        self.check_labels(split)
        entries = self.selected()
        same = sum(e[2] for e in entries)
        return {"n": len(entries), "counts": {"genuine pairs": same, "impostor pairs": len(entries) - same},
                "rows": len(entries)}

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        return build_pairs_dataset(self, split, pair_table(self.selected()), self.image_root(), self.missing_images)


def _fold_choice(folds) -> frozenset | None:
    """The ``folds`` option: None (all), or a non-empty list of positive fold numbers."""
    if folds is None:
        return None
    values = [folds] if isinstance(folds, int) and not isinstance(folds, bool) else folds
    if (not isinstance(values, (list, tuple)) or not values
            or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in values)):
        raise ConfigError(f"lfw: folds must be a list of fold numbers 1..10 (pairs.txt's blocks), e.g. "
                          f"`dataset_args: {{folds: [1, 2]}}`; got {folds!r}.")
    return frozenset(values)


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
        return build_pairs_dataset(self, split, pair_table(self.entries(split)), self.root / "test" / "data",
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

    def table(self) -> dict[str, np.ndarray]:
        """The pair CSV as a pair table (``pair_table``'s columns), checked column by column."""
        path = self._file()
        frame = read_csv_strings(path) if path.read_text(encoding="utf-8", errors="replace").strip() else None
        if frame is None or not {"image_a", "image_b", "same"} <= set(frame.columns):
            raise self._not_found(f"{path}: header {None if frame is None else list(frame.columns)} lacks "
                                  f"image_a, image_b, same")
        raw = frame["same"].to_numpy().astype(str)
        same = np.char.lower(np.char.strip(raw))
        bad = np.flatnonzero(~np.isin(same, ["1", "0", "true", "false"]))
        if len(bad):
            raise self._not_found(f"{path}:{bad[0] + 2}: same={str(raw[bad[0]])!r}; use 1/0 or true/false")
        a, b = (np.char.strip(frame[c].to_numpy().astype(str)) for c in ("image_a", "image_b"))
        return {"a": a, "b": b, "same": np.isin(same, ["1", "true"]), "fold": self._folds(frame, path),
                "group": self._groups(frame),
                "subject_a": self._subjects(frame, "subject_a", a), "subject_b": self._subjects(frame, "subject_b", b)}

    def _folds(self, frame, path: Path) -> np.ndarray:
        """The `fold` cells as integers (each distinct cell converted once); empty cells and a missing column
        take the 10 contiguous folds."""
        folds = contiguous_folds(len(frame))
        if "fold" not in frame.columns:
            return folds
        codes, cells = pd_factorize(frame["fold"])
        values = np.empty(len(cells), dtype=np.int64)
        for k, cell in enumerate(map(str, cells)):
            if cell != "":
                try:
                    values[k] = int(cell)
                except ValueError:
                    line = int(np.flatnonzero(codes == k)[0]) + 2
                    raise self._not_found(f"{path}:{line}: fold={cell!r} is not an integer") from None
        given = np.asarray([str(c) != "" for c in cells], dtype=bool)[codes]
        return np.where(given, values[codes], folds)

    @staticmethod
    def _cells(frame, column: str) -> np.ndarray:
        """An optional text column as a str array ("" where the column is absent or the cell empty)."""
        if column not in frame.columns:
            return np.full(len(frame), "", dtype=str)
        return frame[column].to_numpy().astype(str)

    @staticmethod
    def _groups(frame) -> np.ndarray:
        """The `group` cells as an object array, None where absent or empty."""
        cells = PairsCSV._cells(frame, "group")
        groups = cells.astype(object)
        groups[cells == ""] = None
        return groups

    @staticmethod
    def _subjects(frame, column: str, images: np.ndarray) -> np.ndarray:
        """The subject column, or the image's parent folder where it is absent or empty."""
        cells = PairsCSV._cells(frame, column)
        return np.where(cells == "", parent_strings(images), cells) if len(cells) else cells

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        return build_pairs_dataset(self, split, self.table(), self._file().parent, self.missing_images,
                                   self.allow_outside_root)
