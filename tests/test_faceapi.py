"""face-api adapters: the TF.js weights reader, face-api's input pipeline and graph conventions, the adapters.

The comparison with face-api itself (TF.js in Node) is tests/test_faceapi_conformance.py. Tests that
need the real weights skip, with the command, when the npm tarball is absent.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.data.taxonomy import canonical_name
from facebench.errors import ConfigError, ModelError
from facebench.models.faceapi import (
    FACEAPI_TARBALL,
    FaceApiAgeGenderAdapter,
    FaceApiExpressionAdapter,
    FaceApiRecognitionAdapter,
    npm_dir,
)
from facebench.models.faceapi_nets import faceapi_input, pad_to_square, resize_bilinear_tf, tf_same_pad
from facebench.models.faceapi_weights import WeightSource, decode_weight, read_weights_manifest
from facebench.registry import MODELS

INSTALL = "mkdir -p ~/.cache/facebench/npm && cd ~/.cache/facebench/npm && npm pack @vladmandic/face-api@1.7.15"
FACE_API_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")  # FACE_EXPRESSION_LABELS


def _tarball() -> Path:
    path = npm_dir() / FACEAPI_TARBALL
    if not path.is_file():
        pytest.skip(f"face-api's npm tarball {path} is absent; get it with: {INSTALL}")
    return path


@pytest.fixture(scope="module")
def adapters():
    _tarball()
    return {cls.name: cls() for cls in (FaceApiExpressionAdapter, FaceApiAgeGenderAdapter, FaceApiRecognitionAdapter)}


# -- the TF.js weights manifest ---------------------------------------------------------------------
def _write_model(folder: Path, groups: list[tuple[list[dict], list[bytes]]]) -> None:
    """A manifest whose group i has weights ``groups[i][0]`` and shards ``groups[i][1]``."""
    manifest = []
    for g, (specs, shards) in enumerate(groups):
        names = [f"m-shard{g}of{k}" for k in range(len(shards))]
        for name, data in zip(names, shards):
            (folder / name).write_bytes(data)
        manifest.append({"paths": names, "weights": specs})
    (folder / "m-weights_manifest.json").write_text(json.dumps(manifest))


def test_manifest_decodes_every_storage_kind(tmp_path):
    q8 = bytes([0, 1, 255, 128])
    q16 = np.array([0, 65535, 300], dtype="<u2").tobytes()
    half = np.array([1.5, -2.25], dtype="<f2").tobytes()
    plain = np.array([[0.1, -7.0], [3.25, 1e-8]], dtype="<f4").tobytes()
    ints = np.array([-3, 7], dtype="<i4").tobytes()
    qint = bytes([0, 3])
    specs_a = [
        {"name": "a/q8", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.1, "min": -1.0}},
        {"name": "a/q16", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint16", "scale": 1e-4, "min": 2.0}},
        {"name": "a/half", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
    ]
    specs_b = [
        {"name": "b/plain", "shape": [2, 2], "dtype": "float32"},
        {"name": "b/int", "shape": [2], "dtype": "int32"},
        {"name": "b/qint", "shape": [2], "dtype": "int32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": 0.0}},
    ]
    buffer_a = q8 + q16 + half
    # group a's bytes split across two shards in the middle of a weight; group b in one shard
    _write_model(tmp_path, [(specs_a, [buffer_a[:5], buffer_a[5:]]), (specs_b, [plain + ints + qint])])
    w = read_weights_manifest(WeightSource(tmp_path), "m-weights_manifest.json")
    # q * scale + min in double precision, rounded once to float32
    np.testing.assert_array_equal(w["a/q8"], np.float32([[-1.0, -0.9], [24.5, 11.8]]))
    assert w["a/q8"].dtype == np.float32 and w["a/q8"].shape == (2, 2)
    np.testing.assert_array_equal(w["a/q16"], np.float32([2.0, 2.0 + 65535e-4, 2.03]))
    np.testing.assert_array_equal(w["a/half"], np.float32([1.5, -2.25]))
    np.testing.assert_array_equal(w["b/plain"], np.float32([[0.1, -7.0], [3.25, 1e-8]]))
    np.testing.assert_array_equal(w["b/int"], np.int32([-3, 7]))
    np.testing.assert_array_equal(w["b/qint"], np.int32([0, 2]))  # round(1.5) = 2, as Math.round


def test_double_precision_dequantisation_differs_from_float32_arithmetic():
    spec = {"name": "w", "shape": [1], "dtype": "float32",
            "quantization": {"dtype": "uint8", "scale": 0.0057930146946626555, "min": -0.7125408074435067}}
    ours = decode_weight(spec, bytes([201]), "test")[0]
    assert ours == np.float32(201 * 0.0057930146946626555 + -0.7125408074435067)


@pytest.mark.parametrize("problem,message", [
    ("truncated", "truncated"),
    ("escape", "outside its own folder"),
    ("dtype", "quantization dtype 'int4'"),
    ("no_scale", "without 'scale' and 'min'"),
    ("missing_shard", "is missing"),
])
def test_manifest_errors_say_what_is_wrong(tmp_path, problem, message):
    spec = {"name": "w", "shape": [4], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1.0, "min": 0.0}}
    shards = [bytes(4)]
    if problem == "truncated":
        shards = [bytes(3)]
    elif problem == "dtype":
        spec["quantization"]["dtype"] = "int4"
    elif problem == "no_scale":
        del spec["quantization"]["scale"]
    _write_model(tmp_path, [([spec], shards)])
    manifest = json.loads((tmp_path / "m-weights_manifest.json").read_text())
    if problem == "escape":
        manifest[0]["paths"] = ["../secret.bin"]
    elif problem == "missing_shard":
        manifest[0]["paths"] = ["absent.bin"]
    (tmp_path / "m-weights_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=message):
        read_weights_manifest(WeightSource(tmp_path), "m-weights_manifest.json")


def test_weights_read_from_a_tarball_equal_the_unpacked_files(tmp_path):
    folder = tmp_path / "unpacked"
    folder.mkdir()
    spec = {"name": "w", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}
    _write_model(folder, [([spec], [bytes([1, 2, 3])])])
    archive = tmp_path / "pkg.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in folder.iterdir():
            data = f.read_bytes()
            info = tarfile.TarInfo(f"package/model/{f.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    from_tar = read_weights_manifest(WeightSource(archive, "package/model"), "m-weights_manifest.json")
    from_dir = read_weights_manifest(WeightSource(folder), "m-weights_manifest.json")
    np.testing.assert_array_equal(from_tar["w"], from_dir["w"])
    np.testing.assert_array_equal(from_tar["w"], np.float32([-0.5, 0.0, 0.5]))
    with pytest.raises(ModelError, match="has no file package/model/other"):
        WeightSource(archive, "package/model").read("other")


def test_real_manifest_offsets_reach_the_last_byte():
    """The last weight of face_expression_model is unquantised fc/bias: the shard's last 28 bytes as float32."""
    source = WeightSource(_tarball(), "package/model")
    weights = read_weights_manifest(source, "face_expression_model-weights_manifest.json")
    shard = source.read("face_expression_model.bin")
    np.testing.assert_array_equal(weights["fc/bias"], np.frombuffer(shard[-28:], dtype="<f4"))
    first = json.loads(source.read("face_expression_model-weights_manifest.json"))[0]["weights"][0]
    q = first["quantization"]
    assert weights[first["name"]].flat[0] == np.float32(shard[0] * q["scale"] + q["min"])
    specs = [s for group in json.loads(source.read("face_expression_model-weights_manifest.json")) for s in group["weights"]]
    stored = sum(weights[s["name"]].size * (1 if "quantization" in s else 4) for s in specs)
    assert stored == len(shard)  # uint8-quantised weights and float32 biases fill the shard exactly


