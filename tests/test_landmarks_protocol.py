"""The landmarks protocol end to end on a small fixture (values checked against hand-worked numbers) and,
when the MTFL test set is present, on a subset of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from facebench.data.dataset import Dataset, LandmarkLabels
from facebench.data.images import ArrayImages
from facebench.data.landmark_schemes import SCHEMES
from facebench.errors import ConfigError, MetricInputError
from facebench.protocols.base import EvalContext
from facebench.protocols.landmarks import LandmarksProtocol, to_original_pixels
from facebench.records import Predictions

N = 10
STEP = 0.9  # image i's points are shifted right by i * STEP pixels: NME_i = i * STEP / 40 = 0.0225 i
INPUT = (64, 64)
FIVE = SCHEMES["five_point"].point_names


def _truth() -> tuple[np.ndarray, np.ndarray]:
    """Five points per image (eye centres 40 px apart), image sizes (w, h) that differ per image."""
    base = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    pts = np.stack([base + [i, 0.5 * i] for i in range(N)])
    sizes = np.array([[100 + 3 * i, 120 - 2 * i] for i in range(N)], dtype=np.int64)
    return pts, sizes


def to_input_frame(points: np.ndarray, sizes: np.ndarray, size=INPUT) -> np.ndarray:
    """The inverse of the protocol's mapping, written independently: x' = (x + 0.5) * S_w / W - 0.5."""
    s_h, s_w = size
    out = points.copy()
    out[..., 0] = (points[..., 0] + 0.5) * s_w / sizes[:, None, 0] - 0.5
    out[..., 1] = (points[..., 1] + 0.5) * s_h / sizes[:, None, 1] - 0.5
    return out


def _dataset(visible=None, boxes=None) -> Dataset:
    pts, sizes = _truth()
    lab = LandmarkLabels("five_point", pts, visible, boxes, sizes)
    pose = np.array(["frontal" if i % 2 else "left" for i in range(N)])
    return Dataset("fixture", "test", np.array([f"img{i:02d}" for i in range(N)]), (), None,
                   ArrayImages(np.zeros((N, 2, 2, 3), np.uint8)), attributes={"pose": pose}, landmarks=lab)


def _predicted(shift=STEP) -> np.ndarray:
    pts, _ = _truth()
    return pts + np.array([[[i * shift, 0.0]] for i in range(N)])


def _ctx(ds: Dataset, pred_original: np.ndarray, detected=None, labels=FIVE, scheme="five_point",
         n_resamples=200) -> EvalContext:
    outputs = {"landmarks": to_input_frame(pred_original, ds.landmarks.image_sizes).astype(np.float32)}
    if detected is not None:
        outputs["face_detected"] = np.asarray(detected, dtype=np.float32)
    return EvalContext(ds, Predictions(ds.ids, outputs), "landmarks", tuple(labels), seed=3,
                       n_resamples=n_resamples, input_size=INPUT, head_scheme=scheme)


def _records(result) -> dict:
    return {r.metric: r for r in result.records}


def test_input_frame_round_trip():
    pts, sizes = _truth()
    back = to_original_pixels(to_input_frame(pts, sizes), sizes, INPUT)
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # a square input size given as one number, and a pixel centre on the border maps to the border centre
    np.testing.assert_allclose(to_original_pixels(np.array([[[-0.5, 63.5]]]), [[100, 50]], 64),
                               [[[-0.5, 49.5]]], atol=1e-12)


def test_nme_fr_auc_against_hand_worked_values():
    ds = _dataset()
    res = LandmarksProtocol().evaluate(_ctx(ds, _predicted()))
    rec = _records(res)
    nme = 0.0225 * np.arange(N)
    assert rec["nme[eye_centres_5pt]"].value == pytest.approx(nme.mean(), abs=1e-6)  # 0.10125
    assert rec["nme[eye_centres_5pt]"].headline and not rec["nme[eye_centres_5pt]"].higher_is_better
    assert rec["fr@0.1[eye_centres_5pt]"].value == pytest.approx(0.5)  # images 5..9
    assert rec["fr@0.08[eye_centres_5pt]"].value == pytest.approx(0.6)  # images 4..9
    auc = np.maximum(0, 0.1 - nme).sum() / N / 0.1  # (0.1 + 0.0775 + 0.055 + 0.0325 + 0.01) / 10 / 0.1
    assert rec["auc@0.1[eye_centres_5pt]"].value == pytest.approx(auc, abs=1e-6)
    assert rec["auc@0.1[eye_centres_5pt]"].value == pytest.approx(0.275, abs=1e-6)
    lo, hi = rec["nme[eye_centres_5pt]"].ci
    assert lo < nme.mean() < hi
    conv = rec["nme[eye_centres_5pt]"].conventions
    assert conv["normaliser"] == "eye_centres_5pt" and conv["mapping"] == "identity"
    assert conv["missed_faces"] == "failure" and "bootstrap" in conv
    # every point moved by the same amount: each point's NME is the mean shift over d
    for name in FIVE:
        assert rec[f"nme[eye_centres_5pt,point={name}]"].value == pytest.approx(nme.mean(), abs=1e-6)
    assert [row["point"] for row in res.details["per_point"]] == list(FIVE)
    assert "detection_rate" not in rec and res.details["missed_faces"]["reported"] is False


def test_auc_matches_the_simpson_recipe():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    simpson = getattr(scipy_integrate, "simpson", None) or scipy_integrate.simps
    rng = np.random.default_rng(0)
    ds = _dataset()
    pred = _truth()[0] + rng.normal(0, 3.0, size=(N, 5, 2))
    res = LandmarksProtocol().evaluate(_ctx(ds, pred, n_resamples=0))
    nmes = np.array([np.linalg.norm(pred[i] - ds.landmarks.points[i], axis=1).mean() / 40.0 for i in range(N)])
    xs = np.arange(0, 0.1 + 0.0001, 0.0001)
    ys = np.array([np.count_nonzero(nmes <= x) for x in xs]) / N
    assert _records(res)["auc@0.1[eye_centres_5pt]"].value == pytest.approx(simpson(ys, x=xs) / 0.1, abs=1e-4)
    assert _records(res)["auc@0.1[eye_centres_5pt]"].ci is None  # no bootstrap asked


@pytest.mark.parametrize("policy, fr, n_fr, nme_n", [("failure", 0.6, 10, 9), ("whole_image", 0.5, 10, 10),
                                                     ("exclude", 5 / 9, 9, 9)])
def test_missed_faces_policies(policy, fr, n_fr, nme_n):
    detected = np.ones(N)
    detected[2] = 0  # image 2 (NME 0.045) has no face found
    res = LandmarksProtocol(missed_faces=policy).evaluate(_ctx(_dataset(), _predicted(), detected))
    rec = _records(res)
    assert rec["fr@0.1[eye_centres_5pt]"].value == pytest.approx(fr)
    assert rec["fr@0.1[eye_centres_5pt]"].n == n_fr
    assert rec["nme[eye_centres_5pt]"].n == nme_n
    assert rec["detection_rate"].value == pytest.approx(0.9) and rec["detection_rate"].headline
    assert res.details["missed_faces"]["policy"] == policy and res.details["missed_faces"]["missed"] == 1
    assert res.details["missed_faces"]["missed_ids"] == ["img02"]
    assert any("no face found in 1 of 10" in w for w in res.warnings)
    expected = np.delete(0.0225 * np.arange(N), 2).mean() if policy != "whole_image" else 0.0225 * 4.5
    assert rec["nme[eye_centres_5pt]"].value == pytest.approx(expected, abs=1e-6)


def test_groups_by_attribute():
    res = LandmarksProtocol(min_group_size=6).evaluate(_ctx(_dataset(), _predicted()))
    rec = _records(res)
    nme = 0.0225 * np.arange(N)
    assert rec["nme[eye_centres_5pt,pose=frontal]"].value == pytest.approx(nme[1::2].mean(), abs=1e-6)
    assert rec["nme[eye_centres_5pt,pose=left]"].value == pytest.approx(nme[0::2].mean(), abs=1e-6)
    assert rec["fr@0.1[eye_centres_5pt,pose=left]"].value == pytest.approx(0.4)  # images 6, 8
    rows = {row["group"]: row for row in res.details["groups"]["pose"]}
    assert rows["frontal"]["n"] == 5 and rows["left"]["fr"] == pytest.approx(0.4)
    assert sum("pose=" in w and "only 5 images" in w for w in res.warnings) == 2
    with pytest.raises(ConfigError, match="no attribute 'gender'"):
        LandmarksProtocol(attributes=["gender"]).evaluate(_ctx(_dataset(), _predicted()))


def test_model_scheme_mapped_to_the_dataset_scheme():
    """A 68-point model whose eye rings, nose tip and mouth corners sit on the shifted truth scores like the
    five-point predictions (the spec's 68 -> 5 rule), its scheme found from its point names."""
    five = _predicted()
    pts68 = np.zeros((N, 68, 2))
    pts68[:, 36:42] = five[:, None, 0] + np.array([[-2.0, 0], [2, 0], [0, 1], [0, -1], [1, 1], [-1, -1]])
    pts68[:, 42:48] = five[:, None, 1]
    pts68[:, 30], pts68[:, 48], pts68[:, 54] = five[:, 2], five[:, 3], five[:, 4]
    labels = SCHEMES["ibug68"].point_names
    res = LandmarksProtocol().evaluate(_ctx(_dataset(), pts68, labels=labels, scheme=None))
    rec = _records(res)
    assert rec["nme[eye_centres_5pt]"].value == pytest.approx(0.0225 * 4.5, abs=1e-6)
    conv = rec["nme[eye_centres_5pt]"].conventions
    assert conv["model_scheme"] == "ibug68" and conv["dataset_scheme"] == "five_point"
    assert conv["mapping"].startswith("map_points(ibug68 -> five_point)")
    assert res.details["model_scheme"] == "ibug68" and "mapping_groups" not in conv
    assert res.details["mapping_groups"][0] == [36, 37, 38, 39, 40, 41] and res.details["mapping_groups"][2] == [30]


def test_swap_check_warns_on_mirrored_points():
    pred = _truth()[0] + 0.5
    mirrored = pred[:, [1, 0, 2, 4, 3]]  # left and right eyes and mouth corners exchanged
    clean = LandmarksProtocol().evaluate(_ctx(_dataset(), pred))
    assert clean.details["swap_check"]["checked"] and not clean.details["swap_check"]["mirrored"]
    assert not any("mirrored" in w for w in clean.warnings)
    bad = LandmarksProtocol().evaluate(_ctx(_dataset(), mirrored))
    assert bad.details["swap_check"]["mirrored"]
    assert any("look mirrored" in w for w in bad.warnings)


def test_visibility_and_box_normaliser():
    visible = np.ones((N, 5), bool)
    visible[3, 4] = False
    pred = _predicted()
    pred[3, 4] += 500.0  # an absent point's prediction does not count
    boxes = np.array([[10.0, 20.0, 110.0, 84.0]] * N)  # sqrt(100 * 64) = 80
    res = LandmarksProtocol(normaliser="box").evaluate(_ctx(_dataset(visible, boxes), pred))
    rec = _records(res)
    assert rec["nme[box]"].value == pytest.approx(STEP * 4.5 / 80, abs=1e-6)
    assert rec[f"nme[box,point={FIVE[4]}]"].n == N - 1
    with pytest.raises(MetricInputError, match="face boxes"):
        LandmarksProtocol(normaliser="box").evaluate(_ctx(_dataset(), pred))
    with pytest.raises(ConfigError, match="inter_ocular"):
        LandmarksProtocol(normaliser="inter_ocular").evaluate(_ctx(_dataset(), pred))


def test_bad_inputs():
    with pytest.raises(ConfigError, match="thresholds"):
        LandmarksProtocol(thresholds=[0.1, 1.5])
    with pytest.raises(ConfigError, match="missed_faces"):
        LandmarksProtocol(missed_faces="skip")
    ds = _dataset()
    plain = Dataset("plain", "test", ds.ids, (), None, ds.images)
    with pytest.raises(MetricInputError, match="no landmark annotations"):
        LandmarksProtocol().evaluate(_ctx(ds, _predicted()).__class__(plain, Predictions(ds.ids, {}), "landmarks", ()))
    ctx = _ctx(ds, _predicted())
    ctx.predictions.outputs["landmarks"] = ctx.predictions.outputs["landmarks"].reshape(N, -1)
    with pytest.raises(MetricInputError, match=r"\(N, K, 2\)"):
        LandmarksProtocol().evaluate(ctx)


def test_details_serialisable_deterministic_and_drawn(tmp_path):
    from facebench.report.figure_index import as_stored
    from facebench.report.figures import task_figures

    detected = np.ones(N)
    detected[7] = 0
    first = LandmarksProtocol(worst_cases=4).evaluate(_ctx(_dataset(), _predicted(), detected))
    second = LandmarksProtocol(worst_cases=4).evaluate(_ctx(_dataset(), _predicted(), detected))
    text = json.dumps(first.details, allow_nan=False, sort_keys=True)
    assert text == json.dumps(second.details, allow_nan=False, sort_keys=True)
    assert [r.to_dict() for r in first.records] == [r.to_dict() for r in second.records]
    worst = first.details["worst_cases"]
    assert [w["id"] for w in worst] == ["img09", "img08", "img06", "img05"]  # img07 missed: no points to show
    assert first.details["ced"]["y"][-1] == pytest.approx(0.8)  # 8 of 10 <= 0.2; the miss never enters
    row = {"name": "mtfl-fixture", "protocol": "landmarks", "status": "ok", "details": as_stored(first.details)}
    recs = [{"task": "mtfl-fixture", "model": "fixture", **r.to_dict()} for r in first.records]
    paths = task_figures(row, as_stored(recs), tmp_path)
    assert [p.name for p in paths] == ["mtfl-fixture-ced.png", "mtfl-fixture-ced.pdf",
                                       "mtfl-fixture-worst_cases.png", "mtfl-fixture-worst_cases.pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)


def _mtfl_test_records(root: Path, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The first ``n`` records of testing.txt read here on their own: paths, (n, 5, 2) points, pose codes."""
    rows = [line.split() for line in (root / "testing.txt").read_text().splitlines() if line.strip()][:n]
    pts = np.array([[float(v) for v in r[1:11]] for r in rows]).reshape(n, 2, 5).transpose(0, 2, 1)
    return [r[0] for r in rows], pts, np.array([r[14] for r in rows])


def test_real_mtfl_subset(shared_data):
    """On 300 real MTFL test faces: the loader's points and attributes through the protocol, with predictions
    shifted by a known amount, give the NME computed from testing.txt directly."""
    from facebench.registry import DATASETS

    root = shared_data / "mtfl"
    if not (root / "testing.txt").is_file() or not (root / "AFLW").is_dir():
        pytest.skip(f"the MTFL test set is absent ({root}; see MANIFEST.txt there)")
    n = 300
    ds = DATASETS.get("mtfl")(path=root).load("test").subset(np.arange(n))
    files, pts, pose = _mtfl_test_records(root, n)
    np.testing.assert_allclose(ds.landmarks.points, pts)
    rng = np.random.default_rng(1)
    pred = pts + rng.normal(0.0, 2.0, size=pts.shape)
    outputs = {"landmarks": to_input_frame(pred, ds.landmarks.image_sizes, (150, 150)).astype(np.float32)}
    ctx = EvalContext(ds, Predictions(ds.ids, outputs), "landmarks", FIVE, n_resamples=100, input_size=(150, 150),
                      head_scheme="five_point")
    res = LandmarksProtocol().evaluate(ctx)
    rec = _records(res)
    d = np.linalg.norm(pts[:, 0] - pts[:, 1], axis=1)
    nme = np.linalg.norm(pred - pts, axis=2).mean(axis=1) / d
    assert rec["nme[eye_centres_5pt]"].value == pytest.approx(nme.mean(), rel=1e-5)
    assert rec["fr@0.1[eye_centres_5pt]"].value == pytest.approx(np.mean(nme > 0.1), abs=1e-12)
    frontal = pose == "3"
    assert rec["nme[eye_centres_5pt,pose=frontal]"].value == pytest.approx(nme[frontal].mean(), rel=1e-5)
    assert {"gender", "smile", "glasses", "pose"} <= set(res.details["groups"])
    json.dumps(res.details, allow_nan=False)


def test_dlib68_on_real_mtfl_end_to_end(shared_data, tmp_path):
    """``facebench.evaluate`` of dlib-68 on 16 real MTFL test faces in the release's own layout (testing.txt with
    CRLF lines, AFLW/): the run reports NME, FR/AUC, detection rate, per-point and per-pose records, with the
    iBUG-68 -> five_point mapping in its conventions and both figures drawn."""
    import facebench
    from facebench.errors import ModelError
    from facebench.registry import MODELS

    root = shared_data / "mtfl"
    if not (root / "testing.txt").is_file() or not (root / "AFLW").is_dir():
        pytest.skip(f"the MTFL test set is absent ({root})")
    try:
        MODELS.get("dlib-68")()
    except ModelError as err:
        pytest.skip(f"dlib-68 cannot run here: {err}")
    lines = (root / "testing.txt").read_bytes().split(b"\r\n")[:16]
    (tmp_path / "mtfl" / "AFLW").mkdir(parents=True)
    (tmp_path / "mtfl" / "testing.txt").write_bytes(b"\r\n".join(lines) + b"\r\n")
    for line in lines:
        name = line.split()[0].decode()
        (tmp_path / "mtfl" / name).write_bytes((root / name).read_bytes())
    suite = tmp_path / "lm.yaml"
    suite.write_text("name: lm\ntasks:\n  - {name: mtfl, dataset: mtfl, split: test, path: "
                     f"{tmp_path / 'mtfl'}, protocol: landmarks, params: {{worst_cases: 3}}}}\n")
    res = facebench.evaluate("dlib-68", suite, bootstrap=50, out=tmp_path / "run", figures=True,
                             cache_dir=tmp_path / "store")
    assert res.exit_code == 0
    rec = {r.metric: r for r in res.records}
    nme = rec["nme[eye_centres_5pt]"]
    assert 0.0 < nme.value < 0.2 and nme.conventions["model_scheme"] == "ibug68"
    assert nme.conventions["missed_faces"] == "failure" and nme.n == round(16 * rec["detection_rate"].value)
    assert 0.5 <= rec["detection_rate"].value <= 1.0
    assert {"fr@0.1[eye_centres_5pt]", "auc@0.1[eye_centres_5pt]", "nme[eye_centres_5pt,point=nose]"} <= set(rec)
    assert any(m.startswith("nme[eye_centres_5pt,pose=") for m in rec)
    figures = sorted(p.name for p in (tmp_path / "run" / "figures").glob("*.png"))
    assert figures == ["mtfl-ced.png", "mtfl-worst_cases.png"]


def test_requirements_name_the_grouping_attributes():
    req = LandmarksProtocol(attributes=["pose", "gender"]).requirements()
    assert req.attributes and req.attribute_names == ("pose", "gender") and not req.labels
    assert not LandmarksProtocol().requirements().attributes  # every suitable attribute, none required
