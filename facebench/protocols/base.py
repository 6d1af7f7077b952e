"""Protocol interface: a pure function of stored predictions and dataset metadata.

A protocol declares what it needs (which heads, whether features are needed), validates its
parameters (unknown keys get a did-you-mean), and turns predictions into a ``TaskResult``:
metric records (value, CI, n, conventions) plus details (tables, confusion matrices) for reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from facebench.data.dataset import Dataset
from facebench.engine.store import Predictions
from facebench.errors import ConfigError, did_you_mean
from facebench.fingerprint import hash_object


@dataclass
class MetricRecord:
    metric: str
    value: float
    ci: tuple[float, float] | None = None
    n: int | None = None
    conventions: dict = field(default_factory=dict)
    headline: bool = False

    def to_dict(self) -> dict:
        value = None if self.value is None or not np.isfinite(self.value) else float(self.value)
        out = {"metric": self.metric, "value": value, "n": self.n, "headline": self.headline}
        if self.ci is not None:
            lo, hi = self.ci
            out["ci"] = [None if not np.isfinite(lo) else float(lo), None if not np.isfinite(hi) else float(hi)]
        else:
            out["ci"] = None
        out["conventions"] = self.conventions
        return out


@dataclass
class TaskResult:
    records: list[MetricRecord]
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class EvalContext:
    """Everything a protocol may read: the split, its aligned predictions and the model's heads."""

    dataset: Dataset
    predictions: Predictions
    head: str
    head_labels: tuple[str, ...]
    seed: int = 0
    n_resamples: int = 1000
    confidence: float = 0.95


class Protocol:
    """Base class. Subclasses define ``name``, ``version``, a ``Params`` dataclass and ``evaluate``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

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
        for key, f in names.items():
            check = f.metadata.get("choices")
            value = getattr(self.params, key)
            if check and value not in check:
                raise ConfigError(f"Protocol {self.name!r}: {key} must be one of {', '.join(map(str, check))}; "
                                  f"got {value!r}.{did_you_mean(value, check)}")

    def needs(self) -> dict:
        """What the engine must store: {'features': bool}. Heads come from ``params.head``."""
        return {"features": False}

    def fingerprint(self) -> str:
        return hash_object({"protocol": self.name, "version": self.version,
                            "params": dataclasses.asdict(self.params)})

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        raise NotImplementedError


def choice(default, choices):
    """A dataclass field restricted to ``choices`` (checked in Protocol.__init__)."""
    return field(default=default, metadata={"choices": tuple(choices)})
