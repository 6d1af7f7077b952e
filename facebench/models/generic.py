"""Generic adapters: evaluate a model you bring, or predictions someone released, without writing an adapter.

* ``torchscript``: a ``torch.jit.save`` file;
* ``onnx``: an ONNX file run with onnxruntime (NCHW float input);
* ``python``: ``target=module:callable`` (or ``path/to/file.py:callable``) returning ``(nn.Module, info)``;
* ``predictions``: per-sample logits or probabilities from a CSV or NPZ file, looked up by sample id.

The model file adapters take the preprocessing and label space from ``--model-args`` (or from a JSON
sidecar ``<file>.json`` with the same keys; arguments win)::

    file=model.pt,size=112,channels=3,mean=0.5,std=0.5,classes=rafdb,head=expression,output=logits

``size`` is ``N``, ``HxW`` or ``H|W``; ``mean``/``std`` are one value or one per channel separated by
``|`` or ``;`` (``scale``, default 1/255, multiplies pixels first); ``resize=opencv|pillow|torch``,
``grey=opencv|pillow|bt601`` and ``antialias=true|false`` say how the model's own code resized and
converted its inputs (``facebench.data.preprocess``; default: facebench's torch resize, antialiased
when shrinking, and float BT.601 grey); ``classes`` is a dataset name of
``facebench.data.taxonomy.LABEL_ORDERS`` (``rafdb``, ``affectnet``, ``fer2013``, ...) or the model's
class names in its output order separated by ``|`` or ``;`` (mapped to canonical names for the
``expression`` head); ``output=probs`` means the model returns probabilities, whose log is taken,
so the stored "logits" are log-probabilities (argmax and softmax unchanged).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from facebench.data.preprocess import InputSpec
from facebench.data.taxonomy import LABEL_ORDERS, canonical_name
from facebench.errors import ConfigError, ModelError, did_you_mean
from facebench.models.base import Head, ModelAdapter

SPEC_KEYS = ("size", "channels", "mean", "std", "scale", "color_order", "crop_fraction", "interpolation", "resize",
             "antialias", "grey")
MODEL_FILE_KEYS = SPEC_KEYS + ("classes", "head", "output")
OUTPUT_KINDS = ("logits", "probs")
_SEPARATORS = re.compile(r"[|;]")


# -- argument parsing ------------------------------------------------------------------------------
def _split(value) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [v.strip() for v in _SEPARATORS.split(value) if v.strip()]
    return [value]


def _number(value, what: str) -> float:
    if isinstance(value, str) and "/" in value:  # scale=1/255
        num, _, den = value.partition("/")
        try:
            return float(num) / float(den)
        except (ValueError, ZeroDivisionError):
            pass
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a number, got {value!r}.") from None


def parse_size(value, what: str = "size") -> tuple[int, int]:
    """``112`` -> (112, 112); ``'112x96'``, ``'112|96'`` or ``[112, 96]`` -> (height, width)."""
    parts = _split(value.lower().replace("x", "|")) if isinstance(value, str) else _split(value)
    try:
        sizes = [int(p) for p in parts]
    except (TypeError, ValueError):
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) <= 0:
        raise ConfigError(f"{what}: expected N, HxW or H|W (pixels), got {value!r}.")
    return sizes[0], sizes[1]


def parse_per_channel(value, channels: int, what: str) -> tuple[float, ...]:
    """One value (broadcast) or one per channel, separated by ``|`` or ``;``."""
    values = [_number(v, what) for v in _split(value)]
    if len(values) == 1:
        values *= channels
    if len(values) != channels:
        raise ConfigError(f"{what}: {len(values)} values for {channels} channels; give one value or {channels} "
                          f"separated by '|'.")
    return tuple(values)


def parse_classes(value, head: str = "expression") -> tuple[str, ...]:
    """A dataset name of LABEL_ORDERS, or class names separated by ``|``/``;`` (or a list), in output order.

    Names of the ``expression`` head are mapped to canonical names (``happy`` -> ``happiness``).
    """
    if value is None or value == "":
        raise ConfigError(f"classes: missing. Give the model's class order for head {head!r}: a dataset name "
                          f"({', '.join(LABEL_ORDERS)}) or names separated by '|', e.g. "
                          f"classes=neutral|happiness|sadness|surprise|fear|disgust|anger.")
    if isinstance(value, str) and not _SEPARATORS.search(value):
        key = value.strip().lower().replace("-", "").replace("_", "")
        aliases = {k.replace("-", "").replace("_", ""): k for k in LABEL_ORDERS}
        if key in aliases:
            return tuple(LABEL_ORDERS[aliases[key]])
    names = [str(n) for n in _split(value)]
    if len(names) < 2:
        raise ConfigError(f"classes: {value!r} is neither a known label order ({', '.join(LABEL_ORDERS)}) nor a "
                          f"list of at least two class names separated by '|' or ';'.{did_you_mean(str(value), LABEL_ORDERS)}")
    if head == "expression":
        names = [canonical_name(n) for n in names]
    else:
        names = [n.strip() for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"classes: {duplicates} appear more than once in {value!r}.")
    return tuple(names)


def build_input_spec(options: dict, what: str) -> InputSpec:
    """InputSpec from adapter options (``size`` required; channels 3, mean/std 0.5, scale 1/255 by default)."""
    if options.get("size") in (None, ""):
        raise ConfigError(f"{what}: the input size is missing; pass size=N (or HxW), e.g. size=112, in "
                          f"--model-args or the JSON sidecar.")
    channels = int(options.get("channels") or 3)
    if channels not in (1, 3):
        raise ConfigError(f"{what}: channels must be 1 (grey) or 3, got {channels}.")
    kwargs = dict(
        size=parse_size(options["size"], f"{what}: size"),
        channels=channels,
        mean=parse_per_channel(options.get("mean", 0.5), channels, f"{what}: mean"),
        std=parse_per_channel(options.get("std", 0.5), channels, f"{what}: std"),
    )
    if any(s == 0 for s in kwargs["std"]):
        raise ConfigError(f"{what}: std must not be 0.")
    if options.get("scale") not in (None, ""):
        kwargs["scale"] = _number(options["scale"], f"{what}: scale")
    if options.get("color_order"):
        kwargs["color_order"] = str(options["color_order"]).upper()
    if options.get("crop_fraction") not in (None, ""):
        kwargs["crop_fraction"] = _number(options["crop_fraction"], f"{what}: crop_fraction")
    if options.get("interpolation"):
        kwargs["interpolation"] = str(options["interpolation"])
    kwargs.update(_pipeline_options(options, what))
    try:
        return InputSpec(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from None


def _pipeline_options(options: dict, what: str) -> dict:
    """``resize`` (torch | opencv | pillow), ``grey`` (bt601 | opencv | pillow) and ``antialias``
    (true | false; unset: the resize's own) from adapter options: how the model's own code resizes."""
    out = {key: str(options[key]).lower() for key in ("resize", "grey") if options.get(key) not in (None, "")}
    value = options.get("antialias")
    if isinstance(value, str):
        value = {"true": True, "false": False, "": None, "none": None, "null": None}.get(value.strip().lower(), value)
    if value is not None:
        if not isinstance(value, bool):
            raise ConfigError(f"{what}: antialias must be true or false (or left unset), got {value!r}.")
        out["antialias"] = value
    return out


def _output_kind(value, what: str, key: str = "output") -> str:
    kind = str(value or "logits").lower()
    if kind not in OUTPUT_KINDS:
        raise ConfigError(f"{what}: {key} must be one of {', '.join(OUTPUT_KINDS)}, got {value!r}.")
    return kind


def _existing_file(path, what: str, expected: str) -> Path:
    if path in (None, ""):
        raise ConfigError(f"{what}: no file given; pass --model-args file=PATH ({expected}).")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ModelError(f"{what}: {p} does not exist or is not a file (expected {expected}).")
    return p


def file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def sidecar_path(path: Path) -> Path:
    """``<file>.json``, the JSON sidecar next to a model file."""
    return path.with_name(path.name + ".json")


def _mentions(path: Path, needle: bytes) -> bool:
    """Whether the file's bytes contain ``needle`` (memory-mapped scan; False when unreadable)."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return mm.find(needle) >= 0
    except (OSError, ValueError):  # unreadable, or empty (mmap of 0 bytes)
        return False


def _external_locations(graph) -> set[str]:
    """``location`` entries of every external tensor of an ONNX graph and its subgraphs."""
    import onnx

    found: set[str] = set()

    def tensor(t):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            found.update(e.value for e in t.external_data if e.key == "location")

    def sparse(st):
        tensor(st.values)
        tensor(st.indices)

    def walk(g):
        for t in g.initializer:
            tensor(t)
        for st in g.sparse_initializer:
            sparse(st)
        for node in g.node:
            for a in node.attribute:
                tensor(a.t)
                for t in a.tensors:
                    tensor(t)
                sparse(a.sparse_tensor)
                for st in a.sparse_tensors:
                    sparse(st)
                if a.HasField("g"):
                    walk(a.g)
                for sub in a.graphs:
                    walk(sub)

    walk(graph)
    return found


def onnx_external_data(path: Path) -> list[Path]:
    """The external-data files an ONNX model names (``location`` entries, relative to its folder).

    Read with the ``onnx`` package without loading the data; a file that does not contain the word
    ``location`` has none and is not parsed. Without ``onnx`` (or when the file cannot be parsed),
    the ``<file>.data`` and ``<stem>.data`` conventions next to the file count where they exist."""
    path = Path(path)
    if not _mentions(path, b"location"):
        return []
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        names = _external_locations(model.graph)
    except Exception:  # noqa: BLE001 - no onnx package, or a file onnx cannot parse: the conventions
        candidates = (path.with_name(path.name + ".data"), path.with_suffix(".data"))
        return sorted({p for p in candidates if p.is_file()})
    return sorted(path.parent / name for name in names)


def read_sidecar(path: Path, allowed: tuple[str, ...]) -> dict:
    """``<file>.json`` next to the model file (``{}`` when absent)."""
    side = sidecar_path(path)
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"sidecar {side}: not valid JSON ({err}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sidecar {side}: expected a JSON object with keys among {', '.join(allowed)}.")
    for key in data:
        if key not in allowed:
            raise ConfigError(f"sidecar {side}: unknown key {key!r}.{did_you_mean(key, allowed)} "
                              f"Keys: {', '.join(allowed)}.")
    return data


