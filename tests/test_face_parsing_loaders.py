"""LaPa and CelebAMask-HQ loaders on fixtures written in the releases' own layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.data.dataset import ParsingLabels
from facebench.data.parsing_sets import CELEBAM_ORDERS, LAPA_CLASSES, CelebAMaskHQ, LaPa, read_lapa_points
from facebench.errors import ConfigError, DataError, DatasetNotFoundError
from facebench.registry import DATASETS


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _jpg(path: Path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(path)


# -- LaPa --------------------------------------------------------------------------------------------------------
def _lapa(root: Path, split: str = "test", names=("10001", "10002")) -> dict:
    rng = np.random.default_rng(0)
    maps = {}
    for i, name in enumerate(names):
        h, w = 20 + i, 30
        _jpg(root / split / "images" / f"{name}.jpg", h, w)
        maps[name] = rng.integers(0, 11, size=(h, w), dtype=np.uint8)
        _png(root / split / "labels" / f"{name}.png", maps[name])
        pts = np.arange(212, dtype=float).reshape(106, 2) * 0.25 + i
        (root / split / "landmarks").mkdir(parents=True, exist_ok=True)
        (root / split / "landmarks" / f"{name}.txt").write_text(
            "106\n" + "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts))
    return maps


def test_lapa_native_layout(tmp_path):
    maps = _lapa(tmp_path)
    ds = LaPa(tmp_path).load("test")
    assert ds.name == "lapa" and ds.ids.tolist() == ["10001", "10002"] and ds.labels is None
    assert ds.parsing.classes == LAPA_CLASSES and len(ds.parsing) == 2
    for i, name in enumerate(ds.ids):
        np.testing.assert_array_equal(ds.parsing.read(i), maps[name])
        assert ds.images.load(i).shape == (20 + i, 30, 3)
    assert ds.parsing.points.shape == (2, 106, 2)
    np.testing.assert_allclose(ds.parsing.points[1, 104], [104 * 0.5 + 1, 104 * 0.5 + 0.25 + 1])
    assert LaPa(tmp_path).summary("test")["n"] == 2
    sub = ds.subset([1])
    np.testing.assert_array_equal(sub.parsing.read(0), maps["10002"])
    assert sub.parsing.points.shape == (1, 106, 2)
    # the fingerprint follows the label bytes
    before = ds.fingerprint()
    changed = maps["10001"].copy()
    changed[0, 0] = (changed[0, 0] + 1) % 11
    _png(tmp_path / "test" / "labels" / "10001.png", changed)
    assert LaPa(tmp_path).load("test").fingerprint() != before


def test_lapa_errors(tmp_path):
    _lapa(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="val"):
        LaPa(tmp_path).load("val")
    with pytest.raises(ConfigError, match="no split"):
        LaPa(tmp_path).load("dev")
    (tmp_path / "test" / "landmarks" / "10002.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="1 of 2 test label maps have no image"):
        LaPa(tmp_path).load("test")
    bad = tmp_path / "bad.txt"
    bad.write_text("68\n1 2\n")
    with pytest.raises(DataError, match="count 106"):
        read_lapa_points(bad)


# -- CelebAMask-HQ -----------------------------------------------------------------------------------------------
MAPPING = """idx         orig_idx    orig_file
0           119613      119614.jpg
1           99094       099095.jpg
2           200008      200009.jpg
2001        182000      182001.jpg
"""
PARTITION = "119614.jpg 0\n099095.jpg 0\n182001.jpg 2\n200009.jpg 2\n000001.jpg 0\n"


def _mask(box, rgb=False) -> np.ndarray:
    m = np.zeros((16, 16), np.uint8)
    r0, r1, c0, c1 = box
    m[r0:r1, c0:c1] = 255
    return np.repeat(m[:, :, None], 3, axis=2) if rgb else m


def _celebam(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text(MAPPING)
    (root / "list_eval_partition.txt").write_text(PARTITION)
    for i in (0, 1, 2, 2001):
        _jpg(root / "CelebA-HQ-img" / f"{i}.jpg", 32, 32)
    anno = root / "CelebAMask-HQ-mask-anno"
    # image 2 (folder 0): skin and neck overlap in rows 4..8; l_eye and eye_g overlap in columns 10..12
    _png(anno / "0" / "00002_skin.png", _mask((0, 8, 0, 16)))
    _png(anno / "0" / "00002_neck.png", _mask((4, 12, 0, 16), rgb=True))  # a 3-channel mask as some files are
    _png(anno / "0" / "00002_l_eye.png", _mask((0, 2, 8, 12)))
    _png(anno / "0" / "00002_eye_g.png", _mask((0, 2, 10, 14)))
    for i in (0, 1):
        _png(anno / "0" / f"{i:05d}_skin.png", _mask((2, 6, 2, 6)))
    # image 2001 (folder 1): hair only
    _png(anno / "1" / "02001_hair.png", _mask((0, 3, 0, 3)))


def test_celebamask_hq_split_and_merge_orders(tmp_path):
    _celebam(tmp_path)
    ds = CelebAMaskHQ(tmp_path).load("test")
    assert ds.ids.tolist() == ["2", "2001"]  # CelebA partition 2 through the mapping, sorted by HQ index
    assert CelebAMaskHQ(tmp_path).load("train").ids.tolist() == ["0", "1"]
    names = CELEBAM_ORDERS["faceptor"][1]
    assert ds.parsing.classes == names and len(names) == 19
    got = ds.parsing.read(0)
    want = np.zeros((16, 16), np.uint8)
    want[4:12, :] = names.index("neck")  # neck (id 1) is merged first...
    want[0:8, :] = names.index("face")  # ...skin (id 2) later overwrites it
    want[0:2, 8:12] = 8  # l_eye: the 8th suffix, id 8, which Faceptor's names call 're'
    assert names[8] == "re"
    want[0:2, 10:14] = names.index("glass")  # eye_g comes after l_eye
    np.testing.assert_array_equal(got, want)
    hair = ds.parsing.read(1)
    assert (hair[:3, :3] == names.index("hair")).all() and hair.sum() == 9 * names.index("hair")

    official = CelebAMaskHQ(tmp_path, order="official").load("test")
    onames = CELEBAM_ORDERS["official"][1]
    ogot = official.parsing.read(0)
    owant = np.zeros((16, 16), np.uint8)
    owant[0:8, :] = onames.index("skin")
    owant[0:2, 10:14] = onames.index("eye_g")
    owant[0:2, 8:12] = onames.index("l_eye")  # l_eye comes after eye_g in g_mask.py's order
    owant[4:12, :] = onames.index("neck")  # neck (17) after skin (1)
    np.testing.assert_array_equal(ogot, owant)
    assert official.fingerprint() != ds.fingerprint()
    assert CelebAMaskHQ(tmp_path).summary("test")["n"] == 2


def test_celebamask_hq_errors(tmp_path):
    _celebam(tmp_path)
    with pytest.raises(ConfigError, match="order"):
        CelebAMaskHQ(tmp_path, order="g_mask")
    (tmp_path / "CelebA-HQ-img" / "2001.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="1 of 2 test images are absent"):
        CelebAMaskHQ(tmp_path).load("test")
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="list_eval_partition"):
        CelebAMaskHQ(tmp_path).load("test")
    # CelebA's own partition file elsewhere
    (tmp_path / "Eval").mkdir()
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text(PARTITION)
    assert CelebAMaskHQ(tmp_path, partition_file="Eval/list_eval_partition.txt").load("train").ids.tolist() == \
        ["0", "1"]


def test_parsing_labels_checks(tmp_path):
    with pytest.raises(DataError, match="bad source"):
        ParsingLabels(("background", "a"), [((5, "x.png"),)])
    with pytest.raises(DataError, match="needs mask_size"):
        ParsingLabels(("background", "a"), [()])
    empty = ParsingLabels(("background", "a"), [()], mask_size=(3, 4))
    assert empty.read(0).shape == (3, 4) and not empty.read(0).any()
    _png(tmp_path / "f.png", np.zeros((2, 2, 4), np.uint8))  # RGBA: the first channel is read
    assert ParsingLabels(("background",), [((-1, str(tmp_path / "f.png")),)]).read(0).shape == (2, 2)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read the label map"):
        ParsingLabels(("background",), [((-1, str(tmp_path / "bad.png")),)]).read(0)


def test_registered():
    assert DATASETS.get("lapa") is LaPa and DATASETS.get("celebamask-hq") is CelebAMaskHQ


def test_lapa_tanh_warp_option(tmp_path):
    """``align: tanh_warp``: images warped into the S x S frame by the alignment of points 104, 105, 54, 84, 90
    (checked against the module's functions), a warp frame per sample that subsets with the split, its own
    fingerprint; bad options are ConfigErrors that name the choices."""
    from facebench.data import tanh_warp as tw
    from facebench.errors import ConfigError

    _lapa(tmp_path)
    plain = LaPa(tmp_path).load("test")
    ds = LaPa(tmp_path, align="tanh_warp", warp_size=64).load("test")
    assert plain.parsing.frame is None and ds.parsing.frame.size == 64 and len(ds.parsing.frame) == 2
    matrix = tw.lapa_align_matrix(plain.parsing.points[1], 64)
    np.testing.assert_allclose(ds.parsing.frame.matrices[1], matrix)
    want = tw.remap_bilinear(plain.images.load(1), tw.sampling_map(matrix, 64))
    np.testing.assert_array_equal(ds.images.load(1), np.clip(np.rint(want), 0, 255).astype(np.uint8))
    sub = ds.subset([1])
    np.testing.assert_allclose(sub.parsing.frame.matrices[0], matrix)
    np.testing.assert_array_equal(sub.images.load(0), ds.images.load(1))
    assert len({plain.fingerprint(), ds.fingerprint(), LaPa(tmp_path, align="tanh_warp").load("test").fingerprint()}) == 3
    assert ds.images.content_fingerprint() != plain.images.content_fingerprint()
    with pytest.raises(ConfigError, match="none, tanh_warp"):
        LaPa(tmp_path, align="affine")
    with pytest.raises(ConfigError, match="warp_size"):
        LaPa(tmp_path, align="tanh_warp", warp_size=8)


def test_warp_frame_brings_label_maps_back(tmp_path):
    """A label map drawn in the warped frame by sampling the truth there comes back to the truth (nearest
    neighbour both ways) at the pixels whose round trip lands inside the frame."""
    from facebench.data import tanh_warp as tw

    truth = np.zeros((40, 60), np.uint8)
    truth[10:30, 15:45] = 3
    truth[18:22, 25:35] = 7
    matrix = tw.face_align_matrix(np.array([[22.0, 15.0], [38.0, 15.0], [30.0, 22.0], [24.0, 30.0], [36.0, 30.0]]),
                                  96)
    frame = tw.WarpFrame(matrix[None], 96, 0.8)
    in_frame = tw.remap_nearest(truth, tw.sampling_map(matrix, 96, 0.8))
    back = frame.back_to_image(0, in_frame, truth.shape)
    assert np.mean(back[10:30, 15:45] == truth[10:30, 15:45]) > 0.95
    half = frame.back_to_image(0, in_frame[::2, ::2], truth.shape)  # a frame resized to 48: centres scaled
    assert np.mean(half[10:30, 15:45] == truth[10:30, 15:45]) > 0.85
    logits = np.stack([(in_frame == k).astype(float) for k in range(8)], axis=2)
    assert np.mean(frame.back_logits(0, logits, truth.shape).argmax(2)[10:30, 15:45] == truth[10:30, 15:45]) > 0.9
