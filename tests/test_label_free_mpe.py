"""label_free protocol, mixture-proportion estimation (issue 23): the MPE estimators and shift indicators as
non-headline AUROC indicators judged on the meta-benchmark, earlier records untouched, the ID reference of
held-out-class families, cross-fitted feature-detector references, and the decomposition figure."""

import dataclasses

import numpy as np
import pytest

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.errors import ConfigError
from facebench.metrics import meta_eval as me
from facebench.metrics import mpe
from facebench.protocols import label_free as lfp
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.label_free import LabelFreeProtocol
from facebench.report.mpe_figure import mpe_decomposition_figure

CLASSES = ("neutral", "happiness", "sadness")


def _split(name, n, logits, labels=None, features=None):
    ds = Dataset(name, "test", np.array([f"{name}{i}" for i in range(n)]), CLASSES,
                 None if labels is None else np.asarray(labels), ArrayImages(np.zeros((n, 1, 1, 3), np.uint8)))
    outputs = {"expression": np.asarray(logits)}
    if features is not None:
        outputs["features"] = np.asarray(features)
    return ds, Predictions(ds.ids, outputs)


def _context(rng, n_resamples=20):
    n = 900
    y = rng.integers(0, 3, n)
    task = _split("id", n, rng.normal(size=(n, 3)) + 3.0 * np.eye(3)[y], [CLASSES[i] for i in y])
    far = _split("far", 600, rng.normal(size=(600, 3)) * 0.2)
    mid = _split("mid", 600, rng.normal(size=(600, 3)) * 0.6 + 0.8 * np.eye(3)[rng.integers(0, 3, 600)])
    yv = rng.integers(0, 3, 900)
    fit = _split("fit", 900, rng.normal(size=(900, 3)) + 3.0 * np.eye(3)[yv], [CLASSES[i] for i in yv])
    extras = {"ood:far": ExtraSplit(*far), "ood:mid": ExtraSplit(*mid), "fit": ExtraSplit(*fit)}
    return EvalContext(task[0], task[1], "expression", CLASSES, n_resamples=n_resamples, extras=extras)


PARAMS = dict(ood_sources=[{"dataset": "far", "split": "test", "name": "far"},
                           {"dataset": "mid", "split": "test", "name": "mid"}],
              fit_split="val", sets_per_source=6, sizes=[300, 600], ood_fractions=[0.25, 0.5, 0.75],
              class_families=True, mpe_resamples=50)


@pytest.fixture(scope="module")
def both_runs():
    on = LabelFreeProtocol(**PARAMS).evaluate(_context(np.random.default_rng(0)))
    off = LabelFreeProtocol(**PARAMS, mpe=False).evaluate(_context(np.random.default_rng(0)))
    return on, off


def test_earlier_records_are_unchanged_and_mpe_records_are_not_headline(both_runs):
    on, off = both_runs
    got = {r.metric: r for r in on.records}
    for r in off.records:  # every record of the run without MPE, bit for bit
        assert got[r.metric].value == r.value or (np.isnan(r.value) and np.isnan(got[r.metric].value))
        assert got[r.metric].ci == r.ci and got[r.metric].headline == r.headline
    new = [r for r in on.records if r.metric not in {x.metric for x in off.records}]
    assert new and not any(r.headline for r in new)
    names = {r.metric for r in new}
    for method in mpe.ESTIMATORS:
        for stat in ("mae", "spearman", "kendall", "coverage", "answered"):
            assert f"{stat}[target=auroc,detector=msp,indicator=mpe_{method},map=direct]" in names
    assert "best_mpe_mae[target=auroc,detector=msp]" in names
    assert "mae[target=auroc,detector=msp,indicator=shift_ks,map=linear]" in names


