"""One typed definition of the run settings (issue 17, item 4): ``facebench.settings.SETTINGS``.

The suite's ``defaults:`` keys, the command-line override flags and the API's keyword arguments are
the same set, and a bad value (type, choice or range) is rejected the same way from each of them.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from facebench import settings
from facebench.cli import build_parser, main
from facebench.errors import ConfigError, SuiteError
from facebench.settings import SETTINGS, check_value, from_cli, manifest_view
from facebench.suite import DEFAULT_TYPES, DEFAULTS, load_suite

REPO = Path(__file__).resolve().parents[1]
TASKS = "tasks:\n  - name: a\n    dataset: synth\n    split: test\n    protocol: closed_set\n"

# (setting, a bad value, the command-line spelling of it or None when the CLI cannot spell it)
BAD = [
    ("batch_size", 0, "0"), ("batch_size", "big", "big"), ("batch_size", -3, "-3"), ("batch_size", 2.5, "2.5"),
    ("batch_size", True, None),
    ("bootstrap", -1, "-1"), ("bootstrap", 2.5, "2.5"),
    ("confidence", 1.5, "1.5"), ("confidence", 0, "0"), ("confidence", 1, "1"), ("confidence", "high", "high"),
    ("shard_size", 0, "0"),
    ("prefetch", -1, "-1"),
    ("seed", -1, "-1"), ("seed", "zero", "zero"),
    ("num_workers", "many", "many"), ("num_workers", -1, "-1"),
    ("amp", "fp8", "fp8"), ("amp", 16, None),
    ("missing_data", "ignore", "ignore"), ("on_bad_image", "ignore", "ignore"),
    ("device", "gpu", "gpu"), ("device", "cuda:x", "cuda:x"), ("device", 0, None),
    ("compile", "fast", "fast"), ("compile", 1, None),
    ("decode_cache", "yes", "yes"), ("reuse_evaluations", "no", "no"), ("channels_last", "yes", None),
    ("data_root", 5, None), ("model", 5, None), ("model_args", [1], None),
]


def _yaml_value(value) -> str:
    return json.dumps(value)  # JSON is YAML: 'big' stays a string, 2.5 a number, true a bool


def _suite(tmp_path, defaults_text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ndefaults:\n{defaults_text}{TASKS}")  # defaults on line 3 on
    return path


def _run_parser_flags() -> dict[str, argparse.Action]:
    """The ``run`` subcommand's actions by option string."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {opt: action for action in sub.choices["run"]._actions for opt in action.option_strings}


def _override_group_flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    group = next(g for g in sub.choices[command]._action_groups if g.title == "overrides of the suite's defaults")
    return {opt for action in group._group_actions for opt in action.option_strings}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        return exit_.code


# -- the definition ---------------------------------------------------------------------------------------

def test_every_setting_has_a_default_of_its_own_type_and_a_help_text():
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    for s in SETTINGS:
        assert check_value(s.name, s.default) is None, s.name
        assert isinstance(s.default, s.types), s.name
        assert len(s.help) > 10 and s.allowed(), s.name
        assert s.cli in settings.CLI_KINDS, s.name


def test_defaults_keep_their_values_and_are_fresh():
    expected = {"batch_size": 256, "device": "auto", "amp": "none", "num_workers": "auto", "seed": 0,
                "bootstrap": 1000, "confidence": 0.95, "data_root": None, "missing_data": "error",
                "on_bad_image": "error", "shard_size": 2048, "prefetch": 3, "decode_cache": True,
                "reuse_evaluations": True, "channels_last": False, "compile": False, "limit": None, "tasks": None,
                "model": None, "model_args": {}}
    assert settings.defaults() == expected == DEFAULTS
    first = settings.defaults()
    first["model_args"]["x"] = 1
    assert settings.defaults()["model_args"] == {}


def test_cli_flags_suite_keys_and_api_arguments_are_one_set():
    names = {s.name for s in SETTINGS}
    assert set(DEFAULT_TYPES) == names  # suite defaults: keys
    flags = {s.flag for s in SETTINGS if s.flag}
    for command in ("run", "rescore", "validate"):
        assert _override_group_flags(command) == flags, command
    run_flags = _run_parser_flags()
    assert {"--" + n.replace("_", "-") for n in names} <= set(run_flags)  # --model, --model-args: run's own
    import facebench.api as api

    for fn in (api.evaluate, api.run):
        params = inspect.signature(fn).parameters
        explicit = {n for n in names if n in params}
        assert explicit == {"model", "model_args"}, fn.__name__
        api.check_overrides({n: settings.BY_NAME[n].default for n in names - explicit})  # all accepted
        for n in names - explicit:
            assert n in fn.__doc__, (fn.__name__, n)
    with pytest.raises(ConfigError, match="unknown key 'batchsize'.*Did you mean \"batch_size\""):
        api.check_overrides({"batchsize": 8})


