"""The ModelAdapter interface: what a model expects (input spec) and what it returns (heads).

``predict(batch)`` takes a normalised float batch (B, C, H, W) on the adapter's device and returns
``{head_name: logits (B, n_classes)}`` for every requested head, plus ``"features": (B, D)`` when
asked and available. A head of kind ``"landmarks"`` returns points instead: (B, K, 2) float (x, y) in
the engine's input frame (the whole image resized to ``input_spec.size``, 0-based pixel centres), its
``labels`` the K point names and its ``scheme`` the landmark scheme they follow. A head of kind
``"parsing"`` returns a (B, S_h, S_w) uint8 label map per image in that frame (``size`` = (S_h, S_w)),
class ids in the order of its ``labels``; the engine stores it as uint8. Each head declares its label space as canonical class names in the model's
own order; the protocol layer maps them onto a dataset's classes by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from facebench.data.preprocess import InputSpec, Preprocessing
from facebench.errors import ConfigError, ModelError, did_you_mean
from facebench.fingerprint import hash_bytes, hash_object


@dataclass(frozen=True)
class Head:
    """An output head: ``kind`` is 'classification' (logits over ``labels``), 'landmarks' ((B, K, 2)
    points named by ``labels``, in the landmark scheme ``scheme``, a key of
    ``facebench.data.landmark_schemes.SCHEMES`` or the model's own scheme name) or 'parsing' ((B, S_h, S_w)
    uint8 label maps, ``size`` = (S_h, S_w), class ids indexing ``labels``)."""

    name: str
    labels: tuple[str, ...]
    kind: str = "classification"
    scheme: str | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self):
        if (self.kind == "parsing") != (self.size is not None):
            raise ModelError(f"head {self.name!r}: a parsing head needs its label-map size (S_h, S_w), and only a "
                             f"parsing head has one (kind {self.kind!r}, size {self.size!r})")

    def to_dict(self) -> dict:
        out = {"name": self.name, "labels": list(self.labels), "kind": self.kind}
        if self.scheme is not None:  # absent otherwise: the fingerprints of other heads stay as they were
            out["scheme"] = self.scheme
        if self.size is not None:
            out["size"] = [int(v) for v in self.size]
        return out

    def output_shape(self, n: int) -> tuple[int, ...]:
        """The shape ``predict`` returns for ``n`` samples: (n, K, 2) for landmarks, (n, S_h, S_w) for parsing,
        else (n, classes)."""
        if self.kind == "parsing":
            return (n, int(self.size[0]), int(self.size[1]))
        return (n, len(self.labels), 2) if self.kind == "landmarks" else (n, len(self.labels))


class ModelAdapter:
    """Base class of registered models. Subclasses build ``self.module`` and set the fields."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    input_spec: InputSpec
    # the model package's own pipeline (source, resize, grey conversion, crop or alignment) that
    # ``input_spec`` reproduces; None for models without a package (user files: they declare the spec)
    preprocessing: ClassVar[Preprocessing | None] = None
    heads: dict[str, Head]
    default_head: str
    feature_dim: int | None = None
    # per-sample values the forward returns beside any head and the engine stores with it
    # (landmark models: "face_detected" (B,) 1/0 and "face_box" (B, 4) in the input frame)
    head_outputs: ClassVar[tuple[str, ...]] = ()
    # whether ``forward`` gives gradients with respect to its input batch (white-box attacks need them);
    # False for models run outside PyTorch autograd (onnxruntime, dlib) or that only replay stored outputs
    differentiable: ClassVar[bool] = True

    def __init__(self, **settings: Any):
        self.settings = settings
        self.device = torch.device("cpu")
        self._fingerprint: str | None = None

    # -- to implement ---------------------------------------------------------------------
    def forward(self, batch: torch.Tensor, heads: tuple[str, ...], features: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def parameters_for_fingerprint(self):
        """Tensors whose bytes identify the weights (default: the module's state dict)."""
        module = getattr(self, "module", None)
        return [] if module is None else list(module.state_dict().items())

    def model_files(self) -> dict[str, str | Path | None]:
        """Files the model is read from, by role (weights, checkpoint, config, sidecar, external data):
        the bytes of each enter the fingerprint (a missing one as a marker). Default: none."""
        return {}

    def code_objects(self) -> list:
        """Classes whose facebench source files are the adapter's code version: the adapter's classes,
        those of its ``module`` (network definitions) and the input spec's (the preprocessing code)."""
        module = getattr(self, "module", None)
        return (list(type(self).__mro__) + ([] if module is None else list(type(module).__mro__))
                + [type(self.input_spec)])

    # -- shared -----------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> "ModelAdapter":
        self.device = torch.device(device)
        module = getattr(self, "module", None)
        if module is not None:
            module.to(self.device)
        return self

    def compile(self, mode: str | None = None, backend: str = "inductor") -> "ModelAdapter":
        """Route ``predict`` through ``torch.compile(self.forward)`` (``mode``: default,
        reduce-overhead, max-autotune). ``uncompile`` goes back to eager."""
        self._compiled_forward = torch.compile(self.forward, mode=mode, backend=backend)
        return self

    def uncompile(self) -> "ModelAdapter":
        self._compiled_forward = None
        return self

    def channels_last(self) -> "ModelAdapter":
        """Convert the module's 4-D weights to the channels-last memory format (convolutions on
        GPUs and oneDNN prefer it); inputs are converted by the engine."""
        module = getattr(self, "module", None)
        if module is not None:
            module.to(memory_format=torch.channels_last)
        return self

    def eval(self) -> "ModelAdapter":
        module = getattr(self, "module", None)
        if module is not None:
            module.eval()
        return self

    def resolve_heads(self, heads: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
        """``None`` -> the default head; an empty tuple -> no head (features only)."""
        if heads is None or (isinstance(heads, list) and not heads):
            if self.default_head is None:
                raise ConfigError(f"Model {self.name!r} has no classification head (it gives features only); "
                                  f"use it with a protocol that needs features, such as verification.")
            heads = (self.default_head,)
        heads = tuple(heads)
        for h in heads:
            if h not in self.heads:
                raise ConfigError(
                    f"Model {self.name!r} has no head {h!r}.{did_you_mean(h, self.heads)} "
                    f"Heads: {', '.join(self.heads)}."
                )
        return heads

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor, heads: tuple[str, ...] | None = None,
                features: bool = False) -> dict[str, torch.Tensor]:
        heads = self.resolve_heads(heads)
        out = (getattr(self, "_compiled_forward", None) or self.forward)(batch, heads, features)
        n = batch.shape[0]
        for h in heads:
            t = out.get(h)
            expected = self.heads[h].output_shape(n)
            if t is None or tuple(t.shape) != expected:
                got = None if t is None else tuple(t.shape)
                what = {"landmarks": "points", "parsing": "classes of a label map"}.get(self.heads[h].kind, "classes")
                raise ModelError(
                    f"Model {self.name!r} head {h!r} returned shape {got}; it declares {len(self.heads[h].labels)} "
                    f"{what} {self.heads[h].labels}, so the expected shape is {expected}."
                )
        missing = [o for o in self.head_outputs if heads and (o not in out or out[o].shape[0] != n)]
        if missing:
            raise ModelError(f"Model {self.name!r} declares the per-sample outputs {self.head_outputs} beside its "
                             f"heads but returned none (or not {n} rows) for {missing}.")
        if features:
            f = out.get("features")
            if f is None or f.ndim != 2 or f.shape[0] != n:
                raise ModelError(f"Model {self.name!r} was asked for features but returned "
                                 f"{None if f is None else tuple(f.shape)}; expected ({n}, D).")
        return out

    def fingerprint(self) -> str:
        """Hash of the weights' bytes, the bytes of every model file (``model_files``, through the stat
        cache of ``facebench.content``), the adapter's code version (the source files of the facebench
        modules that define it, ``code_objects``), the adapter settings, heads and input spec."""
        if self._fingerprint is None:
            from facebench.content import code_digest, file_digests

            chunks = []
            for key, tensor in self.parameters_for_fingerprint():
                chunks.append(key.encode())
                chunks.append(tensor.detach().cpu().contiguous().numpy().tobytes())
            weights = hash_bytes(chunks)
            files = {role: str(Path(path).expanduser()) for role, path in self.model_files().items() if path}
            digests = file_digests(list(files.values()))
            self._fingerprint = hash_object({
                "adapter": type(self).__name__,
                "weights": weights,
                "files": {role: d.tobytes().hex() for role, d in zip(files, digests)},
                "code": code_digest(self.code_objects()),
                "settings": {k: v for k, v in self.settings.items() if k != "device"},
                "heads": {k: h.to_dict() for k, h in self.heads.items()},
                "input": self.input_spec.to_dict(),
            })
        return self._fingerprint

    def describe(self) -> dict:
        return {
            "name": self.name,
            "adapter": type(self).__name__,
            "settings": self.settings,
            "heads": {k: h.to_dict() for k, h in self.heads.items()},
            "default_head": self.default_head,
            "input_spec": self.input_spec.to_dict(),
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "feature_dim": self.feature_dim,
            "fingerprint": self.fingerprint(),
        }


def parse_model_args(text: str | None) -> dict[str, Any]:
    """``key=value,key2=value2`` -> dict; values parsed as YAML scalars (numbers, booleans)."""
    from facebench.safe_yaml import load as load_yaml

    if not text:
        return {}
    out: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(f"--model-args expects key=value pairs separated by commas; got {part!r}.")
        key, value = part.split("=", 1)
        out[key.strip()] = load_yaml(value.strip(), f"--model-args {key.strip()}") if value.strip() else ""
    return out
