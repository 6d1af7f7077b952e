"""``facebench report`` over runs of five models: one models x tasks board per protocol in Markdown, LaTeX,
CSV and HTML (facebench.report.boards, facebench.report.board_formats), ranked by each metric's direction.

The five models are synth-cnn with differently perturbed weights, run for real on a small suite (about
15 s together); the split, strict and partial cases edit copies of their results.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from facebench.cli import main
from facebench.errors import ReportError
from facebench.report.board_formats import to_html, to_markdown
from facebench.report.boards import build_boards, column_ranks, marks
from facebench.report.tables import load_runs

SUITE = """name: mbt
defaults: {bootstrap: 20}
tasks:
  - {name: clean, dataset: synth, split: test, dataset_args: {n: 200}, protocol: closed_set}
  - {name: blur, dataset: synth, split: test, dataset_args: {n: 200, domain: blur}, protocol: closed_set}
  - {name: noise, dataset: synth, split: test, dataset_args: {n: 200, domain: noise}, protocol: closed_set}
  - name: osr
    dataset: synth
    split: test
    dataset_args: {n: 200}
    protocol: open_set
    params: {score: msp, unknowns: [{dataset: synth, split: test, dataset_args: {classes: compound, n: 200}}]}
  - {name: fair, dataset: synth, split: test, dataset_args: {n: 200}, protocol: fairness, params: {by: [skin_tone]}}
"""
LABELS = ["synth-cnn", "synth-cnn-2", "synth-cnn-3", "synth-cnn-4", "synth-cnn-5"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Five run folders: synth-cnn's weights with Gaussian noise of 0, 4, 8, 12, 16 % of each tensor's std."""
    import torch

    from facebench.models.synth_cnn import DEFAULT_WEIGHTS
    from facebench.runner import run_suite

    tmp = tmp_path_factory.mktemp("mbt")
    (tmp / "suite.yaml").write_text(SUITE)
    state = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    folders = []
    for i in range(5):
        gen = torch.Generator().manual_seed(i)
        noisy = {k: v + 0.04 * i * v.std() * torch.randn(v.shape, generator=gen)
                 if v.is_floating_point() and v.numel() > 1 else v for k, v in state.items()}
        torch.save(noisy, tmp / f"w{i}.pt")
        run_suite(tmp / "suite.yaml", "synth-cnn", model_args={"weights": str(tmp / f"w{i}.pt")}, out=tmp / f"run{i}",
                  progress=False, cache_dir=tmp / "cache", log=lambda msg: None)
        folders.append(tmp / f"run{i}")
    return folders


def values(folders: list[Path], task: str, metric: str) -> dict[str, float]:
    """{run label: raw value} read straight from each results.json."""
    out = {}
    for label, folder in zip(LABELS, folders):
        records = json.loads((folder / "results.json").read_text())["records"]
        out[label] = next(r["value"] for r in records if r["task"] == task and r["metric"] == metric)
    return out


def md_section(md: str, heading: str) -> tuple[list[str], dict[str, list[str]], str]:
    """(header cells, {row label: cells}, the text after the table) of the ``## heading`` board."""
    block = md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return cells[0], {row[0]: row[1:] for row in cells[2:]}, block


def expected_ranks(columns: list[dict[str, float]], higher: bool) -> dict[str, float]:
    """Mean over columns of each row's rank (1 = best, ties share the average rank), computed independently."""
    total = dict.fromkeys(columns[0], 0.0)
    for col in columns:
        for row, v in col.items():
            better = sum(1 for w in col.values() if (w > v if higher else w < v))
            equal = sum(1 for w in col.values() if w == v)
            total[row] += better + (equal + 1) / 2
    return {row: t / len(columns) for row, t in total.items()}


