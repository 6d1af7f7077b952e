"""Faceptor dense heads: the landmark crop and its inverse worked by hand, the warp against a plain
crop-resize, and landmarks / parsing through the adapter against the golden fixture's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facebench.errors import ConfigError, ModelError
from facebench.models import faceptor as fp
from facebench.models.faceptor_dense import (FARL_MEAN, FARL_STD, PARSING_LABELS, crop_matrix, decode_landmarks,
                                             resize_image, warp_affine)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "faceptor"
needs_golden = pytest.mark.skipif(not (GOLDEN / "checkpoint.pth").exists(),
                                  reason=f"Faceptor golden fixture not found at {GOLDEN}")


def test_crop_corners_map_back_to_the_box():
    box = (20.0, 10.0, 120.0, 90.0)  # y1, x1, y2, x2
    m = crop_matrix(box, size=512, scale_mu=1.0)
    # normalised (0, 0) and (1, 1) are the crop frame's outer corners -> the box corners
    back = decode_landmarks(np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]), m, 512)
    np.testing.assert_allclose(back, [[10, 20], [90, 120], [50, 70]], atol=1e-9)
    # M1 by hand: x -> (x - x1) / (x2 - x1) * 512 - 0.5
    np.testing.assert_allclose(m @ [50.0, 70.0, 1.0], [0.5 * 512 - 0.5, 0.5 * 512 - 0.5, 1.0])
    np.testing.assert_allclose(m @ [10.0, 20.0, 1.0], [-0.5, -0.5, 1.0])


def test_zoom_out_by_scale_mu():
    box = (0.0, 0.0, 100.0, 100.0)
    m = crop_matrix(box, size=512, scale_mu=0.8)
    # the frame's corners now reach (box size / 2) / 0.8 = 62.5 px from the centre (50, 50)
    back = decode_landmarks(np.array([[0.0, 0.0], [1.0, 1.0]]), m, 512)
    np.testing.assert_allclose(back, [[-12.5, -12.5], [112.5, 112.5]], atol=1e-9)
    with pytest.raises(ModelError, match="empty"):
        crop_matrix((5, 5, 5, 9))


def test_warp_equals_crop_resize():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    box = (8, 4, 40, 36)  # a 32 x 32 crop starting at row 8, column 4
    warped = warp_affine(image, crop_matrix(box, size=96), 96)
    crop = torch.from_numpy(image[8:40, 4:36]).permute(2, 0, 1).float().unsqueeze(0) / 255
    want = F.interpolate(crop, size=(96, 96), mode="bilinear", align_corners=False)[0]
    # the interior agrees exactly (at the border interpolate clamps inside the crop, the warp reads neighbours)
    torch.testing.assert_close(warped[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], rtol=0, atol=1e-5)
    # a box covering the whole image at its own size is the identity
    same = warp_affine(image, crop_matrix((0, 0, 64, 48), size=64), 64)
    assert same.shape == (3, 64, 64)
    torch.testing.assert_close(resize_image(image[:, :, :], 64)[:, :, :], F.interpolate(
        torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255, size=(64, 64), mode="bilinear",
        align_corners=False)[0])


def _uint8_from_farl(x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(FARL_MEAN).view(3, 1, 1)
    std = torch.tensor(FARL_STD).view(3, 1, 1)
    return torch.round((x * std + mean) * 255).clamp(0, 255).byte().permute(1, 2, 0).numpy()


@needs_golden
def test_adapter_landmarks_and_parsing_match_fixture():
    inputs = torch.load(GOLDEN / "inputs.pt", weights_only=True)["image_128"]
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    assert adapter.module.cfg.dense_input_size == 128
    assert adapter.dense_heads == {"landmarks": ("300w", "cofw", "wflw", "aflw"), "parsing": ("celebam", "lapa")}
    images = [_uint8_from_farl(x) for x in inputs]
    # a box over the whole 128 x 128 image and no zoom: the warp is the identity, so the decoded
    # landmarks are the fixture's normalised landmarks times 128 (continuous pixel coordinates)
    for dataset, k in (("300w", 68), ("wflw", 98)):
        pts = adapter.landmarks(images, [(0, 0, 128, 128)] * 3, dataset=dataset, scale_mu=1.0, batch_size=2)
        assert pts.shape == (3, k, 2)
        np.testing.assert_allclose(pts, expected[f"align_{dataset}/landmark"].double().numpy() * 128, atol=2e-3)
    for dataset in ("celebam", "lapa"):
        maps = adapter.parsing(images, dataset=dataset)
        logits = expected[f"parsing_{dataset}/logits"]
        up = F.interpolate(logits, size=(512, 512), mode="bilinear", align_corners=False)
        want = F.interpolate(up, size=(128, 128), mode="bilinear", align_corners=False).argmax(1).numpy()
        assert len(maps) == 3 and maps[0].shape == (128, 128)
        assert (np.stack(maps) == want).mean() > 0.999
        assert np.stack(maps).max() < len(PARSING_LABELS[dataset])
    # original sizes other than the frame: parsing comes back at the image's own size
    tall = np.zeros((150, 90, 3), dtype=np.uint8)
    assert adapter.parsing([tall])[0].shape == (150, 90)
    with pytest.raises(ModelError, match="not one of"):
        adapter.landmarks(images, [(0, 0, 1, 1)] * 3, dataset="helen")
    with pytest.raises(ModelError, match="3 images but 1 boxes"):
        adapter.landmarks(images, [(0, 0, 1, 1)])
    with pytest.raises(ModelError, match=r"\(H, W, 3\) uint8"):
        adapter.parsing([np.zeros((4, 4, 3), dtype=np.float32)])


@needs_golden
def test_base_checkpoint_lacks_full_only_dense_heads(tmp_path):
    state = torch.load(GOLDEN / "checkpoint.pth", map_location="cpu", weights_only=True)["state_dict"]
    base = {k: v for k, v in state.items() if not any(f".{t}." in k for t in ("age_utkface", "affect_ferplus",
            "parsing_lapa", "align_cofw", "align_wflw", "align_aflw"))}
    torch.save({"step": 0, "state_dict": base}, tmp_path / "base.pth")
    with pytest.warns(UserWarning):
        adapter = fp.FaceptorAdapter(checkpoint=str(tmp_path / "base.pth"), config=str(GOLDEN / "config.json"),
                                     head="ferplus")
    assert adapter.dense_heads == {"landmarks": ("300w",), "parsing": ("celebam",)}
    with pytest.raises(ModelError, match="no align_wflw head"):
        adapter.landmarks([np.zeros((8, 8, 3), np.uint8)], [(0, 0, 8, 8)], dataset="wflw")


# -- landmark heads through the engine and the `landmarks` protocol ----------------------------------------------
FRAME = 128  # the fixture's dense input size


def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _fixture_images() -> list[np.ndarray]:
    return [_uint8_from_farl(x) for x in torch.load(GOLDEN / "inputs.pt", weights_only=True)["image_128"]]


def _spread_truth(k: int, i: int) -> np.ndarray:
    """Ground truth spread over the face (the random-weight model's points cluster near the centre)."""
    return np.random.default_rng(10 + i).uniform(20, 108, size=(k, 2))


def _nme(pred: np.ndarray, truth: np.ndarray, a: int, b: int) -> float:
    """The spec's NME computed here: mean over points of ||P - G||, over ||G_a - G_b||, mean over images."""
    d = np.linalg.norm(truth[:, a] - truth[:, b], axis=1)
    return float(np.mean(np.linalg.norm(pred - truth, axis=2).mean(axis=1) / d))


def _evaluate(tmp_path, task: str, **model_args):
    import facebench

    suite = tmp_path / f"{model_args.get('tag', 'lm')}.yaml"
    suite.write_text(f"name: lm\ntasks:\n  - {task}\n")
    args = {"checkpoint": str(GOLDEN / "checkpoint.pth"), "config": str(GOLDEN / "config.json"), "input": "dense",
            **{k: v for k, v in model_args.items() if k != "tag"}}
    res = facebench.evaluate("faceptor", suite, model_args=args, bootstrap=0, cache_dir=tmp_path / "store")
    assert res.exit_code == 0, res.tasks
    return {r.metric: r for r in res.records}, res.tasks[0]["details"]


@needs_golden
def test_dense_input_declares_landmark_heads():
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"),
                                 input="dense")
    heads = {name: (h.kind, h.scheme, len(h.labels), h.size) for name, h in adapter.heads.items()}
    assert heads == {"landmarks_300w": ("landmarks", "ibug68", 68, None),
                     "landmarks_cofw": ("landmarks", "cofw29", 29, None),
                     "landmarks_wflw": ("landmarks", "wflw98", 98, None),
                     "landmarks_aflw": ("landmarks", "aflw19", 19, None),
                     "parsing_celebam": ("parsing", None, 19, (FRAME, FRAME)),
                     "parsing_lapa": ("parsing", None, 11, (FRAME, FRAME))}
    assert adapter.heads["parsing_lapa"].labels == PARSING_LABELS["lapa"]
    assert adapter.default_head == "landmarks_300w" and adapter.input_spec.size == (FRAME, FRAME)
    assert adapter.input_spec.mean == FARL_MEAN and adapter.input_spec.std == FARL_STD
    plain = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    assert "input" not in plain.settings and "landmarks_300w" not in plain.heads
    assert plain.fingerprint() != adapter.fingerprint()
    with pytest.raises(ConfigError, match="landmarks and parsing only"):
        adapter.predict(torch.zeros(1, 3, FRAME, FRAME), heads=("landmarks_wflw",), features=True)
    with pytest.raises(ConfigError, match="input=dense as well"):
        fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), scale_mu=0.8)
    with pytest.raises(ConfigError, match="not one of face, dense"):
        fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), input="group1")


