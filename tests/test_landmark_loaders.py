"""Landmark labels on Dataset and the landmark loaders (MTFL, 300-W, WFLW, COFW-29, AFLW-19), each on a
fixture written in its native layout in tmp_path; MTFL also on the real data under ../shared/data/mtfl."""

import warnings

import numpy as np
import pytest
from PIL import Image

from facebench.data.check import check_datasets
from facebench.data.dataset import Dataset, LandmarkLabels
from facebench.data.images import ArrayImages
from facebench.data.landmark_cofw import COFW
from facebench.data.landmark_sets import AFLW19, MTFL, W300, WFLW, header_sizes
from facebench.errors import ConfigError, DataError, DatasetNotFoundError
from facebench.registry import DATASETS


def _jpeg(path, width, height, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (width, height), (90, 120, 150))
    exif = Image.Exif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    im.save(path, exif=exif.tobytes()) if exif_orientation else im.save(path)
    return path


# -- LandmarkLabels -------------------------------------------------------------------------------------------
def _labels(n=3, k=5, scheme="five_point", **kw):
    pts = np.arange(n * k * 2, dtype=float).reshape(n, k, 2)
    args = {"visible": None, "boxes": None, "image_sizes": np.full((n, 2), 100)}
    args.update(kw)
    return LandmarkLabels(scheme, pts, **args)


def test_landmark_labels_are_checked():
    lab = _labels()
    assert lab.points.dtype == np.float64 and lab.image_sizes.dtype == np.int64 and len(lab) == 3
    with pytest.raises(DataError, match="scheme 'ibug68' has 68 points"):
        _labels(scheme="ibug68")
    with pytest.raises(ConfigError, match="unknown landmark scheme"):
        _labels(scheme="five_points")
    with pytest.raises(DataError, match=r"\(N, K, 2\)"):
        LandmarkLabels("five_point", np.zeros((3, 10)), None, None, np.full((3, 2), 9))
    bad = np.zeros((3, 5, 2))
    bad[1, 2, 0] = np.nan
    with pytest.raises(DataError, match="1 samples have non-finite points"):
        LandmarkLabels("five_point", bad, None, None, np.full((3, 2), 9))
    with pytest.raises(DataError, match="visible"):
        _labels(visible=np.ones((3, 4), bool))
    with pytest.raises(DataError, match="boxes"):
        _labels(boxes=np.zeros((2, 4)))
    with pytest.raises(DataError, match="image_sizes"):
        _labels(image_sizes=np.zeros((3, 2)))


def test_dataset_carries_landmarks_in_subset_and_fingerprint():
    images = ArrayImages(np.zeros((3, 4, 4, 3), np.uint8))
    occluded = np.zeros((3, 5), bool)
    occluded[2, 1] = True
    lab = _labels(boxes=np.tile([1.0, 2, 30, 40], (3, 1)), occluded=occluded)
    ds = Dataset("x", "test", np.array(["a", "b", "c"]), (), None, images, landmarks=lab)
    sub = ds.subset([2, 0])
    assert np.array_equal(sub.landmarks.points, lab.points[[2, 0]])
    assert sub.landmarks.occluded[0, 1] and not sub.landmarks.occluded[1].any()
    moved = _labels(boxes=lab.boxes, occluded=occluded)
    moved.points[1, 3, 0] += 0.5
    other = Dataset("x", "test", ds.ids, (), None, images, landmarks=moved)
    plain = Dataset("x", "test", ds.ids, (), None, images)
    assert len({ds.fingerprint(), other.fingerprint(), plain.fingerprint()}) == 3
    same = Dataset("x", "test", ds.ids, (), None, images, landmarks=_labels(boxes=lab.boxes, occluded=occluded))
    assert same.fingerprint() == ds.fingerprint()
    with pytest.raises(DataError, match="3 landmark rows for 2 ids"):
        Dataset("x", "test", np.array(["a", "b"]), (), None, images.subset([0, 1]), landmarks=lab)


def test_header_sizes_follow_exif_orientation(tmp_path):
    plain = _jpeg(tmp_path / "a.jpg", 40, 30)
    turned = _jpeg(tmp_path / "b.jpg", 40, 30, exif_orientation=6)
    assert header_sizes([plain, turned]).tolist() == [[40, 30], [30, 40]]
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read the image header"):
        header_sizes([tmp_path / "c.jpg"])


