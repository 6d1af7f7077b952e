"""Tests for facebench.metrics.ood: every metric against an independent oracle.

Oracles: the golden vectors of spec/protocols.md §9, scikit-learn (roc_auc_score,
average_precision_score, auc(precision_recall_curve), roc_curve), brute force
over pairs/thresholds written here, and small hand-worked examples.
"""

import math

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import (
    auc,
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from facebench.metrics.ood import (
    AUPR_METHODS,
    FPR_RULES,
    POSITIVES,
    aupr,
    auroc,
    ccr_at_fpr,
    detection_error,
    fpr_at_tpr,
    metric_key,
    ood_metrics,
    oscr,
    oscr_curve,
    rank_scores,
    roc_curve_points,
    stratified_bootstrap,
)

# --------------------------------------------------------------------------- oracles


def _labels_scores(known, unknown, positive="known"):
    known = np.asarray(known, dtype=np.float64)
    unknown = np.asarray(unknown, dtype=np.float64)
    if positive == "known":
        return np.r_[np.ones(known.size), np.zeros(unknown.size)], np.r_[known, unknown]
    return np.r_[np.zeros(known.size), np.ones(unknown.size)], -np.r_[known, unknown]


def sk_fpr_interp(known, unknown, tpr=0.95, positive="known"):
    """ood_metrics.fpr_at_95_tpr (protocols.md §4.2), sklearn's default roc_curve."""
    y, s = _labels_scores(known, unknown, positive)
    fpr, t, _ = roc_curve(y, s, pos_label=1)
    if all(t < tpr):
        return 0.0
    if all(t >= tpr):
        return min(f for f, tt in zip(fpr, t) if tt >= tpr)
    return float(np.interp(tpr, t, fpr))


def sk_fpr_first(known, unknown, tpr=0.95, positive="known", drop_intermediate=False):
    """pytorch-ood (torchmetrics binary_roc + searchsorted: full curve) or, with
    drop_intermediate=True, OpenOOD v1.5 (fpr[argmax(tpr >= 0.95)] on default roc_curve)."""
    y, s = _labels_scores(known, unknown, positive)
    fpr, t, _ = roc_curve(y, s, drop_intermediate=drop_intermediate)
    return float(fpr[np.argmax(t >= tpr)])


def sk_aupr(known, unknown, positive, method):
    y, s = _labels_scores(known, unknown, positive)
    if method == "ap":
        return average_precision_score(y, s)
    p, r, _ = precision_recall_curve(y, s)
    return auc(r, p)


def brute_auroc(known, unknown):
    k = np.asarray(known, dtype=np.float64)[:, None]
    u = np.asarray(unknown, dtype=np.float64)[None, :]
    return float(np.mean((k > u) + 0.5 * (k == u)))


def brute_detection_error(known, unknown):
    k = np.asarray(known, dtype=np.float64)
    u = np.asarray(unknown, dtype=np.float64)
    best = 0.5  # accept nothing (threshold +inf)
    for t in np.unique(np.r_[k, u]):
        best = min(best, 0.5 * (1 - np.mean(k >= t)) + 0.5 * np.mean(u >= t))
    return best


def _random_case(seed, nk, nu, decimals=None, shift=0.8):
    rng = np.random.default_rng(seed)
    k = rng.normal(shift, 1.0, nk)
    u = rng.normal(0.0, 1.3, nu)
    if decimals is not None:  # rounding creates ties within and across groups
        k, u = np.round(k, decimals), np.round(u, decimals)
    return k, u


SIZES = [(1, 1), (1, 7), (9, 1), (2, 3), (20, 9), (3, 200), (137, 61), (2000, 37), (45, 2000), (1000, 1000)]
CASES = [(seed, nk, nu, dec) for seed, (nk, nu) in enumerate(SIZES) for dec in (None, 1, 0)]


# --------------------------------------------------------------------------- golden vectors (protocols.md §9)

GOLD_A = ([0.9, 0.8, 0.75, 0.7, 0.6, 0.55, 0.5, 0.4, 0.35, 0.3], [0.65, 0.45, 0.2, 0.1, 0.05])
GOLD_B = ([1, 1, 0.5, 0.5, 0.5, 0.2], [0.5, 0.2, 0.2, 0.1])


def _gold_d():
    rng = np.random.default_rng(0)
    close = rng.normal(1, 1, 1000)
    open_ = rng.normal(0, 1, 500)  # drawn after close, as in the spec
    return close, open_


def test_golden_a():
    k, u = GOLD_A
    assert auroc(k, u) == pytest.approx(0.82, abs=1e-12)
    assert fpr_at_tpr(k, u) == pytest.approx(0.4, abs=1e-12)
    assert ood_metrics(k, u)["fpr@tpr95[pos=known,rule=interp]"] == pytest.approx(0.4, abs=1e-12)


def test_golden_b_ties():
    k, u = GOLD_B
    assert auroc(k, u) == pytest.approx(0.8541666666666666, abs=1e-12)  # 20.5 / 24
    assert fpr_at_tpr(k, u, rule="interp") == pytest.approx(0.6, abs=1e-12)


# Golden case C ("score = -loss, see script") is not reproducible: its inputs live in
# checks/golden_vectors.py, which is not available, so it is skipped here.


def test_golden_d():
    close, open_ = _gold_d()
    assert round(auroc(close, open_), 6) == 0.738858
    assert round(fpr_at_tpr(close, open_, positive="known", rule="interp"), 3) == 0.714
    m = ood_metrics(close, open_)
    assert round(m["auroc"], 6) == 0.738858
    assert round(m["fpr@tpr95[pos=known,rule=interp]"], 3) == 0.714


def test_golden_e_unknown_positive_uses_interp_rule():
    # E: "OOD taken as positive with -score", through the same ood_metrics (interp) function.
    close, open_ = _gold_d()
    assert round(auroc(close, open_), 6) == 0.738858  # AUROC does not depend on the positive
    e = fpr_at_tpr(close, open_, positive="unknown", rule="interp")
    assert round(e, 3) == 0.765
    assert e == sk_fpr_interp(close, open_, positive="unknown")
    # the "first" rule (OpenOOD v1.5 / pytorch-ood) gives a different number on the same data
    assert round(fpr_at_tpr(close, open_, positive="unknown", rule="first"), 3) == 0.764
    assert ood_metrics(close, open_)["fpr@tpr95[pos=unknown,rule=interp]"] == e


# --------------------------------------------------------------------------- random vs scikit-learn


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
def test_auroc_matches_sklearn_and_brute_force(seed, nk, nu, dec):
    k, u = _random_case(seed, nk, nu, dec)
    y, s = _labels_scores(k, u)
    ours = auroc(k, u)
    assert ours == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    if nk * nu <= 200_000:
        assert ours == pytest.approx(brute_auroc(k, u), abs=1e-12)


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
def test_auroc_equals_mann_whitney_from_scipy_rankdata(seed, nk, nu, dec):
    k, u = _random_case(seed, nk, nu, dec)
    ranks = rankdata(np.r_[k, u], method="average")
    expected = (ranks[:nk].sum() - nk * (nk + 1) / 2) / (nk * nu)
    assert auroc(k, u) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
@pytest.mark.parametrize("positive", POSITIVES)
def test_roc_curve_points_matches_sklearn(seed, nk, nu, dec, positive):
    k, u = _random_case(seed, nk, nu, dec)
    y, s = _labels_scores(k, u, positive)
    fpr, tpr, thr = roc_curve_points(k, u, positive=positive)
    sf, st, sthr = roc_curve(y, s, drop_intermediate=False)
    assert fpr.dtype == tpr.dtype == thr.dtype == np.float64
    np.testing.assert_array_equal(fpr, sf)
    np.testing.assert_array_equal(tpr, st)
    np.testing.assert_array_equal(thr, sthr)
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
@pytest.mark.parametrize("positive", POSITIVES)
@pytest.mark.parametrize("target", [0.95, 0.9, 0.5, 0.05, 1.0, 0.0])
def test_fpr_at_tpr_both_rules_match_sklearn_reimplementation(seed, nk, nu, dec, positive, target):
    k, u = _random_case(seed, nk, nu, dec)
    # interp mirrors sklearn's drop_intermediate=True exactly (bit for bit)
    assert fpr_at_tpr(k, u, target, positive, "interp") == sk_fpr_interp(k, u, target, positive)
    assert fpr_at_tpr(k, u, target, positive, "first") == sk_fpr_first(k, u, target, positive)


def test_fpr_interp_depends_on_drop_intermediate_bitwise():
    # Found by search: interpolating on the full curve instead of sklearn's reduced one
    # changes the result in the last bit; we reproduce ood_metrics exactly.
    k = [3, 3, 3, 5, 2, 2, 5, 4, 3, 4, 3, 3, 0, 2, 1, 1, 3, 4, 0, 4]
    u = [1, 4, 0, 2, 3, 3]
    fpr, tpr, _ = roc_curve_points(k, u)
    full = float(np.interp(0.95, tpr, fpr))
    assert full != sk_fpr_interp(k, u)
    assert fpr_at_tpr(k, u) == sk_fpr_interp(k, u)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.95, 0.999])