# -- face-api's input pipeline and TF conventions ------------------------------------------------
def test_pad_to_square_appends_the_rounded_half_and_prepends_the_rest():
    image = torch.ones(3, 4, 7)  # 3 rows missing: round(1.5) = 2 appended below, 1 prepended above
    out = pad_to_square(image)
    assert out.shape == (3, 7, 7)
    assert out[:, 0].sum() == 0 and out[:, 1:5].min() == 1 and out[:, 5:].sum() == 0
    tall = pad_to_square(torch.ones(3, 6, 2))  # 4 columns: 2 after, 2 before
    assert tall[:, :, :2].sum() == 0 and tall[:, :, 2:4].min() == 1 and tall[:, :, 4:].sum() == 0


def test_tfjs_legacy_resize_samples_at_dst_times_in_over_out():
    x = torch.tensor([[0.0, 10.0], [20.0, 30.0]])[None, None]
    out = resize_bilinear_tf(x, 4)[0, 0]
    # source coordinates 0, 0.5, 1, 1.5 (clamped to the last pixel); no half-pixel shift
    expected = torch.tensor([[0.0, 5.0, 10.0, 10.0], [10.0, 15.0, 20.0, 20.0],
                             [20.0, 25.0, 30.0, 30.0], [20.0, 25.0, 30.0, 30.0]])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    down = resize_bilinear_tf(torch.arange(9.0).view(1, 1, 3, 3), 2)[0, 0]  # coordinates 0 and 1.5
    torch.testing.assert_close(down, torch.tensor([[0.0, 1.5], [4.5, 6.0]]), rtol=0, atol=0)
    same = torch.rand(1, 3, 5, 5)
    assert torch.equal(resize_bilinear_tf(same, 5), same)