def to_log_probs(probs: torch.Tensor, what: str) -> torch.Tensor:
    """log of probabilities, after checking that they look like probabilities."""
    p = probs.float()
    if p.numel():
        sums = p.sum(dim=1)
        if bool((p < -1e-6).any()) or bool(((sums - 1).abs() > 1e-2).any()):
            worst = float(sums[(sums - 1).abs().argmax()])
            raise ModelError(f"{what}: declared as probabilities but a row sums to {worst:.4g} (or has negative "
                             f"values). If the model returns logits, use output=logits (kind=logits for predictions).")
    return torch.log(p.clamp_min(torch.finfo(torch.float32).tiny))


def split_outputs(raw, heads: dict[str, Head], default_head: str, what: str) -> dict[str, Any]:
    """A model's raw return value -> ``{head: tensor, 'features': tensor}``.

    A tensor is the default head; a tuple/list is (head, features); a dict is keyed by head name
    (plus optional ``features``).
    """
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, (tuple, list)):
        if not raw:
            raise ModelError(f"{what}: the model returned an empty {type(raw).__name__}.")
        out = {default_head: raw[0]}
        if len(raw) > 1:
            out["features"] = raw[1]
        return out
    if isinstance(raw, (torch.Tensor, np.ndarray)):
        if len(heads) > 1:
            raise ModelError(f"{what}: the model returned one tensor but declares heads {list(heads)}; return a "
                             f"dict keyed by head name.")
        return {default_head: raw}
    raise ModelError(f"{what}: the model returned {type(raw).__name__}; expected a tensor, a (logits, features) "
                     f"tuple or a dict keyed by head name.")


