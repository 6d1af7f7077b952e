"""The contracts every part of facebench speaks: small frozen dataclasses.

``MetricRecord``: one number a protocol computed, with what a reader needs to judge it -- its
direction (``higher_is_better``) and unit, set by the protocol that computed it (reports and
``facebench compare`` read them and never guess from a metric's name), its CI, sample count and
conventions. In results.json it is one entry of ``records`` (plus the run's task / protocol /
model / fingerprints keys, added by the runner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from facebench.errors import ModelError

#: Units a metric record may carry, and how a report prints them.
UNITS = {
    "fraction": "a share of samples in [0, 1] (accuracy, recall, F1, CS@k); printed as a percentage",
    "percent": "a value already in percent; printed as is",
    "rate": "a rate or probability in [0, 1] printed as a plain number (FPR, FMR, TAR, ECE)",
    "score": "a unitless score (AUROC, OSCR, correlation, R2, min/max disparity ratio, FDR, NLL in nats)",
    "years": "a difference of ages in years (MAE, RMSE of age)",
    "count": "a number of items",
    "seconds": "a duration in seconds",
    "ratio": "a ratio of two quantities (imbalance ratio, SER)",
}

#: Units printed as a percentage (value x 100) in leaderboards.
PERCENT_DISPLAY = frozenset({"fraction"})


def _finite_or_none(x):
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class MetricRecord:
    """One metric a protocol computed. ``higher_is_better`` and ``unit`` have no default: the
    protocol that computes a metric says which way is better and what the number measures."""

    metric: str
    value: float | None
    ci: tuple[float, float] | None = field(default=None, hash=False)
    n: int | None = None
    conventions: dict = field(default_factory=dict, hash=False)
    headline: bool = False
    higher_is_better: bool = field(default=None, kw_only=True)  # type: ignore[assignment]
    unit: str = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self):
        if not isinstance(self.higher_is_better, bool):
            raise TypeError(f"MetricRecord {self.metric!r}: higher_is_better must be True or False (set by the "
                            f"protocol that computes it); got {self.higher_is_better!r}")
        if self.unit not in UNITS:
            raise TypeError(f"MetricRecord {self.metric!r}: unit must be one of {', '.join(UNITS)}; "
                            f"got {self.unit!r}")

    def to_dict(self) -> dict:
        out = {"metric": self.metric, "value": _finite_or_none(self.value), "n": self.n, "headline": self.headline,
               "higher_is_better": self.higher_is_better, "unit": self.unit}
        if self.ci is not None:
            lo, hi = self.ci
            out["ci"] = [_finite_or_none(lo), _finite_or_none(hi)]
        else:
            out["ci"] = None
        out["conventions"] = self.conventions
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "MetricRecord":
        """Inverse of ``to_dict`` (extra keys such as ``task`` or ``fingerprints`` are ignored);
        ``None`` values read back as ``nan``."""
        ci = data.get("ci")
        value = data.get("value")
        return cls(data["metric"], float("nan") if value is None else float(value),
                   None if ci is None else tuple(float("nan") if v is None else float(v) for v in ci),
                   data.get("n"), dict(data.get("conventions") or {}), bool(data.get("headline", False)),
                   higher_is_better=data.get("higher_is_better"), unit=data.get("unit"))


@dataclass(frozen=True)
class Predictions:
    """The predictions of one dataset split: per-sample outputs aligned with ``ids`` (``outputs[name]``
    has one row per id). The engine writes them to the prediction store; protocols read them."""

    ids: np.ndarray
    outputs: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.ids)
        bad = {k: len(v) for k, v in self.outputs.items() if len(v) != n}
        if bad:
            raise ModelError(f"predictions of {n} samples have outputs with other row counts: {bad}")

    def align(self, ids: np.ndarray) -> "Predictions":
        """Reorder rows to follow ``ids``; raises if any id has no prediction."""
        ids = np.asarray(ids).astype(str)
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):
            return self
        position = {sid: i for i, sid in enumerate(self.ids.tolist())}
        missing = [sid for sid in ids.tolist() if sid not in position]
        if missing:
            raise KeyError(f"{len(missing)} samples have no stored prediction (e.g. {missing[:3]})")
        order = np.fromiter((position[s] for s in ids.tolist()), dtype=np.int64, count=len(ids))
        return Predictions(ids, {k: v[order] for k, v in self.outputs.items()}, self.meta)


@dataclass(frozen=True)
class ResultRecord:
    """One metric of one task of a run: a ``MetricRecord`` (``.record``) with where it was computed
    (task, dataset, split, protocol, model). ``facebench.evaluate`` returns these in ``Results.records``."""

    task: str
    dataset: str
    split: str
    protocol: str
    model: str
    record: MetricRecord
    fingerprints: dict = field(default_factory=dict, hash=False, compare=False)

    def __getattr__(self, name):  # metric, value, ci, n, conventions, headline, higher_is_better, unit
        if name.startswith("__") or name == "record":
            raise AttributeError(name)
        return getattr(self.record, name)

    @classmethod
    def from_dict(cls, row: dict) -> "ResultRecord":
        """One entry of results.json ``records``."""
        return cls(str(row["task"]), str(row["dataset"]), str(row["split"]), str(row["protocol"]),
                   str(row.get("model", "")), MetricRecord.from_dict(row), dict(row.get("fingerprints") or {}))


#: The columns of ``Results.to_pandas()``, in order.
RESULT_COLUMNS = ("task", "dataset", "split", "protocol", "metric", "value", "ci_low", "ci_high",
                  "higher_is_better", "unit", "conventions", "model", "n", "headline")


@dataclass
class Results:
    """What ``facebench.evaluate`` returns: ``records`` (one ``ResultRecord`` per task x metric),
    ``tasks`` (each task's row of results.json: status, reason, details, ...), ``exit_code`` (as
    ``facebench run`` would exit), ``out_dir`` (the run folder, or None when nothing was kept),
    ``leaderboard`` (markdown) and the whole ``results`` / ``manifest`` dicts."""

    records: list
    tasks: list
    exit_code: int
    out_dir: object  # pathlib.Path or None
    leaderboard: str
    results: dict = field(repr=False, default_factory=dict)
    manifest: dict = field(repr=False, default_factory=dict)

    @classmethod
    def from_run(cls, results: dict, manifest: dict, leaderboard: str, exit_code: int, out_dir) -> "Results":
        return cls([ResultRecord.from_dict(r) for r in results.get("records", [])], list(results.get("tasks", [])),
                   int(exit_code), out_dir, leaderboard, results, manifest)

    def to_rows(self) -> list[dict]:
        """One dict per task x metric with the ``RESULT_COLUMNS`` (``conventions`` as a dict)."""
        rows = []
        for r in self.records:
            lo, hi = r.ci if r.ci is not None else (float("nan"), float("nan"))
            rows.append({"task": r.task, "dataset": r.dataset, "split": r.split, "protocol": r.protocol,
                         "metric": r.metric, "value": r.value, "ci_low": lo, "ci_high": hi,
                         "higher_is_better": r.higher_is_better, "unit": r.unit,
                         "conventions": dict(r.conventions), "model": r.model, "n": r.n, "headline": r.headline})
        return rows

    def to_pandas(self):
        """A ``pandas.DataFrame``: one row per task x metric, columns ``RESULT_COLUMNS`` (a missing CI is NaN)."""
        import pandas as pd

        return pd.DataFrame(self.to_rows(), columns=list(RESULT_COLUMNS))

    def __repr__(self) -> str:
        return (f"Results({len(self.records)} records over {len(self.tasks)} tasks, exit_code={self.exit_code}, "
                f"out_dir={self.out_dir!r})")


# -- what a protocol needs, as data (checked by `facebench validate` before any model loads) ------------------
CAPABILITIES = ("labels", "pairs", "attributes")  # what a dataset loader can declare it provides
UNKNOWN_SOURCES = ("none", "splits", "classes", "dataset-classes", "leave-one-out", "not-needed")


@dataclass(frozen=True)
class Requirements:
    """What one task of a protocol needs, declared before anything is loaded.

    ``head``: a model output head (logits or a regression value; ``head_name`` the one asked for, None for the
    model's default; ``head_kind`` the kind of head the protocol reads, e.g. "parsing", which picks among the
    model's heads when none is named); ``features``: the model's embedding/features; ``labels`` / ``pairs`` / ``attributes``:
    dataset capabilities (``attribute_names`` the attributes read, when known); ``fit_split``: a second split
    whose predictions a detector or probe is fitted on; ``unknowns``: where an open-set protocol's unknown
    samples come from (``UNKNOWN_SOURCES``; ``none`` = nowhere, an error)."""

    head: bool = True
    head_name: str | None = None
    head_kind: str | None = None
    features: bool = False
    labels: bool = True
    pairs: bool = False
    attributes: bool = False
    attribute_names: tuple = ()
    fit_split: bool = False
    unknowns: str = "not-needed"
    unknown_classes: tuple = ()  # the task's dataset classes an open-set protocol names unknown (or holds out)

    def capabilities(self) -> frozenset:
        """The dataset capabilities (``CAPABILITIES``) these requirements ask of the task's dataset."""
        wanted = {"labels": self.labels, "pairs": self.pairs, "attributes": self.attributes}
        return frozenset(k for k, v in wanted.items() if v)


# -- one reference to a dataset split, and one task's outcome --------------------------------------------------
@dataclass(frozen=True)
class SplitRef:
    """One dataset split: ``dataset`` (registry name), ``split``, ``path`` (None: the loader's default under the
    data root) and ``dataset_args``. A suite task reads its own split through ``Task.ref``; a protocol names the
    other splits it needs (a fit split, cross-domain targets, unknown sets) with the same record, plus what it
    reads of them: ``predictions`` (False: labels only), ``features``, and ``optional`` (with
    ``missing_data: skip`` absent data drops this split, not the task). ``key()`` identifies the data alone:
    each split is loaded, scanned and predicted once per run whoever asks for it."""

    dataset: str
    split: str
    path: str | None = None
    dataset_args: dict = field(default_factory=dict, hash=False)
    predictions: bool = True
    features: bool = False
    optional: bool = False

    def key(self) -> str:
        from facebench.fingerprint import hash_object

        return hash_object([self.dataset, self.path, self.dataset_args, self.split])

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "split": self.split, "path": self.path,
                "dataset_args": dict(self.dataset_args)}


