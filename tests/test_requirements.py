"""Protocols declare their needs as data (``Requirements``); parameter types and ranges are checked
when a protocol is built; ``validate`` checks requirements against dataset capabilities and model heads
with no model loaded and no image read."""

import dataclasses
import re

import pytest

from facebench.errors import ConfigError
from facebench.records import CAPABILITIES, Requirements
from facebench.registry import PROTOCOLS


def test_every_protocol_declares_frozen_requirements():
    for name in PROTOCOLS.names():
        req = PROTOCOLS.get(name)().requirements()
        assert isinstance(req, Requirements), name
        assert req.capabilities() <= set(CAPABILITIES)
        with pytest.raises(dataclasses.FrozenInstanceError):
            req.features = True


def test_requirements_follow_the_parameters():
    verification = PROTOCOLS.get("verification")().requirements()
    assert verification.pairs and verification.features and not verification.head and not verification.labels
    assert PROTOCOLS.get("verification")().needs() == {"features": True, "head": False}  # the runner's view
    open_set = PROTOCOLS.get("open_set")
    assert open_set(score="knn").requirements().features and open_set(score="knn").requirements().fit_split
    assert not open_set().requirements().features
    assert open_set(unknowns=[{"dataset": "synth", "split": "test"}]).requirements().unknowns == "splits"
    assert open_set(unknown_classes=["contempt"]).requirements().unknowns == "classes"
    assert open_set(unknown_classes=[]).requirements().unknowns == "none"
    assert open_set(mode="leave_one_out").requirements().unknowns == "leave-one-out"
    fairness = PROTOCOLS.get("fairness")(by=["skin_tone"], target="gender").requirements()
    assert fairness.attributes and not fairness.labels and fairness.attribute_names == ("skin_tone", "gender")
    assert PROTOCOLS.get("age_estimation")().requirements().head_name == "age"
    assert PROTOCOLS.get("closed_set")(head="expression").requirements().head_name == "expression"