def test_tf_same_padding_puts_the_odd_pixel_after():
    x = torch.ones(1, 1, 4, 4)
    padded = tf_same_pad(x, 3, 2)  # out 2, total (2-1)*2 + 3 - 4 = 1: none before, one after
    assert padded.shape == (1, 1, 5, 5) and padded[0, 0, 4].sum() == 0 and padded[0, 0, :4, :4].min() == 1
    assert tf_same_pad(x, 3, 1).shape == (1, 1, 6, 6)
    assert tf_same_pad(x, 1, 2) is x


def test_faceapi_input_normalises_with_face_apis_means():
    image = np.full((112, 112, 3), 200, dtype=np.uint8)
    x = faceapi_input([image], 112)
    expected = (torch.tensor([200.0, 200.0, 200.0]) - torch.tensor([122.782, 117.001, 104.298])) / 255
    torch.testing.assert_close(x[0, :, 50, 50], expected, rtol=0, atol=0)
    with pytest.raises(ModelError, match=r"\(H, W, 3\)"):
        faceapi_input([np.zeros((8, 8), dtype=np.uint8)], 112)


# -- the adapters ---------------------------------------------------------------------------------------
def test_registered_under_their_names():
    for name, cls in [("faceapi-expression", FaceApiExpressionAdapter), ("faceapi-age-gender", FaceApiAgeGenderAdapter),
                      ("faceapi-recognition", FaceApiRecognitionAdapter)]:
        assert MODELS.get(name) is cls


def test_expression_labels_are_face_apis_order_in_canonical_names():
    assert FaceApiExpressionAdapter.heads["expression"].labels == tuple(canonical_name(n) for n in FACE_API_LABELS)


def test_missing_weights_give_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_NPM_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=r"npm pack @vladmandic/face-api@1\.7\.15"):
        FaceApiExpressionAdapter()
    with pytest.raises(ModelError, match="neither face-api's npm tarball nor a folder"):
        FaceApiExpressionAdapter(weights=str(tmp_path))
    with pytest.raises(ConfigError, match="size must be the canvas side"):
        FaceApiExpressionAdapter(size=8)