# -- MTFL -----------------------------------------------------------------------------------------------------
MTFL_TEST = [
    "AFLW/0001-image1.jpg 56.607985 101.326679 79.548094 43.831216 93.196007 43.250454 58.059891 69.965517 "
    "86.226860 103.940109 1 1 2 3",
    "AFLW/0002-image2.jpg 43.5 89.25 85.0 56.0 97.5 53.75 42.5 77.5 101.25 90.0 2 2 1 5",
]
MTFL_TRAIN = [
    "lfw_5590\\Aaron_Eckhart_0001.jpg 107.250000 147.750000 126.250000 106.250000 140.750000 108.750000 "
    "113.250000 143.750000 158.750000 162.750000 1 2 2 3",
    "net_7876\\000001.jpg 10 20 15 11 19 12 12 18 25 25 2 1 2 1",
]


def _mtfl(root, with_train_image=False):
    root.mkdir(parents=True, exist_ok=True)
    for name, lines in (("testing.txt", MTFL_TEST), ("training.txt", MTFL_TRAIN)):
        # the release's quirks: CRLF, a space before every record after the first, a last line holding " "
        (root / name).write_bytes(("\r\n ".join(lines) + "\r\n ").encode("ascii"))
    _jpeg(root / "AFLW/0001-image1.jpg", 150, 150)
    _jpeg(root / "AFLW/0002-image2.jpg", 120, 90)
    if with_train_image:
        _jpeg(root / "net_7876/000001.jpg", 160, 216)
    return root


def test_mtfl_native_layout(tmp_path):
    ds = MTFL(path=_mtfl(tmp_path / "mtfl")).load("test")
    assert ds.ids.tolist() == ["AFLW/0001-image1.jpg", "AFLW/0002-image2.jpg"] and ds.labels is None
    lab = ds.landmarks
    assert lab.scheme == "five_point" and lab.boxes is None and lab.visible is None
    # x1..x5 then y1..y5, as given (0-based, no shift)
    assert lab.points[0, 0].tolist() == [56.607985, 43.250454] and lab.points[1, 4].tolist() == [97.5, 90.0]
    assert lab.image_sizes.tolist() == [[150, 150], [120, 90]]
    assert ds.attributes["gender"].tolist() == ["male", "female"]
    assert ds.attributes["smile"].tolist() == ["yes", "no"] and ds.attributes["glasses"].tolist() == ["no", "yes"]
    assert ds.attributes["pose"].tolist() == ["frontal", "right_profile"]
    assert ds.content_tag["rows_without_image"] == 0


def test_mtfl_missing_training_images_are_reported(tmp_path):
    loader = MTFL(path=_mtfl(tmp_path / "mtfl"))
    with pytest.raises(DatasetNotFoundError, match=r"2 of 2 train records have no image file.*MTFL\.zip"):
        loader.load("train")
    summary = loader.summary("train")
    assert summary["n"] == 2 and "2 of 2 records have no image file" in summary["note"]
    assert summary["counts"]["pose=frontal"] == 1 and summary["counts"]["pose=left_profile"] == 1
    root = _mtfl(tmp_path / "mtfl2", with_train_image=True)
    with pytest.raises(DatasetNotFoundError, match="missing_images: skip"):
        MTFL(path=root).load("train")
    with pytest.raises(DatasetNotFoundError, match="lfw_5590 does not exist"):
        MTFL(path=root).check("train")
    MTFL(path=root, missing_images="skip").check("train")  # the label file is enough then
    with pytest.warns(UserWarning, match="1 of 2 records have no image file"):
        ds = MTFL(path=root, missing_images="skip").load("train")
    assert ds.ids.tolist() == ["net_7876/000001.jpg"] and ds.content_tag["rows_without_image"] == 1
    assert ds.landmarks.image_sizes.tolist() == [[160, 216]] and ds.attributes["pose"].tolist() == ["left_profile"]
    row = check_datasets("mtfl", paths={"mtfl": root})[0]
    assert row["status"] == "incomplete" and [s["n"] for s in row["splits"]] == [2, 2]
    assert any("1 of 2 records have no image file" in n for n in row["splits"][0]["notes"])


def test_mtfl_bad_records_name_their_line(tmp_path):
    root = _mtfl(tmp_path / "mtfl")
    (root / "testing.txt").write_text(MTFL_TEST[0] + "\n" + MTFL_TEST[1].replace(" 5", " 7") + "\n")
    with pytest.raises(DataError, match=r"testing.txt:2: pose code '7'"):
        MTFL(path=root).load("test")
    (root / "testing.txt").write_text(MTFL_TEST[0] + " 4\n")
    with pytest.raises(DataError, match=r"testing.txt:1: expected 15 fields"):
        MTFL(path=root).load("test")


# -- 300-W ----------------------------------------------------------------------------------------------------
def _pts(path, points):
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")


