"""Evaluations reused (facebench.pipeline.reuse): a re-run over unchanged inputs reads each task's result back
and writes the same results.json and leaderboard; anything that can change a result changes the key."""

import json

import numpy as np
import pytest

from facebench.data.synthetic import SynthFaces
from facebench.pipeline import reuse as reuse_mod
from facebench.pipeline.reuse import EvaluationReuse, evaluation_key, split_digest
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.closed_set import ClosedSetProtocol
from facebench.protocols.fairness import FairnessProtocol
from facebench.records import Predictions
from facebench.runner import run_suite

SUITE = """\
name: reuse
defaults: {batch_size: 64, bootstrap: 40, shard_size: 64}
tasks:
  - {name: closed, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 150}}
  - {name: fair, dataset: synth, split: test, protocol: fairness, dataset_args: {n: 150},
     params: {by: [skin_tone]}}
  - {name: loo, dataset: synth, split: test, protocol: open_set, dataset_args: {n: 150},
     params: {mode: leave_one_out, fit_split: {split: train, dataset_args: {n: 300}}}}
"""


def _run(tmp_path, out, **kw):
    suite = tmp_path / "reuse.yaml"
    suite.write_text(SUITE)
    return run_suite(suite, model="synth-cnn", out=tmp_path / out, cache_dir=tmp_path / "cache", progress=False,
                     log=lambda msg: None, **kw)


