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


PERTURBED = {"n": 300, "transform": {"name": "gaussian_noise", "severity": 5},
             "attack": {"kind": "fgsm", "eps": 0.01}}


@pytest.mark.parametrize("protocol, params, role", [
    ("open_set", {"mode": "leave_one_out", "score": "mahalanobis", "fit_split": "train"}, "fit"),
    ("label_free", {"detectors": ["mahalanobis"], "fit_split": {"split": "val"}}, "fit"),
    ("imbalanced", {"train_split": "train"}, "train"),
    ("ood_estimate", {"reference": {"dataset": "synth", "split": "val"}}, "reference"),
])
def test_a_split_on_the_tasks_dataset_is_clean_unless_it_names_its_own_args(protocol, params, role):
    """A fit split or reference on the task's dataset takes the task's path and dataset_args but not the
    perturbations of its test data (a detector fitted on noisy training data, or a noisy reference, hides the
    shift under test); a split that names dataset_args gets exactly those."""
    from facebench.suite import Task

    task = Task.of("t", "synth", protocol, dataset_args=PERTURBED, path="faces")
    ref = PROTOCOLS.get(protocol)(**params).requires(task)[role]
    assert (ref.dataset, ref.path, ref.dataset_args) == ("synth", "faces", {"n": 300})
    own = {"dataset_args": PERTURBED} if role != "reference" else {"dataset": "synth", "dataset_args": PERTURBED}
    key = {"fit": "fit_split", "train": "train_split", "reference": "reference"}[role]
    named = {**params, key: {**({"split": "val"} if isinstance(params[key], str) else params[key]), **own}}
    assert PROTOCOLS.get(protocol)(**named).requires(task)[role].dataset_args == PERTURBED
    other = {**params, key: {"dataset": "rafdb", "split": "train"}}
    assert PROTOCOLS.get(protocol)(**other).requires(task)[role].dataset_args == {}  # another dataset: nothing


def test_a_universal_perturbation_is_fitted_on_the_clean_split_and_flips_refuse_what_they_cannot_mirror():
    """The adversarial protocol's uap fit split follows the same rule as split_ref (clean unless named); the attacked
    variant itself keeps the task's transform (it attacks the task's own data). Flip-sum cannot mirror a split with
    a declared detector or attack: refused with what to do, before anything runs."""
    from facebench.suite import Task

    task = Task.of("t", "synth", "adversarial", dataset_args=PERTURBED)
    refs = PROTOCOLS.get("adversarial")(attack="uap", fit="train", eps=[0.01]).requires(task)
    assert refs["uap_fit"].dataset_args == {"n": 300}
    (adv,) = [ref for role, ref in refs.items() if role.startswith("adv:")]
    assert adv.dataset_args["transform"] == PERTURBED["transform"]
    for key, value in (("detector", "mtcnn-5"), ("attack", PERTURBED["attack"])):
        flagged = Task.of("v", "lfw", "verification", dataset_args={key: value})
        for protocol in ("verification", "identification"):
            with pytest.raises(ConfigError, match=f"cannot mirror a split with a declared `{key}`.*set `flip: false`"):
                PROTOCOLS.get(protocol)(flip=True).requires(flagged)
            assert PROTOCOLS.get(protocol)(flip=False).requires(flagged) == {}


def test_robustness_variants_apply_after_the_tasks_own_transform():
    """A corruption or resolution variant of a transformed split is the variant of the images the task scores
    (its transform, then the variant's); an untransformed task's variants are the variant alone (keys as before)."""
    from facebench.suite import Task

    blur = {"name": "gaussian_blur", "severity": 2}
    for protocol, params in (("corruption", {"corruptions": ["fog"], "severities": [3]}),
                             ("resolution", {"sizes": [16]})):
        plain = PROTOCOLS.get(protocol)(**params).requires(Task.of("t", "synth", protocol, dataset_args={"n": 50}))
        blurred = PROTOCOLS.get(protocol)(**params).requires(
            Task.of("t", "synth", protocol, dataset_args={"n": 50, "transform": blur}))
        ((role, ref),), ((role2, ref2),) = plain.items(), blurred.items()
        assert role == role2 and isinstance(ref.dataset_args["transform"], dict)
        assert ref2.dataset_args["transform"] == [blur, ref.dataset_args["transform"]]
        assert ref2.dataset_args["n"] == 50


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


@pytest.fixture
def no_split_loaded(nothing_loaded, monkeypatch):
    """``nothing_loaded`` for every registered dataset class: any ``load`` fails the test."""
    from facebench.registry import DATASETS

    def boom(*a, **k):
        raise AssertionError("a dataset split was loaded by a check that needs none")

    for name in DATASETS.names():
        monkeypatch.setattr(DATASETS.get(name), "load", boom)


