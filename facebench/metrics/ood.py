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

from ._ranking import Ranking
from ._threads import call_all, row_threads
from ._resample import OpenSetResampler, ResampleStreams, default_threads, iter_counts, map_ranges, open_set_strata
from .bootstrap import MEMORY_BUDGET
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
    "rank_scores",
    "ranking_metrics",
    "Ranking",
    "stratified_bootstrap",
    "bootstrap_open_set",
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


def _ranking(known, unknown, names=("known", "unknown"), correct=None) -> Ranking:
    k, u = _known_unknown(known, unknown, names)
    c = None if correct is None else _check_correct(correct, k.shape[0])
    return Ranking(k, u, c)


def rank_scores(known, unknown, known_correct=None) -> Ranking:
    """Known and unknown scores (and optional correctness flags of the known) sorted once.

    Every metric of this module is a method of the returned :class:`Ranking` (``auroc()``,
    ``aupr(positive, method)``, ``fpr_at_tpr(tpr, positive, rule)``, ``detection_error()``,
    ``roc(positive)``, and with ``known_correct`` ``oscr()``, ``oscr_curve()``, ``ccr_at_fpr(fpr)``),
    so a caller that needs several of them pays for one sort. Arguments are checked as by the
    functions below; the methods take already-checked conventions.
    """
    return _ranking(known, unknown, correct=known_correct)


# --------------------------------------------------------------------------- metrics


def auroc(known, unknown) -> float:
    """Area under the ROC curve, ``P(s_known > s_unknown) + 0.5 * P(tie)``.

    Mann-Whitney ``U / (n_k n_u)`` from one sort of the pooled scores, with ``U`` summed exactly in
    integers (ties count half), so it equals the average-rank formula of
    ``scipy.stats.rankdata(method="average")`` and ``sklearn.metrics.roc_auc_score(known=1, scores)``;
    it does not depend on which class is called positive.
    """
    return _ranking(known, unknown).auroc()


def roc_curve_points(known, unknown, positive="known") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ROC curve ``(fpr, tpr, thresholds)``, float64, thresholds descending.

    Same as ``sklearn.metrics.roc_curve(labels, score, drop_intermediate=False)``
    with the ``positive`` class labelled 1 and scored with ``s`` (known) or
    ``-s`` (unknown). Point ``i`` accepts scores ``>= thresholds[i]``; the
    first point is ``(0, 0)`` with threshold ``+inf``, the last ``(1, 1)``.
    """
    positive = check_choice(positive, POSITIVES, "positive")
    return _ranking(known, unknown).roc(positive)


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
    return _ranking(known, unknown).fpr_at_tpr(target, positive, rule)


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
    return _ranking(known, unknown).aupr(positive, method)


def detection_error(known, unknown) -> float:
    """Minimum detection error ``min_t 0.5 (1 - TPR(t)) + 0.5 FPR(t)``.

    Known taken as positive, ``t`` over all ROC points (including accept-none
    and accept-all, each 0.5). Equal error priors; the value is the same
    with unknown as positive (the ROC is reflected).
    """
    return _ranking(known, unknown).detection_error()


_OSCR_NAMES = ("known_scores", "unknown_scores")


def oscr_curve(known_scores, known_correct, unknown_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-set classification rate curve (Dhamija et al., 2018).

    For each threshold ``tau`` over the distinct pooled scores (descending):
    ``CCR(tau) = #{known: correct and s >= tau} / N_known`` and
    ``FPR(tau) = #{unknown: s >= tau} / N_unknown``. Returns
    ``(fpr, ccr, thresholds)`` starting at ``(0, 0, +inf)`` and ending at
    ``(1, closed-set accuracy, min score)``.
    """
    return _ranking(known_scores, unknown_scores, _OSCR_NAMES, known_correct).oscr_curve()


def oscr(known_scores, known_correct, unknown_scores) -> float:
    """Area under the OSCR curve, ``integral CCR dFPR`` (trapezoid rule over
    :func:`oscr_curve`). At most the closed-set accuracy; equals
    :func:`auroc` when every known sample is correctly classified.
    """
    return _ranking(known_scores, unknown_scores, _OSCR_NAMES, known_correct).oscr()


