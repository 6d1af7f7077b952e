"""Low-resolution face-recognition loaders (facebench.data.lrfr) on fixtures written in each release's layout:
XQLFW (xqlfw_pairs.txt in LFW's format, xqlfw_aligned_112/ or the original image folder), SCface (mugshots +
surveillance_cameras_distance_<d>/<camera>/), TinyFace (tinyface/Testing_Set/{Probe, Gallery_Match,
Gallery_Distractor}); broken layouts fail with the expected layout in the message."""

import numpy as np
import pytest
from PIL import Image

from facebench.data.lrfr import SCFACE_DISTANCES, SCface, TinyFace, XQLFW
from facebench.errors import ConfigError, DatasetNotFoundError
from facebench.registry import DATASETS


def _img(path, value=128, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


# -- XQLFW ------------------------------------------------------------------------------------------------
def _xqlfw(root, image_dir="xqlfw_aligned_112", folds=2, per=1):
    """xqlfw_pairs.txt with ``folds`` blocks of ``per`` genuine + ``per`` impostor lines, and its images."""
    lines = [f"{folds}\t{per}"]
    for k in range(folds):
        a, b = f"Person_{k}A", f"Person_{k}B"
        lines += [f"{a}\t1\t2", f"{a}\t1\t{b}\t1"]
        for name, i in ((a, 1), (a, 2), (b, 1)):
            _img(root / image_dir / name / f"{name}_{i:04d}.jpg", 40 * k + i)
    (root / "xqlfw_pairs.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("images, image_dir", [("aligned", "xqlfw_aligned_112"),
                                               ("original", "lfw_original_imgs_min_qual0.85variant11")])
def test_xqlfw_pairs_and_folds_as_in_the_release(tmp_path, images, image_dir):
    _xqlfw(tmp_path, image_dir)
    ds = XQLFW(tmp_path, images=images).load("test")
    p = ds.pairs
    assert p["same"].tolist() == [True, False, True, False] and p["fold"].tolist() == [1, 1, 2, 2]
    assert ds.ids[p["a"][1]] == "Person_0A/Person_0A_0001.jpg" and ds.ids[p["b"][1]] == "Person_0B/Person_0B_0001.jpg"
    assert ds.attributes["subject"].tolist().count("Person_1A") == 2 and len(ds) == 6
    assert ds.images.paths[0].startswith(str(tmp_path / image_dir))
    assert ds.content_tag["options"]["images"] == images
    assert XQLFW(tmp_path, images=images).summary("test")["counts"] == {"genuine pairs": 2, "impostor pairs": 2}
    assert len(XQLFW(tmp_path, images=images, folds=[2]).load("test").pairs["a"]) == 2


