"""Image paths read from label files stay inside their dataset's folder.

A CSV or label file names images by relative path; a hostile or mistaken row such as ``../../x.jpg``
or ``/etc/passwd`` would make facebench read (and fingerprint, and cache) a file outside the dataset.
``confined_paths`` refuses such rows unless the suite opts in with ``allow_outside_root: true`` (a
``dataset_args`` key of the loaders that read paths from files, part of the dataset fingerprint).

The check is lexical: a path is outside when it is absolute or when ``..`` components climb above the
root after normalisation. Symbolic links inside the root are followed as they are (a dataset folder of
links into a shared store is common and was put there by its owner); resolving every link would also
cost a system call per image on every run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from facebench.errors import ConfigError

SHOWN = 3  # offending rows named in the error


def is_outside(rel: str) -> bool:
    """Whether the relative path ``rel`` (as written in a label file) leaves its root."""
    rel = str(rel).replace("\\", "/")
    if rel.startswith("/") or os.path.isabs(rel) or rel[1:2] == ":":
        return True
    if ".." not in rel:
        return False  # the common case, without normalising
    norm = os.path.normpath(rel).replace("\\", "/")
    return norm == ".." or norm.startswith("../")


def confined_paths(root: Path, rels: Sequence[str], source: str, allow_outside: bool = False,
                   rows: Sequence | None = None) -> list[Path]:
    """``root / rel`` for each ``rel``; a ConfigError listing the first offending rows when one leaves
    ``root`` (absolute, or ``..`` above it) and ``allow_outside`` is false. ``rows`` labels each entry
    in the message (e.g. "line 7"; default "entry <1-based position>")."""
    root = Path(root)
    if not allow_outside:
        bad = [i for i, rel in enumerate(rels) if is_outside(rel)]
        if bad:
            labels = rows if rows is not None else [f"entry {k}" for k in range(1, len(rels) + 1)]
            shown = "; ".join(f"{labels[i]}: {rels[i]!r}" for i in bad[:SHOWN])
            more = f" (and {len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
            raise ConfigError(
                f"{source}: {len(bad)} image path(s) lead outside the dataset folder {root}: {shown}{more}. "
                f"Write paths relative to that folder, or set `dataset_args: {{allow_outside_root: true}}` "
                f"for this task if the images really live elsewhere.")
    return [root / rel for rel in rels]
