"""The prediction store: per-sample model outputs on disk, keyed by fingerprints.

Layout under the cache folder::

    predictions/<key>/meta.json          what was run (model, preprocessing, dataset, outputs, n)
    predictions/<key>/predictions.npz    ids + one float32 array per output, in dataset order
    predictions/<key>/shards/*.npz       partial results of an unfinished run (resumed on restart):
                                         shard-<index>.npz, or shard-<index>-rank<r>.npz from rank r
                                         of a multi-process run (rank-unique names never collide)

``key`` = hash(model fingerprint, preprocessing fingerprint, dataset-split fingerprint). Every
file is written to a temporary name in the same folder and renamed, so a killed run never leaves
a half-written file behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facebench.fingerprint import hash_object


def default_cache_dir() -> Path:
    """``FACEBENCH_CACHE``, else ``$XDG_CACHE_HOME/facebench``, else ``~/.cache/facebench``."""
    env = os.environ.get("FACEBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facebench"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class Predictions:
    """Per-sample outputs aligned with ``ids``: ``outputs[name]`` has one row per id."""

    ids: np.ndarray
    outputs: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.ids)
        bad = {k: len(v) for k, v in self.outputs.items() if len(v) != n}
        if bad:
            raise ValueError(f"predictions of {n} samples have outputs with other row counts: {bad}")

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


def _read_shard(path: Path, outputs: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A whole shard, or None when it lacks an output, cannot be read (truncated, empty, not a
    zip: any error) or its arrays disagree on the number of rows."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not all(f"out__{name}" in data for name in outputs):
                return None
            ids = data["ids"].astype(str)
            outs = {name: data[f"out__{name}"] for name in outputs}
    except Exception:  # noqa: BLE001 - BadZipFile, EOFError, ValueError, OSError, KeyError, ...
        return None
    if any(len(v) != len(ids) for v in outs.values()):
        return None
    return ids, outs


class PredictionStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.predictions_dir = self.root / "predictions"

    @staticmethod
    def key(model_fp: str, preprocess_fp: str, dataset_fp: str) -> str:
        return hash_object({"model": model_fp, "preprocess": preprocess_fp, "dataset": dataset_fp}, length=24)

    def entry_dir(self, key: str) -> Path:
        return self.predictions_dir / key

    # -- complete entries ---------------------------------------------------------------------
    def meta(self, key: str) -> dict | None:
        path = self.entry_dir(key) / "meta.json"
        if not path.exists() or not (self.entry_dir(key) / "predictions.npz").exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def has(self, key: str, outputs: list[str]) -> bool:
        meta = self.meta(key)
        return meta is not None and set(outputs) <= set(meta.get("outputs", []))

    def load(self, key: str) -> Predictions:
        meta = self.meta(key)
        if meta is None:
            raise KeyError(f"no complete prediction entry {key} in {self.predictions_dir}")
        with np.load(self.entry_dir(key) / "predictions.npz", allow_pickle=False) as data:
            ids = data["ids"].astype(str)
            outputs = {name: data[f"out__{name}"] for name in meta["outputs"]}
        return Predictions(ids, outputs, meta)

    def save(self, key: str, predictions: Predictions, meta: dict) -> None:
        arrays = {"ids": np.asarray(predictions.ids).astype(str)}
        arrays.update({f"out__{k}": v for k, v in predictions.outputs.items()})
        directory = self.entry_dir(key)
        atomic_save_npz(directory / "predictions.npz", arrays)
        meta = {**meta, "outputs": sorted(predictions.outputs), "n": int(len(predictions.ids))}
        atomic_write_text(directory / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
        shutil.rmtree(directory / "shards", ignore_errors=True)

    # -- partial entries (resume) -------------------------------------------------------------
    def write_shard(self, key: str, index: int, ids: np.ndarray, outputs: dict[str, np.ndarray],
                    rank: int | None = None) -> None:
        """One shard; ``rank`` (multi-process runs) goes into the name so that ranks never collide."""
        arrays = {"ids": np.asarray(ids).astype(str)}
        arrays.update({f"out__{k}": v for k, v in outputs.items()})
        name = f"shard-{index:06d}.npz" if rank is None else f"shard-{index:06d}-rank{rank:05d}.npz"
        atomic_save_npz(self.entry_dir(key) / "shards" / name, arrays)

    def read_shards(self, key: str, outputs: list[str]) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], int]:
        """Shards of an interrupted run that hold every requested output: (ids, outputs, next index).
        Shards of every rank of a multi-process run count: a run resumes under any number of processes."""
        shard_dir = self.entry_dir(key) / "shards"
        ids, outs, next_index = [], {name: [] for name in outputs}, 0
        if not shard_dir.exists():
            return ids, outs, next_index
        for path in sorted(shard_dir.glob("shard-*.npz")):
            next_index = max(next_index, int(path.stem.split("-")[1]) + 1)
            shard = _read_shard(path, outputs)
            if shard is None:
                continue  # unreadable, truncated or inconsistent shard: its samples are simply run again
            ids.append(shard[0])
            for name in outputs:
                outs[name].append(shard[1][name])
        return ids, outs, next_index

    # -- housekeeping ---------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        rows = []
        if not self.predictions_dir.exists():
            return rows
        for directory in sorted(self.predictions_dir.iterdir()):
            if not directory.is_dir():
                continue
            size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
            meta = self.meta(directory.name)
            shards = len(list((directory / "shards").glob("*.npz"))) if (directory / "shards").exists() else 0
            rows.append({"key": directory.name, "meta": meta, "bytes": size, "partial_shards": shards})
        return rows

    def clear(self, keys: list[str] | None = None) -> int:
        removed = 0
        for row in self.entries():
            if keys is None or row["key"] in keys:
                shutil.rmtree(self.entry_dir(row["key"]), ignore_errors=True)
                removed += 1
        return removed
