"""The adversarial protocol end to end on the embedded synthetic faces with synth-cnn: values against direct calls
of engine.attacks / engine.uap / metrics.fooling on the same inputs, re-scoring without a model, refusal of a
model without gradients before anything runs, and bad attack specs as ConfigErrors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from facebench.data.attack_spec import budget, parse_attack
from facebench.errors import ConfigError, ModelError
from facebench.runner import make_model, rescore_run, run_suite

N = 16
SUITE = {
    "name": "adv-test",
    "defaults": {"bootstrap": 20, "device": "cpu", "seed": 0},
    "tasks": [
        {"name": "pgd", "dataset": "synth", "split": "test", "dataset_args": {"n": N}, "protocol": "adversarial",
         "params": {"eps": ["2/255"], "steps": 3}},
        {"name": "pgd-transfer", "dataset": "synth", "split": "test", "dataset_args": {"n": N},
         "protocol": "adversarial", "params": {"eps": ["2/255"], "steps": 3, "surrogate": "synth-cnn"}},
        {"name": "uap", "dataset": "synth", "split": "test", "dataset_args": {"n": N}, "protocol": "adversarial",
         "params": {"attack": "uap", "eps": ["10/255"], "fit": {"split": "train", "dataset_args": {"n": N}},
                    "epochs": 2}},
    ],
}


def _write(tmp: Path, suite: dict) -> Path:
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def _records(results: dict, task: str) -> dict:
    return {r["metric"]: r for r in results["records"] if r["task"] == task}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adv")
    out = run_suite(_write(tmp, SUITE), model="synth-cnn", out=tmp / "run", cache_dir=tmp / "cache",
                    progress=False, log=lambda m: None)
    return tmp, out


def _pixels(split: str, adapter):
    from facebench.pipeline.attack_stage import uint8_batches
    from facebench.registry import DATASETS

    ds = DATASETS.get("synth")(n=N).load(split)
    return ds, torch.cat(list(uint8_batches(ds, adapter.input_spec, 256))).float() / 255.0


def _labels(ds, adapter, head: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(adapter.heads[head].labels)}
    return np.array([index[c] for c in ds.labels.tolist()])


def test_pgd_matches_direct_attack(finished):
    """robust accuracy, attack success and fooling rate equal engine.attacks.pgd + metrics.fooling on the same faces."""
    from facebench.engine.attacks import adapter_function, cross_entropy_objective, pgd
    from facebench.metrics import fooling

    _, out = finished
    adapter = make_model("synth-cnn", {})
    head = adapter.default_head
    ds, x = _pixels("test", adapter)
    fn = adapter_function(adapter, head)
    y = _labels(ds, adapter, head)
    seed = int(np.random.SeedSequence([0, 0]).generate_state(1)[0])  # one chunk (attack_batch_size 128 > N)
    x_adv = pgd(cross_entropy_objective(fn, torch.from_numpy(y)), x, eps=2 / 255, alpha=0.5 / 255, steps=3, seed=seed)
    with torch.no_grad():
        clean, adv = fn(x).argmax(1).numpy(), fn(x_adv).argmax(1).numpy()
    rec = _records(out.results, "pgd")
    assert rec["clean_accuracy"]["value"] == pytest.approx(np.mean(clean == y))
    assert rec["robust_accuracy[eps=2/255]"]["value"] == pytest.approx(fooling.robust_accuracy(y, adv).value)
    success = fooling.attack_success_rate(y, clean, adv)
    assert rec["attack_success_rate[eps=2/255]"]["value"] == pytest.approx(success.value)
    assert rec["attack_success_rate[eps=2/255]"]["n"] == success.denominator
    assert rec["fooling_rate[eps=2/255]"]["value"] == pytest.approx(fooling.fooling_rate(clean, adv).value)
    assert rec["robust_accuracy[eps=2/255]"]["value"] < rec["clean_accuracy"]["value"]  # the attack does something
    assert rec["attack_success_rate[eps=2/255]"]["conventions"]["denominator"] == "clean-correct samples"


def test_uap_matches_direct_sga_and_is_cached(finished):
    """The stored perturbation equals engine.uap.sga_uap on the fit faces; its fooling rate and adversarial error
    equal a direct evaluation on the test faces."""
    from facebench.engine.attacks import adapter_function
    from facebench.engine.uap import clean_label_objective, predict_labels, sga_uap
    from facebench.metrics import fooling

    tmp, out = finished
    adapter = make_model("synth-cnn", {})
    head = adapter.default_head
    fn = adapter_function(adapter, head)
    _, x_fit = _pixels("train", adapter)
    direct = sga_uap(clean_label_objective(fn, x_fit, "clamped_ce", 9.0, 128), x_fit, eps=10 / 255, epochs=2, seed=0)
    [folder] = [p for p in (tmp / "cache" / "attacks").iterdir() if (p / "perturbation.npy").is_file()]
    v = torch.from_numpy(np.load(folder / "perturbation.npy"))
    assert torch.equal(v, direct.perturbation.float())
    assert float(v.abs().max()) <= 10 / 255 + 1e-7
    ds, x = _pixels("test", adapter)
    y = _labels(ds, adapter, head)
    clean, adv = predict_labels(fn, x), predict_labels(fn, x, v)
    rec = _records(out.results, "uap")
    assert rec["fooling_rate[eps=10/255]"]["value"] == pytest.approx(fooling.fooling_rate(clean, adv).value)
    assert rec["adversarial_error[eps=10/255]"]["value"] == pytest.approx(fooling.adversarial_error(y, adv).value)
    assert rec["fooling_rate[eps=10/255]"]["headline"] and not rec["robust_accuracy[eps=10/255]"]["headline"]
    details = next(t for t in out.results["tasks"] if t["name"] == "uap")["details"]
    picture = np.asarray(details["uap"]["10/255"]["picture"])
    assert picture.shape[:2] == tuple(adapter.input_spec.size) and picture.dtype.kind == "i"


def test_rescore_loads_no_model(finished, monkeypatch):
    """`facebench rescore` gives the same records with model building made impossible."""
    from facebench import registry

    tmp, out = finished

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built during rescore")

    class Forbidden:  # what the registry hands out: a model class that cannot be built
        differentiable = True
        __init__ = no_model

    monkeypatch.setattr(registry.MODELS, "get", lambda name: Forbidden)
    monkeypatch.setattr("facebench.runner.make_model", no_model)
    again = rescore_run(out.out_dir, out=tmp / "rescored", force=True, log=lambda m: None)
    values = lambda res: {(r["task"], r["metric"]): r["value"] for r in res["records"]}  # noqa: E731
    assert values(again.results) == values(out.results)


def test_transfer_from_a_surrogate(finished):
    """A surrogate that is the model itself gives the white-box numbers, under its own store entry; the
    surrogate's fingerprint is kept in a pointer file for rescoring."""
    tmp, out = finished
    white, transfer = _records(out.results, "pgd"), _records(out.results, "pgd-transfer")
    assert {k: v["value"] for k, v in white.items()} == {k: v["value"] for k, v in transfer.items()}
    assert transfer["robust_accuracy[eps=2/255]"]["conventions"]["surrogate"] == "synth-cnn"
    keys = json.loads((out.out_dir / "manifest.json").read_text())["store_keys"]
    assert keys["pgd:extra"]["adv:2/255"] != keys["pgd-transfer:extra"]["adv:2/255"]
    assert len(list((tmp / "cache" / "attacks" / "pointers").glob("*.json"))) == 1


