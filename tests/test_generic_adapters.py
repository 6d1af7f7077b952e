"""Generic adapters: torchscript, onnx, python callables and released predictions (CSV / NPZ)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ConfigError, ModelError
from facebench.models import generic
from facebench.models.generic import OnnxAdapter, PredictionsAdapter, PythonAdapter, TorchScriptAdapter
from facebench.registry import MODELS
from facebench.runner import make_model, run_suite

# torch 2.13 deprecates torch.jit.trace/save/load (still fully working)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

FER = LABEL_ORDERS["fer2013"]
RAF = LABEL_ORDERS["rafdb"]


class Tiny(nn.Module):
    """conv -> ReLU -> global average -> linear: 7 logits (and the pooled features when asked)."""

    def __init__(self, width: int = 4, n_classes: int = 7, channels: int = 3, with_features: bool = False,
                 softmax: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.fc = nn.Linear(width, n_classes)
        self.with_features, self.softmax = with_features, softmax

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean(dim=(2, 3))
        y = self.fc(f)
        if self.softmax:
            y = torch.softmax(y, dim=1)
        return (y, f) if self.with_features else y


def build_tiny(width=4, grey=False):
    """The `python` adapter's callable: (module, info)."""
    channels = 1 if grey else 3
    return Tiny(width=width, channels=channels), {"size": 16, "channels": channels, "mean": 0.5, "std": 0.25,
                                                  "classes": "fer2013"}


def build_two_heads():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = Tiny(with_features=True)
            self.gender = nn.Linear(4, 2)

        def forward(self, x):
            y, f = self.body(x)
            return {"expression": y, "gender": self.gender(f), "features": f}

    return TwoHeads(), {"size": "16x16", "heads": {"expression": "angry|disgust|fear|happy|sad|surprise|neutral",
                                                   "gender": ["female", "male"]}}


def build_not_a_module():
    return "model", {}


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(5, 3, 16, 16)


def _save_script(model, path, example):
    torch.jit.trace(model.eval(), example).save(str(path))
    return path


# -- argument parsing ---------------------------------------------------------------------------------
def test_parse_classes_and_spec():
    assert generic.parse_classes("rafdb") == RAF
    assert generic.parse_classes("fer2013") == FER
    assert generic.parse_classes("Happy|sad;neutral") == ("happiness", "sadness", "neutral")
    assert generic.parse_classes(["male", "female"], head="gender") == ("male", "female")
    with pytest.raises(ConfigError, match="known label order"):
        generic.parse_classes("rafbd")
    with pytest.raises(ConfigError, match="more than once"):
        generic.parse_classes("happy|happiness")
    with pytest.raises(ConfigError, match="classes: missing"):
        generic.parse_classes(None)
    spec = generic.build_input_spec({"size": "112x96", "channels": 3, "mean": "0.485|0.456|0.406",
                                     "std": 0.25, "scale": "1/255", "color_order": "bgr"}, "t")
    assert spec.size == (112, 96) and spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.25,) * 3
    assert spec.color_order == "BGR" and abs(spec.scale - 1 / 255) < 1e-15
    with pytest.raises(ConfigError, match="size is missing"):
        generic.build_input_spec({}, "t")
    with pytest.raises(ConfigError, match="2 values for 3 channels"):
        generic.build_input_spec({"size": 8, "mean": "0.5|0.5"}, "t")


def test_all_registered_with_docstring_descriptions():
    for name, cls in [("torchscript", TorchScriptAdapter), ("onnx", OnnxAdapter), ("python", PythonAdapter),
                      ("predictions", PredictionsAdapter)]:
        assert MODELS.get(name) is cls
        entry = [e for e in MODELS.entries() if e.name == name][0]
        assert entry.description == cls.__doc__.strip().splitlines()[0]


# -- torchscript ---------------------------------------------------------------------------------------------
def test_torchscript_round_trip(tmp_path, x):
    model = Tiny().eval()
    path = _save_script(model, tmp_path / "tiny.pt", x)
    adapter = make_model("torchscript", {"file": str(path), "size": 16, "classes": "rafdb"})
    assert adapter.heads["expression"].labels == RAF and adapter.default_head == "expression"
    assert adapter.input_spec.size == (16, 16) and adapter.input_spec.mean == (0.5,) * 3
    out = adapter.predict(x)
    with torch.no_grad():
        torch.testing.assert_close(out["expression"], model(x))
    # the fingerprint hashes the file: a different model at the same path changes it
    fp = adapter.fingerprint()
    assert TorchScriptAdapter(file=str(path), size=16, classes="rafdb").fingerprint() == fp
    _save_script(Tiny(width=5), path, x)
    assert TorchScriptAdapter(file=str(path), size=16, classes="rafdb").fingerprint() != fp