@pytest.mark.parametrize("protocol, params, message", [
    ("closed_set", {"ece_bins": "fifteen"}, "ece_bins must be an integer; got 'fifteen'"),
    ("closed_set", {"ece_bins": 0}, "ece_bins must lie in [1, inf]"),
    ("closed_set", {"ece_bins": True}, "ece_bins must be an integer"),
    ("open_set", {"tpr": 1.5}, "tpr must lie in [0, 1]"),
    ("open_set", {"temperature": "hot"}, "temperature must be a number"),
    ("verification", {"flip": "yes"}, "flip must be true or false"),
    ("verification", {"far_targets": 0.001}, "far_targets must be a list"),
    ("fairness", {"min_group_size": 0}, "min_group_size must lie in [1, inf]"),
    ("age_estimation", {"head": 3}, "head must be a string (or null)"),
])
def test_parameter_types_and_ranges_are_checked(protocol, params, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PROTOCOLS.get(protocol)(**params)


def test_well_typed_parameters_still_pass():
    PROTOCOLS.get("closed_set")(ece_bins=10)
    PROTOCOLS.get("open_set")(temperature=2)  # an int where a float is declared
    PROTOCOLS.get("fairness")(by="group", positive=None)  # a single attribute name is accepted, as before
    PROTOCOLS.get("age_estimation")(fixed_sigma=None, cs_threshold=5)


# -- dataset capabilities, declared as data ----------------------------------------------------------------
def test_every_builtin_loader_declares_capabilities():
    from facebench.registry import DATASETS

    for name in DATASETS.names():
        caps = DATASETS.get(name).capabilities
        assert caps is not None and caps <= set(CAPABILITIES), name
    assert "pairs" in DATASETS.get("lfw").capabilities and "pairs" in DATASETS.get("pairs-csv").capabilities
    assert "pairs" not in DATASETS.get("synth").capabilities
    assert "attributes" in DATASETS.get("utkface").capabilities and "labels" not in DATASETS.get("noise").capabilities


@pytest.mark.parametrize("name, args", [("synth", {"n": 20}), ("noise", {"n": 4})])
def test_generated_loaders_provide_what_they_declare(name, args):
    from facebench.registry import DATASETS

    loader = DATASETS.get(name)(**args)
    ds = loader.load("test")
    provided = {"labels": ds.labels is not None, "pairs": ds.pairs is not None, "attributes": bool(ds.attributes)}
    assert {k for k, v in provided.items() if v} == set(loader.capabilities)


# -- validate: requirements against capabilities and heads, nothing loaded ----------------------------------
def _suite(tmp_path, task: str, name="s.yaml"):
    path = tmp_path / name
    path.write_text("name: s\ntasks:\n" + task)
    return path


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fails the test if a split is loaded (images rendered/read) or a model is built."""
    import facebench.runner
    from facebench.data.synthetic import SynthFaces

    def boom(*a, **k):
        raise AssertionError("loaded something before validation failed")

    monkeypatch.setattr(SynthFaces, "load", boom)
    monkeypatch.setattr(facebench.runner, "make_model", boom)


VERIFICATION_ON_SYNTH = ("  - {name: v, dataset: synth, split: test, protocol: verification}\n")


def test_validate_rejects_verification_on_a_dataset_without_pairs(tmp_path, nothing_loaded):
    from facebench.errors import SuiteError
    from facebench.suite import validate_suite

    with pytest.raises(SuiteError) as err:
        validate_suite(_suite(tmp_path, VERIFICATION_ON_SYNTH))
    text = str(err.value)
    assert "needs pairs, which dataset 'synth' does not provide" in text
    assert "Datasets that provide pairs: lfw, pairs-csv, rfw." in text  # where to look instead


def test_run_validates_requirements_before_the_model_loads(tmp_path, nothing_loaded):
    from facebench.runner import run_suite

    with pytest.raises(ConfigError, match="needs pairs"):
        run_suite(_suite(tmp_path, VERIFICATION_ON_SYNTH), "synth-cnn", out=tmp_path / "out",
                  cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    assert not (tmp_path / "out" / "results.json").exists()


def test_validate_rejects_an_open_set_protocol_without_unknowns(tmp_path, nothing_loaded):
    from facebench.errors import SuiteError
    from facebench.suite import validate_suite

    task = "  - {name: o, dataset: synth, split: test, protocol: open_set, params: {unknown_classes: []}}\n"
    with pytest.raises(SuiteError, match="has no unknown samples"):
        validate_suite(_suite(tmp_path, task))
    fine = ("  - {name: o, dataset: synth, split: test, protocol: open_set,\n"
            "     params: {unknowns: [{dataset: synth, split: test, dataset_args: {classes: compound}}]}}\n")
    validate_suite(_suite(tmp_path, fine, "fine.yaml"))


def test_validate_rejects_a_parameter_of_the_wrong_type(tmp_path, nothing_loaded):
    from facebench.errors import SuiteError
    from facebench.suite import validate_suite

    task = "  - {name: c, dataset: synth, split: test, protocol: closed_set, params: {ece_bins: fifteen}}\n"
    with pytest.raises(SuiteError, match="ece_bins must be an integer; got 'fifteen'"):
        validate_suite(_suite(tmp_path, task))


def test_validate_with_a_model_rejects_a_head_it_does_not_have(tmp_path, nothing_loaded, capsys):
    from facebench.cli import main
    from facebench.errors import SuiteError
    from facebench.suite import validate_suite

    task = "  - {name: c, dataset: synth, split: test, protocol: closed_set, params: {head: expresion}}\n"
    path = _suite(tmp_path, task)
    wrong = "reads head 'expresion', which the model does not have. Did you mean \"expression\""
    with pytest.raises(SuiteError, match=wrong):
        validate_suite(path, model="synth-cnn")
    with pytest.raises(SuiteError, match="declares none"):  # an embedding-only model has no head to read
        validate_suite(path, model="dlib-resnet")
    assert main(["validate", str(path), "--model", "synth-cnn"]) != 0
    assert "expresion" in capsys.readouterr().err
    good = _suite(tmp_path, task.replace("expresion", "expression"), "good.yaml")
    assert main(["validate", str(good), "--model", "synth-cnn"]) == 0
    # a model whose heads are known only once built: the head check is skipped, and said so
    _, notes = validate_suite(good, model="onnx")
    assert any("head check is left to `run`" in n for n in notes)


def test_a_loader_without_declared_capabilities_is_noted_not_rejected(tmp_path):
    from facebench.data.synthetic import SynthFaces
    from facebench.suite import Task, check_requirements

    class Undeclared(SynthFaces):
        capabilities = None

    task = Task(name="v", dataset="mine", split="test", protocol="verification")
    notes = check_requirements(task, PROTOCOLS.get("verification")(), Undeclared())
    assert notes and "declares no capabilities" in notes[0]
    with pytest.raises(ConfigError, match="needs pairs"):
        check_requirements(task, PROTOCOLS.get("verification")(), SynthFaces())
