"""Native dataset loaders on small fixtures written in each dataset's exact layout, quirks included."""

import warnings

import numpy as np
import pytest
from PIL import Image

from facebench.data.affectnet import AffectNet
from facebench.data.check import NATIVE_DATASETS, check_datasets, format_report
from facebench.data.ckplus import CKPlus, CKPlus48
from facebench.data.expw import ExpW
from facebench.data.fer2013 import FER2013, FER2013Images, FERPlus, ferplus_labels
from facebench.data.jaffe import JAFFE, parse_jaffe_name
from facebench.data.rafdb import COMPOUND_CLASSES, RAFDB, RAFDBCompound
from facebench.data.sfew import SFEW
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError, DatasetNotFoundError
from facebench.registry import DATASETS


def _img(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, format=fmt)


def _grey(path, value, size=(8, 8), fmt=None):
    _img(path, np.full(size, value, np.uint8), fmt)


# -- FER2013 CSV ----------------------------------------------------------------------------------
def _fer_pixels(row):
    px = np.full(48 * 48, row % 256, dtype=np.int64)
    px[48] = 200  # image row 1, column 0
    px[47] = 3  # image row 0, last column
    return " ".join(map(str, px))


def _write_fer2013(path, usages, header="emotion,pixels,Usage"):
    lines = [header] + [f"{r % 7},{_fer_pixels(r)},{u}" for r, u in enumerate(usages)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_fer2013_csv_splits_ids_and_decoded_pixels(tmp_path):
    usages = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 3
    _write_fer2013(tmp_path / "fer2013" / "fer2013.csv", usages)
    loader = FER2013(data_root=tmp_path)
    train, val, test = loader.load("train"), loader.load("val"), loader.load("test")
    assert (len(train), len(val), len(test)) == (6, 2, 3)
    assert test.ids.tolist() == ["fer2013-00008", "fer2013-00009", "fer2013-00010"]
    assert train.classes == LABEL_ORDERS["fer2013"]
    # emotion = row % 7 in FER2013 order: row 8 -> 1 disgust, row 10 -> 3 happy
    assert test.labels.tolist() == ["disgust", "fear", "happiness"]
    image = test.images.load(2)
    assert image.shape == (48, 48, 1) and image.dtype == np.uint8
    assert image[0, 0, 0] == 10 and image[1, 0, 0] == 200 and image[0, 47, 0] == 3
    assert test.attributes["usage"].tolist() == ["PrivateTest"] * 3
    val_counts = dict(zip(LABEL_ORDERS["fer2013"], [1, 0, 0, 0, 0, 0, 1]))  # rows 6, 7: emotion 6 and 0
    assert loader.summary("val") == {"n": 2, "counts": val_counts, "rows": 2}
    assert train.fingerprint() == FER2013(data_root=tmp_path).load("train").fingerprint()


def test_fer2013_csv_file_option_spaced_header_and_truncation(tmp_path):
    # Kaggle's icml_face_data.csv variant: columns in another order, names with a leading space
    rows = [f"{r % 7}, Training, {_fer_pixels(r)}" for r in range(2)]
    (tmp_path / "icml_face_data.csv").write_text("emotion, Usage, pixels\n" + "\n".join(rows) + "\n")
    ds = FER2013(path=tmp_path, file="icml_face_data.csv").load("train")
    assert len(ds) == 2 and ds.images.load(1)[0, 0, 0] == 1
    with pytest.raises(DatasetNotFoundError, match="no PrivateTest rows"):
        FER2013(path=tmp_path / "icml_face_data.csv").load("test")
    # a truncated last row is named by its line number
    text = (tmp_path / "icml_face_data.csv").read_text().rstrip("\n")
    (tmp_path / "cut.csv").write_text(text.rsplit(" ", 100)[0] + "\n")
    with pytest.raises(ConfigError, match=r"line 3: 2204 pixel values, expected 2304"):
        FER2013(path=tmp_path, file="cut.csv").load("train")
    with pytest.raises(DatasetNotFoundError, match="Expected layout"):
        FER2013(path=tmp_path, file="nope.csv").check("train")
    with pytest.raises(ConfigError, match="no split 'valid'"):
        FER2013(path=tmp_path).check("valid")


# -- FER2013 image folders ------------------------------------------------------------------------
def test_fer2013_images_split_by_prefix(tmp_path):
    for cls, names in {"angry": ["Training_1.jpg", "Training_2.jpg"], "happy": ["Training_3.jpg"]}.items():
        for n in names:
            _grey(tmp_path / "train" / cls / n, 10, (48, 48), "JPEG")
    for cls, names in {"angry": ["PublicTest_4.jpg", "PrivateTest_5.jpg"],
                       "surprise": ["PrivateTest_6.jpg", "PrivateTest_7.jpg"], "disgust": ["PublicTest_8.jpg"]}.items():
        for n in names:
            _grey(tmp_path / "test" / cls / n, 10, (48, 48), "JPEG")
    _grey(tmp_path / "train" / "happy" / "Training_3.jpg0.jpg", 10, (48, 48), "JPEG")  # augmented copy: skipped
    loader = FER2013Images(path=tmp_path)
    train, val, test = loader.load("train"), loader.load("val"), loader.load("test")
    assert (len(train), len(val), len(test)) == (3, 2, 3)
    assert test.ids.tolist() == ["angry/PrivateTest_5.jpg", "surprise/PrivateTest_6.jpg", "surprise/PrivateTest_7.jpg"]
    assert test.labels.tolist() == ["anger", "surprise", "surprise"]
    assert set(val.attributes["usage"]) == {"PublicTest"}
    assert train.classes == LABEL_ORDERS["fer2013"]
    assert loader.summary("val")["counts"]["disgust"] == 1
    assert any("augmented" in s for s in loader.skipped)
    assert test.images.load(0).shape == (48, 48, 1)
    merged = FER2013Images(path=tmp_path, merge_test=True)
    assert merged.splits == ("train", "test") and len(merged.load("test")) == 5
    _grey(tmp_path / "test" / "fear" / "im0.jpg", 1, (48, 48), "JPEG")
    with pytest.raises(DatasetNotFoundError, match="merge_test: true"):
        FER2013Images(path=tmp_path).load("test")
    with pytest.raises(DatasetNotFoundError, match="train does not exist"):
        FER2013Images(path=tmp_path / "none").check("train")


# -- FERPlus -------------------------------------------------------------------------------------
N_PLUS = 70
USAGE_PLUS = ["Training"] * 64 + ["PublicTest"] * 3 + ["PrivateTest"] * 3
SPECIAL_VOTES = {
    10: [4, 4, 2, 0, 0, 0, 0, 0, 0, 0],  # tie neutral/happiness
    11: [0, 4, 0, 0, 0, 0, 2, 0, 4, 0],  # unknown tied with the best emotion
    12: [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
    14: [4, 3, 3, 0, 0, 0, 0, 0, 0, 0],  # plurality neutral; no majority (4 of 10)
    15: [4, 3, 1, 1, 1, 0, 0, 0, 0, 0],  # majority after dropping single votes (4 of 7)
    59: [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # the real file's NF row without a name, after which names shift
}


def _ferplus_name(row):
    if row == 59:
        return ""
    if row == 62:
        return "fer0000060.png"  # a name used twice (as in the real file)
    return f"fer{row if row < 59 else row - 1:07d}.png"


def _ferplus_votes(row):
    if row in SPECIAL_VOTES:
        return SPECIAL_VOTES[row]
    votes = [0] * 10
    votes[row % 8] = 8
    votes[(row + 1) % 8] = 2
    return votes


def _write_ferplus(root, n=N_PLUS, usages=USAGE_PLUS):
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    lines = [header] + [f"{usages[r]},{_ferplus_name(r)},{','.join(map(str, _ferplus_votes(r)))}" for r in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")


def test_ferplus_joins_by_row_position_not_by_name(tmp_path):
    _write_ferplus(tmp_path / "ferplus")
    _write_fer2013(tmp_path / "fer2013" / "fer2013.csv", USAGE_PLUS)
    loader = FERPlus(data_root=tmp_path)
    ds = loader.load("train")
    rows = [int(i.split("-")[1]) for i in ds.ids]
    assert 10 not in rows and 11 not in rows and 12 not in rows and 59 not in rows
    for i, row in enumerate(rows):  # every image holds the pixels of its own fer2013.csv row
        assert ds.images.load(i)[0, 0, 0] == row
    i63 = ds.ids.tolist().index("ferplus-00063")
    assert ds.attributes["image_name"][i63] == "fer0000062.png"  # the name points one row too early
    assert ds.images.load(i63)[0, 0, 0] == 63  # joined by name this would be 62
    assert ds.labels[i63] == LABEL_ORDERS["ferplus"][63 % 8]
    assert ds.classes == LABEL_ORDERS["ferplus"] and len(ds.classes) == 8
    test = loader.load("test")
    assert test.ids.tolist() == ["ferplus-00067", "ferplus-00068", "ferplus-00069"]
    assert set(test.attributes["usage"]) == {"PrivateTest"}


def test_ferplus_vote_rules_and_options(tmp_path):
    votes = np.array([_ferplus_votes(r) for r in range(N_PLUS)])
    plurality = ferplus_labels(votes)
    assert plurality[10] == -1 and plurality[11] == -1 and plurality[12] == -1 and plurality[14] == 0
    assert ferplus_labels(votes, ties="first")[10] == 0  # first in FER+ order: neutral
    majority = ferplus_labels(votes, vote="majority")
    assert majority[14] == -1 and majority[15] == 0 and majority[11] == -1 and majority[20] == 20 % 8
    _write_ferplus(tmp_path / "ferplus")
    base = dict(path=tmp_path / "ferplus", images="none")
    counts8 = FERPlus(**base).summary("train")
    counts7 = FERPlus(**base, classes=7).summary("train")
    assert counts8["rows"] == 64 and "contempt" in counts8["counts"] and "contempt" not in counts7["counts"]
    assert counts7["n"] == counts8["n"] - counts8["counts"]["contempt"]
    ds7 = FERPlus(**base, classes="7").load("train")
    assert ds7.classes == LABEL_ORDERS["ferplus"][:7] and "contempt" not in set(ds7.labels)
    assert len(FERPlus(**base, ties="first").load("train")) == len(FERPlus(**base).load("train")) + 1
    assert FERPlus(**base).load("train").fingerprint() != ds7.fingerprint()
    with pytest.raises(ConfigError, match="`classes` must be one of 8, 7"):
        FERPlus(**base, classes=6)
    with pytest.raises(ConfigError, match="`vote`"):
        FERPlus(**base, vote="mean")


def test_ferplus_labels_only_partial_and_misaligned_pixels(tmp_path):
    _write_ferplus(tmp_path / "ferplus")
    ds = FERPlus(path=tmp_path / "ferplus", images="none").load("val")
    assert len(ds) == 3 and ds.images.describe().endswith("(labels only)")
    with pytest.raises(DatasetNotFoundError, match="images: none"):
        ds.images.load(0)
    with pytest.raises(DatasetNotFoundError, match="fer2013.csv does not exist"):  # pixels expected by default
        FERPlus(path=tmp_path / "ferplus").check("train")
    _write_fer2013(tmp_path / "short.csv", USAGE_PLUS[:30])
    partial = dict(path=tmp_path / "ferplus", fer2013_csv=tmp_path / "short.csv")
    with pytest.raises(DatasetNotFoundError, match="allow_partial: true"):
        FERPlus(**partial).load("train")
    ds = FERPlus(**partial, allow_partial=True).load("train")
    assert max(int(i.split("-")[1]) for i in ds.ids) == 29
    with pytest.raises(DatasetNotFoundError, match="no PrivateTest rows"):
        FERPlus(**partial, allow_partial=True).load("test")
    _write_fer2013(tmp_path / "other.csv", ["Training"] * 60 + ["PublicTest"] * 10)
    with pytest.raises(DatasetNotFoundError, match="row 60 is PublicTest"):
        FERPlus(path=tmp_path / "ferplus", fer2013_csv=tmp_path / "other.csv").load("train")


def test_ferplus_generated_image_folders(tmp_path):
    root = tmp_path / "ferplus"
    _write_ferplus(root)
    for r in range(N_PLUS):  # as generate_training_data.py writes them: each named row, in order
        name = _ferplus_name(r)
        if name:
            folder = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
            _grey(root / "data" / folder[USAGE_PLUS[r]] / name, r, (48, 48), "PNG")
    ds = FERPlus(path=root, images="folders").load("train")
    ids = ds.ids.tolist()
    assert "ferplus-00061" not in ids  # its name was reused by row 62, whose pixels overwrote the file
    assert ds.images.load(ids.index("ferplus-00062"))[0, 0, 0] == 62
    assert ds.images.load(ids.index("ferplus-00063"))[0, 0, 0] == 63


# -- RAF-DB --------------------------------------------------------------------------------------
def _write_raf(root, lines):
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")


def test_rafdb_one_based_labels_and_image_paths(tmp_path):
    _write_raf(tmp_path, ["train_00001.jpg 5", "train_00002.jpg 1", "train_00003.jpg 7", "test_0001.jpg 4",
                          "test_0002.jpg 6"])
    loader = RAFDB(path=tmp_path)
    assert loader.summary("test") == {"n": 2, "counts": {"surprise": 0, "fear": 0, "disgust": 0, "happiness": 1,
                                                         "sadness": 0, "anger": 1, "neutral": 0}, "rows": 2}
    with pytest.raises(DatasetNotFoundError, match=r"Image[/\\]aligned does not exist"):
        loader.check("train")  # labels without images: reported before any model loads
    for stem, value in (("train_00001", 1), ("train_00002", 2), ("train_00003", 3), ("test_0001", 4),
                        ("test_0002", 5)):
        _grey(tmp_path / "Image" / "aligned" / f"{stem}_aligned.jpg", value * 40, (100, 100), "PNG")
    train = RAFDB(path=tmp_path).load("train")
    assert train.ids.tolist() == ["train_00001", "train_00002", "train_00003"]
    assert train.labels.tolist() == ["sadness", "surprise", "neutral"]  # 5, 1, 7 are 1-based
    assert train.classes == LABEL_ORDERS["rafdb"]
    assert train.images.load(1)[0, 0, 0] == 80
    original = RAFDB(path=tmp_path, aligned=False)
    with pytest.raises(DatasetNotFoundError, match="original"):
        original.check("test")
    (tmp_path / "Image" / "original").mkdir()
    assert original.load("test").images.paths[0].endswith("original/test_0001.jpg")


def test_rafdb_label_errors_and_manual_attributes(tmp_path):
    _write_raf(tmp_path, ["train_00001.jpg 0"])
    with pytest.raises(ConfigError, match="1-based"):
        RAFDB(path=tmp_path).summary("train")
    _write_raf(tmp_path, ["train_00001.jpg 2", "test_0001.jpg 3"])
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    manual = tmp_path / "Annotation" / "manual"
    manual.mkdir(parents=True)
    landmarks = "\n".join(["30.1\t40.2"] * 5)
    (manual / "train_00001_manu_attri.txt").write_text(landmarks + "\n1\n2\n3\n")
    ds = RAFDB(path=tmp_path, manual_attributes=True).load("train")
    assert {k: v.tolist() for k, v in ds.attributes.items()} == {"gender": ["female"], "race": ["asian"],
                                                                 "age": ["40-69"]}
    with pytest.raises(DatasetNotFoundError, match="test_0001_manu_attri.txt"):
        RAFDB(path=tmp_path, manual_attributes=True).load("test")


def test_rafdb_compound_classes(tmp_path):
    _write_raf(tmp_path, ["train_0001.jpg 1", "train_0002.jpg 11", "test_0001.jpg 6"])
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    ds = RAFDBCompound(path=tmp_path).load("train")
    assert ds.classes == COMPOUND_CLASSES and len(ds.classes) == 11
    assert ds.labels.tolist() == ["happily_surprised", "disgustedly_surprised"]
    assert RAFDBCompound(path=tmp_path).load("test").labels.tolist() == ["sadly_disgusted"]
    _write_raf(tmp_path, ["train_0001.jpg 12"])
    with pytest.raises(ConfigError, match=r"outside 1\.\.11"):
        RAFDBCompound(path=tmp_path).load("train")


# -- AffectNet -----------------------------------------------------------------------------------
AFFECT_HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def _affect_row(name, expression, box=(5, 2, 6, 8), valence="0.5"):
    return f'{name},{box[0]},{box[1]},{box[2]},{box[3]},"1.0;2.0;3.0;4.0",{expression},{valence},-0.25'


def test_affectnet_boxes_excluded_ids_and_headerless_validation(tmp_path):
    array = np.zeros((20, 30, 3), np.uint8)
    array[2:10, 5:11] = 200
    for name in ("1/a.png", "1/b.png", "2/c.png", "2/d.png", "3/e.png", "3/f.png", "4/g.png"):
        _img(tmp_path / "Manually_Annotated_Images" / name, array, "PNG")
    rows = [_affect_row("1/a.png", 0), _affect_row("1/b.png", 7), _affect_row("2/c.png", 8),
            _affect_row("2/d.png", 9), _affect_row("3/e.png", 10), _affect_row("3/f.png", 6),
            _affect_row("4/g.png", 1, box=("", "", "", ""))]
    (tmp_path / "training.csv").write_text(AFFECT_HEADER + "\n" + "\n".join(rows) + "\n")
    (tmp_path / "validation.csv").write_text("\n".join([_affect_row("1/a.png", 3), _affect_row("1/b.png", 5)]) + "\n")
    loader = AffectNet(path=tmp_path)
    train = loader.load("train")
    assert train.ids.tolist() == ["1/a.png", "1/b.png", "3/f.png", "4/g.png"]  # 8, 9, 10 excluded
    assert train.labels.tolist() == ["neutral", "contempt", "anger", "happiness"]
    assert train.classes == LABEL_ORDERS["affectnet"]
    face = train.images.load(0)
    assert face.shape == (8, 6, 3) and (face == 200).all()  # box = face_x, face_y, width, height
    assert train.images.load(3).shape == (20, 30, 3)  # no box: the whole image
    assert train.attributes["valence"].tolist() == [0.5] * 4
    assert loader.summary("train")["rows"] == 7
    seven = AffectNet(path=tmp_path, classes=7).load("train")
    assert "contempt" not in seven.classes and seven.ids.tolist() == ["1/a.png", "3/f.png", "4/g.png"]
    val = loader.load("test")  # alias: AffectNet has no public test set
    assert val.split == "val" and val.labels.tolist() == ["surprise", "disgust"]
    assert val.fingerprint() == loader.load("val").fingerprint()
    assert AffectNet(path=tmp_path, crop=False).load("val").images.load(0).shape == (20, 30, 3)
    with pytest.raises(ConfigError):
        AffectNet(path=tmp_path, classes=11)


# -- CK+ -----------------------------------------------------------------------------------------
def _write_ck_sequence(root, subject, seq, n_frames, label):
    for f in range(1, n_frames + 1):
        _grey(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png", f, (10, 12), "PNG")
    if label is not None:
        folder = root / "Emotion" / subject / seq
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{subject}_{seq}_{n_frames:08d}_emotion.txt").write_text(f"   {float(label):.7e}\n")


def test_ckplus_native_sequences_peak_frames_neutral_and_folds(tmp_path):
    subjects = [f"S{i:03d}" for i in range(1, 13)]
    for i, subject in enumerate(subjects):
        _write_ck_sequence(tmp_path, subject, "001", 5, 1 + i % 7)
    _write_ck_sequence(tmp_path, "S005", "002", 4, None)  # an unlabelled sequence: not used
    (tmp_path / "Emotion" / "S005" / "002").mkdir(parents=True)
    ds = CKPlus(path=tmp_path).load("all")
    assert len(ds) == 12 and ds.ids[0] == "S001_001_00000005"
    assert ds.labels[:3].tolist() == ["anger", "contempt", "disgust"]  # 1, 2, 3 in CK+ coding
    assert (tmp_path / "Emotion" / "S001" / "001" / "S001_001_00000005_emotion.txt").read_text() == "   1.0000000e+00\n"
    assert ds.classes == LABEL_ORDERS["ckplus"][1:]
    assert ds.images.load(0)[0, 0, 0] == 5  # the peak (last, labelled) frame
    assert ds.attributes["subject"][:2].tolist() == ["S001", "S002"]
    folds = dict(zip(ds.attributes["subject"].tolist(), ds.attributes["fold"].tolist()))
    assert folds["S001"] == 0 and folds["S010"] == 9 and folds["S011"] == 0 and folds["S012"] == 1
    three = CKPlus(path=tmp_path, peak_frames=3, neutral_first_frame=True).load("all")
    s1 = [i for i in three.ids.tolist() if i.startswith("S001_")]
    assert s1 == ["S001_001_00000003", "S001_001_00000004", "S001_001_00000005", "S001_001_00000001"]
    assert three.labels[three.ids.tolist().index("S001_001_00000001")] == "neutral"
    assert three.classes[0] == "neutral" and len(three) == 48
    assert len(set(three.attributes["fold"][three.attributes["subject"] == "S003"])) == 1  # subject-disjoint
    no_contempt = CKPlus(path=tmp_path, contempt=False).load("all")
    assert "contempt" not in no_contempt.classes and len(no_contempt) == 10
    assert CKPlus(path=tmp_path).summary("all")["counts"]["anger"] == 2
    (tmp_path / "Emotion" / "S001" / "001" / "S001_001_00000005_emotion.txt").write_text("   9.0000000e+00\n")
    with pytest.raises(ConfigError, match="not an integer 0..7"):
        CKPlus(path=tmp_path).load("all")
    with pytest.raises(ConfigError, match="peak_frames"):
        CKPlus(path=tmp_path, peak_frames=0)


def test_ckplus_one_frame_sequence_keeps_its_peak(tmp_path):
    _write_ck_sequence(tmp_path, "S020", "001", 1, 7)
    ds = CKPlus(path=tmp_path, peak_frames=2, neutral_first_frame=True).load("all")
    assert ds.ids.tolist() == ["S020_001_00000001"] and ds.labels.tolist() == ["surprise"]


def test_ckplus48_subjects_from_names(tmp_path):
    for cls, names in {"anger": ["S010_004_00000017.png", "S010_004_00000018.png"],
                       "happy": ["S011_006_00000013.png"], "contempt": ["S138_008_00000007.png"]}.items():
        for n in names:
            _grey(tmp_path / "CK+48" / cls / n, 1, (48, 48), "PNG")
    ds = CKPlus48(path=tmp_path / "CK+48").load("all")
    assert ds.labels.tolist() == ["anger", "anger", "contempt", "happiness"]
    assert ds.attributes["subject"].tolist() == ["S010", "S010", "S138", "S011"]
    assert ds.attributes["sequence"][0] == "S010_004"
    assert ds.classes == LABEL_ORDERS["ckplus"][1:]
    _grey(tmp_path / "CK+48" / "anger" / "img1.png", 1, (48, 48), "PNG")
    with pytest.raises(DatasetNotFoundError, match="S010_004_00000017.png"):
        CKPlus48(path=tmp_path / "CK+48").load("all")


# -- JAFFE ---------------------------------------------------------------------------------------
def test_jaffe_names_extensions_and_skips(tmp_path):
    root = tmp_path / "jaffe"
    for name in ("KA.AN1.39.tiff", "KA.HA2.40.TIF", "KL.SU3.16..tiff", "KM.NE1.5.tiff.tiff", "YM.DI1.60.tif",
                 "NA.FE2.203.tiff", "UY.SA3.143.tiff", "broken.tiff", "KA.XX1.2.tiff"):
        _grey(root / name, 7, (16, 16), "TIFF")
    (root / "README").write_text("jaffe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = JAFFE(path=root)
        ds = loader.load("all")
    assert any("skipped 2" in str(w.message) for w in caught)
    assert sorted(loader.skipped) == ["KA.XX1.2.tiff", "broken.tiff"]
    by_id = dict(zip(ds.ids.tolist(), ds.labels.tolist()))
    assert by_id == {"KA.AN1.39.tiff": "anger", "KA.HA2.40.TIF": "happiness", "KL.SU3.16..tiff": "surprise",
                     "KM.NE1.5.tiff.tiff": "neutral", "NA.FE2.203.tiff": "fear", "UY.SA3.143.tiff": "sadness",
                     "YM.DI1.60.tif": "disgust"}
    assert ds.attributes["subject"].tolist() == ["KA", "KA", "KL", "KM", "NA", "UY", "YM"]
    assert ds.classes == LABEL_ORDERS["jaffe"]
    assert ds.images.load(0).shape == (16, 16, 1)
    assert parse_jaffe_name("KA.AN1.39.tiff") == ("KA", "anger", "39")
    assert parse_jaffe_name("KA.AN1.39.png") is None


# -- SFEW ----------------------------------------------------------------------------------------
def test_sfew_class_folders(tmp_path):
    _grey(tmp_path / "Train" / "Angry" / "a_001.png", 1, fmt="PNG")
    _grey(tmp_path / "Train" / "happy" / "b_002.png", 2, fmt="PNG")
    _grey(tmp_path / "Train" / "Neutral" / "c_003.png", 3, fmt="PNG")
    _grey(tmp_path / "Val" / "Sad" / "d_004.png", 4, fmt="PNG")
    train = SFEW(path=tmp_path).load("train")
    assert train.labels.tolist() == ["anger", "neutral", "happiness"]
    assert train.ids.tolist() == ["Angry/a_001.png", "Neutral/c_003.png", "happy/b_002.png"]
    assert train.classes == LABEL_ORDERS["sfew"]
    assert SFEW(path=tmp_path).load("val").labels.tolist() == ["sadness"]
    aligned = SFEW(path=tmp_path, split_dirs={"val": "Val_Aligned_Faces"})
    with pytest.raises(DatasetNotFoundError, match="Val_Aligned_Faces"):
        aligned.check("val")
    with pytest.raises(ConfigError, match="no split 'test'"):
        SFEW(path=tmp_path).check("test")


# -- ExpW ----------------------------------------------------------------------------------------
def test_expw_boxes_and_face_ids(tmp_path):
    array = np.zeros((30, 40, 3), np.uint8)
    array[2:10, 5:11] = 100  # face 0: top 2, left 5, right 11, bottom 10
    array[20:28, 20:30] = 250  # face 1
    _img(tmp_path / "image" / "origin" / "afraid_african_214.jpg", array, "PNG")
    _img(tmp_path / "image" / "origin" / "angry_actor_104.jpg", array, "PNG")
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "label.lst").write_text(
        "afraid_african_214.jpg 0 2 5 11 10 79.5 3\n"
        "afraid_african_214.jpg 1 20 20 30 28 12.25 6\n"
        "angry_actor_104.jpg 0 20 20 30 28 55.0 0\n")
    ds = ExpW(path=tmp_path).load("all")
    assert ds.ids.tolist() == ["afraid_african_214.jpg#0", "afraid_african_214.jpg#1", "angry_actor_104.jpg#0"]
    assert ds.labels.tolist() == ["happiness", "neutral", "anger"]
    face0, face1 = ds.images.load(0), ds.images.load(1)
    assert face0.shape == (8, 6, 3) and (face0 == 100).all()
    assert face1.shape == (8, 10, 3) and (face1 == 250).all()
    assert ds.attributes["confidence"].tolist() == [79.5, 12.25, 55.0]
    assert len(ExpW(path=tmp_path, min_confidence=50).load("all")) == 2
    assert ExpW(path=tmp_path, crop=False).load("all").images.load(0).shape == (30, 40, 3)
    (tmp_path / "label" / "label.lst").write_text("afraid_african_214.jpg 0 2 5 11 10 79.5\n")
    with pytest.raises(ConfigError, match="line 1"):
        ExpW(path=tmp_path).load("all")


# -- data check and registry -----------------------------------------------------------------------
def test_check_datasets_reports_counts_and_what_is_missing(tmp_path):
    _write_raf(tmp_path / "rafdb", ["train_00001.jpg 4", "train_00002.jpg 4", "test_0001.jpg 7"])
    _grey(tmp_path / "sfew" / "Train" / "Happy" / "a.png", 1, fmt="PNG")
    _grey(tmp_path / "sfew" / "Val" / "Sad" / "b.png", 1, fmt="PNG")
    rows = {r["name"]: r for r in check_datasets(["rafdb", "sfew", "jaffe"], data_root=tmp_path)}
    raf = rows["rafdb"]
    assert raf["status"] == "labels only" and not raf["found"]
    assert raf["splits"][0]["n"] == 2 and raf["splits"][0]["counts"]["happiness"] == 2
    assert any(p.endswith("aligned") for p in raf["missing_paths"])
    assert rows["sfew"]["status"] == "ok" and rows["sfew"]["found"]
    assert rows["jaffe"]["status"] == "missing" and rows["jaffe"]["missing_paths"] == [str(tmp_path / "jaffe")]
    text = format_report(list(rows.values()))
    assert "Image/aligned" in text.replace("\\", "/") and "expected layout" in text and "KA.AN1.39" in text
    nowhere = check_datasets("expw")[0]
    assert nowhere["status"] == "missing" and "--data-root" in nowhere["problem"]


def test_check_decodes_images_and_flags_broken_ones(tmp_path):
    """Label side present but image files that do not decode: not "ok" (the issue: "data check says ok when the
    label files exist but the images do not"); every image checked with ``full``, a sample otherwise."""
    from facebench.data import check as chk

    for i in range(30):
        _grey(tmp_path / "sfew" / "Train" / "Happy" / f"a{i:02d}.png", i, fmt="PNG")
    _grey(tmp_path / "sfew" / "Val" / "Sad" / "b.png", 1, fmt="PNG")
    row = check_datasets(["sfew"], data_root=tmp_path)[0]
    assert row["status"] == "ok" and row["splits"][0]["images"] == {"checked": 20, "bad": 0, "first": None}
    assert "images: 20 sampled decode" in format_report([row])
    (tmp_path / "sfew" / "Train" / "Happy" / "a00.png").write_bytes(b"not a png")  # sampled (the first)
    (tmp_path / "sfew" / "Val" / "Sad" / "b.png").write_bytes(b"")
    row = check_datasets(["sfew"], data_root=tmp_path)[0]
    train, val = row["splits"]
    assert not train["found"] and train["images"]["bad"] == 1 and "Happy/a00.png" in train["problem"]
    assert "1 of 20 sampled" in train["problem"] and row["status"] == "images missing"
    assert not val["found"] and "1 of 1 sampled" in val["problem"]
    (tmp_path / "sfew" / "Train" / "Happy" / "a01.png").write_bytes(b"broken")  # not among the 20 sampled
    sampled = chk.image_check(DATASETS.get("sfew")(data_root=tmp_path), "train")
    assert sampled["checked"] == 20 and sampled["bad"] == 1
    full = check_datasets(["sfew"], data_root=tmp_path, full=True)[0]["splits"][0]
    assert full["images"]["checked"] == 30 and full["images"]["bad"] == 2 and "2 of 30 all" in full["problem"]


def test_native_loaders_are_builtin_with_matching_cards():
    builtin = {e.name: e for e in DATASETS.entries() if e.source == "builtin"}
    for name in NATIVE_DATASETS:
        cls = DATASETS.get(name)
        assert name in builtin and cls.name == name
        assert cls.__doc__.strip().splitlines()[0] == cls.description == builtin[name].description
        assert "\n" not in cls.description
        assert cls.layout and all(line.startswith("  ") for line in cls.layout.splitlines())
        assert cls.citation and cls.license and cls.how_to_get and cls.default_dirname and cls.splits