def test_xqlfw_broken_layouts_say_what_is_expected(tmp_path):
    _xqlfw(tmp_path, "lfw_original_imgs_min_qual0.85variant11")
    with pytest.raises(DatasetNotFoundError, match=r"xqlfw_aligned_112 does not exist[\s\S]*xqlfw_pairs.txt"):
        XQLFW(tmp_path).check("test")
    with pytest.raises(DatasetNotFoundError, match=r"images: original"):
        XQLFW(tmp_path).image_root()
    (tmp_path / "xqlfw_pairs.txt").write_text("2\t1\nPerson_0A\t1\n")
    with pytest.raises(DatasetNotFoundError, match="header says 2 x 2 x 1 = 4 pairs"):
        XQLFW(tmp_path, images="original").load("test")
    with pytest.raises(ConfigError, match="`images` must be one of 'aligned', 'original'"):
        XQLFW(tmp_path, images="both")
    (tmp_path / "xqlfw_pairs.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="xqlfw_pairs.txt does not exist"):
        XQLFW(tmp_path, images="original").load("test")


# -- SCface -----------------------------------------------------------------------------------------------
def _scface(root, subjects=(1, 2, 51, 52), cameras=(1, 2), missing_mugshot=()):
    for s in subjects:
        if s not in missing_mugshot:
            _img(root / "mugshot_frontal_cropped_all" / f"{s:03d}_frontal.JPG", s)
        for d in (1, 2, 3):
            for c in cameras:
                _img(root / f"surveillance_cameras_distance_{d}" / f"cam{c}" / f"{s:03d}_cam{c}_{d}.jpg", s + d + c)


def test_scface_gallery_probes_distances_cameras(tmp_path):
    _scface(tmp_path / "SCface_database")
    ds = SCface(tmp_path).load("test")  # the parent of SCface_database is accepted too
    roles, attrs = ds.attributes["role"], ds.attributes
    assert (roles == "gallery").sum() == 2 and (roles == "probe").sum() == 2 * 3 * 2
    assert sorted(set(attrs["subject"].tolist())) == ["051", "052"]
    gallery = np.flatnonzero(roles == "gallery")
    assert ds.ids[gallery].tolist() == ["mugshot_frontal_cropped_all/051_frontal.JPG",
                                        "mugshot_frontal_cropped_all/052_frontal.JPG"]
    assert set(attrs["distance"][gallery].tolist()) == {""} and set(attrs["camera"][gallery]) == {"mugshot"}
    i = ds.ids.tolist().index("surveillance_cameras_distance_3/cam2/052_cam2_3.jpg")
    assert (attrs["subject"][i], attrs["distance"][i], attrs["camera"][i], roles[i]) == ("052", "3", "cam2", "probe")
    assert len(SCface(tmp_path, distances=[1]).load("train")) == 2 + 2 * 2
    assert len(SCface(tmp_path / "SCface_database", cameras=[2]).load("all")) == 4 + 4 * 3
    assert SCface(tmp_path).summary("all")["counts"] == {"gallery": 4, "probe": 24}
    assert SCFACE_DISTANCES == {"1": 4.20, "2": 2.60, "3": 1.00}


def test_scface_broken_layouts_and_options(tmp_path):
    _scface(tmp_path, subjects=(51,), cameras=(1,))
    _img(tmp_path / "surveillance_cameras_distance_2" / "cam1" / "051_cam1_3.jpg")  # distance 3 in folder 2
    with pytest.raises(DatasetNotFoundError, match=r"named <id>_cam<c>_2\.<ext>[\s\S]*Expected layout"):
        SCface(tmp_path).load("test")
    (tmp_path / "surveillance_cameras_distance_2" / "cam1" / "051_cam1_3.jpg").unlink()
    _img(tmp_path / "mugshot_frontal_cropped_all" / "051_L1.JPG")
    with pytest.raises(DatasetNotFoundError, match="<id>_frontal"):
        SCface(tmp_path).load("test")
    (tmp_path / "mugshot_frontal_cropped_all" / "051_L1.JPG").unlink()
    for bad in ([4], [], [1, 1], "1", [True]):
        with pytest.raises(ConfigError, match="`distances` must be a list of distinct integers"):
            SCface(tmp_path, distances=bad)
    import shutil
    shutil.rmtree(tmp_path / "surveillance_cameras_distance_3")
    with pytest.raises(DatasetNotFoundError, match="surveillance_cameras_distance_3 does not exist"):
        SCface(tmp_path).load("test")
    assert len(SCface(tmp_path, distances=[1, 2]).load("test")) == 3


# -- TinyFace ---------------------------------------------------------------------------------------------
def _tinyface(base, distractor_subdirs=True):
    for name in ("1_1.jpg", "1_2.jpg", "7_1.jpg", "9_1.jpg"):
        _img(base / "Probe" / name)
    for name in ("1_3.jpg", "7_2.jpg", "7_3.jpg"):
        _img(base / "Gallery_Match" / name)
    for k in range(3):
        sub = f"group{k % 2}/" if distractor_subdirs else ""
        _img(base / "Gallery_Distractor" / f"{sub}distractor_{k}.jpg")


@pytest.mark.parametrize("where", ["tinyface/Testing_Set", "Testing_Set", "."])
def test_tinyface_probe_match_and_distractors(tmp_path, where):
    _tinyface(tmp_path / where)
    ds = TinyFace(tmp_path).load("test")
    roles, subjects = ds.attributes["role"], ds.attributes["subject"]
    assert ds.ids[roles == "probe"].tolist() == ["Probe/1_1.jpg", "Probe/1_2.jpg", "Probe/7_1.jpg", "Probe/9_1.jpg"]
    assert subjects[roles == "probe"].tolist() == ["1", "1", "7", "9"]
    assert subjects[roles == "gallery"].tolist() == ["1", "7", "7"]
    assert (roles == "distractor").sum() == 3 and set(subjects[roles == "distractor"].tolist()) == {""}
    assert "Gallery_Distractor/group1/distractor_1.jpg" in ds.ids.tolist()
    assert TinyFace(tmp_path).summary("test")["counts"] == {"probe": 4, "gallery": 3, "distractor": 3}
    without = TinyFace(tmp_path, distractors=False).load("test")
    assert len(without) == 7 and without.fingerprint() != ds.fingerprint()


def test_tinyface_broken_layouts(tmp_path):
    _tinyface(tmp_path / "tinyface" / "Testing_Set", distractor_subdirs=False)
    _img(tmp_path / "tinyface" / "Testing_Set" / "Gallery_Match" / "anon.jpg")
    with pytest.raises(DatasetNotFoundError, match=r"<identity>_<n>\.<ext> with an integer identity"):
        TinyFace(tmp_path).load("test")
    with pytest.raises(ConfigError, match="`distractors` must be true or false"):
        TinyFace(tmp_path, distractors="no")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"Testing_Set/Probe does not exist[\s\S]*Gallery_Distractor"):
        TinyFace(empty).load("test")


