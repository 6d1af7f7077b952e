"""The adversarial protocol on verification pairs (dodging / impersonation, spec robustness.md 3.4), end to end on an
LFW-layout fixture of synthetic faces with synth-cnn's features: values against a hand computation (engine.attacks.pgd
with a per-pair cosine loss written here, a brute-force best-accuracy threshold, counts by hand), the universal
perturbation against engine.uap.sga_uap on the fit split's genuine pairs, transfer, re-scoring without a model and
bad configurations as ConfigErrors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from facebench import runner
from facebench.data.synthetic import SynthFaces
from facebench.errors import ConfigError
from facebench.runner import make_model, rescore_run, run_suite

NAMES = [("Ann", 4), ("Bob", 4), ("Cid", 4), ("Dee", 4)]
# 2 folds of 4 genuine + 4 impostor pairs (pairs.txt View 2 layout: header "folds<TAB>per-fold count")
PAIRS = ["2\t4",
         "Ann\t1\t2", "Bob\t1\t2", "Cid\t1\t2", "Dee\t1\t2",
         "Ann\t1\tBob\t1", "Bob\t2\tCid\t3", "Cid\t4\tAnn\t3", "Dee\t1\tAnn\t2",
         "Ann\t3\t4", "Bob\t3\t4", "Cid\t3\t4", "Dee\t3\t4",
         "Ann\t2\tCid\t1", "Bob\t4\tAnn\t4", "Cid\t2\tBob\t3", "Dee\t4\tCid\t4"]
PGD = {"eps": ["4/255"], "steps": 3, "attack_batch_size": 5}


def _lfw(root):
    faces = SynthFaces(n=16, seed=5).load("test")
    k = 0
    for name, count in NAMES:
        for i in range(1, count + 1):
            path = root / "lfw" / name / f"{name}_{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(faces.images.load(k)).save(path, quality=95)
            k += 1
    (root / "pairs.txt").write_text("\n".join(PAIRS) + "\n")
    return root


def _suite(root) -> dict:
    task = {"dataset": "lfw", "split": "test", "path": str(root), "protocol": "adversarial"}
    return {"name": "adv-pairs", "defaults": {"bootstrap": 20, "device": "cpu", "seed": 0},
            "tasks": [
                {**task, "name": "pgd", "params": {"inner": "verification", **PGD}},
                {**task, "name": "pgd-transfer", "params": {"inner": "verification", **PGD, "surrogate": "synth-cnn"}},
                {**task, "name": "uap", "params": {"inner": "verification", "attack": "uap", "eps": ["10/255"],
                                                    "fit": {"split": "test", "dataset_args": {"folds": [1]}},
                                                    "epochs": 2, "sga_batch_size": 2}},
            ]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("advpairs")
    root = _lfw(tmp / "lfwdata")
    suite = tmp / "suite.yaml"
    suite.write_text(yaml.safe_dump(_suite(root), sort_keys=False))
    out = run_suite(suite, model="synth-cnn", out=tmp / "run", cache_dir=tmp / "cache", progress=False,
                    log=lambda m: None)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    return tmp, root, out


def _records(results: dict, task: str) -> dict:
    return {r["metric"]: r for r in results["records"] if r["task"] == task}


def _pairs_and_pixels(root, adapter, folds=None):
    from facebench.pipeline.attack_stage import uint8_batches
    from facebench.registry import DATASETS

    ds = DATASETS.get("lfw")(path=root, **({} if folds is None else {"folds": folds})).load("test")
    x = torch.cat(list(uint8_batches(ds, adapter.input_spec, 256))).float() / 255.0
    return ds, x


def _unit(t: torch.Tensor) -> np.ndarray:
    a = t.detach().double().numpy()
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _best_threshold(cos: np.ndarray, same: np.ndarray) -> float:
    """Brute force: every pair's score and +inf as a candidate, highest threshold among the best."""
    cands = sorted(set(cos.tolist()) | {np.inf}, reverse=True)
    accs = [np.mean((cos >= t) == same) for t in cands]
    return cands[int(np.argmax(accs))]