@pytest.mark.parametrize("positive", POSITIVES)
def test_fpr_interp_across_long_collinear_runs_matches_sklearn_bitwise(target, positive):
    # Runs of hundreds of collinear ROC points (99 unknowns between consecutive knowns, 300 knowns
    # in a row): sklearn's drop_intermediate removes them all, so the two thinned points around the
    # target lie far apart on the full curve (more than the first search window of 64).
    k = np.r_[np.arange(0.0, 700.0, 100.0), np.arange(1000.0, 1300.0), np.full(3, 350.25)]
    u = np.r_[np.arange(0.5, 700.5), np.arange(900.0, 905.0)]
    assert roc_curve(np.r_[np.ones(k.size), np.zeros(u.size)], np.r_[k, u])[0].size < 40
    assert fpr_at_tpr(k, u, target, positive, "interp") == sk_fpr_interp(k, u, target, positive)


def test_fpr_first_differs_from_openood_when_drop_intermediate_removes_the_point():
    # 20 known: TPR >= 0.95 needs 19 accepted -> threshold 1: unknown >= 1 is 7/9.
    # The ROC vertices (fps, tps) = (5, 18), (7, 19), (9, 20) are collinear with equal
    # steps, so sklearn's drop_intermediate=True deletes (7, 19) and OpenOOD's
    # argmax(tpr >= 0.95) lands on (9, 20), FPR 1.0. rule="first" uses the full curve
    # (the pytorch-ood / torchmetrics semantics): 7/9.
    k = [2, 1, 5, 2, 4, 3, 3, 0, 5, 4, 3, 4, 5, 3, 5, 4, 4, 2, 3, 2]
    u = [3, 1, 5, 5, 0, 1, 3, 0, 4]
    assert fpr_at_tpr(k, u, rule="first") == pytest.approx(7 / 9, abs=1e-15)
    assert sk_fpr_first(k, u, drop_intermediate=False) == pytest.approx(7 / 9, abs=1e-15)
    assert sk_fpr_first(k, u, drop_intermediate=True) == 1.0


