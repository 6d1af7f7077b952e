"""Tests for facebench.metrics.verification: every metric against an independent oracle.

Oracles: straightforward loop re-implementations of the insightface and FaceX-Zoo
10-fold protocols written here (sklearn KFold, explicit threshold loops),
scikit-learn (cosine_similarity, roc_curve, KFold), brute force over thresholds,
and small hand-worked examples.
"""

import itertools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.model_selection import KFold

from facebench.errors import MetricInputError
from facebench.metrics.verification import (
    DEFAULT_FAR_TARGETS,
    best_accuracy_threshold,
    bootstrap_tar_at_far,
    det_points,
    facexzoo_10fold,
    flip_sum_embeddings,
    higher_is_same,
    insightface_10fold,
    kfold_indices,
    l2_normalize,
    pair_scores,
    roc_points,
    tar_at_far,
    verification_accuracy_at_threshold,
)

# --------------------------------------------------------------------------- fixtures / oracles


def _synthetic_score_file(path, seed=20240611, n_folds=10, n_per_class=300, dim=64, noise=1.6):
    """Write an LFW/RFW-ordered pair score file: per fold 300 genuine then 300 impostor pairs.

    Each "image" embedding = L2norm(view + flipped view) of a noisy copy of its
    identity's unit centre (flip-sum TTA). Columns: same, sqeuclidean dist, cosine.
    """
    rng = np.random.default_rng(seed)
    n_ids = 3000
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def image(ids):
        views = centres[ids] + noise / math.sqrt(dim) * rng.standard_normal((ids.size, dim))
        flipped = centres[ids] + noise / math.sqrt(dim) * rng.standard_normal((ids.size, dim))
        e = views + flipped
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    same, a_ids, b_ids = [], [], []
    for _ in range(n_folds):
        g = rng.integers(0, n_ids, n_per_class)
        i1 = rng.integers(0, n_ids, n_per_class)
        i2 = (i1 + rng.integers(1, n_ids, n_per_class)) % n_ids  # always a different identity
        a_ids += [g, i1]
        b_ids += [g, i2]
        same += [np.ones(n_per_class, dtype=int), np.zeros(n_per_class, dtype=int)]
    a_ids, b_ids, same = np.concatenate(a_ids), np.concatenate(b_ids), np.concatenate(same)
    ea, eb = image(a_ids), image(b_ids)
    dist = np.sum((ea - eb) ** 2, axis=1)
    cos = np.sum(ea * eb, axis=1)
    np.savetxt(path, np.column_stack([same, dist, cos]), fmt=["%d", "%.17g", "%.17g"], delimiter="\t")
    return path


def _load_score_file(path):
    data = np.loadtxt(path, delimiter="\t")
    return data[:, 0].astype(bool), data[:, 1], data[:, 2]


def _insightface_oracle(dist, issame, n_folds=10):
    """Loop transcription of the insightface calculate_roc accuracy path."""
    thresholds = np.arange(0, 4, 0.01)
    accuracy, best = [], []
    for train_set, test_set in KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(dist))):
        acc_train = np.zeros(len(thresholds))
        for ti, t in enumerate(thresholds):
            pred = dist[train_set] < t
            tp = np.sum(pred & issame[train_set])
            tn = np.sum(~pred & ~issame[train_set])
            acc_train[ti] = float(tp + tn) / len(train_set)
        t = thresholds[np.argmax(acc_train)]
        pred = dist[test_set] < t
        tp = np.sum(pred & issame[test_set])
        tn = np.sum(~pred & ~issame[test_set])
        accuracy.append(float(tp + tn) / len(test_set))
        best.append(t)
    accuracy = np.array(accuracy)
    return np.mean(accuracy), np.std(accuracy), accuracy, np.array(best)