def test_torchscript_probs_sidecar_and_features(tmp_path, x):
    model = Tiny(softmax=True, with_features=True).eval()
    path = _save_script(model, tmp_path / "tiny.pt", x)
    (tmp_path / "tiny.pt.json").write_text(json.dumps(
        {"size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": 0.5, "classes": list(FER), "output": "probs"}))
    adapter = TorchScriptAdapter(file=str(path))
    assert adapter.heads["expression"].labels == FER and adapter.output_kind == "probs"
    out = adapter.predict(x, features=True)
    with torch.no_grad():
        probs, feats = model(x)
    torch.testing.assert_close(out["expression"], torch.log(probs))
    torch.testing.assert_close(out["features"], feats)
    # arguments win over the sidecar
    assert TorchScriptAdapter(file=str(path), classes="rafdb").heads["expression"].labels == RAF


def test_torchscript_errors(tmp_path, x):
    with pytest.raises(ModelError, match="does not exist.*TorchScript"):
        TorchScriptAdapter(file=str(tmp_path / "missing.pt"), size=16, classes="rafdb")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="torch.jit.load"):
        TorchScriptAdapter(file=str(junk), size=16, classes="rafdb")
    path = _save_script(Tiny(), tmp_path / "tiny.pt", x)
    with pytest.raises(ConfigError, match="classes: missing"):
        TorchScriptAdapter(file=str(path), size=16)
    with pytest.raises(ConfigError, match="size is missing"):
        TorchScriptAdapter(file=str(path), classes="rafdb")
    with pytest.raises(ConfigError, match='no option .*Did you mean "classes"'):
        make_model("torchscript", {"file": str(path), "size": 16, "clases": "rafdb"})
    (tmp_path / "tiny.pt.json").write_text(json.dumps({"sise": 16}))
    with pytest.raises(ConfigError, match="unknown key 'sise'"):
        TorchScriptAdapter(file=str(path), classes="rafdb")
    (tmp_path / "tiny.pt.json").unlink()
    # wrong output shape: 8 declared classes for 7 outputs, caught by the base class
    eight = "neutral|happy|sad|surprise|fear|disgust|anger|contempt"
    with pytest.raises(ModelError, match=r"expected shape is \(5, 8\)"):
        TorchScriptAdapter(file=str(path), size=16, classes=eight).predict(x)
    # logits declared as probabilities
    with pytest.raises(ModelError, match="output=logits"):
        TorchScriptAdapter(file=str(path), size=16, classes="rafdb", output="probs").predict(x)
    with pytest.raises(ModelError, match="returns no features"):
        TorchScriptAdapter(file=str(path), size=16, classes="rafdb").predict(x, features=True)


# -- onnx ------------------------------------------------------------------------------------------------------
def _export_onnx(model, path, example, dynamic=True):
    pytest.importorskip("onnx", reason="torch.onnx.export needs the `onnx` package (pip install onnx)")
    outputs = ["logits", "features"] if getattr(model, "with_features", False) else ["logits"]
    axes = {name: {0: "batch"} for name in ["input", *outputs]} if dynamic else None
    torch.onnx.export(model.eval(), (example,), str(path), input_names=["input"], output_names=outputs,
                      dynamic_axes=axes, dynamo=False)  # the dynamo exporter would also need onnxscript
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_round_trip(tmp_path, x):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
    model = Tiny(with_features=True).eval()
    path = _export_onnx(model, tmp_path / "tiny.onnx", x)
    adapter = make_model("onnx", {"file": str(path), "classes": "fer2013", "mean": 0.5, "std": 0.5})
    # size and channels come from the file's declared input shape (only the batch axis is dynamic)
    assert adapter.input_spec.channels == 3 and adapter.input_spec.size == (16, 16)
    out = adapter.predict(x, features=True)
    with torch.no_grad():
        logits, feats = model(x)
    torch.testing.assert_close(out["expression"], logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["features"], feats, atol=1e-5, rtol=1e-5)
    with pytest.raises(ModelError, match="expects 16x16 inputs but size=32x32"):
        OnnxAdapter(file=str(path), size=32, classes="fer2013")
    with pytest.raises(ModelError, match="expects 3 channels"):
        OnnxAdapter(file=str(path), channels=1, classes="fer2013")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_fixed_batch_is_chunked(tmp_path, x):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install onnxruntime)")
    model = Tiny().eval()
    path = _export_onnx(model, tmp_path / "b2.onnx", x[:2], dynamic=False)  # batch fixed at 2; 5 = 2+2+1
    adapter = OnnxAdapter(file=str(path), classes="fer2013")
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict(x)["expression"], model(x), atol=1e-5, rtol=1e-5)


