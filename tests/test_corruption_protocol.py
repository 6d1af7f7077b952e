"""corruption protocol: end to end on the embedded synth faces with synth-cnn, each variant's accuracy against a
hand computation (corrupt -> model -> argmax), mCE against the spec's golden vectors (4.1) through a reference run,
re-scoring without the model, and bad parameters as ConfigErrors."""

import json

import numpy as np
import pytest
import torch

from facebench import runner
from facebench.data.corruptions import corrupt, variant_seed
from facebench.data.preprocess import normalise_batch
from facebench.data.synthetic import SynthFaces
from facebench.data.transforms import parse_transform
from facebench.errors import ConfigError
from facebench.models.synth_cnn import SynthCNNAdapter
from facebench.protocols.corruption import CorruptionProtocol
from facebench.runner import rescore_run, run_suite

N = 48
CORRUPTIONS = ["gaussian_noise", "contrast"]


def _suite(tmp_path, name, params: dict):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""name: {name}
defaults: {{bootstrap: 20, seed: 1}}
tasks:
  - name: corr
    dataset: synth
    split: test
    dataset_args: {{n: {N}}}
    protocol: corruption
    params: {json.dumps(params)}
""")
    return path


def _run(tmp_path, name, params):
    out = run_suite(_suite(tmp_path, name, params), "synth-cnn", out=tmp_path / name, progress=False,
                    cache_dir=tmp_path / "store")
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    return out


def _values(results):
    return {r["metric"]: r["value"] for r in results["records"]}


def _hand_accuracy(corruption, severity, seed=0):
    """Accuracy of synth-cnn on the split corrupted by hand: corrupt() with variant_seed per sample index."""
    ds = SynthFaces(n=N).load("test")
    adapter = SynthCNNAdapter()
    images = np.stack([corrupt(ds.images.load(i), corruption, severity,
                               variant_seed(seed, i, corruption, severity)).image for i in range(len(ds))])
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        logits = adapter.predict(normalise_batch(batch, adapter.input_spec))["expression"].numpy()
    pred = np.asarray(adapter.heads["expression"].labels)[logits.argmax(1)]
    return float(np.mean(pred == ds.labels))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corr")
    return tmp, _run(tmp, "small", {"corruptions": CORRUPTIONS, "severities": [1, 4]})


def test_variant_accuracy_matches_a_hand_computation(small_run):
    _, out = small_run
    m = _values(out.results)
    for c in CORRUPTIONS:
        for s in (1, 4):
            assert m[f"accuracy[{c}@{s}]"] == pytest.approx(_hand_accuracy(c, s), abs=1e-12)
        assert m[f"accuracy[{c}]"] == pytest.approx((m[f"accuracy[{c}@1]"] + m[f"accuracy[{c}@4]"]) / 2)
    errors = [1 - m[f"accuracy[{c}@{s}]"] for c in CORRUPTIONS for s in (1, 4)]
    assert m["u-mce"] == pytest.approx(100 * np.mean(errors))  # over the severities evaluated (marked so)
    assert m["error[clean]"] == pytest.approx(1 - m["accuracy[clean]"])
    assert m["accuracy[gaussian_noise@4]"] < m["accuracy[clean]"]
    task = out.results["tasks"][0]
    assert set(task["extra_splits"]) == {f"corrupt:{c}@{s}" for c in CORRUPTIONS for s in (1, 4)}
    assert task["details"]["table"]["observed"] == {"48x48": "tiny-imagenet-c-64"}
    assert "CE and relative mCE need a reference" in task["details"]["reference"]["reason"]
    assert "mce[ref]" not in m
    rec = next(r for r in out.results["records"] if r["metric"] == "u-mce")
    assert "over the severities evaluated only" in rec["conventions"]["note"]


def test_variant_cis_on_by_default_and_off_on_request(small_run, tmp_path):
    """Each variant's accuracy carries the closed_set CI (task bootstrap) by default; ``variant_cis: false`` drops
    them and changes no value."""
    _, out = small_run
    variant = [r for r in out.results["records"] if "@" in r["metric"]]
    assert variant and all(r["ci"] is not None and r["ci"][0] <= r["value"] <= r["ci"][1] for r in variant)
    off = _run(tmp_path, "nocis", {"corruptions": CORRUPTIONS, "severities": [1, 4], "variant_cis": False})
    plain = [r for r in off.results["records"] if "@" in r["metric"]]
    assert all(r["ci"] is None for r in plain)
    assert [r["value"] for r in plain] == [r["value"] for r in variant]


def test_severity_figure_has_a_curve_per_corruption_from_clean(small_run, tmp_path):
    from facebench.report import figures as F

    _, out = small_run
    row = out.results["tasks"][0]
    with F.captured_figures() as figs:
        paths = F.task_figures(row, out.results["records"], tmp_path)
    assert [p.name for p in paths] == ["corr-severity_curves.png", "corr-severity_curves.pdf"]
    ax = figs[0].axes[0]
    m = _values(out.results)
    curves = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert sorted(curves) == sorted(CORRUPTIONS)
    for c in CORRUPTIONS:
        assert list(curves[c].get_xdata()) == [0, 1, 4]
        assert list(curves[c].get_ydata()) == pytest.approx([m["accuracy[clean]"], m[f"accuracy[{c}@1]"],
                                                             m[f"accuracy[{c}@4]"]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "4"]
    assert ax.get_xlabel() == "severity (0 = clean)"


def test_rescore_loads_no_model(small_run, monkeypatch):
    tmp, out = small_run

    def no_model(*args, **kwargs):
        raise AssertionError("rescore must not load a model")

    monkeypatch.setattr(runner, "make_model", no_model)
    again = rescore_run(tmp / "small", log=lambda m: None)
    assert _values(again.results) == _values(out.results)


def test_mce_against_a_reference_run_golden_vectors(tmp_path):
    """Spec 4.1: a model against itself -> every CE = 1, mCE = 100 %, relative mCE = 100 % (or excluded);
    against a flat reference (0.95 at every severity, clean 0.15) -> mCE and relative mCE as computed by hand."""
    five = {"corruptions": CORRUPTIONS, "severities": [1, 2, 3, 4, 5]}
    ref_run = _run(tmp_path, "ref", five)
    ref_file = tmp_path / "ref" / "results.json"
    m = _values(_run(tmp_path, "self", {**five, "reference": str(ref_file)}).results)
    assert m["mce[ref]"] == pytest.approx(100.0)
    assert all(m[f"ce[ref,{c}]"] == pytest.approx(1.0) for c in CORRUPTIONS)
    assert m["relative_mce[ref]"] is None or m["relative_mce[ref]"] == pytest.approx(100.0)
    doc = json.loads(ref_file.read_text())
    own = doc["tasks"][0]["details"]["errors"]
    doc["tasks"][0]["details"]["errors"] = {c: [0.95] * 5 for c in CORRUPTIONS}  # a flat reference, by hand:
    doc["tasks"][0]["details"]["clean_error"] = 0.15
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps(doc))
    out = _run(tmp_path, "flat", {**five, "reference": str(flat)})
    m = _values(out.results)
    clean = m["error[clean]"]
    assert m["mce[ref]"] == pytest.approx(100 * np.mean([np.mean(own[c]) / 0.95 for c in CORRUPTIONS]))
    assert m["relative_mce[ref]"] == pytest.approx(
        100 * np.mean([np.sum(np.array(own[c]) - clean) / (5 * (0.95 - 0.15)) for c in CORRUPTIONS]))
    rec = next(r for r in out.results["records"] if r["metric"] == "mce[ref]")
    assert "flat.json" in rec["conventions"]["reference"]
    assert ref_run.results["tasks"][0]["details"]["severities"] == [1, 2, 3, 4, 5]


def test_verification_inner_on_an_lfw_layout_fixture(tmp_path):
    """Both images of each pair corrupted; 10-fold accuracy and the accuracy at the clean pairs' thresholds."""
    from PIL import Image

    faces = SynthFaces(n=12, seed=3).load("test")
    for k, (name, i) in enumerate((n, i) for n in ("Ann", "Bob", "Cid") for i in range(1, 5)):
        path = tmp_path / "lfw" / "lfw" / name / f"{name}_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.images.load(k)).save(path)
    lines = ["2\t3", "Ann\t1\t2", "Bob\t1\t2", "Cid\t1\t2", "Ann\t1\tBob\t1", "Bob\t2\tCid\t3", "Cid\t4\tAnn\t3",
             "Ann\t3\t4", "Bob\t3\t4", "Cid\t3\t4", "Ann\t2\tCid\t1", "Bob\t4\tAnn\t4", "Cid\t2\tBob\t3"]
    (tmp_path / "lfw" / "pairs.txt").write_text("\n".join(lines) + "\n")
    suite = tmp_path / "v.yaml"
    suite.write_text(f"""name: v
defaults: {{bootstrap: 0}}
tasks:
  - {{name: lfw-c, dataset: lfw, split: test, path: {tmp_path / 'lfw'}, protocol: corruption,
      params: {{inner: verification, corruptions: [contrast], severities: [5], inner_params: {{far_targets: [0.5]}}}}}}
""")
    out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False, cache_dir=tmp_path / "store")
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    m = _values(out.results)
    assert 0 <= m["verification_accuracy[contrast@5]"] <= 1 and 0 <= m["accuracy_at_clean_threshold[contrast@5]"] <= 1
    assert m["verification_accuracy[clean]"] == pytest.approx(1 - m["error[clean]"])


