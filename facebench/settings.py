"""The run settings: one typed definition of each, from which everything else is generated.

A suite's ``defaults:`` keys, the ``facebench run|rescore|validate`` override flags, the keyword
arguments of ``facebench.run``/``facebench.evaluate`` and the manifest's record of a run's settings
all come from ``SETTINGS``; ``check_value`` is the one check of a value's type and range (suite files,
command line and API alike).

Conventions: a value of ``None`` in an override means "not given" (the suite's value stands); an
integer is accepted where a number (float) is; a bool is never accepted as an integer. Only
``facebench.errors`` is imported here (no engine, model, protocol or report code).
"""

from __future__ import annotations

import argparse
import copy
import re
from dataclasses import dataclass
from typing import Any

from facebench.errors import did_you_mean

CLI_KINDS = ("value", "onoff", "switch", "optional", "none")


@dataclass(frozen=True)
class Setting:
    """One run setting.

    ``types``: the Python types a value may have (``type(None)`` for null). ``choices``: the strings
    allowed when the value is a string (``aliases`` are accepted too, unadvertised, with the same
    meaning as documented in ``help``); ``pattern`` (a regex, case-insensitive) instead of choices, with
    ``pattern_help`` naming what it allows. ``low``/``high``: bounds of a number, excluded when ``open``.
    ``cli``: how the override flag ``--name-with-dashes`` parses -- ``value`` (one value), ``onoff``
    (``on|off`` -> True/False), ``switch`` (a bare flag -> True), ``optional`` (bare -> True, or a
    value), ``none`` (no override flag; ``facebench run`` has its own, e.g. ``--model``).
    """

    name: str
    types: tuple
    default: Any
    help: str
    choices: tuple = ()
    aliases: tuple = ()
    pattern: str | None = None
    pattern_help: str = ""
    low: float | None = None
    high: float | None = None
    open: bool = False
    cli: str = "value"
    metavar: str | None = None

    @property
    def flag(self) -> str | None:
        """The override flag's spelling (``--batch-size``), or None when there is none."""
        return None if self.cli == "none" else "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """What values are allowed, in words: ``an integer >= 1``, ``one of error, skip``, ..."""
        return " or ".join(_type_words(self, t) for t in self.types)


SETTINGS: tuple[Setting, ...] = (
    Setting("batch_size", (int,), 256, "images per forward pass", low=1),
    Setting("device", (str,), "auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps",
            pattern=r"auto|cpu|mps|cuda(:\d+)?", pattern_help="auto, cpu, cuda, cuda:N or mps"),
    Setting("amp", (str, bool), "none", "mixed precision for the forward pass (true means bf16; fp16 needs a GPU)",
            choices=("none", "bf16", "fp16"), aliases=("off", "false", "true"), metavar="{none,bf16,fp16}"),
    Setting("num_workers", (int, str), "auto", "DataLoader workers (integer or auto)", choices=("auto",), low=0),
    Setting("seed", (int,), 0, "seed of the bootstrap resampling", low=0),
    Setting("bootstrap", (int,), 1000, "bootstrap resamples for CIs (0 = none)", low=0),
    Setting("confidence", (float,), 0.95, "CI level (default 0.95)", low=0, high=1, open=True),
    Setting("data_root", (str, type(None)), None, "folder holding the datasets (default: $FACEBENCH_DATA)"),
    Setting("missing_data", (str,), "error", "what to do when a task's data is absent",
            choices=("error", "skip"), metavar="{error,skip}"),
    Setting("on_bad_image", (str,), "error",
            "unreadable image files: stop before the model loads (error, the default), or leave them out of "
            "their task and count them in results.json (skip)", choices=("error", "skip"), metavar="{error,skip}"),
    Setting("shard_size", (int,), 2048, "samples per shard of the prediction store (an interrupted run resumes "
            "from its last whole shard)", low=1),
    Setting("prefetch", (int,), 3, "batches a background thread reads ahead into reused (pinned, on CUDA) buffers; "
            "0 reads each batch in line (predictions are the same either way)", low=0, high=64),
    Setting("decode_cache", (bool,), True, "decode each split once into a memory-mapped uint8 cache in the cache "
            "folder (default on)", cli="onoff"),
    Setting("reuse_evaluations", (bool,), True, "read a task's result back from the cache folder when its "
            "predictions, data, parameters and facebench code are unchanged (default on; off recomputes)",
            cli="onoff"),
    Setting("channels_last", (bool,), False, "channels-last memory format for inputs and conv weights",
            cli="switch"),
    Setting("compile", (bool, str), False, "torch.compile the model's forward (optional mode: reduce-overhead, "
            "max-autotune)", choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
            cli="optional", metavar="MODE"),
    Setting("limit", (int, type(None)), None, "evaluate a deterministic subset of N samples per split (N pairs "
            "of a verification split; ranked by a hash of the ids); results are marked partial", low=1, metavar="N"),
    Setting("tasks", (list, type(None)), None, "run only the tasks whose names match one of these glob patterns "
            "(`--tasks` of `run`, repeatable); results are marked partial", cli="none"),
    Setting("model", (str, type(None)), None, "registered model name (facebench list models); `facebench run "
            "--model` and the model argument of the API take precedence", cli="none"),
    Setting("model_args", (dict,), {}, "adapter settings of the model (`--model-args key=value,...` and the API's "
            "model_args are merged over them)", cli="none"),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
_TYPE_WORDS = {int: "an integer", str: "a string", float: "a number", bool: "true/false", dict: "a mapping",
               list: "a list", type(None): "null"}


def _type_words(setting: Setting, t: type) -> str:
    """One type of ``setting`` in words, with its choices or range."""
    if t is str and setting.choices:
        return "one of " + ", ".join(setting.choices) if len(setting.choices) > 1 else setting.choices[0]
    if t is str and setting.pattern:
        return setting.pattern_help
    words = _TYPE_WORDS.get(t, t.__name__)
    if t in (int, float):
        low, high = (">", "<") if setting.open else (">=", "<=")
        bounds = [f"{low} {_num(setting.low)}"] if setting.low is not None else []
        bounds += [f"{high} {_num(setting.high)}"] if setting.high is not None else []
        words += (" " + " and ".join(bounds)) if bounds else ""
    return words


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def defaults() -> dict[str, Any]:
    """A fresh dict of every setting's default (mutable values copied)."""
    return {s.name: copy.deepcopy(s.default) for s in SETTINGS}