def test_stored_model_without_attacked_predictions_is_told_what_to_run(finished, tmp_path):
    from facebench.models.stored import StoredModel

    _, out = finished
    suite = {**SUITE, "tasks": [{**SUITE["tasks"][0], "params": {"eps": ["4/255"], "steps": 3}}]}
    with pytest.raises(ModelError, match="facebench run"):
        run_suite(_write(tmp_path, suite), adapter=StoredModel(out.results["model"]), out=tmp_path / "run",
                  cache_dir=tmp_path / "empty-cache", progress=False, log=lambda m: None)


def test_model_without_gradients_is_refused_before_anything_runs(tmp_path):
    """The released-predictions adapter has no gradients: refused in the plan step, nothing predicted or stored."""
    from facebench.models.generic import PredictionsAdapter
    from facebench.registry import DATASETS

    ds = DATASETS.get("synth")(n=N).load("test")
    np.savez(tmp_path / "p.npz", ids=ds.ids, logits=np.zeros((N, len(ds.classes))), classes=np.array(ds.classes))
    adapter = PredictionsAdapter(file=str(tmp_path / "p.npz"))
    suite = {**SUITE, "tasks": SUITE["tasks"][:1]}
    with pytest.raises(ConfigError, match="not differentiable"):
        run_suite(_write(tmp_path, suite), adapter=adapter, out=tmp_path / "run", cache_dir=tmp_path / "cache",
                  progress=False, log=lambda m: None)
    assert not (tmp_path / "cache" / "predictions").exists()


def test_validate_refuses_a_model_without_gradients(tmp_path):
    from facebench.suite import validate_suite

    path = _write(tmp_path, {**SUITE, "tasks": SUITE["tasks"][:1]})
    with pytest.raises(Exception, match="not differentiable"):
        validate_suite(path, model="cydral-gender")
    validate_suite(path, model="synth-cnn")  # a differentiable model passes