def test_corruption_transform_is_seeded_per_sample_and_recorded():
    spec = parse_transform({"name": "imagenet_c.shot_noise", "severity": 2, "seed": 3})
    assert spec == {"name": "imagenet_c.shot_noise", "severity": 2, "seed": 3, "table": "auto"}
    from facebench.data.transforms import TransformedImages

    ds = SynthFaces(n=4).load("test")
    images = TransformedImages(ds.images, spec)
    by_hand = corrupt(ds.images.load(2), "shot_noise", 2, variant_seed(3, 2, "shot_noise", 2)).image
    assert np.array_equal(images.load(2), by_hand) and not np.array_equal(images.load(2), ds.images.load(2))
    assert images.subset([2]).load(0).tobytes() == by_hand.tobytes()  # the seed follows the sample, not the row


@pytest.mark.parametrize("params, match", [
    ({"corruptions": ["gaussian_nosie"]}, "corruptions has 'gaussian_nosie'"),
    ({"corruptions": []}, "non-empty list"),
    ({"severities": [1, 6]}, "severities has 6"),
    ({"severities": [2, 2]}, "twice"),
    ({"inner": "open_set"}, "inner must be one of"),
    ({"inner": "verification", "inner_params": {"flip": True}}, "flip: false"),
    ({"inner_params": {"ece_bin": 3}}, "no parameter 'ece_bin'"),
    ({"table": "imagenet"}, "table must be one of"),
    ({"seed": -1}, "seed must lie in"),
    ({"reference": "/nonexistent/results.json"}, "not a readable results.json"),
])
def test_bad_params_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        CorruptionProtocol(**params)


def test_bad_transform_options_are_config_errors():
    for bad, match in (({"name": "imagenet_c.fogg"}, "unknown corruption 'fogg'"),
                       ({"name": "imagenet_c.fog", "severity": 0}, "severity"),
                       ({"name": "imagenet_c.fog", "table": "big"}, "table must be"),
                       ({"name": "imagenet_c.fog", "size": 3}, "no option 'size'")):
        with pytest.raises(ConfigError, match=match):
            parse_transform(bad)
