"""fairness and verification protocols against direct computations, and runs through the runner
(synthetic groups; an LFW-layout fixture embedded by synth-cnn with the flip split)."""

import numpy as np
import pytest
from PIL import Image

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.metrics import verification as vm
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.fairness import FairnessProtocol, age_bin_bounds
from facebench.protocols.verification import VerificationProtocol
from facebench.runner import run_suite


def _ds(n, labels=None, classes=(), attributes=None, pairs=None):
    return Dataset("toy", "test", np.array([f"s{i}" for i in range(n)]), tuple(classes),
                   None if labels is None else np.asarray(labels), ArrayImages(np.zeros((n, 1, 1, 3), np.uint8)),
                   attributes=attributes or {}, pairs=pairs)


def test_gender_accuracy_by_race_against_direct_computation():
    rng = np.random.default_rng(0)
    n = 600
    race = rng.choice(["Black", "White", "Asian", "Tiny"], n, p=[0.4, 0.35, 0.24, 0.01])
    gender = rng.choice(["Male", "Female"], n)
    p_correct = np.where(race == "Black", 0.8, 0.92)
    correct = rng.random(n) < p_correct
    pred = np.where(correct, gender, np.where(gender == "Male", "Female", "Male"))
    logits = np.stack([(pred == "Female") * 2.0, (pred == "Male") * 2.0], 1)
    ds = _ds(n, attributes={"race": race, "gender": gender})
    ctx = EvalContext(ds, Predictions(ds.ids, {"gender": logits}), "gender", ("female", "male"), n_resamples=300)
    res = FairnessProtocol(target="gender", by=["race"], positive="female").evaluate(ctx)
    m = {r.metric: r for r in res.records}
    acc = {g: correct[race == g].mean() for g in np.unique(race)}
    assert m["accuracy[overall]"].value == pytest.approx(correct.mean())
    for g, a in acc.items():
        assert m[f"accuracy[group={g}]"].value == pytest.approx(a)
        lo, hi = m[f"accuracy[group={g}]"].ci
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= a <= hi
    vals = np.array(list(acc.values()))
    assert m["accuracy_difference[between_groups]"].value == pytest.approx(vals.max() - vals.min())
    assert m["accuracy_ratio[between_groups]"].value == pytest.approx(vals.min() / vals.max())
    assert m["accuracy_std[ddof=1]"].value == pytest.approx(np.std(vals, ddof=1))
    err = 1 - vals
    assert m["accuracy_ser"].value == pytest.approx(err.max() / err.min())
    assert any("'Tiny' has only" in w for w in res.warnings)  # small group flagged, CI still finite
    assert "equalized_odds_difference" in m
    assert m["accuracy[overall]"].conventions["bootstrap"].startswith("percentile,resamples=300,stratified=group")


def test_mae_and_age_bins_and_subject_clusters():
    rng = np.random.default_rng(1)
    n = 400
    subjects = np.repeat(np.arange(40), 10)
    group = np.where(subjects < 20, "a", "b")
    age = rng.uniform(10, 70, n)
    offset = rng.normal(0, 6, 40)[subjects]  # errors shared within a subject
    pred = age + offset
    ds = _ds(n, attributes={"age": age, "group": group, "subject": subjects.astype(str)})
    ctx = EvalContext(ds, Predictions(ds.ids, {"age": pred[:, None]}), "age", ("age",), n_resamples=400)
    res_row = FairnessProtocol(target="age", by="group").evaluate(ctx)
    res_sub = FairnessProtocol(target="age", by="group", subject="subject").evaluate(ctx)
    m = {r.metric: r for r in res_row.records}
    ms = {r.metric: r for r in res_sub.records}
    assert m["mae[group=a]"].value == pytest.approx(np.abs(offset[group == "a"]).mean())
    assert "mae_ser" not in m
    width = lambda r: r.ci[1] - r.ci[0]  # noqa: E731
    assert width(ms["mae[group=a]"]) > 1.5 * width(m["mae[group=a]"])
    assert age_bin_bounds("20-29") == (20, 29) and age_bin_bounds("more than 70") == (70, float("inf"))
    bins = np.array(["20-29", "30-39", "more than 70", "3-9"])
    ds2 = _ds(4, attributes={"age_group": bins, "race": np.array(["x", "x", "y", "y"])})
    ctx2 = EvalContext(ds2, Predictions(ds2.ids, {"age": np.array([[29.5], [41.0], [80.0], [2.0]])}), "age",
                       ("age",), n_resamples=0)
    res = FairnessProtocol(target="age_group", by=["race"], min_group_size=1).evaluate(ctx2)
    mm = {r.metric: r.value for r in res.records}
    assert mm["age_bin_accuracy[group=x]"] == 0.5 and mm["age_bin_accuracy[group=y]"] == 0.5  # 29.5 is in 20-29


