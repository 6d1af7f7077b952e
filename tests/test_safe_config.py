"""Hostile configuration: bounded YAML, safe names, dataset paths confined to their root, escaped reports.

Oracles are independent of the code under test: PyYAML's own SafeLoader on benign documents, hand-worked
expansion counts, the ``csv`` module reading cells back, counting unescaped pipes in a Markdown row.
"""

from __future__ import annotations

import csv
import io
import re
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from facebench import safe_yaml
from facebench.data.confine import confined_paths, is_outside
from facebench.data.generic import CsvDataset
from facebench.errors import ConfigError
from facebench.models.base import parse_model_args
from facebench.report.leaderboard import leaderboard_markdown, md_escape
from facebench.report.tables import build_table, csv_cell, latex_escape, to_csv, to_html_table, to_latex, to_markdown
from facebench.suite import SuiteError, check_name, load_suite, name_problem
from tests.test_report_tables import make_results


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- YAML

def test_alias_bomb_fails_fast_with_little_memory():
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(safe_yaml.YamlError, match="alias bomb") as info:
        safe_yaml.load(billion_laughs(), "bomb.yaml")
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 5 * 2**20
    # hand-worked: level k expands to 1 + 9 * size(k-1), size(0) = 1 + 9 * (1 + 3) = 37;
    # a0..a5 = 37, 334, 3007, 27064, 243577, 2192194 > 1e6: a5 (line 6) is the first over the limit
    assert info.value.line == 6


def test_expanded_size_counts_aliases_exactly(monkeypatch):
    # size(a0) = 37 as above; a1 = 1 + 9 * 37 = 334; the mapping adds its keys (1 + 2 each) and itself
    doc = billion_laughs(levels=1)
    total = 1 + (3 + 37) + (3 + 334)
    monkeypatch.setattr(safe_yaml, "MAX_EXPANDED", total)
    assert safe_yaml.load(doc) == yaml.safe_load(doc)
    monkeypatch.setattr(safe_yaml, "MAX_EXPANDED", total - 1)
    with pytest.raises(safe_yaml.YamlError, match="expands to more than"):
        safe_yaml.load(doc)


def test_alias_count_limit(monkeypatch):
    monkeypatch.setattr(safe_yaml, "MAX_ALIASES", 3)
    assert safe_yaml.load("a: &x 1\nb: [*x, *x, *x]") == {"a": 1, "b": [1, 1, 1]}
    with pytest.raises(safe_yaml.YamlError, match="more than 3 aliases") as info:
        safe_yaml.load("a: &x 1\nb: [*x, *x, *x,\n *x]")
    assert info.value.line == 3


@pytest.mark.parametrize("doc", ["a: &a [*a]", "a: &a {b: *a}"])
def test_recursive_alias_refused(doc):
    with pytest.raises(safe_yaml.YamlError, match="recursive alias"):
        safe_yaml.load(doc)


def test_depth_limit_is_exact():
    d = safe_yaml.MAX_DEPTH
    assert safe_yaml.load("[" * d + "]" * d) == yaml.safe_load("[" * d + "]" * d)
    with pytest.raises(safe_yaml.YamlError, match=f"deeper than {d}"):
        safe_yaml.load("[" * (d + 1) + "]" * (d + 1))
    with pytest.raises(safe_yaml.YamlError, match="deeper than"):
        safe_yaml.load("[" * 100_000)  # unbalanced and huge: still a clean error, no RecursionError


def test_size_limit_before_parsing(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * safe_yaml.MAX_BYTES + "\n")
    with pytest.raises(safe_yaml.YamlError, match="larger than the 1024 KiB"):
        safe_yaml.load_file(big)
    with pytest.raises(safe_yaml.YamlError, match="larger than 1024 KiB"):
        safe_yaml.load("a: " + "x" * safe_yaml.MAX_BYTES)


@pytest.mark.parametrize("doc, fragment, line", [
    ("a: 1\nb: 2\na: 3\n", "duplicate key 'a' (first on line 1)", 3),
    ("x: !!python/object/apply:os.system ['true']\n", "tag !!python/object/apply:os.system is not allowed", 1),
    ("a: [1, 2\n", "invalid YAML", 2),
])
def test_invalid_documents_name_the_line(doc, fragment, line):
    with pytest.raises(safe_yaml.YamlError) as info:
        safe_yaml.load(doc, "s.yaml")
    assert fragment in str(info.value) and info.value.line == line
    assert str(info.value).startswith(f"s.yaml:{line}: ")


def test_merge_keys_are_not_duplicates():
    doc = "base: &b {x: 1, y: 2}\nd: {<<: *b, y: 3}\n"
    assert safe_yaml.load(doc) == yaml.safe_load(doc) == {"base": {"x": 1, "y": 2}, "d": {"x": 1, "y": 3}}


