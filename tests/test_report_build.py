"""facebench report / run figures: the leaderboards in every format, figures and the site from run folders."""

import csv
import io

from facebench.cli import main
from facebench.runner import run_suite

SUITE = """name: rep
defaults: {bootstrap: 50}
tasks:
  - {name: closed, dataset: synth, split: test, dataset_args: {n: 300}, protocol: closed_set}
  - {name: fair, dataset: synth, split: test, dataset_args: {n: 300}, protocol: fairness, params: {by: [skin_tone]}}
"""


def test_report_merges_runs_and_draws_figures(tmp_path, capsys):
    suite = tmp_path / "rep.yaml"
    suite.write_text(SUITE)
    a = run_suite(suite, "synth-cnn", out=tmp_path / "a", progress=False, figures=True)
    assert (tmp_path / "a" / "figures" / "closed-confusion_matrix.png").exists()
    assert (tmp_path / "a" / "figures" / "fair-group_bars.pdf").exists()
    assert (tmp_path / "a" / "samples.npz").exists()
    other = tmp_path / "rep2.yaml"
    other.write_text(SUITE.replace("dataset_args: {n: 300}, protocol: closed_set",
                                   "dataset_args: {n: 300, domain: blur}, protocol: closed_set"))
    run_suite(other, "synth-cnn", out=tmp_path / "b", progress=False)
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "leaderboard.md").read_text()
    assert "synth-cnn" in md and "synth-cnn-2" in md
    assert "fingerprints differ" in md  # the blurred 'closed' task is a different dataset: its columns are split
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r" / "leaderboard.csv").read_text())))
    assert {r["run"] for r in rows} == {"synth-cnn", "synth-cnn-2"}
    assert "\\input{tables/closed_set.tex}" in (tmp_path / "r" / "leaderboard.tex").read_text()
    tex = (tmp_path / "r" / "tables" / "fairness.tex").read_text()  # the wrapper \inputs one fragment per table
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf" in tex
    index = (tmp_path / "r" / "site" / "index.html").read_text()
    assert "synth-cnn-2" in index and "https://" not in index
    assert any((tmp_path / "r" / "site").rglob("*.png"))
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "s"), "--strict"]) == 2
    assert "protocol fingerprint" in capsys.readouterr().err