def _facexzoo_oracle(score, issame, n_folds=10, num_thresholds=1000):
    """Loop transcription of the FaceX-Zoo LFWEvaluator (float64 instead of float32)."""
    per = len(score) // n_folds
    scores = score.reshape(n_folds, per)
    labels = issame.reshape(n_folds, per)
    accs, best = [], []
    for k in range(n_folds):
        train = np.ones(n_folds, dtype=bool)
        train[k] = False
        s_tr, y_tr = scores[train].ravel(), labels[train].ravel()
        pos, neg = s_tr[y_tr], s_tr[~y_tr]
        lo, hi = np.min(s_tr), np.max(s_tr)
        step = (hi - lo) / num_thresholds
        grid = lo + step * np.array(range(1, num_thresholds + 1))
        tpr = np.array([np.sum(pos > t) / pos.size for t in grid])
        fpr = np.array([np.sum(neg > t) / neg.size for t in grid])
        t = grid[np.argmax(tpr - fpr)]
        s_te, y_te = scores[k], labels[k]
        accs.append((np.sum(s_te[y_te] > t) + np.sum(s_te[~y_te] < t)) / per)
        best.append(t)
    accs = np.array(accs)
    return np.mean(accs), np.std(accs, ddof=1) / np.sqrt(n_folds), accs, np.array(best)


@pytest.fixture(scope="module")
def score_file(tmp_path_factory):
    return _load_score_file(_synthetic_score_file(tmp_path_factory.mktemp("verif") / "pairs_scores.tsv"))


# --------------------------------------------------------------------------- 10-fold protocols


def test_10fold_protocol_reproduces_both_conventions_on_fixed_score_file(score_file):
    same, dist, cos = score_file
    assert same.size == 6000 and same.sum() == 3000
    assert np.array_equal(same[:600], np.r_[np.ones(300, bool), np.zeros(300, bool)])
    # realistic, non-trivial difficulty, and the two score types agree: dist = 2 - 2 cos
    np.testing.assert_allclose(dist, 2 - 2 * cos, atol=1e-12)

    mean, std, accs, thr = _insightface_oracle(dist, same)
    assert 0.8 < mean < 0.99
    res = insightface_10fold(dist, same)
    assert abs(res["accuracy_mean"] - mean) <= 1e-12
    assert abs(res["accuracy_std"] - std) <= 1e-12
    np.testing.assert_allclose(res["fold_accuracies"], accs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res["thresholds"], thr)
    assert res["convention"].startswith("insightface:") and res["n_folds"] == 10

    mean, sem, accs, thr = _facexzoo_oracle(cos, same)
    res = facexzoo_10fold(cos, same)
    assert abs(res["accuracy_mean"] - mean) <= 1e-12
    assert abs(res["accuracy_sem"] - sem) <= 1e-12
    np.testing.assert_allclose(res["fold_accuracies"], accs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res["thresholds"], thr)
    assert res["convention"].startswith("facexzoo:")

    # the held-out predictions are the fixed-threshold rule with strict comparisons
    ins = insightface_10fold(dist, same)
    fz = facexzoo_10fold(cos, same)
    for k, sl in enumerate(np.split(np.arange(6000), 10)):
        acc = verification_accuracy_at_threshold(dist[sl], same[sl], ins["thresholds"][k], False, strict=True)
        assert acc == ins["fold_accuracies"][k]
        acc = verification_accuracy_at_threshold(cos[sl], same[sl], fz["thresholds"][k], True, strict=True)
        assert acc == fz["fold_accuracies"][k]


def _hand_dists(shift):
    # fold 0 = pairs 0..9, fold 1 = pairs 10..19 (genuine first, then impostors)
    f0 = [0.2, 0.4, 0.6, 1.2, 1.7] + [0.8, 1.4, 1.8, 2.5, 3.0]
    f1 = [0.3, 0.7, 1.1, 1.3, 2.2] + [0.9, 1.6, 1.9, 2.6, 3.5]
    same = np.array(([1] * 5 + [0] * 5) * 2)
    return np.array(f0 + f1) + shift, same


