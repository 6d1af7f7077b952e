"""Planning a run imports no SciPy; the evaluation's libraries are imported in the background during inference."""

import json
import subprocess
import sys
from pathlib import Path

from facebench.pipeline import preload

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    """``code`` run by a fresh interpreter in the repository root (its own sys.modules)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)


def test_planning_the_demo_imports_no_scipy():
    code = ("import sys, json; from facebench.suite import load_suite; from facebench.pipeline import plan; "
            "planned = plan.plan_tasks(load_suite('suites/demo.yaml', None), lambda m: None); "
            "print(json.dumps([len(planned), sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')]))")
    out = _python(code)
    n_tasks, scipy_modules = json.loads(out.stdout.splitlines()[-1])
    assert n_tasks == 7
    assert scipy_modules == []


def test_preload_imports_in_the_background_and_tolerates_failures():
    code = ("import sys, json; from facebench.pipeline import preload; "
            "p = preload.start(('json.decoder', 'scipy.stats', 'facebench_no_such_module')); p.wait(); p.wait(); "
            "print(json.dumps([list(p.missing), 'scipy.stats' in sys.modules]))")
    out = _python(code)
    missing, imported = json.loads(out.stdout.splitlines()[-1])
    assert missing == ["scipy.stats", "facebench_no_such_module"]  # json.decoder was imported already
    assert imported is True


def test_preload_of_imported_modules_starts_no_thread():
    loaded = preload.Preload(("json", "sys"))
    assert loaded.missing == () and loaded._thread is None
    loaded.wait()


def test_during_joins_at_the_end_of_the_block_even_on_error():
    code = ("import sys, json; from facebench.pipeline import preload\n"
            "try:\n    with preload.during(('scipy.stats',)) as p:\n        raise KeyError('boom')\n"
            "except KeyError:\n    pass\n"
            "print(json.dumps([p._thread is None, 'scipy.stats' in sys.modules]))")
    out = _python(code)
    assert json.loads(out.stdout.splitlines()[-1]) == [True, True]


def test_during_a_run_with_figures_also_imports_matplotlib():
    code = ("import sys, json; from facebench.pipeline import preload\n"
            "with preload.during((), figures=False) as p:\n    pass\n"
            "with preload.during((), figures=True) as q:\n    pass\n"
            "print(json.dumps([list(p.missing), list(q.missing), 'matplotlib' in sys.modules]))")
    out = _python(code)
    assert json.loads(out.stdout.splitlines()[-1]) == [[], ["facebench.report.figures"], True]