def test_fpr_first_equals_openood_without_collinear_ties():
    for seed in range(5):
        k, u = _random_case(seed, 300, 200)  # continuous scores: no tie blocks
        for positive in POSITIVES:
            assert fpr_at_tpr(k, u, positive=positive, rule="first") == sk_fpr_first(
                k, u, positive=positive, drop_intermediate=True
            )


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
@pytest.mark.parametrize("positive", POSITIVES)
@pytest.mark.parametrize("method", AUPR_METHODS)
def test_aupr_matches_sklearn(seed, nk, nu, dec, positive, method):
    k, u = _random_case(seed, nk, nu, dec)
    assert aupr(k, u, positive, method) == pytest.approx(sk_aupr(k, u, positive, method), abs=1e-12)


def test_aupr_hand_worked():
    # known (positive) scores 3, 1; unknown 2. Descending: 3(K) 2(U) 1(K).
    # PR points: t=3: P=1, R=.5; t=2: P=.5, R=.5; t=1: P=2/3, R=1.
    # AP = .5*1 + .5*(2/3) = 5/6.  Trapezoid from (R0,P1): .5*(1+1)/2 + 0 + .5*(.5+2/3)/2 = .5 + 7/24.
    assert aupr([3, 1], [2], method="ap") == pytest.approx(5 / 6, abs=1e-15)
    assert aupr([3, 1], [2], method="trapezoid") == pytest.approx(0.5 + 7 / 24, abs=1e-15)
    # unknown positive with -s: -2 (U) ranks above -3 (K), tied with nothing: AP = 1 * ... :
    # descending -1(K) -2(U) -3(K): P at U = 1/2, R = 1 -> AP = 0.5
    assert aupr([3, 1], [2], positive="unknown", method="ap") == pytest.approx(0.5, abs=1e-15)


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
def test_detection_error_brute_force_and_symmetry(seed, nk, nu, dec):
    k, u = _random_case(seed, nk, nu, dec)
    if nk + nu > 1200:
        k, u = k[:600], u[:600]
    de = detection_error(k, u)
    assert de == pytest.approx(brute_detection_error(k, u), abs=1e-12)
    # unknown as positive with -s gives the same minimum
    assert de == pytest.approx(brute_detection_error(-u, -k), abs=1e-12)
    assert 0.0 <= de <= 0.5