def test_insightface_hand_worked_custom_grid():
    dist, same = _hand_dists(0.0)
    res = insightface_10fold(dist, same, folds=2, thresholds=[0.5, 1.0, 1.5, 2.0])
    # held out fold 0, train = fold 1; correct = #gen < t + #imp >= t:
    #   t=0.5: 1+5=6, t=1.0: 2+4=6, t=1.5: 4+4=8, t=2.0: 4+2=6 -> t=1.5
    #   fold 0 at 1.5: gen < 1.5 {.2,.4,.6,1.2}=4, imp >= 1.5 {1.8,2.5,3.0}=3 -> 0.7
    # held out fold 1, train = fold 0: t=0.5: 2+5, t=1.0: 3+4, t=1.5: 4+3, t=2.0: 5+2 -> all 7, first -> 0.5
    #   fold 1 at 0.5: gen {.3}=1, imp all 5 -> 0.6
    np.testing.assert_array_equal(res["thresholds"], [1.5, 0.5])
    np.testing.assert_allclose(res["fold_accuracies"], [0.7, 0.6], atol=1e-15)
    assert res["accuracy_mean"] == pytest.approx(0.65, abs=1e-15)
    assert res["accuracy_std"] == pytest.approx(0.05, abs=1e-15)  # ddof = 0


def test_insightface_hand_worked_default_grid():
    dist, same = _hand_dists(0.005)  # off the 0.01 grid so no distance equals a threshold
    res = insightface_10fold(dist, same, folds=np.repeat([0, 1], 10))
    grid = np.arange(0, 4, 0.01)
    # held out fold 0, train fold 1 (gen .305 .705 1.105 1.305 2.205; imp .905 1.605 1.905 2.605 3.505):
    #   correct = 8 only on (1.305, 1.605] (4 gen + 4 imp), elsewhere <= 7 -> first grid point 1.31
    #   fold 0 (gen .205 .405 .605 1.205 1.705; imp .805 1.405 1.805 2.505 3.005): 4 + 4 -> 0.8
    # held out fold 1, train fold 0: correct = 8 on (.605,.805], (1.205,1.405], (1.705,1.805] -> 0.61
    #   fold 1 at 0.61: gen {.305}=1, imp all 5 -> 0.6
    np.testing.assert_array_equal(res["thresholds"], [grid[131], grid[61]])
    np.testing.assert_allclose(res["fold_accuracies"], [0.8, 0.6], atol=1e-15)
    assert res["accuracy_mean"] == pytest.approx(0.7, abs=1e-15)
    assert res["accuracy_std"] == pytest.approx(0.1, abs=1e-15)
    mean, std, accs, thr = _insightface_oracle(dist, same.astype(bool), n_folds=2)
    assert (res["accuracy_mean"], res["accuracy_std"]) == (mean, std)


def test_facexzoo_hand_worked():
    # fold 0: gen .9 .8 .6 .3 .1 | imp .7 .4 .2 .0 -.2 ; fold 1: gen .95 .75 .5 .35 .1 | imp .55 .25 .15 -.05 -.3
    score = np.array([0.9, 0.8, 0.6, 0.3, 0.1, 0.7, 0.4, 0.2, 0.0, -0.2,
                      0.95, 0.75, 0.5, 0.35, 0.1, 0.55, 0.25, 0.15, -0.05, -0.3])
    same = np.array(([True] * 5 + [False] * 5) * 2)
    res = facexzoo_10fold(score, same, folds=2, n_thresholds=4)
    # held out fold 0, train fold 1: min -.3, max .95, step .3125, grid .0125 .325 .6375 .95
    #   J = TPR - FPR: .0125: 1-.6=.4 ; .325: .8-.2=.6 ; .6375: .4-0=.4 ; .95: <=.2  -> t = .325
    #   fold 0: gen > .325 {.9,.8,.6}=3, imp < .325 {.2,0,-.2}=3 -> 0.6
    # held out fold 1, train fold 0: min -.2, max .9, step .275, grid .075 .35 .625 .9
    #   J: .075: 1-.6=.4 ; .35: .6-.4=.2 ; .625: .4-.2=.2 ; .9: <=.2 -> t = .075
    #   fold 1: gen > .075 all 5, imp < .075 {-.05,-.3}=2 -> 0.7
    np.testing.assert_allclose(res["thresholds"], [0.325, 0.075], atol=1e-12)
    np.testing.assert_allclose(res["fold_accuracies"], [0.6, 0.7], atol=1e-15)
    assert res["accuracy_mean"] == pytest.approx(0.65, abs=1e-15)
    assert res["accuracy_sem"] == pytest.approx(0.05, abs=1e-15)  # std(ddof=1)=0.0707.. / sqrt(2)
    mean, sem, accs, thr = _facexzoo_oracle(score, same, n_folds=2, num_thresholds=4)
    assert (res["accuracy_mean"], res["accuracy_sem"]) == (mean, sem)