class _ClassifierAdapter(ModelAdapter):
    """Shared by the model-file adapters: one head from ``classes``/``head``, ``output`` logits|probs."""

    output_kind = "logits"

    def _set_heads(self, heads: dict[str, tuple[str, ...]], default_head: str, output) -> None:
        self.heads = {name: Head(name, tuple(labels)) for name, labels in heads.items()}
        self.default_head = default_head
        self.output_kind = _output_kind(output, self.name)

    def _finish(self, raw, heads, features, batch) -> dict[str, torch.Tensor]:
        parts = split_outputs(raw, self.heads, self.default_head, f"model {self.name!r}")
        out = {}
        for h in heads:
            t = parts.get(h)
            if t is None:
                raise ModelError(f"model {self.name!r}: the model's output has no entry for head {h!r} "
                                 f"(got {sorted(parts)}).")
            t = torch.as_tensor(t, device=batch.device)
            if t.ndim == 2 and t.shape[1] == len(self.heads[h].labels) and self.output_kind == "probs":
                t = to_log_probs(t, f"model {self.name!r} head {h!r}")
            out[h] = t
        if features:
            f = parts.get("features")
            if f is None:
                raise ModelError(f"model {self.name!r} returns no features. To expose them, make the model return "
                                 f"(logits, features) or a dict with a 'features' entry of shape (B, D).")
            f = torch.as_tensor(f, device=batch.device)
            out["features"] = f.flatten(1) if f.ndim > 2 else f
        return out


