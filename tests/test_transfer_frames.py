"""Transfer attacks between models whose input frames differ (facebench.engine.transfer): the mapping of a
perturbation by hand (size, channels, colour order, the L-inf and L2 budgets), refusal of frames that crop
differently, and a PGD transfer run from synth-cnn (48 x 48) to a 64 x 64 copy of it whose robust accuracy equals
a hand computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from facebench.data.preprocess import InputSpec
from facebench.engine.transfer import check_frames, to_frame
from facebench.errors import ConfigError
from facebench.models.synth_cnn import SynthCNNAdapter
from facebench.runner import run_suite

RGB48 = InputSpec(size=(48, 48), channels=3)
GREY64 = InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,))


def test_mapping_by_hand():
    gen = torch.Generator().manual_seed(0)
    delta = (torch.rand((2, 3, 48, 48), generator=gen) * 2 - 1) * (8 / 255)
    assert to_frame(delta, RGB48, RGB48) is delta  # same frame: untouched
    grey = to_frame(delta, RGB48, GREY64)
    bt601 = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # the target's grey formula, its linear part
    want = F.interpolate((delta * bt601).sum(dim=1, keepdim=True), size=(64, 64), mode="bilinear",
                         align_corners=False)
    assert grey.shape == (2, 1, 64, 64) and torch.allclose(grey, want, atol=1e-7)
    assert float(grey.abs().max()) <= 8 / 255 + 1e-7  # convex combinations keep the L-inf budget
    back = to_frame(grey[0], GREY64, dataclasses.replace(RGB48, size=(64, 64)))  # (C, H, W): grey repeated
    assert back.shape == (3, 64, 64) and torch.equal(back[0], back[2]) and torch.equal(back[1], grey[0, 0])
    bgr = to_frame(delta, RGB48, dataclasses.replace(RGB48, color_order="BGR"))
    assert torch.equal(bgr, delta.flip(1))
    l2 = to_frame(delta, RGB48, dataclasses.replace(RGB48, size=(96, 96)), norm="l2")
    rms = lambda t: t.flatten(1).norm(dim=1) / t[0].numel() ** 0.5  # noqa: E731
    assert torch.allclose(rms(l2), rms(delta), rtol=1e-5)


def test_frames_that_crop_differently_are_refused():
    with pytest.raises(ConfigError, match="crop differently"):
        check_frames(RGB48, dataclasses.replace(RGB48, crop_fraction=0.8), "a", "b")
    check_frames(RGB48, GREY64, "a", "b")  # size and channels may differ


class SynthCNN64(SynthCNNAdapter):
    """synth-cnn on a 64 x 64 frame (its network pools adaptively): another frame, the same weights."""

    name = "synth-cnn-64"
    input_spec = dataclasses.replace(SynthCNNAdapter.input_spec, size=(64, 64))


def test_pgd_transfer_to_a_larger_frame_matches_a_hand_computation(tmp_path):
    from facebench.engine.attacks import adapter_function, cross_entropy_objective, pgd
    from facebench.pipeline.attack_stage import uint8_batches
    from facebench.registry import DATASETS

    n = 12
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "defaults": {"device": "cpu", "bootstrap": 0, "seed": 0}, "tasks": [
        {"name": "transfer", "dataset": "synth", "split": "test", "dataset_args": {"n": n}, "protocol": "adversarial",
         "params": {"eps": ["8/255"], "steps": 3, "surrogate": "synth-cnn"}}]}))
    target = SynthCNN64().eval()
    out = run_suite(suite, adapter=target, out=tmp_path / "run", cache_dir=tmp_path / "cache", progress=False,
                    log=lambda m: None)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    rec = {r["metric"]: r for r in out.results["records"]}
    surrogate = SynthCNNAdapter().eval()
    ds = DATASETS.get("synth")(n=n).load("test")
    x48 = torch.cat(list(uint8_batches(ds, surrogate.input_spec, 256))).float() / 255
    x64 = torch.cat(list(uint8_batches(ds, target.input_spec, 256))).float() / 255
    head = surrogate.default_head
    fn48, fn64 = adapter_function(surrogate, head), adapter_function(target, head)
    index = {c: i for i, c in enumerate(surrogate.heads[head].labels)}
    y = np.array([index[c] for c in ds.labels.tolist()])
    seed = int(np.random.SeedSequence([0, 0]).generate_state(1)[0])
    adv48 = pgd(cross_entropy_objective(fn48, torch.from_numpy(y)), x48, eps=8 / 255, alpha=2 / 255, steps=3, seed=seed)
    delta = F.interpolate(adv48 - x48, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        pred = fn64((x64 + delta).clamp(0, 1)).argmax(1).numpy()
    assert rec["robust_accuracy[eps=8/255]"]["value"] == pytest.approx(float(np.mean(pred == y)))
    assert rec["robust_accuracy[eps=8/255]"]["value"] < rec["clean_accuracy"]["value"]  # the transfer does harm
    frame = out.results["tasks"][0]["details"]["attack"][0]["frame"]
    assert frame["attacked"] == [48, 48, 3] and frame["target"] == [64, 64, 3]


def test_a_surrogate_that_crops_differently_is_refused_before_any_prediction(tmp_path):
    from facebench.registry import MODELS

    class Cropped(SynthCNNAdapter):
        name = "test-cropped-synth"
        input_spec = dataclasses.replace(SynthCNNAdapter.input_spec, crop_fraction=0.8)

    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "defaults": {"device": "cpu", "bootstrap": 0}, "tasks": [
        {"name": "transfer", "dataset": "synth", "split": "test", "dataset_args": {"n": 8}, "protocol": "adversarial",
         "params": {"eps": ["8/255"], "steps": 1, "surrogate": Cropped.name}}]}))
    MODELS.register(Cropped.name)(Cropped)
    try:
        with pytest.raises(ConfigError, match="crop differently"):
            run_suite(suite, model="synth-cnn", out=tmp_path / "run", cache_dir=tmp_path / "cache", progress=False,
                      log=lambda m: None)
    finally:
        MODELS._entries.pop(Cropped.name, None)
    assert not list((tmp_path / "cache").glob("predictions/*"))  # nothing was predicted