def test_pgd_dodging_and_impersonation_match_a_hand_computation(finished):
    from facebench.engine.attacks import adapter_function, pgd

    _, root, out = finished
    adapter = make_model("synth-cnn", {})
    ds, x = _pairs_and_pixels(root, adapter)
    embed = adapter_function(adapter, features=True)
    a, b, same = ds.pairs["a"], ds.pairs["b"], ds.pairs["same"].astype(bool)
    with torch.no_grad():
        feats = embed(x)
    emb = _unit(feats)
    clean_cos = np.sum(emb[a] * emb[b], axis=1)
    probes = x[torch.from_numpy(a)]
    adv = []
    for start in range(0, len(a), 5):  # attack_batch_size 5: each chunk seeded (seed, first pair index)
        stop = min(start + 5, len(a))
        ref, genuine = feats[b[start:stop]], torch.from_numpy(same[start:stop])

        def loss(z, ref=ref, genuine=genuine):
            cos = F.cosine_similarity(embed(z), ref, dim=1)
            return torch.where(genuine, -cos, cos)

        seed = int(np.random.SeedSequence([0, start]).generate_state(1)[0])
        adv.append(pgd(loss, probes[start:stop], eps=4 / 255, alpha=1 / 255, steps=3, seed=seed))
    with torch.no_grad():
        adv_cos = np.sum(_unit(embed(torch.cat(adv))) * emb[b], axis=1)
    tau = _best_threshold(clean_cos, same)
    clean_in, adv_in = clean_cos >= tau, adv_cos >= tau
    rec = _records(out.results, "pgd")
    assert rec["clean_verification_accuracy"]["value"] == pytest.approx(np.mean(clean_in == same))
    assert rec["clean_verification_accuracy"]["conventions"]["tau"] == pytest.approx(tau)
    assert rec["verification_accuracy[eps=4/255]"]["value"] == pytest.approx(np.mean(adv_in == same))
    dodge = rec["dodging_fooling_rate[eps=4/255]"]
    assert dodge["value"] == pytest.approx((same & clean_in & ~adv_in).sum() / (same & clean_in).sum())
    assert dodge["n"] == (same & clean_in).sum()
    imp = rec["impersonation_fooling_rate[eps=4/255]"]
    eligible = ~same & ~clean_in
    expected = (eligible & adv_in).sum() / eligible.sum() if eligible.any() else np.nan
    assert imp["value"] == pytest.approx(expected, nan_ok=True)
    # the attack moves every probe the way its pair's goal asks
    assert np.all(adv_cos[same] < clean_cos[same]) and np.all(adv_cos[~same] > clean_cos[~same])
    assert rec["verification_accuracy[eps=4/255]"]["headline"] and rec["clean_verification_accuracy"]["headline"]


def test_transfer_from_the_same_model_equals_white_box(finished):
    _, _, out = finished
    white, transfer = _records(out.results, "pgd"), _records(out.results, "pgd-transfer")
    assert {k: v["value"] for k, v in white.items()} == {k: v["value"] for k, v in transfer.items()}
    assert transfer["verification_accuracy[eps=4/255]"]["conventions"]["surrogate"] == "synth-cnn"


def test_universal_dodging_perturbation_matches_sga_on_the_fit_pairs(finished):
    from facebench.engine.attacks import adapter_function
    from facebench.engine.uap import embed, reference_objective, sga_uap

    tmp, root, out = finished
    adapter = make_model("synth-cnn", {})
    fn = adapter_function(adapter, features=True)
    fit, x_fit = _pairs_and_pixels(root, adapter, folds=[1])
    genuine = fit.pairs["same"].astype(bool)
    fa, fb = fit.pairs["a"][genuine], fit.pairs["b"][genuine]
    with torch.no_grad():
        refs = fn(x_fit[torch.from_numpy(fb)])
    direct = sga_uap(reference_objective(fn, refs, "dodging"), x_fit[torch.from_numpy(fa)], eps=10 / 255, epochs=2,
                     batch_size=2, seed=0)
    saved = [p for p in (tmp / "cache" / "attacks").iterdir() if (p / "perturbation.npy").is_file()]
    assert len(saved) == 1
    v = torch.from_numpy(np.load(saved[0] / "perturbation.npy"))
    assert torch.allclose(v, direct.perturbation.float(), atol=1e-7)
    assert float(v.abs().max()) <= 10 / 255 + 1e-7
    ds, x = _pairs_and_pixels(root, adapter)
    a, b, same = ds.pairs["a"], ds.pairs["b"], ds.pairs["same"].astype(bool)
    clean = embed(fn, x)
    emb = clean / np.linalg.norm(clean, axis=1, keepdims=True)
    adv = embed(fn, x[torch.from_numpy(a)], v)
    adv_cos = np.sum(adv / np.linalg.norm(adv, axis=1, keepdims=True) * emb[b], axis=1)
    clean_cos = np.sum(emb[a] * emb[b], axis=1)
    tau = _best_threshold(clean_cos, same)
    rec = _records(out.results, "uap")
    eligible = same & (clean_cos >= tau)
    dodge = rec["dodging_fooling_rate[eps=10/255]"]
    assert dodge["value"] == pytest.approx((eligible & (adv_cos < tau)).sum() / eligible.sum(), abs=1e-9)
    assert dodge["headline"] and not rec["verification_accuracy[eps=10/255]"]["headline"]
    details = next(t for t in out.results["tasks"] if t["name"] == "uap")["details"]
    assert details["uap"]["10/255"]["fit"]["goal"] == "dodging"
    assert details["uap"]["10/255"]["fit"]["pairs"] == int(genuine.sum())  # the goal's pairs only