def test_kfold_indices_matches_sklearn_kfold():
    for n, k in [(6000, 10), (20, 2), (13, 5), (10, 10), (101, 7)]:
        ids = kfold_indices(n, k)
        expected = np.empty(n, dtype=int)
        for f, (_, test) in enumerate(KFold(n_splits=k, shuffle=False).split(np.arange(n))):
            expected[test] = f
        np.testing.assert_array_equal(ids, expected)
    with pytest.raises(ValueError, match="n_folds"):
        kfold_indices(5, 10)
    with pytest.raises(ValueError, match="n_folds"):
        kfold_indices(5, 1)


def test_folds_argument_forms_agree(score_file):
    same, dist, cos = score_file
    a = insightface_10fold(dist, same)
    b = insightface_10fold(dist, same, folds=10)
    c = insightface_10fold(dist, same, folds=np.repeat(np.arange(10) * 3 + 5, 600))  # arbitrary fold labels
    for r in (b, c):
        np.testing.assert_array_equal(r["fold_accuracies"], a["fold_accuracies"])
    d = facexzoo_10fold(cos, same, folds=kfold_indices(6000, 10))
    np.testing.assert_array_equal(d["fold_accuracies"], facexzoo_10fold(cos, same)["fold_accuracies"])


# --------------------------------------------------------------------------- embeddings and pair scores


def test_pair_scores_against_sklearn_and_identity():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 16)) * rng.uniform(0.1, 10, (50, 1))
    b = rng.standard_normal((50, 16))
    cos = pair_scores(a, b, "cosine")
    np.testing.assert_allclose(cos, np.diag(cosine_similarity(a, b)), rtol=0, atol=1e-12)
    sq = pair_scores(a, b, "sqeuclidean")
    np.testing.assert_allclose(sq, 2 - 2 * cos, rtol=0, atol=1e-12)
    assert np.all((sq >= 0) & (sq <= 4))
    assert pair_scores(a, -a, "sqeuclidean") == pytest.approx(np.full(50, 4.0), abs=1e-12)
    assert higher_is_same("cosine") is True and higher_is_same("sqeuclidean") is False
    assert cos.dtype == np.float64


