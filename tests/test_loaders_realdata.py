"""Native loaders on the real data under ../shared/data (read in place; skipped when absent).

Expected numbers come from the folders' MANIFEST.txt files and spec/protocols.md §1.1.
"""

import time

import numpy as np
import pytest

from facebench.data.check import check_datasets
from facebench.data.fer2013 import FER2013, FER2013Images, FERPlus
from facebench.data.rafdb import RAFDB
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import DatasetNotFoundError

pytestmark = pytest.mark.realdata

FER_IMAGES = {  # MANIFEST.txt of fer2013_images, folder names -> counts
    "train": {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830,
              "surprise": 3171},
    "val": {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "neutral": 607, "sad": 653, "surprise": 415},
    "test": {"angry": 491, "disgust": 55, "fear": 528, "happy": 879, "neutral": 626, "sad": 594, "surprise": 416},
}
FOLDER_TO_CANONICAL = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                       "neutral": "neutral", "sad": "sadness", "surprise": "surprise"}
PARTIAL_CSV = "fer2013_csv_partial/fer2013_first1167rows.csv"


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_fer2013_images_counts_all_splits(shared_data):
    loader = FER2013Images(path=_need(shared_data / "fer2013_images"))
    for split, counts in FER_IMAGES.items():
        summary = loader.summary(split)
        assert summary["n"] == sum(counts.values())
        assert summary["counts"] == {FOLDER_TO_CANONICAL[k]: v for k, v in counts.items()}, split
    assert (loader.expected_sizes["train"], loader.expected_sizes["val"], loader.expected_sizes["test"]) == (
        28709, 3589, 3589)
    assert not loader.skipped


def test_fer2013_images_test_split_loads_and_decodes(shared_data):
    root = _need(shared_data / "fer2013_images")
    t0 = time.perf_counter()
    ds = FER2013Images(path=root).load("test")
    seconds = time.perf_counter() - t0
    assert len(ds) == 3589 and seconds < 5, seconds
    assert ds.class_counts() == {FOLDER_TO_CANONICAL[k]: v for k, v in FER_IMAGES["test"].items()}
    assert set(ds.attributes["usage"]) == {"PrivateTest"}
    assert all(i.split("/")[1].startswith("PrivateTest_") for i in ds.ids)
    shapes = {ds.images.load(i).shape for i in range(len(ds))}  # decode every test image once
    assert shapes == {(48, 48, 1)}


def test_fer2013_partial_csv(shared_data):
    path = _need(shared_data / PARTIAL_CSV)
    loader = FER2013(path=path.parent, file=path.name)
    ds = loader.load("train")
    assert len(ds) == 1167 and ds.ids[0] == "fer2013-00000" and ds.ids[-1] == "fer2013-01166"
    expected = dict(zip(LABEL_ORDERS["fer2013"], [177, 14, 189, 272, 182, 141, 192]))  # emotion 0..6
    assert ds.class_counts() == expected
    assert ds.images.array.shape == (1167, 48, 48, 1)
    assert ds.images.load(0)[0, :3, 0].tolist() == [70, 80, 82]  # the file's first pixels: "70 80 82 ..."
    assert loader.summary("train")["counts"] == expected
    with pytest.raises(DatasetNotFoundError, match="no PrivateTest rows"):
        loader.load("test")


def test_ferplus_rows_and_counts(shared_data):
    loader = FERPlus(path=_need(shared_data / "ferplus"), images="none")
    rows = {s: loader.summary(s)["rows"] for s in ("train", "val", "test")}
    assert rows == {"train": 28709, "val": 3589, "test": 3589}
    test = loader.load("test")
    assert len(test) == loader.summary("test")["n"] and test.classes[-1] == "contempt"
    # the FER+ reference code's majority mode, 7 classes: train + val = 28,127, the FERPlus training size
    # in Faceptor's dataset table (spec §9), which trains on train+val
    official = FERPlus(path=shared_data / "ferplus", images="none", vote="majority", classes=7)
    assert official.summary("train")["n"] + official.summary("val")["n"] == 28127


def test_ferplus_joined_to_partial_csv_by_position(shared_data):
    csv = _need(shared_data / PARTIAL_CSV)
    loader = FERPlus(path=_need(shared_data / "ferplus"), fer2013_csv=csv)
    with pytest.raises(DatasetNotFoundError, match="allow_partial"):
        loader.load("train")
    ds = FERPlus(path=shared_data / "ferplus", fer2013_csv=csv, allow_partial=True).load("train")
    rows = np.array([int(i.split("-")[1]) for i in ds.ids])
    assert rows.max() <= 1166 and len(ds) > 1000
    fer = FER2013(path=csv).load("train")
    assert (ds.images.array == fer.images.array[rows]).all()  # pixels of the same row
    names = ds.attributes["image_name"]
    assert names[rows.tolist().index(60)] == "fer0000059.png"  # the documented name shift
    # FER+ relabels FER2013, but most labels agree on the same face; a join by name does not
    by_position = np.mean(fer.labels[rows] == ds.labels)
    by_name_rows = np.array([int(n[3:10]) for n in names])
    by_name = np.mean(fer.labels[by_name_rows] == ds.labels)
    assert by_position > 0.5 and by_name < 0.3, (by_position, by_name)


def test_rafdb_label_file_counts(shared_data):
    root = _need(shared_data / "rafdb_basic_labels" / "raf-basic")
    loader = RAFDB(path=root)
    spec = {  # spec/protocols.md §1.1, RAF order
        "train": [1290, 281, 717, 4772, 1982, 705, 2524],
        "test": [329, 74, 160, 1185, 478, 162, 680],
    }
    for split, counts in spec.items():
        summary = loader.summary(split)
        assert summary["n"] == summary["rows"] == sum(counts)
        assert list(summary["counts"].values()) == counts
        assert tuple(summary["counts"]) == ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    assert (loader.summary("train")["n"], loader.summary("test")["n"]) == (12271, 3068)
    with pytest.raises(DatasetNotFoundError, match=r"Image[/\\]aligned does not exist"):
        loader.check("test")  # no images in this copy: reported clearly before any model loads


def test_data_check_on_shared_data(shared_data):
    _need(shared_data / "fer2013_images")
    rows = {r["name"]: r for r in check_datasets(["fer2013-images", "ferplus", "rafdb"], data_root=shared_data,
                                                 paths={"rafdb": "rafdb_basic_labels/raf-basic"})}
    assert rows["fer2013-images"]["status"] == "ok"
    assert [s["n"] for s in rows["fer2013-images"]["splits"]] == [28709, 3589, 3589]
    assert rows["ferplus"]["status"] == "labels only"  # no fer2013/fer2013.csv under the shared folder
    assert [s["rows"] for s in rows["ferplus"]["splits"]] == [28709, 3589, 3589]
    assert rows["rafdb"]["status"] == "labels only"
