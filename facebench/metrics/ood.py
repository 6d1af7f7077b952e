"""Out-of-distribution (OOD) detection and open-set recognition metrics.

Conventions (see ``spec/protocols.md`` §4.2 and ``spec/anchors.md`` §3.1-3.2):

* A score ``s(x)`` is an ID-ness score: **higher = more "known"**
  (in-distribution / close-set). Metrics take two 1-D arrays, ``known`` and
  ``unknown`` (OOD / open-set) scores.
* ``positive`` names the class treated as label 1: ``"known"`` scores the
  known samples with ``s``; ``"unknown"`` scores the unknown samples with
  ``-s`` (the outlier score). AUROC and detection error do not depend on
  the choice; FPR@TPR and AUPR do.
* Everything is computed in float64 from the raw scores: no sigmoid, no
  float32, so scores of any magnitude (logits, energies, 1e6, 1e12) keep
  their order and their ties.
* An ROC/PR "threshold" ``t`` accepts (predicts positive) every sample with
  score ``>= t``; thresholds run over the distinct scores in descending order,
  so tied scores always move together.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facebench.errors import MetricInputError

from ._validation import (
    check_binary_flags,
    check_callable,
    check_choice,
    check_fraction,
    check_positive_int,
    check_score_vector,
)

__all__ = [
    "auroc",
    "roc_curve_points",
    "fpr_at_tpr",
    "aupr",
    "detection_error",
    "oscr_curve",
    "oscr",
    "ccr_at_fpr",
    "metric_key",
    "ood_metrics",
    "stratified_bootstrap",
    "POSITIVES",
    "FPR_RULES",
    "AUPR_METHODS",
]

#: Allowed values of ``positive``.
POSITIVES = ("known", "unknown")
#: Allowed values of ``rule`` in :func:`fpr_at_tpr`.
FPR_RULES = ("interp", "first")
#: Allowed values of ``method`` in :func:`aupr`.
AUPR_METHODS = ("ap", "trapezoid")


# --------------------------------------------------------------------------- validation


def _known_unknown(known, unknown, names=("known", "unknown")) -> tuple[np.ndarray, np.ndarray]:
    """The known and the unknown scores as non-empty, finite 1-D float64 vectors."""
    hint = "OOD metrics need at least one known and one unknown sample"
    return check_score_vector(known, names[0], hint), check_score_vector(unknown, names[1], hint)


def _check_correct(correct, n: int, name: str = "known_correct") -> np.ndarray:
    return check_binary_flags(correct, n, name, "1 = correctly classified known sample")


def _pos_neg(known: np.ndarray, unknown: np.ndarray, positive: str) -> tuple[np.ndarray, np.ndarray]:
    """(positive scores, negative scores) with the positive's score direction."""
    if positive == "known":
        return known, unknown
    return -unknown, -known


# --------------------------------------------------------------------------- curve core


def _clf_counts(pos: np.ndarray, neg: np.ndarray, correct: np.ndarray | None = None):
    """Cumulative counts at each distinct score, thresholds descending.

    Returns ``(tps, fps, thresholds)`` where ``tps[i]`` / ``fps[i]`` count
    positives / negatives with score ``>= thresholds[i]`` (no (0, 0) point).
    With ``correct`` (aligned with ``pos``) ``tps`` counts only correct positives.
    """
    scores = np.concatenate([pos, neg])
    w = np.zeros(scores.shape[0], dtype=np.float64)
    w[: pos.shape[0]] = 1.0 if correct is None else correct.astype(np.float64)
    is_neg = np.zeros(scores.shape[0], dtype=np.float64)
    is_neg[pos.shape[0]:] = 1.0
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]
    tps = np.cumsum(w[order])[ends]
    fps = np.cumsum(is_neg[order])[ends]
    return tps, fps, s[ends]


def _drop_intermediate(tps: np.ndarray, fps: np.ndarray, thr: np.ndarray):
    """Mirror of ``sklearn.metrics.roc_curve(drop_intermediate=True)``.

    Drops interior points whose second differences in both ``fps`` and
    ``tps`` are zero (collinear, equally spaced); endpoints are kept.
    """
    if fps.shape[0] > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        tps, fps, thr = tps[keep], fps[keep], thr[keep]
    return tps, fps, thr


def _roc(pos: np.ndarray, neg: np.ndarray, drop_intermediate: bool = False):
    tps, fps, thr = _clf_counts(pos, neg)
    if drop_intermediate:
        tps, fps, thr = _drop_intermediate(tps, fps, thr)
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thr = np.r_[np.inf, thr]
    return fps / fps[-1], tps / tps[-1], thr


