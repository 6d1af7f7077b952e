"""Image paths read from label files stay inside their dataset's folder.

A CSV or label file names images by relative path; a hostile or mistaken row such as ``../../x.jpg``
or ``/etc/passwd`` would make facebench read (and fingerprint, and cache) a file outside the dataset.
``confined_paths`` refuses such rows unless the suite opts in with ``allow_outside_root: true`` (a
``dataset_args`` key of the loaders that read paths from files, part of the dataset fingerprint).

The check is lexical: a path is outside when it is absolute or when ``..`` components climb above the
root after normalisation. Symbolic links inside the root are followed as they are (a dataset folder of
links into a shared store is common and was put there by its owner); resolving every link would also
cost a system call per image on every run.

The check and the join are vectorised for label files of 10^6 rows: column string operations
(``numpy.char``) find the few rows that could leave the root (absolute, a drive, or holding ``..``) and
only those are judged one by one; ``confined_strings`` joins the root to every row with one string
operation, giving the same strings as ``str(root / rel)`` (the rare rows pathlib would rewrite go
through pathlib).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

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


def outside_mask(rels) -> np.ndarray:
    """``is_outside`` of every entry of ``rels`` as a bool array, judging one by one only the rows that
    column string operations flag as possibly outside (a leading slash or backslash, ``x:``, or ``..``)."""
    arr = np.asarray(rels, dtype=str)
    if arr.size == 0:
        return np.zeros(0, dtype=bool)
    maybe = (np.char.startswith(arr, "/") | np.char.startswith(arr, "\\") | (np.char.find(arr, ":", 1, 2) == 1)
             | (np.char.find(arr, "..") >= 0))
    mask = np.zeros(arr.shape, dtype=bool)
    candidates = np.flatnonzero(maybe)
    mask[candidates] = [is_outside(rel) for rel in arr[candidates].tolist()]
    return mask


def refuse_outside(root: Path, rels, source: str, rows: Sequence | Callable[[int], str] | None = None) -> None:
    """ConfigError naming the first ``SHOWN`` entries of ``rels`` that leave ``root``, if any. ``rows`` labels
    each entry in the message: a sequence, a function of the 0-based position, or None ("entry <1-based>")."""
    bad = np.flatnonzero(outside_mask(rels))
    if not len(bad):
        return
    label = (rows if callable(rows) else (lambda i: f"entry {i + 1}") if rows is None else rows.__getitem__)
    shown = "; ".join(f"{label(int(i))}: {str(rels[i])!r}" for i in bad[:SHOWN])
    more = f" (and {len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
    raise ConfigError(
        f"{source}: {len(bad)} image path(s) lead outside the dataset folder {root}: {shown}{more}. "
        f"Write paths relative to that folder, or set `dataset_args: {{allow_outside_root: true}}` "
        f"for this task if the images really live elsewhere.")


def confined_paths(root: Path, rels: Sequence[str], source: str, allow_outside: bool = False,
                   rows: Sequence | Callable[[int], str] | None = None) -> list[Path]:
    """``root / rel`` for each ``rel``; a ConfigError listing the first offending rows when one leaves
    ``root`` (absolute, or ``..`` above it) and ``allow_outside`` is false. ``rows`` labels each entry
    in the message (e.g. "line 7", or a function of the 0-based position; default "entry <1-based position>")."""
    root = Path(root)
    if not allow_outside:
        refuse_outside(root, rels, source, rows)
    return [root / rel for rel in rels]


def needs_pathlib(arr: np.ndarray) -> np.ndarray:
    """Rows whose ``root / rel`` pathlib may rewrite (absolute, empty, ``.`` parts, doubled or trailing slashes);
    a superset (also ``..`` parts and hidden names), as these rows are joined by pathlib itself."""
    return ((arr == "") | np.char.startswith(arr, "/") | np.char.startswith(arr, ".") | np.char.endswith(arr, "/")
            | (np.char.find(arr, "/.") >= 0) | (np.char.find(arr, "//") >= 0))


def joined_strings(root: Path, rels) -> list[str]:
    """``str(root / rel)`` for each ``rel``, by one string concatenation on the column; the rows that
    pathlib would rewrite (see ``needs_pathlib``), and every row where the separator is not ``/``, go
    through pathlib itself."""
    root = Path(root)
    arr = np.asarray(rels, dtype=str)
    if os.sep != "/" or arr.size == 0:
        return [str(root / rel) for rel in arr.tolist()]
    base = str(root)
    prefix = "" if base == "." else base if base.endswith("/") else base + "/"
    out = np.char.add(prefix, arr).tolist()
    for i in np.flatnonzero(needs_pathlib(arr)).tolist():
        out[i] = str(root / str(arr[i]))
    return out


def confined_strings(root: Path, rels, source: str, allow_outside: bool = False,
                     rows: Sequence | Callable[[int], str] | None = None) -> list[str]:
    """``confined_paths`` as strings (what ``FileImages`` holds), vectorised for label files of 10^6 rows:
    the same refusal and message, and ``str(root / rel)`` for each ``rel``."""
    if not allow_outside:
        refuse_outside(Path(root), rels, source, rows)
    return joined_strings(root, rels)