@pytest.mark.parametrize("spec, message", [
    ({"kind": "pdg"}, "kind"),
    ({"kind": "pgd", "epsilon": 0.1}, "no option 'epsilon'"),
    ({"kind": "pgd", "eps": "3/256"}, "k/255"),
    ({"kind": "pgd", "eps": -0.1}, ">= 0"),
    ({"kind": "pgd", "steps": 0}, "steps"),
    ({"kind": "pgd", "norm": "l1"}, "norm"),
    ({"kind": "pgd", "random_start": "yes"}, "random_start"),
    ({"kind": "fgsm", "labels": "gt"}, "labels"),
    ({"kind": "uap"}, "fit"),
    ({"kind": "uap", "fit": {"dataset": "synth", "split": "train", "limt": 3}}, "limt"),
    ({"kind": "uap", "method": "sga", "norm": "l2", "fit": {"dataset": "synth", "split": "train"}}, "norm"),
    ({"kind": "pgd", "surrogate": {"name": "x"}}, "surrogate"),
    ({"kind": "uap", "fit": {"dataset": "synth", "split": "train"}, "sga_batch_size": 0}, "sga_batch_size"),
    ({"kind": "uap", "method": "deepfool", "fit": {"dataset": "synth", "split": "train"}, "epochs": 2}, "epochs"),
])
def test_bad_attack_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_attack(spec)


def test_bad_protocol_parameters_and_surrogates(tmp_path):
    from facebench.pipeline.attack_stage import check_attack_models
    from facebench.registry import PROTOCOLS

    protocol = PROTOCOLS.get("adversarial")
    with pytest.raises(ConfigError, match="eps"):
        protocol(eps=[])
    with pytest.raises(ConfigError, match="fit"):
        protocol(attack="uap")
    with pytest.raises(ConfigError, match="not a registered model"):
        check_attack_models(parse_attack({"kind": "pgd", "surrogate": "synth-cnnn"}))
    with pytest.raises(ConfigError, match="not differentiable"):
        check_attack_models(parse_attack({"kind": "pgd", "surrogate": "sface"}))
    assert budget("8/255", "eps") == pytest.approx(8 / 255)
    spec = parse_attack({"kind": "pgd", "eps": "8/255"})
    assert spec["step_size"] == pytest.approx(2 / 255) and spec["steps"] == 10 and spec["random_start"]


def test_attacked_split_has_its_own_store_entry(finished):
    """Clean and attacked predictions live under different keys; the attacked entry's meta names the attack."""
    tmp, out = finished
    keys = json.loads((out.out_dir / "manifest.json").read_text())["store_keys"]
    clean, extra = keys["pgd"], keys["pgd:extra"]["adv:2/255"]
    assert clean != extra
    meta = json.loads((tmp / "cache" / "predictions" / extra / "meta.json").read_text())
    assert meta["attack"]["kind"] == "pgd" and meta["attack"]["n"] == N


def test_figures_budget_curve_and_perturbation(finished, tmp_path):
    """Metric vs budget for every attack; the universal perturbation as an image for uap."""
    from _task_figures import drawn_figures

    _, out = finished
    drawn = drawn_figures(out.results, tmp_path)
    assert drawn["pgd"] == ["pgd-budget_curve.png", "pgd-budget_curve.pdf"]
    assert drawn["uap"] == ["uap-budget_curve.png", "uap-budget_curve.pdf", "uap-perturbation.png",
                            "uap-perturbation.pdf"]
    from facebench.report import figures as F

    row = next(t for t in out.results["tasks"] if t["name"] == "uap")
    with F.captured_figures() as figs:
        F.task_figures(row, [r for r in out.results["records"] if r["task"] == "uap"], tmp_path / "content")
    curve, picture = figs
    labels = [t.get_text() for t in curve.axes[0].get_legend().get_texts()]
    assert labels == ["robust accuracy (all)", "attack success (clean-correct)", "fooling rate (prediction change)",
                      "clean accuracy"]
    [panel] = picture.axes
    assert panel.get_title().startswith("sga eps 10/255") and len(panel.get_images()) == 1
    assert panel.get_images()[0].get_array().shape[:2] == tuple(np.asarray(row["details"]["uap"]["10/255"]["picture"]).shape[:2])


def test_requires_names_one_attacked_split_per_budget():
    """L-inf budgets are named k/255, L2 radii by their number; a uap also reads its fit split (labels only)."""
    from facebench.registry import PROTOCOLS
    from facebench.suite import Task

    task = Task.of("t", "synth", "adversarial", dataset_args={"n": 8})
    linf = PROTOCOLS.get("adversarial")(eps=["8/255", 0.00392156862745098]).requires(task)
    assert sorted(linf) == ["adv:1/255", "adv:8/255"]
    assert linf["adv:8/255"].dataset_args == {"n": 8, "attack": {"kind": "pgd", "eps": 8 / 255, "norm": "linf",
                                                                 "seed": 0, "batch_size": 128, "labels": "true",
                                                                 "random_start": True, "rows": "samples"}}
    l2 = PROTOCOLS.get("adversarial")(attack="fgsm", norm="l2", eps=[0.5, 1.0]).requires(task)
    assert sorted(l2) == ["adv:0.5", "adv:1"]
    uap = PROTOCOLS.get("adversarial")(attack="uap", eps=["10/255"], fit="train").requires(task)
    assert sorted(uap) == ["adv:10/255", "uap_fit"]
    fit = uap["uap_fit"]
    assert (fit.dataset, fit.split, fit.dataset_args, fit.predictions) == ("synth", "train", {"n": 8}, False)
