"""resolution protocol: classification accuracy per size against a hand computation (degrade_resolution -> model),
the probe-only / both pairings checked by hand on a tiny pairs fixture, a verification run on an LFW-layout
fixture of synthetic faces re-scored without the model, and bad parameters as ConfigErrors."""

import numpy as np
import pytest
import torch
from PIL import Image

from facebench import runner
from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.preprocess import normalise_batch
from facebench.data.resolution import degrade_resolution
from facebench.data.synthetic import SynthFaces
from facebench.data.transforms import parse_transform
from facebench.engine.store import Predictions
from facebench.errors import ConfigError
from facebench.metrics import robustness as rb
from facebench.metrics import verification as vm
from facebench.models.synth_cnn import SynthCNNAdapter
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.resolution import ResolutionProtocol
from facebench.runner import rescore_run, run_suite

N = 40
SIZES = [8, 16, 32]


def _values(results):
    return {r["metric"]: r["value"] for r in results["records"]}


def _hand_accuracy(k):
    ds = SynthFaces(n=N).load("test")
    adapter = SynthCNNAdapter()
    images = np.stack([degrade_resolution(ds.images.load(i), k) for i in range(len(ds))])
    with torch.no_grad():
        logits = adapter.predict(normalise_batch(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                                                 adapter.input_spec))["expression"].numpy()
    return float(np.mean(np.asarray(adapter.heads["expression"].labels)[logits.argmax(1)] == ds.labels))


def test_classification_accuracy_per_size_matches_a_hand_computation(tmp_path):
    suite = tmp_path / "r.yaml"
    suite.write_text(f"""name: r
defaults: {{bootstrap: 20}}
tasks:
  - {{name: res, dataset: synth, split: test, dataset_args: {{n: {N}}}, protocol: resolution,
      params: {{sizes: {SIZES}, fraction: 0.9}}}}
""")
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False, cache_dir=tmp_path / "store")
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    m = _values(out.results)
    for k in SIZES:
        assert m[f"accuracy[{k}px]"] == pytest.approx(_hand_accuracy(k), abs=1e-12)
    expected = rb.metric_threshold_resolution(SIZES, [m[f"accuracy[{k}px]"] for k in SIZES], m["accuracy[clean]"], 0.9)
    assert m["resolution_below[accuracy]"] == expected
    assert m["accuracy[8px]"] < m["accuracy[clean]"]
    for r in out.results["records"]:  # variant_cis (default): each size's accuracy has the closed_set CI
        if r["metric"].endswith("px]"):
            assert r["ci"] is not None and r["ci"][0] <= r["value"] <= r["ci"][1]
    from facebench.report import figures as F

    with F.captured_figures() as figs:
        F.task_figures(out.results["tasks"][0], out.results["records"], tmp_path / "figs")
    ax = figs[0].axes[0]
    [curve] = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert sorted(curve.get_xdata()) == SIZES
    assert dict(zip(curve.get_xdata(), curve.get_ydata())) == pytest.approx({k: m[f"accuracy[{k}px]"] for k in SIZES})
    flat = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if len(line.get_xdata()) == 2}
    assert flat == pytest.approx({"clean": m["accuracy[clean]"], "0.9 x clean": 0.9 * m["accuracy[clean]"]})
    assert ax.get_xlabel() == "resolution (short side, px)"
    assert set(out.results["tasks"][0]["extra_splits"]) == {f"resolution:{k}" for k in SIZES}


