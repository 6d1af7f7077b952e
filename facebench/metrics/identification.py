"""Closed-set face identification (1:N search of probes against a gallery), numpy only.

Conventions (those of the TinyFace / LRFR evaluation helper ``DIR_FAR`` with ``FARs=[1.0]``, i.e. the
closed-set CMC, as in ``Kartik-3004/PETALface : validation_lq/tinyface_helper.py``, borrowed there from
``seasonSH/Probabilistic-Face-Embeddings``; spec robustness.md 2.2):

* score = cosine similarity: both feature sets L2-normalised, then the inner product (higher = same);
* a probe's **mates** are the gallery items of its identity; distractors (and any gallery item of
  another identity) are non-mates; a probe without a mate in the gallery has no rank and is left out of
  the CMC (the reference keeps only "match probes"), and counted;
* the rank of a probe = 1 + the number of non-mates whose score beats its best mate's score; **ties**
  between the best mate and a non-mate count against the probe (``ties="pessimistic"``, the default) or
  for it (``"optimistic"``); the reference sorts with ``np.argsort`` and breaks ties arbitrarily;
* CMC(k) = share of the ranked probes with rank <= k; rank-k identification rate = CMC(k).

Scores are computed in blocks of probes (``chunk_elements`` scores at a time, 2^22 by default = 32 MB of
float64), so a 160k-image gallery (TinyFace with its distractors) never needs a P x G matrix in memory.
"""

from __future__ import annotations

import numpy as np

from facebench.errors import MetricInputError

TIES = ("pessimistic", "optimistic")
DEFAULT_RANKS = (1, 5, 10, 20)


def l2_rows(x, what: str = "features") -> np.ndarray:
    """Rows of ``x`` (N, D) divided by their L2 norm (float64); a zero row stays zero."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise MetricInputError(f"{what} must be a finite (N, D) array; got shape {arr.shape}"
                               f"{'' if arr.ndim != 2 else ' with non-finite values'}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


def mate_ranks(scores, mates, ties: str = "pessimistic") -> np.ndarray:
    """Rank (1-based) of each probe's best mate in its row of ``scores`` (P, G; higher = same), 0 for a
    probe whose row of ``mates`` (P, G bool) has no True. See the module docstring for ties."""
    s, m = np.asarray(scores, dtype=np.float64), np.asarray(mates, dtype=bool)
    if s.shape != m.shape or s.ndim != 2:
        raise MetricInputError(f"scores and mates must be two (P, G) arrays of one shape; got {s.shape} "
                               f"and {m.shape}")
    if ties not in TIES:
        raise MetricInputError(f"ties must be one of {', '.join(TIES)}; got {ties!r}")
    if not np.isfinite(s).all():
        raise MetricInputError("scores must be finite")
    has_mate = m.any(axis=1)
    best = np.where(m, s, -np.inf).max(axis=1, initial=-np.inf)[:, None]
    beats = (s >= best) if ties == "pessimistic" else (s > best)
    ranks = 1 + np.count_nonzero(beats & ~m, axis=1)
    return np.where(has_mate, ranks, 0).astype(np.int64)


def search_ranks(probe_features, probe_subjects, gallery_features, gallery_subjects, ties: str = "pessimistic",
                 chunk_elements: int = 1 << 22) -> np.ndarray:
    """Cosine-similarity search of each probe in the gallery: :func:`mate_ranks` of every probe, mates being
    gallery items with the probe's subject (an empty subject, e.g. a distractor's, is nobody's mate)."""
    p, g = l2_rows(probe_features, "probe features"), l2_rows(gallery_features, "gallery features")
    if p.shape[1] != g.shape[1]:
        raise MetricInputError(f"probe features have {p.shape[1]} dimensions, gallery features {g.shape[1]}")
    ps, gs = np.asarray(probe_subjects, dtype=str), np.asarray(gallery_subjects, dtype=str)
    if len(ps) != len(p) or len(gs) != len(g):
        raise MetricInputError(f"{len(ps)} probe subjects for {len(p)} probes, {len(gs)} gallery subjects for "
                               f"{len(g)} gallery items")
    if not len(g):
        raise MetricInputError("the gallery is empty; an identification search needs gallery items")
    _, codes = np.unique(np.concatenate([ps, gs]), return_inverse=True)  # integer subjects: fast comparisons
    pc, gc = codes[:len(ps)], np.where(gs == "", -1, codes[len(ps):])
    step = max(1, int(chunk_elements) // max(1, len(g)))
    out = np.zeros(len(p), dtype=np.int64)
    for start in range(0, len(p), step):
        stop = min(len(p), start + step)
        out[start:stop] = mate_ranks(p[start:stop] @ g.T, pc[start:stop, None] == gc[None, :], ties)
    return out


def _ranked(ranks) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 1 or (r.size and (not np.issubdtype(r.dtype, np.integer) or r.min() < 0)):
        raise MetricInputError("ranks must be a 1-D array of integers >= 0 (0 = no mate in the gallery)")
    return r[r > 0]


def cmc_curve(ranks, max_rank: int) -> np.ndarray:
    """CMC(1..max_rank): share of the probes with a mate (rank > 0) whose rank is <= k; NaN without any."""
    if int(max_rank) < 1:
        raise MetricInputError(f"max_rank must be >= 1; got {max_rank}")
    r = _ranked(ranks)
    if not r.size:
        return np.full(int(max_rank), np.nan)
    counts = np.bincount(np.minimum(r, int(max_rank) + 1), minlength=int(max_rank) + 2)[1:int(max_rank) + 1]
    return np.cumsum(counts) / float(r.size)


def rank_hits(ranks, ks) -> np.ndarray:
    """(n ranked probes, len(ks)) 0/1 float: whether each probe with a mate is found within rank k."""
    r = _ranked(ranks)
    k = np.asarray(list(ks), dtype=np.int64)
    if not k.size or k.min() < 1:
        raise MetricInputError(f"ranks to report must be integers >= 1; got {list(ks)}")
    return (r[:, None] <= k[None, :]).astype(np.float64)


def closed_set_dir(score_mat, label_mat, ranks=(1,), ties: str = "pessimistic") -> np.ndarray:
    """Closed-set detection-and-identification rate per rank (``DIR_FAR(..., FARs=[1.0])`` of the TinyFace
    helper): over the probes with a mate, the share with a mate within the top k."""
    r = mate_ranks(score_mat, label_mat, ties)
    return cmc_curve(r, max(int(k) for k in ranks))[np.asarray(ranks, dtype=np.int64) - 1]
