"""facebench.evaluate: a registered name, a torch module, a callable or an adapter -> Results."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import facebench
from facebench.api import run
from facebench.errors import ConfigError, ModelError
from facebench.models.synth_cnn import DEFAULT_WEIGHTS, SYNTH_CLASSES, SynthCNNAdapter
from facebench.models.synth_cnn_net import SynthCNN
from facebench.records import RESULT_COLUMNS, ResultRecord, Results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent / "hostile"))
from _harness import MINI_SUITE  # noqa: E402

SPEC = {"size": 48, "mean": 0.5, "std": 0.5}
HEADS = {"expression": list(SYNTH_CLASSES)}


@pytest.fixture
def mini(tmp_path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI_SUITE)
    return path


@pytest.fixture(scope="module")
def net() -> SynthCNN:
    module = SynthCNN(n_classes=len(SYNTH_CLASSES))
    module.load_state_dict(torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True))
    return module.eval()


def _values(records) -> dict:
    return {(r["task"], r["metric"]): (r["value"], tuple(r["ci"]) if r["ci"] else None) for r in records}


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_evaluates_a_torch_module_on_the_demo_suite(monkeypatch, tmp_path):
    """The issue's Done-when: facebench.evaluate(torch_module, "suites/demo.yaml").to_pandas(), run as
    the README prints it (from the repository root; nothing but the store is written)."""
    monkeypatch.chdir(REPO)
    before = sorted(p.name for p in REPO.iterdir())
    reports_before = sorted(str(p) for p in (REPO / "reports").rglob("*"))
    scope: dict = {}
    exec(compile(_readme_example(), "README.md (Python API)", "exec"), scope)
    results, df = scope["results"], scope["df"]
    assert isinstance(results, Results) and results.exit_code == 0 and results.out_dir is None
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert len(df) == len(results.records) == len(results.results["records"]) > 0
    assert not df.duplicated(["task", "dataset", "split", "metric"]).any()  # one row per task x metric
    ok_tasks = {t["name"] for t in results.tasks if t["status"] == "ok"}
    assert set(df.task) == ok_tasks and len(ok_tasks) > 1
    assert df.higher_is_better.isin([True, False]).all() and df.unit.notna().all()
    acc = df[(df.metric == "accuracy") & df.ci_low.notna()]
    assert len(acc) and ((acc.ci_low <= acc.value) & (acc.value <= acc.ci_high)).all()
    assert (df.model == "SynthNet").all()
    assert "bootstrap" in str(df.conventions.iloc[0]) and "resamples=50" in str(df.conventions.iloc[0])
    # nothing written beside the repository's files
    assert sorted(p.name for p in REPO.iterdir()) == before
    assert sorted(str(p) for p in (REPO / "reports").rglob("*")) == reports_before


def test_module_values_equal_a_run_of_the_registered_model(mini, net, tmp_path):
    outcome = run(mini, model="synth-cnn", out=tmp_path / "registered", progress=False, figures=False)
    results = facebench.evaluate(net, mini, input_spec=SPEC, heads=HEADS)
    assert results.exit_code == outcome.exit_code == 0
    assert _values(results.results["records"]) == _values(outcome.results["records"])
    df = results.to_pandas()
    for rec in outcome.results["records"]:
        row = df[(df.task == rec["task"]) & (df.metric == rec["metric"])].iloc[0]
        assert row.value == pytest.approx(rec["value"], nan_ok=True)
        assert row.higher_is_better == rec["higher_is_better"] and row.unit == rec["unit"]
        assert row.conventions == rec["conventions"]
        if rec["ci"]:
            assert (row.ci_low, row.ci_high) == pytest.approx(tuple(rec["ci"]))
    # records read like MetricRecords, with where they were computed
    first = results.records[0]
    assert isinstance(first, ResultRecord) and first.task == "clean" and first.dataset == "synth"
    assert first.metric == first.record.metric and first.unit in ("fraction", "score", "rate")


def test_info_dict_and_input_spec_object_are_the_same_declaration(mini, net):
    from facebench.data.preprocess import InputSpec

    a = facebench.evaluate(net, mini, info={**SPEC, "classes": "|".join(SYNTH_CLASSES)}, bootstrap=5)
    b = facebench.evaluate(net, mini, input_spec=InputSpec(size=(48, 48)), classes=list(SYNTH_CLASSES), bootstrap=5)
    assert _values(a.results["records"]) == _values(b.results["records"])
    assert a.results["records"][0]["fingerprints"]["model"] == b.results["records"][0]["fingerprints"]["model"]


def test_registered_name_with_out_keeps_the_run_folder(mini, tmp_path):
    out = tmp_path / "run"
    results = facebench.evaluate("synth-cnn", mini, out=out, model_args={"weights": str(DEFAULT_WEIGHTS)})
    assert results.out_dir == out and (out / "results.json").is_file()
    on_disk = json.loads((out / "results.json").read_text())
    assert _values(on_disk["records"]) == _values(results.results["records"])
    assert results.leaderboard and (out / "leaderboard.md").read_text().strip() == results.leaderboard.strip()
    assert [t["name"] for t in results.tasks] == ["clean"]


def test_a_ready_adapter(mini):
    results = facebench.evaluate(SynthCNNAdapter(), mini, bootstrap=5)
    assert results.exit_code == 0 and {r.model for r in results.records} == {"synth-cnn"}


def test_default_writes_no_run_folder(mini, net, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = facebench.evaluate(net, mini, input_spec=SPEC, heads=HEADS, bootstrap=5)
    assert results.out_dir is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "mini.yaml"]  # the store (conftest) only


def test_a_callable(mini, net, tmp_path):
    ref = facebench.evaluate(net, mini, input_spec=SPEC, heads=HEADS, bootstrap=5)
    store = tmp_path / "store"
    same = facebench.evaluate(lambda x: net(x), mini, input_spec=SPEC, heads=HEADS, bootstrap=5, cache_dir=store)
    assert _values(same.results["records"]) == _values(ref.results["records"])
    # another callable with the same declaration is never served the first one's stored predictions
    flipped = facebench.evaluate(lambda x: -net(x), mini, input_spec=SPEC, heads=HEADS, bootstrap=5, cache_dir=store)
    acc = {r.metric: r.value for r in same.records}["accuracy"]
    assert {r.metric: r.value for r in flipped.records}["accuracy"] < acc
    assert {r.model for r in flipped.records} == {"lambda"}


def test_a_named_callable_without_cache_dir_leaves_no_store(mini, net, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where evaluate's temporary folders go
    seen = []
    real_run_suite = facebench.api.run_suite

    def spy(*args, **kwargs):
        seen.append(kwargs["cache_dir"])
        assert Path(kwargs["cache_dir"]).parent == scratch and Path(kwargs["out"]).parent.parent == scratch
        return real_run_suite(*args, **kwargs)

    monkeypatch.setattr(facebench.api, "run_suite", spy)

    def my_model(x):
        return net(x)

    results = facebench.evaluate(my_model, mini, input_spec=SPEC, heads=HEADS, bootstrap=5, name="mine")
    assert {r.model for r in results.records} == {"mine"} and len(seen) == 1
    assert list(scratch.iterdir()) == []  # the temporary store and run folder are gone


@pytest.mark.parametrize("kwargs, message", [
    ({}, "no size or classes declared for the model; declare size/channels/mean/std/classes"),
    ({"heads": HEADS}, "no size declared for the model; declare size/channels/mean/std/classes"),
    ({"input_spec": SPEC}, "no classes declared for the model; declare"),
    ({"info": {"size": 48}, "heads": {}}, "no classes declared"),
])
def test_a_missing_spec_is_a_clear_error(mini, net, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        facebench.evaluate(net, mini, **kwargs)


def test_spec_errors_come_from_the_python_adapter_validation(mini, net):
    with pytest.raises(ModelError, match=r"info key 'clases'.*classes"):
        facebench.evaluate(net, mini, info={"size": 48, "clases": "rafdb"})
    with pytest.raises(ConfigError, match="channels must be 1"):
        facebench.evaluate(net, mini, input_spec={"size": 48, "channels": 2}, heads=HEADS)
    with pytest.raises(ConfigError, match="neither a known label order"):
        facebench.evaluate(net, mini, input_spec=SPEC, classes="nosuchorder")


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": "big"}, "'batch_size' must be"),
    ({"bootstrap": 2.5}, "'bootstrap' must be"),
    ({"batchsize": 8}, "unknown key 'batchsize'"),
])
def test_overrides_are_type_checked_before_anything_runs(mini, overrides, message, monkeypatch):
    import facebench.api as api

    monkeypatch.setattr(api, "run_suite", lambda *a, **k: pytest.fail("ran despite a bad override"))
    with pytest.raises(ConfigError, match=re.escape(message)):
        facebench.evaluate("synth-cnn", mini, **overrides)


def test_misuse_is_a_clear_error(mini, net):
    with pytest.raises(ConfigError, match="out=FOLDER"):
        facebench.evaluate("synth-cnn", mini, figures=True)
    with pytest.raises(ConfigError, match="registered name"):
        facebench.evaluate("synth-cnn", mini, heads=HEADS)
    with pytest.raises(ConfigError, match="model_args are for a registered"):
        facebench.evaluate(net, mini, input_spec=SPEC, heads=HEADS, model_args={"weights": "x"})
    with pytest.raises(ModelError, match="registered name, a ModelAdapter, a torch.nn.Module or a callable"):
        facebench.evaluate(42, mini)


def test_import_facebench_stays_light():
    code = ("import sys, facebench; assert 'torch' not in sys.modules and 'facebench.api' not in sys.modules; "
            "f = facebench.evaluate; assert 'facebench.api' in sys.modules; print(f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "facebench.api"
    assert facebench.Results is Results
    with pytest.raises(AttributeError):
        facebench.no_such_thing  # noqa: B018
