import numpy as np
import pytest
from PIL import Image

from facebench.data.age_attr import CLAP2015, CelebA, UTKFace
from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.taxonomy import CELEBA_ATTRIBUTES
from facebench.engine.store import Predictions
from facebench.protocols.age import AgeEstimationProtocol
from facebench.protocols.attributes import AttributesProtocol
from facebench.protocols.base import EvalContext


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def _ctx(ds, outputs, head, labels, n_resamples=100):
    return EvalContext(ds, Predictions(ds.ids, outputs), head, tuple(labels), n_resamples=n_resamples)


def test_utkface_native_names_and_malformed(tmp_path):
    for name in ("25_1_2_20170116174525125.jpg.chip.jpg", "3_0_0_20170110224238891.jpg.chip.jpg",
                 "61_1_20170109142408075.jpg.chip.jpg", "14_0_0_2017011022340900.jpg.chip.jpg"):
        _img(tmp_path / "crop_part1" / name)
    with pytest.warns(UserWarning, match="skipped 2 file names"):
        ds = UTKFace(path=tmp_path).load("all")
    assert ds.attributes["age"].tolist() == [25.0, 3.0]
    assert ds.attributes["gender"].tolist() == ["female", "male"]
    assert ds.attributes["race"].tolist() == ["Asian", "White"]


def test_utkface_real(shared_data):
    with pytest.warns(UserWarning):
        ds = UTKFace(path=shared_data / "utkface").load("all")
    assert len(ds) == 9777  # 9,780 files, 3 malformed names (MANIFEST)
    g = ds.attributes["gender"]
    assert (g == "male").sum() == 4371 and (g == "female").sum() == 5406
    r = ds.attributes["race"]
    assert [(r == x).sum() for x in ("White", "Black", "Asian", "Indian", "Others")] == [5264, 405, 1553, 1452, 1103]
    assert ds.images.load(0).shape == (200, 200, 3)


def test_celeba_native_layout(tmp_path):
    rows = {"000001.jpg": [1] * 40, "000002.jpg": [-1] * 40, "000003.jpg": [1, -1] * 20}
    (tmp_path / "Anno").mkdir()
    (tmp_path / "Eval").mkdir()
    text = f"{len(rows)}\n" + " ".join(CELEBA_ATTRIBUTES) + "\n"
    text += "".join(f"{k} " + " ".join(f"{v:2d}" for v in vals) + "\n" for k, vals in rows.items())
    (tmp_path / "Anno" / "list_attr_celeba.txt").write_text(text)
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n000003.jpg 2\n")
    for k in rows:
        _img(tmp_path / "Img" / "img_align_celeba" / k)
    ds = CelebA(path=tmp_path).load("test")
    assert ds.ids.tolist() == ["000002.jpg", "000003.jpg"]
    assert ds.attributes["targets"].shape == (2, 40)
    assert ds.attributes["targets"][1, :4].tolist() == [1, 0, 1, 0]


def test_clap2015_label_file(tmp_path):
    (tmp_path / "valid_gt.csv").write_text("image,mean,stdv\nimage_4000.jpg,24.5,3.1\nimage_4001.jpg,40,5\n")
    _img(tmp_path / "valid" / "image_4000.jpg")
    _img(tmp_path / "valid" / "image_4001.jpg")
    ds = CLAP2015(path=tmp_path).load("valid")
    assert ds.split == "val" and ds.attributes["age"].tolist() == [24.5, 40.0]
    assert ds.attributes["age_std"].tolist() == [3.1, 5.0]


def test_age_protocol_golden_epsilon():
    ds = Dataset("lap", "val", np.array(["a", "b", "c"]), (), None, ArrayImages(np.zeros((3, 2, 2, 3), np.uint8)),
                 attributes={"age": np.array([24.0, 35, 40]), "age_std": np.array([3, 4.5, 2])})
    res = AgeEstimationProtocol(fixed_sigma=3.0).evaluate(
        _ctx(ds, {"age": np.array([[25.0], [31], [40]])}, "age", ("age",)))
    m = {r.metric: r for r in res.records}
    assert m["mae"].value == pytest.approx(5 / 3)
    assert m["epsilon_error[sigma=per-image]"].value == pytest.approx(0.1268007, abs=1e-7)
    assert m["cs@5"].value == pytest.approx(1.0)  # errors 1, 4, 0
    expected_fixed = 1 - np.mean(np.exp(-np.array([1, 16, 0]) / 18))
    assert m["epsilon_error[sigma=3]"].value == pytest.approx(expected_fixed)


def test_attributes_protocol_matches_by_name():
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    names = ("Male", "Smiling", "Young")
    ds = Dataset("celeba", "test", np.array(list("abcd")), names, None,
                 ArrayImages(np.zeros((4, 2, 2, 3), np.uint8)), attributes={"targets": targets})
    # the model's order differs: Young, Male, Smiling
    logits = np.array([[1, 1, -1], [1, -1, -1], [-1, 1, 1], [1, -1, -1.0]])
    res = AttributesProtocol().evaluate(_ctx(ds, {"attributes": logits}, "attributes", ("Young", "Male", "Smiling")))
    m = {r.metric: r.value for r in res.records}
    assert m["accuracy[Male]"] == 1.0 and m["accuracy[Smiling]"] == 0.75 and m["accuracy[Young]"] == 1.0
    assert m["mean_attribute_accuracy"] == pytest.approx((1 + 0.75 + 1) / 3)


def test_morph2_faceptor_protocol_layout(tmp_path):
    from facebench.data.age_attr import MORPH2

    (tmp_path / "label" / "RANDOM_80_20").mkdir(parents=True)
    (tmp_path / "label" / "RANDOM_80_20" / "test.txt").write_text("001_0M21.JPG 21\n002_1F45.JPG 45\n\n")
    (tmp_path / "label" / "RANDOM_80_20" / "train.txt").write_text("003_0M30.JPG 30\n")
    _img(tmp_path / "data" / "001_0M21.JPG")
    _img(tmp_path / "data" / "002_1F45.JPG")
    ds = MORPH2(path=tmp_path).load("test")
    assert ds.ids.tolist() == ["001_0M21.JPG", "002_1F45.JPG"] and ds.attributes["age"].tolist() == [21.0, 45.0]
    assert ds.images.load(1).shape == (4, 4, 3)
    from facebench.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="RANDOM_80_20"):
        MORPH2(path=tmp_path / "none").check("test")


def test_utkface_faceptor_split_files(tmp_path):
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "test.csv").write_text(",image,age\n0,30_1_0_20170116174525125.jpg.chip.jpg,30\n"
                                                 "1,odd_name.jpg,7\n")
    _img(tmp_path / "data" / "30_1_0_20170116174525125.jpg.chip.jpg")
    _img(tmp_path / "data" / "odd_name.jpg")
    ds = UTKFace(path=tmp_path).load("test")
    assert ds.attributes["age"].tolist() == [30.0, 7.0]
    assert ds.attributes["gender"].tolist() == ["female", "unknown"]


def test_label_file_errors_name_the_line(tmp_path):
    from facebench.errors import ConfigError

    (tmp_path / "valid_gt.csv").write_text("image,mean,stdv\nimage_1.jpg,24.5,3.1\nimage_2.jpg,forty,5\n")
    (tmp_path / "valid").mkdir()
    with pytest.raises(ConfigError, match=r"valid_gt.csv:3: expected `image;mean;std`"):
        CLAP2015(path=tmp_path).load("val")