def _w300(root):
    rng = np.random.default_rng(0)
    made = {}
    for folder, stem, suffix, size in (("lfpw/testset", "image_0001", ".png", (80, 60)),
                                       ("helen/testset", "2968560214_1", ".jpg", (90, 70)),
                                       ("ibug", "image_003_1", ".jpg", (100, 50)),
                                       ("afw", "1051618982_1", ".jpg", (64, 64)),
                                       ("300W/01_Indoor", "indoor_001", ".png", (70, 70)),
                                       ("300W/02_Outdoor", "outdoor_001", ".png", (50, 90))):
        pts = np.round(rng.uniform(1, 50, size=(68, 2)), 3)
        _jpeg(root / folder / (stem + suffix), *size)
        _pts(root / folder / (stem + ".pts"), pts)
        made[f"{folder}/{stem}{suffix}"] = (pts, size)
    for folder in ("helen/trainset", "lfpw/trainset"):
        (root / folder).mkdir(parents=True)
    return made


def test_300w_subsets_and_one_based_points(tmp_path):
    made = _w300(tmp_path / "300w")
    loader = W300(path=tmp_path / "300w")
    common = loader.load("common")
    assert common.ids.tolist() == ["lfpw/testset/image_0001.png", "helen/testset/2968560214_1.jpg"]
    assert loader.load("challenging").ids.tolist() == ["ibug/image_003_1.jpg"]
    full = loader.load("test")
    assert full.split == "full" and len(full) == 3
    assert full.attributes["set"].tolist() == ["common", "common", "challenging"]
    assert full.attributes["subset"].tolist() == ["lfpw_test", "helen_test", "ibug"]
    assert loader.load("private").attributes["subset"].tolist() == ["indoor", "outdoor"]
    for i, image in enumerate(full.ids):
        pts, size = made[image]
        assert np.allclose(full.landmarks.points[i], pts - 1.0)  # 1-based .pts -> 0-based
        assert full.landmarks.image_sizes[i].tolist() == list(size)
    assert full.landmarks.scheme == "ibug68" and full.landmarks.boxes is None
    assert loader.summary("full")["counts"] == {"subset=helen_test": 1, "subset=ibug": 1, "subset=lfpw_test": 1,
                                                "set=challenging": 1, "set=common": 2}


def test_300w_bad_pts_and_missing_image(tmp_path):
    _w300(tmp_path / "300w")
    (tmp_path / "300w/ibug/image_003_1.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="1 of 1 challenging records have no image file"):
        W300(path=tmp_path / "300w").load("challenging")
    (tmp_path / "300w/ibug/image_003_1.pts").write_text("version: 1\nn_points: 5\n{\n1 2\n}\n")
    with pytest.raises(DataError, match="expected 68 points"):
        W300(path=tmp_path / "300w").load("challenging")


# -- WFLW -----------------------------------------------------------------------------------------------------
def _wflw_line(points, box, flags, name):
    return " ".join([*(f"{v:.6f}" for v in points.reshape(-1)), *map(str, box), *map(str, flags), name])


def test_wflw_native_layout(tmp_path):
    root = tmp_path / "wflw"
    lists = root / "WFLW_annotations/list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    rng = np.random.default_rng(1)
    pts = [rng.uniform(0, 60, size=(98, 2)) for _ in range(3)]
    rows = [(pts[0], (3, 4, 50, 60), (1, 0, 0, 0, 0, 1), "51--Dresses/51_Dresses_wearingdress_51_377.jpg"),
            (pts[1], (10, 2, 40, 30), (0, 1, 0, 1, 0, 0), "51--Dresses/51_Dresses_wearingdress_51_377.jpg"),
            (pts[2], (0, 0, 20, 20), (0, 0, 1, 0, 1, 0), "0--Parade/0_Parade_marchingband_1_116.jpg")]
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(_wflw_line(*r) for r in rows) + "\n")
    _jpeg(root / "WFLW_images/51--Dresses/51_Dresses_wearingdress_51_377.jpg", 64, 48)
    _jpeg(root / "WFLW_images/0--Parade/0_Parade_marchingband_1_116.jpg", 32, 40)
    ds = WFLW(path=root).load("test")
    assert ds.ids.tolist() == ["51--Dresses/51_Dresses_wearingdress_51_377.jpg",
                               "51--Dresses/51_Dresses_wearingdress_51_377.jpg#2",
                               "0--Parade/0_Parade_marchingband_1_116.jpg"]
    assert np.allclose(ds.landmarks.points, np.round(np.stack(pts), 6))
    assert ds.landmarks.boxes.tolist() == [[3, 4, 50, 60], [10, 2, 40, 30], [0, 0, 20, 20]]
    assert ds.landmarks.image_sizes.tolist() == [[64, 48], [64, 48], [32, 40]]
    assert ds.attributes["large_pose"].tolist() == ["yes", "no", "no"]
    assert ds.attributes["make_up"].tolist() == ["no", "yes", "no"]
    assert ds.attributes["blur"].tolist() == ["yes", "no", "no"]
    assert ds.attributes["occlusion"].tolist() == ["no", "no", "yes"]
    (lists / "list_98pt_rect_attr_test.txt").write_text(_wflw_line(*rows[0]).rsplit(" ", 2)[0] + "\n")
    with pytest.raises(DataError, match="207 fields"):
        WFLW(path=root).load("test")


