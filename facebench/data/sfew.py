"""SFEW 2.0 (Static Facial Expressions in the Wild, EmotiW): movie frames in Train/ and Val/ class folders.

The test set's labels were never released, so the splits are ``train`` and ``val`` (the papers
report SFEW results on Val).
"""

from __future__ import annotations

from facebench.data._native import NativeLoader, find_child, list_dirs, list_images, summarize
from facebench.data.images import FileImages
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError

SFEW_FOLDERS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness", "neutral": "neutral",
                "sad": "sadness", "surprise": "surprise"}
DEFAULT_DIRS = {"train": "Train", "val": "Val"}


class SFEW(NativeLoader):
    """SFEW 2.0: faces in movie frames (EmotiW), Train/ and Val/<Class>/*.png with 7 alphabetical class folders"""

    name = "sfew"
    capabilities = frozenset({"labels"})
    attribute_names = frozenset()
    label_space = LABEL_ORDERS["sfew"]
    description = "SFEW 2.0: faces in movie frames (EmotiW), Train/ and Val/<Class>/*.png with 7 alphabetical class folders"
    citation = ("A. Dhall, R. Goecke, S. Lucey, T. Gedeon, Static Facial Expression Analysis in Tough Conditions: "
                "Data, Evaluation Protocol and Benchmark, ICCV Workshops 2011; EmotiW 2015 (SFEW 2.0)")
    license = "research only, under the EmotiW/SFEW end-user licence agreement; do not redistribute"
    how_to_get = "request from the EmotiW organisers (https://users.cecs.anu.edu.au/~few_group/AFEW.html)"
    layout = (
        "  <path>/Train/<Class>/*.png, <path>/Val/<Class>/*.png   <Class> in Angry Disgust Fear Happy Neutral\n"
        "      Sad Surprise (any case); option `split_dirs: {train: Train_Aligned_Faces, val: ...}` reads other\n"
        "      folder names (e.g. the aligned-face folders)\n"
        "  splits: train, val (the test labels are not public)"
    )
    splits = ("train", "val")
    default_dirname = "sfew"

    def __init__(self, path=None, data_root=None, *, split_dirs: dict | None = None):
        dirs = dict(DEFAULT_DIRS)
        if split_dirs:
            unknown = sorted(set(split_dirs) - set(DEFAULT_DIRS))
            if unknown:
                raise ConfigError(f"sfew: `split_dirs` keys must be train and/or val, got {unknown}.")
            dirs.update({k: str(v) for k, v in split_dirs.items()})
        super().__init__(path, data_root, split_dirs=dirs)
        self.split_dirs = dirs

    def required_paths(self, split):
        return [find_child(self.root, self.split_dirs[self.resolve_split(split)])]

    def _index(self, split):
        split = self.resolve_split(split)
        self.check(split)
        base = find_child(self.root, self.split_dirs[split])
        ids, labels, paths = [], [], []
        for cls in list_dirs(base):
            label = SFEW_FOLDERS.get(cls.lower())
            if label is None:
                raise self._not_found(f"unexpected class folder {base / cls}; expected Angry, Disgust, Fear, Happy, "
                                      f"Neutral, Sad, Surprise.")
            for name in list_images(base / cls):
                ids.append(f"{cls}/{name}")
                labels.append(label)
                paths.append(base / cls / name)
        if not ids:
            raise self._not_found(f"no images under {base}.")
        return split, ids, labels, paths

    def summary(self, split: str) -> dict:
        _, ids, labels, _ = self._index(split)
        return summarize(labels, LABEL_ORDERS["sfew"], rows=len(ids))

    def load(self, split: str):
        split, ids, labels, paths = self._index(split)
        return self._dataset(split, ids, LABEL_ORDERS["sfew"], labels, FileImages(paths))