def test_onnx_without_onnxruntime_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ModelError, match="pip install onnxruntime"):
        OnnxAdapter(file=str(path), size=16, classes="fer2013")
    with pytest.raises(ModelError, match="does not exist.*onnx"):
        OnnxAdapter(file=str(tmp_path / "missing.onnx"), size=16, classes="fer2013")


# -- python -----------------------------------------------------------------------------------------------------
def test_python_callable(x):
    adapter = make_model("python", {"target": f"{__name__}:build_tiny", "width": 6})
    assert adapter.module.conv.out_channels == 6  # extra args reach the callable
    assert adapter.input_spec.std == (0.25,) * 3 and adapter.heads["expression"].labels == FER
    with torch.no_grad():
        torch.testing.assert_close(adapter.predict(x)["expression"], Tiny(width=6)(x))
    assert adapter.settings == {"target": f"{__name__}:build_tiny", "width": 6}
    other = PythonAdapter(target=f"{__name__}:build_tiny", width=5)
    assert other.fingerprint() != adapter.fingerprint()


def test_python_callable_from_file_and_two_heads(x):
    adapter = PythonAdapter(target=f"{__file__}:build_two_heads")
    assert set(adapter.heads) == {"expression", "gender"} and adapter.default_head == "expression"
    assert adapter.heads["expression"].labels == FER and adapter.heads["gender"].labels == ("female", "male")
    out = adapter.predict(x, heads=("expression", "gender"), features=True)
    assert out["gender"].shape == (5, 2) and out["features"].shape == (5, 4)


def test_python_errors():
    with pytest.raises(ConfigError, match="module:callable"):
        PythonAdapter(target="no_colon")
    with pytest.raises(ModelError, match="cannot import"):
        PythonAdapter(target="no_such_module_xyz:build")
    with pytest.raises(ModelError, match='Did you mean "build_tiny"'):
        PythonAdapter(target=f"{__name__}:build_tinny")
    with pytest.raises(ModelError, match=r"returned str as the model"):
        PythonAdapter(target=f"{__name__}:build_not_a_module")
    with pytest.raises(ConfigError, match="failed"):
        PythonAdapter(target=f"{__name__}:build_tiny", depth=3)


# -- predictions ----------------------------------------------------------------------------------------------
@pytest.fixture
def released(tmp_path):
    """Logits for 50 ids, written in shuffled order with FER2013 column names."""
    rng = np.random.default_rng(0)
    ids = np.array([f"img_{i:03d}" for i in range(50)])
    logits = rng.normal(size=(50, 7))
    order = rng.permutation(50)
    return tmp_path, ids, logits, order


def test_predictions_csv(released):
    tmp, ids, logits, order = released
    names = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    df = pd.DataFrame(logits[order], columns=names)
    df.insert(0, "id", ids[order])
    df["path"] = "x.jpg"  # an extra column, ignored when classes= names the columns
    path = tmp / "preds.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"\['path'\] are not class names"):
        PredictionsAdapter(file=str(path))
    df.drop(columns="path").to_csv(path, index=False)
    adapter = make_model("predictions", {"file": str(path)})
    assert adapter.precomputed and adapter.heads["expression"].labels == FER
    got = adapter.predict_ids(ids, heads=("expression",))["expression"]
    np.testing.assert_allclose(got, logits, rtol=1e-6)
    # classes= reorders the columns
    adapter = PredictionsAdapter(file=str(path), classes="rafdb")
    assert adapter.heads["expression"].labels == RAF
    np.testing.assert_allclose(adapter.predict_ids(ids)["expression"], logits[:, [FER.index(c) for c in RAF]],
                               rtol=1e-6)


