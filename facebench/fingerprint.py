"""Stable content hashes (fingerprints) for datasets, models, preprocessing and protocols.

A fingerprint is the first 16 hex digits of SHA-256 over a canonical JSON encoding
(sorted keys, no whitespace), so equal settings give equal fingerprints on every machine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default)


def _default(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)


def hash_object(obj: Any, length: int = 16) -> str:
    """Fingerprint of a JSON-able object."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def hash_bytes(chunks, length: int = 16) -> str:
    """Fingerprint of a sequence of byte strings (e.g. weight tensors)."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:length]