def test_a_rerun_reads_every_result_back_and_writes_the_same_files(tmp_path):
    first = _run(tmp_path, "a")
    second = _run(tmp_path, "b")
    reused = {t: v["evaluation_reused"] for t, v in second.manifest["timings"].items()}
    assert reused == {"closed": True, "fair": True, "loo": True}
    assert not any(v["evaluation_reused"] for v in first.manifest["timings"].values())
    for name in ("results.json", "leaderboard.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with np.load(tmp_path / "a" / "samples.npz") as a, np.load(tmp_path / "b" / "samples.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_reuse_off_recomputes(tmp_path):
    _run(tmp_path, "a")
    again = _run(tmp_path, "b", overrides={"reuse_evaluations": False})
    assert not any(v["evaluation_reused"] for v in again.manifest["timings"].values())
    a, b = (json.loads((tmp_path / f / "results.json").read_text()) for f in "ab")
    assert a["suite"]["fingerprint"] != b["suite"]["fingerprint"]  # the suite as run: its settings differ
    assert {k: v for k, v in a.items() if k != "suite"} == {k: v for k, v in b.items() if k != "suite"}


def test_changed_parameters_or_seed_are_evaluated_again(tmp_path):
    _run(tmp_path, "a")
    other = _run(tmp_path, "b", overrides={"seed": 1})
    assert not any(v["evaluation_reused"] for v in other.manifest["timings"].values())


def test_an_unreadable_entry_is_recomputed_with_a_warning(tmp_path):
    _run(tmp_path, "a")
    for entry in (tmp_path / "cache" / "evaluations").rglob("*.json"):
        entry.write_text("{ truncated")
    lines = []
    suite = tmp_path / "reuse.yaml"
    again = run_suite(suite, model="synth-cnn", out=tmp_path / "b", cache_dir=tmp_path / "cache", progress=False,
                      log=lines.append)
    assert not any(v["evaluation_reused"] for v in again.manifest["timings"].values())
    assert any("cannot be read" in line and "evaluating again" in line for line in lines)
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()


# --------------------------------------------------------------------------- the key


@pytest.fixture(scope="module")
def split():
    ds = SynthFaces(n=60).load("test")
    rng = np.random.default_rng(0)
    preds = Predictions(ds.ids, {"expression": rng.standard_normal((60, 7)).astype(np.float32)})
    return ds, preds


def _ctx(split, **kw):
    ds, preds = split
    base = dict(dataset=ds, predictions=preds, head="expression", head_labels=tuple(ds.classes[:7]), seed=0,
                n_resamples=10)
    return EvalContext(**{**base, **kw})


def test_the_key_changes_with_everything_a_result_depends_on(split, monkeypatch):
    ds, preds = split
    protocol = ClosedSetProtocol()
    base = evaluation_key(protocol, _ctx(split))
    assert evaluation_key(ClosedSetProtocol(), _ctx(split)) == base  # deterministic
    changed_preds = Predictions(preds.ids, {"expression": preds.outputs["expression"] + np.float32(1e-3)})
    variants = {
        "seed": evaluation_key(protocol, _ctx(split, seed=1)),
        "resamples": evaluation_key(protocol, _ctx(split, n_resamples=11)),
        "confidence": evaluation_key(protocol, _ctx(split, confidence=0.9)),
        "head": evaluation_key(protocol, _ctx(split, head="other")),
        "predictions": evaluation_key(protocol, _ctx(split, predictions=changed_preds)),
        "protocol": evaluation_key(FairnessProtocol(), _ctx(split)),
        "extra": evaluation_key(protocol, _ctx(split, extras={"train": ExtraSplit(ds, None)})),
    }
    monkeypatch.setattr(reuse_mod, "code_fingerprint", lambda: "other code")
    variants["code"] = evaluation_key(protocol, _ctx(split))
    assert base not in variants.values() and len(set(variants.values())) == len(variants)


def test_attributes_and_pairs_are_in_the_split_digest(split):
    ds, preds = split
    base = split_digest(ds, preds)
    ds2 = SynthFaces(n=60).load("test")
    assert split_digest(ds2, preds) == base
    key = next(iter(ds2.attributes))
    ds2.attributes[key] = ds2.attributes[key][::-1].copy()
    assert split_digest(ds2, preds) != base
    ds3 = SynthFaces(n=60).load("test")
    ds3.pairs = {"a": np.array([0]), "b": np.array([1]), "same": np.array([True]), "fold": np.array([0])}
    assert split_digest(ds3, preds) != base
    assert split_digest(ds, None) != base


def test_a_stored_result_round_trips(split, tmp_path):
    result = ClosedSetProtocol().evaluate(_ctx(split))
    store = EvaluationReuse(tmp_path, warn=lambda msg: None)
    store.put("ab" * 16, result)
    back = store.get("ab" * 16)
    assert [r.to_dict() for r in back.records] == json.loads(json.dumps([r.to_dict() for r in result.records]))
    assert back.warnings == list(result.warnings)
    for k, v in (result.samples or {}).items():
        np.testing.assert_array_equal(back.samples[k], v)
    assert store.get("cd" * 16) is None


def test_cache_clear_removes_stored_evaluations_and_nothing_else(tmp_path, capsys):
    from facebench.cli import main

    _run(tmp_path, "a")
    root = tmp_path / "cache" / "evaluations"
    stored = EvaluationReuse(root, warn=print).files()
    assert sum(f.suffix == ".json" for f in stored) == 3
    mine = root / "notes.txt"
    mine.write_text("a user's file")
    (root / "ab").mkdir(exist_ok=True)
    (root / "ab" / "keep.json").write_text("{}")
    assert main(["cache", "ls", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "stored evaluations" in capsys.readouterr().out
    assert main(["cache", "clear", "--only", "evaluations", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "removed 0 entries" in (out := capsys.readouterr().out) and "(and 3 stored evaluations)" in out
    assert EvaluationReuse(root, warn=print).files() == []
    assert mine.exists() and (root / "ab" / "keep.json").exists()
    again = _run(tmp_path, "b")
    assert not any(v["evaluation_reused"] for v in again.manifest["timings"].values())


def test_plug_in_protocols_are_never_reused():
    from facebench.pipeline.reuse import reusable

    class PluginProtocol(ClosedSetProtocol):  # defined outside the facebench package (here: the tests)
        pass

    assert reusable(ClosedSetProtocol()) and not reusable(PluginProtocol())