def _pairs_case(seed=0, n_id=60, groups=("g1", "g2")):
    """Embeddings of random identities; 10 folds of genuine/impostor pairs per group."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_id, 16))
    ident = np.repeat(np.arange(n_id), 4)
    emb = centres[ident] + rng.normal(scale=0.9, size=(len(ident), 16))
    flipped = centres[ident] + rng.normal(scale=0.9, size=(len(ident), 16))
    group_of_id = np.array([groups[i % len(groups)] for i in range(n_id)])
    a, b, same, fold, grp = [], [], [], [], []
    for g in groups:
        ids = np.flatnonzero(group_of_id == g)
        for k in range(200):
            i = ids[k % len(ids)]
            if k % 2 == 0:
                a.append(4 * i), b.append(4 * i + 1 + k % 3), same.append(True)
            else:
                j = ids[(k * 7 + 3) % len(ids)]
                j = j if j != i else ids[(k + 1) % len(ids)]
                a.append(4 * i + 2), b.append(4 * j + 3), same.append(False)
            fold.append(k * 10 // 200), grp.append(g)
    pairs = {"a": np.array(a), "b": np.array(b), "same": np.array(same), "fold": np.array(fold), "group": np.array(grp)}
    return emb, flipped, ident, pairs


def test_verification_protocol_against_metric_layer():
    emb, flipped, ident, pairs = _pairs_case()
    n = len(emb)
    ds = _ds(n, attributes={"subject": ident.astype(str)}, pairs=pairs)
    fl = _ds(n)
    ctx = EvalContext(ds, Predictions(ds.ids, {"features": emb}), None, (), n_resamples=200,
                      extras={"flipped": ExtraSplit(fl, Predictions(fl.ids, {"features": flipped}))})
    proto = VerificationProtocol(fmr_target=0.01)
    assert proto.needs() == {"features": True, "head": False}
    res = proto.evaluate(ctx)
    m = {r.metric: r for r in res.records}
    e = vm.flip_sum_embeddings(emb, flipped)  # Predictions built here keep float64
    d = ((e[pairs["a"]] - e[pairs["b"]]) ** 2).sum(1)
    cos = (e[pairs["a"]] * e[pairs["b"]]).sum(1)
    want = vm.insightface_10fold(d, pairs["same"], pairs["fold"])["accuracy_mean"]
    assert m["accuracy[10fold,insightface]"].value == pytest.approx(want, abs=1e-12)
    assert m["accuracy[10fold,facexzoo]"].value == pytest.approx(
        vm.facexzoo_10fold(cos, pairs["same"], pairs["fold"])["accuracy_mean"], abs=1e-12)
    assert m["tar@far1e-3"].value is None and "impostor" in m["tar@far1e-3"].conventions["reason"]
    assert m["tar@far1e-1"].value is not None
    for g in ("g1", "g2"):
        gm = pairs["group"] == g
        assert m[f"accuracy[10fold,insightface,group={g}]"].value == pytest.approx(
            vm.insightface_10fold(d[gm], pairs["same"][gm], pairs["fold"][gm])["accuracy_mean"])
        lo, hi = m[f"fnmr[group={g}]"].ci
        assert lo <= m[f"fnmr[group={g}]"].value <= hi
    imp = cos[~pairs["same"]]
    t = res.details["groups"]["threshold"]
    assert np.mean(imp >= t) <= 0.01
    assert 0.0 <= m["fdr[alpha=0.5]"].value <= 1.0 and "accuracy_ser" in m


def _jpg(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_suite_runs_verification_on_lfw_layout_and_fairness_on_synth(tmp_path):
    from facebench.synth.generator import render_split

    faces = render_split("test", 12, seed=3).images
    names = [("Ann", 4), ("Bob", 4), ("Cid", 4)]
    k = 0
    for name, count in names:
        for i in range(1, count + 1):
            _jpg(tmp_path / "lfw" / "lfw" / name / f"{name}_{i:04d}.jpg", np.asarray(faces[k]))
            k += 1
    lines = ["2\t3", "Ann\t1\t2", "Bob\t1\t2", "Cid\t1\t2", "Ann\t1\tBob\t1", "Bob\t2\tCid\t3", "Cid\t4\tAnn\t3",
             "Ann\t3\t4", "Bob\t3\t4", "Cid\t3\t4", "Ann\t2\tCid\t1", "Bob\t4\tAnn\t4", "Cid\t2\tBob\t3"]
    (tmp_path / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""name: s
defaults: {{bootstrap: 50}}
tasks:
  - {{name: lfw, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, protocol: verification, params: {{far_targets: [0.5, 0.1]}}}}
  - {{name: fair, dataset: synth, split: test, dataset_args: {{n: 300}}, protocol: fairness, params: {{by: [skin_tone]}}}}
  - {{name: lfw-blur, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, protocol: verification,
     dataset_args: {{transform: {{name: gaussian_blur, severity: 4}}}}, params: {{far_targets: [0.5]}}}}
""")
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    m = {(r["task"], r["metric"]): r for r in out.results["records"]}
    assert 0 <= m[("lfw", "accuracy[10fold,insightface]")]["value"] <= 1
    assert m[("lfw", "tar@far1e-1")]["value"] is None  # 6 impostor pairs cannot resolve 0.1
    assert ("fair", "accuracy[group=tone1]") in m
    assert "flipped" in out.results["tasks"][0]["extra_splits"]
    assert 0 <= m[("lfw-blur", "accuracy[10fold,insightface]")]["value"] <= 1  # flip-sum of blurred views
    assert "flipped" in out.results["tasks"][2]["extra_splits"]