def test_bad_utf8_names_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: a\n# caf\xe9\n")
    with pytest.raises(safe_yaml.YamlError, match="not UTF-8") as info:
        safe_yaml.load_file(path)
    assert info.value.line == 2


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(safe_yaml.YamlError, match="is a folder"):
        safe_yaml.load_file(tmp_path)
    with pytest.raises(safe_yaml.YamlError, match="not found"):
        safe_yaml.load_file(tmp_path / "nope.yaml")


def test_benign_documents_match_pyyaml():
    doc = "name: s\ndefaults: &d {batch_size: 8, model_args: {a: [1, 2.5, null, true]}}\nother: *d\n"
    assert safe_yaml.load(doc) == yaml.safe_load(doc)


def test_suite_alias_bomb_is_a_suite_error(tmp_path):
    path = tmp_path / "bomb.yaml"
    body = billion_laughs().replace("\n", "\n    ")
    path.write_text("name: bomb\ndefaults:\n  model_args:\n    " + body + "\ntasks: []\n")
    with pytest.raises(SuiteError, match=r"bomb.yaml:\d+: the document expands"):
        load_suite(path)


def test_model_args_are_bounded():
    assert parse_model_args("a=1,b=x,c=[1]") == {"a": 1, "b": "x", "c": [1]}
    # block style: no commas, so the whole bomb is one value
    block = "a0: &a0\n" + "- lol\n" * 9 + "".join(f"a{i}: &a{i}\n" + f"- *a{i - 1}\n" * 9 for i in range(1, 10))
    with pytest.raises(ConfigError, match="--model-args x:.*alias bomb"):
        parse_model_args("x=" + block)


# ----------------------------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", ["demo", "fer2013-privatetest", "a.b_c-d", "A1", "x" * 100])
def test_safe_names_pass(name):
    assert name_problem(name, "task name") is None and check_name(name, "x") == name


@pytest.mark.parametrize("name", ["../etc", "a/b", "a\\b", "..", "a..b", ".hidden", "-x", "", "x" * 101, "a b",
                                  "<script>", "caf\u00e9", "a\nb", 5, None])
def test_unsafe_names_refused(name):
    assert name_problem(name, "task name")
    with pytest.raises(ConfigError, match="not a safe name"):
        check_name(name, "task name")


def test_suite_and_task_names_checked_with_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: ../../etc\ntasks:\n  - name: a/b\n    dataset: synth\n    protocol: closed_set\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    text = str(info.value)
    assert f"{path}:1: suite name '../../etc' is not a safe name" in text
    assert f"{path}:3: task name 'a/b' is not a safe name" in text


def test_suite_name_from_file_stem_is_made_safe(tmp_path):
    path = tmp_path / "my suite (v2).yaml"
    path.write_text("tasks:\n  - {name: t, dataset: synth, protocol: closed_set}\n")
    suite = load_suite(path)
    assert suite.name == "my-suite-v2" and name_problem(suite.name, "suite") is None


# ----------------------------------------------------------------------------------------------- paths

@pytest.mark.parametrize("rel, outside", [
    ("a.jpg", False), ("x/../a.jpg", False), ("./a/b.png", False), ("a..b.jpg", False),
    ("../a.jpg", True), ("x/../../a.jpg", True), ("..", True), ("/etc/passwd", True), ("..\\..\\a.jpg", True),
    ("C:/x.jpg", True),
])
def test_is_outside(rel, outside):
    assert is_outside(rel) is outside