def test_weights_found_in_the_tarball_and_unpacked_folders_agree(tmp_path, monkeypatch):
    tarball = _tarball()
    with tarfile.open(tarball, "r:gz") as tar:
        for name in ("age_gender_model-weights_manifest.json", "age_gender_model.bin"):
            target = tmp_path / "face-api" / "package" / "model" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(f"package/model/{name}").read())
    reference = FaceApiAgeGenderAdapter(weights=str(tarball)).module.state_dict()
    monkeypatch.setenv("FACEBENCH_NPM_DIR", str(tmp_path))  # no tarball there: the unpacked package
    for adapter in (FaceApiAgeGenderAdapter(), FaceApiAgeGenderAdapter(weights=str(tmp_path / "face-api" / "package")),
                    FaceApiAgeGenderAdapter(weights=str(tmp_path / "face-api" / "package" / "model"))):
        state = adapter.module.state_dict()
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)


def _faces(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random RGB images (the networks' outputs vary with them; real faces are in the conformance test)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 6, 6, 3)).astype(np.float32)
    big = torch.nn.functional.interpolate(torch.from_numpy(small).permute(0, 3, 1, 2), size=(size, size), mode="bilinear")
    return list(big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())


def _canvas(images) -> torch.Tensor:
    """What the engine hands over when the canvas size equals the images' size: their pixels as floats."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().contiguous()


def test_engine_canvas_at_the_image_size_is_face_apis_pipeline(adapters):
    images = _faces(3, 48)
    adapter = FaceApiExpressionAdapter(size=48)
    out = adapter.predict(_canvas(images), features=True)
    with torch.inference_mode():
        logits, pooled = adapters["faceapi-expression"].module(faceapi_input(images, 112))
    torch.testing.assert_close(out["expression"], torch.log_softmax(logits, 1), rtol=0, atol=0)
    torch.testing.assert_close(out["features"], pooled, rtol=0, atol=0)
    assert adapter.input_spec.size == (48, 48) and adapter.input_spec.scale == 1.0


def test_age_gender_heads_reorder_gender_to_female_male(adapters):
    adapter = adapters["faceapi-age-gender"]
    images = _faces(4, 112, seed=1)
    out = adapter.predict(_canvas(images), heads=("age", "gender"), features=True)
    with torch.inference_mode():
        age, gender, pooled = adapter.module(faceapi_input(images, 112))
    assert out["age"].shape == (4, 1) and out["features"].shape == (4, 512)
    torch.testing.assert_close(out["age"][:, 0], age, rtol=0, atol=0)
    male_first = torch.softmax(gender, 1)
    torch.testing.assert_close(out["gender"].exp(), male_first[:, [1, 0]], rtol=1e-6, atol=1e-7)
    assert adapter.heads["gender"].labels == ("female", "male")


def test_recognition_gives_128d_features_only(adapters):
    adapter = adapters["faceapi-recognition"]
    out = adapter.predict(_canvas(_faces(2, 150, seed=2)), heads=(), features=True)
    assert out["features"].shape == (2, 128) and torch.isfinite(out["features"]).all()
    with pytest.raises(ConfigError, match="no classification head"):
        adapter.predict(_canvas(_faces(1, 150)))


def test_batches_equal_single_images(adapters):
    adapter = adapters["faceapi-expression"]
    images = _faces(5, 112, seed=3)
    batch = adapter.predict(_canvas(images))["expression"]
    singles = torch.cat([adapter.predict(_canvas([im]))["expression"] for im in images])
    torch.testing.assert_close(batch, singles, rtol=1e-5, atol=1e-5)


def test_fingerprints_tell_the_networks_and_settings_apart(adapters):
    prints = {a.fingerprint() for a in adapters.values()}
    assert len(prints) == 3
    assert FaceApiExpressionAdapter(size=48).fingerprint() != adapters["faceapi-expression"].fingerprint()
    assert FaceApiExpressionAdapter().fingerprint() == adapters["faceapi-expression"].fingerprint()