def test_settings_imports_no_layer():
    tree = ast.parse((REPO / "facebench" / "settings.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    facebench_modules = {m for m in imported if m and m.startswith("facebench")}
    assert facebench_modules == {"facebench.errors"}


# -- check_value ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, _cli", BAD)
def test_check_value_rejects_wrong_types_and_ranges(name, value, _cli):
    problem = check_value(name, value)
    assert problem is not None and problem.startswith(f"{name!r} must be ") and repr(value) in problem


@pytest.mark.parametrize("name, value", [
    ("batch_size", 1), ("bootstrap", 0), ("confidence", 0.5), ("confidence", 0.999), ("shard_size", 1),
    ("num_workers", 0), ("num_workers", "auto"), ("amp", "bf16"), ("amp", "fp16"), ("amp", True), ("amp", False),
    ("amp", "off"), ("device", "cpu"), ("device", "cuda:1"), ("device", "CUDA"), ("device", "mps"),
    ("compile", True), ("compile", "max-autotune"), ("compile", "reduce-overhead"), ("data_root", "/data"),
    ("missing_data", "skip"), ("model", "synth-cnn"), ("model_args", {"weights": "x"}), ("seed", 12345),
])
def test_check_value_accepts_what_the_engine_accepts(name, value):
    assert check_value(name, value) is None


def test_unknown_setting_gets_a_suggestion():
    assert 'Did you mean "shard_size"' in check_value("shardsize", 8)


def test_messages_say_what_is_allowed():
    assert check_value("batch_size", 0) == "'batch_size' must be an integer >= 1, got 0."
    assert check_value("confidence", 1.5) == "'confidence' must be a number > 0 and < 1, got 1.5."
    assert check_value("num_workers", "many") == "'num_workers' must be an integer >= 0 or auto, got 'many'."
    assert "one of none, bf16, fp16" in check_value("amp", "fp8")


# -- from a suite file, the command line and the API ------------------------------------------------------

@pytest.mark.parametrize("name, value, _cli", BAD)
def test_bad_suite_defaults_are_rejected_with_their_line(tmp_path, name, value, _cli):
    path = _suite(tmp_path, f"  {name}: {_yaml_value(value)}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert f"{path}:3: defaults: {name!r} must be " in str(err.value)


def test_every_bad_default_of_a_suite_is_reported_at_once(tmp_path):
    path = _suite(tmp_path, "  batch_size: 0\n  confidence: 1.5\n  amp: fp8\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert [p.line for p in err.value.problems] == [3, 4, 5]


@pytest.mark.parametrize("name, value, _cli", BAD)
def test_bad_overrides_to_load_suite_are_named_as_overrides(tmp_path, name, value, _cli):
    with pytest.raises(SuiteError, match=re.escape(f"override: {name!r} must be ")):
        load_suite(_suite(tmp_path, ""), overrides={name: value})


def test_unknown_override_to_load_suite_is_rejected(tmp_path):
    with pytest.raises(SuiteError, match="override: unknown setting 'batchsize'"):
        load_suite(_suite(tmp_path, ""), overrides={"batchsize": 8})


@pytest.mark.parametrize("name, text", [(n, c) for n, _, c in BAD if c is not None])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_command_line_values_exit_2_naming_the_flag(tmp_path, capsys, command, name, text):
    flag = settings.BY_NAME[name].flag
    extra = ["--no-data-check"] if command == "validate" else ["--model", "synth-cnn", "--out", str(tmp_path / "o")]
    code = _exit_code([command, str(_suite(tmp_path, "")), *extra, f"{flag}={text}"])
    assert code == 2
    err = capsys.readouterr().err
    assert flag in err and (f"{name!r} must be" in err or "invalid choice" in err)
    assert not (tmp_path / "o").exists()


def test_validate_rejects_bad_suite_defaults(tmp_path, capsys):
    path = _suite(tmp_path, "  batch_size: big\n  shard_size: 0\n")
    assert main(["validate", str(path), "--no-data-check"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: defaults: 'batch_size' must be an integer >= 1, got 'big'" in err
    assert f"{path}:4: defaults: 'shard_size' must be an integer >= 1, got 0" in err


@pytest.mark.parametrize("name, value, _cli", [b for b in BAD if b[0] not in ("model", "model_args")])
def test_bad_api_overrides_raise_before_anything_runs(tmp_path, monkeypatch, name, value, _cli):
    import facebench
    import facebench.api as api

    monkeypatch.setattr(api, "run_suite", lambda *a, **k: pytest.fail("ran despite a bad override"))
    suite = _suite(tmp_path, "")
    with pytest.raises(ConfigError, match=re.escape(f"facebench.evaluate: {name!r} must be ")):
        facebench.evaluate("synth-cnn", suite, **{name: value})
    with pytest.raises(ConfigError, match=re.escape(f"facebench.run: {name!r} must be ")):
        api.run(suite, "synth-cnn", **{name: value})


# -- the command line ------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["--batch-size", "8"], {"batch_size": 8}),
    (["--device", "cuda:1"], {"device": "cuda:1"}),
    (["--amp", "bf16"], {"amp": "bf16"}),
    (["--num-workers", "4"], {"num_workers": 4}),
    (["--num-workers", "auto"], {"num_workers": "auto"}),
    (["--seed", "7"], {"seed": 7}),
    (["--bootstrap", "0"], {"bootstrap": 0}),
    (["--confidence", "0.9"], {"confidence": 0.9}),
    (["--data-root", "some/folder"], {"data_root": "some/folder"}),
    (["--missing-data", "skip"], {"missing_data": "skip"}),
    (["--on-bad-image", "skip"], {"on_bad_image": "skip"}),
    (["--shard-size", "64"], {"shard_size": 64}),
    (["--prefetch", "0"], {"prefetch": 0}),
    (["--decode-cache", "off"], {"decode_cache": False}),
    (["--decode-cache", "on"], {"decode_cache": True}),
    (["--reuse-evaluations", "off"], {"reuse_evaluations": False}),
    (["--channels-last"], {"channels_last": True}),
    (["--compile"], {"compile": True}),
    (["--compile", "max-autotune"], {"compile": "max-autotune"}),
    (["--limit", "25"], {"limit": 25}),
    ([], {}),
])
def test_from_cli_round_trips_each_flag(argv, expected):
    for command in ("run", "rescore", "validate"):
        target = "run-folder" if command == "rescore" else "s.yaml"
        overrides = from_cli(build_parser().parse_args([command, target, *argv]))
        assert overrides == expected, command
        assert all(check_value(k, v) is None for k, v in overrides.items())


def test_every_flag_is_covered_by_the_round_trip_table():
    source = inspect.getsource(test_from_cli_round_trips_each_flag)
    assert all(f'"{s.flag}"' in source for s in SETTINGS if s.flag)


def test_help_lists_every_override_with_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for s in SETTINGS:
        if s.flag:
            assert s.flag in out and " ".join(s.help.split()) in out, s.name


def test_overrides_from_the_cli_reach_the_suite_defaults(tmp_path):
    args = build_parser().parse_args(["validate", "s.yaml", "--batch-size", "8", "--decode-cache", "off",
                                      "--num-workers", "0", "--compile", "reduce-overhead"])
    suite = load_suite(_suite(tmp_path, "  batch_size: 64\n"), from_cli(args))
    assert (suite.defaults["batch_size"], suite.defaults["decode_cache"], suite.defaults["num_workers"],
            suite.defaults["compile"], suite.defaults["bootstrap"]) == (8, False, 0, "reduce-overhead", 1000)


# -- manifest and documentation ---------------------------------------------------------------------------

def test_manifest_view_lists_every_setting_as_run():
    view = manifest_view({"batch_size": 8, "amp": True, "model": "synth-cnn", "model_args": {"a": 1}})
    assert list(view) == [s.name for s in SETTINGS]
    assert (view["batch_size"], view["amp"], view["model"], view["model_args"]) == (8, "bf16", "synth-cnn", {"a": 1})
    assert view["bootstrap"] == 1000 and manifest_view({"amp": False})["amp"] == "none"
    json.dumps(view)  # JSON-ready
    assert all(check_value(k, v) is None for k, v in view.items())


def test_settings_markdown_has_one_row_per_setting():
    table = settings.settings_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [re.match(r"\| `(\w+)`", row).group(1) for row in rows] == [s.name for s in SETTINGS]
    assert "| `batch_size` | `--batch-size` | `256` | an integer >= 1 |" in table
    assert all(row.count(" | ") == 4 for row in rows)  # no unescaped '|' inside a cell


def test_readme_settings_table_matches_the_definition():
    readme = (REPO / "README.md").read_text()
    header = settings.settings_markdown().splitlines()[0]
    assert header in readme, "README.md lost its settings table (### Settings)"
    start = readme.index(header)
    table = readme[start:].split("\n\n", 1)[0].rstrip("\n") + "\n"
    assert table == settings.settings_markdown(), "regenerate it with facebench.settings.settings_markdown()"


def test_shipped_suites_keep_valid_defaults():
    for path in sorted((REPO / "suites").glob("*.yaml")):
        given = (yaml.safe_load(path.read_text()) or {}).get("defaults") or {}
        assert all(check_value(k, v) is None for k, v in given.items()), path.name


def test_the_prefetch_default_is_the_engines():
    from facebench.engine.inference import InferenceSettings
    from facebench.pipeline.execute import inference_settings

    assert settings.defaults()["prefetch"] == InferenceSettings().prefetch
    assert inference_settings({**settings.defaults(), "prefetch": 0}, progress=False).prefetch == 0
    assert "must be an integer >= 0" in check_value("prefetch", -1)
