"""Output folders and files that never destroy what facebench did not write.

Conventions:

- A run folder holds ``.facebench-run``, a report folder ``.facebench-report``: a small JSON marker
  ``{"kind": ..., "facebench_version": ...}``. facebench writes into, replaces or clears an existing
  folder only when it is empty or carries the marker of its kind. A run folder from before markers
  existed is accepted as a run folder when its ``results.json`` and ``manifest.json`` both parse as
  JSON objects and ``results.json`` has a ``schema_version`` (what every facebench run wrote).
- A folder is written whole into a temporary sibling ``<name>.tmp-<random>`` (same filesystem),
  which carries the marker from its first moment, and renamed into place. A folder being replaced is
  first renamed to ``<name>.old-<random>`` and removed only once the new one is in place, so no file of
  the previous folder survives and a killed writer leaves the previous folder intact. Siblings
  ``.tmp-``/``.old-`` of dead writers are removed on the next write, only when they carry the marker.
- Files are written to a temporary name and renamed (``atomic_write_bytes``), with the user's umask.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Callable

from facebench.atomic import atomic_write_text
from facebench.errors import OutputError

RUN, REPORT = "run", "report"
MARKERS = {RUN: ".facebench-run", REPORT: ".facebench-report"}
WHAT = {RUN: "run folder", REPORT: "report folder"}


def marker_path(folder: Path, kind: str) -> Path:
    return Path(folder) / MARKERS[kind]


def read_marker(folder: Path, kind: str) -> dict | None:
    """The marker's content when ``folder`` carries a valid marker of ``kind``, else None."""
    try:
        data = json.loads(marker_path(folder, kind).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == kind else None


def write_marker(folder: Path, kind: str, **extra) -> None:
    import facebench

    atomic_write_text(marker_path(folder, kind),
                      json.dumps({"kind": kind, "facebench_version": facebench.__version__, **extra},
                                 sort_keys=True) + "\n")


def _json_object(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_legacy_run(folder: Path) -> bool:
    """A run folder written before markers: results.json (with schema_version) and manifest.json parse."""
    results = _json_object(Path(folder) / "results.json")
    return results is not None and "schema_version" in results and _json_object(Path(folder) / "manifest.json") is not None


def is_ours(folder: Path, kind: str) -> bool:
    """Whether ``folder`` is a folder of ``kind`` that facebench wrote (marker, or a legacy run folder)."""
    return read_marker(folder, kind) is not None or (kind == RUN and is_legacy_run(folder))


def is_empty_dir(folder: Path) -> bool:
    try:
        return Path(folder).is_dir() and not any(Path(folder).iterdir())
    except OSError:
        return False


def check_target(folder: str | Path, kind: str, *, flag: str = "--out") -> bool:
    """Raise ``OutputError`` unless facebench may write ``folder``; return True when it holds a
    previous folder of ``kind`` that would be replaced (False: absent or empty)."""
    folder = Path(folder)
    what = WHAT[kind]
    if not folder.exists():
        if folder.is_symlink():
            raise OutputError(f"{folder} is a broken symbolic link; remove it or choose another {flag} folder.")
        _check_creatable(folder, what, flag)
        return False
    if not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder; choose another {flag} folder (facebench never "
                          f"replaces a file it did not write).")
    if is_empty_dir(folder):
        return False
    if is_ours(folder, kind):
        return True
    detail = "" if os.access(folder, os.R_OK | os.X_OK) else " (it cannot be read)"
    raise OutputError(f"{folder} is not empty and is not a facebench {what} (no {MARKERS[kind]} marker){detail}: "
                      f"refusing to write into it, so that none of its files is overwritten or mixed with "
                      f"facebench's. Choose a new or empty {flag} folder, or move its files away.")


def _check_creatable(folder: Path, what: str, flag: str) -> None:
    """Fail early (before any model runs) when the nearest existing ancestor of ``folder`` is a file
    or not writable; the final write checks again."""
    ancestor = folder.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot create {what} {folder}: {ancestor} is a file, not a folder; choose a writable "
                          f"{flag} folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create {what} {folder}: {ancestor} is not writable; choose a writable "
                          f"{flag} folder.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_siblings(final: Path, kind: str) -> list[Path]:
    """Remove ``<name>.tmp-*`` folders of dead writers (same host, process gone) and ``<name>.old-*``
    folders left beside a folder that is in place; each only when it carries the marker of ``kind``."""
    removed = []
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return removed
    name = glob.escape(final.name)
    for path in list(parent.glob(f"{name}.tmp-*")) + list(parent.glob(f"{name}.old-*")):
        if not path.is_dir() or path.is_symlink() or not is_ours(path, kind):
            continue
        if ".tmp-" in path.name[len(final.name):]:
            marker = read_marker(path, kind) or {}
            pid = int(marker.get("pid") or 0)  # none: finished writing, killed before the rename
            if pid and (marker.get("host") != socket.gethostname() or _alive(pid)):
                continue
        elif not final.exists():  # killed between the two renames: the .old- folder is the only copy
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def write_folder(final: str | Path, kind: str, write: Callable[[Path], None], *, replace: bool,
                 flag: str = "--out") -> Path:
    """Write a folder of ``kind`` at ``final`` through ``write(tmp)`` into a temporary sibling, then
    rename it into place. ``replace``: a previous folder of the same kind may be replaced (it is moved
    aside and removed after the rename); otherwise one in the way is an error. A symbolic link is written
    through (its target is replaced, the link kept). Returns ``final``."""
    final = Path(final)
    if final.is_symlink() and final.exists():
        final = final.resolve()
    previous = check_target(final, kind, flag=flag)
    if previous and not replace:
        raise OutputError(f"{final} holds an earlier facebench {WHAT[kind]}; pass --force to replace it, "
                          f"or choose another {flag} folder.")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_siblings(final, kind)
        tmp = final.parent / f"{final.name}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir(mode=0o777)  # the umask applies
    except OSError as err:
        raise OutputError(f"cannot create {WHAT[kind]} {final}: {err.strerror or err}; choose a writable "
                          f"{flag} folder.") from None
    try:
        write_marker(tmp, kind, host=socket.gethostname(), pid=os.getpid())  # a stale tmp is recognisable
        write(tmp)
        write_marker(tmp, kind)
        _swap_into_place(tmp, final, kind, flag, replace)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise OutputError(f"could not write {WHAT[kind]} {final}: {err.strerror or err} "
                              f"({getattr(err, 'filename', None) or final}); nothing was changed there.") from None
        raise
    return final


def _swap_into_place(tmp: Path, final: Path, kind: str, flag: str, replace: bool) -> None:
    """Rename ``tmp`` to ``final``; an empty folder in the way is removed, a previous folder of ``kind``
    (with ``replace``) moved aside and removed after the rename; anything else is an error (it appeared
    while this one was written, e.g. a concurrent run into the same folder)."""
    if not final.exists() and not final.is_symlink():
        os.rename(tmp, final)
        return
    if is_empty_dir(final):
        os.rmdir(final)
        os.rename(tmp, final)
        return
    if check_target(final, kind, flag=flag) and not replace:  # raises when it is not ours
        raise OutputError(f"{final} was written by another facebench process while this one ran; nothing was "
                          f"replaced. Pass --force to replace it, or choose another {flag} folder.")
    old = final.parent / f"{final.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)  # put the previous folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["RUN", "REPORT", "MARKERS", "check_target", "write_folder", "is_ours", "is_empty_dir", "read_marker",
           "write_marker", "is_legacy_run", "remove_stale_siblings"]