def test_the_mirrored_view_of_a_corrupted_split_is_corrupted_too(tmp_path):
    """Flip-sum on a corrupted split fuses f(T x) with f(hflip T x): the planned `flipped` split's images are the
    mirrors of the task's own (it was hflip of the clean images, which mixed clean data into a robustness
    number); an untransformed task's mirror is plain hflip; identification builds the same view."""
    from facebench.pipeline.plan import plan_tasks
    from facebench.protocols.identification import IdentificationProtocol
    from facebench.suite import Task, load_suite
    from facebench.synth.generator import render_split

    faces = render_split("test", 4, seed=3).images
    for k, name in enumerate(["Ann", "Ann", "Bob", "Bob"]):
        _jpg(tmp_path / "lfw" / "lfw" / name / f"{name}_{k % 2 + 1:04d}.jpg", np.asarray(faces[k]))
    (tmp_path / "lfw" / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\n")
    blur = {"name": "gaussian_blur", "severity": 5}
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""name: s
tasks:
  - {{name: blurred, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, protocol: verification,
     dataset_args: {{transform: {blur}}}}}
  - {{name: clean, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, protocol: verification}}
""".replace("'", ""))
    blurred, clean = plan_tasks(load_suite(suite), log=lambda msg: None)
    for item in (blurred, clean):
        own, mirror = item.loader.load("test").images, item.ref_loaders["flipped"].load("test").images
        for i in range(len(own)):
            assert (mirror.load(i) == own.load(i)[:, ::-1]).all()
    assert not (blurred.loader.load("test").images.load(0) == clean.loader.load("test").images.load(0)).all()
    task = Task.of("id", "scface", "identification", dataset_args={"transform": blur, "distance": 1})
    flipped = IdentificationProtocol(flip=True).requires(task)["flipped"]
    assert flipped.dataset_args == {"transform": [blur, "hflip"], "distance": 1}


def test_another_pair_list_over_the_same_images_is_other_data(tmp_path):
    """A user's story: pairs.txt edited (one genuine pair swapped for another) over the same images. The stored
    embeddings are reused (the images did not change), the dataset fingerprint stays, the annotations fingerprint
    changes, and the regression gate says it cannot compare (exit 2) instead of reading the change as the model's."""
    from facebench.report import compare as cmp
    from facebench.synth.generator import render_split

    faces = render_split("test", 12, seed=3).images
    for k, name in enumerate(["Ann"] * 4 + ["Bob"] * 4 + ["Cid"] * 4):
        _jpg(tmp_path / "lfw" / "lfw" / name / f"{name}_{k % 4 + 1:04d}.jpg", np.asarray(faces[k]))
    pairs = ["2\t3", "Ann\t1\t2", "Bob\t1\t2", "Cid\t1\t2", "Ann\t1\tBob\t1", "Bob\t2\tCid\t3", "Cid\t4\tAnn\t3",
             "Ann\t3\t4", "Bob\t3\t4", "Cid\t3\t4", "Ann\t2\tCid\t1", "Bob\t4\tAnn\t4", "Cid\t2\tBob\t3"]
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndefaults: {{bootstrap: 20}}\ntasks:\n  - {{name: lfw, dataset: lfw, split: test, "
                     f"path: {tmp_path / 'lfw'}, protocol: verification, params: {{far_targets: [0.5]}}}}\n")
    cache = tmp_path / "cache"

    def run(lines, out):
        (tmp_path / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
        result = run_suite(suite, "synth-cnn", out=tmp_path / out, cache_dir=cache, progress=False)
        assert result.exit_code == 0
        return result

    first = run(pairs, "a")
    second = run(pairs[:1] + ["Ann\t1\t3"] + pairs[2:], "b")
    fa, fb = (r.results["tasks"][0]["fingerprints"] for r in (first, second))
    assert fa["dataset"] == fb["dataset"] and fa["annotations"] != fb["annotations"]
    assert second.manifest["timings"]["lfw"]["reused"]  # the embeddings came from the store
    cmp.write_baseline(tmp_path / "a", tmp_path / "baseline.json")
    report = cmp.compare_runs(tmp_path / "baseline.json", tmp_path / "b")
    assert report.exit_code == 2 and any("annotations fingerprints differ" in p for p in report.problems)
    assert cmp.compare_runs(tmp_path / "baseline.json", run(pairs, "c").out_dir).exit_code == 0
