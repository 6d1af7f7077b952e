"""Tests for the embedded synthetic face set and the reference SynthCNN."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.errors import ConfigError
from facebench.models.synth_cnn_net import SynthCNN, preprocess_uint8
from facebench.synth.generator import (
    BASIC_EXPRESSIONS,
    COMPOUND_COMPONENTS,
    COMPOUND_EXPRESSIONS,
    DOMAINS,
    FACE_SHAPES,
    FREQUENCY_ORDER,
    GENERATOR_VERSION,
    SKIN_TONES,
    SynthSplit,
    class_counts,
    render_split,
)

WEIGHTS = Path(__file__).resolve().parents[1] / "facebench" / "models" / "weights" / "synth_cnn.pt"
FIELDS = ("images", "labels", "ids", "skin_tone", "face_shape", "domain")


def _same(a: SynthSplit, b: SynthSplit) -> bool:
    return all(
        getattr(a, f).dtype == getattr(b, f).dtype and np.array_equal(getattr(a, f), getattr(b, f))
        for f in FIELDS
    ) and a.images.tobytes() == b.images.tobytes()


# ---------------------------------------------------------------------------------------
# Constants and API
# ---------------------------------------------------------------------------------------


def test_constants():
    assert BASIC_EXPRESSIONS == ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
    assert DOMAINS == ("clean", "blur", "noise", "low_contrast", "low_resolution", "occlusion")
    assert SKIN_TONES == ("tone1", "tone2", "tone3", "tone4")
    assert FACE_SHAPES == ("round", "oval", "long")
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION
    assert sorted(FREQUENCY_ORDER) == sorted(BASIC_EXPRESSIONS)
    assert 4 <= len(COMPOUND_EXPRESSIONS) <= 6
    assert not set(COMPOUND_EXPRESSIONS) & set(BASIC_EXPRESSIONS)
    for name in COMPOUND_EXPRESSIONS:
        a, b = COMPOUND_COMPONENTS[name]
        assert a in BASIC_EXPRESSIONS and b in BASIC_EXPRESSIONS and a != b


def test_shapes_and_dtypes():
    s = render_split("test", 50, seed=1)
    assert isinstance(s, SynthSplit) and len(s) == 50
    assert s.images.dtype == np.uint8 and s.images.shape == (50, 48, 48, 3)
    assert s.images.flags["C_CONTIGUOUS"]
    for f in FIELDS[1:]:
        arr = getattr(s, f)
        assert arr.shape == (50,)
        assert arr.dtype.kind in ("U", "O")
    assert set(s.labels) <= set(BASIC_EXPRESSIONS)
    assert set(s.skin_tone) <= set(SKIN_TONES)
    assert set(s.face_shape) <= set(FACE_SHAPES)
    assert set(s.domain) == {"clean"}
    assert len(set(s.ids)) == 50
    assert all(re.fullmatch(r"test-clean-\d{6}", i) for i in s.ids)
    # images use a good part of the range and are not flat
    assert s.images.std() > 25 and s.images.min() < 40 and s.images.max() > 215


def test_other_size_and_empty():
    s = render_split("val", 10, size=32)
    assert s.images.shape == (10, 32, 32, 3)
    e = render_split("val", 0)
    assert e.images.shape == (0, 48, 48, 3) and len(e.labels) == len(e.ids) == 0


def test_invalid_arguments():
    with pytest.raises(ConfigError, match="Did you mean"):
        render_split("test", 4, domain="blurr")
    with pytest.raises(ConfigError):
        render_split("test", 4, classes="mixed")
    with pytest.raises(ConfigError):
        render_split("test", 4, imbalance=0.5)
    with pytest.raises(ConfigError):
        render_split("test", -1)
    with pytest.raises(ConfigError):
        render_split("test", 4, severity=-0.1)
    with pytest.raises(ConfigError):
        render_split("", 4)


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------


def test_same_call_gives_identical_bytes():
    for kwargs in ({}, {"domain": "noise"}, {"domain": "occlusion", "classes": "compound"}):
        a = render_split("test", 300, seed=7, **kwargs)  # > one internal chunk
        b = render_split("test", 300, seed=7, **kwargs)
        assert _same(a, b), kwargs


def test_seed_split_domain_and_classes_change_samples():
    base = render_split("test", 40, seed=0)
    for other in (
        render_split("test", 40, seed=1),
        render_split("train", 40, seed=0),
        render_split("test", 40, seed=0, domain="low_contrast", severity=0.0),
    ):
        assert not np.array_equal(base.images, other.images)
        # no image is shared between the two calls
        flat_a = {img.tobytes() for img in base.images}
        assert not flat_a & {img.tobytes() for img in other.images}


# ---------------------------------------------------------------------------------------
# Class frequencies
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("imbalance", [1.0, 2.0, 4.0, 10.0])
def test_class_counts_follow_imbalance(imbalance):
    n = 3000
    counts = class_counts(n, "basic", imbalance)
    assert list(counts) == list(BASIC_EXPRESSIONS)
    assert sum(counts.values()) == n
    ordered = [counts[c] for c in FREQUENCY_ORDER]
    assert ordered == sorted(ordered, reverse=True)
    assert counts["happiness"] == max(ordered) and counts["fear"] == min(ordered)
    assert ordered[0] / ordered[-1] == pytest.approx(imbalance, rel=0.02)
    # geometric decay: consecutive ratios are equal
    ratios = np.array(ordered[:-1]) / np.array(ordered[1:])
    assert np.allclose(ratios, imbalance ** (1 / 6), rtol=0.03)


def test_rendered_labels_match_counts_and_are_shuffled():
    s = render_split("train", 1000, imbalance=4.0)
    counts = class_counts(1000, "basic", 4.0)
    assert {c: int((s.labels == c).sum()) for c in BASIC_EXPRESSIONS} == counts
    assert 3.7 <= counts["happiness"] / counts["fear"] <= 4.3
    # shuffled: not sorted in blocks
    changes = int((s.labels[1:] != s.labels[:-1]).sum())
    assert changes > 500
    bal = render_split("train", 700, imbalance=1.0)
    assert {int((bal.labels == c).sum()) for c in BASIC_EXPRESSIONS} == {100}


def test_largest_remainder_rounding_small_n():
    for n in (1, 5, 7, 13, 99):
        counts = class_counts(n, "basic", 4.0)
        assert sum(counts.values()) == n
        assert all(v >= 0 for v in counts.values())


def test_compound_classes():
    s = render_split("test", 300, classes="compound")
    assert set(s.labels) == set(COMPOUND_EXPRESSIONS)
    counts = class_counts(300, "compound", 4.0)
    assert list(counts) == list(COMPOUND_EXPRESSIONS)
    ordered = [counts[c] for c in COMPOUND_EXPRESSIONS]
    assert ordered == sorted(ordered, reverse=True) and sum(ordered) == 300
    assert {c: int((s.labels == c).sum()) for c in COMPOUND_EXPRESSIONS} == counts
    basic = render_split("test", 300)
    assert not set(s.ids) & set(basic.ids)
    assert not np.array_equal(s.images, basic.images)


def test_nuisance_attributes_vary():
    s = render_split("train", 400)
    assert set(s.skin_tone) == set(SKIN_TONES)
    assert set(s.face_shape) == set(FACE_SHAPES)


# ---------------------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------------------


def _grad_energy(images: np.ndarray) -> float:
    x = images.astype(np.float64)
    return float(np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean())


@pytest.mark.parametrize("domain", DOMAINS[1:])
def test_each_domain_changes_images(domain):
    raw = render_split("test", 60, domain=domain, severity=0.0)
    hit = render_split("test", 60, domain=domain, severity=1.0)
    # severity only changes the pixels, never the samples or their metadata
    for f in FIELDS[1:]:
        assert np.array_equal(getattr(raw, f), getattr(hit, f))
    assert set(hit.domain) == {domain}
    diff = np.abs(raw.images.astype(np.int16) - hit.images.astype(np.int16))
    assert diff.mean() > 1.0
    if domain in ("blur", "low_resolution"):
        assert _grad_energy(hit.images) < 0.7 * _grad_energy(raw.images)
    elif domain == "noise":
        assert _grad_energy(hit.images) > 1.5 * _grad_energy(raw.images)
    elif domain == "low_contrast":
        assert hit.images.std(axis=(1, 2, 3)).mean() < 0.5 * raw.images.std(axis=(1, 2, 3)).mean()
    elif domain == "occlusion":
        changed = (diff.max(axis=3) > 8).mean(axis=(1, 2))
        assert np.all(changed > 0.01) and np.all(changed < 0.5)  # a part of the image only


def test_severity_is_monotonic():
    raw = render_split("test", 40, domain="blur", severity=0.0).images.astype(np.float64)
    diffs = [
        np.abs(render_split("test", 40, domain="blur", severity=s).images - raw).mean()
        for s in (0.25, 0.5, 1.0, 2.0)
    ]
    assert diffs == sorted(diffs)


# ---------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------


def test_net_shapes_and_features():
    torch.manual_seed(0)
    net = SynthCNN().eval()
    n_params = sum(p.numel() for p in net.parameters())
    assert 20_000 <= n_params <= 100_000
    x = preprocess_uint8(render_split("test", 4).images)
    assert x.shape == (4, 3, 48, 48) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    with torch.no_grad():
        logits = net(x)
        feats = net.features(x)
        assert logits.shape == (4, 7)
        assert feats.shape == (4, net.feature_dim)
        assert torch.allclose(net.classifier(feats), logits, atol=1e-6)
    assert SynthCNN(n_classes=5, width=8)(x).shape == (4, 5)


@pytest.mark.parametrize("shape", [(8, 16, 48, 48), (3, 5, 7, 9), (2, 4, 2, 3), (1, 1, 3, 2)])
def test_fast_max_pool_equals_max_pool2d(shape):
    """Oracle: torch's max_pool2d(x, 2), NaN included; odd edges dropped the same way."""
    from torch.nn import functional as F

    from facebench.models.synth_cnn_net import MaxPool2x2

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    x.view(-1)[::7] = float("nan")
    x.view(-1)[1::5] = 0.5  # ties inside windows
    want, got = F.max_pool2d(x, 2), MaxPool2x2().eval()(x)
    assert got.shape == want.shape
    assert torch.equal(want.isnan(), got.isnan())
    assert torch.equal(torch.nan_to_num(want), torch.nan_to_num(got))
    with pytest.raises(RuntimeError):
        MaxPool2x2().eval()(torch.zeros(1, 1, 1, 4))  # as max_pool2d: a map too small to pool