def test_rescore_loads_no_model(finished, monkeypatch):
    tmp, _, out = finished

    def no_model(*args, **kwargs):
        raise AssertionError("rescore must not load a model")

    monkeypatch.setattr(runner, "make_model", no_model)
    again = rescore_run(tmp / "run", log=lambda msg: None)
    assert {(r["task"], r["metric"]): r["value"] for r in again.results["records"]} == \
        {(r["task"], r["metric"]): r["value"] for r in out.results["records"]}


def test_figures_show_the_verification_curve_and_the_perturbation(finished, tmp_path):
    from _task_figures import drawn_figures

    _, _, out = finished
    drawn = drawn_figures(out.results, tmp_path)
    assert drawn["pgd"] == ["pgd-budget_curve.png", "pgd-budget_curve.pdf"]
    assert drawn["uap"] == ["uap-budget_curve.png", "uap-budget_curve.pdf", "uap-perturbation.png",
                            "uap-perturbation.pdf"]
    row = next(t for t in out.results["tasks"] if t["name"] == "pgd")
    assert set(row["details"]["curve"]) == {"eps_255", "clean_accuracy", "verification_accuracy",
                                            "dodging_fooling_rate", "impersonation_fooling_rate"}
    from facebench.report import figures as F

    with F.captured_figures() as figs:
        F.task_figures(row, [r for r in out.results["records"] if r["task"] == "pgd"], tmp_path / "content")
    ax = figs[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "accuracy at clean threshold", "dodging (genuine pairs)", "impersonation (impostor pairs)", "clean accuracy"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("budget eps (x/255, L-inf or L2)", "fraction of pairs")


def test_deepfool_is_refused_for_pairs():
    from facebench.protocols.adversarial import AdversarialProtocol

    with pytest.raises(ConfigError, match="fitted with method: sga"):
        AdversarialProtocol(inner="verification", attack="uap", method="deepfool", eps=["4/255"],
                            fit={"split": "train"})


def test_a_split_without_pairs_is_refused_before_the_model_runs(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "x", "defaults": {"device": "cpu", "bootstrap": 0}, "tasks": [
        {"name": "nopairs", "dataset": "synth", "split": "test", "dataset_args": {"n": 8}, "protocol": "adversarial",
         "params": {"inner": "verification", "eps": ["2/255"], "steps": 1}}]}))
    with pytest.raises(ConfigError, match="needs pairs, which dataset 'synth' does not provide"):
        run_suite(suite, model="synth-cnn", out=tmp_path / "o", cache_dir=tmp_path / "c", progress=False,
                  log=lambda m: None)
    assert not (tmp_path / "c").exists()  # refused at plan time: nothing predicted


def _pairs_context(same: np.ndarray, attacked_pairs: dict | None = None):
    """An EvalContext of 2 * len(same) images in pairs (2i, 2i + 1) with random features, and one attacked split."""
    from facebench.data.attack_spec import pair_ids
    from facebench.data.dataset import Dataset
    from facebench.data.images import ArrayImages
    from facebench.engine.store import Predictions
    from facebench.protocols.base import EvalContext, ExtraSplit

    m = len(same)
    rng = np.random.default_rng(0)
    pairs = {"a": np.arange(0, 2 * m, 2), "b": np.arange(1, 2 * m, 2), "same": same, "fold": np.ones(m, int)}
    ds = Dataset("toy", "test", [f"i{k}" for k in range(2 * m)], (), None,
                 ArrayImages(np.zeros((2 * m, 2, 2, 3), np.uint8)), pairs=pairs)
    attacked = ds if attacked_pairs is None else Dataset(ds.name, ds.split, ds.ids, (), None, ds.images,
                                                         pairs=attacked_pairs)
    clean = Predictions(ds.ids, {"features": rng.normal(size=(2 * m, 4))})
    adv = Predictions(pair_ids(ds), {"features": rng.normal(size=(m, 4))})
    return EvalContext(dataset=ds, predictions=clean, head=None, head_labels=(), seed=0, n_resamples=10,
                       confidence=0.95, extras={"adv:2/255": ExtraSplit(attacked, adv)})


def test_pairs_of_one_kind_give_nan_for_the_other_rate_and_other_pairs_are_refused():
    from facebench.errors import MetricInputError
    from facebench.protocols.adversarial import AdversarialProtocol

    protocol = AdversarialProtocol(inner="verification", eps=["2/255"])
    result = protocol.evaluate(_pairs_context(np.ones(6, bool)))  # genuine pairs only
    rec = {r.metric: r for r in result.records}
    assert np.isnan(rec["impersonation_fooling_rate[eps=2/255]"].value)
    assert rec["impersonation_fooling_rate[eps=2/255]"].n == 0
    assert 0 <= rec["dodging_fooling_rate[eps=2/255]"].value <= 1
    other = {"a": np.arange(0, 12, 2)[::-1].copy(), "b": np.arange(1, 12, 2), "same": np.ones(6, bool),
             "fold": np.ones(6, int)}
    with pytest.raises(MetricInputError, match="not the clean split's pairs"):
        protocol.evaluate(_pairs_context(np.ones(6, bool), attacked_pairs=other))