def test_predictions_csv_probs_and_numeric_ids(tmp_path):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    path = tmp_path / "p.csv"
    path.write_text("id,neutral,happy,sad\n007,0.7,0.2,0.1\n010,0.1,0.1,0.8\n")
    with pytest.raises(ConfigError, match="kind=probs"):
        PredictionsAdapter(file=str(path))
    adapter = PredictionsAdapter(file=str(path), kind="probs")
    got = adapter.predict_ids(["010", "007"])["expression"]  # ids stay strings: '007' is not 7
    np.testing.assert_allclose(got, np.log(probs[[1, 0]]), rtol=1e-6)


def test_predictions_npz(released):
    tmp, ids, logits, order = released
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    feats = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    path = tmp / "preds.npz"
    np.savez(path, ids=ids[order], probs=probs[order], features=feats[order])
    with pytest.raises(ConfigError, match="stores no `classes`"):
        PredictionsAdapter(file=str(path))
    adapter = PredictionsAdapter(file=str(path), classes="fer2013")
    assert adapter.kind == "probs" and adapter.feature_dim == 3
    out = adapter.predict_ids(ids, heads=("expression",), features=True)
    np.testing.assert_allclose(out["expression"], np.log(probs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["features"], feats)
    np.savez(path, ids=ids, logits=logits, classes=np.array(list(FER)))
    adapter = PredictionsAdapter(file=str(path))
    assert adapter.kind == "logits" and adapter.heads["expression"].labels == FER
    with pytest.raises(ConfigError, match="no `probs` array"):
        PredictionsAdapter(file=str(path), kind="probs")
    with pytest.raises(ConfigError, match="stores classes"):
        PredictionsAdapter(file=str(path), classes="rafdb")


def test_predictions_missing_ids_and_fingerprint(released):
    tmp, ids, logits, order = released
    path = tmp / "preds.npz"
    np.savez(path, ids=ids[:45], logits=logits[:45])
    adapter = PredictionsAdapter(file=str(path), classes="fer2013")
    with pytest.raises(ModelError, match=r"5 of 50 sample ids have no row .*img_045"):
        adapter.predict_ids(ids)
    with pytest.raises(ModelError, match="features were requested"):
        adapter.predict_ids(ids[:3], features=True)
    with pytest.raises(ModelError, match="does not exist"):
        PredictionsAdapter(file=str(tmp / "nope.csv"))
    fp = adapter.fingerprint()
    assert PredictionsAdapter(file=str(path), classes="fer2013").fingerprint() == fp
    np.savez(path, ids=ids[:45], logits=logits[:45] + 1)  # same path, other bytes
    assert PredictionsAdapter(file=str(path), classes="fer2013").fingerprint() != fp
    np.savez(path, ids=np.concatenate([ids[:3], ids[:1]]), logits=logits[:4])
    with pytest.raises(ModelError, match="more than once"):
        PredictionsAdapter(file=str(path), classes="fer2013")


def test_run_suite_with_released_predictions(tmp_path):
    """End to end: the engine looks the rows up by sample id and the protocol scores them."""
    from facebench.data.synthetic import SynthFaces

    dataset = SynthFaces(n=200).load("test")
    rng = np.random.default_rng(3)
    columns = list(FER)  # a different class order from the dataset's
    logits = rng.normal(size=(200, 7))
    # make it better than chance: boost the true class for 60% of the samples
    truth = np.array([columns.index(lab) for lab in dataset.labels])
    boost = rng.random(200) < 0.6
    logits[np.flatnonzero(boost), truth[boost]] += 3.0
    order = rng.permutation(200)
    df = pd.DataFrame(logits[order], columns=columns)
    df.insert(0, "id", dataset.ids[order])
    csv = tmp_path / "released.csv"
    df.to_csv(csv, index=False)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: released\ndefaults: {bootstrap: 50}\ntasks:\n  - name: synth-test\n    dataset: synth\n"
                     "    split: test\n    protocol: closed_set\n    dataset_args: {n: 200}\n")
    outcome = run_suite(suite, "predictions", model_args={"file": str(csv)}, out=tmp_path / "run", progress=False)
    assert outcome.exit_code == 0
    acc = [r for r in outcome.results["records"] if r["metric"] == "accuracy"][0]
    expected = float(np.mean(np.array(columns)[logits.argmax(1)] == dataset.labels))
    assert acc["n"] == 200 and acc["value"] == pytest.approx(expected, abs=1e-12)
    assert outcome.manifest["timings"]["synth-test"]["computed_samples"] == 200