def _model_file_options(file, args: dict, what: str, expected: str) -> tuple[Path, dict]:
    path = _existing_file(file, what, expected)
    options = {**read_sidecar(path, MODEL_FILE_KEYS), **{k: v for k, v in args.items() if v is not None}}
    return path, options


def _head_from(options: dict) -> tuple[str, tuple[str, ...]]:
    head = str(options.get("head") or "expression")
    return head, parse_classes(options.get("classes"), head)


# -- TorchScript ------------------------------------------------------------------------------------------
class TorchScriptAdapter(_ClassifierAdapter):
    """Any TorchScript file (torch.jit.save): file=model.pt,size=..,mean=..,std=..,classes=..,output=logits|probs"""

    name = "torchscript"

    def __init__(self, file: str | None = None, size=None, channels=None, mean=None, std=None, scale=None,
                 color_order=None, crop_fraction=None, interpolation=None, classes=None, head=None,
                 output=None, resize=None, antialias=None, grey=None):
        args = dict(size=size, channels=channels, mean=mean, std=std, scale=scale, color_order=color_order,
                    crop_fraction=crop_fraction, interpolation=interpolation, classes=classes, head=head,
                    output=output, resize=resize, antialias=antialias, grey=grey)
        path, options = _model_file_options(file, args, "torchscript", "a TorchScript file written by torch.jit.save")
        super().__init__(file=str(path), **options)
        self.path = path
        self.input_spec = build_input_spec(options, "torchscript")
        head_name, labels = _head_from(options)
        self._set_heads({head_name: labels}, head_name, options.get("output"))
        try:
            with warnings.catch_warnings():  # recent torch marks torch.jit.load deprecated; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises RuntimeError/ValueError/zip errors
            raise ModelError(f"torchscript: {path} could not be loaded with torch.jit.load ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}). Expected a TorchScript file "
                             f"(torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, x), path)); for a "
                             f"state_dict or a pickled nn.Module use the `python` adapter.") from None
        self.module.eval()

    def parameters_for_fingerprint(self):
        return []  # the file's bytes are in model_files (stat-cached), not re-read from the module

    def model_files(self):
        return {"file": self.path, "sidecar": sidecar_path(self.path)}

    def forward(self, batch, heads, features):
        return self._finish(self.module(batch), heads, features, batch)


# -- ONNX --------------------------------------------------------------------------------------------------
_ONNX_HINT = ("Install it with `pip install onnxruntime` (or `pip install 'facebench[models]'`; "
              "onnxruntime-gpu for CUDA).")


