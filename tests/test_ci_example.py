"""examples/ci: the gate script a model repository's CI calls (issue 22, item 6) runs here: no regression against
the stored baseline (exit 0, JUnit, JSON and report written), a regression (exit 1) against a baseline whose
accuracy is better, and "cannot compare" (exit 2) against a baseline of other data; the workflow calls it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GATE = REPO / "examples" / "ci" / "gate.sh"
BASELINE = REPO / "examples" / "ci" / "baseline-demo.json"


def _gate(tmp_path: Path, name: str, **env) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent  # `facebench` of this interpreter's environment
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                "OUT": str(tmp_path / name), "FACEBENCH_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(["bash", str(GATE)], capture_output=True, text=True, cwd=tmp_path, env=full_env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_gate_script_verdicts(tmp_path):
    ok = _gate(tmp_path, "ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "gate: no regression" in ok.stdout
    for written in ("run/results.json", "compare.xml", "compare.json", "report/leaderboard.md"):
        assert (tmp_path / "ok" / written).is_file(), written
    assert json.loads((tmp_path / "ok" / "run" / "results.json").read_text())["partial"]["limit"] == 300

    # a baseline model that was right on every closed-set sample: the same samples now show a significant drop
    # (compare's paired McNemar test reads the per-sample outcomes, not only the values)
    better = json.loads(BASELINE.read_text())
    samples = better["samples"]["synth-closed-set"]
    samples["y_pred"] = list(samples["y_true"])
    for rec in better["results"]["records"]:
        if rec["task"] == "synth-closed-set" and rec["metric"] == "accuracy":
            rec["value"] = 1.0
    (tmp_path / "better.json").write_text(json.dumps(better))
    regressed = _gate(tmp_path, "regressed", BASELINE=str(tmp_path / "better.json"))
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    assert "REGRESSION" in regressed.stderr and (tmp_path / "regressed" / "report" / "leaderboard.md").is_file()

    other = _gate(tmp_path, "other", LIMIT="250")  # other data (a different subset): never compared
    assert other.returncode == 2, other.stdout + other.stderr
    assert "cannot compare" in other.stderr


def test_workflow_calls_the_gate():
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "facebench-gate.yml").read_text())
    steps = workflow["jobs"]["gate"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any("gate.sh" in r for r in runs) and any("pip install" in r and "torch==" in r for r in runs)
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == workflow["jobs"]["gate"]["env"]["OUT"]
