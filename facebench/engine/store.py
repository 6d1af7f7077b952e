"""The prediction store: per-sample model outputs on disk, keyed by fingerprints.

Layout under the cache folder::

    predictions/<key>/meta.json          what was run (model, preprocessing, dataset, outputs, n)
    predictions/<key>/predictions.npz    ids + one float32 array per output, in dataset order (uint8 label
                                         maps of parsing heads: uint8, and the file deflated)
    predictions/<key>/shards/*.npz       partial results of an unfinished run (resumed on restart):
                                         shard-<index>.npz, or shard-<index>-rank<r>.npz from rank r
                                         of a multi-process run (rank-unique names never collide)

``key`` = hash(model fingerprint, preprocessing fingerprint, dataset-split fingerprint). Every
file is written to a temporary name in the same folder and renamed, so a killed run never leaves
a half-written file behind.

Integrity: ``meta.json`` records the size and BLAKE2b digest of ``predictions.npz``; ``has`` and
``load`` verify them (once per process and file version: a stat signature of size, mtime and
inode skips the hash afterwards; 100 MB hash in about 0.16 s on the 2-core development CPU, a FER2013
split's 100 KB in well under 1 ms). A corrupt, truncated or swapped entry is reported with one
``CacheWarning`` naming it, removed (it is facebench's own file) and computed again. Each shard holds a
``checksum__`` array, the digest of its other arrays; a shard that fails it is skipped (its samples
are run again). Entries written before checksums existed are checked by reading every array.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from facebench.atomic import (  # noqa: F401  (re-exported: they lived here before facebench/atomic.py)
    atomic_save_npz, atomic_write_bytes, atomic_write_text, current_umask, npz_bytes as _npz_bytes)
from facebench.content import default_cache_dir  # the cache root; still importable from here
from facebench.cache_policy import (  # noqa: F401  (re-exported: they lived here before cache_policy.py)
    ENTRY_KEY, CacheWarning, cache_unavailable, reset_cache_warnings, warn_once)
from facebench.fingerprint import hash_object
from facebench.records import Predictions  # defined in records.py; still importable from here

SHARD_CHECKSUM = "checksum__"
_verified: dict[str, tuple] = {}  # file -> (stat signature, checksum) verified in this process
def digest_bytes(data) -> str:
    return "blake2b:" + hashlib.blake2b(data, digest_size=20).hexdigest()


def digest_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return "blake2b:" + h.hexdigest()


def _stat_signature(path: Path) -> tuple:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _has_label_maps(arrays: dict[str, np.ndarray]) -> bool:
    """Whether an entry holds uint8 label maps (parsing heads, (N, S_h, S_w)): those are stored deflated
    (a 512 x 512 map is 256 KiB raw and a few KiB deflated); float outputs stay uncompressed (fast to read)."""
    return any(a.dtype == np.uint8 and a.ndim >= 3 for a in arrays.values())


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """Digest of named arrays: name, dtype, shape and bytes of each, in name order."""
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return "blake2b:" + h.hexdigest()


def _read_shard(path: Path, outputs: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A whole shard, or None when it lacks an output, cannot be read (truncated, empty, not a
    zip: any error), fails its checksum or its arrays disagree on the number of rows."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not all(f"out__{name}" in data for name in outputs):
                return None
            arrays = {name: data[name] for name in data.files}
    except Exception:  # noqa: BLE001 - BadZipFile, EOFError, ValueError, OSError, KeyError, ...
        return None
    checksum = arrays.pop(SHARD_CHECKSUM, None)
    if checksum is not None and str(checksum) != _arrays_digest(arrays):
        return None
    ids = arrays["ids"].astype(str)
    outs = {name: arrays[f"out__{name}"] for name in outputs}
    if any(len(v) != len(ids) for v in outs.values()):
        return None
    return ids, outs


def _check_entry_file(path: Path, meta: dict) -> str | None:
    """What is wrong with a complete entry's ``predictions.npz`` (None: nothing). Hashes it once per
    process and file version (stat signature); entries without a checksum are read whole instead."""
    try:
        signature = (*_stat_signature(path), meta.get("checksum"), meta.get("bytes"))
        if _verified.get(str(path)) == signature:
            return None
        if "checksum" not in meta:  # written before checksums: every array must read back (zip CRC)
            with np.load(path, allow_pickle=False) as data:
                for name in data.files:
                    data[name]
        elif meta.get("bytes") != signature[0]:
            return f"predictions.npz has {signature[0]} bytes, meta.json says {meta.get('bytes')}"
        elif digest_file(path) != meta["checksum"]:
            return "predictions.npz does not match the checksum in meta.json"
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, ValueError, OSError, ...
        return f"predictions.npz cannot be read: {type(err).__name__}: {err}"
    _verified[str(path)] = signature
    return None


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
            meta = json.loads(path.read_text())
        except (OSError, ValueError):  # JSONDecodeError, UnicodeDecodeError
            return None
        return meta if isinstance(meta, dict) else None

    def verified_meta(self, key: str) -> dict | None:
        """``meta`` of a complete entry whose ``predictions.npz`` passes its checksum; a corrupt entry
        is reported (one ``CacheWarning``), removed, and ``None`` returned, so that it is recomputed."""
        meta = self.meta(key)
        path = self.entry_dir(key) / "predictions.npz"
        if meta is None:
            if not (path.is_file() and (self.entry_dir(key) / "meta.json").is_file()):
                return None  # no complete entry
            meta, problem = {}, "meta.json is not a readable JSON object"
        else:
            problem = _check_entry_file(path, meta)
        if problem is None:
            return meta
        what = f"{meta.get('model', '?')} on {meta.get('dataset', '?')}/{meta.get('split', '?')}"
        warn_once(f"corrupt:{path}", f"prediction store entry {key} ({what}) in {self.predictions_dir} is "
                                     f"corrupt ({problem}): removed; its predictions are computed again.")
        for name in ("meta.json", "predictions.npz"):
            try:
                (self.entry_dir(key) / name).unlink(missing_ok=True)
            except OSError:
                pass  # a read-only store: the entry stays unused
        return None

    def has(self, key: str, outputs: list[str]) -> bool:
        meta = self.verified_meta(key)
        return meta is not None and set(outputs) <= set(meta.get("outputs", []))

    def load(self, key: str) -> Predictions:
        meta = self.verified_meta(key)
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
        data = _npz_bytes(arrays, compress=_has_label_maps(arrays))
        atomic_write_bytes(directory / "predictions.npz", data)
        meta = {**meta, "outputs": sorted(predictions.outputs), "n": int(len(predictions.ids)),
                "checksum": digest_bytes(data), "bytes": len(data)}
        atomic_write_bytes(directory / "meta.json", json.dumps(meta, indent=2, sort_keys=True).encode("utf-8"))
        _verified[str(directory / "predictions.npz")] = (*_stat_signature(directory / "predictions.npz"),
                                                         meta["checksum"], meta["bytes"])
        shutil.rmtree(directory / "shards", ignore_errors=True)

    # -- partial entries (resume) -------------------------------------------------------------
    def write_shard(self, key: str, index: int, ids: np.ndarray, outputs: dict[str, np.ndarray],
                    rank: int | None = None) -> None:
        """One shard; ``rank`` (multi-process runs) goes into the name so that ranks never collide."""
        arrays = {"ids": np.asarray(ids).astype(str)}
        arrays.update({f"out__{k}": v for k, v in outputs.items()})
        arrays[SHARD_CHECKSUM] = np.array(_arrays_digest(arrays))
        name = f"shard-{index:06d}.npz" if rank is None else f"shard-{index:06d}-rank{rank:05d}.npz"
        atomic_write_bytes(self.entry_dir(key) / "shards" / name, _npz_bytes(arrays, compress=_has_label_maps(arrays)))

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
        """Remove entries (all, or those of ``keys``); only folders that ``is_entry_dir`` recognises,
        never another file or folder of the cache root (which may be any folder the user named)."""
        removed = 0
        for row in self.entries():
            directory = self.entry_dir(row["key"])
            if (keys is None or row["key"] in keys) and is_entry_dir(directory):
                shutil.rmtree(directory, ignore_errors=True)
                removed += 1
        return removed


def is_entry_dir(directory: Path, data_files: tuple[str, ...] = ("predictions.npz",)) -> bool:
    """Whether ``directory`` is a cache entry facebench wrote: a real folder named like a store key
    (16-64 lowercase hex digits) holding a ``meta.json`` object, a data file, or a ``shards/`` folder
    of ``shard-*.npz`` files."""
    directory = Path(directory)
    if directory.is_symlink() or not directory.is_dir() or not ENTRY_KEY.fullmatch(directory.name):
        return False
    try:
        if isinstance(json.loads((directory / "meta.json").read_text()), dict):
            return True
    except (OSError, ValueError):
        pass
    if any((directory / name).is_file() for name in data_files):
        return True
    shards = directory / "shards"
    return shards.is_dir() and any(shards.glob("shard-*.npz"))
