"""One sort -> cumulative counts: the core that every OOD / open-set ranking metric reads.

:class:`Ranking` pools known and unknown scores (and, optionally, correctness flags of the known) and
sorts them once: each group is sorted on its own with ``np.sort`` and the sorted runs are merged by one
stable ``argsort`` of their concatenation (a linear merge of already sorted runs). From that single
pass it keeps, for every distinct pooled score ``l_1 < ... < l_m``, how many known / unknown / correct
known samples score at or below it (int64, exact). Every metric -- AUROC, AUPR both ways, FPR@TPR under
both rules, detection error, the ROC points and the OSCR curve -- is read off those counts.

Conventions are those of :mod:`facebench.metrics.ood`: higher score = more "known"; a threshold ``t``
accepts every score ``>= t`` (known positive) or, with the unknown positive and score ``-s``, every
score ``<= -t``; tied scores always move together. The curves and areas are computed with the same
floating-point expressions as scikit-learn, so results are identical to them bit for bit.
"""

from __future__ import annotations

import numpy as np

from facebench.errors import MetricInputError

from ._threads import call_all, row_threads
from ._validation import check_fraction

__all__ = ["Ranking"]


def _rates(counts: np.ndarray) -> np.ndarray:
    """``[0, counts / counts[-1]]`` in float64 (``roc_curve``'s ``fps / fps[-1]`` with the origin prepended)."""
    rates = np.empty(counts.shape[0] + 1)
    rates[0] = 0.0
    np.divide(counts, np.float64(counts[-1]), out=rates[1:])
    return rates