def test_detection_error_hand_worked():
    # known [3, 2], unknown [2.5, 1]: t=3: .5*.5 + 0 = .25; t=2.5: .25 + .25 = .5;
    # t=2: 0 + .25 = .25; t=1: .5. Minimum 0.25.
    assert detection_error([3, 2], [2.5, 1]) == pytest.approx(0.25, abs=1e-15)
    assert detection_error([5, 6], [1, 2]) == 0.0  # perfectly separated
    assert detection_error([1, 2], [5, 6]) == 0.5  # reversed: best is to accept none/all


def test_ood_metrics_keys_and_values():
    k, u = _random_case(3, 300, 120, 1)
    m = ood_metrics(k, u)
    expected = [
        "auroc",
        "aupr[pos=known,method=ap]",
        "aupr[pos=known,method=trapezoid]",
        "aupr[pos=unknown,method=ap]",
        "aupr[pos=unknown,method=trapezoid]",
        "fpr@tpr95[pos=known,rule=interp]",
        "fpr@tpr95[pos=unknown,rule=first]",
        "fpr@tpr95[pos=known,rule=first]",
        "fpr@tpr95[pos=unknown,rule=interp]",
        "detection_error",
    ]
    assert sorted(m) == sorted(expected)
    assert all(isinstance(v, float) for v in m.values())
    assert m["auroc"] == pytest.approx(roc_auc_score(*_labels_scores(k, u)), abs=1e-12)
    for pos in POSITIVES:
        for meth in AUPR_METHODS:
            assert m[metric_key("aupr", positive=pos, method=meth)] == pytest.approx(sk_aupr(k, u, pos, meth), abs=1e-12)
        assert m[f"fpr@tpr95[pos={pos},rule=interp]"] == sk_fpr_interp(k, u, positive=pos)
        assert m[f"fpr@tpr95[pos={pos},rule=first]"] == sk_fpr_first(k, u, positive=pos)
    assert m["detection_error"] == pytest.approx(brute_detection_error(k, u), abs=1e-12)
    assert "fpr@tpr90[pos=known,rule=interp]" in ood_metrics(k, u, tpr=0.9)
    assert "fpr@tpr99.9[pos=known,rule=interp]" in ood_metrics(k, u, tpr=0.999)