def test_mpe_records_match_the_sets_details(both_runs):
    on, _ = both_runs
    sets = on.details["sets"]
    truth = np.array([s["true_auroc"] for s in sets])
    m = {r.metric: r for r in on.records}
    for method in ("bbe", "scott"):
        est = np.array([np.nan if s["mpe"][method]["auroc"] is None else s["mpe"][method]["auroc"] for s in sets])
        ok = np.isfinite(est)
        key = f"[target=auroc,detector=msp,indicator=mpe_{method},map=direct]"
        assert m["answered" + key].value == pytest.approx(ok.mean())
        want = me.agreement_metrics(np.clip(est[ok], 0, 1), truth[ok])["mae"]  # details rounded to 6 places
        assert m["mae" + key].value == pytest.approx(want, abs=1e-5)
        ci = np.array([s["mpe"][method]["auroc_ci"] for s in sets], dtype=float)[ok]
        inside = (ci[:, 0] <= truth[ok]) & (truth[ok] <= ci[:, 1])
        assert m["coverage" + key].value == pytest.approx(inside.mean())
        # conformal intervals: each set's half-width from the other families' absolute errors, each family
        # weighing 1/K (oracle written out here: the smallest error whose weight reaches 95%; +inf, i.e. [0, 1]
        # after clipping, when the other families' (K - 1)/K fall short)
        pred, fam = np.clip(est[ok], 0, 1), np.array([s["family"] for s in sets])[ok]
        names, counts = np.unique(fam, return_counts=True)
        size = dict(zip(names.tolist(), counts.tolist()))
        hits, widths = [], []
        for i in range(len(pred)):
            pairs = sorted((abs(pred[j] - truth[ok][j]), 1 / (len(names) * size[fam[j]]))
                           for j in range(len(pred)) if fam[j] != fam[i])
            total, q = 0.0, np.inf
            for e, w in pairs:
                total += w
                if total >= 0.95 - 1e-12:
                    q = e
                    break
            lo, hi = max(pred[i] - q, 0.0), min(pred[i] + q, 1.0)
            hits.append(lo <= truth[ok][i] <= hi)
            widths.append(hi - lo)
        assert m["conformal_coverage" + key].value == pytest.approx(np.mean(hits), abs=1e-5)
        assert m["conformal_width" + key].value == pytest.approx(np.mean(widths), abs=1e-4)
        assert not m["conformal_width" + key].higher_is_better
        unanswered = [s["mpe"][method]["status"] for s in sets if s["mpe"][method]["auroc"] is None]
        assert all(st.startswith("unidentifiable") for st in unanswered)
    # far OOD (near-constant logits) is easy: the best MPE estimate is close on those sets
    far = np.array([s["source"] == "far" and s["mpe"]["bbe"]["auroc"] is not None for s in sets])
    est = np.array([s["mpe"]["bbe"]["auroc"] for s in np.array(sets, dtype=object)[far]], dtype=float)
    assert np.mean(np.abs(est - truth[far])) < 0.05
    assert set(on.details["mpe"]["msp"]["table"][0]) >= {"indicator", "map", "mae", "answered"}


def test_fingerprint_unchanged_by_default_mpe_params():
    base = LabelFreeProtocol(**{k: v for k, v in PARAMS.items() if k != "mpe_resamples"})
    assert base.fingerprint() == LabelFreeProtocol(**{k: v for k, v in PARAMS.items() if k != "mpe_resamples"},
                                                   mpe=True, mpe_resamples=100).fingerprint()  # the default
    assert base.fingerprint() != LabelFreeProtocol(**PARAMS).fingerprint()  # mpe_resamples 50: not the default
    params = dataclasses.asdict(base.params)
    assert all(k in params for k in LabelFreeProtocol.MPE_PARAMS)


def test_bad_mpe_methods_are_refused():
    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="mpe_methods"):
        LabelFreeProtocol(mpe_methods=["em"], fit_split="val").requires(T)


def test_held_out_class_sets_use_a_reference_without_that_class():
    scores = np.arange(10.0)
    labels = np.array(["a", "b"] * 5)
    sets = [{"family": "class:a", "_scores": np.ones(3)}, {"family": "far", "_scores": np.ones(4)},
            {"family": "class:b", "_scores": np.ones(5)}]
    seen = []

    def estimate(reference, score_sets):
        seen.append((len(reference), [len(s) for s in score_sets]))
        return {"n_ref": np.full(len(score_sets), float(len(reference)))}

    merged = lfp._by_reference(sets, (scores, labels), estimate)
    assert merged["n_ref"].tolist() == [5.0, 10.0, 5.0]
    assert sorted(seen) == [(5, [3]), (5, [5]), (10, [4])]


def test_feature_detector_reference_is_cross_fitted():
    rng = np.random.default_rng(3)
    n, d = 300, 20
    y = rng.integers(0, 3, n)
    feats = rng.normal(size=(n, d)) + 2.0 * np.eye(3, d)[y]
    fit = _split("fit", n, np.eye(3)[y], [CLASSES[i] for i in y], feats)
    ctx = EvalContext(fit[0], fit[1], "expression", CLASSES, n_resamples=0, extras={"fit": ExtraSplit(*fit)})
    proto = LabelFreeProtocol(detectors=["mahalanobis"], fit_split="val", mpe_folds=5)
    crossed, labels = proto._reference_scores("mahalanobis", ctx)
    in_sample = proto._scorer("mahalanobis", ctx)(fit[1])
    assert crossed.shape == (n,) and list(labels) == [CLASSES[i] for i in y]
    assert crossed.mean() < in_sample.mean()  # out-of-sample points lie farther from the class means
    fresh = rng.normal(size=(2000, d)) + 2.0 * np.eye(3, d)[rng.integers(0, 3, 2000)]
    fresh_scores = proto._scorer("mahalanobis", ctx)(Predictions(np.arange(2000).astype(str), {"features": fresh}))
    # the cross-fitted reference is closer to the scores of new ID data than the in-sample scores are
    assert abs(np.median(crossed) - np.median(fresh_scores)) < abs(np.median(in_sample) - np.median(fresh_scores))


