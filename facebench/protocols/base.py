"""Protocol interface: a pure function of stored predictions and dataset metadata.

A protocol declares what it needs (which heads, whether features are needed), validates its
parameters (unknown keys get a did-you-mean), and turns predictions into a ``TaskResult``:
metric records (value, CI, n, conventions) plus details (tables, confusion matrices) for reports.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from facebench.data.dataset import Dataset
from facebench.records import Predictions
from facebench.errors import ConfigError, did_you_mean
from facebench.fingerprint import hash_object
from facebench.records import MetricRecord  # noqa: F401  (protocols build their records from here)
from facebench.records import Requirements
from facebench.records import SplitRef  # noqa: F401  (protocols name their other splits with it)


@dataclass
class TaskResult:
    records: list[MetricRecord]
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # per-sample outcomes for paired tests in `facebench compare`: {"ids", "y_true", "y_pred"} (int indices
    # into details["label_space"]); written to the run folder's samples.npz
    samples: dict | None = None


@dataclass
class ExtraSplit:
    dataset: Dataset
    predictions: Predictions | None = None


@dataclass
class EvalContext:
    """Everything a protocol may read: the split, its aligned predictions, the model's heads, and the
    other splits it declared in ``requires`` (``extras[role]``)."""

    dataset: Dataset
    predictions: Predictions
    head: str
    head_labels: tuple[str, ...]
    seed: int = 0
    n_resamples: int = 1000
    confidence: float = 0.95
    extras: dict = field(default_factory=dict)
    # landmark protocols: the engine's input size (InputSpec.size, (h, w)) and the head's landmark scheme
    input_size: tuple | None = None
    head_scheme: str | None = None


class Protocol:
    """Base class. Subclasses define ``name``, ``version``, a ``Params`` dataclass and ``evaluate``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    RANGES: ClassVar[dict] = {}  # parameter -> (low, high), inclusive; None = unbounded on that side
    # what the protocol reads of each other split (``requires``), by role (the part before any ':', so
    # 'target' covers 'target:KDEF'): dataset capabilities (records.CAPABILITIES) checked by `validate`
    ROLE_NEEDS: ClassVar[dict] = {}

    @dataclass
    class Params:
        head: str | None = None

    def __init__(self, **params: Any):
        names = {f.name: f for f in dataclasses.fields(self.Params)}
        for key in params:
            if key not in names:
                raise ConfigError(
                    f"Protocol {self.name!r} has no parameter {key!r}.{did_you_mean(key, names)} "
                    f"Parameters: {', '.join(names)}."
                )
        self.params = self.Params(**params)
        hints = typing.get_type_hints(self.Params)
        for key, f in names.items():
            check = f.metadata.get("choices")
            value = getattr(self.params, key)
            _check_param(self.name, key, value, hints.get(key, Any), self.RANGES.get(key))
            if check and value not in check:
                raise ConfigError(f"Protocol {self.name!r}: {key} must be one of {', '.join(map(str, check))}; "
                                  f"got {value!r}.{did_you_mean(value, check)}")

    def requirements(self, task=None) -> Requirements:
        """What this protocol needs, as data (heads, features, dataset capabilities, fit split, unknowns);
        checked by ``facebench validate`` and before ``run`` loads a model. ``task`` may be None."""
        return Requirements(head=True, head_name=getattr(self.params, "head", None))

    def needs(self) -> dict:
        """Compatibility view of ``requirements()`` that the runner reads: {'features': bool, 'head': bool}."""
        req = self.requirements()
        return {"features": req.features} if req.head else {"features": req.features, "head": False}

    def requires(self, task) -> dict[str, SplitRef]:
        """Other dataset splits this task needs, by role (default: none). ``task`` is the suite task,
        so a role can default to the task's own dataset with another split."""
        return {}

    def split_needs(self, role: str) -> frozenset:
        """The dataset capabilities this protocol reads of the split it names ``role`` (``ROLE_NEEDS``)."""
        return frozenset(self.ROLE_NEEDS.get(role.split(":", 1)[0], ()))

    def fingerprint(self) -> str:
        return hash_object({"protocol": self.name, "version": self.version,
                            "params": dataclasses.asdict(self.params)})

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        raise NotImplementedError