# -- COFW -----------------------------------------------------------------------------------------------------
def _cofw_arrays():
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, size=(40, 30, 3), dtype=np.uint8), rng.integers(0, 255, size=(25, 35),
                                                                                      dtype=np.uint8)]
    phis = np.zeros((2, 87))
    phis[:, :58] = np.round(rng.uniform(1, 25, size=(2, 58)), 2)
    phis[0, 58 + 3] = phis[1, 58:58 + 12] = 1
    boxes = np.array([[5.0, 6, 20, 22], [1, 1, 30, 20]])
    return images, phis, boxes


def _cofw_v5(path):
    import scipy.io

    images, phis, boxes = _cofw_arrays()
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0], cells[1, 0] = images
    scipy.io.savemat(str(path), {"IsT": cells, "phisT": phis, "bboxesT": boxes})


def _cofw_v73(path):
    """A Matlab v7.3 (HDF5) file as Matlab writes it: column-major arrays (stored transposed), the cell array
    as object references into #refs#."""
    h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install h5py): the v7.3 COFW fixture")

    images, phis, boxes = _cofw_arrays()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        ref_list = [refs.create_dataset(f"im{i}", data=im.T).ref for i, im in enumerate(images)]
        f.create_dataset("IsT", data=np.array([ref_list], dtype=h5py.ref_dtype))
        f.create_dataset("phisT", data=phis.T)
        f.create_dataset("bboxesT", data=boxes.T)
    with open(path, "r+b") as f:  # Matlab's text header and version 0x0200 ('IM' endian mark) in the userblock
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM")


@pytest.mark.parametrize("writer", [_cofw_v5, _cofw_v73])
def test_cofw_mat_files(tmp_path, writer):
    root = tmp_path / "cofw"
    root.mkdir()
    writer(root / "COFW_test_color.mat")
    images, phis, boxes = _cofw_arrays()
    ds = COFW(path=root).load("test")
    lab = ds.landmarks
    assert ds.ids.tolist() == ["test_0001", "test_0002"] and lab.scheme == "cofw29" and lab.visible is None
    assert np.array_equal(lab.points[:, :, 0], phis[:, :29] - 1) and np.array_equal(lab.points[:, :, 1],
                                                                                     phis[:, 29:58] - 1)
    assert lab.occluded.sum(axis=1).tolist() == [1, 12] and lab.occluded[0, 3]
    assert lab.boxes.tolist() == [[4, 5, 24, 27], [0, 0, 30, 20]]
    assert lab.image_sizes.tolist() == [[30, 40], [35, 25]]
    assert np.array_equal(ds.images.load(0), images[0]) and np.array_equal(ds.images.load(1)[..., 0], images[1])
    assert ds.attributes["occlusion"].tolist() == ["1-4", "10+"]
    assert ds.subset([1]).images.load(0).shape == (25, 35, 1)
    assert COFW(path=root).summary("test")["n"] == 2


def test_cofw_v73_without_h5py_says_what_to_install(tmp_path, monkeypatch):
    """A v5 file is read with SciPy alone; a v7.3 file without h5py is a DataError naming the install."""
    import sys

    root = tmp_path / "cofw"
    root.mkdir()
    path = root / "COFW_test_color.mat"
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512) + b"\x89HDF\r\n\x1a\n" + bytes(64))
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(DataError, match="pip install h5py"):
        COFW(path=root).load("test")
    _cofw_v5(path)
    assert len(COFW(path=root).load("test")) == 2


