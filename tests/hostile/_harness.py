"""The hostile-input harness: run one facebench command on broken input and check what a user sees.

Each case of a ``test_hostile_*.py`` table is a ``Case``: a ``setup(tmp)`` that builds the broken input
under the test's temporary folder and returns the command's arguments, the expected exit code, a
fragment the output must contain (case-insensitive), and the paths (relative to ``tmp``) the command is
allowed to create or change. ``check_case`` runs the command in-process through ``facebench.cli.main``,
and asserts: the exit code, the message, no Python traceback in the output, and that nothing outside
the allowed paths was created, changed or removed (a snapshot of ``tmp`` before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from facebench.cli import main

MINI_SUITE = """\
name: mini
defaults:
  batch_size: 64
  bootstrap: 20
  shard_size: 64
tasks:
  - name: clean
    dataset: synth
    split: test
    protocol: closed_set
    dataset_args: {n: 120}
"""


@dataclass
class Case:
    id: str
    setup: Callable[[Path], list[str]]
    code: int
    message: str
    may_change: tuple[str, ...] = field(default_factory=tuple)  # paths relative to tmp (prefixes)

    def __repr__(self) -> str:  # pytest ids
        return self.id


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` -> a digest of its bytes (folders: 'dir')."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        out[rel] = "dir"
        for name in filenames:
            p = Path(dirpath) / name
            try:
                out[os.path.relpath(p, root)] = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
            except OSError:
                out[os.path.relpath(p, root)] = "unreadable"
    return out


def changed_paths(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``facebench ARGV`` in-process: (exit code, stdout + stderr). An exception escaping ``main``
    is a failure of the contract (the user would see a traceback): it is re-raised."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, out.getvalue() + err.getvalue()


def check_case(case: Case, tmp: Path) -> str:
    """Run ``case`` in ``tmp`` (the test's own folder) and assert its contract; returns the output."""
    tmp = Path(tmp)
    argv = case.setup(tmp)
    before = snapshot(tmp)
    code, output = run_cli(argv)
    after = snapshot(tmp)
    assert code == case.code, f"{case.id}: exit {code}, expected {case.code}\n{output}"
    assert case.message.lower() in output.lower(), f"{case.id}: {case.message!r} not in output:\n{output}"
    assert "Traceback (most recent call last)" not in output, f"{case.id}: traceback in output:\n{output}"
    allowed = tuple(case.may_change)
    outside = sorted(p for p in changed_paths(before, after)
                     if p != "." and not any(p == a or p.startswith(a.rstrip("/") + "/") or a.startswith(p + "/")
                                             for a in allowed))
    assert not outside, f"{case.id}: changed outside the allowed paths {allowed}: {outside}"
    return output