@needs_golden
def test_300w_head_through_the_protocol_on_whole_images(tmp_path):
    """The fixture's images as 300-W's challenging split (iBUG .pts, 1-based) in the whole-image frame: the
    engine's points are the fixture's outputs x 128 - 0.5 (0-based pixel centres) and the NME is the spec's."""
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)["align_300w/landmark"].double().numpy()
    truth = np.stack([_spread_truth(68, i) for i in range(3)])
    for i, image in enumerate(_fixture_images()):
        _png(tmp_path / f"300w/ibug/face{i}.png", image)
        body = "\n".join(f"{x + 1:.4f} {y + 1:.4f}" for x, y in truth[i])
        (tmp_path / f"300w/ibug/face{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
    rec, details = _evaluate(tmp_path, f"{{name: w300, dataset: 300w, split: challenging, path: {tmp_path / '300w'}, "
                                       f"protocol: landmarks, params: {{head: landmarks_300w}}}}")
    pred = expected * FRAME - 0.5
    nme = rec["nme[inter_ocular]"]
    assert nme.value == pytest.approx(_nme(pred, truth, 36, 45), abs=1e-4)
    assert nme.conventions["model_scheme"] == "ibug68" and nme.conventions["mapping"] == "identity"
    assert nme.conventions["frame"] == "whole image" and nme.n == 3
    for case in details["worst_cases"]:
        i = int(case["id"].split("face")[1][0])
        np.testing.assert_allclose(case["pred"], pred[i], atol=3e-3)
    assert {"fr@0.1[inter_ocular]", "auc@0.1[inter_ocular]"} <= set(rec)


@needs_golden
def test_wflw_head_through_the_protocol_in_a_box_crop(tmp_path):
    """The fixture's images pasted into noisy canvases, WFLW's list giving a box whose margin-0.125 crop (the
    authors' scale_mu 0.8 frame) is exactly the pasted image: the points come back in canvas pixels."""
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)["align_wflw/landmark"].double().numpy()
    rng = np.random.default_rng(5)
    offsets = np.array([[37, 21], [10, 40], [52, 5]])
    truth = np.stack([_spread_truth(98, i) + offsets[i] for i in range(3)])
    lines = []
    for i, image in enumerate(_fixture_images()):
        canvas = rng.integers(0, 256, size=(180, 200, 3), dtype=np.uint8)
        (ox, oy) = offsets[i]
        canvas[oy:oy + FRAME, ox:ox + FRAME] = image
        _png(tmp_path / f"wflw/WFLW_images/e/face{i}.png", canvas)
        box = (ox + 12.8, oy + 12.8, ox + 115.2, oy + 115.2)  # enlarged by 1.25: the pasted 128 x 128 region
        lines.append(" ".join([*(f"{v:.6f}" for v in truth[i].reshape(-1)), *(f"{v:.1f}" for v in box),
                               "0 1 0 0 0 0", f"e/face{i}.png"]))
    lists = tmp_path / "wflw/WFLW_annotations/list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")
    rec, details = _evaluate(tmp_path, f"{{name: wflw, dataset: wflw, split: test, path: {tmp_path / 'wflw'}, "
                                       f"protocol: landmarks, params: {{head: landmarks_wflw, attributes: []}}, "
                                       f"dataset_args: {{crop: box, margin: 0.125}}}}")
    pred = expected * FRAME - 0.5 + offsets[:, None, :]
    nme = rec["nme[inter_ocular]"]
    assert nme.value == pytest.approx(_nme(pred, truth, 60, 72), abs=1e-4)
    assert nme.conventions["frame"].startswith("crop box (crop=box,margin=0.125)")
    for case in details["worst_cases"]:
        np.testing.assert_allclose(case["pred"], pred[int(case["id"][6])], atol=3e-3)


