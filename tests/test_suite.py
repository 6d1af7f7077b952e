import textwrap

import pytest

from facebench.cli import main
from facebench.suite import SuiteError, load_suite, validate_suite


def write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


GOOD = """\
name: t
defaults:
  batch_size: 64
tasks:
  - name: a
    dataset: synth
    split: test
    protocol: closed_set
"""


def test_good_suite_validates(tmp_path, capsys):
    p = write(tmp_path, GOOD)
    assert main(["validate", str(p)]) == 0
    assert "OK (1 tasks)" in capsys.readouterr().out


def test_misspelt_key_gives_line_and_suggestion(tmp_path, capsys):
    p = write(tmp_path, GOOD.replace("  batch_size: 64", "  batchsize: 64"))
    assert main(["validate", str(p)]) != 0
    err = capsys.readouterr().err
    assert f"{p}:3:" in err and "unknown key 'batchsize' in defaults" in err and 'Did you mean "batch_size"' in err


def test_misspelt_task_key(tmp_path):
    p = write(tmp_path, GOOD.replace("    protocol: closed_set", "    protocl: closed_set"))
    with pytest.raises(SuiteError) as info:
        load_suite(p)
    text = str(info.value)
    assert ":8:" in text and 'Did you mean "protocol"' in text


def test_wrong_type(tmp_path):
    p = write(tmp_path, GOOD.replace("batch_size: 64", "batch_size: many"))
    with pytest.raises(SuiteError, match=r":3: defaults: 'batch_size' must be an integer"):
        load_suite(p)


def test_unknown_dataset_and_protocol(tmp_path):
    p = write(tmp_path, GOOD.replace("dataset: synth", "dataset: synht").replace("protocol: closed_set",
                                                                                 "protocol: closedset"))
    with pytest.raises(SuiteError) as info:
        validate_suite(p)
    assert 'Did you mean "closed_set"' in str(info.value)


def test_unknown_protocol_param(tmp_path):
    p = write(tmp_path, GOOD + "    params: {unsuported_classes: drop}\n")
    with pytest.raises(SuiteError, match=r'no parameter .unsuported_classes.*Did you mean "unsupported_classes"'):
        validate_suite(p)


def test_bad_protocol_choice(tmp_path):
    p = write(tmp_path, GOOD + "    params: {unsupported_classes: dorp}\n")
    with pytest.raises(SuiteError, match=r'must be one of drop, error.*Did you mean "drop"'):
        validate_suite(p)


def test_unknown_dataset_arg(tmp_path):
    p = write(tmp_path, GOOD + "    dataset_args: {domian: blur}\n")
    with pytest.raises(SuiteError, match=r'no option .domian.*Did you mean "domain"'):
        validate_suite(p)


def test_missing_dataset_folder_names_layout(tmp_path, capsys):
    text = GOOD.replace("dataset: synth", "dataset: imagefolder").replace(
        "    split: test", f"    split: test\n    path: {tmp_path / 'nowhere'}")
    p = write(tmp_path, text)
    assert main(["validate", str(p)]) != 0
    err = capsys.readouterr().err
    assert "nowhere/test does not exist" in err and "Expected layout" in err


def test_missing_data_skip_is_a_note(tmp_path, capsys):
    text = GOOD.replace("  batch_size: 64", "  missing_data: skip").replace("dataset: synth", "dataset: imagefolder")
    text = text.replace("    split: test", f"    split: test\n    path: {tmp_path / 'nowhere'}")
    p = write(tmp_path, text)
    assert main(["validate", str(p)]) == 0
    assert "will be skipped" in capsys.readouterr().out


def test_no_tasks_and_invalid_yaml(tmp_path):
    with pytest.raises(SuiteError, match="no `tasks:`"):
        load_suite(write(tmp_path, "name: x\n"))
    with pytest.raises(SuiteError, match="invalid YAML"):
        load_suite(write(tmp_path, "tasks: [\n", "bad.yaml"))


def test_cli_overrides_reach_defaults(tmp_path):
    suite = load_suite(write(tmp_path, GOOD), overrides={"batch_size": 8, "seed": 3})
    assert suite.defaults["batch_size"] == 8 and suite.defaults["seed"] == 3


def test_shipped_suites_validate():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml")):
        validate_suite(path, {"missing_data": "skip"})