def test_metric_key():
    assert metric_key("fpr@tpr95", positive="known", rule="interp") == "fpr@tpr95[pos=known,rule=interp]"
    assert metric_key("aupr", positive="unknown", method="ap") == "aupr[pos=unknown,method=ap]"
    assert metric_key("auroc") == "auroc"
    assert metric_key("x", method="trapezoid", rule="first", positive="known") == "x[pos=known,rule=first,method=trapezoid]"


# --------------------------------------------------------------------------- magnitude / precision


@pytest.mark.parametrize("scale,offset", [(1.0, 95.0), (1e6, 0.0), (1.0, 1e6), (1e3, 1e12)])
def test_large_magnitude_scores_match_sklearn(scale, offset):
    rng = np.random.default_rng(7)
    k = offset + scale * rng.normal(0.5, 1.0, 700)
    u = offset + scale * rng.normal(0.0, 1.0, 300)
    if offset == 95.0:
        k, u = np.clip(k, 90, 100), np.clip(u, 90, 100)  # all in 90..100 (sigmoid would saturate)
    y, s = _labels_scores(k, u)
    assert auroc(k, u) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert 0.55 < auroc(k, u) < 0.8  # not collapsed to 0.5
    for pos in POSITIVES:
        assert fpr_at_tpr(k, u, positive=pos) == sk_fpr_interp(k, u, positive=pos)
        assert aupr(k, u, pos, "ap") == pytest.approx(sk_aupr(k, u, pos, "ap"), abs=1e-12)


def test_float64_precision_kept_where_float32_would_merge_scores():
    # float32 spacing at 1e8 is 8: these six distinct scores all round to 1e8.
    k = 1e8 + np.array([0.5, 1.5, 2.5])
    u = 1e8 + np.array([1.0, 2.0, 3.0])
    assert np.unique(np.r_[k, u].astype(np.float32)).size == 1
    # exact: known > unknown for (1.5>1), (2.5>1), (2.5>2) -> 3/9; float32 would give 0.5
    assert auroc(k, u) == pytest.approx(1 / 3, abs=1e-15)
    assert auroc(k.astype(np.float32), u.astype(np.float32)) == 0.5  # what a cast would do
    assert auroc(k, u) == pytest.approx(roc_auc_score(*_labels_scores(k, u)), abs=1e-15)
    assert len(roc_curve_points(k, u)[0]) == 7  # six distinct thresholds + (0, 0)
    # same at 1e12 with sub-unit offsets (float64 spacing there ~1.2e-4)
    k12, u12 = 1e12 + np.array([0.001, 0.003]), 1e12 + np.array([0.002])
    assert auroc(k12, u12) == 0.5  # 0.003 > 0.002, 0.001 < 0.002
    assert auroc(k12, u12 + 0.0005) == 0.5
    assert auroc(k12 + 0.002, u12) == 1.0


# --------------------------------------------------------------------------- OSCR