VERIFICATION_ON_SYNTH = ("  - {name: v, dataset: synth, split: test, protocol: verification}\n")


def test_validate_rejects_verification_on_a_dataset_without_pairs(tmp_path, nothing_loaded):
    from facebench.errors import SuiteError
    from facebench.suite import validate_suite

    with pytest.raises(SuiteError) as err:
        validate_suite(_suite(tmp_path, VERIFICATION_ON_SYNTH))
    text = str(err.value)
    assert "needs pairs, which dataset 'synth' does not provide" in text
    assert "Datasets that provide pairs: lfw, pairs-csv, rfw, xqlfw." in text  # where to look instead


def test_run_validates_requirements_before_the_model_loads(tmp_path, nothing_loaded):
    from facebench.runner import run_suite

    with pytest.raises(ConfigError, match="^task 'v': protocol 'verification' needs pairs"):
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

    task = Task.of(name="v", dataset="mine", split="test", protocol="verification")
    notes = check_requirements(task, PROTOCOLS.get("verification")(), Undeclared())
    assert notes and "declares no capabilities" in notes[0]
    with pytest.raises(ConfigError, match="needs pairs"):
        check_requirements(task, PROTOCOLS.get("verification")(), SynthFaces())


# -- other splits: registered, and providing what their role reads (issue 17 item 3) ------------------------
def _validate_error(tmp_path, task: str, **kwargs) -> str:
    from facebench.errors import SuiteError
    from facebench.suite import validate_suite

    with pytest.raises(SuiteError) as err:
        validate_suite(_suite(tmp_path, task), check_data=False, **kwargs)
    return str(err.value)


def test_protocols_declare_what_each_role_reads():
    assert PROTOCOLS.get("imbalanced")().split_needs("train") == {"labels"}
    assert PROTOCOLS.get("cross_domain")().split_needs("target:kdef") == {"labels"}
    assert PROTOCOLS.get("open_set")().split_needs("fit") == {"labels"}
    assert PROTOCOLS.get("open_set")().split_needs("unknown:0") == frozenset()  # unknowns need no labels
    assert PROTOCOLS.get("label_free")().split_needs("shift:blur") == {"labels"}
    assert PROTOCOLS.get("label_free")().split_needs("ood:noise") == frozenset()
    assert PROTOCOLS.get("verification")().split_needs("flipped") == {"pairs"}


def test_validate_rejects_another_split_of_an_unregistered_dataset(tmp_path, no_split_loaded):
    task = ("  - {name: o, dataset: synth, split: test, protocol: open_set,\n"
            "     params: {unknowns: [{dataset: nois, split: test}]}}\n")
    text = _validate_error(tmp_path, task)
    assert ("task 'o': the unknown:0 split names dataset 'nois', which is not registered. "
            "Did you mean \"noise\"?") in text
    target = "  - {name: x, dataset: synth, split: test, protocol: cross_domain, params: {targets: [{dataset: rafd, split: test}]}}\n"
    assert "the target:rafd split names dataset 'rafd'" in _validate_error(tmp_path, target)


@pytest.mark.parametrize("protocol, params, role", [
    ("imbalanced", "{train_split: {dataset: noise, split: test}}", "train"),
    ("cross_domain", "{targets: [{dataset: noise, split: test}]}", "target:noise"),
    ("open_set", "{score: knn, fit_split: {dataset: noise, split: test}}", "fit"),
    ("label_free", "{shifts: [{dataset: lfw, split: test}]}", "shift:lfw"),
])
def test_validate_rejects_another_split_without_what_its_role_reads(tmp_path, no_split_loaded, protocol, params,
                                                                     role):
    task = f"  - {{name: t, dataset: synth, split: test, protocol: {protocol}, params: {params}}}\n"
    text = _validate_error(tmp_path, task)
    dataset = role.split(":")[-1] if ":" in role else "noise"
    assert f"task 't': protocol '{protocol}' reads labels of its {role} split, which dataset '{dataset}'" in text
    assert "Datasets that provide labels:" in text and "rafdb" in text


def test_an_unknown_split_needs_no_labels(tmp_path, no_split_loaded):
    from facebench.suite import validate_suite

    task = ("  - {name: o, dataset: synth, split: test, protocol: open_set,\n"
            "     params: {unknowns: [{dataset: noise, split: test}]}}\n")
    validate_suite(_suite(tmp_path, task), check_data=False)