def test_fast_max_pool_keeps_network_outputs_and_training_gradients():
    from torch import nn

    from facebench.models.synth_cnn_net import MaxPool2x2

    torch.manual_seed(0)
    fast = SynthCNN().eval()
    reference = SynthCNN().eval()
    reference.load_state_dict(fast.state_dict())
    for block in reference.body:
        block[3] = nn.MaxPool2d(2)
    x = preprocess_uint8(render_split("test", 16).images)
    with torch.no_grad():
        assert torch.equal(fast(x), reference(x))
    pool = MaxPool2x2().train()
    y = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]], requires_grad=True)
    pool(y).sum().backward()
    assert float(y.grad.sum()) == 1.0  # one element per window gets the gradient, as max_pool2d


def test_training_is_deterministic():
    from facebench.train_synth_cnn import train

    threads = torch.get_num_threads()
    kwargs = dict(seed=3, epochs=1, n_train=192, batch_size=64, log=lambda *a: None)
    a = train(**kwargs).state_dict()
    b = train(**kwargs).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.get_num_threads() == threads  # global settings restored


def test_committed_weights_load_and_reach_target_accuracy():
    from facebench.train_synth_cnn import predict, summarise

    assert WEIGHTS.is_file(), "run `python -m facebench.train_synth_cnn` to create the weights"
    assert WEIGHTS.stat().st_size < 500_000
    state = torch.load(str(WEIGHTS), map_location="cpu", weights_only=True)
    net = SynthCNN(n_classes=len(BASIC_EXPRESSIONS))
    net.load_state_dict(state, strict=True)
    test = render_split("test", 2000, seed=0)
    stats = summarise(predict(net, test.images), test.labels)
    assert 0.70 <= stats["accuracy"] <= 0.90, stats
    assert 0.65 <= stats["mean_class_accuracy"] <= 0.90, stats
    assert all(r > 0.4 for r in stats["recall"].values()), stats