def test_oscr_hand_worked():
    # known scores  [0.9, 0.8, 0.6, 0.3], correct [T, F, T, T]  (accuracy 3/4)
    # unknown scores [0.7, 0.5]
    # tau    accepted known (correct)  CCR   accepted unknown  FPR
    # +inf   -                         0     -                 0
    # 0.9    0.9 (T)                   1/4   -                 0
    # 0.8    +0.8 (F)                  1/4   -                 0
    # 0.7    -                         1/4   0.7               1/2
    # 0.6    +0.6 (T)                  2/4   -                 1/2
    # 0.5    -                         2/4   0.5               1
    # 0.3    +0.3 (T)                  3/4   -                 1
    # area (trapezoid in FPR): 0->1/2 at CCR 1/4: 1/8; 1/2->1 from CCR 2/4 to 2/4: 1/4 -> 3/8
    ks, kc, us = [0.9, 0.8, 0.6, 0.3], [True, False, True, True], [0.7, 0.5]
    fpr, ccr, thr = oscr_curve(ks, kc, us)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(ccr, [0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.75])
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3])
    assert oscr(ks, kc, us) == pytest.approx(3 / 8, abs=1e-15)
    # ccr_at_fpr: largest accepted set with FPR <= target
    assert ccr_at_fpr(ks, kc, us, 0.0) == pytest.approx(0.25)  # tau = 0.8
    assert ccr_at_fpr(ks, kc, us, 0.49) == pytest.approx(0.25)
    assert ccr_at_fpr(ks, kc, us, 0.5) == pytest.approx(0.5)  # tau = 0.6
    assert ccr_at_fpr(ks, kc, us, 1.0) == pytest.approx(0.75)  # everything: accuracy


def test_ccr_at_fpr_ties_move_together():
    # unknown tie block at 0.5 (2 of 4 unknown): FPR jumps 0.25 -> 0.75 at once
    ks, kc, us = [0.9, 0.5, 0.4], [1, 1, 1], [0.6, 0.5, 0.5, 0.1]
    # tau=0.6: FPR 1/4, CCR 1/3; tau=0.5: FPR 3/4 (tie block), CCR 2/3; tau=0.4: FPR 3/4, CCR 1
    assert ccr_at_fpr(ks, kc, us, 0.5) == pytest.approx(1 / 3)  # 0.5 alone cannot be accepted
    assert ccr_at_fpr(ks, kc, us, 0.74) == pytest.approx(1 / 3)
    assert ccr_at_fpr(ks, kc, us, 0.75) == pytest.approx(1.0)  # tau = 0.4, the largest set


@pytest.mark.parametrize("seed,nk,nu,dec", CASES)
def test_oscr_equals_auroc_when_all_correct(seed, nk, nu, dec):
    k, u = _random_case(seed, nk, nu, dec)
    assert oscr(k, np.ones(nk, dtype=bool), u) == pytest.approx(auroc(k, u), abs=1e-12)
    fpr, ccr, thr = oscr_curve(k, np.ones(nk, dtype=bool), u)
    rf, rt, rthr = roc_curve_points(k, u)
    np.testing.assert_allclose(fpr, rf, atol=1e-15)
    np.testing.assert_allclose(ccr, rt, atol=1e-15)
    np.testing.assert_array_equal(thr, rthr)


@pytest.mark.parametrize("seed", range(4))
def test_oscr_curve_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = np.round(rng.normal(0.5, 1, 60), 1)
    u = np.round(rng.normal(0, 1, 40), 1)
    c = rng.random(60) < 0.7
    fpr, ccr, thr = oscr_curve(k, c, u)
    taus = np.unique(np.r_[k, u])[::-1]
    np.testing.assert_array_equal(thr[1:], taus)
    np.testing.assert_allclose(ccr[1:], [np.mean(c & (k >= t)) for t in taus], atol=1e-15)
    np.testing.assert_allclose(fpr[1:], [np.mean(u >= t) for t in taus], atol=1e-15)
    assert (fpr[-1], ccr[-1]) == (1.0, pytest.approx(c.mean()))
    assert oscr(k, c, u) == pytest.approx(np.trapezoid(ccr, fpr), abs=1e-12)
    assert oscr(k, c, u) <= c.mean() + 1e-12
    for target in (0.0, 0.05, 0.1, 0.33, 0.5, 1.0):
        ok = [t for t in np.r_[np.inf, taus] if np.mean(u >= t) <= target]
        assert ccr_at_fpr(k, c, u, target) == pytest.approx(np.mean(c & (k >= min(ok))), abs=1e-15)


# --------------------------------------------------------------------------- bootstrap