def test_flip_sum_and_l2_normalize_hand_cases():
    # [3, 0] + [1, 4] = [4, 4] -> [1/sqrt2, 1/sqrt2];  [1, 2, 2] + 0 -> [1/3, 2/3, 2/3]
    out = flip_sum_embeddings([[3.0, 0.0]], [[1.0, 4.0]])
    np.testing.assert_allclose(out, [[1 / math.sqrt(2), 1 / math.sqrt(2)]], atol=1e-15)
    out = flip_sum_embeddings(np.array([[1, 2, 2]]), np.zeros((1, 3)))
    np.testing.assert_allclose(out, [[1 / 3, 2 / 3, 2 / 3]], atol=1e-15)
    np.testing.assert_array_equal(l2_normalize([[0.0, 0.0], [0.0, 2.0]]), [[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(l2_normalize([3.0, 4.0]), [0.6, 0.8], atol=1e-15)


# --------------------------------------------------------------------------- ROC / TAR@FAR / DET


def _random_scores(seed, n_gen=1000, n_imp=3000, decimals=2):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(1.5, 1, n_gen), rng.normal(0, 1, n_imp)].round(decimals)  # rounded: many ties
    y = np.r_[np.ones(n_gen, bool), np.zeros(n_imp, bool)]
    p = rng.permutation(s.size)
    return s[p], y[p]


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_points_match_sklearn_both_directions(seed):
    s, y = _random_scores(seed)
    far, tar, thr = roc_points(s, y)
    fpr, tpr, sk_thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(far, fpr)
    np.testing.assert_array_equal(tar, tpr)
    assert thr[0] == np.inf
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    dist = 2.0 - s  # a distance: lower = same
    far_d, tar_d, thr_d = roc_points(dist, y, higher_is_same_=False)
    fpr, tpr, sk_thr = roc_curve(y, -dist, drop_intermediate=False)
    np.testing.assert_array_equal(far_d, fpr)
    np.testing.assert_array_equal(tar_d, tpr)
    assert thr_d[0] == -np.inf
    np.testing.assert_array_equal(thr_d[1:], -sk_thr[1:])  # thresholds in distance units, ascending
    assert np.all(np.diff(thr_d) > 0)


def test_det_points_consistent_with_roc():
    s, y = _random_scores(3)
    far, tar, _ = roc_points(s, y)
    fmr, fnmr = det_points(s, y)
    np.testing.assert_array_equal(fmr, far)
    np.testing.assert_array_equal(fnmr, 1 - tar)
    fmr_d, fnmr_d = det_points(-s, y, higher_is_same_=False)
    np.testing.assert_array_equal(fmr_d, far)
    np.testing.assert_array_equal(fnmr_d, 1 - tar)


def test_tar_at_far_hand_worked():
    gen = [0.9, 0.8, 0.7, 0.4, 0.2]
    imp = [0.85, 0.6, 0.5, 0.3, 0.1, 0.05, 0.0, -0.1, -0.2, -0.3]
    s = np.array(gen + imp)
    y = np.array([1] * 5 + [0] * 10)
    # descending: .9G .85I .8G .7G .6I .5I .4G ...; FAR steps of 1/10
    #   FAR <= 0.1: points (0,.2)@.9, (.1,.2)@.85, (.1,.4)@.8, (.1,.6)@.7 -> TAR .6, thr .7
    #   FAR <= 0.25: + (.2,.6)@.6 -> TAR .6 at FAR .2, thr .6
    #   FAR 1e-2 < 1/10: unresolved, needs 100 impostor pairs
    res = tar_at_far(s, y, far_targets=(1e-1, 0.25, 1e-2))
    assert res[0.1] == {"tar": 0.6, "far": 0.1, "threshold": 0.7, "resolved": True}
    assert res[0.25] == {"tar": 0.6, "far": 0.2, "threshold": 0.6, "resolved": True}
    r = res[0.01]
    assert r["resolved"] is False and r["tar"] is None and r["far"] is None and r["threshold"] is None
    assert "100 impostor pairs" in r["reason"] and "got 10" in r["reason"]
    # same data as distances: thresholds in distance units
    res_d = tar_at_far(1 - s, y, far_targets=[0.1], higher_is_same_=False)
    assert res_d[0.1]["tar"] == 0.6 and res_d[0.1]["far"] == 0.1
    assert res_d[0.1]["threshold"] == pytest.approx(0.3, abs=1e-15)
    # accuracy at that operating point: accepts 3 genuine + 1 impostor -> (3 + 9) / 15
    assert verification_accuracy_at_threshold(s, y, 0.7) == pytest.approx(12 / 15)
    thr_d = res_d[0.1]["threshold"]  # = 1 - 0.7 in floating point (0.30000000000000004)
    assert verification_accuracy_at_threshold(1 - s, y, thr_d, higher_is_same_=False) == pytest.approx(12 / 15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tar_at_far_vs_brute_force(seed):
    s, y = _random_scores(seed)
    gen, imp = s[y], s[~y]
    targets = (1e-1, 3e-2, 1e-2, 1e-3, 1e-4)
    for hi in (True, False):
        x = s if hi else -s
        res = tar_at_far(x, y, far_targets=targets, higher_is_same_=hi)
        assert set(res) == set(targets)
        for t in targets:
            if t < 1 / imp.size:
                assert res[t]["resolved"] is False and "10000 impostor pairs" in res[t]["reason"]
                continue
            best = None  # (tar, far, -threshold in score units): max TAR, then max FAR, then loosest
            for thr in np.r_[np.inf, np.unique(s)]:
                far = np.mean(imp >= thr)
                tar = np.mean(gen >= thr)
                if far <= t:
                    cand = (tar, far, -thr)
                    best = cand if best is None or cand > best else best
            got = res[t]
            assert got["resolved"] is True
            assert got["tar"] == best[0] and got["far"] == best[1]
            assert got["threshold"] == (-best[2] if hi else best[2])


def test_default_far_targets_and_accuracy_vs_brute_force():
    s, y = _random_scores(5)
    res = tar_at_far(s, y)
    assert tuple(res) == DEFAULT_FAR_TARGETS
    assert [res[t]["resolved"] for t in DEFAULT_FAR_TARGETS] == [True, True, True, False, False, False]
    for thr in (-1.0, 0.5, 0.73, 2.0):
        for strict in (False, True):
            pred = s > thr if strict else s >= thr
            assert verification_accuracy_at_threshold(s, y, thr, strict=strict) == np.mean(pred == y)
            pred = -s < -thr if strict else -s <= -thr
            assert verification_accuracy_at_threshold(-s, y, -thr, False, strict=strict) == np.mean(pred == y)


def _exact_bootstrap_law(s, y, target):
    """{TAR: probability} of tar_at_far over every stratified resample (all ordered draws of the genuine
    and of the impostor pairs with replacement, each equally likely): the law bootstrap_tar_at_far samples."""
    gen, imp = s[y], s[~y]
    law: dict = {}
    p = 1.0 / (gen.size ** gen.size * imp.size ** imp.size)
    for gi in itertools.product(range(gen.size), repeat=gen.size):
        for ii in itertools.product(range(imp.size), repeat=imp.size):
            tar = tar_at_far(np.r_[gen[list(gi)], imp[list(ii)]], np.r_[[True] * gen.size, [False] * imp.size],
                             (target,))[target]["tar"]
            law[tar] = law.get(tar, 0.0) + p
    return law


@pytest.mark.parametrize("target", [0.25, 0.5])
def test_bootstrap_tar_at_far_draws_the_exact_resampling_law(target):
    """Tiny set with ties across and within classes: the drawn TARs follow the enumerated law of the
    stratified pair bootstrap (3^3 x 4^4 resamples), within Monte-Carlo error."""
    s = np.array([0.9, 0.5, 0.3, 0.5, 0.3, 0.2, 0.6])
    y = np.array([True, True, True, False, False, False, False])
    law = _exact_bootstrap_law(s, y, target)
    draws = bootstrap_tar_at_far(s, y, (target,), n_resamples=200_000, seed=7)[target]
    values, counts = np.unique(draws, return_counts=True)
    assert set(np.round(values, 12)) <= set(np.round(list(law), 12))
    for value, prob in law.items():
        freq = counts[np.isclose(values, value)].sum() / draws.size
        assert abs(freq - prob) < 4 * math.sqrt(prob * (1 - prob) / draws.size) + 1e-4, (value, freq, prob)


def test_bootstrap_tar_at_far_rules_and_directions():
    s, y = _random_scores(3)
    targets = (1e-1, 1e-2, 1e-3, 1e-5, 1.0)
    hi = bootstrap_tar_at_far(s, y, targets, n_resamples=500, seed=1)
    lo = bootstrap_tar_at_far(-s, y, targets, n_resamples=500, seed=1, higher_is_same_=False)
    again = bootstrap_tar_at_far(s, y, targets, n_resamples=500, seed=1)
    point = tar_at_far(s, y, targets)
    assert hi[1e-5] is None and point[1e-5]["resolved"] is False  # 1e-5 < 1 / n_impostor
    assert np.array_equal(hi[1.0], np.ones(500))
    for t in (1e-1, 1e-2, 1e-3):
        assert np.array_equal(hi[t], lo[t]) and np.array_equal(hi[t], again[t])
        assert hi[t].shape == (500,) and np.all((0 <= hi[t]) & (hi[t] <= 1))
        lo_q, hi_q = np.percentile(hi[t], [2.5, 97.5])
        assert lo_q <= point[t]["tar"] <= hi_q
    with pytest.raises(ValueError, match="no impostor pairs"):
        bootstrap_tar_at_far(s[y], y[y], (0.1,))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_tar_at_far(s, y, (0.1,), n_resamples=0)


# --------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    s = np.array([0.1, 0.5, 0.9, 0.3])
    y = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="length mismatch"):
        roc_points(s, y[:3])
    with pytest.raises(ValueError, match="length mismatch"):
        insightface_10fold(s, y[:3], folds=2)
    with pytest.raises(ValueError, match="0/1"):
        tar_at_far(s, [0, 1, 2, 0])
    with pytest.raises(ValueError, match="0/1"):
        facexzoo_10fold(s, [0, 1, 0.5, 0], folds=2)
    with pytest.raises(ValueError, match="NaN"):
        roc_points([0.1, np.nan, 0.9, 0.3], y)
    with pytest.raises(ValueError, match="NaN"):
        pair_scores([[1.0, np.nan]], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="no impostor pairs"):
        roc_points(s, np.ones(4))
    with pytest.raises(ValueError, match="no genuine pairs"):
        tar_at_far(s, np.zeros(4, bool))
    with pytest.raises(ValueError, match="no genuine pairs"):
        det_points(s, np.zeros(4, bool))
    with pytest.raises(ValueError, match="no impostor pairs"):
        facexzoo_10fold(s, [1, 1, 1, 0], folds=np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="FAR target"):
        tar_at_far(s, y, far_targets=(0.0,))
    with pytest.raises(ValueError, match="FAR target"):
        tar_at_far(s, y, far_targets=(5,))
    with pytest.raises(ValueError, match="folds"):
        insightface_10fold(s, y, folds=[0, 1, 0])
    with pytest.raises(ValueError, match="at least 2 distinct folds"):
        insightface_10fold(s, y, folds=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="same shape"):
        pair_scores(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        pair_scores(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="metric"):
        pair_scores(np.ones((1, 2)), np.ones((1, 2)), metric="euclidean")
    with pytest.raises(ValueError, match="metric"):
        higher_is_same("l2")
    with pytest.raises(ValueError, match="1-D"):
        roc_points(s.reshape(2, 2), y.reshape(2, 2))
    with pytest.raises(ValueError, match="empty"):
        roc_points([], [])
    with pytest.raises(ValueError, match="threshold"):
        verification_accuracy_at_threshold(s, y, float("nan"))
    with pytest.raises(ValueError, match="same shape"):
        flip_sum_embeddings(np.ones((2, 3)), np.ones((3, 3)))


@pytest.mark.parametrize("seed", range(5))
def test_best_accuracy_threshold_against_brute_force(seed):
    """Every pair's score and +inf tried by hand (ties in the scores included); highest threshold among the best."""
    rng = np.random.default_rng(seed)
    n = 60
    same = rng.random(n) < 0.5
    score = np.round(rng.normal(size=n) + same, 1)  # rounded: runs of equal scores
    cands = sorted(set(score.tolist()) | {np.inf}, reverse=True)
    accs = [np.mean((score >= t) == same) for t in cands]
    best = int(np.argmax(accs))
    tau, acc = best_accuracy_threshold(score, same)
    assert tau == cands[best] and acc == pytest.approx(accs[best])


def test_best_accuracy_threshold_edge_cases():
    assert best_accuracy_threshold([0.3, 0.2], [False, False]) == (np.inf, 1.0)  # reject all
    assert best_accuracy_threshold([0.3, 0.2], [True, True]) == (0.2, 1.0)
    with pytest.raises(MetricInputError):
        best_accuracy_threshold([], [])