def _csv_dataset(tmp_path: Path, rows: list[str], **args) -> CsvDataset:
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    (root / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return CsvDataset(path=str(root / "labels.csv"), **args)


def test_csv_paths_outside_root_refused_with_lines(tmp_path):
    rows = ["a.jpg,happy", "../../x.jpg,sad", "b.jpg,sad", f"{tmp_path / 'abs.jpg'},happy", "../y.jpg,happy",
            "../z.jpg,happy"]
    with pytest.raises(ConfigError) as info:
        _csv_dataset(tmp_path, rows).load("all")
    text = str(info.value)
    assert "4 image path(s) lead outside" in text and "(and 1 more)" in text
    assert "line 3: '../../x.jpg'" in text and "line 5:" in text and "line 6: '../y.jpg'" in text
    assert "allow_outside_root: true" in text


def test_csv_allow_outside_root(tmp_path):
    rows = ["a.jpg,happy", "../x.jpg,sad"]
    dataset = _csv_dataset(tmp_path, rows, allow_outside_root=True).load("all")
    assert [str(p) for p in dataset.images.paths] == [str(tmp_path / "data" / "a.jpg"),
                                                      str(tmp_path / "data" / "../x.jpg")]
    # the opt-in is part of the dataset's identity; the default leaves existing fingerprints unchanged
    plain = _csv_dataset(tmp_path, ["a.jpg,happy"])
    assert "allow_outside_root" not in plain.fingerprint_tag()["options"]
    assert _csv_dataset(tmp_path, rows, allow_outside_root=True).fingerprint_tag()["options"]["allow_outside_root"]


def test_confined_paths_default_labels(tmp_path):
    assert confined_paths(tmp_path, ["a", "b/c"], "src") == [tmp_path / "a", tmp_path / "b/c"]
    with pytest.raises(ConfigError, match="entry 2: '../b'"):
        confined_paths(tmp_path, ["a", "../b"], "src")


# ----------------------------------------------------------------------------------------------- reports

EVIL_MODEL = "<script>alert(1)</script>|=cmd|' /C calc'!A0"
EVIL_TASK = "[x](javascript:alert(1))|`t`\n<b>&"


@pytest.fixture
def evil_table():
    runs = [make_results(EVIL_MODEL, {EVIL_TASK: {"accuracy": (0.5, (0.4, 0.6), True)}}),
            make_results("@SUM(A1)", {EVIL_TASK: {"accuracy": (0.7, None, True)}})]
    return build_table(runs)


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_cells_escaped(evil_table):
    md = to_markdown(evil_table)
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2  # header, rule, two runs: no cell broke onto a new line
    assert {_unescaped_pipes(r) for r in rows} == {len(evil_table.columns) + 2}
    assert "<" not in md and ">" not in md and "](" not in md.replace("\\](", "")
    assert "&lt;script&gt;" in md


def test_md_escape_rules():
    assert md_escape("a|b") == "a\\|b" and md_escape("`x`") == "\\`x\\`" and md_escape("a\\b") == "a\\\\b"
    assert md_escape("<i>&") == "&lt;i&gt;&amp;" and md_escape("[a](b)") == "\\[a\\](b)"
    assert md_escape("a\r\nb") == "a  b"
    assert md_escape("81.05 [79.25, 82.75]") == "81.05 [79.25, 82.75]"  # numbers stay readable


def test_run_leaderboard_escaped():
    results = make_results(EVIL_MODEL, {"t": {"accuracy": (0.5, (0.4, 0.6), True)}})
    results["tasks"][0]["name"] = results["records"][0]["task"] = EVIL_TASK
    md = leaderboard_markdown(results)
    assert "<" not in md and ">" not in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len({_unescaped_pipes(r) for r in table}) == 1


def test_csv_cells_neutralised(evil_table):
    rows = list(csv.reader(io.StringIO(to_csv(evil_table))))
    header, body = rows[0], rows[1:]
    cells = {(r[0], header[i]): r[i] for r in body for i in range(len(r))}
    assert cells[("'@SUM(A1)", "run")] == "'@SUM(A1)"
    for r in body:
        for value in r:
            assert not value.startswith(("=", "+", "@", "\t", "\r")) and not re.match(r"-[^0-9.]", value)
        assert float(r[header.index("value")]) in (0.5, 0.7)  # numbers stay numbers
    assert [csv_cell(v) for v in ("-0.25", -0.25, "-", "+1+1", "\t1", "=1", "safe")] == \
        ["-0.25", -0.25, "'-", "'+1+1", "'\t1", "'=1", "safe"]


def test_latex_escapes_every_special():
    text = "\\{}%$#_&~^"
    out = latex_escape(text)
    assert out == ("\\textbackslash{}\\{\\}\\%\\$\\#\\_\\&\\textasciitilde{}\\textasciicircum{}")
    stripped = re.sub(r"\\(textbackslash|textasciitilde|textasciicircum)\{\}|\\[{}%$#_&]", "", out)
    assert not set(stripped) & set(text)


def test_latex_table_and_notes_stay_escaped(evil_table):
    evil_table.notes.append("note\n\\input{/etc/passwd}")
    tex = to_latex(evil_table)
    assert all(line.startswith("% note:") for line in tex.splitlines() if "\\input" in line)  # inside a comment
    assert "\\textless{}b\\textgreater{}\\&" in tex and "{[}x{]}" in tex


def test_html_table_escapes_everything(evil_table):
    html = to_html_table(evil_table)
    assert "<script" not in html and "<b>" not in html and "&lt;script&gt;" in html
    for value in re.findall(r'="([^"]*)"', html):  # every attribute value is closed and escaped
        assert "<" not in value and ">" not in value


def test_non_numeric_value_reads_as_na():
    results = make_results("m", {"t": {"accuracy": ("<b>0.9</b>", ["a", "b"], True)}})
    table = build_table([results])
    assert "n/a" in to_markdown(table) or "–" in to_markdown(table)
    assert "<b>" not in to_markdown(table) and "<b>" not in to_html_table(table)


def test_pairs_csv_confined_unless_allowed(tmp_path):
    from facebench.data.pairs import PairsCSV

    (tmp_path / "out").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "out" / name).write_bytes(b"x")
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "pairs.csv").write_text("image_a,image_b,same\n../out/a.jpg,../out/b.jpg,1\n")
    with pytest.raises(ConfigError, match=r"2 image path\(s\) lead outside.*pair 1: '../out/a.jpg'"):
        PairsCSV(path=str(folder)).load("test")
    dataset = PairsCSV(path=str(folder), allow_outside_root=True).load("test")
    assert [Path(p).resolve() for p in dataset.images.paths] == [tmp_path / "out" / "a.jpg", tmp_path / "out" / "b.jpg"]