def _sorted_runs(known: np.ndarray, unknown: np.ndarray, correct: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Ascending runs: correct known, other known (or all known), unknown; sorted in threads when large."""
    groups = (known, unknown) if correct is None else (known[correct], known[~correct], unknown)
    threads = row_threads(known.shape[0] + unknown.shape[0])
    return tuple(call_all([lambda g=g: np.sort(g) for g in groups], threads))


class Ranking:
    """Known and unknown scores sorted once, as cumulative counts per distinct score.

    ``levels`` holds the distinct pooled scores in ascending order; ``known_le[g]`` /
    ``unknown_le[g]`` / ``correct_le[g]`` count the samples of each group with score
    ``<= levels[g]`` (``correct_le`` is ``None`` without correctness flags). Inputs must already
    be validated (finite 1-D float64, both groups non-empty; ``correct`` a bool vector aligned
    with ``known``).
    """

    def __init__(self, known: np.ndarray, unknown: np.ndarray, correct: np.ndarray | None = None):
        runs = _sorted_runs(known, unknown, correct)
        pooled = np.concatenate(runs)
        order = np.argsort(pooled, kind="stable")  # timsort: merges the already sorted runs
        values = pooled[order]
        distinct = values[1:] != values[:-1]  # -0.0 == 0.0: one level
        n_known = known.shape[0]
        self.n_known, self.n_unknown = n_known, unknown.shape[0]
        if distinct.all():  # every score its own level: the counts are running totals of the pooled order
            self.levels = values
            self.known_le = np.cumsum(order < n_known)
            self.unknown_le = np.arange(1, values.shape[0] + 1)
            self.unknown_le -= self.known_le
            self.correct_le = None if correct is None else np.cumsum(order < runs[0].shape[0])
        else:
            ends = np.append(np.flatnonzero(distinct), values.shape[0] - 1)
            self.levels = values[ends]
            self.known_le = np.cumsum(order < n_known)[ends]
            self.unknown_le = (ends + 1) - self.known_le
            self.correct_le = None if correct is None else np.cumsum(order < runs[0].shape[0])[ends]
        self._memo: dict = {}  # curves shared by several metrics (read-only)

    # ----------------------------------------------------------------- counts per threshold

    def _below(self, le: np.ndarray) -> np.ndarray:
        """Counts strictly below each level (``le`` shifted by one)."""
        below = np.empty_like(le)
        below[0] = 0
        below[1:] = le[:-1]
        return below

    @staticmethod
    def _above(total: int, le: np.ndarray) -> np.ndarray:
        """``total - (count below each level)``: the count at or above each level."""
        above = np.empty_like(le)
        above[0] = total
        np.subtract(total, le[:-1], out=above[1:])
        return above

    def counts(self, positive: str = "known") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(tps, fps, thresholds)`` with thresholds descending, as ``sklearn``'s ``_binary_clf_curve``.

        ``tps[i]`` / ``fps[i]`` (int64) count positives / negatives accepted at ``thresholds[i]``.
        Known positive: score ``s``, accept ``s >= t``; unknown positive: score ``-s``.
        """
        key = ("counts", positive)
        if key not in self._memo:
            if positive == "known":
                tps, fps = self._above(self.n_known, self.known_le), self._above(self.n_unknown, self.unknown_le)
                self._memo[key] = (tps[::-1], fps[::-1], self.levels[::-1])
            else:
                self._memo[key] = (self.unknown_le, self.known_le, -self.levels)
        return self._memo[key]

    def roc(self, positive: str = "known", drop_intermediate: bool = False):
        """``(fpr, tpr, thresholds)`` float64 from ``(0, 0, +inf)`` to ``(1, 1)``, as ``sklearn.metrics.roc_curve``."""
        if drop_intermediate:
            tps, fps, thr = self.counts(positive)
            if fps.shape[0] > 2:
                keep = np.concatenate(([True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]))
                tps, fps, thr = tps[keep], fps[keep], thr[keep]
            return _rates(fps), _rates(tps), np.concatenate(([np.inf], thr))
        fpr, tpr = self._roc(positive)
        return fpr.copy(), tpr.copy(), np.concatenate(([np.inf], self.counts(positive)[2]))

    def _roc(self, positive: str) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, tpr)`` of the full curve of :meth:`roc`, kept: FPR@TPR, detection error, AUPR and plots
        share them."""
        key = ("roc", positive)
        if key not in self._memo:
            tps, fps, _ = self.counts(positive)
            self._memo[key] = (_rates(fps), _rates(tps))
        return self._memo[key]

    # ----------------------------------------------------------------- metrics

    def auroc(self) -> float:
        """``P(s_known > s_unknown) + 0.5 P(tie)``: ``U / (n_k n_u)`` with the Mann-Whitney ``U`` summed
        exactly in integers (``2U = sum_g k_g (U_<g + U_<=g)``, ``k_g`` known at level ``g``) and divided once."""
        k, u = self.known_le, self.unknown_le
        pairs = np.add(u[:-1], u[1:])  # U_<g + U_<=g for g >= 1
        twice_u = int(k[0]) * int(u[0]) + int(np.dot(np.diff(k), pairs))
        return twice_u / (2.0 * self.n_known * self.n_unknown)

    def aupr(self, positive: str, method: str) -> float:
        """AP (``method="ap"``, ``average_precision_score``) or the trapezoid area of
        ``precision_recall_curve`` (``"trapezoid"``) with ``positive`` as the positive class."""
        step, p = self._pr(positive)
        area = np.empty_like(step)
        if method == "ap":
            np.multiply(step, p[1:], out=area)
            return float(max(0.0, np.sum(area)))
        np.add(p[1:], p[:-1], out=area)
        np.multiply(step, area, out=area)
        np.divide(area, 2.0, out=area)
        return float(np.sum(area))

    def _pr(self, positive: str) -> tuple[np.ndarray, np.ndarray]:
        """``(diff(recall), precision)`` with the ``(recall 0, precision 1)`` start prepended; both AUPR
        conventions of one positive class share it. The recall is the ROC curve's TPR."""
        key = ("pr", positive)
        if key not in self._memo:
            tps, fps, _ = self.counts(positive)
            p = np.empty(tps.shape[0] + 1)
            p[0] = 1.0
            np.divide(tps, np.add(tps, fps), out=p[1:])  # float64(tps) / float64(tps + fps), >= 1 sample each
            r = self._roc(positive)[1]
            self._memo[key] = (np.subtract(r[1:], r[:-1]), p)
        return self._memo[key]

    def fpr_at_tpr(self, target: float, positive: str, rule: str) -> float:
        """FPR at TPR ``target``; ``rule`` ``"first"`` (full curve, first point reaching it) or ``"interp"``
        (``np.interp`` on the curve with scikit-learn's ``drop_intermediate``; see :func:`ood.fpr_at_tpr`).

        ``"interp"`` never builds the thinned curve: ``np.interp`` reads only the two thinned points around
        ``target`` (the last one with TPR ``<= target`` and the next), found on the full curve, whose values
        are the thinned curve's own, so the result is the same float."""
        fpr, tpr = self._roc(positive)
        if rule == "first":  # tpr is non-decreasing and tpr[-1] == 1 >= target
            return float(fpr[int(np.searchsorted(tpr, target, side="left"))])
        if tpr[-1] < target:
            return 0.0
        if tpr[0] >= target:
            return float(fpr[0])  # every point reaches target; fpr is non-decreasing from 0
        last = int(np.searchsorted(tpr, target, side="right")) - 1  # tpr[last] <= target < tpr[last + 1]
        if last == tpr.shape[0] - 1:
            return float(fpr[last])
        low, high = self._kept_around(positive, last)
        return float(np.interp(target, tpr[[low, high]], fpr[[low, high]]))

    def _kept_around(self, positive: str, index: int) -> tuple[int, int]:
        """On the full curve (``(0, 0)`` at 0), the last point ``<= index`` and the first ``> index`` that
        scikit-learn's ``drop_intermediate`` keeps: the ends of the counts and every count whose second
        difference in ``fps`` or ``tps`` is non-zero. Searched in windows that double in size."""
        tps, fps, _ = self.counts(positive)
        m = tps.shape[0]

        def kept(lo: int, hi: int) -> np.ndarray:  # full-curve indices in [lo, hi) that are kept
            first, stop = max(lo - 1, 0), min(hi - 1, m)  # count i <-> full index i + 1
            a, b = max(first, 1), min(stop, m - 1)  # inner counts: judged by their second differences
            found = [np.array([0, 1, m], np.int64)]
            if b > a:
                bend = np.logical_or(np.diff(fps[a - 1:b + 1], 2), np.diff(tps[a - 1:b + 1], 2))
                found.append(np.flatnonzero(bend) + a + 1)
            found = np.unique(np.concatenate(found))
            return found[(found >= lo) & (found < hi)]

        width = 64
        while True:
            lo, hi = max(index + 1 - width, 0), min(index + 1 + width, m + 1)
            below, above = kept(lo, index + 1), kept(index + 1, hi)
            if below.shape[0] and above.shape[0]:
                return int(below[-1]), int(above[0])
            width *= 4
    def detection_error(self) -> float:
        """``min_t 0.5 (1 - TPR(t)) + 0.5 FPR(t)`` over the full ROC (known positive)."""
        fpr, tpr = self._roc("known")
        error = np.subtract(1.0, tpr)
        np.multiply(0.5, error, out=error)
        error += np.multiply(0.5, fpr)
        return float(np.min(error))

    def oscr_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, ccr, thresholds)`` of the OSCR curve from ``(0, 0, +inf)``; needs correctness flags."""
        return tuple(a.copy() for a in self._oscr_curve())

    def _oscr_curve(self):
        if self.correct_le is None:
            raise MetricInputError("this Ranking was built without known_correct flags; OSCR needs them")
        if "oscr" not in self._memo:
            ccs = self.correct_le[-1] - self._below(self.correct_le)
            fps = self.n_unknown - self._below(self.unknown_le)
            self._memo["oscr"] = (np.concatenate(([0.0], fps[::-1])) / self.n_unknown,
                                  np.concatenate(([0.0], ccs[::-1])) / self.n_known,
                                  np.concatenate(([np.inf], self.levels[::-1])))
        return self._memo["oscr"]

    def oscr(self) -> float:
        """Trapezoid area under :meth:`oscr_curve` (``integral CCR dFPR``)."""
        fpr, ccr, _ = self._oscr_curve()
        return float(np.sum(np.diff(fpr) * (ccr[1:] + ccr[:-1]) / 2.0))

    def ccr_at_fpr(self, target: float) -> float:
        """CCR at the smallest OSCR threshold whose FPR is ``<= target`` (no interpolation)."""
        target = check_fraction(target, "fpr")
        f, ccr, _ = self._oscr_curve()
        return float(ccr[int(np.searchsorted(f, target, side="right")) - 1])