def test_cofw_image_content_is_fingerprinted(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _cofw_v5(tmp_path / "a/COFW_test_color.mat")
    _cofw_v73(tmp_path / "b/COFW_test_color.mat")
    a, b = COFW(path=tmp_path / "a").load("test"), COFW(path=tmp_path / "b").load("test")
    assert a.fingerprint() == b.fingerprint()  # same pixels and labels, whichever Matlab format
    a.images.images[0][0, 0, 0] ^= 1
    a2 = COFW(path=tmp_path / "a").load("test")
    a2.images.images[0][0, 0, 0] ^= 1
    assert a2.fingerprint() != b.fingerprint()


# -- AFLW-19 --------------------------------------------------------------------------------------------------
def test_aflw19_csv_and_box_normaliser(tmp_path):
    root = tmp_path / "aflw"
    rng = np.random.default_rng(3)
    pts = np.round(rng.uniform(10, 90, size=(2, 19, 2)), 4)
    header = "image_name,scale,box_size,center_w,center_h," + ",".join(
        f"original_{k}_{c}" for k in range(19) for c in "xy")
    lines = [header]
    for i, (name, size, cx, cy) in enumerate((("0/image00002.jpg", 64.0, 50.0, 52.0),
                                             ("3/image00035.jpg", 81.0, 40.5, 44.0))):
        lines.append(",".join([name, f"{size / 200}", f"{size}", f"{cx}", f"{cy}",
                               *(f"{v}" for v in pts[i].reshape(-1))]))
        _jpeg(root / "images" / name, 100 + i, 110)
    (root / "face_landmarks_aflw_test.csv").write_text("\n".join(lines) + "\n")
    (root / "face_landmarks_aflw_test_frontal.csv").write_text("\n".join(lines[:2]) + "\n")
    ds = AFLW19(path=root).load("test")
    assert ds.ids.tolist() == ["0/image00002.jpg", "3/image00035.jpg"]
    assert np.array_equal(ds.landmarks.points, pts) and ds.landmarks.scheme == "aflw19"
    boxes = ds.landmarks.boxes
    assert boxes.tolist()[0] == [18.0, 20.0, 82.0, 84.0]
    assert np.allclose(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])), [64.0, 81.0])
    assert ds.landmarks.image_sizes.tolist() == [[100, 110], [101, 110]]
    assert len(AFLW19(path=root).load("frontal")) == 1
    (root / "face_landmarks_aflw_test.csv").write_text(lines[0] + "\n" + lines[1].rsplit(",", 1)[0] + "\n")
    with pytest.raises(DataError, match=r"face_landmarks_aflw_test.csv:2: expected"):
        AFLW19(path=root).load("test")


def test_landmark_loaders_are_registered():
    for name, cls in (("mtfl", MTFL), ("300w", W300), ("wflw", WFLW), ("cofw29", COFW), ("aflw19", AFLW19)):
        assert DATASETS.get(name) is cls and cls.name == name


# -- the real MTFL release --------------------------------------------------------------------------------------
MTFL_TEST_COUNTS = {  # ../shared/data/mtfl/MANIFEST.txt, "Attributes, test"
    "gender": {"male": 1173, "female": 1822}, "smile": {"yes": 1632, "no": 1363},
    "glasses": {"yes": 241, "no": 2754},
    "pose": {"left_profile": 193, "left": 450, "frontal": 1825, "right": 401, "right_profile": 126},
}


@pytest.mark.realdata
def test_mtfl_real_test_split(shared_data):
    root = shared_data / "mtfl"
    if not (root / "testing.txt").exists():
        pytest.skip(f"{root} not present")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = MTFL(path=root).load("test")
    assert len(ds) == 2995 and ds.landmarks.points.shape == (2995, 5, 2)
    for attr, counts in MTFL_TEST_COUNTS.items():
        values, n = np.unique(ds.attributes[attr], return_counts=True)
        assert dict(zip(values.tolist(), n.tolist())) == counts
    assert (ds.landmarks.image_sizes == 150).all()
    x = ds.landmarks.points[:, :, 0]
    assert int((x[:, 0] < x[:, 1]).sum()) == 2991  # 4 upside-down faces (MANIFEST)
    pts = ds.landmarks.points
    assert (pts >= 0).all() and (pts <= 150).all()
    with pytest.raises(DatasetNotFoundError, match=r"10,000 of 10,000 train records have no image file"):
        MTFL(path=root).load("train")
    summary = MTFL(path=root).summary("train")
    assert summary["n"] == 10000 and "10,000 of 10,000 records have no image file" in summary["note"]
    assert {k: v for k, v in summary["counts"].items() if k.startswith("pose=")} == {  # MANIFEST, train
        "pose=left_profile": 136, "pose=left": 1113, "pose=frontal": 7445, "pose=right": 1111,
        "pose=right_profile": 195}
    assert summary["counts"]["gender=male"] == 5807 and summary["counts"]["glasses=yes"] == 1408