def _pairs_fixture(n_pairs=40, dim=8, seed=0):
    """Clean and low-resolution embeddings of 2 * n_pairs images, pairs (2i, 2i + 1) alternating same /
    different, in 2 folds."""
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(2 * n_pairs, dim))
    same = np.arange(n_pairs) % 2 == 0
    a, b = np.arange(0, 2 * n_pairs, 2), np.arange(1, 2 * n_pairs, 2)
    clean[b[same]] = clean[a[same]] + 0.6 * rng.normal(size=(same.sum(), dim))
    low = clean + np.where(np.arange(2 * n_pairs)[:, None] % 2 == 0, 1.2, 0.2) * rng.normal(size=clean.shape)
    ids = np.array([f"img{i:03d}" for i in range(2 * n_pairs)])
    pairs = {"a": a, "b": b, "same": same, "fold": np.where(np.arange(n_pairs) < n_pairs // 2, 1, 2)}
    ds = Dataset("toy", "test", ids, (), None, ArrayImages(np.zeros((2 * n_pairs, 1, 1, 3), np.uint8)), pairs=pairs)
    return ds, clean, low


def _n(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("side", ["first", "second"])
def test_probe_only_and_both_pairings_by_hand(side):
    ds, clean, low = _pairs_fixture()
    ctx = EvalContext(ds, Predictions(ds.ids, {"features": clean}), None, (), n_resamples=0,
                      extras={"resolution:16": ExtraSplit(ds, Predictions(ds.ids, {"features": low}))})
    proto = ResolutionProtocol(inner="verification", sizes=[16], probe_side=side, far=0.1)
    m = {r.metric: r.value for r in proto.evaluate(ctx).records}
    p = ds.pairs
    c, lo = _n(clean), _n(low)
    probe = (lo[p["a"]], c[p["b"]]) if side == "first" else (c[p["a"]], lo[p["b"]])
    for mode, (x, y) in (("probe_only", probe), ("both", (lo[p["a"]], lo[p["b"]]))):
        dist = np.sum((x - y) ** 2, axis=1)
        assert m[f"verification_accuracy[{mode},16px]"] == pytest.approx(
            vm.insightface_10fold(dist, p["same"], p["fold"])["accuracy_mean"])
        clean_dist = np.sum((c[p["a"]] - c[p["b"]]) ** 2, axis=1)
        thr = vm.insightface_10fold(clean_dist, p["same"], p["fold"])["thresholds"]  # fold 1's from fold 2, ...
        fixed = np.mean([np.mean((dist[p["fold"] == f] < t) == p["same"][p["fold"] == f]) for f, t in zip((1, 2), thr)])
        assert m[f"accuracy_at_clean_threshold[{mode},16px]"] == pytest.approx(fixed)
        clean_cos = np.sum(c[p["a"]] * c[p["b"]], axis=1)
        t = vm.tar_at_far(clean_cos, p["same"], [0.1])[0.1]["threshold"]
        assert m[f"tar@far1e-1_at_clean_threshold[{mode},16px]"] == pytest.approx(
            np.mean(np.sum(x * y, axis=1)[p["same"]] >= t))
    assert m["verification_accuracy[clean]"] == pytest.approx(
        vm.insightface_10fold(np.sum((c[p["a"]] - c[p["b"]]) ** 2, axis=1), p["same"], p["fold"])["accuracy_mean"])


def test_probe_side_changes_the_pairing():
    ds, clean, low = _pairs_fixture()
    ctx = EvalContext(ds, Predictions(ds.ids, {"features": clean}), None, (), n_resamples=0,
                      extras={"resolution:16": ExtraSplit(ds, Predictions(ds.ids, {"features": low}))})
    first, second = ({r.metric: r.value for r in ResolutionProtocol(inner="verification", sizes=[16], probe_side=s,
                                                                    modes=["probe_only"]).evaluate(ctx).records}
                     for s in ("first", "second"))
    # the first images carry 6x the noise of the second: degrading them costs more
    assert first["verification_accuracy[probe_only,16px]"] < second["verification_accuracy[probe_only,16px]"]


def test_no_face_images_are_counted_per_size():
    ds, clean, low = _pairs_fixture()
    found = np.ones(len(ds)), (np.arange(len(ds)) % 4 != 0).astype(float)
    ctx = EvalContext(ds, Predictions(ds.ids, {"features": clean, "face_detected": found[0]}), None, (),
                      n_resamples=0, extras={"resolution:8": ExtraSplit(ds, Predictions(ds.ids, {
                          "features": low, "face_detected": found[1]}))})
    details = ResolutionProtocol(inner="verification", sizes=[8]).evaluate(ctx).details
    assert details["no_face_images"] == {"clean": 0, "8px": len(ds) // 4}


def test_verification_run_on_lfw_layout_rescores_without_the_model(tmp_path, monkeypatch):
    faces = SynthFaces(n=12, seed=3).load("test")
    names = [("Ann", 4), ("Bob", 4), ("Cid", 4)]
    k = 0
    for name, count in names:
        for i in range(1, count + 1):
            path = tmp_path / "lfw" / "lfw" / name / f"{name}_{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(faces.images.load(k)).save(path)
            k += 1
    lines = ["2\t3", "Ann\t1\t2", "Bob\t1\t2", "Cid\t1\t2", "Ann\t1\tBob\t1", "Bob\t2\tCid\t3", "Cid\t4\tAnn\t3",
             "Ann\t3\t4", "Bob\t3\t4", "Cid\t3\t4", "Ann\t2\tCid\t1", "Bob\t4\tAnn\t4", "Cid\t2\tBob\t3"]
    (tmp_path / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    suite = tmp_path / "v.yaml"
    suite.write_text(f"""name: v
defaults: {{bootstrap: 0}}
tasks:
  - {{name: lfw-lr, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, protocol: resolution,
      params: {{inner: verification, sizes: [12, 24], far: 0.5}}}}
""")
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False, cache_dir=tmp_path / "store")
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    m = _values(out.results)
    assert 0 <= m["verification_accuracy[probe_only,12px]"] <= 1 and "verification_accuracy[both,24px]" in m
    assert out.results["tasks"][0]["details"]["pairing"]["probe_only"].startswith("the first image")

    def no_model(*args, **kwargs):
        raise AssertionError("rescore must not load a model")

    monkeypatch.setattr(runner, "make_model", no_model)
    assert _values(rescore_run(tmp_path / "o", log=lambda msg: None).results) == m


@pytest.mark.parametrize("params, match", [
    ({"sizes": [0, 8]}, "sizes must be"),
    ({"sizes": [8, 8]}, "sizes must be"),
    ({"sizes": []}, "sizes must be"),
    ({"modes": ["probe"]}, "modes must be"),
    ({"probe_side": "left"}, "probe_side must be one of"),
    ({"fraction": 0}, "fraction must lie in"),
    ({"fraction": 1.5}, "fraction must lie in"),
    ({"inner": "landmarks"}, "inner must be one of"),
    ({"inner": "verification", "inner_params": {"flip": True}}, "flip: false"),
])
def test_bad_params_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        ResolutionProtocol(**params)


def test_resolution_transform_options():
    assert parse_transform({"name": "resolution", "size": 16}) == {"name": "resolution", "size": 16}
    for bad, match in (({"name": "resolution"}, "needs `size`"), ({"name": "resolution", "size": 0}, ">= 1"),
                       ({"name": "resolution", "size": 8, "severity": 2}, "no option 'severity'")):
        with pytest.raises(ConfigError, match=match):
            parse_transform(bad)