def _has_type(value, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _in_range(setting: Setting, value) -> bool:
    if isinstance(value, str):
        if setting.choices:
            return value in setting.choices or value in setting.aliases
        return setting.pattern is None or re.fullmatch(setting.pattern, value, re.IGNORECASE) is not None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN
            return False
        if setting.low is not None and (value <= setting.low if setting.open else value < setting.low):
            return False
        if setting.high is not None and (value >= setting.high if setting.open else value > setting.high):
            return False
    return True


def check_value(name: str, value) -> str | None:
    """Why ``value`` cannot be setting ``name`` (its type, choices or range), or None when it can.

    The message reads ``'batch_size' must be an integer >= 1, got 0.``; an unknown name gets a did-you-mean.
    """
    setting = BY_NAME.get(name)
    if setting is None:
        return (f"unknown setting {name!r}.{did_you_mean(name, BY_NAME)} "
                f"Settings: {', '.join(BY_NAME)}.")
    if not _has_type(value, setting.types) or not _in_range(setting, value):
        return f"{name!r} must be {setting.allowed()}, got {value!r}."
    return None


def _cli_value(setting: Setting):
    """argparse ``type=`` for a ``value``/``optional`` flag: the text converted to the setting's type, then
    checked by ``check_value`` (so a bad value is an argparse usage error naming the flag, exit 2)."""

    def parse(text: str):
        value: Any = text
        if int in setting.types and re.fullmatch(r"[+-]?\d+", text.strip()):
            value = int(text)
        elif float in setting.types:
            try:
                value = float(text)
            except ValueError:
                pass
        problem = check_value(setting.name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = setting.name
    return parse


def add_cli_arguments(parser) -> None:
    """Add every setting's override flag to ``parser`` (an ArgumentParser or an argument group); each
    flag's default is None, meaning "not given". Read them back with ``from_cli``."""
    for s in SETTINGS:
        if s.cli == "value" and s.choices and not {int, float} & set(s.types):  # a word: argparse's choices
            parser.add_argument(s.flag, choices=list(s.choices), default=None, metavar=s.metavar, help=s.help)
        elif s.cli == "value":
            parser.add_argument(s.flag, type=_cli_value(s), default=None, metavar=s.metavar, help=s.help)
        elif s.cli == "onoff":
            parser.add_argument(s.flag, choices=["on", "off"], default=None, help=s.help)
        elif s.cli == "switch":
            parser.add_argument(s.flag, action="store_true", default=None, help=s.help)
        elif s.cli == "optional":
            parser.add_argument(s.flag, nargs="?", const=True, type=_cli_value(s), default=None,
                                metavar=s.metavar, help=s.help)


def from_cli(args) -> dict[str, Any]:
    """The overrides given on the command line (parsed by flags from ``add_cli_arguments``): setting
    name -> typed value, only for the flags given (``--decode-cache off`` -> ``{"decode_cache": False}``)."""
    out = {}
    for s in SETTINGS:
        value = getattr(args, s.name, None) if s.flag else None
        if value is None:
            continue
        out[s.name] = (value == "on") if s.cli == "onoff" else value
    return out


def canonical(name: str, value):
    """``value`` of setting ``name`` in its documented spelling: amp ``true`` -> ``bf16``, ``false``/``off``
    -> ``none``; every other value unchanged."""
    if name == "amp":
        if value in (None, False, "off", "false"):
            return "none"
        if value is True or value == "true":
            return "bf16"
    return value


def manifest_view(values: dict) -> dict[str, Any]:
    """The settings as they were run, for the manifest: every setting in ``SETTINGS`` order, from
    ``values`` (a suite's defaults with the overrides applied; pass the model and model_args actually
    used) or its default where absent, in canonical spelling (``canonical``); plain, JSON-ready values."""
    return {s.name: copy.deepcopy(canonical(s.name, values.get(s.name, s.default))) for s in SETTINGS}


def _yaml_words(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def settings_markdown() -> str:
    """A Markdown table of the settings: suite key, command-line flag, default, allowed values, meaning."""
    rows = ["| setting | flag | default | values | meaning |", "| --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        flag = f"`{s.flag}`" if s.flag else f"`--{s.name.replace('_', '-')}` of `run`"
        meaning = s.help.replace("|", "\\|")
        rows.append(f"| `{s.name}` | {flag} | `{_yaml_words(s.default)}` | {s.allowed()} | {meaning} |")
    return "\n".join(rows) + "\n"


def settings_doc(skip: tuple = ()) -> str:
    """The settings but ``skip`` as a plain-text list (one indented line each) for docstrings."""
    return "\n".join(f"    {s.name} (default {_yaml_words(s.default)}): {s.allowed()}; {s.help}"
                     for s in SETTINGS if s.name not in skip)
