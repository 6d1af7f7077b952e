"""The README's command lines parse against the CLI (issue 22, item 7): every ``facebench`` command in a code block
parses with ``facebench.cli.build_parser()`` (placeholders in capitals stand for arguments), and every ``--flag``
that an inline ``facebench <command> ...`` span names is an option of that command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from facebench.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("run", "rescore", "compare", "baseline", "report", "validate", "list", "data", "models", "cache")
_CALL = re.compile(r"(?:python -m )?facebench (" + "|".join(COMMANDS) + r")\b[^`&|;\n]*")


def _code_lines(text: str) -> list[str]:
    """Lines of fenced blocks and of indented blocks (4 spaces after a blank line)."""
    out, fenced, previous_blank = [], False, True
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or (line.startswith("    ") and (previous_blank or (out and out[-1] is not None))):
            out.append(line.strip())
        else:
            out.append(None)
        previous_blank = not line.strip()
    return [line for line in out if line]


def _code_commands() -> list[str]:
    found = []
    for line in _code_lines((REPO / "README.md").read_text()):
        line = re.sub(r"^(?:- )?run: ", "", line)
        for part in re.split(r"&&|;", line):
            part = re.sub(r"^\s*(?:[A-Z_]+=\S+\s+)+", "", part.strip())  # FACEBENCH_DATA=... facebench run
            if _CALL.match(part):
                found.append(part)
    return found


def _inline_spans() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [m.group(0) for span in re.findall(r"`([^`\n]+)`", text) for m in [_CALL.search(span)] if m]


def _subparser(command: str):
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[command]


def test_readme_has_commands_to_check():
    assert len(_code_commands()) >= 3 and len(_inline_spans()) >= 10  # the extraction finds them


@pytest.mark.parametrize("command", _code_commands())
def test_code_block_commands_parse(command):
    args = shlex.split(command.replace("python -m facebench", "facebench"))[1:]
    try:
        build_parser().parse_args(args)
    except SystemExit as exit_:
        pytest.fail(f"README command does not parse (exit {exit_.code}): {command}")


@pytest.mark.parametrize("span", _inline_spans())
def test_inline_spans_name_real_options(span):
    command = _CALL.match(span.replace("python -m facebench", "facebench")).group(1)
    known = set(_subparser(command)._option_string_actions)
    flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", span)
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{span!r} names options that `facebench {command}` does not have: {unknown}"
