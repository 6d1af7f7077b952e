"""ood_estimate: a label-free AUROC estimate on one unlabelled test set, end to end. The test set is an ``images``
folder (the unlabelled-folder loader, tested on its layout here) of synthetic faces and noise images in known
proportion: the records equal ``metrics.mpe.estimate_ood_auroc`` on msp scores computed by hand from the model,
the estimate lands near the truth (OOD fraction and the AUROC computed with the hidden labels), a pure
in-distribution set is declared unidentifiable (null values, the reason), and the figure and leaderboard show it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from sklearn.metrics import roc_auc_score

from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.data.synthetic import SynthFaces
from facebench.errors import ConfigError
from facebench.metrics import mpe
from facebench.metrics import ood_scores as osc
from facebench.models.synth_cnn import SynthCNNAdapter
from facebench.registry import DATASETS
from facebench.runner import run_suite

N_FACES, N_NOISE, N_REF = 240, 160, 600
REFERENCE = {"dataset": "synth", "split": "val", "dataset_args": {"n": N_REF}}


def test_images_loader_reads_every_image_at_any_depth(tmp_path):
    for rel in ("b.png", "sub/a.jpg", "sub/deeper/c.png", ".hidden/d.png", "sub/.e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / rel)
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    ds = DATASETS.get("images")(path=tmp_path).load("all")
    assert ds.ids.tolist() == ["b.png", "sub/a.jpg", "sub/deeper/c.png"] and ds.labels is None
    assert ds.images.load(1).shape == (4, 4, 3)
    # a linked folder is read (its images under the link's name); a link back to an ancestor is not followed twice
    outside = tmp_path.parent / (tmp_path.name + "-linked")
    outside.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(outside / "x.png")
    (tmp_path / "sub" / "frames").symlink_to(outside, target_is_directory=True)
    (tmp_path / "sub" / "deeper" / "loop").symlink_to(tmp_path / "sub", target_is_directory=True)
    ds = DATASETS.get("images")(path=tmp_path).load("all")
    assert ds.ids.tolist() == ["b.png", "sub/a.jpg", "sub/deeper/c.png", "sub/frames/x.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="No images found"):
        DATASETS.get("images")(path=empty).load("all")


def _write_mixture(root, faces, noise) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in range(N_FACES):
        Image.fromarray(faces.images.load(i)).save(root / f"f{i:04d}.png")
        truth[f"f{i:04d}.png"] = False
    for i in range(N_NOISE):
        Image.fromarray(noise.images.load(i)).save(root / f"n{i:04d}.png")
        truth[f"n{i:04d}.png"] = True
    return truth


def _run(tmp_path, test_path, name="est", dataset="images", split="all", **params):
    suite = tmp_path / f"{name}.yaml"
    task = {"name": name, "dataset": dataset, "split": split, "protocol": "ood_estimate",
            "params": {"reference": REFERENCE, "resamples": 200, **params}}
    if test_path is not None:
        task["path"] = str(test_path)
    suite.write_text(yaml.safe_dump({"name": name, "defaults": {"device": "cpu", "seed": 0, "bootstrap": 0},
                                     "tasks": [task]}, sort_keys=False))
    out = run_suite(suite, model="synth-cnn", out=tmp_path / f"run-{name}", cache_dir=tmp_path / "cache",
                    progress=False, log=lambda m: None, figures=True)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    return out


def _msp(images, features: bool = False):
    adapter = SynthCNNAdapter().eval()
    batch = torch.stack([prepare_uint8(im, adapter.input_spec) for im in images])
    with torch.no_grad():
        out = adapter.predict(normalise_batch(batch, adapter.input_spec), features=features)
    msp = osc.logit_score("msp", out["expression"].numpy().astype(np.float64))
    return (msp, out["features"].numpy().astype(np.float64)) if features else msp


def test_estimate_on_a_known_mixture(tmp_path):
    faces = SynthFaces(n=N_FACES, seed=11).load("test")
    noise = DATASETS.get("noise")(n=N_NOISE).load("test")
    truth = _write_mixture(tmp_path / "unlabelled", faces, noise)
    out = _run(tmp_path, tmp_path / "unlabelled")
    rec = {r["metric"]: r for r in out.results["records"]}
    test = DATASETS.get("images")(path=tmp_path / "unlabelled").load("all")
    s_test = _msp([test.images.load(i) for i in range(len(test))])
    ref = SynthFaces(n=N_REF).load("val")
    s_id = _msp([ref.images.load(i) for i in range(len(ref))])
    direct = mpe.estimate_ood_auroc(s_id, s_test, method="bbe", n_resamples=200, confidence=0.95, seed=0)
    assert direct.identifiable
    assert rec["estimated_auroc"]["value"] == pytest.approx(direct.auroc, abs=1e-6)
    assert rec["estimated_auroc"]["ci"] == pytest.approx(list(direct.intervals["auroc"]), abs=1e-6)
    assert rec["estimated_ood_fraction"]["value"] == pytest.approx(direct.pi, abs=1e-6)
    assert rec["estimated_auroc"]["headline"] and rec["estimated_auroc"]["n"] == N_FACES + N_NOISE
    # near the truth: the hidden OOD fraction and the AUROC of msp with the hidden labels (ID = positive)
    ood = np.array([truth[i] for i in test.ids])
    true_auroc = roc_auc_score(~ood, s_test)
    assert abs(rec["estimated_ood_fraction"]["value"] - N_NOISE / (N_FACES + N_NOISE)) < 0.1
    assert abs(rec["estimated_auroc"]["value"] - true_auroc) < 0.05
    task = out.results["tasks"][0]
    assert task["details"]["summary"].startswith("estimated AUROC ")
    board = (tmp_path / "run-est" / "leaderboard.md").read_text()
    assert "est: label-free OOD estimate" in board and "| est | images / all | 400 |" in board
    assert task["details"]["summary"].replace("[", "\\[").replace("]", "\\]") in board
    from facebench.report import figures as F

    with F.captured_figures() as figs:
        paths = F.task_figures(task, out.results["records"], tmp_path / "figs")
    assert [p.name for p in paths] == ["est-decomposition.png", "est-decomposition.pdf"]
    ax = figs[0].axes[0]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted([
        "ID threshold at 95% TPR", "estimated in-distribution part", "estimated OOD part",
        f"test scores (n={N_FACES + N_NOISE})"])
    assert ax.get_title().startswith("estimated AUROC")
    assert (tmp_path / "run-est" / "figures" / "est-decomposition.png").is_file()


def test_pure_in_distribution_set_is_unidentifiable(tmp_path):
    out = _run(tmp_path, None, name="pure", dataset="synth", split="test", resamples=50)
    task = out.results["tasks"][0]
    rec = {r["metric"]: r for r in out.results["records"]}
    assert not task["details"]["identifiable"] and task["details"]["reason"]
    assert rec["estimated_auroc"]["value"] is None and rec["estimated_auroc"]["ci"] is None
    assert rec["estimated_auroc"]["conventions"]["unidentifiable"] == task["details"]["reason"]
    assert any("no label-free estimate" in w for w in task["warnings"])


def test_a_reference_is_required():
    from facebench.protocols.ood_estimate import OodEstimateProtocol
    from facebench.suite import Task

    task = Task.of("t", "synth", "ood_estimate")
    with pytest.raises(ConfigError, match="needs `reference`"):
        OodEstimateProtocol().requires(task)
    with pytest.raises(ConfigError, match="detector"):
        OodEstimateProtocol(detector="mahalanobis")


def test_feature_method_on_a_known_mixture(tmp_path):
    """``method: feature``: the records equal ``metrics.feature_mpe.estimate`` on the model's features and msp scores
    computed here, near the hidden truth; the decomposition splits the test histogram by the OOD posteriors; a pure
    in-distribution set is unidentifiable."""
    from facebench.metrics import feature_mpe as fmpe

    faces = SynthFaces(n=N_FACES, seed=11).load("test")
    noise = DATASETS.get("noise")(n=N_NOISE).load("test")
    truth = _write_mixture(tmp_path / "unlabelled", faces, noise)
    out = _run(tmp_path, tmp_path / "unlabelled", name="feat", method="feature")
    rec = {r["metric"]: r for r in out.results["records"]}
    assert set(rec) == {"estimated_auroc", "estimated_ood_fraction"}
    test = DATASETS.get("images")(path=tmp_path / "unlabelled").load("all")
    s_test, x_test = _msp([test.images.load(i) for i in range(len(test))], features=True)
    ref = SynthFaces(n=N_REF).load("val")
    s_id, x_id = _msp([ref.images.load(i) for i in range(len(ref))], features=True)
    direct = fmpe.estimate(fmpe.whitening(x_id), s_id, x_test, s_test, n_resamples=200, seed=0)
    assert direct["status"] == mpe.STATUS_OK
    assert rec["estimated_auroc"]["value"] == pytest.approx(direct["auroc"], abs=1e-4)
    assert rec["estimated_ood_fraction"]["value"] == pytest.approx(direct["pi"], abs=1e-4)
    assert rec["estimated_auroc"]["conventions"]["method"] == "feature"
    ood = np.array([truth[i] for i in test.ids])
    assert abs(rec["estimated_ood_fraction"]["value"] - N_NOISE / (N_FACES + N_NOISE)) < 0.1
    lo, hi = rec["estimated_auroc"]["ci"]
    true_auroc = roc_auc_score(~ood, s_test)
    assert abs(rec["estimated_auroc"]["value"] - true_auroc) < 0.05 and lo <= true_auroc <= hi
    task = out.results["tasks"][0]
    hist = task["details"]["decomposition"]
    np.testing.assert_allclose(np.add(hist["id_part"], hist["ood_part"]), hist["test_mass"], atol=1e-12)
    weights = np.histogram(s_test, hist["edges"], weights=direct["ood_weight"])[0] / len(s_test)
    np.testing.assert_allclose(hist["ood_part"], weights, atol=1e-4)
    assert task["details"]["summary"].startswith("estimated AUROC ") and "(feature, 95% intervals" in \
        task["details"]["summary"]
    assert (tmp_path / "run-feat" / "figures" / "feat-decomposition.png").is_file()
    pure = _run(tmp_path, None, name="pure", dataset="synth", split="test", resamples=50, method="feature")
    details = pure.results["tasks"][0]["details"]
    assert not details["identifiable"] and details["reason"] == mpe.STATUS_PI0
    assert {r["metric"]: r["value"] for r in pure.results["records"]}["estimated_auroc"] is None


def test_the_reference_does_not_take_the_tasks_transform():
    """A corrupted test set is compared with clean ID data: the reference on the task's dataset takes its path and
    dataset_args but not its `transform` (it did, and the corruption hid in both); an explicit one is kept."""
    from facebench.protocols.ood_estimate import OodEstimateProtocol
    from facebench.suite import Task

    args = {"transform": {"name": "gaussian_noise", "severity": 5}, "n": 300}
    task = Task.of("t", "synth", "ood_estimate", dataset_args=args)
    ref = OodEstimateProtocol(reference={"dataset": "synth", "split": "val"}).requires(task)["reference"]
    assert ref.dataset_args == {"n": 300}
    assert OodEstimateProtocol(reference="val").requires(task)["reference"].dataset_args == {"n": 300}
    named = OodEstimateProtocol(reference={"dataset": "synth", "split": "val", "dataset_args": args}).requires(task)
    assert named["reference"].dataset_args == args