def test_decomposition_figure(tmp_path):
    rng = np.random.default_rng(4)
    s_id = rng.beta(5, 2, 2000)
    s_test = np.concatenate([rng.beta(5, 2, 600), 0.6 * rng.beta(2, 5, 400)])
    paths = mpe_decomposition_figure(s_id, s_test, tmp_path / "decomp", n_resamples=50)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    again = mpe_decomposition_figure(s_id, s_test, tmp_path / "again", n_resamples=50)
    assert again[0].read_bytes() == paths[0].read_bytes()  # deterministic
    flagged = mpe_decomposition_figure(s_id, s_id[:500], tmp_path / "flagged", n_resamples=0)
    assert flagged[0].exists()


def test_combined_forest_is_a_leave_one_family_out_random_forest():
    """``combined: true``: its records equal an independent leave-one-family-out scikit-learn forest fitted here on
    the label-free features of the details' sets (never their truth or true OOD fraction); off by default, and the
    default keeps the fingerprint."""
    from sklearn.ensemble import RandomForestRegressor

    result = LabelFreeProtocol(**PARAMS, combined=True).evaluate(_context(np.random.default_rng(0)))
    sets = result.details["sets"]
    assert sets and all("true_auroc" in s and "ood_fraction" in s for s in sets)
    x = np.nan_to_num(np.array([lfp.combined_features(s, mpe.ESTIMATORS) for s in sets], dtype=np.float64))
    # no truth in the features: changing the true AUROC, the true OOD fraction and the ID/OOD split of the set
    # size (not the size) changes none of them
    blind = [{**s, "true_auroc": 1 - s["true_auroc"], "ood_fraction": 0.5, "n_id": s["n_id"] + s["n_ood"] - 1,
              "n_ood": 1} for s in sets]
    np.testing.assert_array_equal(
        x, np.nan_to_num(np.array([lfp.combined_features(s, mpe.ESTIMATORS) for s in blind], dtype=np.float64)))
    assert x.shape[1] == len(sets[0]["indicators"]) + len(sets[0]["shift"]) + 3 * len(mpe.ESTIMATORS) + 1
    truth = np.array([s["true_auroc"] for s in sets])
    fam = np.array([s["family"] for s in sets])
    pred = np.empty_like(truth)
    for f in np.unique(fam):
        forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=5, random_state=0, n_jobs=1)
        pred[fam == f] = forest.fit(x[fam != f], truth[fam != f]).predict(x[fam == f])
    pred = np.clip(pred, 0, 1)
    m = {r.metric: r for r in result.records}
    key = "[target=auroc,detector=msp,indicator=combined,map=forest]"
    assert m["mae" + key].value == pytest.approx(np.mean(np.abs(pred - truth)), abs=1e-5)  # details: 6 places
    assert m["answered" + key].value == 1.0 and "conformal_coverage" + key in m
    plain = LabelFreeProtocol(**PARAMS)
    assert plain.fingerprint() == LabelFreeProtocol(**PARAMS, combined=False).fingerprint()
    assert plain.fingerprint() != LabelFreeProtocol(**PARAMS, combined=True).fingerprint()
    assert not any("indicator=combined" in r.metric for r in plain.evaluate(_context(np.random.default_rng(0))).records)


def _feature_context(rng):
    """The context of ``_context`` with 8-d features: ID classes apart in features, the OOD sources shifted."""
    n = 900
    y, yv = rng.integers(0, 3, n), rng.integers(0, 3, n)

    def feats(labels, shift=0.0, size=n):
        base = rng.normal(size=(size, 8)) + shift
        if labels is not None:
            base[:, :3] += 3.0 * np.eye(3)[labels]
        return base

    task = _split("id", n, rng.normal(size=(n, 3)) + 3.0 * np.eye(3)[y], [CLASSES[i] for i in y], feats(y))
    far = _split("far", 600, rng.normal(size=(600, 3)) * 0.2, features=feats(None, 4.0, 600))
    mid = _split("mid", 600, rng.normal(size=(600, 3)) * 0.6 + 0.8 * np.eye(3)[rng.integers(0, 3, 600)],
                 features=feats(None, 1.5, 600))
    fit = _split("fit", n, rng.normal(size=(n, 3)) + 3.0 * np.eye(3)[yv], [CLASSES[i] for i in yv], feats(yv))
    extras = {"ood:far": ExtraSplit(*far), "ood:mid": ExtraSplit(*mid), "fit": ExtraSplit(*fit)}
    return EvalContext(task[0], task[1], "expression", CLASSES, n_resamples=20, extras=extras)