class OnnxAdapter(_ClassifierAdapter):
    """Any ONNX file, run with onnxruntime (NCHW float): file=model.onnx,size=..,mean=..,std=..,classes=.."""

    name = "onnx"
    differentiable = False  # onnxruntime: no input gradients

    def __init__(self, file: str | None = None, size=None, channels=None, mean=None, std=None, scale=None,
                 color_order=None, crop_fraction=None, interpolation=None, classes=None, head=None,
                 output=None, resize=None, antialias=None, grey=None):
        args = dict(size=size, channels=channels, mean=mean, std=std, scale=scale, color_order=color_order,
                    crop_fraction=crop_fraction, interpolation=interpolation, classes=classes, head=head,
                    output=output, resize=resize, antialias=antialias, grey=grey)
        path, options = _model_file_options(file, args, "onnx", "an .onnx model file")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(f"the onnx adapter needs onnxruntime, which is not installed. {_ONNX_HINT}") from None
        self._ort = ort
        try:
            self.session = self._session(path, ["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"onnx: {path} could not be loaded by onnxruntime: {err}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"onnx: {path} has {len(inputs)} inputs ({[i.name for i in inputs]}); expected one "
                             f"image batch (N, C, H, W).")
        self._input = inputs[0]
        shape = list(self._input.shape)
        if len(shape) != 4:
            raise ModelError(f"onnx: {path} input {self._input.name!r} has shape {shape}; expected (N, C, H, W).")
        if self._input.type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
            raise ModelError(f"onnx: {path} input {self._input.name!r} has type {self._input.type}; expected float.")
        self._np_dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                          "tensor(double)": np.float64}[self._input.type]
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        # size and channels default to what the file declares
        if options.get("size") in (None, "") and fixed[2] and fixed[3]:
            options["size"] = [fixed[2], fixed[3]]
        if options.get("channels") in (None, "") and fixed[1] in (1, 3):
            options["channels"] = fixed[1]
        super().__init__(file=str(path), **options)
        self.path = path
        self.input_spec = build_input_spec(options, "onnx")
        c, (h, w) = self.input_spec.channels, self.input_spec.size
        if fixed[1] is not None and fixed[1] != c:
            hint = " (the file looks NHWC; export it NCHW)" if fixed[3] == c else ""
            raise ModelError(f"onnx: {path} expects {fixed[1]} channels in dimension 1 but channels={c}{hint}.")
        if (fixed[2] and fixed[2] != h) or (fixed[3] and fixed[3] != w):
            raise ModelError(f"onnx: {path} expects {fixed[2]}x{fixed[3]} inputs but size={h}x{w}.")
        self._fixed_batch = fixed[0]
        head_name, labels = _head_from(options)
        self._set_heads({head_name: labels}, head_name, options.get("output"))

    def _session(self, path, providers):
        return self._ort.InferenceSession(str(path), providers=providers)

    def to(self, device):
        device = torch.device(device)
        if device.type == "cuda" and "CUDAExecutionProvider" in self._ort.get_available_providers():
            self.session = self._session(self.path, ["CUDAExecutionProvider", "CPUExecutionProvider"])
        self.device = device
        return self

    def parameters_for_fingerprint(self):
        return []  # the bytes of the file and of its external data are in model_files

    def model_files(self):
        files = {"file": self.path, "sidecar": sidecar_path(self.path)}
        files.update({f"external_data:{os.path.relpath(p, self.path.parent)}": p
                      for p in onnx_external_data(self.path)})
        return files

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input.name: x})

    def forward(self, batch, heads, features):
        x = np.ascontiguousarray(batch.detach().float().cpu().numpy().astype(self._np_dtype, copy=False))
        fb = self._fixed_batch
        if fb is None or fb == len(x):
            results = self._run(x)
        else:  # a file exported with a fixed batch size: run chunks of that size, padding the last
            chunks = []
            for start in range(0, len(x), fb):
                part = x[start : start + fb]
                n = len(part)
                if n < fb:
                    part = np.concatenate([part, np.zeros((fb - n, *part.shape[1:]), dtype=part.dtype)])
                chunks.append([r[:n] for r in self._run(part)])
            results = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
        raw = [torch.from_numpy(np.asarray(r, dtype=np.float32)) for r in results]
        return self._finish(raw if len(raw) > 1 else raw[0], heads, features, batch)


# -- Python callable -------------------------------------------------------------------------------------
INFO_KEYS = SPEC_KEYS + ("classes", "head", "heads", "default_head", "output")