@needs_golden
def test_scale_mu_in_the_frame_equals_the_authors_crop(tmp_path):
    """scale_mu 0.8 applied to the engine's frame (the box crop, black around) gives the points of the authors'
    crop of that box on the whole canvas (``adapter.landmarks``, continuous coordinates: minus 0.5) when the
    canvas is black around the box."""
    offsets = np.array([[30, 12], [5, 33], [44, 0]])
    truth = np.stack([_spread_truth(98, i) + offsets[i] for i in range(3)])
    canvases, lines = [], []
    for i, image in enumerate(_fixture_images()):
        canvas = np.zeros((170, 180, 3), np.uint8)
        (ox, oy) = offsets[i]
        canvas[oy:oy + FRAME, ox:ox + FRAME] = image
        canvases.append(canvas)
        _png(tmp_path / f"wflw/WFLW_images/e/face{i}.png", canvas)
        lines.append(" ".join([*(f"{v:.6f}" for v in truth[i].reshape(-1)), str(ox), str(oy), str(ox + FRAME),
                               str(oy + FRAME), "0 0 0 0 0 0", f"e/face{i}.png"]))
    lists = tmp_path / "wflw/WFLW_annotations/list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")
    _, details = _evaluate(tmp_path, f"{{name: wflw, dataset: wflw, split: test, path: {tmp_path / 'wflw'}, "
                                     f"protocol: landmarks, params: {{head: landmarks_wflw, attributes: []}}, "
                                     f"dataset_args: {{crop: box}}}}", scale_mu=0.8, tag="mu")
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    boxes = [(oy, ox, oy + FRAME, ox + FRAME) for ox, oy in offsets]
    authors = adapter.landmarks(canvases, boxes, dataset="wflw", scale_mu=0.8) - 0.5
    unzoomed = adapter.landmarks(canvases, boxes, dataset="wflw", scale_mu=1.0) - 0.5
    for case in details["worst_cases"]:
        i = int(case["id"][6])
        np.testing.assert_allclose(case["pred"], authors[i], atol=3e-3)
        assert np.abs(np.asarray(case["pred"]) - unzoomed[i]).max() > 0.05  # the zoom changes what the model sees


