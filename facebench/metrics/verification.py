"""Face verification (1:1) metrics: pair scores, 10-fold accuracy, ROC, TAR@FAR.

Conventions (see ``spec/anchors.md`` §3.4 and ``spec/protocols.md`` §6.2):

* A verification set is a list of pairs with a binary label ``same``
  (True / 1 = genuine pair, same identity; False / 0 = impostor pair).
* Pair scores are either a **similarity** (``"cosine"``, higher = same) or a
  **distance** (``"sqeuclidean"``, squared L2 distance of L2-normalised
  embeddings, in [0, 4], lower = same). Curve functions take
  ``higher_is_same_`` to say which; internally a distance ``d`` is scored as
  ``-d`` and every reported threshold is converted back to the input units.
* ROC / TAR@FAR: a threshold ``t`` **accepts** (predicts "same") every pair
  with ``score >= t`` (similarity) or ``dist <= t`` (distance); thresholds run
  over the distinct scores, so tied scores always move together.
  FAR = accepted impostors / impostors, TAR = accepted genuines / genuines.
* The two published 10-fold LFW-style protocols are reproduced exactly,
  each with its own strict comparison (``dist < t`` and ``score > t``):
  :func:`insightface_10fold` and :func:`facexzoo_10fold`. Their "accuracy"
  numbers are **not** interchangeable (different threshold grid, threshold
  rule and spread statistic).
* Everything is computed in float64.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from facebench.errors import MetricInputError

from ._validation import (
    as_array,
    as_float64,
    check_binary_flags,
    check_bool,
    check_choice,
    check_finite,
    check_fraction,
    check_int_at_least,
    check_positive_real,
    check_real,
    check_score_vector,
)

__all__ = [
    "METRICS",
    "l2_normalize",
    "flip_sum_embeddings",
    "pair_scores",
    "higher_is_same",
    "kfold_indices",
    "insightface_10fold",
    "facexzoo_10fold",
    "roc_points",
    "tar_at_far",
    "bootstrap_tar_at_far",
    "det_points",
    "best_accuracy_threshold",
    "verification_accuracy_at_threshold",
    "DEFAULT_FAR_TARGETS",
]

#: Allowed values of ``metric`` in :func:`pair_scores` / :func:`higher_is_same`.
METRICS = ("cosine", "sqeuclidean")
#: FAR targets reported for IJB-B/C 1:1 (insightface ``eval_ijbc.py``).
DEFAULT_FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)

_INSIGHTFACE_CONVENTION = (
    "insightface: dist = squared L2 distance (lower = same), predict same iff dist < t; "
    "t from thresholds (default np.arange(0, 4, 0.01)) maximising accuracy on the other folds "
    "(first argmax); folds = contiguous KFold(shuffle=False); std = np.std(ddof=0) over folds"
)
_FACEXZOO_CONVENTION = (
    "facexzoo: score = cosine similarity (higher = same); t from the grid min + (max - min) / n * k, "
    "k = 1..n, over the training folds' scores, maximising Youden J = TPR - FPR (score > t, first argmax); "
    "held-out accuracy counts genuine score > t and impostor score < t; "
    "spread = standard error std(ddof=1) / sqrt(n_folds)"
)


# --------------------------------------------------------------------------- validation


_EMPTY_HINT = "verification metrics need at least one pair"


def _finite_array(x, name: str) -> np.ndarray:
    """Any-shape numeric array (embeddings) as float64, every value finite."""
    return check_finite(as_float64(as_array(x, name), name), name)


def _check_scores_same(score, same, score_name: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """One finite score per pair and its genuine/impostor flag (bool, 1 = genuine pair)."""
    s = check_score_vector(score, score_name, _EMPTY_HINT)
    return s, check_binary_flags(same, s.shape[0], "same", "1 = genuine pair")


def _require_both(same: np.ndarray, what: str) -> tuple[int, int]:
    n_gen = int(same.sum())
    n_imp = int(same.shape[0] - n_gen)
    if n_gen == 0:
        raise MetricInputError(f"{what}: there are no genuine pairs (same == 1), so TAR is undefined")
    if n_imp == 0:
        raise MetricInputError(f"{what}: there are no impostor pairs (same == 0), so FAR is undefined")
    return n_gen, n_imp


# --------------------------------------------------------------------------- embeddings and scores


def l2_normalize(x, eps=1e-12) -> np.ndarray:
    """Return ``x / max(||x||_2, eps)`` along the last axis (float64).

    Zero vectors stay zero (as with ``sklearn.preprocessing.normalize``).
    """
    arr = _finite_array(x, "x")
    if arr.ndim == 0:
        raise MetricInputError("x must be at least 1-D (a vector or an (n, d) matrix of embeddings)")
    if arr.shape[-1] == 0:
        raise MetricInputError(f"x has an empty last (feature) axis, shape {arr.shape}")
    eps = check_positive_real(eps, "eps")
    norm = np.sqrt(np.sum(arr * arr, axis=-1, keepdims=True))
    return arr / np.maximum(norm, eps)


def flip_sum_embeddings(emb, emb_flipped) -> np.ndarray:
    """insightface test-time flip: ``L2normalise(emb + emb_flipped)`` (row-wise)."""
    a = _finite_array(emb, "emb")
    b = _finite_array(emb_flipped, "emb_flipped")
    if a.shape != b.shape:
        raise MetricInputError(f"emb and emb_flipped must have the same shape, got {a.shape} and {b.shape}")
    return l2_normalize(a + b)


def _check_emb_pair(emb_a, emb_b) -> tuple[np.ndarray, np.ndarray]:
    a = _finite_array(emb_a, "emb_a")
    b = _finite_array(emb_b, "emb_b")
    for arr, name in ((a, "emb_a"), (b, "emb_b")):
        if arr.ndim != 2:
            raise MetricInputError(f"{name} must be a 2-D (n_pairs, dim) array, got shape {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise MetricInputError(f"{name} is empty, shape {arr.shape}")
    if a.shape != b.shape:
        raise MetricInputError(
            f"emb_a and emb_b must have the same shape (one row per pair), got {a.shape} and {b.shape}"
        )
    return a, b


def pair_scores(emb_a, emb_b, metric="cosine") -> np.ndarray:
    """Score row ``i`` of ``emb_a`` against row ``i`` of ``emb_b``.

    Both are L2-normalised first (``a = emb_a / ||emb_a||``). ``"cosine"``:
    ``sum(a * b)`` in [-1, 1], higher = same. ``"sqeuclidean"``:
    ``sum((a - b) ** 2)`` = ``2 - 2 cos`` in [0, 4], lower = same (insightface).
    """
    metric = check_choice(metric, METRICS, "metric")
    a, b = _check_emb_pair(emb_a, emb_b)
    a = l2_normalize(a)
    b = l2_normalize(b)
    if metric == "cosine":
        return np.sum(a * b, axis=1)
    diff = a - b
    return np.sum(diff * diff, axis=1)


def higher_is_same(metric) -> bool:
    """True for similarities (``"cosine"``), False for distances (``"sqeuclidean"``)."""
    return check_choice(metric, METRICS, "metric") == "cosine"


# --------------------------------------------------------------------------- 10-fold protocols


def kfold_indices(n_pairs, n_folds=10) -> np.ndarray:
    """Fold id (0..n_folds-1) per pair, contiguous blocks in pair order.

    Same split as ``sklearn.model_selection.KFold(n_folds, shuffle=False)``:
    fold sizes are ``n // k``, the first ``n % k`` folds one larger.
    """
    n = check_int_at_least(n_pairs, "n_pairs", 1)
    k = check_int_at_least(n_folds, "n_folds", 2)
    if k > n:
        raise MetricInputError(f"n_folds={k} is larger than n_pairs={n}; every fold needs at least one pair")
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k, dtype=np.int64), sizes)


def _resolve_folds(folds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(fold id per pair, sorted distinct fold ids)``.

    ``folds`` is None (10 contiguous folds), an int k (k contiguous folds) or
    an array of integer fold ids, one per pair.
    """
    if folds is None:
        ids = kfold_indices(n, 10)
    elif isinstance(folds, numbers.Integral) and not isinstance(folds, (bool, np.bool_)):
        ids = kfold_indices(n, folds)
    else:
        arr = np.asarray(folds)
        if arr.ndim != 1:
            raise MetricInputError(
                f"folds must be None, an int, or a 1-D array of fold ids (one per pair), got shape {arr.shape}"
            )
        if arr.shape[0] != n:
            raise MetricInputError(f"folds has {arr.shape[0]} entries but there are {n} pairs (length mismatch)")
        if np.issubdtype(arr.dtype, np.integer):
            ids = arr.astype(np.int64, copy=False)
        elif np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and np.all(arr == np.round(arr)):
            ids = arr.astype(np.int64)
        else:
            raise MetricInputError(f"folds must hold integer fold ids, got dtype {arr.dtype} with non-integer values")
    uniq = np.unique(ids)
    if uniq.size < 2:
        raise MetricInputError(f"need at least 2 distinct folds for cross-validated thresholds, got {uniq.size}")
    return ids, uniq


