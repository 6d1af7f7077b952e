"""FairFace, LFW, RFW and pairs-csv loaders on fixtures in their native layouts, on ../shared/data
when present, and the dataset transforms (hflip, corruptions)."""

import warnings

import numpy as np
import pytest
from PIL import Image

from facebench.data.fairface import FairFace
from facebench.data.pairs import LFWPairs, PairsCSV, RFWPairs, contiguous_folds
from facebench.data.transforms import TRANSFORMS, parse_transform
from facebench.errors import ConfigError, DatasetNotFoundError
from facebench.protocols.base import SplitRef
from facebench.suite import make_loader


def _jpg(path, value=100, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    arr[:, : size[0] // 2] = 255 - value  # left/right differ, so hflip is visible
    Image.fromarray(arr).save(path)


def test_fairface_native_layout(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\n"
        "val/1.jpg,3-9,Male,East Asian,False\n"
        "val/2.jpg,50-59,Female,East Asian,True\n"
        "val/3.jpg,more than 70,Female,Black,False\n")
    for i in (1, 2):
        _jpg(tmp_path / "val" / f"{i}.jpg")
    with pytest.raises(DatasetNotFoundError, match="1 of 3 val images are absent.*missing_images: skip"):
        FairFace(tmp_path).load("val")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FairFace(tmp_path, missing_images="skip").load("val")
    assert "1 of 3 rows have no image" in str(caught[0].message)
    assert ds.ids.tolist() == ["val/1.jpg", "val/2.jpg"] and ds.labels.tolist() == ["male", "female"]
    assert ds.classes == ("female", "male")
    assert ds.attributes["race"].tolist() == ["East Asian", "East Asian"]
    assert ds.attributes["age_group"].tolist() == ["3-9", "50-59"]
    assert ds.attributes["service_test"].tolist() == [False, True]
    with pytest.warns(UserWarning, match="1 of 3 rows"):
        race = FairFace(tmp_path, target="race", missing_images="skip").load("test")  # alias of val
    assert race.labels.tolist() == ["East Asian", "East Asian"] and len(race.classes) == 7
    assert race.fingerprint() != ds.fingerprint()
    (tmp_path / "fairface_label_val.csv").write_text("file,age,gender,race\nval/1.jpg,3-9,Robot,East Asian\n")
    with pytest.raises(DatasetNotFoundError, match="unexpected values gender='Robot'"):
        FairFace(tmp_path).load("val")
    with pytest.raises(ConfigError, match="target"):
        FairFace(tmp_path, target="colour")


def test_fairface_real(shared_data):
    loader = FairFace(shared_data / "fairface", missing_images="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = loader.load("val")
    assert len(ds) == 5000  # the shared copy holds images val/1..5000
    s = loader.summary("val")
    assert s["rows"] == 10954 and s["counts"] == {"female": 5162, "male": 5792}
    assert set(ds.attributes["race"]) == {"White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian",
                                          "Indian", "Middle Eastern"}
    assert ds.images.load(0).shape == (224, 224, 3)


def _lfw_fixture(root):
    lines = ["2\t2",
             "Ann\t1\t2", "Bob\t1\t2", "Ann\t1\tBob\t1", "Ann\t2\tCid\t1",
             "Cid\t1\t2", "Bob\t2\t3", "Cid\t2\tBob\t3", "Ann\t1\tCid\t2"]
    (root / "pairs.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    for name, n in (("Ann", 2), ("Bob", 3), ("Cid", 2)):
        for i in range(1, n + 1):
            _jpg(root / "lfw" / name / f"{name}_{i:04d}.jpg", value=20 * i)


def test_lfw_native_layout(tmp_path):
    _lfw_fixture(tmp_path)
    ds = LFWPairs(tmp_path).load("test")
    p = ds.pairs
    assert len(p["a"]) == 8 and p["same"].tolist() == [True, True, False, False] * 2
    assert p["fold"].tolist() == [1] * 4 + [2] * 4  # pairs.txt's blocks, numbered from 1
    assert ds.ids[p["a"][2]] == "Ann/Ann_0001.jpg" and ds.ids[p["b"][2]] == "Bob/Bob_0001.jpg"
    assert len(ds) == 7 and ds.attributes["subject"][list(ds.ids).index("Bob/Bob_0003.jpg")] == "Bob"
    assert ds.pairs_fingerprint() is not None
    (tmp_path / "lfw" / "Cid" / "Cid_0002.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="3 of 8 pairs use absent images"):
        LFWPairs(tmp_path).load("test")
    with pytest.warns(UserWarning, match=r"5 of 8 pairs evaluated in 2 folds \(1-2\), 3 missing"):
        assert len(LFWPairs(tmp_path, missing_images="skip").load("test").pairs["a"]) == 5
    (tmp_path / "pairs.txt").write_text("2\t300\nAnn\t1\t2\n")
    with pytest.raises(DatasetNotFoundError, match="header says 2 x 2 x 300"):
        LFWPairs(tmp_path).load("test")


def test_lfw_real_pairs_file(shared_data):
    loader = LFWPairs(shared_data / "lfw")
    entries = loader.entries()
    assert len(entries) == 6000 and sum(e[2] for e in entries) == 3000
    assert np.bincount([e[3] for e in entries]).tolist() == [0] + [600] * 10  # folds 1..10
    assert all(e[2] for e in entries[:300]) and not any(e[2] for e in entries[300:600])
    assert loader.summary("test")["counts"] == {"genuine pairs": 3000, "impostor pairs": 3000}
    with pytest.raises(DatasetNotFoundError, match="pairs use absent images"):
        loader.load("test")  # the shared copy has 2 of the 13,233 images


def test_rfw_native_layout(tmp_path):
    for race in ("African", "Asian", "Caucasian", "Indian"):
        d = tmp_path / "test" / "txts" / race
        d.mkdir(parents=True)
        rows = [f"{race[:2]}1\t1\t2", f"{race[:2]}1\t1\t{race[:2]}2\t1"] * 10
        (d / f"{race}_pairs.txt").write_text("\n".join(rows) + "\n")
        for name, n in ((f"{race[:2]}1", 2), (f"{race[:2]}2", 1)):
            for i in range(1, n + 1):
                _jpg(tmp_path / "test" / "data" / race / name / f"{name}_{i:04d}.jpg")
    ds = RFWPairs(tmp_path).load("all")
    assert len(ds.pairs["a"]) == 80 and set(ds.pairs["group"]) == {"African", "Asian", "Caucasian", "Indian"}
    g = ds.pairs["group"] == "Asian"
    assert ds.pairs["fold"][g].tolist() == np.repeat(np.arange(10), 2).tolist()
    one = RFWPairs(tmp_path).load("indian")
    assert len(one.pairs["a"]) == 20 and set(one.pairs["group"]) == {"Indian"}
    assert RFWPairs(tmp_path).summary("all")["counts"]["African"] == 20
    with pytest.raises(ConfigError, match="no split 'latino'"):
        RFWPairs(tmp_path).check("latino")


def test_pairs_csv(tmp_path):
    for name in ("x/a.jpg", "x/b.jpg", "y/c.jpg"):
        _jpg(tmp_path / name)
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same,group\nx/a.jpg,x/b.jpg,1,g1\nx/a.jpg,y/c.jpg,false,g2\n")
    ds = PairsCSV(tmp_path).load("test")
    assert ds.pairs["same"].tolist() == [True, False] and ds.pairs["group"].tolist() == ["g1", "g2"]
    assert ds.attributes["subject"].tolist() == ["x", "x", "y"]
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same\nx/a.jpg,x/b.jpg,maybe\n")
    with pytest.raises(DatasetNotFoundError, match="same='maybe'"):
        PairsCSV(tmp_path).load("test")
    assert contiguous_folds(23, 10).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] + sum([[k, k] for k in range(3, 10)], [])


def test_transforms(tmp_path):
    _lfw_fixture(tmp_path)
    plain = make_loader(SplitRef("lfw", "test", str(tmp_path)), None).load("test")
    flipped = make_loader(SplitRef("lfw", "test", str(tmp_path), {"transform": "hflip"}), None).load("test")
    assert (flipped.images.load(0) == plain.images.load(0)[:, ::-1]).all()
    assert flipped.pairs_fingerprint() == plain.pairs_fingerprint() and flipped.fingerprint() != plain.fingerprint()
    img = plain.images.load(0)
    for name in TRANSFORMS:
        spec = parse_transform({"name": name, "severity": 5})
        loader = make_loader(SplitRef("lfw", "test", str(tmp_path), {"transform": spec}), None)
        a, b = loader.load("test").images.load(0), loader.load("test").images.load(0)
        assert a.shape == img.shape and a.dtype == np.uint8 and (a == b).all()  # seeded per sample
        if name not in ("hflip",):
            assert not (a == img).all() or name == "jpeg"
    with pytest.raises(ConfigError, match="unknown transform 'hflp'.*hflip"):
        parse_transform("hflp")
    with pytest.raises(ConfigError, match="severity"):
        parse_transform({"name": "jpeg", "severity": 9})



def test_a_list_of_transforms_applies_them_in_order(tmp_path):
    """[blur, hflip] = the mirror of the blurred image (by hand, from the single transforms); [x] is x (one
    content tag, one store key); the chain's fingerprint differs from each part's; bad lists say what to write."""
    from facebench.data.transforms import parse_transforms, with_flip

    _lfw_fixture(tmp_path)
    blur = {"name": "gaussian_blur", "severity": 4}

    def split(transform):
        return make_loader(SplitRef("lfw", "test", str(tmp_path), {"transform": transform}), None).load("test")

    blurred, chained, reversed_ = split(blur), split([blur, "hflip"]), split(["hflip", blur])
    for i in range(3):
        assert (chained.images.load(i) == blurred.images.load(i)[:, ::-1]).all()
    assert split([blur]).fingerprint() == blurred.fingerprint()
    assert split([blur]).content_tag["transform"] == blurred.content_tag["transform"] == parse_transform(blur)
    prints = {blurred.fingerprint(), chained.fingerprint(), reversed_.fingerprint(), split("hflip").fingerprint()}
    assert len(prints) == 4
    assert chained.images.content_fingerprint() != blurred.images.content_fingerprint()
    assert parse_transforms([blur, "hflip"]) == [parse_transform(blur), {"name": "hflip"}]
    assert with_flip(None) == "hflip" and with_flip(blur) == [blur, "hflip"]
    assert with_flip([blur, "jpeg"]) == [blur, "jpeg", "hflip"]
    for bad in ([], [[blur]]):
        with pytest.raises(ConfigError, match="non-empty and flat"):
            parse_transforms(bad)
    with pytest.raises(ConfigError, match="unknown transform 'blurr'"):
        split([blur, "blurr"])
    with pytest.raises(ConfigError, match="a name, {name, severity, seed} or a list of them; got 5"):
        split(5)


def test_random_steps_of_a_list_draw_independently():
    """[noise, noise] adds two independent noises: the second step's seed differs from the first's, which stays
    the single transform's own (the keys of existing splits do not move); the step is in the fingerprint; the
    ImageNet-C family takes the step into its per-sample seed too."""
    from facebench.data.images import ArrayImages
    from facebench.data.transforms import TransformedImages

    grey = ArrayImages(np.full((2, 32, 32, 3), 128, np.uint8))
    noise = parse_transform({"name": "gaussian_noise", "severity": 2})
    first, second = TransformedImages(grey, noise), TransformedImages(grey, noise, step=1)
    d1, d2 = (x.load(0).astype(int) - 128 for x in (first, second))
    assert not (d1 == d2).all() and abs(np.corrcoef(d1.ravel(), d2.ravel())[0, 1]) < 0.1  # was 1.0
    single = make_loader(SplitRef("synth", "test", None, {"n": 2, "transform": noise}), None).load("test")
    chained = make_loader(SplitRef("synth", "test", None, {"n": 2, "transform": [noise, "hflip"]}), None).load("test")
    assert (chained.images.load(1) == single.images.load(1)[:, ::-1]).all()  # step 0 is the transform alone
    assert first.content_fingerprint() != second.content_fingerprint()
    shot = parse_transform({"name": "imagenet_c.shot_noise", "severity": 3})
    a, b = (TransformedImages(grey, shot, step=k).load(0) for k in (0, 1))
    assert not (a == b).all()

def test_noise_and_skimage_nonfaces():
    from facebench.data.nonfaces import NoiseImages, SkimageLFWSubset

    ds = NoiseImages(n=8, size=32).load("test")
    assert len(ds) == 8 and ds.images.load(0).shape == (32, 32, 3)
    assert ds.attributes["kind"].tolist() == ["uniform", "gaussian", "smooth", "blobs"] * 2
    again = NoiseImages(n=8, size=32).load("test")
    assert all((ds.images.load(i) == again.images.load(i)).all() for i in range(8))  # seeded
    assert NoiseImages(n=8, seed=1).load("test").fingerprint() != NoiseImages(n=8).load("test").fingerprint()
    with pytest.raises(ConfigError, match="kind"):
        NoiseImages(kind="pink")
    pytest.importorskip("skimage", reason="scikit-image not installed (pip install scikit-image)")
    nonfaces = SkimageLFWSubset().load("nonface")
    assert len(nonfaces) == 100 and set(nonfaces.labels) == {"nonface"}
    assert nonfaces.images.load(0).shape == (25, 25, 1) and nonfaces.images.load(0).dtype == np.uint8
    assert len(SkimageLFWSubset().load("all")) == 200


@pytest.mark.parametrize("shape", [(8, 8, 3), (13, 64, 3), (64, 5, 1)])
def test_noise_box_blur_equals_convolve_per_line(shape):
    """Oracle: NumPy's np.convolve over each edge-padded line, the loop the smooth noise used before."""
    from facebench.data.nonfaces import _box_blur5

    array = np.random.default_rng(2).uniform(0, 255, size=shape)
    kernel = np.ones(5) / 5.0
    for axis in (0, 1):
        want = np.apply_along_axis(lambda v: np.convolve(np.pad(v, 2, mode="edge"), kernel, "valid"), axis, array)
        got = _box_blur5(array, axis)
        assert got.shape == want.shape
        assert np.array_equal(got, want)  # same float operations in the same order: the same bits


def test_pairs_csv_columns(tmp_path):
    for name in ("x/a.jpg", "x/b.jpg", "y/c.jpg", "z.jpg"):
        _jpg(tmp_path / name)
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same,fold,group,subject_a\n x/a.jpg,x/b.jpg,1,3,g1,\n"
                                        "x/a.jpg,y/c.jpg,FALSE,,,sA\nz.jpg,y/c.jpg,true,2,,\n")
    ds = PairsCSV(tmp_path).load("test")
    assert ds.ids.tolist() == ["x/a.jpg", "x/b.jpg", "y/c.jpg", "z.jpg"]  # numbered in order of first use
    assert ds.pairs["a"].tolist() == [0, 0, 3] and ds.pairs["b"].tolist() == [1, 2, 2]
    assert ds.pairs["fold"].tolist() == [3, 1, 2]  # an empty cell takes its contiguous fold (row 1 of 3: fold 1)
    assert ds.pairs["group"].tolist() == ["g1", "None", "None"]
    assert ds.attributes["subject"].tolist() == ["x", "x", "y", "."]  # first use: x/a.jpg's subject_a is empty
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same,fold\nx/a.jpg,x/b.jpg,1,one\n")
    with pytest.raises(DatasetNotFoundError, match="pairs.csv:2: fold='one' is not an integer"):
        PairsCSV(tmp_path).load("test")
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same\nx/a.jpg,../b.jpg,1\nx/a.jpg,/c.jpg,0\n")
    with pytest.raises(ConfigError, match=r"2 image path\(s\) .*pair 1: '../b.jpg'; pair 2: '/c.jpg'"):
        PairsCSV(tmp_path).load("test")


def test_fairface_values_checked_per_column(tmp_path):
    (tmp_path / "fairface_label_val.csv").write_text("file,age,gender,race\nval/1.jpg,20-29, Male ,White\n"
                                                     "val/2.jpg,3-9,robot,Black\n")
    with pytest.raises(DatasetNotFoundError, match=r"fairface_label_val.csv:3: unexpected values gender='robot'"):
        FairFace(tmp_path).load("val")