# -- parsing through the engine (input=dense) ----------------------------------------------------------------------
def _lapa_fixture(root: Path, images: list[np.ndarray], truths: list[np.ndarray], points: list[np.ndarray]) -> None:
    """LaPa's native layout: test/{images/<name>.jpg, labels/<name>.png, landmarks/<name>.txt}."""
    from PIL import Image

    for i, (image, truth, pts) in enumerate(zip(images, truths, points)):
        name = f"1000{i}"
        (root / "test" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "test" / "images" / f"{name}.jpg", quality=100)
        _png(root / "test" / "labels" / f"{name}.png", truth.astype(np.uint8))
        (root / "test" / "landmarks").mkdir(parents=True, exist_ok=True)
        (root / "test" / "landmarks" / f"{name}.txt").write_text("106\n" + "".join(f"{x} {y}\n" for x, y in pts))


def _points106(i: int) -> np.ndarray:
    """106 points whose alignment five (104, 105, 54, 84, 90) sit on a face-like layout in a 128 x 128 image."""
    pts = np.random.default_rng(i).uniform(30, 90, size=(106, 2))
    five = np.array([[48.0, 52.0], [80.0, 52.0], [64.0, 70.0], [52.0, 88.0], [76.0, 88.0]]) + i
    pts[[104, 105, 54, 84, 90]] = five
    return pts