def _split_fold(s: np.ndarray, y: np.ndarray, ids: np.ndarray, f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold ``f`` held out: ``(test mask, sorted genuine scores, sorted impostor scores of the other folds)``."""
    test = ids == f
    train = ~test
    return test, np.sort(s[train & y]), np.sort(s[train & ~y])


def insightface_10fold(dist, same, folds=None, thresholds=None) -> dict:
    """insightface ``arcface_torch/eval/verification.py`` k-fold accuracy.

    ``dist`` = squared L2 distance (lower = same); predict same iff
    ``dist < t``. For each fold, ``t`` = the grid value (default
    ``np.arange(0, 4, 0.01)``) maximising accuracy on the other folds (first
    argmax); fold accuracy = correct / fold size on the held-out fold.
    Returns ``accuracy_mean``, ``accuracy_std`` (``np.std``, ddof=0 over
    folds), ``fold_accuracies``, ``thresholds`` (chosen per fold), ``n_folds``
    and ``convention``. ``folds``: None (= ``kfold_indices(n, 10)``), an int,
    or fold ids per pair.
    """
    d, y = _check_scores_same(dist, same, "dist")
    ids, uniq = _resolve_folds(folds, d.shape[0])
    if thresholds is None:
        grid = np.arange(0, 4, 0.01)
    else:
        grid = check_score_vector(thresholds, "thresholds", "pass at least one threshold")
    fold_acc = np.empty(uniq.size, dtype=np.float64)
    fold_thr = np.empty(uniq.size, dtype=np.float64)
    for i, f in enumerate(uniq):
        test, gen, imp = _split_fold(d, y, ids, f)
        # correct on training folds: genuine with dist < t plus impostors with dist >= t
        correct = np.searchsorted(gen, grid, side="left") + (imp.size - np.searchsorted(imp, grid, side="left"))
        t = grid[int(np.argmax(correct))]
        pred = d[test] < t
        fold_acc[i] = float(np.count_nonzero(pred == y[test])) / float(np.count_nonzero(test))
        fold_thr[i] = t
    return {
        "accuracy_mean": float(np.mean(fold_acc)),
        "accuracy_std": float(np.std(fold_acc)),
        "fold_accuracies": fold_acc,
        "thresholds": fold_thr,
        "n_folds": int(uniq.size),
        "convention": _INSIGHTFACE_CONVENTION,
    }


def facexzoo_10fold(score, same, folds=None, n_thresholds=1000) -> dict:
    """FaceX-Zoo ``test_protocol/lfw/lfw_evaluator.py`` k-fold accuracy.

    ``score`` = cosine similarity (higher = same). For each fold, on the
    training folds: grid ``t_k = min + k * (max - min) / n``, k = 1..n (n
    evenly spaced values in (min, max], FaceX-Zoo's own arithmetic), TPR/FPR
    with ``score > t``, ``t`` = first argmax of Youden J = TPR - FPR. On the
    held-out fold a genuine pair is correct iff ``score > t`` and an impostor
    iff ``score < t`` (as in FaceX-Zoo: a pair exactly at ``t`` counts as an
    error either way). Returns ``accuracy_mean``, ``accuracy_sem``
    (``std(ddof=1) / sqrt(n_folds)``), ``fold_accuracies``, ``thresholds``,
    ``n_folds``, ``convention``.
    """
    s, y = _check_scores_same(score, same)
    ids, uniq = _resolve_folds(folds, s.shape[0])
    n_thr = check_int_at_least(n_thresholds, "n_thresholds", 1)
    steps = np.arange(1, n_thr + 1, dtype=np.float64)
    fold_acc = np.empty(uniq.size, dtype=np.float64)
    fold_thr = np.empty(uniq.size, dtype=np.float64)
    for i, f in enumerate(uniq):
        test, gen, imp = _split_fold(s, y, ids, f)
        if gen.size == 0 or imp.size == 0:
            raise MetricInputError(
                f"facexzoo_10fold: the training folds for held-out fold {f} have no "
                f"{'genuine' if gen.size == 0 else 'impostor'} pairs, so Youden J (TPR - FPR) is undefined"
            )
        smin = min(gen[0], imp[0])
        smax = max(gen[-1], imp[-1])
        grid = smin + (smax - smin) / n_thr * steps
        tpr = (gen.size - np.searchsorted(gen, grid, side="right")) / gen.size
        fpr = (imp.size - np.searchsorted(imp, grid, side="right")) / imp.size
        t = grid[int(np.argmax(tpr - fpr))]
        st, yt = s[test], y[test]
        correct = np.count_nonzero(st[yt] > t) + np.count_nonzero(st[~yt] < t)
        fold_acc[i] = float(correct) / float(st.size)
        fold_thr[i] = t
    return {
        "accuracy_mean": float(np.mean(fold_acc)),
        "accuracy_sem": float(np.std(fold_acc, ddof=1) / np.sqrt(uniq.size)),
        "fold_accuracies": fold_acc,
        "thresholds": fold_thr,
        "n_folds": int(uniq.size),
        "convention": _FACEXZOO_CONVENTION,
    }


# --------------------------------------------------------------------------- ROC / TAR@FAR / DET


def _roc_counts(s: np.ndarray, y: np.ndarray):
    """(fps, tps, thresholds) with a leading (0, 0, +inf); ``s`` higher = same."""
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    ends = np.r_[np.flatnonzero(np.diff(ss)), ss.shape[0] - 1]
    yy = y[order]
    tps = np.cumsum(yy)[ends]
    fps = (ends + 1) - tps
    return (np.r_[0, fps].astype(np.int64), np.r_[0, tps].astype(np.int64), np.r_[np.inf, ss[ends]])


def _roc(score, same, higher_is_same_, what: str):
    hi = check_bool(higher_is_same_, "higher_is_same_")
    s, y = _check_scores_same(score, same)
    n_gen, n_imp = _require_both(y, what)
    fps, tps, thr = _roc_counts(s if hi else -s, y)
    if not hi:
        thr = -thr
    return fps, tps, thr, n_gen, n_imp


def roc_points(score, same, higher_is_same_=True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC as ``(far, tar, thresholds)``.

    Point ``i`` accepts pairs with ``score >= thresholds[i]`` (or
    ``dist <= thresholds[i]`` when ``higher_is_same_=False``);
    FAR = accepted impostors / impostors, TAR = accepted genuines / genuines.
    Thresholds are the distinct scores from strictest to loosest, in the
    input units; the first point is (0, 0) at threshold +inf (-inf for
    distances). Equals ``sklearn.metrics.roc_curve(same, score,
    drop_intermediate=False)`` (with ``-dist`` for distances).
    """
    fps, tps, thr, n_gen, n_imp = _roc(score, same, higher_is_same_, "roc_points")
    return fps / n_imp, tps / n_gen, thr


def _needed_impostors(target: float) -> int:
    return int(math.ceil(1.0 / target - 1e-9))


def tar_at_far(score, same, far_targets=DEFAULT_FAR_TARGETS, higher_is_same_=True) -> dict:
    """TAR at each FAR target: ``{target: {"tar", "far", "threshold", "resolved"}}``.

    Rule: the ROC point with the largest FAR <= target and, among those, the
    largest TAR (the operating point accepting the most genuine pairs while
    FAR <= target); ``far`` is that point's achieved FAR and ``threshold`` its
    threshold (accept ``score >= threshold``, or ``dist <= threshold``).
    A target below ``1 / n_impostor`` cannot be resolved (no non-zero FAR
    that small is measurable): ``tar``/``far``/``threshold`` are None,
    ``resolved`` False and ``reason`` says how many impostor pairs are needed.
    Note: insightface's IJB code (``eval_ijbc.py``) instead reports the TPR at
    the *nearest* FAR (``argmin |far - x|``), which may exceed the target.
    """
    fps, tps, thr, n_gen, n_imp = _roc(score, same, higher_is_same_, "tar_at_far")
    far = fps / n_imp
    tar = tps / n_gen
    out: dict = {}
    for x in _far_targets(far_targets):
        if 1.0 / n_imp > x:
            need = _needed_impostors(x)
            out[x] = {
                "tar": None, "far": None, "threshold": None, "resolved": False,
                "reason": (
                    f"FAR={x:g} is below 1/n_impostor = 1/{n_imp}: resolving it needs at least "
                    f"{need} impostor pairs, got {n_imp}"
                ),
            }
            continue
        i = int(np.searchsorted(far, x, side="right")) - 1  # far is non-decreasing; i >= 0 since far[0] = 0
        out[x] = {"tar": float(tar[i]), "far": float(far[i]), "threshold": float(thr[i]), "resolved": True}
    return out


def _far_targets(far_targets) -> list[float]:
    """A FAR target or a sequence of them, each checked to lie in (0, 1]."""
    if isinstance(far_targets, numbers.Real) and not isinstance(far_targets, (bool, np.bool_)):
        far_targets = (far_targets,)
    try:
        targets = list(far_targets)
    except TypeError:
        raise MetricInputError(f"far_targets must be a number or a sequence of numbers, got {far_targets!r}") from None
    if not targets:
        raise MetricInputError("far_targets is empty; pass at least one FAR target, e.g. (1e-3,)")
    return [check_fraction(x, "each FAR target", "(0, 1]", "1e-3, not 0.1%") for x in targets]


def _allowed_impostors(x: float, n_imp: int) -> int:
    """K: the most accepted impostors with ``K / n_imp <= x`` (in the float arithmetic of ``tar_at_far``)."""
    return int(np.searchsorted(np.arange(n_imp + 1) / n_imp, x, side="right")) - 1


def bootstrap_tar_at_far(score, same, far_targets=DEFAULT_FAR_TARGETS, n_resamples=1000, seed=0,
                         higher_is_same_=True) -> dict:
    """Bootstrap distribution of :func:`tar_at_far` per FAR target: ``{target: (B,) TARs}``, None where the
    target is unresolvable (below ``1 / n_impostor``).

    Resampling: genuine and impostor pairs apart (stratified, so every resample keeps both counts), with
    replacement, at pair level. Under :func:`tar_at_far`'s rule the TAR of a resample is the share of its
    genuine scores above ``v``, the (K+1)-th largest of its impostor scores, where K is the most impostors
    FAR <= target allows. Both are drawn exactly from their laws instead of from (B, n) index arrays:
    ``P(v >= u) = P(Binomial(n_imp, q(u)) >= K + 1)`` with ``q(u)`` the share of impostor scores >= u
    (inverse-CDF draw over the distinct impostor scores), then the genuine count above ``v`` is
    ``Binomial(n_gen, p(v))`` with ``p(v)`` the share of genuine scores > v. Each target's distribution is
    exact (targets are drawn independently of each other). Seeded by ``np.random.default_rng(seed)``.
    """
    from scipy.stats import binom

    hi = check_bool(higher_is_same_, "higher_is_same_")
    s, y = _check_scores_same(score, same)
    n_gen, n_imp = _require_both(y, "bootstrap_tar_at_far")
    b = check_int_at_least(n_resamples, "n_resamples", 1)
    s = s if hi else -s
    gen = np.sort(s[y])
    neg_imp = np.sort(-s[~y])  # impostor scores negated, increasing
    distinct = np.unique(neg_imp)
    u = -distinct  # distinct impostor scores, decreasing
    at_least = np.searchsorted(neg_imp, distinct, side="right")  # impostors with score >= u_j
    rng = np.random.default_rng(seed)
    out: dict = {}
    for x in _far_targets(far_targets):
        if 1.0 / n_imp > x:
            out[x] = None
            continue
        k = _allowed_impostors(x, n_imp)
        if k >= n_imp:
            out[x] = np.ones(b)
            continue
        cdf = binom.sf(k, n_imp, at_least / n_imp)  # P(v >= u_j), non-decreasing in j
        j = np.minimum(np.searchsorted(cdf, 1.0 - rng.random(b), side="left"), len(u) - 1)
        above = (n_gen - np.searchsorted(gen, u[j], side="right")) / n_gen
        out[x] = rng.binomial(n_gen, above) / n_gen
    return out


def det_points(score, same, higher_is_same_=True) -> tuple[np.ndarray, np.ndarray]:
    """DET curve ``(fmr, fnmr)`` = ``(far, 1 - tar)`` at the :func:`roc_points` thresholds."""
    far, tar, _ = roc_points(score, same, higher_is_same_)
    return far, 1.0 - tar


def verification_accuracy_at_threshold(score, same, threshold, higher_is_same_=True, *, strict=False) -> float:
    """Fraction of pairs classified correctly at a fixed threshold.

    Predict same iff ``score >= threshold`` (``dist <= threshold`` when
    ``higher_is_same_=False``), matching :func:`roc_points`; ``strict=True``
    uses ``>`` / ``<`` instead (the 10-fold protocols' comparison).
    """
    hi = check_bool(higher_is_same_, "higher_is_same_")
    st = check_bool(strict, "strict")
    s, y = _check_scores_same(score, same)
    t = check_real(threshold, "threshold")
    if hi:
        pred = s > t if st else s >= t
    else:
        pred = s < t if st else s <= t
    return float(np.count_nonzero(pred == y)) / float(y.shape[0])


def best_accuracy_threshold(score, same) -> tuple[float, float]:
    """``(threshold, accuracy)``: the threshold of ``score >= threshold`` (higher = same) with the highest
    accuracy over all pairs, among the pairs' own scores and ``+inf`` (reject every pair); ties go to the
    highest threshold (fewest false accepts). One sort: accepting the top k pairs gives
    ``accuracy = (TP_k + n_impostor - FP_k) / n``, read at the last pair of each run of equal scores."""
    s, y = _check_scores_same(score, same)
    if s.size == 0:
        raise MetricInputError("best_accuracy_threshold needs at least one pair")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    n, n_imp = y.size, int(np.count_nonzero(~y))
    last = np.append(s[1:] != s[:-1], True)
    correct = np.cumsum(y) + n_imp - np.cumsum(~y)
    thresholds = np.append(np.inf, s[last])
    accuracy = np.append(n_imp, correct[last]) / n
    best = int(np.argmax(accuracy))  # first maximum = highest threshold
    return float(thresholds[best]), float(accuracy[best])


def xqlfw_10fold(cos_sim, same, folds=None) -> dict:
    """XQLFW's evaluator (``Martlgap/xqlfw : code/evaluate.py``): cosine distance ``1 - cos``, thresholds
    ``np.arange(0, 2, 0.001)``, "same" iff distance < threshold, first accuracy-maximising threshold of the
    other folds, mean held-out accuracy (sklearn ``KFold(10, shuffle=False)`` = 10 contiguous blocks of the
    pair file, LFW's folds). :func:`insightface_10fold`'s rule on that score and grid."""
    out = insightface_10fold(1.0 - check_score_vector(cos_sim, "cos_sim", "pass one score per pair"), same, folds,
                             thresholds=np.arange(0, 2, 0.001))
    return {**out, "convention": "xqlfw: cosine distance, thresholds arange(0, 2, 0.001), same iff d < t, "
                                 "first argmax on the other folds"}
