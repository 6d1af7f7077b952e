"""``--limit N``: a deterministic subset of a split for quick runs (marked partial in results).

The subset does not depend on the order in which a loader lists its files: samples are ranked by the
BLAKE2b-64 digest of their id and the ``n`` lowest kept, in the split's own order. A split with verification
pairs keeps ``n`` pairs instead, ranked by the digest of (id of a, id of b), and the images they use (pairs
re-indexed; folds and groups kept). A split of at most ``n`` samples (or pairs) is returned unchanged. The
subset's ids differ from the full split's, so its fingerprint does too: its predictions and results are
never taken for the full split's.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from facebench.errors import ConfigError


def _ranks(keys) -> np.ndarray:
    """Rank of each key by its BLAKE2b-64 digest (ties broken by position)."""
    digests = np.array([int.from_bytes(hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest(), "big")
                        for k in keys], dtype=np.uint64)
    return np.argsort(digests, kind="stable")


def limited(dataset, n: int | None):
    """``dataset`` cut to ``n`` samples (or ``n`` pairs), deterministically (see the module docstring)."""
    if n is None:
        return dataset
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"limit must be an integer >= 1 (samples, or pairs for a verification split), got {n!r}.")
    if dataset.pairs is None:
        if len(dataset) <= n:
            return dataset
        keep = np.sort(_ranks(dataset.ids.tolist())[:n])
        return dataclasses.replace(dataset.subset(keep), content_tag={**dataset.content_tag, "limit": n})
    return _limited_pairs(dataset, n)


def _limited_pairs(dataset, n: int):
    pairs = dataset.pairs
    if len(pairs["a"]) <= n:
        return dataset
    a_ids, b_ids = dataset.ids[pairs["a"]], dataset.ids[pairs["b"]]
    chosen = np.sort(_ranks([f"{a}\n{b}" for a, b in zip(a_ids.tolist(), b_ids.tolist())])[:n])
    used = np.unique(np.concatenate([pairs["a"][chosen], pairs["b"][chosen]]))
    new_index = np.full(len(dataset), -1, dtype=np.int64)
    new_index[used] = np.arange(len(used))
    kept = {k: np.asarray(v)[chosen] for k, v in pairs.items()}
    kept["a"], kept["b"] = new_index[kept["a"]], new_index[kept["b"]]
    sub = dataset.subset(used)
    return dataclasses.replace(sub, pairs=kept, content_tag={**dataset.content_tag, "limit": n})