TASK_STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class TaskOutcome:
    """One task of a run as results.json records it (``to_dict()`` is its row of ``tasks``).

    ``task``: the suite task as run (name, dataset, split, protocol, params, dataset_args, path); ``status``:
    ``ok`` (evaluated: ``details`` and ``warnings``), ``failed`` (the protocol raised: ``reason``) or ``skipped``
    (never evaluated: ``reason``; nothing else is recorded). ``head``, ``fingerprints`` and ``n`` (samples
    evaluated) describe what was evaluated; ``extra_splits`` the other splits read (role -> split and ``n``),
    ``skipped_extra_splits`` optional ones left out (role -> why), ``bad_images`` the unreadable files left out,
    ``detection`` the split's declared face detector and its counts (``facebench.pipeline.detect``),
    ``sample_counts`` samples evaluated, left out and without a face, overall and per group
    (``facebench.pipeline.counts``)."""

    task: dict
    status: str
    reason: str = ""
    head: str | None = None
    fingerprints: dict = field(default_factory=dict, hash=False)
    n: int | None = None
    extra_splits: dict | None = field(default=None, hash=False)
    skipped_extra_splits: dict | None = field(default=None, hash=False)
    bad_images: dict | None = field(default=None, hash=False)
    detection: dict | None = field(default=None, hash=False)
    sample_counts: dict | None = field(default=None, hash=False)
    details: dict = field(default_factory=dict, hash=False)
    warnings: tuple = ()

    def __post_init__(self):
        assert self.status in TASK_STATUSES, f"task status {self.status!r} is not one of {TASK_STATUSES}"

    def to_dict(self) -> dict:
        row = {**self.task, "status": self.status}
        if self.status == "skipped":
            return {**row, "reason": self.reason}
        row.update(head=self.head, fingerprints=self.fingerprints, n=self.n)
        optional = {"extra_splits": self.extra_splits, "skipped_extra_splits": self.skipped_extra_splits,
                    "bad_images": self.bad_images, "detection": self.detection, "sample_counts": self.sample_counts}
        row.update({k: v for k, v in optional.items() if v})
        if self.status == "failed":
            return {**row, "reason": self.reason}
        return {**row, "details": self.details, "warnings": list(self.warnings)}