def test_another_split_of_a_loader_without_capabilities_is_noted(tmp_path, no_split_loaded, monkeypatch):
    from facebench.data.nonfaces import NoiseImages
    from facebench.suite import validate_suite

    monkeypatch.setattr(NoiseImages, "capabilities", None)
    task = "  - {name: i, dataset: synth, split: test, protocol: imbalanced, params: {train_split: {dataset: noise, split: test}}}\n"
    _, notes = validate_suite(_suite(tmp_path, task), check_data=False)
    assert any("'noise' (train split) declares no capabilities" in n for n in notes)


def test_run_rejects_another_split_before_the_model_loads(tmp_path, no_split_loaded):
    from facebench.runner import run_suite

    task = ("  - {name: o, dataset: synth, split: test, protocol: open_set,\n"
            "     params: {unknowns: [{dataset: nois, split: test}]}}\n")
    with pytest.raises(ConfigError, match="names dataset 'nois', which is not registered"):
        run_suite(_suite(tmp_path, task), "synth-cnn", out=tmp_path / "out", cache_dir=tmp_path / "cache",
                  progress=False, log=lambda m: None)


# -- attribute names a protocol reads, against those the dataset declares ------------------------------------
def test_validate_rejects_a_misspelt_attribute_with_a_did_you_mean(tmp_path, no_split_loaded):
    task = "  - {name: f, dataset: fairface, split: val, protocol: fairness, params: {by: [race, gendr]}}\n"
    text = _validate_error(tmp_path, task)
    assert ("task 'f': protocol 'fairness' reads attribute 'gendr', which dataset 'fairface' does not have. "
            "Did you mean \"gender\"? Its attributes: age_group, gender, race, service_test.") in text
    target = "  - {name: f, dataset: synth, split: test, protocol: fairness, params: {by: skin_tone, target: race}}\n"
    assert "reads attribute 'race', which dataset 'synth' does not have" in _validate_error(tmp_path, target)
    age = "  - {name: a, dataset: fairface, split: val, protocol: age_estimation}\n"
    assert "reads attribute 'age', which dataset 'fairface' does not have. Its attributes: age_group," in \
        _validate_error(tmp_path, age)


def test_attribute_names_that_depend_on_options(tmp_path, no_split_loaded):
    from facebench.suite import validate_suite

    task = "  - {name: r, dataset: rafdb, split: test, protocol: fairness, params: {by: [gender]}}\n"
    assert "reads attribute 'gender', which dataset 'rafdb' does not have" in _validate_error(tmp_path, task)
    manual = task.replace("params:", "dataset_args: {manual_attributes: true}, params:")
    _, notes = validate_suite(_suite(tmp_path, manual, "manual.yaml"), check_data=False)
    assert not notes
    csv = ("  - {name: c, dataset: csv, split: all, path: x.csv, protocol: fairness, params: {by: [group]},\n"
           "     dataset_args: {attribute_columns: [group]}}\n")
    assert not validate_suite(_suite(tmp_path, csv, "csv.yaml"), check_data=False)[1]
    wrong = csv.replace("by: [group]", "by: [grop]")
    assert "reads attribute 'grop', which dataset 'csv' does not have. Did you mean \"group\"?" in \
        _validate_error(tmp_path, wrong)


def test_attributes_known_only_once_read_are_noted_not_passed(tmp_path, no_split_loaded):
    from facebench.suite import validate_suite

    task = "  - {name: c, dataset: csv, split: all, path: x.csv, protocol: fairness, params: {by: [anything]}}\n"
    _, notes = validate_suite(_suite(tmp_path, task), check_data=False)
    assert notes == ["task 'c': dataset 'csv' names its attributes only once read; whether it has anything is "
                     "found on loading"]


# -- open-set unknowns: named classes exist, the default leaves at least one class unknown -------------------
def test_validate_rejects_unknown_classes_the_dataset_lacks(tmp_path, no_split_loaded):
    task = ("  - {name: o, dataset: ferplus, split: test, protocol: open_set, params: {unknown_classes: [contemt]}}\n")
    text = _validate_error(tmp_path, task)
    assert "task 'o': unknown_classes ['contemt'] are not classes of dataset 'ferplus'. Did you mean \"contempt\"?" \
        in text
    seven = task.replace("params:", "dataset_args: {classes: 7}, params:").replace("contemt", "contempt")
    assert "unknown_classes ['contempt'] are not classes of dataset 'ferplus'" in _validate_error(tmp_path, seven)