def test_five_models_give_one_models_by_tasks_board_per_protocol(runs, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--no-figures", "--ci", "none"]) == 0
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    head, rows, text = md_section(md, "closed_set — accuracy %")
    assert head == ["model", "clean", "blur", "noise", "Mean", "Mean rank"] and list(rows) == LABELS
    acc = {task: values(runs, task, "accuracy") for task in ("clean", "blur", "noise")}
    for label in LABELS:
        shown = [float(re.sub(r"[*<>/a-z]", "", c)) for c in rows[label]]
        assert shown[:3] == pytest.approx([100 * acc[t][label] for t in ("clean", "blur", "noise")], abs=0.006)
        assert shown[3] == pytest.approx(100 * sum(acc[t][label] for t in acc) / 3, abs=0.006)
        assert shown[4] == pytest.approx(expected_ranks(list(acc.values()), higher=True)[label], abs=0.006)
    for j, task in enumerate(("clean", "blur", "noise")):  # bold = the highest accuracy, <ins> = the next one
        best = max(acc[task].values())
        second = max(v for v in acc[task].values() if v < best)
        assert {r for r in LABELS if rows[r][j].startswith("**")} == {r for r, v in acc[task].items() if v == best}
        assert {r for r in LABELS if rows[r][j].startswith("<ins>")} == {r for r, v in acc[task].items() if v == second}
    assert "Mean: unweighted mean over the 3 task columns." in text
    head, rows, text = md_section(md, "fairness — accuracy % (overall)")
    assert head == ["model", "fair"] and "No Mean: the fairness protocol defines no mean over tasks." in text
    assert "## open_set — AUROC" in md and "Mean rank" not in md_section(md, "open_set — AUROC")[0]


def test_report_writes_the_boards_as_tex_csv_and_html(runs, tmp_path):
    import pandas as pd

    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--no-figures", "--ci", "pm"]) == 0
    fragments = sorted(p.name for p in (out / "tables").glob("*.tex"))
    assert fragments == ["closed_set.tex", "fairness.tex", "open_set.tex"]
    wrapper = (out / "leaderboard.tex").read_text()
    assert all(f"\\input{{tables/{name}}}" in wrapper for name in fragments) and "\\documentclass" in wrapper
    closed = (out / "tables" / "closed_set.tex").read_text()
    assert "\\documentclass" not in closed and "\\begin{document}" not in closed
    assert "\\toprule" in closed and "\\bottomrule" in closed and "Model & clean & blur & noise & Mean & Mean rank" in closed
    best = max(values(runs, "clean", "accuracy").items(), key=lambda kv: kv[1])
    assert re.search(rf"^{best[0]} & \\textbf{{{100 * best[1]:.2f} \$\\pm\$", closed, re.M)
    # the long CSV: every record of every run, one line each, read by pandas
    table = pd.read_csv(out / "leaderboard.csv")
    n_records = sum(len(json.loads((f / "results.json").read_text())["records"]) for f in runs)
    assert len(table) == n_records and set(table["run"]) == set(LABELS)
    wide = table[table["metric"] == "accuracy"].pivot(index="run", columns="task", values="value")
    assert wide.loc["synth-cnn-3", "blur"] == pytest.approx(values(runs, "blur", "accuracy")["synth-cnn-3"])
    assert set(table.columns) >= {"model", "protocol", "task", "metric", "value", "ci_low", "ci_high",
                                  "higher_is_better", "cut", "data_fp", "conventions_fp"}
    index = (out / "site" / "index.html").read_text()
    assert "<h2>closed_set — accuracy %</h2>" in index and index.count('class="best"') >= 3
    board = index.split("<h2>closed_set — accuracy %</h2>", 1)[1].split("</table>", 1)[0]
    assert board.count("<tr>") == 1 + 5 and 'data-col="5"' in board  # header + five models; Mean rank sortable


def test_lower_is_better_metric_bolds_the_smallest(runs):
    boards = build_boards(load_runs(runs), metrics=["fpr@tpr95*"])
    assert [b.protocol for b in boards] == ["open_set"]  # no other protocol has the metric
    board = boards[0]
    assert board.columns[0].higher_is_better is False and board.mean is None and "single task" in board.mean_note
    fpr = values(runs, "osr", "fpr@tpr95[pos=known,rule=interp]")
    _, rows, _ = md_section(to_markdown(boards, ci=None), board.title)
    assert {r for r in LABELS if rows[r][0].startswith("**")} == {r for r, v in fpr.items() if v == min(fpr.values())}
    with pytest.raises(ReportError, match="--metric 'fpr@95' matches no record of these runs. Their metrics: accuracy,"):
        build_boards(load_runs(runs), metrics=["fpr@95"])


def edited(folder: Path, dest: Path, edit) -> Path:
    results = json.loads((folder / "results.json").read_text())
    edit(results)
    dest.mkdir()
    (dest / "results.json").write_text(json.dumps(results))
    return dest


def test_differing_fingerprints_or_conventions_split_columns_and_strict_refuses(runs, tmp_path, capsys):
    def other_blur_data(results):
        for item in [t for t in results["tasks"] if t["name"] == "blur"] + results["records"]:
            if item.get("task", item.get("name")) == "blur":
                item["fingerprints"] = {**item["fingerprints"], "dataset": "ffff0000ffff0000"}
        for r in results["records"]:
            if r["task"] == "noise":
                r["conventions"] = {**r["conventions"], "prediction": "top-2"}

    odd = edited(runs[1], tmp_path / "odd", other_blur_data)
    board = build_boards(load_runs([runs[0], odd]))[0]
    assert [c.title.split(" [")[0] for c in board.columns] == ["clean", "blur", "blur", "noise", "noise"]
    assert any("'blur': data fingerprints differ" in n for n in board.notes)
    assert any("'noise': conventions differ" in n for n in board.notes)
    assert board.mean == {"synth-cnn": None, "synth-cnn-2": None}  # split columns are never averaged
    with pytest.raises(ReportError, match="data fingerprint ffff0000ffff0000"):
        build_boards(load_runs([runs[0], odd]), strict=True)
    assert main(["report", str(runs[0]), str(odd), "--out", str(tmp_path / "r"), "--no-figures", "--strict"]) == 2
    assert "fingerprint" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_partial_runs_are_never_mixed_with_full_runs(runs, tmp_path):
    limited = edited(runs[2], tmp_path / "limited", lambda r: r.update(partial={"limit": 50}))
    boards = build_boards(load_runs([runs[0], runs[1], limited]))
    titles = [b.title for b in boards]
    assert "closed_set — accuracy %" in titles and "closed_set — accuracy % (partial: limit 50)" in titles
    full = next(b for b in boards if b.title == "closed_set — accuracy %")
    part = next(b for b in boards if b.cut == "limit 50" and b.protocol == "closed_set")
    assert full.rows == ["synth-cnn", "synth-cnn-2"] and part.rows == ["synth-cnn-3"]
    with pytest.raises(ReportError, match="full: synth-cnn, synth-cnn-2; limit 50: synth-cnn-3"):
        build_boards(load_runs([runs[0], runs[1], limited]), strict=True)

    def only_clean(results):
        results["partial"] = {"tasks": ["clean"]}
        results["tasks"] = [t for t in results["tasks"] if t["name"] == "clean"]
        results["records"] = [r for r in results["records"] if r["task"] == "clean"]

    subset = edited(runs[3], tmp_path / "subset", only_clean)
    board = build_boards(load_runs([runs[0], subset]))[0]  # --tasks alone leaves the numbers as they are
    assert board.rows == ["synth-cnn", "synth-cnn-2"] and board.mean["synth-cnn-2"] is None
    assert any("ran part of the suite (--tasks)" in n for n in board.notes)


def test_ranks_and_marks_follow_the_direction_and_share_ties():
    vals = {"a": 0.9, "b": 0.8, "c": 0.8, "d": None}
    assert column_ranks(vals, True) == {"a": 1.0, "b": 2.5, "c": 2.5}
    assert column_ranks(vals, False) == {"a": 3.0, "b": 1.5, "c": 1.5}
    assert column_ranks(vals, None) == {} and column_ranks({"a": 1.0}, True) == {}
    assert marks(vals, True) == ({"a"}, {"b", "c"}) and marks(vals, False) == ({"b", "c"}, {"a"})
    assert marks(vals, None) == (set(), set())


def test_names_are_escaped_in_markdown_and_html(runs, tmp_path):
    def evil(results):
        results["model"]["name"] = "<b>x|y</b>"

    board_runs = load_runs([runs[0], edited(runs[1], tmp_path / "evil", evil)])
    boards = build_boards(board_runs)
    md, html = to_markdown(boards), to_html(boards)
    assert "<b>" not in md and "&lt;b&gt;x\\|y&lt;/b&gt;" in md
    assert "<b>" not in html and "&lt;b&gt;x|y&lt;/b&gt;" in html
