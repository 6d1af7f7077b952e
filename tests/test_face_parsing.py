"""The face_parsing protocol on label-map fixtures (values checked by an independent count) and Faceptor's
parsing head through it on the golden fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.data.dataset import Dataset, ParsingLabels
from facebench.data.images import ArrayImages
from facebench.errors import ConfigError, MetricInputError
from facebench.protocols.base import EvalContext
from facebench.protocols.face_parsing import FaceParsingProtocol, nearest_indices, resize_nearest, to_input_frame
from facebench.records import Predictions
from facebench.registry import PROTOCOLS

CLASSES = ("background", "skin", "hair", "nose")
GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "faceptor"
needs_golden = pytest.mark.skipif(not (GOLDEN / "checkpoint.pth").exists(),
                                  reason=f"Faceptor golden fixture not found at {GOLDEN}")


def _dataset(tmp_path: Path, truths: list[np.ndarray], classes=CLASSES) -> Dataset:
    sources = []
    for i, t in enumerate(truths):
        Image.fromarray(t.astype(np.uint8)).save(tmp_path / f"{i}.png")
        sources.append(((-1, str(tmp_path / f"{i}.png")),))
    n = len(truths)
    return Dataset("fixture", "test", np.array([f"img{i}" for i in range(n)]), (), None,
                   ArrayImages(np.zeros((n, 2, 2, 3), np.uint8)), parsing=ParsingLabels(classes, sources))


def _ctx(ds: Dataset, maps: np.ndarray, labels=CLASSES, n_resamples=200) -> EvalContext:
    return EvalContext(ds, Predictions(ds.ids, {"parsing": maps}), "parsing", tuple(labels), seed=4,
                       n_resamples=n_resamples, input_size=maps.shape[1:])


def _independent(truths, preds, c) -> dict:
    """Per-class F1 / IoU by counting pixels class by class over all images (no confusion matrix)."""
    t = np.concatenate([x.ravel() for x in truths])
    p = np.concatenate([x.ravel() for x in preds])
    keep = t != 255
    t, p = t[keep], p[keep]
    f1, iou = [], []
    for k in range(c):
        tp, nt, npred = np.sum((t == k) & (p == k)), np.sum(t == k), np.sum(p == k)
        f1.append(2 * tp / (nt + npred) if nt + npred else np.nan)
        iou.append(tp / np.sum((t == k) | (p == k)) if nt + npred else np.nan)
    fg_tp = sum(np.sum((t == k) & (p == k)) for k in range(1, c))
    fg = sum(np.sum(t == k) + np.sum(p == k) for k in range(1, c))
    return {"f1": np.array(f1), "iou": np.array(iou), "overall": 2 * fg_tp / fg, "acc": np.mean(t == p)}


def _fixture(rng):
    """Three 8 x 8 truths (one with an unlabelled 255 pixel) and predictions stored at 4 x 4 (every 2 x 2
    block of the truth's size reads one stored pixel)."""
    truths = [rng.integers(0, 4, size=(8, 8)) for _ in range(3)]
    truths[1][1, 1] = 255  # not a sampled pixel of the stored predictions
    stored = [np.where(rng.random((4, 4)) < 0.6, t[::2, ::2], rng.integers(0, 4, size=(4, 4))) for t in truths]
    return truths, np.stack(stored).astype(np.uint8)


def test_nearest_rule_by_hand():
    # 4 -> 8: each source pixel twice; 3 -> 2: output centres read 0.75 and 2.25 -> pixels 0 and 2
    np.testing.assert_array_equal(nearest_indices(8, 4), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(nearest_indices(2, 3), [0, 2])
    np.testing.assert_array_equal(nearest_indices(5, 2), [0, 0, 1, 1, 1])  # (i + 0.5) * 2 / 5: .2 .6 1 1.4 1.8
    m = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(resize_nearest(m, (4, 3)), [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]])
    # to the input frame and back is the identity when the frame is an integer multiple
    big = np.kron(m, np.ones((2, 2), dtype=int))
    np.testing.assert_array_equal(to_input_frame([big], (2, 3))[0], m)
    with pytest.raises(MetricInputError, match=r"\(H, W\)"):
        to_input_frame([np.zeros((2, 2, 3))], 4)


def test_metrics_against_an_independent_count(tmp_path):
    rng = np.random.default_rng(0)
    truths, stored = _fixture(rng)
    ds = _dataset(tmp_path, truths)
    res = FaceParsingProtocol().evaluate(_ctx(ds, stored))
    rec = {r.metric: r for r in res.records}
    preds = [np.kron(s, np.ones((2, 2), dtype=np.int64)) for s in stored]  # the nearest rule for 4 -> 8
    want = _independent(truths, preds, 4)
    assert rec["f1_mean"].value == pytest.approx(np.nanmean(want["f1"][1:]))
    assert rec["f1_mean"].headline and rec["miou"].headline and rec["f1_mean"].higher_is_better
    assert rec["miou"].value == pytest.approx(np.nanmean(want["iou"]))
    assert rec["miou_fg"].value == pytest.approx(np.nanmean(want["iou"][1:]))
    assert rec["overall_f1"].value == pytest.approx(want["overall"])
    assert rec["pixel_accuracy"].value == pytest.approx(want["acc"])
    for k, name in enumerate(CLASSES):
        assert rec[f"f1[class={name}]"].value == pytest.approx(want["f1"][k])
        assert rec[f"iou[class={name}]"].value == pytest.approx(want["iou"][k])
    lo, hi = rec["f1_mean"].ci
    assert lo <= rec["f1_mean"].value <= hi and hi > lo
    conv = rec["f1_mean"].conventions
    assert conv["class_mapping"] == "identity" and "nearest neighbour" in conv["prediction_frame"]
    assert conv["background"] == "background" and "bootstrap" in conv
    assert "background left out" in conv["rule"] and "background included" in rec["miou"].conventions["rule"]
    table = res.details["class_table"]
    assert [row["class"] for row in table] == list(CLASSES)
    assert sum(row["true_pixels"] for row in table) == 3 * 64 - 1  # the 255 pixel is not scored
    assert np.asarray(res.details["confusion_matrix"]).sum() == 3 * 64 - 1
    worst = res.details["worst_cases"]
    assert len(worst) == 3 and worst[0]["f1_mean"] <= worst[-1]["f1_mean"]
    assert FaceParsingProtocol().evaluate(_ctx(ds, stored, n_resamples=0)).records[0].ci is None


def test_a_perfect_model_scores_one_and_classes_map_by_name(tmp_path):
    rng = np.random.default_rng(1)
    truths = [rng.integers(0, 4, size=(6, 6)) for _ in range(2)]
    ds = _dataset(tmp_path, truths)
    perfect = np.stack(truths).astype(np.uint8)
    rec = {r.metric: r for r in FaceParsingProtocol().evaluate(_ctx(ds, perfect)).records}
    assert rec["f1_mean"].value == 1.0 and rec["miou"].value == 1.0 and rec["overall_f1"].value == 1.0
    # a head with the same classes in another order: its ids are mapped by name
    order = (2, 0, 3, 1)  # model id j is dataset class order[j]
    inverse = np.argsort(order)
    permuted = inverse[perfect].astype(np.uint8)
    res = FaceParsingProtocol().evaluate(_ctx(ds, permuted, labels=tuple(CLASSES[k] for k in order)))
    assert res.records[0].value == 1.0 and res.details["class_mapping"] == "by name"
    # differently named classes: class_map renames them; without it, an error that says so
    labels = ("bg", "skin", "hair", "nose")
    with pytest.raises(MetricInputError, match="class_map"):
        FaceParsingProtocol().evaluate(_ctx(ds, perfect, labels=labels))
    res = FaceParsingProtocol(class_map={"bg": "background"}).evaluate(_ctx(ds, perfect, labels=labels))
    assert res.records[0].value == 1.0 and "bg->background" in res.details["class_mapping"]
    with pytest.raises(ConfigError, match="does not have"):
        FaceParsingProtocol(class_map={"ear": "skin"}).evaluate(_ctx(ds, perfect, labels=labels))


def test_bad_predictions_and_datasets(tmp_path):
    truths = [np.zeros((4, 4), np.int64)]
    ds = _dataset(tmp_path, truths)
    with pytest.raises(MetricInputError, match=r"\(N, S_h, S_w\)"):
        FaceParsingProtocol().evaluate(_ctx(ds, np.zeros((1, 4), np.uint8)))
    with pytest.raises(MetricInputError, match="non-integer"):
        FaceParsingProtocol().evaluate(_ctx(ds, np.full((1, 4, 4), 0.5)))
    with pytest.raises(MetricInputError, match="outside the head's 4 classes"):
        FaceParsingProtocol().evaluate(_ctx(ds, np.full((1, 4, 4), 7, np.uint8)))
    plain = Dataset("plain", "test", np.array(["a"]), (), None, ArrayImages(np.zeros((1, 2, 2, 3), np.uint8)))
    with pytest.raises(MetricInputError, match="no parsing label maps"):
        FaceParsingProtocol().evaluate(_ctx(plain, np.zeros((1, 4, 4), np.uint8)))
    with pytest.raises(ConfigError, match="no parameter"):
        FaceParsingProtocol(exclude_background=True)
    # a class never in the truth is warned about
    res = FaceParsingProtocol().evaluate(_ctx(ds, np.zeros((1, 4, 4), np.uint8), n_resamples=0))
    assert any("no ground-truth pixel" in w and "skin" in w for w in res.warnings)
    assert PROTOCOLS.get("face_parsing") is FaceParsingProtocol


# -- Faceptor's parsing head through the protocol ------------------------------------------------------------------
def _uint8_from_farl(x) -> np.ndarray:
    import torch

    from facebench.models.faceptor_dense import FARL_MEAN, FARL_STD

    mean = torch.tensor(FARL_MEAN).view(3, 1, 1)
    std = torch.tensor(FARL_STD).view(3, 1, 1)
    return torch.round((x * std + mean) * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy()


@needs_golden
@pytest.mark.parametrize("head, dataset_classes", [("celebam", "faceptor"), ("lapa", "lapa")])
def test_faceptor_parsing_flows_through_the_protocol(tmp_path, head, dataset_classes):
    import torch

    from facebench.data.parsing_sets import CELEBAM_ORDERS, LAPA_CLASSES
    from facebench.models import faceptor as fp
    from facebench.models.faceptor_dense import PARSING_LABELS

    classes = LAPA_CLASSES if dataset_classes == "lapa" else CELEBAM_ORDERS["faceptor"][1]
    assert PARSING_LABELS[head] == classes  # the loaders' class order is the head's: no mapping
    inputs = torch.load(GOLDEN / "inputs.pt", weights_only=True)["image_128"]
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    images = [_uint8_from_farl(x) for x in inputs]
    maps = adapter.parsing(images, dataset=head)  # (128, 128) each, at the images' own size
    # ground truth at 64 x 64 (as CelebAMask-HQ's labels are half its images' size): the model's labels on
    # the upper half, background on the lower half
    truths = []
    for m in maps:
        t = resize_nearest(np.asarray(m), (64, 64)).astype(np.int64)
        t[32:] = 0
        truths.append(t)
    ds = _dataset(tmp_path, truths, classes)
    stored = to_input_frame(maps, 128)  # the prediction store's fixed frame (the identity here)
    np.testing.assert_array_equal(stored, np.stack(maps))
    res = FaceParsingProtocol().evaluate(_ctx(ds, stored, labels=classes, n_resamples=50))
    rec = {r.metric: r for r in res.records}
    preds = [resize_nearest(np.asarray(m), (64, 64)) for m in maps]  # 128 -> 64: every other pixel
    np.testing.assert_array_equal(preds[0], np.asarray(maps[0])[1::2, 1::2])
    want = _independent(truths, preds, len(classes))
    assert rec["f1_mean"].value == pytest.approx(np.nanmean(want["f1"][1:]))
    assert rec["miou"].value == pytest.approx(np.nanmean(want["iou"]))
    assert rec["overall_f1"].value == pytest.approx(want["overall"])
    assert rec["pixel_accuracy"].value == pytest.approx(want["acc"])
    assert 0 < rec["pixel_accuracy"].value < 1 and res.details["class_mapping"] == "identity"
