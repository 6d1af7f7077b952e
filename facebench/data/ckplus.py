"""CK+ (Extended Cohn-Kanade): the native release (image sequences + Emotion files) and the CK+48 crops.

CK+ has no official split: it is evaluated with subject-independent folds. Both loaders give the
single split ``all`` with the attributes ``subject`` (e.g. ``S005``), ``sequence`` (``S005_001``)
and ``fold``: 10 subject-disjoint folds (option ``folds``), the sorted subject ids dealt
round-robin (subject i of the sorted list goes to fold i mod folds), so the folds are
deterministic and hold equal numbers of subjects (+-1).
"""

from __future__ import annotations

import os
import re

import numpy as np

from facebench.data._native import NativeLoader, list_dirs, list_images, subject_folds, summarize
from facebench.data.images import FileImages
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError

CK_CITATION = ("P. Lucey, J. F. Cohn, T. Kanade, J. Saragih, Z. Ambadar, I. Matthews, The Extended Cohn-Kanade "
               "Dataset (CK+), CVPR Workshops 2010; T. Kanade, J. F. Cohn, Y. Tian, FG 2000")
CK_LICENSE = "non-commercial research only, under the CK+ agreement (University of Pittsburgh); do not redistribute"
_CK_NAME = re.compile(r"^(S\d+)_(\d+)_(\d+)$")


def _check_folds(folds) -> int:
    try:
        folds = int(folds)
    except (TypeError, ValueError):
        folds = -1
    if folds < 0 or folds == 1:
        raise ConfigError(f"`folds` must be 0 (no fold attribute) or an integer >= 2, got {folds!r}.")
    return folds


def _attributes(subjects: list[str], sequences: list[str], folds: int) -> dict[str, np.ndarray]:
    subjects_arr = np.array(subjects)
    out = {"subject": subjects_arr, "sequence": np.array(sequences)}
    if folds:
        out["fold"] = subject_folds(subjects_arr, folds)
    return out


class CKPlus(NativeLoader):
    """CK+ native release: posed expression sequences, labelled peak frames (Emotion/*.txt), subject-disjoint folds"""

    name = "ckplus"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"subject", "sequence", "fold"})
    # label_space stays undeclared: `neutral` joins the classes when a sequence is labelled neutral
    description = "CK+ native release: posed expression sequences, labelled peak frames (Emotion/*.txt), subject-disjoint folds"
    citation = CK_CITATION
    license = CK_LICENSE
    how_to_get = "request access at https://www.jeffcohn.net/Resources/ (CK+ agreement); unzip the images and Emotion labels"
    layout = (
        "  <path>/cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png\n"
        "  <path>/Emotion/S005/001/S005_001_00000011_emotion.txt   one float, e.g. `   3.0000000e+00`:\n"
        "      0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise; only the 327\n"
        "      labelled sequences are used; the labelled (last) frame is the peak\n"
        "  options: `peak_frames: k` (the last k frames of each sequence, default 1), `neutral_first_frame:\n"
        "  true` (add each labelled sequence's first frame as neutral), `contempt: false`, `folds: 10`\n"
        "  split: all (attributes subject, sequence, fold)"
    )
    splits = ("all",)
    default_dirname = "ckplus"

    def __init__(self, path=None, data_root=None, *, peak_frames: int = 1, neutral_first_frame: bool = False,
                 contempt: bool = True, folds: int = 10):
        try:
            peak_frames = int(peak_frames)
        except (TypeError, ValueError):
            peak_frames = 0
        if peak_frames < 1:
            raise ConfigError("ckplus: `peak_frames` must be an integer >= 1 (how many last frames of each "
                              "labelled sequence to use).")
        folds = _check_folds(folds)
        super().__init__(path, data_root, peak_frames=peak_frames, neutral_first_frame=bool(neutral_first_frame),
                         contempt=bool(contempt), folds=folds)
        self.peak_frames, self.neutral_first_frame = peak_frames, bool(neutral_first_frame)
        self.contempt, self.folds = bool(contempt), folds

    @property
    def classes(self) -> tuple[str, ...]:
        order = LABEL_ORDERS["ckplus"]
        return tuple(c for c in order if (c != "neutral" or self.neutral_first_frame)
                     and (c != "contempt" or self.contempt))

    def label_paths(self, split):
        return [self.root / "Emotion"]

    def required_paths(self, split):
        return [self.root / "Emotion", self.root / "cohn-kanade-images"]

    def sequences(self) -> list[tuple[str, str, str, int]]:
        """(subject, sequence folder, labelled frame stem, label index) of every labelled sequence."""
        emotion_root = self.root / "Emotion"
        out = []
        for subject in list_dirs(emotion_root):
            for seq in list_dirs(emotion_root / subject):
                folder = emotion_root / subject / seq
                files = sorted(f for f in os.listdir(folder) if f.endswith("_emotion.txt"))
                if not files:
                    continue  # an unlabelled sequence
                if len(files) > 1:
                    raise self._not_found(f"{folder} has {len(files)} emotion files; CK+ labels one frame per sequence.")
                text = (folder / files[0]).read_text().strip()
                try:
                    value = float(text.split()[0])
                except (ValueError, IndexError):
                    raise ConfigError(f"{folder / files[0]}: expected one number such as `3.0000000e+00`, "
                                      f"got {text[:40]!r}.") from None
                if value != int(value) or not 0 <= value <= 7:
                    raise ConfigError(f"{folder / files[0]}: label {value} is not an integer 0..7.")
                out.append((subject, seq, files[0][: -len("_emotion.txt")], int(value)))
        return out

    def _index(self, with_frames: bool):
        order = LABEL_ORDERS["ckplus"]
        classes = self.classes
        ids, labels, paths, subjects, seqs = [], [], [], [], []
        for subject, seq, stem, value in self.sequences():
            label = order[value]
            if label == "contempt" and not self.contempt:
                continue
            if label == "neutral" and label not in classes:
                classes = ("neutral", *classes)
            if not with_frames:
                chosen = [stem] * self.peak_frames  # counted as if every sequence were long enough
                first = [stem] if self.neutral_first_frame else []
            else:
                folder = self.root / "cohn-kanade-images" / subject / seq
                if not folder.is_dir():
                    raise self._not_found(f"{folder} does not exist, but {self.root / 'Emotion' / subject / seq} "
                                          f"labels it.")
                frames = [f.rsplit(".", 1)[0] for f in list_images(folder)]
                if stem not in frames:
                    raise self._not_found(f"the labelled frame {folder / (stem + '.png')} does not exist.")
                peak = frames.index(stem)
                lowest = 1 if self.neutral_first_frame and peak > 0 else 0  # frame 1 is then the neutral one
                chosen = frames[max(lowest, peak - self.peak_frames + 1): peak + 1]
                first = [frames[0]] if self.neutral_first_frame and peak > 0 else []
            for frame_stem, frame_label in [(s, label) for s in chosen] + [(s, "neutral") for s in first]:
                ids.append(frame_stem)
                labels.append(frame_label)
                subjects.append(subject)
                seqs.append(f"{subject}_{seq}")
                if with_frames:
                    paths.append(self.root / "cohn-kanade-images" / subject / seq / f"{frame_stem}.png")
        classes = tuple(c for c in LABEL_ORDERS["ckplus"] if c in classes)
        return ids, labels, paths, subjects, seqs, classes

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        with_frames = (self.root / "cohn-kanade-images").is_dir()
        ids, labels, _, _, seqs, classes = self._index(with_frames)
        out = summarize(labels, classes, rows=len(set(seqs)))
        if not with_frames and (self.peak_frames > 1 or self.neutral_first_frame):
            out["note"] = "frames not listed (cohn-kanade-images missing): counts assume long-enough sequences"
        return out

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        ids, labels, paths, subjects, seqs, classes = self._index(with_frames=True)
        if not ids:
            raise self._not_found(f"no labelled sequences under {self.root / 'Emotion'}.")
        return self._dataset(split, ids, classes, labels, FileImages(paths),
                             attributes=_attributes(subjects, seqs, self.folds))