def ccr_at_fpr(known_scores, known_correct, unknown_scores, fpr) -> float:
    """CCR at the largest accepted set whose FPR does not exceed ``fpr``.

    Rule: among the OSCR thresholds (distinct scores plus ``+inf``), take the
    smallest ``tau`` with ``FPR(tau) <= fpr`` and return ``CCR(tau)``
    (no interpolation). Tied scores are accepted or rejected together, so a
    tie block of unknowns that would push FPR above ``fpr`` is rejected as a
    whole; ``fpr=0`` gives the CCR above the highest unknown score.
    """
    target = check_fraction(fpr, "fpr")
    return _ranking(known_scores, unknown_scores, _OSCR_NAMES, known_correct).ccr_at_fpr(target)


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
    """All OOD metrics under every convention, keyed by :func:`metric_key`, from one sort.

    Keys (``tpr=0.95`` -> ``"tpr95"``): ``auroc``; ``aupr[pos=P,method=M]`` for
    P in known/unknown and M in ap/trapezoid; ``fpr@tpr95[pos=P,rule=R]`` for
    (known, interp), (unknown, first), (known, first), (unknown, interp);
    ``detection_error``.
    """
    ranking = _ranking(known, unknown)
    return ranking_metrics(ranking, tpr)


def ranking_metrics(ranking: Ranking, tpr=0.95) -> dict[str, float]:
    """The :func:`ood_metrics` dictionary of an already built :class:`Ranking` (see :func:`rank_scores`)."""
    tpr = check_fraction(tpr, "tpr")
    fpr_name = f"fpr@tpr{_fmt_rate(tpr)}"

    def side(pos: str) -> dict[str, float]:  # one positive class: its own curves (in a thread of its own)
        out = {metric_key("aupr", positive=pos, method=method): ranking.aupr(pos, method) for method in AUPR_METHODS}
        for rule in FPR_RULES:
            out[metric_key(fpr_name, positive=pos, rule=rule)] = ranking.fpr_at_tpr(tpr, pos, rule)
        if pos == "known":
            out["detection_error"] = ranking.detection_error()
        else:
            out["auroc"] = ranking.auroc()
        return out

    known, unknown = call_all([lambda: side("known"), lambda: side("unknown")], row_threads(ranking.levels.shape[0]))
    both = {**known, **unknown}
    keys = ["auroc"] + [metric_key("aupr", positive=pos, method=method) for pos in POSITIVES for method in AUPR_METHODS]
    keys += [metric_key(fpr_name, positive=pos, rule=rule)
             for pos, rule in (("known", "interp"), ("unknown", "first"), ("known", "first"), ("unknown", "interp"))]
    return {key: both[key] for key in keys + ["detection_error"]}


# --------------------------------------------------------------------------- bootstrap


def _check_extra(extra_known, n_known: int) -> np.ndarray | None:
    if extra_known is None:
        return None
    extra = np.asarray(extra_known)
    if extra.ndim < 1 or extra.shape[0] != n_known:
        raise MetricInputError(
            f"extra_known must be aligned with known: got {extra.shape[0] if extra.ndim else 'a scalar'} "
            f"entries for {n_known} known scores (length mismatch)"
        )
    return extra


def stratified_bootstrap(
    stat: Callable[..., float], known, unknown, n_resamples=1000, seed=0, extra_known=None
) -> np.ndarray:
    """Stratified bootstrap: ``(B,)`` float64 values of ``stat`` on resamples.

    Each resample draws ``len(known)`` known and ``len(unknown)`` unknown samples with
    replacement, so both group sizes are kept and no resample lacks a group. The draws are
    the exact multinomial counts of :mod:`facebench.metrics._resample` (seeded by ``seed``),
    the same resamples that :func:`bootstrap_open_set` evaluates; a resample is handed over
    as a multiset, sorted by score (descending known, ascending unknown). ``stat`` is called
    as ``stat(known_b, unknown_b)`` or, with ``extra_known`` (aligned with ``known``, e.g.
    correctness flags), ``stat(known_b, unknown_b, extra_b)`` with ``extra_b`` carried along
    with each known sample.
    """
    check_callable(stat, "stat", "stat(known_b, unknown_b[, extra_b]) -> float")
    k, u = _known_unknown(known, unknown)
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    extra = _check_extra(extra_known, k.shape[0])
    cells_k, cells_u = _known_cells(k), np.argsort(u, kind="stable")
    strata = open_set_strata(k.shape[0], u.shape[0])
    streams = ResampleStreams(seed, sum(s.n_bytes for s in strata))
    out = np.empty(n_resamples, dtype=np.float64)
    for b, (yk, yu) in iter_counts(strata, streams, 0, n_resamples, _chunk_size(strata, n_resamples, None)):
        ik = np.repeat(cells_k, strata[0].in_cell_order(yk))
        iu = np.repeat(cells_u, strata[1].in_cell_order(yu))
        out[b] = stat(k[ik], u[iu]) if extra is None else stat(k[ik], u[iu], extra[ik])
    return out