def test_registered_with_cards():
    for name, cls in (("xqlfw", XQLFW), ("scface", SCface), ("tinyface", TinyFace)):
        assert DATASETS.get(name) is cls and cls.name == name
        assert cls.__doc__.strip().splitlines()[0] == cls.description
        assert cls.layout and all(line.startswith("  ") for line in cls.layout.splitlines())
        assert cls.citation and cls.license and cls.how_to_get and cls.default_dirname
    assert "pairs" in XQLFW.capabilities and SCface.attribute_names >= {"subject", "role", "distance"}


def test_verification_protocol_runs_on_xqlfw_with_the_authors_evaluator(tmp_path):
    from facebench.protocols.base import EvalContext
    from facebench.protocols.verification import VerificationProtocol
    from facebench.records import Predictions

    _xqlfw(tmp_path, folds=4)
    ds = XQLFW(tmp_path).load("test")
    people = sorted(set(ds.attributes["subject"].tolist()))
    feats = np.eye(len(people))[[people.index(s) for s in ds.attributes["subject"]]]  # one direction per person
    res = VerificationProtocol(flip=False, far_targets=[0.5]).evaluate(
        EvalContext(ds, Predictions(ds.ids, {"features": feats}), None, (), n_resamples=0))
    m = {r.metric: r for r in res.records}
    assert m["accuracy[10fold,xqlfw]"].value == 1.0 and m["accuracy[10fold,xqlfw]"].conventions["fold_ids"] == \
        [1, 2, 3, 4]
    assert "arange(0, 2, 0.001)" in m["accuracy[10fold,xqlfw]"].conventions["rule"]
    assert m["accuracy[10fold,insightface]"].value == 1.0 and m["folds_evaluated"].value == 4


@pytest.mark.parametrize("name, split, expect", [
    ("xqlfw", "test", {"genuine pairs": 3000, "impostor pairs": 3000}),  # the published protocol
    ("scface", "all", {"gallery": 130}),  # one mugshot per subject
    ("tinyface", "test", {}),
])
def test_real_release_when_present(shared_data, name, split, expect):
    root = shared_data / name
    if not root.exists():
        pytest.skip(f"{name} is not in {shared_data}; put its release there (see its layout) to check the counts")
    counts = DATASETS.get(name)(root).summary(split)["counts"]
    assert all(counts[k] == v for k, v in expect.items()), counts
    assert sum(counts.values()) > 0