# --------------------------------------------------------------------------- metrics


def auroc(known, unknown) -> float:
    """Area under the ROC curve, ``P(s_known > s_unknown) + 0.5 * P(tie)``.

    Mann-Whitney via average ranks of the pooled scores (O(n log n), one
    argsort): ``AUROC = (R_known - n_k (n_k + 1) / 2) / (n_k * n_u)`` with
    ``R_known`` the sum of the known scores' average ranks (ties share the
    mean of their positions, as ``scipy.stats.rankdata(method="average")``). Equals
    ``sklearn.metrics.roc_auc_score(known=1, scores)`` and does not depend on
    which class is called positive.
    """
    k, u = _known_unknown(known, unknown)
    return _auroc_fast(k, u)


def _auroc_fast(k: np.ndarray, u: np.ndarray) -> float:
    """Mann-Whitney U from average ranks (``scipy.stats.rankdata(method="average")``
    semantics), computed directly from one argsort: tie group ``g`` occupying
    sorted positions ``start..end-1`` gets rank ``(start + 1 + end) / 2``."""
    nk, nu = k.shape[0], u.shape[0]
    pooled = np.concatenate([k, u])
    n = pooled.shape[0]
    order = np.argsort(pooled)
    sv = pooled[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(sv[1:], sv[:-1], out=new_group[1:])
    start = np.flatnonzero(new_group)
    end = np.r_[start[1:], n]
    avg_rank = (start + 1 + end) * 0.5
    known_per_group = np.add.reduceat((order < nk).astype(np.float64), start)
    # half-integer products and partial sums: exact in float64 while n**2 < 2**53
    rank_sum = float(np.dot(avg_rank, known_per_group))
    return (rank_sum - nk * (nk + 1) / 2.0) / (float(nk) * float(nu))


def roc_curve_points(known, unknown, positive="known") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ROC curve ``(fpr, tpr, thresholds)``, float64, thresholds descending.

    Same as ``sklearn.metrics.roc_curve(labels, score, drop_intermediate=False)``
    with the ``positive`` class labelled 1 and scored with ``s`` (known) or
    ``-s`` (unknown). Point ``i`` accepts scores ``>= thresholds[i]``; the
    first point is ``(0, 0)`` with threshold ``+inf``, the last ``(1, 1)``.
    """
    positive = check_choice(positive, POSITIVES, "positive")
    pos, neg = _pos_neg(*_known_unknown(known, unknown), positive)
    return _roc(pos, neg, drop_intermediate=False)


def fpr_at_tpr(known, unknown, tpr=0.95, positive="known", rule="interp") -> float:
    """False-positive rate at true-positive rate ``tpr``.

    ``positive="known"``: FPR = fraction of unknown accepted as known when
    ``tpr`` of the known are accepted (classic ODIN convention);
    ``positive="unknown"``: FPR = fraction of known flagged as unknown when
    ``tpr`` of the unknown are flagged (OpenOOD v1.5 / pytorch-ood convention).

    ``rule="interp"`` (``ood_metrics`` package, protocols.md §4.2): on
    ``roc_curve`` *with* sklearn's default ``drop_intermediate=True``:
    0 if all TPR < tpr; min FPR over TPR >= tpr if all TPR >= tpr; else
    ``np.interp(tpr, TPR, FPR)`` (linear interpolation between ROC vertices).

    ``rule="first"``: FPR at the first point of the full ROC curve
    (thresholds descending, no points dropped) with TPR >= tpr, i.e. at the
    largest threshold accepting at least ``tpr`` of the positives
    (pytorch-ood ``searchsorted``; OpenOOD v1.5 ``argmax(tpr >= t)`` gives the
    same except when sklearn's ``drop_intermediate`` removed that very point,
    which needs equally composed tie blocks).
    """
    target = check_fraction(tpr, "tpr")
    positive = check_choice(positive, POSITIVES, "positive")
    rule = check_choice(rule, FPR_RULES, "rule")
    pos, neg = _pos_neg(*_known_unknown(known, unknown), positive)
    if rule == "first":
        fpr, tp_rate, _ = _roc(pos, neg, drop_intermediate=False)
        return float(fpr[np.argmax(tp_rate >= target)])  # tp_rate[-1] == 1 >= target
    fpr, tp_rate, _ = _roc(pos, neg, drop_intermediate=True)
    if np.all(tp_rate < target):
        return 0.0
    if np.all(tp_rate >= target):
        return float(np.min(fpr[tp_rate >= target]))
    return float(np.interp(target, tp_rate, fpr))


def aupr(known, unknown, positive="known", method="ap") -> float:
    """Area under the precision-recall curve of the ``positive`` class.

    ``positive="known"`` is AUPR-In, ``"unknown"`` AUPR-Out (score ``-s``).
    ``method="ap"``: average precision ``sum_n (R_n - R_{n-1}) P_n`` over
    thresholds (step-wise, no interpolation) ==
    ``sklearn.metrics.average_precision_score``.
    ``method="trapezoid"``: OpenOOD-compatible
    ``sklearn.metrics.auc(recall, precision)`` of ``precision_recall_curve``
    (trapezoid rule, including the (recall 0, precision 1) end point;
    optimistic compared with AP).
    """
    positive = check_choice(positive, POSITIVES, "positive")
    method = check_choice(method, AUPR_METHODS, "method")
    pos, neg = _pos_neg(*_known_unknown(known, unknown), positive)
    tps, fps, _ = _clf_counts(pos, neg)
    precision = tps / (tps + fps)  # tps + fps >= 1 at every distinct score
    recall = tps / tps[-1]
    # curve in increasing-recall order, starting at (recall 0, precision 1) like sklearn
    r = np.r_[0.0, recall]
    p = np.r_[1.0, precision]
    if method == "ap":
        return float(max(0.0, np.sum(np.diff(r) * p[1:])))
    return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2.0))


def detection_error(known, unknown) -> float:
    """Minimum detection error ``min_t 0.5 (1 - TPR(t)) + 0.5 FPR(t)``.

    Known taken as positive, ``t`` over all ROC points (including accept-none
    and accept-all, each 0.5). Equal error priors; the value is the same
    with unknown as positive (the ROC is reflected).
    """
    fpr, tp_rate, _ = roc_curve_points(known, unknown, positive="known")
    return float(np.min(0.5 * (1.0 - tp_rate) + 0.5 * fpr))


def oscr_curve(known_scores, known_correct, unknown_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-set classification rate curve (Dhamija et al., 2018).

    For each threshold ``tau`` over the distinct pooled scores (descending):
    ``CCR(tau) = #{known: correct and s >= tau} / N_known`` and
    ``FPR(tau) = #{unknown: s >= tau} / N_unknown``. Returns
    ``(fpr, ccr, thresholds)`` starting at ``(0, 0, +inf)`` and ending at
    ``(1, closed-set accuracy, min score)``.
    """
    k, u = _known_unknown(known_scores, unknown_scores, ("known_scores", "unknown_scores"))
    c = _check_correct(known_correct, k.shape[0])
    return _oscr_curve(k, c, u)


def _oscr_curve(k, c, u):
    ccs, fps, thr = _clf_counts(k, u, correct=c)
    return np.r_[0.0, fps] / u.shape[0], np.r_[0.0, ccs] / k.shape[0], np.r_[np.inf, thr]


def oscr(known_scores, known_correct, unknown_scores) -> float:
    """Area under the OSCR curve, ``integral CCR dFPR`` (trapezoid rule over
    :func:`oscr_curve`). At most the closed-set accuracy; equals
    :func:`auroc` when every known sample is correctly classified.
    """
    fpr, ccr, _ = oscr_curve(known_scores, known_correct, unknown_scores)
    return float(np.sum(np.diff(fpr) * (ccr[1:] + ccr[:-1]) / 2.0))


def ccr_at_fpr(known_scores, known_correct, unknown_scores, fpr) -> float:
    """CCR at the largest accepted set whose FPR does not exceed ``fpr``.

    Rule: among the OSCR thresholds (distinct scores plus ``+inf``), take the
    smallest ``tau`` with ``FPR(tau) <= fpr`` and return ``CCR(tau)``
    (no interpolation). Tied scores are accepted or rejected together, so a
    tie block of unknowns that would push FPR above ``fpr`` is rejected as a
    whole; ``fpr=0`` gives the CCR above the highest unknown score.
    """
    target = check_fraction(fpr, "fpr")
    f, ccr, _ = oscr_curve(known_scores, known_correct, unknown_scores)
    # f is non-decreasing and f[0] == 0 <= target, so the index is >= 0
    idx = int(np.searchsorted(f, target, side="right")) - 1
    return float(ccr[idx])


# --------------------------------------------------------------------------- reporting


def _fmt_rate(tpr: float) -> str:
    return f"{round(tpr * 100.0, 6):g}"


def metric_key(name, positive=None, rule=None, method=None) -> str:
    """Result key carrying its conventions: ``name[pos=..,rule=..,method=..]``.

    Only the given conventions appear, always in the order pos, rule, method;
    ``metric_key("auroc") == "auroc"``,
    ``metric_key("fpr@tpr95", positive="known", rule="interp") == "fpr@tpr95[pos=known,rule=interp]"``.
    """
    if not isinstance(name, str) or not name:
        raise MetricInputError(f"name must be a non-empty string, got {name!r}")
    parts = []
    if positive is not None:
        parts.append(f"pos={check_choice(positive, POSITIVES, 'positive')}")
    if rule is not None:
        parts.append(f"rule={check_choice(rule, FPR_RULES, 'rule')}")
    if method is not None:
        parts.append(f"method={check_choice(method, AUPR_METHODS, 'method')}")
    return f"{name}[{','.join(parts)}]" if parts else name


def ood_metrics(known, unknown, tpr=0.95) -> dict[str, float]:
    """All OOD metrics under every convention, keyed by :func:`metric_key`.

    Keys (``tpr=0.95`` -> ``"tpr95"``): ``auroc``; ``aupr[pos=P,method=M]`` for
    P in known/unknown and M in ap/trapezoid; ``fpr@tpr95[pos=P,rule=R]`` for
    (known, interp), (unknown, first), (known, first), (unknown, interp);
    ``detection_error``.
    """
    k, u = _known_unknown(known, unknown)
    target = check_fraction(tpr, "tpr")
    fpr_name = f"fpr@tpr{_fmt_rate(target)}"
    out = {"auroc": _auroc_fast(k, u)}
    for pos in POSITIVES:
        for method in AUPR_METHODS:
            out[metric_key("aupr", positive=pos, method=method)] = aupr(k, u, positive=pos, method=method)
    for pos, rule in (("known", "interp"), ("unknown", "first"), ("known", "first"), ("unknown", "interp")):
        out[metric_key(fpr_name, positive=pos, rule=rule)] = fpr_at_tpr(k, u, tpr=target, positive=pos, rule=rule)
    out["detection_error"] = detection_error(k, u)
    return out


def stratified_bootstrap(
    stat: Callable[..., float], known, unknown, n_resamples=1000, seed=0, extra_known=None
) -> np.ndarray:
    """Stratified bootstrap: ``(B,)`` float64 values of ``stat`` on resamples.

    Each resample draws ``len(known)`` known indices and then ``len(unknown)``
    unknown indices with replacement, from ``np.random.default_rng(seed)``;
    both group sizes are kept, so no resample lacks a group. ``stat`` is called
    as ``stat(known_b, unknown_b)`` or, with ``extra_known`` (aligned with
    ``known``, e.g. correctness flags), ``stat(known_b, unknown_b, extra_b)``
    with ``extra_b = extra_known[known indices]``.
    """
    check_callable(stat, "stat", "stat(known_b, unknown_b[, extra_b]) -> float")
    k, u = _known_unknown(known, unknown)
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    extra = None
    if extra_known is not None:
        extra = np.asarray(extra_known)
        if extra.ndim < 1 or extra.shape[0] != k.shape[0]:
            raise MetricInputError(
                f"extra_known must be aligned with known: got {extra.shape[0] if extra.ndim else 'a scalar'} "
                f"entries for {k.shape[0]} known scores (length mismatch)"
            )
    rng = np.random.default_rng(seed)
    nk, nu = k.shape[0], u.shape[0]
    out = np.empty(int(n_resamples), dtype=np.float64)
    for b in range(int(n_resamples)):
        ik = rng.integers(0, nk, size=nk)
        iu = rng.integers(0, nu, size=nu)
        if extra is None:
            out[b] = stat(k[ik], u[iu])
        else:
            out[b] = stat(k[ik], u[iu], extra[ik])
    return out


def bootstrap_open_set(known, known_correct, unknown, tpr=0.95, n_resamples=1000, seed=0,
                       chunk=None) -> dict[str, np.ndarray]:
    """Vectorised stratified bootstrap of AUROC, ``fpr@tpr[pos=known,rule=interp]``,
    ``fpr@tpr[pos=unknown,rule=first]`` and OSCR: ``{key: (B,) float64}``.

    Resamples are drawn exactly as :func:`stratified_bootstrap` draws them (known indices, then
    unknown indices, per resample, from ``default_rng(seed)``), but every statistic is computed
    from per-threshold resample counts: with distinct pooled scores t_1 > ... > t_m and counts
    k_g (known), c_g (correct known), u_g (unknown) at t_g, TP_g / CC_g / FP_g their cumulative
    sums, AUROC = sum_g u_g (TP_{g-1} + k_g / 2) / (N_k N_u); the ROC points are (FP_g / N_u,
    TP_g / N_k) and OSCR is the trapezoid area under (FP_g / N_u, CC_g / N_k). The interp rule is
    ``np.interp`` on the full curve, which equals it on sklearn's reduced curve up to rounding.
    """
    k, u = _known_unknown(known, unknown)
    c = _check_correct(known_correct, k.shape[0])
    target = check_fraction(tpr, "tpr")
    b_total = check_positive_int(n_resamples, "n_resamples")
    levels = np.unique(np.concatenate([k, u]))[::-1]  # descending distinct scores
    m = levels.shape[0]
    gk = np.searchsorted(-levels, -k)  # group index of each score
    gu = np.searchsorted(-levels, -u)
    nk, nu = k.shape[0], u.shape[0]
    rng = np.random.default_rng(seed)
    if chunk is None:
        chunk = max(1, min(b_total, (32 * 2**20) // (8 * 4 * (m + 1))))
    keys = ("auroc", metric_key(f"fpr@tpr{_fmt_rate(target)}", positive="known", rule="interp"),
            metric_key(f"fpr@tpr{_fmt_rate(target)}", positive="unknown", rule="first"), "oscr")
    out = {key: np.empty(b_total) for key in keys}
    for start in range(0, b_total, chunk):
        b = min(chunk, b_total - start)
        ik = np.empty((b, nk), dtype=np.int64)
        iu = np.empty((b, nu), dtype=np.int64)
        for r in range(b):  # same draw order as stratified_bootstrap
            ik[r] = rng.integers(0, nk, size=nk)
            iu[r] = rng.integers(0, nu, size=nu)
        rows = np.arange(b)[:, None] * m
        kc = np.bincount((rows + gk[ik]).ravel(), minlength=b * m).reshape(b, m).astype(np.float64)
        cc = np.bincount((rows + gk[ik]).ravel(), weights=c[ik].ravel().astype(np.float64),
                         minlength=b * m).reshape(b, m)
        uc = np.bincount((rows + gu[iu]).ravel(), minlength=b * m).reshape(b, m).astype(np.float64)
        tp, fp, ccr = np.cumsum(kc, axis=1), np.cumsum(uc, axis=1), np.cumsum(cc, axis=1)
        tp_before = tp - kc
        out[keys[0]][start:start + b] = (uc * (tp_before + 0.5 * kc)).sum(axis=1) / (nk * nu)
        zeros = np.zeros((b, 1))
        tpr_k = np.hstack([zeros, tp / nk])  # ROC with (0, 0) first, known positive
        fpr_k = np.hstack([zeros, fp / nu])
        out[keys[1]][start:start + b] = _interp_rows(target, tpr_k, fpr_k)
        # unknown positive: ascending scores; point g accepts (as unknown) scores <= t_g
        u_asc = nu - (fp - uc)  # unknown with score <= t_g
        k_asc = nk - tp_before
        last = (u_asc / nu >= target).sum(axis=1) - 1  # largest g still reaching the target
        out[keys[2]][start:start + b] = k_asc[np.arange(b), np.maximum(last, 0)] / nk
        x = np.hstack([zeros, fp / nu])
        y = np.hstack([zeros, ccr / nk])
        out[keys[3]][start:start + b] = (np.diff(x, axis=1) * (y[:, 1:] + y[:, :-1]) / 2).sum(axis=1)
    return out


def _interp_rows(x: float, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Row-wise ``np.interp(x, xp[r], fp[r])`` for non-decreasing rows (at repeated ``xp`` values
    the right-most point wins, as in NumPy)."""
    b, n = xp.shape
    j = (xp <= x).sum(axis=1) - 1
    j = np.clip(j, 0, n - 1)
    r = np.arange(b)
    x0, y0 = xp[r, j], fp[r, j]
    nxt = np.minimum(j + 1, n - 1)
    x1, y1 = xp[r, nxt], fp[r, nxt]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where((x0 >= x) | (x1 == x0), y0, y0 + (x - x0) * (y1 - y0) / (x1 - x0))
    return y
