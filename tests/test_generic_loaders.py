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