def _run_parsing(tmp_path, dataset_args: str = ""):
    import facebench

    suite = tmp_path / "parsing.yaml"
    suite.write_text(f"name: p\ntasks:\n  - {{name: lapa, dataset: lapa, split: test, path: {tmp_path / 'lapa'}, "
                     f"protocol: face_parsing{dataset_args}}}\n")
    args = {"checkpoint": str(GOLDEN / "checkpoint.pth"), "config": str(GOLDEN / "config.json"), "input": "dense"}
    res = facebench.evaluate("faceptor", suite, model_args=args, bootstrap=0, cache_dir=tmp_path / "store")
    assert res.exit_code == 0, res.tasks
    return {r.metric: r for r in res.records}, res


def _f1_mean(truths, preds, c: int) -> float:
    """Mean F1 over the foreground classes counted pixel by pixel (classes absent from both left out)."""
    t = np.concatenate([x.ravel() for x in truths])
    p = np.concatenate([x.ravel() for x in preds])
    f1 = [2 * np.sum((t == k) & (p == k)) / (np.sum(t == k) + np.sum(p == k)) for k in range(1, c)
          if np.sum(t == k) + np.sum(p == k)]
    return float(np.mean(f1))


@needs_golden
def test_parsing_heads_in_the_engine_equal_the_adapter_method():
    """The stored head (B, S, S) uint8 equals ``adapter.parsing`` on images already S x S (both: ParsingOutput's
    512 frame, bilinear to S, argmax)."""
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"),
                                 input="dense")
    images = _fixture_images()
    batch = torch.stack([(torch.from_numpy(im).permute(2, 0, 1).float() / 255.0) for im in images])
    batch = (batch - torch.tensor(FARL_MEAN).view(1, 3, 1, 1)) / torch.tensor(FARL_STD).view(1, 3, 1, 1)
    out = adapter.predict(batch, heads=("parsing_lapa", "parsing_celebam"))
    for dataset in ("lapa", "celebam"):
        maps = out[f"parsing_{dataset}"]
        assert maps.dtype == torch.uint8 and tuple(maps.shape) == (3, FRAME, FRAME)
        np.testing.assert_array_equal(maps.numpy(), np.stack(adapter.parsing(images, dataset=dataset)))
    with pytest.raises(ConfigError, match="need scale_mu=1"):
        zoomed = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"),
                                    input="dense", scale_mu=0.8)
        zoomed.predict(batch, heads=("parsing_lapa",))


