"""Fairness metrics: fairlearn MetricFrame oracle, RFW golden case, grouped bootstrap, verification rates."""

import numpy as np
import pytest

from facebench.metrics.fairness import (
    bootstrap_disparities,
    demographic_differentials,
    disaggregate,
    equalized_odds,
    fairness_discrepancy_rate,
    group_error_rates,
    group_keys,
    grouped_bootstrap,
    rates_at_threshold,
    skewed_error_ratio,
    summary_stats,
    threshold_at_fmr,
)

# --------------------------------------------------------------------------- helpers


def _random_task(seed, n=600):
    rng = np.random.default_rng(seed)
    race = rng.choice(["African", "Asian", "Caucasian", "Indian"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    sex = rng.choice(["Female", "Male"], size=n)
    y_true = rng.integers(0, 2, size=n)
    # group-dependent flip rate so the groups really differ
    flip = {"African": 0.35, "Asian": 0.2, "Caucasian": 0.1, "Indian": 0.25}
    p_flip = np.array([flip[r] for r in race]) + np.where(sex == "Male", 0.05, 0.0)
    y_pred = np.where(rng.random(n) < p_flip, 1 - y_true, y_true)
    return y_true, y_pred, race, sex


def _fairlearn_key(k):
    return " & ".join(map(str, k)) if isinstance(k, tuple) else str(k)


# --------------------------------------------------------------------------- group_keys / disaggregate


def test_group_keys_single_and_intersectional():
    assert group_keys(np.array([1, 2, 1])).tolist() == ["1", "2", "1"]
    keys = group_keys(["Black", "White"], ["Female", "Male"])
    assert keys.tolist() == ["Black & Female", "White & Male"]
    with pytest.raises(ValueError, match="different lengths"):
        group_keys(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="missing"):
        group_keys(np.array(["a", None], dtype=object))
    with pytest.raises(ValueError, match="separator"):
        group_keys(["a & b", "c"], ["x", "y"])
    with pytest.raises(ValueError, match="at least one"):
        group_keys()


def test_disaggregate_hand_worked():
    # group a: [1, 1, 0, 1] -> 0.75 ; group b: [0, 1] -> 0.5 ; overall 4/6
    values = [1, 1, 0, 1, 0, 1]
    groups = ["a", "a", "a", "a", "b", "b"]
    r = disaggregate(values, groups, min_group_size=3)
    assert r["overall"] == pytest.approx(4 / 6)
    assert r["by_group"] == pytest.approx({"a": 0.75, "b": 0.5})
    assert list(r["by_group"]) == ["a", "b"]
    assert r["n"] == {"a": 4, "b": 2}
    assert (r["min"], r["max"], r["argmin"], r["argmax"]) == (0.5, 0.75, "b", "a")
    assert r["difference_between_groups"] == pytest.approx(0.25)
    assert r["difference_to_overall"] == pytest.approx(4 / 6 - 0.5)  # |0.5-2/3| > |0.75-2/3|
    assert r["ratio_between_groups"] == pytest.approx(0.5 / 0.75)
    # to overall: min(0.75/(2/3) -> 1/1.125, 0.5/(2/3) = 0.75) = 0.75
    assert r["ratio_to_overall"] == pytest.approx(0.75)
    assert r["std_ddof0"] == pytest.approx(0.125)
    assert r["std_ddof1"] == pytest.approx(0.125 * np.sqrt(2))
    assert r["small_groups"] == ["b"]


def test_disaggregate_zero_denominators_are_nan():
    r = disaggregate([0, 0, 0, 0], ["a", "a", "b", "b"])
    assert r["difference_between_groups"] == 0.0
    assert np.isnan(r["ratio_between_groups"]) and np.isnan(r["ratio_to_overall"])
    r = disaggregate([0, 0, 1, 1], ["a", "a", "b", "b"])
    assert r["ratio_between_groups"] == 0.0 and r["ratio_to_overall"] == 0.0


def test_disaggregate_bad_input():
    with pytest.raises(ValueError, match="length mismatch"):
        disaggregate([1, 0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        disaggregate([1.0, np.nan], ["a", "b"])
    with pytest.raises(ValueError, match="min_group_size"):
        disaggregate([1, 0], ["a", "b"], min_group_size=-1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("two_features", [False, True])
def test_disaggregate_matches_fairlearn_metricframe(seed, two_features):
    fl = pytest.importorskip("fairlearn.metrics", reason="fairlearn not installed (test-only oracle)")
    pd = pytest.importorskip("pandas")
    from sklearn.metrics import accuracy_score

    y_true, y_pred, race, sex = _random_task(seed)
    if two_features:
        sf = pd.DataFrame({"race": race, "sex": sex})
        groups = group_keys(race, sex)
    else:
        sf = race
        groups = group_keys(race)
    mf = fl.MetricFrame(metrics=accuracy_score, y_true=y_true, y_pred=y_pred, sensitive_features=sf)
    r = disaggregate((y_true == y_pred).astype(float), groups)

    oracle = {_fairlearn_key(k): v for k, v in mf.by_group.items()}
    assert set(oracle) == set(r["by_group"])
    for k, v in oracle.items():
        assert r["by_group"][k] == pytest.approx(v, abs=1e-12)
    assert r["overall"] == pytest.approx(mf.overall, abs=1e-12)
    assert r["difference_between_groups"] == pytest.approx(mf.difference(method="between_groups"), abs=1e-12)
    assert r["difference_to_overall"] == pytest.approx(mf.difference(method="to_overall"), abs=1e-12)
    assert r["ratio_between_groups"] == pytest.approx(mf.ratio(method="between_groups"), abs=1e-12)
    assert r["ratio_to_overall"] == pytest.approx(mf.ratio(method="to_overall"), abs=1e-12)
    assert r["min"] == pytest.approx(mf.group_min(), abs=1e-12)
    assert r["max"] == pytest.approx(mf.group_max(), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disaggregate_matches_fairlearn_for_mae(seed):
    fl = pytest.importorskip("fairlearn.metrics", reason="fairlearn not installed (test-only oracle)")
    from sklearn.metrics import mean_absolute_error

    rng = np.random.default_rng(seed)
    n = 300
    age = rng.uniform(10, 80, n)
    pred = age + rng.normal(0, 5, n)
    g = rng.choice(["x", "y", "z"], n)
    mf = fl.MetricFrame(metrics=mean_absolute_error, y_true=age, y_pred=pred, sensitive_features=g)
    r = disaggregate(np.abs(age - pred), g)
    assert r["difference_to_overall"] == pytest.approx(mf.difference(method="to_overall"), abs=1e-12)
    assert r["ratio_to_overall"] == pytest.approx(mf.ratio(method="to_overall"), abs=1e-12)
    assert r["ratio_between_groups"] == pytest.approx(mf.ratio(method="between_groups"), abs=1e-12)


# --------------------------------------------------------------------------- RFW summaries


def test_rfw_golden_summary_stats():
    acc = np.array([96.18, 94.67, 93.72, 93.98]) / 100
    s = summary_stats(acc)
    assert round(s["avg"] * 100, 4) == 94.6375
    assert round(s["std_ddof0"] * 100, 5) == 0.95583
    assert round(s["std_ddof1"] * 100, 5) == 1.10370
    assert round(s["ser"], 5) == 1.64398
    assert s["min"] == pytest.approx(0.9372) and s["max"] == pytest.approx(0.9618)
    assert s["gap"] == pytest.approx(0.0246)
    # independent oracle for SER: errors in percent
    err = 100 - np.array([96.18, 94.67, 93.72, 93.98])
    assert s["ser"] == pytest.approx(err.max() / err.min(), rel=1e-12)
    # mapping input, same result
    d = dict(zip(["Caucasian", "Indian", "Asian", "African"], acc))
    assert summary_stats(d) == s


def test_skewed_error_ratio_edge_cases():
    assert skewed_error_ratio([0.9, 0.8]) == pytest.approx(2.0)
    assert skewed_error_ratio([1.0, 0.8]) == np.inf
    assert np.isnan(skewed_error_ratio([1.0, 1.0]))
    with pytest.raises(ValueError, match="divide percentages by 100"):
        skewed_error_ratio([96.18, 94.67])


# --------------------------------------------------------------------------- equalized odds


def test_equalized_odds_hand_worked():
    # group a: positives (y=1) at 0,2 -> pred 1,1 -> TPR 1; negatives at 1,3 -> pred 1,0 -> FPR .5
    # group b: positives at 4,5 -> pred 1,0 -> TPR .5; negatives at 6,7 -> pred 0,0 -> FPR 0
    y_true = ["s", "d", "s", "d", "s", "s", "d", "d"]
    y_pred = ["s", "s", "s", "d", "s", "d", "d", "d"]
    g = ["a"] * 4 + ["b"] * 4
    r = equalized_odds(y_true, y_pred, g, positive="s")
    assert r["tpr"] == {"a": 1.0, "b": 0.5} and r["fpr"] == {"a": 0.5, "b": 0.0}
    assert r["tpr_difference"] == 0.5 and r["fpr_difference"] == 0.5
    assert r["equalized_odds_difference"] == 0.5
    assert r["tpr_ratio"] == 0.5 and r["fpr_ratio"] == 0.0 and r["equalized_odds_ratio"] == 0.0
    with pytest.raises(ValueError, match="occurs in neither"):
        equalized_odds(y_true, y_pred, g, positive="x")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("two_features", [False, True])
def test_equalized_odds_matches_fairlearn(seed, two_features):
    fl = pytest.importorskip("fairlearn.metrics", reason="fairlearn not installed (test-only oracle)")
    pd = pytest.importorskip("pandas")
    y_true, y_pred, race, sex = _random_task(seed)
    sf = pd.DataFrame({"race": race, "sex": sex}) if two_features else race
    groups = group_keys(race, sex) if two_features else race
    r = equalized_odds(y_true, y_pred, groups, positive=1)
    assert r["equalized_odds_difference"] == pytest.approx(
        fl.equalized_odds_difference(y_true, y_pred, sensitive_features=sf), abs=1e-12)
    assert r["equalized_odds_ratio"] == pytest.approx(
        fl.equalized_odds_ratio(y_true, y_pred, sensitive_features=sf), abs=1e-12)
    # per-group rates against fairlearn's own rate functions
    mf = fl.MetricFrame(metrics={"tpr": fl.true_positive_rate, "fpr": fl.false_positive_rate},
                        y_true=y_true, y_pred=y_pred, sensitive_features=sf)
    for k, row in mf.by_group.iterrows():
        key = _fairlearn_key(k)
        assert r["tpr"][key] == pytest.approx(row["tpr"], abs=1e-12)
        assert r["fpr"][key] == pytest.approx(row["fpr"], abs=1e-12)
    # string labels with a named positive give the same answer
    lab = np.array(["diff", "same"])
    r2 = equalized_odds(lab[y_true], lab[y_pred], groups, positive="same")
    assert r2["equalized_odds_difference"] == r["equalized_odds_difference"]


# --------------------------------------------------------------------------- grouped bootstrap


def _small_group_data():
    rng = np.random.default_rng(3)
    values = np.r_[[1, 0, 1, 1, 0], (rng.random(200) < 0.8)].astype(float)
    groups = np.r_[["tiny"] * 5, ["big"] * 200]
    return values, groups


def test_grouped_bootstrap_small_group_is_never_nan():
    values, groups = _small_group_data()
    res = grouped_bootstrap(values, groups, n_resamples=1000, seed=0)
    assert res["groups"] == ["big", "tiny"]
    m = res["by_group"]
    assert m.shape == (1000, 2) and res["overall"].shape == (1000,)
    assert np.isfinite(m).all() and np.isfinite(res["overall"]).all()
    # stratified: the tiny group always has exactly 5 samples -> means are multiples of 1/5
    assert np.allclose(m[:, 1] * 5, np.round(m[:, 1] * 5))
    # sample level: overall is the size-weighted mean of the group means
    assert np.allclose(res["overall"], (200 * m[:, 0] + 5 * m[:, 1]) / 205)
    lo, hi = np.percentile(m[:, 1], [2.5, 97.5])
    assert np.isfinite([lo, hi]).all() and lo < hi
    d = bootstrap_disparities(values, groups, n_resamples=1000, seed=0)
    for k in ("difference_between_groups", "ratio_between_groups", "min", "max", "std_ddof0", "std_ddof1"):
        assert d[k].shape == (1000,) and np.isfinite(d[k]).all(), k


def test_grouped_bootstrap_deterministic_and_seed_dependent():
    values, groups = _small_group_data()
    a = grouped_bootstrap(values, groups, n_resamples=200, seed=7)
    b = grouped_bootstrap(values, groups, n_resamples=200, seed=7)
    c = grouped_bootstrap(values, groups, n_resamples=200, seed=8)
    assert np.array_equal(a["by_group"], b["by_group"]) and np.array_equal(a["overall"], b["overall"])
    assert not np.array_equal(a["by_group"], c["by_group"])
    clusters = np.arange(values.size) // 5
    x = grouped_bootstrap(values, groups, n_resamples=200, seed=7, clusters=clusters)
    y = grouped_bootstrap(values, groups, n_resamples=200, seed=7, clusters=clusters)
    assert np.array_equal(x["by_group"], y["by_group"])


def test_grouped_bootstrap_moments_match_theory():
    # bootstrap mean of a group mean has E = sample mean, Var = var_ddof0 / n_g (exact for the
    # nonparametric bootstrap); checked per group with a large B
    rng = np.random.default_rng(11)
    values = np.r_[rng.normal(0, 1, 50), rng.normal(3, 2, 120)]
    groups = np.r_[["g1"] * 50, ["g2"] * 120]
    m = grouped_bootstrap(values, groups, n_resamples=20000, seed=1)["by_group"]
    for j, sl in enumerate([slice(0, 50), slice(50, 170)]):
        v = values[sl]
        se_of_mean = v.std() / np.sqrt(v.size) / np.sqrt(20000)  # MC error of the bootstrap average
        assert m[:, j].mean() == pytest.approx(v.mean(), abs=5 * se_of_mean)
        assert m[:, j].var() == pytest.approx(v.var() / v.size, rel=0.05)


def test_bootstrap_disparities_rowwise_oracle():
    values, groups = _small_group_data()
    res = grouped_bootstrap(values, groups, n_resamples=50, seed=2)
    d = bootstrap_disparities(values, groups, n_resamples=50, seed=2)
    for b in range(50):
        m = res["by_group"][b]
        assert d["difference_between_groups"][b] == pytest.approx(max(m) - min(m))
        assert d["std_ddof1"][b] == pytest.approx(np.std(m, ddof=1))
        err = 1 - m
        want = np.inf if min(err) == 0 else max(err) / min(err)
        assert d["ser"][b] == pytest.approx(want)
        ov = res["overall"][b]
        # x = 0 -> x / ov = 0 is the min; avoid evaluating ov / 0
        assert d["ratio_to_overall"][b] == pytest.approx(min(x / ov if x <= ov else ov / x for x in m))


def test_cluster_bootstrap_wider_than_row_bootstrap_with_correlated_subjects():
    rng = np.random.default_rng(0)
    n_subj, per = 40, 10
    groups, values, subjects = [], [], []
    for gi, (name, p) in enumerate([("A", 0.7), ("B", 0.85)]):
        outcome = (rng.random(n_subj) < p).astype(float)  # one outcome per subject
        values.append(np.repeat(outcome, per))
        subjects.append(np.repeat(np.arange(n_subj) + gi * 1000, per))
        groups.append(np.full(n_subj * per, name))
    values, subjects, groups = map(np.concatenate, (values, subjects, groups))
    row = grouped_bootstrap(values, groups, n_resamples=1000, seed=0)["by_group"]
    clu = grouped_bootstrap(values, groups, n_resamples=1000, seed=0, clusters=subjects)["by_group"]
    for j in range(2):
        w_row = np.diff(np.percentile(row[:, j], [2.5, 97.5]))[0]
        w_clu = np.diff(np.percentile(clu[:, j], [2.5, 97.5]))[0]
        assert w_clu > 1.5 * w_row, (j, w_clu, w_row)
    # cluster means: drawn subjects are whole, so each group mean is a multiple of 1/40
    assert np.allclose(clu * 40, np.round(clu * 40))


def test_cluster_bootstrap_unequal_cluster_sizes_oracle():
    # per-group mean = sum of drawn samples' values / number of drawn samples; check against an
    # explicit-loop reimplementation drawing cluster indices with the same weights' distribution
    values = np.array([1.0, 1.0, 1.0, 0.0, 5.0, 7.0])
    clusters = np.array([0, 0, 0, 1, 2, 3])
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    m = grouped_bootstrap(values, groups, n_resamples=4000, seed=0, clusters=clusters)["by_group"]
    # group a: clusters {0: three 1s, 1: one 0}; draw 2 with replacement:
    # (0,0) -> 1, (1,1) -> 0, mixed -> 3/4 with prob 1/2
    got = {v: np.mean(np.isclose(m[:, 0], v)) for v in (1.0, 0.0, 0.75)}
    assert sum(got.values()) == pytest.approx(1.0)
    assert got[0.75] == pytest.approx(0.5, abs=0.03)
    assert got[1.0] == pytest.approx(0.25, abs=0.03)
    assert set(np.round(m[:, 1], 12)) <= {5.0, 6.0, 7.0}


def test_cluster_crossing_groups_raises():
    values = np.ones(6)
    groups = ["a", "a", "a", "b", "b", "b"]
    clusters = [1, 1, 2, 2, 3, 3]  # subject 2 appears in a and b
    with pytest.raises(ValueError, match="cluster 2 spans several groups"):
        grouped_bootstrap(values, groups, clusters=clusters)
    with pytest.raises(ValueError, match="n_resamples"):
        grouped_bootstrap(values, groups, n_resamples=0)


# --------------------------------------------------------------------------- verification rates


def test_rates_at_threshold_similarity_and_distance():
    gen = [0.9, 0.8, 0.7, 0.4]
    imp = [0.1, 0.2, 0.5, 0.7, 0.3]
    # accept >= 0.7: impostor 0.7 accepted (1/5), genuine 0.4 rejected (1/4)
    assert rates_at_threshold(gen, imp, 0.7) == (0.2, 0.25)
    assert rates_at_threshold(gen, imp, 0.75) == (0.0, 0.5)
    # distances: accept <= t
    gen_d = [0.1, 0.2, 0.3, 1.5]
    imp_d = [1.0, 1.2, 0.3, 2.0]
    assert rates_at_threshold(gen_d, imp_d, 0.3, higher_is_same=False) == (0.25, 0.25)
    assert rates_at_threshold(gen_d, imp_d, 0.29, higher_is_same=False) == (0.0, 0.5)
    fmr, fnmr = rates_at_threshold([], imp, 0.5)
    assert fmr == 0.4 and np.isnan(fnmr)
    with pytest.raises(ValueError, match="non-finite"):
        rates_at_threshold(gen, [np.nan], 0.5)


def test_threshold_at_fmr_hand_worked_and_ties():
    imp = np.arange(1, 11) / 10  # 0.1 .. 1.0, n = 10
    t = threshold_at_fmr(imp, 0.1)  # one impostor may be accepted: 1.0; reject 0.9
    assert 0.9 < t <= 1.0 and t == np.nextafter(0.9, 1)
    assert rates_at_threshold([1.0], imp, t)[0] == pytest.approx(0.1)
    assert threshold_at_fmr(imp, 0.25) == np.nextafter(0.8, 1)  # k = 2
    # ties: the 2nd and 3rd largest tie -> both rejected, FMR falls below target
    imp_t = np.array([0.1, 0.2, 0.6, 0.6, 0.9])
    t = threshold_at_fmr(imp_t, 0.4)  # k = 2 but accepting 2 would need to split the tie
    assert t == np.nextafter(0.6, 1) and rates_at_threshold([1.0], imp_t, t)[0] == pytest.approx(0.2)
    # distances (accept <= t)
    t = threshold_at_fmr(imp, 0.2, higher_is_same=False)  # accept 0.1, 0.2; reject 0.3
    assert t == np.nextafter(0.3, 0) and rates_at_threshold([0.0], imp, t, higher_is_same=False)[0] == 0.2
    # target 1: everything accepted
    assert threshold_at_fmr(imp, 1.0) == 0.1 and threshold_at_fmr(imp, 1.0, higher_is_same=False) == 1.0
    # rounding: 0.29 * 100 = 28.999... must still allow 29 impostors
    big = np.arange(100.0)
    t = threshold_at_fmr(big, 0.29)
    assert rates_at_threshold([0.0], big, t)[0] == pytest.approx(0.29)


def test_threshold_at_fmr_brute_force_oracle():
    rng = np.random.default_rng(5)
    imp = np.round(rng.normal(size=200), 1)  # many ties
    for target in (0.005, 0.01, 0.05, 0.3):
        for hi in (True, False):
            t = threshold_at_fmr(imp, target, higher_is_same=hi)
            # oracle: over all candidate thresholds (scores and their float neighbours) keep those with
            # FMR <= target and take the most permissive one
            cands = np.unique(np.r_[imp, np.nextafter(imp, np.inf), np.nextafter(imp, -np.inf)])
            fmr = np.array([np.mean(imp >= c) if hi else np.mean(imp <= c) for c in cands])
            ok = cands[fmr <= target + 1e-15]
            want = ok.min() if hi else ok.max()
            assert t == want, (target, hi, t, want)


def test_threshold_at_fmr_unresolvable_message():
    with pytest.raises(ValueError, match=r"cannot be resolved with 500 impostor comparisons.*at least 10000"):
        threshold_at_fmr(np.linspace(0, 1, 500), 1e-4)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        threshold_at_fmr([0.1, 0.2], 0.0)


def test_group_error_rates_hand_worked():
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.8, 0.5, 0.75, 0.3, 0.1])
    same = np.array([1, 1, 0, 0, 0, 1, 1, 0, 0, 0], dtype=bool)
    groups = np.array(["X"] * 5 + ["Y"] * 5)
    r = group_error_rates(scores, same, groups, threshold=0.65)
    # X: genuine .9 .6 -> .6 rejected: FNMR 1/2 ; impostors .4 .7 .2 -> .7 accepted: FMR 1/3
    # Y: genuine .8 .5 -> FNMR 1/2 ; impostors .75 .3 .1 -> FMR 1/3
    assert r["groups"] == ["X", "Y"] and r["threshold"] == 0.65
    assert r["fmr"] == pytest.approx({"X": 1 / 3, "Y": 1 / 3})
    assert r["fnmr"] == pytest.approx({"X": 0.5, "Y": 0.5})
    assert r["n_genuine"] == {"X": 2, "Y": 2} and r["n_impostor"] == {"X": 3, "Y": 3}
    # same data as distances (negated scores): identical rates
    rd = group_error_rates(-scores, same, groups, threshold=-0.65, higher_is_same=False)
    assert rd["fmr"] == r["fmr"] and rd["fnmr"] == r["fnmr"]
    # agrees with rates_at_threshold per group
    for g in ("X", "Y"):
        sel = groups == g
        assert rates_at_threshold(scores[sel & same], scores[sel & ~same], 0.65) == pytest.approx(
            (r["fmr"][g], r["fnmr"][g]))
    # a group without impostors gets NaN FMR
    r2 = group_error_rates([0.9, 0.1, 0.8], [1, 0, 1], ["a", "a", "b"], 0.5)
    assert np.isnan(r2["fmr"]["b"]) and r2["fnmr"]["b"] == 0.0
    with pytest.raises(ValueError, match="0/1 or True/False"):
        group_error_rates([0.9, 0.1], [2, 0], ["a", "a"], 0.5)


# --------------------------------------------------------------------------- differentials / FDR


def test_demographic_differentials_hand_worked():
    fmr = {"A": 1e-4, "B": 4e-4, "C": 1.6e-3}
    fnmr = {"A": 0.02, "B": 0.01, "C": 0.04}
    d = demographic_differentials(fmr, fnmr)
    assert d["fmr_max_min_ratio"] == pytest.approx(16.0)
    assert d["fmr_max_geomean_ratio"] == pytest.approx(1.6e-3 / 4e-4)  # geomean(1e-4, 4e-4, 1.6e-3) = 4e-4
    assert d["fnmr_max_min_ratio"] == pytest.approx(4.0)
    assert d["fnmr_max_geomean_ratio"] == pytest.approx(0.04 / 0.02)  # geomean(.02, .01, .04) = .02
    z = demographic_differentials([0.0, 0.01], [0.0, 0.0])
    assert z["fmr_max_min_ratio"] == np.inf and z["fmr_max_geomean_ratio"] == np.inf
    assert np.isnan(z["fnmr_max_min_ratio"]) and np.isnan(z["fnmr_max_geomean_ratio"])
    with pytest.raises(ValueError, match="NaN for group 'B'"):
        demographic_differentials({"A": 0.1, "B": np.nan}, {"A": 0.1, "B": 0.1})
    with pytest.raises(ValueError, match="different groups"):
        demographic_differentials({"A": 0.1}, {"B": 0.1})


def test_fairness_discrepancy_rate_hand_worked():
    fmr = [0.001, 0.003, 0.002]
    fnmr = [0.05, 0.02, 0.04]
    # A = 0.002, B = 0.03
    assert fairness_discrepancy_rate(fmr, fnmr) == pytest.approx(1 - (0.5 * 0.002 + 0.5 * 0.03))
    assert fairness_discrepancy_rate(fmr, fnmr, alpha=1.0) == pytest.approx(0.998)
    assert fairness_discrepancy_rate(fmr, fnmr, alpha=0.0) == pytest.approx(0.97)
    assert fairness_discrepancy_rate([0.1, 0.1], [0.2, 0.2]) == 1.0
    # mapping input, keys matched by name not by order
    assert fairness_discrepancy_rate({"a": 0.0, "b": 1.0}, {"b": 0.0, "a": 0.0}, alpha=0.25) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="alpha"):
        fairness_discrepancy_rate(fmr, fnmr, alpha=1.5)


def test_verification_pipeline_end_to_end():
    # global threshold from pooled impostors, then per-group rates, then summaries
    rng = np.random.default_rng(9)
    n = 4000
    groups = rng.choice(["g1", "g2"], n)
    same = rng.random(n) < 0.5
    shift = np.where(groups == "g2", 0.3, 0.0)  # g2 impostors score higher -> more false matches
    scores = np.where(same, rng.normal(2, 1, n), rng.normal(0, 1, n) + shift)
    t = threshold_at_fmr(scores[~same], 0.01)
    r = group_error_rates(scores, same, groups, t)
    assert rates_at_threshold(scores[same], scores[~same], t)[0] <= 0.01
    assert r["fmr"]["g2"] > r["fmr"]["g1"]
    d = demographic_differentials(r["fmr"], r["fnmr"])
    assert d["fmr_max_min_ratio"] > 1
    fdr = fairness_discrepancy_rate(r["fmr"], r["fnmr"])
    assert 0.0 <= fdr <= 1.0