def test_feature_mpe_records_follow_the_sets_estimates():
    """``feature_mpe: true``: per-set estimates in the details (pi, AUROC, interval, status), and the records are
    their agreement with the truth on the answered sets (MAE and coverage recomputed here); the fingerprint and
    the records of a run without it are unchanged, and it asks for features."""
    proto = LabelFreeProtocol(**PARAMS, feature_mpe=True)
    assert proto.requirements().features and not LabelFreeProtocol(**PARAMS).requirements().features
    result = proto.evaluate(_feature_context(np.random.default_rng(0)))
    sets = [s for s in result.details["sets"] if s["detector"] == "msp"]
    est = [s["mpe"]["feature"] for s in sets]
    answered = [(e, s["true_auroc"]) for e, s in zip(est, sets) if e["status"] == mpe.STATUS_OK]
    assert answered
    assert all(e["auroc"] is None for e in est if e["status"] != mpe.STATUS_OK)
    records = {r.metric: r for r in result.records}
    key = "[target=auroc,detector=msp,indicator=mpe_feature,map=direct]"
    mae = np.mean([abs(e["auroc"] - t) for e, t in answered])
    assert records["mae" + key].value == pytest.approx(mae, abs=2e-6)  # the details round to 1e-6
    cover = np.mean([e["auroc_ci"][0] <= t <= e["auroc_ci"][1] for e, t in answered])
    assert records["coverage" + key].value == pytest.approx(cover)
    assert records["answered" + key].value == pytest.approx(len(answered) / len(sets))
    assert not records["mae" + key].headline
    far = [e["pi"] for e, s in zip(est, sets) if s["family"] == "far"]
    truth_pi = [s["ood_fraction"] for s in sets if s["family"] == "far"]
    assert np.max(np.abs(np.array(far) - truth_pi)) < 0.1  # 4 SD apart in features: pi recovered
    plain = LabelFreeProtocol(**PARAMS)
    assert plain.fingerprint() != proto.fingerprint()
    assert plain.fingerprint() == LabelFreeProtocol(**PARAMS, feature_mpe=False).fingerprint()
    off = plain.evaluate(_feature_context(np.random.default_rng(0)))
    off_values = {r.metric: r.value for r in off.records if not r.metric.startswith("best_mpe")}  # may now differ
    assert len(off_values) > 50
    assert all(records[m].value == v or (np.isnan(v) and np.isnan(records[m].value)) for m, v in off_values.items())

    class T:
        name, dataset, path, dataset_args = "t", "synth", None, {}
    with pytest.raises(ConfigError, match="feature_mpe"):
        LabelFreeProtocol(feature_mpe=True, class_families=True).requires(T)


def test_feature_estimates_equal_direct_serial_calls():
    """Each set's estimate (made in a 2-thread pool) equals ``feature_mpe.estimate`` called here, one set after the
    other, on the set's own feature rows against the fit split without the held-out class (seed = task seed + set
    index)."""
    from facebench.metrics import feature_mpe as fmpe

    proto = LabelFreeProtocol(**{**PARAMS, "mpe_resamples": 30}, feature_mpe=True)
    ctx = _feature_context(np.random.default_rng(1))
    sets = [s for s in proto._auroc_sets(ctx, np.random.default_rng(ctx.seed), []) if s["detector"] == "msp"]
    ref = proto._reference_scores("msp", ctx)
    got = proto._feature_estimates(sets, ref, ctx)
    fit_x = np.asarray(ctx.extras["fit"].predictions.outputs["features"], np.float64)
    labels = np.asarray(ctx.extras["fit"].dataset.labels).astype(str)
    for i in (0, 7, len(sets) - 1):
        held = sets[i]["family"][len("class:"):] if sets[i]["family"].startswith("class:") else None
        keep = np.ones(len(labels), bool) if held is None else labels != held
        direct = fmpe.estimate(fmpe.whitening(fit_x[keep]), ref[0][keep], lfp._set_features(sets[i]),
                               sets[i]["_scores"], n_resamples=30, confidence=ctx.confidence, seed=ctx.seed + i)
        np.testing.assert_array_equal(got["auroc"][i], direct["auroc"])
        np.testing.assert_array_equal(got["auroc_ci"][i], direct["auroc_ci"])
    assert {s["family"] for s in sets} >= {"far", "mid", "class:neutral"}