@needs_golden
def test_lapa_through_facebench_run_whole_image(tmp_path):
    """`facebench run` with input=dense on LaPa's native layout: the task names no head, the face_parsing
    protocol picks ``parsing_lapa`` by the dataset's name; the label maps are stored as uint8 (deflated) and
    F1-mean equals a pixel count over the adapter's own maps."""
    from facebench.engine.store import PredictionStore

    images = _fixture_images()
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    rng = np.random.default_rng(3)
    _lapa_fixture(tmp_path / "lapa", images, [rng.integers(0, 11, size=(FRAME, FRAME)) for _ in images],
                  [_points106(i) for i in range(3)])
    from facebench.data.parsing_sets import LaPa

    ds = LaPa(tmp_path / "lapa").load("test")
    decoded = [ds.images.load(i) for i in range(3)]  # the JPEGs as decoded (quality 100 is not lossless)
    truths = [ds.parsing.read(i) for i in range(3)]
    rec, res = _run_parsing(tmp_path)
    want = _f1_mean(truths, adapter.parsing(decoded, dataset="lapa"), 11)
    assert rec["f1_mean"].value == pytest.approx(want, abs=1e-12)
    assert rec["f1_mean"].conventions["prediction_frame"].startswith("(N, S_h, S_w) label map")
    assert res.tasks[0]["head"] == "parsing_lapa"
    entry = PredictionStore(tmp_path / "store").entries()[0]
    stored = PredictionStore(tmp_path / "store").load(entry["key"]).outputs["parsing_lapa"]
    assert stored.dtype == np.uint8 and stored.shape == (3, FRAME, FRAME)
    assert entry["bytes"] < stored.nbytes  # deflated


@needs_golden
def test_lapa_tanh_warp_through_facebench_run(tmp_path):
    """``align: tanh_warp``: the engine sees each image warped into the frame and the protocol brings the stored
    maps back through the inverse warp; equals the maps of ``adapter.parsing`` on the warped images brought back
    by ``WarpFrame.back_to_image``, and differs from the whole-image run."""
    from facebench.data.parsing_sets import LaPa

    images = _fixture_images()
    rng = np.random.default_rng(4)
    _lapa_fixture(tmp_path / "lapa", images, [rng.integers(0, 11, size=(FRAME, FRAME)) for _ in images],
                  [_points106(i) for i in range(3)])
    ds = LaPa(tmp_path / "lapa", align="tanh_warp", warp_size=FRAME).load("test")
    frame = ds.parsing.frame
    assert frame is not None and frame.size == FRAME and ds.images.load(0).shape == (FRAME, FRAME, 3)
    assert ds.fingerprint() != LaPa(tmp_path / "lapa").load("test").fingerprint()
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    warped = [ds.images.load(i) for i in range(3)]
    in_frame = adapter.parsing(warped, dataset="lapa")  # S x S maps in the warped frame
    truths = [ds.parsing.read(i) for i in range(3)]
    back = [frame.back_to_image(i, np.asarray(m), truths[i].shape) for i, m in enumerate(in_frame)]
    rec, _ = _run_parsing(tmp_path, f", dataset_args: {{align: tanh_warp, warp_size: {FRAME}}}")
    assert rec["f1_mean"].value == pytest.approx(_f1_mean(truths, back, 11), abs=1e-12)
    assert rec["f1_mean"].conventions["prediction_frame"]["warp_factor"] == 0.8
    unwarped = _f1_mean(truths, in_frame, 11)  # the warped-frame maps scored as if they were the images'
    assert abs(rec["f1_mean"].value - unwarped) > 1e-6
    # the paper's path (logits brought back bilinearly before the argmax) through the adapter method
    paper = adapter.parsing([ds.images.images.load(i) for i in range(3)], dataset="lapa", frame=frame)
    assert [m.shape for m in paper] == [t.shape for t in truths]
    agree = np.mean([np.mean(p == b) for p, b in zip(paper, back)])
    assert agree > 0.9  # same predictions, resampled in a different order (logits vs labels)