def test_validate_rejects_open_classes_the_dataset_lacks_before_the_model(tmp_path, no_split_loaded):
    """leave_one_out's `open_classes` are checked against the dataset's label space with nothing loaded (a typo
    used to surface only after the model had embedded both splits)."""
    task = ("  - {name: o, dataset: synth, split: test, protocol: open_set, params: {mode: leave_one_out, "
            "fit_split: train, open_classes: [fear, hapiness]}}\n")
    text = _validate_error(tmp_path, task)
    assert "task 'o': open_classes ['hapiness'] are not classes of dataset 'synth'. Did you mean \"happiness\"?" \
        in text
    from facebench.suite import validate_suite

    good = task.replace("hapiness", "happiness")
    assert validate_suite(_suite(tmp_path, good, "good.yaml"), check_data=False)[1] == []

def test_the_default_unknowns_need_a_class_the_head_lacks(tmp_path, no_split_loaded):
    from facebench.suite import validate_suite

    task = "  - {name: o, dataset: synth, split: test, protocol: open_set}\n"
    text = _validate_error(tmp_path, task, model="synth-cnn")  # the head has all 7 basic expressions
    assert "the unknown classes default to the classes of dataset 'synth' that the head lacks, and the head has " \
           "all of them" in text and "unknown_classes: [...]" in text
    _, notes = validate_suite(_suite(tmp_path, task, "nomodel.yaml"), check_data=False)
    assert notes == ["task 'o': the unknown classes are the classes of 'synth' the head lacks; checked once a model "
                     "is given (`validate --model NAME`)"]
    # FERPlus-8 has contempt, which the synthetic model's head lacks: one unknown class
    contempt = "  - {name: o, dataset: ferplus, split: test, protocol: open_set}\n"
    assert validate_suite(_suite(tmp_path, contempt, "ferplus.yaml"), check_data=False, model="synth-cnn")[1] == []
    seven = contempt.replace("protocol:", "dataset_args: {classes: 7}, protocol:")
    assert "the head has all of them" in _validate_error(tmp_path, seven, model="synth-cnn")


def test_a_loader_without_a_label_space_is_noted(tmp_path, no_split_loaded):
    from facebench.suite import validate_suite

    task = "  - {name: o, dataset: ckplus, split: all, protocol: open_set}\n"
    _, notes = validate_suite(_suite(tmp_path, task), check_data=False, model="synth-cnn")
    assert notes == ["task 'o': dataset 'ckplus' declares no label space; its unknown classes are found on loading"]


# -- the declarations say what loading gives --------------------------------------------------------------------
def _declared_matches(loader, split: str) -> None:
    ds = loader.load(split)
    assert loader.attribute_names is not None and set(ds.attributes) == set(loader.attribute_names)
    if loader.label_space is not None:
        assert tuple(ds.classes) == tuple(loader.label_space)


@pytest.mark.parametrize("name, args", [("synth", {"n": 12}), ("synth", {"n": 12, "classes": "compound"}),
                                        ("noise", {"n": 4})])
def test_generated_loaders_declare_their_attributes_and_label_space(name, args):
    from facebench.registry import DATASETS

    _declared_matches(DATASETS.get(name)(**args), "test")


def test_file_loaders_declare_their_attributes_and_label_space(tmp_path):
    import numpy as np
    from PIL import Image

    from facebench.data.fairface import FairFace
    from facebench.data.generic import CsvDataset
    from facebench.data.pairs import PairsCSV
    from facebench.data.rafdb import RAFDB, RAFDBCompound

    def jpg(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)

    (tmp_path / "fairface_label_val.csv").write_text("file,age,gender,race,service_test\n"
                                                     "val/1.jpg,3-9,Male,East Asian,False\n")
    jpg(tmp_path / "val" / "1.jpg")
    for target in ("gender", "race", "age"):
        _declared_matches(FairFace(tmp_path, target=target), "val")
    raf = tmp_path / "raf"
    (raf / "EmoLabel").mkdir(parents=True)
    (raf / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 2\n")
    jpg(raf / "Image" / "aligned" / "train_00001_aligned.jpg")
    (raf / "Annotation" / "manual").mkdir(parents=True)
    (raf / "Annotation" / "manual" / "train_00001_manu_attri.txt").write_text("1 2\n" * 5 + "1\n2\n3\n")
    for loader in (RAFDB(raf), RAFDB(raf, manual_attributes=True), RAFDBCompound(raf)):
        _declared_matches(loader, "train")
    jpg(tmp_path / "x" / "a.jpg")
    jpg(tmp_path / "y" / "b.jpg")
    (tmp_path / "pairs.csv").write_text("image_a,image_b,same\nx/a.jpg,y/b.jpg,0\n")
    _declared_matches(PairsCSV(tmp_path), "test")
    (tmp_path / "faces.csv").write_text("path,label,group,note\nx/a.jpg,happy,g1,n\n")
    _declared_matches(CsvDataset(tmp_path / "faces.csv", attribute_columns=["group"],
                                 classes=["neutral", "happiness"]), "all")