CK48_FOLDERS = {"anger": "anger", "contempt": "contempt", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                "sadness": "sadness", "surprise": "surprise"}


class CKPlus48(NativeLoader):
    """CK+48: 48x48 face crops of the last frames of CK+ sequences in <class>/S###_###_########.png folders"""

    name = "ckplus48"
    capabilities = frozenset({"labels", "attributes"})
    attribute_names = frozenset({"subject", "sequence", "fold"})
    description = "CK+48: 48x48 face crops of the last frames of CK+ sequences in <class>/S###_###_########.png folders"
    citation = CK_CITATION
    license = CK_LICENSE + " (CK+48 is a derived crop set circulated on Kaggle)"
    how_to_get = "Kaggle 'CK+48' folder (981 crops: the last 3 frames of each labelled sequence); needs the CK+ terms"
    layout = (
        "  <path>/<class>/S010_004_00000017.png   <class> in anger contempt disgust fear happy sadness\n"
        "      surprise; subject (S010) and sequence (S010_004) from the name\n"
        "  split: all (attributes subject, sequence, fold: 10 subject-disjoint folds, option `folds`)"
    )
    splits = ("all",)
    default_dirname = "ckplus48"

    def __init__(self, path=None, data_root=None, *, folds: int = 10):
        folds = _check_folds(folds)
        super().__init__(path, data_root, folds=folds)
        self.folds = folds

    def _index(self):
        ids, labels, paths, subjects, seqs = [], [], [], [], []
        for cls in list_dirs(self.root):
            label = CK48_FOLDERS.get(cls.lower())
            if label is None:
                raise self._not_found(f"unexpected class folder {self.root / cls}; expected the folders "
                                      f"{', '.join(CK48_FOLDERS)}.")
            for name in list_images(self.root / cls):
                m = _CK_NAME.match(name.rsplit(".", 1)[0])
                if m is None:
                    raise self._not_found(f"{self.root / cls / name}: expected a CK+ frame name such as "
                                          f"S010_004_00000017.png (subject_sequence_frame).")
                ids.append(f"{cls}/{name}")
                labels.append(label)
                paths.append(self.root / cls / name)
                subjects.append(m.group(1))
                seqs.append(f"{m.group(1)}_{m.group(2)}")
        if not ids:
            raise self._not_found(f"no images under {self.root}.")
        return ids, labels, paths, subjects, seqs

    @property
    def classes(self) -> tuple[str, ...]:
        return LABEL_ORDERS["ckplus"][1:]

    label_space = classes

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check(split)
        ids, labels, _, _, seqs = self._index()
        return summarize(labels, self.classes, rows=len(ids))

    def load(self, split: str):
        split = self.resolve_split(split)
        self.check(split)
        ids, labels, paths, subjects, seqs = self._index()
        return self._dataset(split, ids, self.classes, labels, FileImages(paths),
                             attributes=_attributes(subjects, seqs, self.folds))