def test_stratified_bootstrap_sizes_shape_determinism():
    k, u = _random_case(0, 37, 11)
    vals = stratified_bootstrap(lambda a, b: len(a) * 1000 + len(b), k, u, n_resamples=50, seed=3)
    assert vals.shape == (50,) and vals.dtype == np.float64
    assert np.all(vals == 37 * 1000 + 11)
    a = stratified_bootstrap(auroc, k, u, n_resamples=200, seed=5)
    b = stratified_bootstrap(auroc, k, u, n_resamples=200, seed=5)
    c = stratified_bootstrap(auroc, k, u, n_resamples=200, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all((a >= 0) & (a <= 1)) and np.unique(a).size > 10


def test_stratified_bootstrap_draws_from_the_right_groups():
    k = np.arange(10, dtype=float)  # 0..9
    u = 100 + np.arange(5, dtype=float)  # 100..104
    seen = []

    def stat(kb, ub):
        assert np.isin(kb, k).all() and np.isin(ub, u).all()
        seen.append((kb.copy(), ub.copy()))
        return 0.0

    stratified_bootstrap(stat, k, u, n_resamples=20, seed=0)
    assert any(np.unique(kb).size < 10 for kb, _ in seen)  # sampled with replacement


def test_stratified_bootstrap_extra_known_aligned():
    k = np.arange(50, dtype=float)
    correct = (np.arange(50) % 2 == 0)
    u = -np.arange(20, dtype=float)

    def stat(kb, ub, cb):
        # correctness travels with its score: even scores are the correct ones
        assert np.array_equal(cb, kb % 2 == 0)
        return oscr(kb, cb, ub)

    vals = stratified_bootstrap(stat, k, u, n_resamples=30, seed=1, extra_known=correct)
    assert vals.shape == (30,)
    with pytest.raises(ValueError, match="extra_known"):
        stratified_bootstrap(stat, k, u, n_resamples=3, extra_known=correct[:-1])


def test_stratified_bootstrap_bad_args():
    with pytest.raises(ValueError, match="n_resamples"):
        stratified_bootstrap(auroc, [1.0], [0.0], n_resamples=0)
    with pytest.raises(ValueError, match="callable"):
        stratified_bootstrap("auroc", [1.0], [0.0])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "fn",
    [
        auroc,
        roc_curve_points,
        fpr_at_tpr,
        aupr,
        detection_error,
        ood_metrics,
    ],
)
def test_errors_empty_nan_inf(fn):
    with pytest.raises(ValueError, match="known is empty"):
        fn([], [1.0])
    with pytest.raises(ValueError, match="unknown is empty"):
        fn([1.0], [])
    with pytest.raises(ValueError, match="NaN at index 1"):
        fn([1.0, math.nan], [0.0])
    with pytest.raises(ValueError, match="unknown contains inf"):
        fn([1.0], [0.0, -math.inf])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1.0, 2.0]], [0.0])
    with pytest.raises(ValueError, match="numeric"):
        fn(["a"], [0.0])


def test_errors_bad_convention_strings_list_allowed_values():
    k, u = [1.0, 2.0], [0.0]
    with pytest.raises(ValueError, match="positive must be one of 'known', 'unknown'; got 'ood'"):
        fpr_at_tpr(k, u, positive="ood")
    with pytest.raises(ValueError, match="positive must be one of 'known', 'unknown'"):
        aupr(k, u, positive="in")
    with pytest.raises(ValueError, match="positive must be one of"):
        roc_curve_points(k, u, positive=1)
    with pytest.raises(ValueError, match="rule must be one of 'interp', 'first'; got 'closest'"):
        fpr_at_tpr(k, u, rule="closest")
    with pytest.raises(ValueError, match="method must be one of 'ap', 'trapezoid'; got 'step'"):
        aupr(k, u, method="step")
    with pytest.raises(ValueError, match="rule must be one of"):
        metric_key("fpr@tpr95", rule="nearest")
    with pytest.raises(ValueError, match=r"tpr must be in \[0, 1\]"):
        fpr_at_tpr(k, u, tpr=95)
    assert set(FPR_RULES) == {"interp", "first"} and set(AUPR_METHODS) == {"ap", "trapezoid"}


