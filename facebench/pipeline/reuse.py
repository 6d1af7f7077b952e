"""Evaluations reused: a task's protocol result is kept under a key of everything that can change it.

A re-run whose predictions all come from the store would otherwise recompute every bootstrap and fit; this
module lets it read the result back instead, and only when nothing it depends on changed. The key
(blake2b-128 of a canonical JSON) covers:

* the code: the bytes of every ``.py`` file of the facebench package, and the versions of NumPy, SciPy,
  scikit-learn and pandas (the libraries the metrics run on);
* the protocol's fingerprint (name, version, parameters), the head and its labels, seed, resamples, confidence;
* for the task's split and each extra split (by role): the dataset fingerprint (ids, labels, classes, loader
  tag, image content), the bytes of its per-sample attributes and verification pairs, and the bytes of the
  predictions it is evaluated on (ids and every output array), so an adapter with a weak fingerprint
  cannot make a stale result look current.

Only protocols defined inside the facebench package are reused: a plug-in protocol's code is not in the
key, so it is always evaluated.

An entry is ``<root>/<key[:2]>/<key>.json`` (records as ``MetricRecord.to_dict``, details and warnings as
results.json stores them) and, for per-sample outcomes, ``<key>.npz`` (read with ``allow_pickle=False``).
An entry that cannot be read is ignored and recomputed (a warning says so); writing one that fails only warns.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from facebench.atomic import atomic_save_npz, atomic_write_text
from facebench.records import MetricRecord

__all__ = ["EvaluationReuse", "code_fingerprint", "evaluation_key", "reusable"]

FORMAT = 1
_ENTRY = re.compile(r"[0-9a-f]{32}\.(json|npz)")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """blake2b of the facebench package's ``.py`` files (relative path and bytes) and the metric libraries' versions."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    for package in ("numpy", "scipy", "scikit-learn", "pandas"):
        try:
            h.update(f"{package}={metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{package}=absent\n".encode())
    return h.hexdigest()


def _hash_arrays(h, arrays: dict) -> None:
    """Feed named arrays (name, dtype, shape, bytes) to ``h`` in name order; strings as UTF-8 per element."""
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\0".encode())
        if a.dtype.kind in "OUS":
            h.update("\0".join(map(str, a.ravel().tolist())).encode())
        else:
            h.update(np.ascontiguousarray(a).data)


def split_digest(dataset, predictions) -> str:
    """blake2b of a split as a protocol reads it: fingerprint, attributes and pairs
    (``Dataset.annotations_fingerprint``), predictions (None: absent)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(dataset.fingerprint().encode())
    h.update(f"annotations|{dataset.annotations_fingerprint()}".encode())
    if predictions is None:
        h.update(b"no predictions")
    else:
        _hash_arrays(h, {"ids": predictions.ids, **{f"output:{k}": v for k, v in predictions.outputs.items()}})
    return h.hexdigest()


def reusable(protocol) -> bool:
    """Whether ``protocol``'s code is covered by :func:`code_fingerprint` (defined in the facebench package)."""
    return type(protocol).__module__.split(".")[0] == "facebench"


def evaluation_key(protocol, ctx) -> str:
    """The key of ``protocol.evaluate(ctx)`` (see the module docstring)."""
    described = {
        "format": FORMAT, "code": code_fingerprint(), "protocol": protocol.fingerprint(), "head": ctx.head,
        "head_labels": list(ctx.head_labels), "seed": ctx.seed, "n_resamples": ctx.n_resamples,
        "confidence": ctx.confidence, "split": split_digest(ctx.dataset, ctx.predictions),
        "extras": {role: split_digest(e.dataset, e.predictions) for role, e in sorted(ctx.extras.items())},
    }
    if getattr(ctx, "head_scheme", None) is not None:  # landmark heads: the frame and scheme of their points
        described.update(input_size=list(ctx.input_size or ()), head_scheme=ctx.head_scheme)
    text = json.dumps(described, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class EvaluationReuse:
    """Protocol results under ``root`` by :func:`evaluation_key`; ``get`` returns a ``TaskResult`` or None."""

    def __init__(self, root: str | Path, warn: Callable[[str], None]):
        self.root = Path(root)
        self.warn = warn

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / key[:2]
        return folder / f"{key}.json", folder / f"{key}.npz"

    def get(self, key: str):
        from facebench.protocols.base import TaskResult

        doc_path, npz_path = self._paths(key)
        if not doc_path.exists():
            return None
        try:
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT or doc.get("key") != key:
                self.warn(f"a stored evaluation ({doc_path}) has another format or key; evaluating again")
                return None
            samples = None
            if doc["has_samples"]:
                with np.load(npz_path, allow_pickle=False) as z:
                    samples = {name: z[name] for name in z.files}
            return TaskResult(records=[MetricRecord.from_dict(r) for r in doc["records"]], details=doc["details"],
                              warnings=list(doc["warnings"]), samples=samples)
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.warn(f"a stored evaluation ({doc_path}) cannot be read ({type(err).__name__}: {err}); "
                      f"evaluating again")
            return None

    def put(self, key: str, result) -> None:
        from facebench.report.figure_index import as_stored

        doc_path, npz_path = self._paths(key)
        doc = {"format": FORMAT, "key": key, "records": as_stored([r.to_dict() for r in result.records]),
               "details": as_stored(result.details), "warnings": list(result.warnings),
               "has_samples": result.samples is not None}
        try:
            doc_path.parent.mkdir(parents=True, exist_ok=True)
            if result.samples is not None:
                atomic_save_npz(npz_path, {k: np.asarray(v) for k, v in result.samples.items()})
            atomic_write_text(doc_path, json.dumps(doc, sort_keys=True, allow_nan=False))
        except (OSError, TypeError, ValueError) as err:
            self.warn(f"the evaluation could not be stored in {self.root} ({type(err).__name__}: {err}); "
                      f"the run's results are not affected")

    def files(self) -> list[Path]:
        """The entries' files: ``<2 hex>/<32 hex>.json|.npz`` regular files only (never a user's file)."""
        out = []
        try:
            folders = [f for f in self.root.iterdir() if re.fullmatch(r"[0-9a-f]{2}", f.name) and f.is_dir()]
        except OSError:
            return out
        for folder in folders:
            out += [f for f in folder.iterdir() if _ENTRY.fullmatch(f.name) and f.name.startswith(folder.name)
                    and f.is_file() and not f.is_symlink()]
        return sorted(out)

    def clear(self) -> int:
        """Delete every entry (the files of :meth:`files`); returns how many results were removed."""
        files = self.files()
        for f in files:
            f.unlink(missing_ok=True)
        return sum(f.suffix == ".json" for f in files)
