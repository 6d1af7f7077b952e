import numpy as np
import pytest
from PIL import Image

from facebench.data.generic import CsvDataset, ImageFolder
from facebench.errors import ConfigError, DatasetNotFoundError


def _img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_imagefolder_native_layout(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("angry", "happy", "Neutral", "unknown"):
            for i in range(n):
                _img(tmp_path / split / cls / f"{i:03d}.png", i)
    loader = ImageFolder(path=tmp_path, name_map={"unknown": None})
    ds = loader.load("test")
    assert len(ds) == 6
    assert ds.classes == ("neutral", "happiness", "anger")
    assert ds.class_counts() == {"neutral": 2, "happiness": 2, "anger": 2}
    assert "angry/000.png" in ds.ids.tolist()
    assert ds.images.load(0).shape == (8, 8, 3)
    assert ds.fingerprint() == ImageFolder(path=tmp_path, name_map={"unknown": None}).load("test").fingerprint()
    assert ds.fingerprint() != loader.load("train").fingerprint()


def test_imagefolder_unknown_class_name_needs_map(tmp_path):
    _img(tmp_path / "test" / "smirk" / "0.png", 1)
    with pytest.raises(ConfigError, match="name map"):
        ImageFolder(path=tmp_path).load("test")


def test_imagefolder_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="Expected layout"):
        ImageFolder(path=tmp_path / "nope").check("test")


def test_imagefolder_relative_to_data_root(tmp_path):
    _img(tmp_path / "faces" / "test" / "sad" / "0.png", 1)
    ds = ImageFolder(path="faces", data_root=tmp_path).load("test")
    assert ds.labels.tolist() == ["sadness"]


def test_csv_with_splits_indices_and_attributes(tmp_path):
    for i in range(4):
        _img(tmp_path / "img" / f"{i}.png", i)
    (tmp_path / "labels.csv").write_text(
        "path,label,split,subject,race\n"
        "img/0.png,0,test,s1,A\nimg/1.png,3,test,s2,B\nimg/2.png,6,train,s1,A\nimg/3.png,1,test,s3,B\n")
    loader = CsvDataset(path=tmp_path / "labels.csv",
                        classes=["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"])
    assert loader.splits == ("test", "train")
    ds = loader.load("test")
    assert ds.labels.tolist() == ["anger", "happiness", "disgust"]
    assert ds.attributes["subject"].tolist() == ["s1", "s2", "s3"]
    assert ds.attributes["race"].tolist() == ["A", "B", "B"]
    assert ds.images.load(1)[0, 0, 0] == 1


def test_csv_names_and_missing_column(tmp_path):
    _img(tmp_path / "a.png", 0)
    (tmp_path / "l.csv").write_text("file,emotion\na.png,Happy\n")
    ds = CsvDataset(path=tmp_path / "l.csv", path_column="file", label_column="emotion").load("all")
    assert ds.labels.tolist() == ["happiness"]
    with pytest.raises(ConfigError, match="no column 'path'"):
        CsvDataset(path=tmp_path / "l.csv").load("all")


# -- vectorised CSV reading (issue 18): the column operations agree with the per-row definitions ----------------

def _path_strings(alphabet, longest):
    import itertools

    return ["".join(p) for k in range(longest + 1) for p in itertools.product(alphabet, repeat=k)]


def test_outside_mask_equals_is_outside_on_every_short_path():
    from facebench.data.confine import is_outside, outside_mask

    rels = _path_strings(["a", "/", ".", "\\", ":"], 5)  # 3,906 paths: every '..', slash and drive pattern
    assert outside_mask(rels).tolist() == [is_outside(r) for r in rels]
    assert outside_mask([]).tolist() == []


def test_joined_and_parent_strings_equal_pathlib():
    from pathlib import Path

    from facebench.data.confine import joined_strings
    from facebench.data.pairs import parent_strings

    rels = _path_strings(["a", "/", "."], 6)  # doubled and trailing slashes, '.' and '..' parts, absolute
    for root in (Path("/data/set"), Path("rel/dir"), Path("."), Path("/")):
        assert joined_strings(root, rels) == [str(root / r) for r in rels]
    assert parent_strings(rels).tolist() == [str(Path(r).parent) for r in rels]


def test_csv_errors_name_file_lines_within_a_split(tmp_path):
    (tmp_path / "l.csv").write_text("path,label,split\na.png,happy,train\n../b.png,sad,test\nc.png,sad,train\n"
                                    "../../d.png,sad,train\ne.png,9,train\n")
    loader = CsvDataset(path=tmp_path / "l.csv", classes=["happy", "sad"])
    with pytest.raises(ConfigError, match=r"1 image path\(s\) lead outside .*line 5: '../../d.png'"):
        loader.load("train")
    (tmp_path / "l.csv").write_text("path,label,split\na.png,1,train\nb.png,7,test\nc.png,5,train\nd.png,4,train\n")
    with pytest.raises(ConfigError, match="label index 5 outside"):  # the first bad row of the split, not of the file
        CsvDataset(path=tmp_path / "l.csv", classes=["happy", "sad"]).load("train")


def test_csv_paths_ids_and_attributes_as_the_file_says(tmp_path):
    (tmp_path / "l.csv").write_text("path,label,id,group\n./a.png,happy,x1,g\nsub//b.png,skip,x2,h\nc.png,Sad,x3,\n")
    ds = CsvDataset(path=tmp_path / "l.csv", id_column="id", name_map={"skip": None}).load("all")
    assert ds.ids.tolist() == ["x1", "x3"] and ds.labels.tolist() == ["happiness", "sadness"]
    assert ds.images.paths == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert ds.attributes["group"].tolist() == ["g", ""] and ds.classes == ("happiness", "sadness")


def test_csv_with_more_fields_than_the_header_is_refused(tmp_path):
    (tmp_path / "l.csv").write_text("path,label\na.png,happy,extra\n")
    with pytest.raises(ConfigError, match="not a readable CSV file"):
        CsvDataset(path=tmp_path / "l.csv").load("all")


def test_duplicate_ids_found_by_sorting():
    from facebench.data.dataset import _has_duplicates

    assert not _has_duplicates(np.array(["b", "a", "c"])) and _has_duplicates(np.array(["b", "a", "b"]))
    assert not _has_duplicates(np.array([], dtype=str))


def test_affectnet_and_fer_ids_match_their_definitions():
    from facebench.data.affectnet import _unique_ids
    from facebench.data.fer2013 import last_rows, row_ids

    names = np.array(["1/a.jpg", "2/b.jpg", "1/a.jpg", "1/a.jpg", "2/b.jpg"])
    assert _unique_ids(names).tolist() == ["1/a.jpg", "2/b.jpg", "1/a.jpg#2", "1/a.jpg#3", "2/b.jpg#2"]
    assert row_ids("fer2013-", np.array([0, 42, 123456])).tolist() == ["fer2013-00000", "fer2013-00042",
                                                                       "fer2013-123456"]
    assert sorted(last_rows(np.array(["a", "b", "a"]), np.array([5, 9, 11])).tolist()) == [9, 11]