def load_callable(target: str):
    """``package.module:attr`` or ``path/to/file.py:attr`` -> the object."""
    if not target or ":" not in str(target):
        raise ConfigError(f"python: target must be 'module:callable' or 'path/to/file.py:callable', got {target!r}.")
    module_name, _, attr = str(target).rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ModelError(f"python: {path} does not exist (target {target!r}).")
            name = f"_facebench_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelError(f"python: cannot import {module_name!r} (target {target!r}): {err}. The module must be "
                         f"importable (on sys.path / installed), or give a file path: path/to/file.py:{attr}.") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ModelError(f"python: {module_name!r} has no attribute {attr!r}.{did_you_mean(part, names)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"python: {target!r} is not callable.")
    return obj


class PythonAdapter(_ClassifierAdapter):
    """A Python callable returning (nn.Module, info dict): target=module:callable, other args go to the callable"""

    name = "python"

    def __init__(self, target: str | None = None, **kwargs):
        super().__init__(target=target, **kwargs)
        fn = load_callable(target)
        try:
            result = fn(**kwargs)
        except TypeError as err:
            raise ConfigError(f"python: calling {target} with {kwargs or 'no arguments'} failed: {err}") from None
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise ModelError(f"python: {target} must return (nn.Module, dict); got {type(result).__name__}.")
        self._configure(*result, f"python ({target})")
        source = None
        try:
            source = inspect.getsourcefile(fn)
        except TypeError:
            pass
        self._source = Path(source) if source and Path(source).is_file() else None

    @classmethod
    def from_module(cls, module, info: dict, what: str, name: str = "python", source=None,
                    **settings) -> "PythonAdapter":
        """The adapter of an ``nn.Module`` and its ``info`` dict (the keys a ``target`` returns), validated
        as ``target`` results are; ``what`` names the model in errors, ``source`` is a file whose bytes
        enter the fingerprint, ``settings`` are recorded (``facebench.evaluate`` builds models this way)."""
        self = cls.__new__(cls)
        ModelAdapter.__init__(self, **settings)
        self.name = name
        self._configure(module, info, what)
        self._source = Path(source) if source and Path(source).is_file() else None
        return self

    def _configure(self, module, info, what: str) -> None:
        """Check ``(module, info)`` and set the input spec, heads and module from them."""
        if not isinstance(info, dict):
            raise ModelError(f"{what}: the model info must be a dict with keys {', '.join(INFO_KEYS)}; "
                             f"got {type(info).__name__}.")
        if not isinstance(module, nn.Module):
            raise ModelError(f"{what} returned {type(module).__name__} as the model; expected a torch.nn.Module.")
        for key in info:
            if key not in INFO_KEYS:
                raise ModelError(f"{what}: info key {key!r}.{did_you_mean(key, INFO_KEYS)} "
                                 f"Keys: {', '.join(INFO_KEYS)}.")
        self.info = info
        self.input_spec = build_input_spec(info, what)
        if info.get("heads"):
            if not isinstance(info["heads"], dict):
                raise ModelError(f"{what}: info['heads'] must map head names to class lists.")
            heads = {str(h): parse_classes(c, str(h)) for h, c in info["heads"].items()}
            default = str(info.get("default_head") or info.get("head") or next(iter(heads)))
            if default not in heads:
                raise ModelError(f"{what}: default head {default!r} is not among {list(heads)}.")
        else:
            default = str(info.get("head") or "expression")
            heads = {default: parse_classes(info.get("classes"), default)}
        self._set_heads(heads, default, info.get("output"))
        self.module = module.eval()

    def model_files(self):
        """The callable's source file (files that the callable reads by itself are not covered)."""
        return {"source": self._source}

    def forward(self, batch, heads, features):
        return self._finish(self.module(batch), heads, features, batch)


# -- released predictions --------------------------------------------------------------------------------
class PredictionsAdapter(ModelAdapter):
    """Precomputed logits/probabilities per sample id from a CSV or NPZ: file=PATH,classes=..,kind=logits|probs

    CSV: an ``id`` column and one column per class (column names are class names, mapped to canonical
    names; ``classes=`` picks and orders columns and lets other columns through). NPZ: arrays ``ids``
    and ``logits`` or ``probs`` (N, K), optional ``classes`` and ``features``. Probabilities are stored
    as log-probabilities. Nothing is run: the engine looks rows up by the dataset's sample ids, so the
    file's row order does not matter, and an id missing from the file is an error.
    """

    name = "predictions"
    precomputed = True
    differentiable = False  # stored outputs: nothing to differentiate
    input_spec = InputSpec()

    def __init__(self, file: str | None = None, classes=None, kind: str | None = None, head: str | None = None):
        super().__init__(file=file, classes=classes, kind=kind, head=head)
        path = _existing_file(file, "predictions", "a .csv with an `id` column and one column per class, or an .npz "
                                                   "with arrays `ids` and `logits` or `probs`")
        self.path = path
        head = str(head or "expression")
        if path.suffix.lower() == ".npz":
            ids, scores, labels, feats, kind = self._read_npz(path, classes, kind, head)
        elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
            ids, scores, labels, kind = self._read_csv(path, classes, kind, head)
            feats = None
        else:
            raise ConfigError(f"predictions: {path} must be a .csv or .npz file.")
        if scores.ndim != 2 or scores.shape[0] != len(ids) or scores.shape[1] != len(labels):
            raise ModelError(f"predictions: {path} has scores of shape {scores.shape} for {len(ids)} ids and "
                             f"{len(labels)} classes {labels}.")
        if not np.isfinite(scores).all():
            bad = ids[~np.isfinite(scores).all(axis=1)]
            raise ModelError(f"predictions: {path} has {len(bad)} rows with missing or non-finite values "
                             f"(e.g. {bad[:3].tolist()}).")
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1]
            raise ModelError(f"predictions: {path} lists {len(dup)} sample ids more than once (e.g. {dup[:3].tolist()}).")
        self.kind = kind
        t = torch.from_numpy(scores.astype(np.float64))
        if kind == "probs":
            t = to_log_probs(t, f"predictions {path}")
        self.scores = t.float().numpy()
        self.features = None if feats is None else np.asarray(feats, dtype=np.float32)
        self.feature_dim = None if self.features is None else int(self.features.shape[1])
        self.ids = ids
        self.row = {sid: i for i, sid in enumerate(ids.tolist())}
        self.heads = {head: Head(head, labels)}
        self.default_head = head

    # -- reading --
    @staticmethod
    def _read_npz(path, classes, kind, head):
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as err:  # noqa: BLE001
            raise ModelError(f"predictions: {path} is not a readable .npz ({err}).") from None
        with data:
            names = set(data.files)
            if "ids" not in names:
                raise ModelError(f"predictions: {path} has no `ids` array (arrays: {sorted(names)}); expected `ids` "
                                 f"and `logits` or `probs`.")
            available = [k for k in OUTPUT_KINDS if k in names]
            if not available:
                raise ModelError(f"predictions: {path} has neither a `logits` nor a `probs` array "
                                 f"(arrays: {sorted(names)}).")
            if kind is None:
                if len(available) > 1:
                    raise ConfigError(f"predictions: {path} holds both `logits` and `probs`; pick one with kind=.")
                kind = available[0]
            kind = _output_kind(kind, "predictions", "kind")
            if kind not in names:
                raise ConfigError(f"predictions: kind={kind} but {path} has no `{kind}` array (arrays: {sorted(names)}).")
            ids = np.asarray(data["ids"]).astype(str)
            scores = np.asarray(data[kind], dtype=np.float64)
            file_classes = None
            if "classes" in names:
                file_classes = parse_classes([str(c) for c in np.asarray(data["classes"]).tolist()], head)
            feats = np.asarray(data["features"]) if "features" in names else None
        if classes not in (None, ""):
            labels = parse_classes(classes, head)
            if file_classes is not None and labels != file_classes:
                raise ConfigError(f"predictions: classes={classes!r} gives {labels}, but {path} stores classes "
                                  f"{file_classes}; drop classes= or fix the file.")
        elif file_classes is not None:
            labels = file_classes
        else:
            raise ConfigError(f"predictions: {path} stores no `classes` array; pass classes= (a dataset name such as "
                              f"fer2013, or the column order of `{kind}` as names separated by '|').")
        if feats is not None and (feats.ndim != 2 or len(feats) != len(ids)):
            raise ModelError(f"predictions: {path} `features` has shape {feats.shape}; expected ({len(ids)}, D).")
        return ids, scores, labels, feats, kind

    @staticmethod
    def _read_csv(path, classes, kind, head):
        import pandas as pd

        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        try:
            header = pd.read_csv(path, sep=sep, nrows=0).columns.tolist()
            if "id" not in header:
                raise ModelError(f"predictions: {path} has no `id` column (columns: {header}); expected `id` and "
                                 f"one column per class.")
            df = pd.read_csv(path, sep=sep, dtype={"id": str}, keep_default_na=False, na_values={c: [""] for c in header if c != "id"})
        except ModelError:
            raise
        except Exception as err:  # noqa: BLE001 - pandas parser errors
            raise ModelError(f"predictions: {path} could not be read as CSV ({err}).") from None
        columns = [c for c in df.columns if c != "id"]
        canon = {}
        for c in columns:
            try:
                canon[c] = canonical_name(c) if head == "expression" else str(c).strip()
            except ConfigError:
                canon[c] = None
        if classes not in (None, ""):
            labels = parse_classes(classes, head)
            by_name = {}
            for c in columns:
                if canon[c] is not None:
                    by_name.setdefault(canon[c], c)
            missing = [lab for lab in labels if lab not in by_name]
            if missing:
                raise ModelError(f"predictions: {path} has no column for classes {missing} (columns: {columns}).")
            picked = [by_name[lab] for lab in labels]
        else:
            unknown = [c for c in columns if canon[c] is None]
            if unknown:
                raise ConfigError(f"predictions: {path} columns {unknown} are not class names; name the class columns "
                                  f"with classes=a|b|... (other columns are then ignored).")
            labels = tuple(canon[c] for c in columns)
            dup = sorted({lab for lab in labels if labels.count(lab) > 1})
            if dup:
                raise ConfigError(f"predictions: {path} has several columns for classes {dup}.")
            picked = columns
        try:
            scores = df[picked].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ModelError(f"predictions: {path} class columns {picked} must be numbers ({err}).") from None
        ids = df["id"].to_numpy().astype(str)
        if kind is None:
            looks_like_probs = (len(scores) > 0 and (scores >= 0).all() and (scores <= 1).all()
                                and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))
            if looks_like_probs:
                raise ConfigError(f"predictions: the rows of {path} look like probabilities (they sum to 1); pass "
                                  f"kind=probs (or kind=logits to treat them as logits).")
            kind = "logits"
        return ids, scores, tuple(labels), _output_kind(kind, "predictions", "kind")

    # -- the adapter interface --
    def parameters_for_fingerprint(self):
        return []

    def model_files(self):
        return {"file": self.path}

    def forward(self, batch, heads, features):
        raise ModelError("the predictions adapter holds precomputed outputs and has no network to run; the engine "
                         "looks them up by sample id (predict_ids).")

    def predict_ids(self, ids, heads=None, features: bool = False) -> dict[str, np.ndarray]:
        heads = self.resolve_heads(heads)
        ids = np.asarray(ids).astype(str)
        missing = [sid for sid in ids.tolist() if sid not in self.row]
        if missing:
            raise ModelError(f"predictions: {len(missing)} of {len(ids)} sample ids have no row in {self.path} "
                             f"(e.g. {missing[:5]}); the file has {len(self.row)} rows (e.g. ids "
                             f"{self.ids[:3].tolist()}). Its ids must be the dataset's sample ids.")
        rows = np.fromiter((self.row[sid] for sid in ids.tolist()), dtype=np.int64, count=len(ids))
        out = {h: self.scores[rows] for h in heads}
        if features:
            if self.features is None:
                raise ModelError(f"predictions: features were requested but {self.path} has none (store a "
                                 f"`features` array (N, D) in an .npz).")
            out["features"] = self.features[rows]
        return out