def test_errors_oscr_inputs():
    with pytest.raises(ValueError, match="length mismatch"):
        oscr([1.0, 2.0], [True], [0.0])
    with pytest.raises(ValueError, match="0/1"):
        oscr([1.0, 2.0], [1, 2], [0.0])
    with pytest.raises(ValueError, match="unknown_scores is empty"):
        oscr_curve([1.0], [True], [])
    with pytest.raises(ValueError, match="known_scores contains NaN"):
        ccr_at_fpr([math.nan], [True], [0.0], 0.1)
    with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\]"):
        ccr_at_fpr([1.0], [True], [0.0], 5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vectorised_open_set_bootstrap_equals_the_loop(seed):
    """bootstrap_open_set draws the same resamples as stratified_bootstrap and computes the same
    statistics from per-threshold counts (ties from rounding included)."""
    from facebench.metrics.ood import bootstrap_open_set, stratified_bootstrap

    rng = np.random.default_rng(seed)
    nk, nu = int(rng.integers(1, 300)), int(rng.integers(1, 200))
    k, u = np.round(rng.normal(1, 1, nk), 1), np.round(rng.normal(0, 1, nu), 1)
    c = rng.random(nk) < 0.8
    fast = bootstrap_open_set(k, c, u, tpr=0.9, n_resamples=40, seed=seed, chunk=7)
    loops = [stratified_bootstrap(auroc, k, u, 40, seed),
             stratified_bootstrap(lambda a, b: fpr_at_tpr(a, b, 0.9, "known", "interp"), k, u, 40, seed),
             stratified_bootstrap(lambda a, b: fpr_at_tpr(a, b, 0.9, "unknown", "first"), k, u, 40, seed),
             stratified_bootstrap(lambda a, b, cc: oscr(a, cc, b), k, u, 40, seed, extra_known=c)]
    assert list(fast) == ["auroc", "fpr@tpr90[pos=known,rule=interp]", "fpr@tpr90[pos=unknown,rule=first]", "oscr"]
    for got, want in zip(fast.values(), loops):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("decimals", [None, 0, 2])
def test_known_cells_are_the_stable_descending_order(decimals):
    """The known cells of a resample (descending score, ties by position) from the unstable sort equal
    ``argsort(-k, kind="stable")``: with no ties, with many tied runs, and with -0.0 tied to 0.0."""
    from facebench.metrics.ood import _known_cells

    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 5000):
        k = rng.normal(0, 1, n)
        if decimals is not None:
            k = np.round(k, decimals)
            k[rng.random(n) < 0.1] = -0.0
        np.testing.assert_array_equal(_known_cells(k), np.argsort(-k, kind="stable"))


def test_ood_metrics_are_the_same_in_threads(monkeypatch):
    """Above 2**18 levels both positive classes' metrics run in threads (and the runs sort in threads): the
    same values, in the same key order, as on one CPU."""
    from facebench.metrics import _threads

    rng = np.random.default_rng(4)
    k, u = rng.normal(0.5, 1, 300_000), np.round(rng.normal(0, 1, 150_000), 3)  # > 2**18 levels
    c = rng.random(k.size) < 0.6
    monkeypatch.setattr(_threads, "usable_cpus", lambda: 1)
    one, ranked = ood_metrics(k, u), rank_scores(k, u, c)
    monkeypatch.setattr(_threads, "usable_cpus", lambda: 2)
    two, ranked_two = ood_metrics(k, u), rank_scores(k, u, c)
    assert list(one) == list(two) and one == two
    assert ranked.oscr() == ranked_two.oscr()
    np.testing.assert_array_equal(ranked.known_le, ranked_two.known_le)