_SIMPLE_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
                 dict: "a mapping"}


def _type_ok(value, tp) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_param(protocol: str, key: str, value, hint, bounds) -> None:
    """Type (from the Params annotation) and range (``Protocol.RANGES``) of one parameter value."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in args:
        return
    simple = [t for t in args if t in _SIMPLE_TYPES]
    if simple and len(simple) == len([t for t in args if t is not type(None)]) and \
            not any(_type_ok(value, t) for t in simple):
        want = " or ".join(_SIMPLE_TYPES[t] for t in simple) + (" (or null)" if type(None) in args else "")
        raise ConfigError(f"Protocol {protocol!r}: {key} must be {want}; got {value!r} ({type(value).__name__}).")
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = bounds
        if (low is not None and value < low) or (high is not None and value > high):
            rng = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            raise ConfigError(f"Protocol {protocol!r}: {key} must lie in {rng}; got {value!r}.")


SPLIT_REF_KEYS = ("dataset", "split", "path", "dataset_args", "name")

#: dataset_args that perturb the task's own test data (corruptions, adversarial inputs): a split named on the
#: same dataset (a fit split, a reference) inherits the task's other dataset_args but not these.
PERTURBATION_ARGS = ("transform", "attack")


def split_ref(value: Any, where: str, task=None, **flags: bool) -> SplitRef:
    """A ``SplitRef`` from a suite parameter: ``{dataset, split, path, dataset_args}`` (``name`` is
    allowed and ignored here) or a bare split name. Without ``dataset`` it is the task's own dataset.
    On the task's own dataset, ``path`` and ``dataset_args`` default to the task's, less its
    :data:`PERTURBATION_ARGS`: detectors are fitted on, and corrupted test data is compared with, clean
    data (name ``dataset_args`` on the split to perturb it too)."""
    if isinstance(value, str):
        value = {"split": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(SPLIT_REF_KEYS)} (or a split name); "
                          f"got {value!r}.")
    for key in value:
        if key not in SPLIT_REF_KEYS:
            raise ConfigError(f"{where} has no key {key!r}.{did_you_mean(key, SPLIT_REF_KEYS)} "
                              f"Keys: {', '.join(SPLIT_REF_KEYS)}.")
    same = task is not None and value.get("dataset", task.dataset) == task.dataset
    dataset = value.get("dataset", task.dataset if task is not None else None)
    if not dataset or "split" not in value:
        raise ConfigError(f"{where} needs `dataset` and `split` (got {value!r}).")
    path = value.get("path", task.path if same else None)
    inherited = {k: v for k, v in task.dataset_args.items() if k not in PERTURBATION_ARGS} if same else {}
    args = value.get("dataset_args", inherited) or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{where}: dataset_args must be a mapping; got {args!r}.")
    return SplitRef(str(dataset), str(value["split"]), path, dict(args), **flags)


def flipped_ref(task, protocol: str) -> SplitRef:
    """The task's split mirrored, for flip-sum embeddings: its own transforms, then ``hflip`` (the mirror of a
    corrupted image is corrupted too). Refused for a split with a declared ``detector`` (detection reads the
    untransformed files) or an ``attack`` (it would be made anew on the mirrored images, not mirrored)."""
    from facebench.data.transforms import with_flip

    why = {"detector": "detection reads the untransformed image files",
           "attack": "the mirrored view would be attacked anew, not mirrored"}
    for key, reason in why.items():
        if key in task.dataset_args:
            raise ConfigError(f"task {task.name!r}: {protocol} with `flip: true` cannot mirror a split with a "
                              f"declared `{key}` ({reason}); set `flip: false`.")
    args = {**task.dataset_args, "transform": with_flip(task.dataset_args.get("transform"))}
    return SplitRef(task.dataset, task.split, task.path, args, predictions=True, features=True)


def choice(default, choices):
    """A dataclass field restricted to ``choices`` (checked in Protocol.__init__)."""
    return field(default=default, metadata={"choices": tuple(choices)})