def _known_cells(k: np.ndarray) -> np.ndarray:
    """Order of the known cells of a resample: descending score, ties by position (``argsort(-k,
    kind="stable")``, from the faster unstable sort: the positions within each run of tied scores are then
    put in increasing order)."""
    order = np.argsort(-k)
    ranked = k[order]
    starts = ranked[1:] != ranked[:-1]  # -0.0 == 0.0: tied, as in the stable sort
    if starts.all():
        return order
    run = np.concatenate(([0], np.cumsum(starts)))  # run of tied scores of each rank
    n = np.int64(k.shape[0])
    return np.sort(run * n + order) % n


def _chunk_size(strata, n_resamples: int, chunk) -> int:
    """Resamples whose random bytes are drawn at once: ``chunk``, or as many as fit the memory budget
    (at most 8: larger blocks only add cache misses)."""
    if chunk is not None:
        return check_positive_int(chunk, "chunk")
    per_resample = max(1, sum(s.n_bytes for s in strata))  # random bytes
    return max(1, min(n_resamples, 8, MEMORY_BUDGET // per_resample))


def bootstrap_open_set(known, known_correct, unknown, tpr=0.95, n_resamples=1000, seed=0,
                       chunk=None, threads=None) -> dict[str, np.ndarray]:
    """Stratified bootstrap of AUROC, ``fpr@tpr[pos=known,rule=interp]``,
    ``fpr@tpr[pos=unknown,rule=first]`` and OSCR: ``{key: (B,) float64}``, without re-sorting.

    The resamples are those of :func:`stratified_bootstrap` with the same ``seed`` (exact
    multinomial counts per stratum). The scores are sorted once; a resample is a vector of
    counts on that order, and every statistic is read off cumulative sums of the counts: with
    ``U_<(i)`` / ``U_=(i)`` the resampled unknown counts below / tied with known sample ``i``
    and ``w_i`` its count, ``AUROC = sum_i w_i (U_<(i) + U_=(i) / 2) / (N_k N_u)``, OSCR the same
    sum over correct known samples, and the FPRs come from the resampled ROC points next to
    the TPR target (the interp rule is ``np.interp`` on the full curve, which equals it on
    sklearn's reduced curve up to rounding). Memory is O(N) bytes per thread plus ``chunk``
    resamples of random bytes (by default at most 8, within ``bootstrap.MEMORY_BUDGET``). ``threads``
    (default: the usable CPUs for large inputs, else 1) never changes the values.
    """
    k, u = _known_unknown(known, unknown)
    c = _check_correct(known_correct, k.shape[0])
    target = check_fraction(tpr, "tpr")
    b_total = check_positive_int(n_resamples, "n_resamples")
    engine = OpenSetResampler(k, c, u, _known_cells(k))
    n_cells = sum(s.size for s in engine.strata)
    step = _chunk_size(engine.strata, b_total, chunk)
    threads = default_threads(n_cells, b_total) if threads is None else check_positive_int(threads, "threads")
    streams = ResampleStreams(seed, sum(s.n_bytes for s in engine.strata))
    out = np.empty((4, b_total))

    def work(first: int, stop: int) -> None:
        ws = engine.workspace()
        for b, (yk, yu) in iter_counts(ws.strata, streams, first, stop, step):
            out[:, b] = ws.statistics(yk, yu, target)

    map_ranges(work, b_total, threads)
    name = f"fpr@tpr{_fmt_rate(target)}"
    keys = ("auroc", metric_key(name, positive="known", rule="interp"),
            metric_key(name, positive="unknown", rule="first"), "oscr")
    return dict(zip(keys, out))
