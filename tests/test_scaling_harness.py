"""The scaling benchmark's harness (tests/benchmarks/scaling.py) at tiny n, so that it cannot rot: every case
builds and runs (against its peer where one is installed), the targets are judged from what ran, the
command line writes the table and the README section, and the README's table is the one the benchmark
wrote. No timing is asserted anywhere."""

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "benchmarks" / "scaling.py"


def _load():
    spec = importlib.util.spec_from_file_location("facebench_scaling_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


scaling = _load()


@pytest.mark.parametrize("case", [c for c in scaling.CASES if c not in scaling.PROTOCOLS])
def test_peer_cases_measure_and_agree_with_the_peer(case):
    r = scaling.measure(case, 300, 10, 2)
    assert r["seconds"] > 0 and r["inputs_mb"] > -50 and isinstance(r["peak_mb"], float)
    if r["peer_error"]:  # a peer not installed says what to install
        assert "pip install" in r["peer_error"] and "peer_seconds" not in r
    else:
        assert r["peer_seconds"] > 0 and r["peer_note"]
        assert "DIFFERENT" not in r["check"]
        if case in ("ood", "ece"):
            assert float(r["check"].rsplit(" ", 1)[1]) < 1e-6  # "... agree(s) within 1.2e-08"


@pytest.mark.parametrize("case", scaling.PROTOCOLS)
def test_protocol_cases_evaluate_to_records(case, monkeypatch):
    monkeypatch.setitem(scaling.LABEL_FREE_META, "sets_per_source", 2)  # the meta-benchmark's fixed cost
    monkeypatch.setitem(scaling.LABEL_FREE_META, "sizes", [60, 120])
    calls = scaling.CASES[case].build(400, 10, np.random.default_rng(0), None)
    result = calls["ours"]()
    assert calls["peer"] is None and result.records
    assert any(r.value is not None and np.isfinite(r.value) for r in result.records)


def test_a_missing_peer_is_reported_not_fatal(monkeypatch):
    def missing():
        raise scaling.PeerMissing("pytorch-ood not installed: pip install --no-deps pytorch-ood==0.4.0")
    monkeypatch.setitem(scaling.CASES, "ood", dataclasses.replace(scaling.CASES["ood"], prepare=missing))
    r = scaling.measure("ood", 200, 10, 1)
    assert r["seconds"] > 0 and "peer_seconds" not in r and "pip install" in r["peer_error"]
    row = [ln for ln in scaling.table_rows([r], scaling.exponents([r])) if ln.startswith("| OOD")]
    assert "| pytorch-ood | not installed |" in row[0]
    assert "not measured (n = 10^6 not run)" in "\n".join(scaling.target_rows([r], scaling.exponents([r])))


def test_measure_runs_a_protocol_case():
    r = scaling.measure("closed_set", 200, 10, 2)
    assert r["case"] == "closed_set" and r["n"] == 200 and r["resamples"] == 10 and r["seconds"] > 0
    assert "peer_seconds" not in r and "check" not in r


def test_fit_exponent():
    ns = np.array([1e3, 1e4, 1e5])
    assert scaling.fit_exponent(ns, 2e-6 * ns) == pytest.approx(1.0)
    assert scaling.fit_exponent(ns, 3e-9 * ns**2) == pytest.approx(2.0)
    assert scaling.fit_exponent([1e4], [1.0]) is None


def _row(case, n, seconds, **extra):
    return {"case": case, "n": n, "resamples": 1000, "seconds": seconds, "peak_mb": 100.0, "inputs_mb": 10.0,
            **extra}


def test_targets_are_judged_from_the_rows_that_ran():
    target = {t.case + ":" + t.kind: t for t in scaling.TARGETS}
    rows = [_row("ood", 10**6, 0.4, peer_seconds=1.0), _row("ece", 10**6, 2.0, peer_seconds=1.0),
            _row("closed_set", 10**4, 0.01), _row("closed_set", 10**5, 0.1), _row("closed_set", 10**6, 1.0),
            {"case": "open_set", "n": 10**6, "resamples": 1000, "error": "timed out after 300 s"},
            _row("open_set", 10**5, 1.0), {**_row("csv", 10**6, 1.0), "resamples": 10}]
    fits = scaling.exponents(rows)
    assert fits["closed_set"]["last"] == pytest.approx(1.0) and fits["open_set"]["last"] is None
    assert scaling.judge(target["ood:ratio"], rows, fits) == ("0.40x", "PASS")
    assert scaling.judge(target["ece:ratio"], rows, fits) == ("2.00x", "FAIL")
    assert scaling.judge(target["roc:ratio"], rows, fits)[1].startswith("not measured")
    assert scaling.judge(target["closed_set:seconds"], rows, fits) == ("1 s", "PASS")
    assert scaling.judge(target["closed_set:peak"], rows, fits) == ("100 MB", "PASS")
    assert scaling.judge(target["closed_set:exponent"], rows, fits) == ("1.00 (n = 10^4..10^6)", "PASS")
    assert scaling.judge(target["open_set:seconds"], rows, fits) == ("timed out after 300 s", "FAIL")
    assert scaling.judge(target["open_set:exponent"], rows, fits)[1] == "FAIL"
    assert scaling.judge(target["csv:seconds"], rows, fits) == ("1 s", "PASS")  # no resamples in a loader
    assert scaling.judge(target["fairness:exponent"], rows, fits)[1] == "not measured (case not run)"
    small = [_row("closed_set", 10**6, 1.0, resamples=10)]
    assert scaling.judge(target["closed_set:seconds"], small, scaling.exponents(small))[1].startswith("not measured")


def test_repeats_are_fewer_only_for_large_protocol_runs():
    cases = scaling.CASES
    assert scaling.repeats_for(cases["closed_set"], 10**5, 3, 1) == 3
    assert scaling.repeats_for(cases["closed_set"], 10**6, 3, 1) == 1
    assert scaling.repeats_for(cases["ood"], 10**6, 3, 1) == 3  # peers: the ratio needs the repeats
    assert scaling.repeats_for(cases["label_free"], 10**4, 3, 1) == 1


def test_ratio_and_sizes():
    assert scaling.ratio(_row("ood", 10, 1.0, peer_seconds=4.0)) == 0.25
    assert scaling.ratio(_row("closed_set", 10, 1.0)) is None
    assert [scaling.fmt_n(n) for n in (10**4, 10**6, 2500)] == ["10^4", "10^6", "2,500"]
    assert scaling.parse_args(["--sizes", "1e4", "300"]).sizes == [10**4, 300]
    with pytest.raises(SystemExit):
        scaling.parse_args(["--sizes", "ten"])


def test_write_readme_replaces_only_its_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\n## Dev\n\ntext\n")
    scaling.write_readme(readme, "first\n\n| a |\n")
    assert readme.read_text() == f"# T\n\n## Dev\n\ntext\n\n{scaling.README_HEADING}\n\nfirst\n\n| a |\n"
    readme.write_text(readme.read_text() + "\n```bash\n# a comment, not a heading\n```\n\n## Next\n\nkept\n")
    scaling.write_readme(readme, "second\n")
    text = readme.read_text()
    assert text.count(scaling.README_HEADING) == 1 and "first" not in text and "# a comment" not in text
    assert text.endswith(f"{scaling.README_HEADING}\n\nsecond\n\n## Next\n\nkept\n")
    assert scaling.section_body(text) == "second\n"


def test_command_line_writes_the_table_and_the_readme_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# T\n")
    out = tmp_path / "SCALING.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "40", "80", "--cases", "closed_set",
                           "--resamples", "5", "--repeats", "1", "--out", str(out), "--readme", str(readme)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| closed_set evaluate |")]
    assert [r.split("|")[2].strip() for r in rows] == ["40", "80"]
    assert rows[1].split("|")[6].strip() and not rows[0].split("|")[6].strip()  # the exponent, on the largest n
    assert "| closed_set: fitted exponent of time in n at most 1.1 |" in table
    assert "not measured (n = 10^6 not run)" in table and "--sizes 40 80 --cases closed_set" in table
    assert scaling.section_body(readme.read_text()) == scaling.scaling_body(table)
    assert scaling.scaling_body(table) in proc.stdout  # the README states only what the benchmark printed
    assert str(tmp_path) not in table


def test_readme_table_is_the_generated_one():
    """The README's scaling section is SCALING.md's body, as `scaling.py --out ... --readme README.md` writes it."""
    generated = REPO / "tests" / "benchmarks" / "SCALING.md"
    body = scaling.section_body((REPO / "README.md").read_text())
    assert body is not None, f"README.md has no {scaling.README_HEADING!r} section: run tests/benchmarks/scaling.py"
    assert generated.exists(), "tests/benchmarks/SCALING.md is missing: run tests/benchmarks/scaling.py --out it"
    assert body == scaling.scaling_body(generated.read_text()), (
        "README's scaling table differs from tests/benchmarks/SCALING.md: rerun "
        "`python tests/benchmarks/scaling.py --out tests/benchmarks/SCALING.md --readme README.md`")
