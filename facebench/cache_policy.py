"""What every facebench cache shares (prediction store, decoded images, face chips): the name of an entry
folder, and one warning per cache problem and run.

A cache problem (an unwritable folder, a corrupt entry) never stops a run: it is reported once per topic as a
``CacheWarning`` and the run goes on computing what it cannot read.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from facebench.errors import CacheWarning

#: An entry folder's name: a key of 16-64 lowercase hex digits.
ENTRY_KEY = re.compile(r"[0-9a-f]{16,64}")

_warned: set[str] = set()  # topics already reported in this process (one warning each)


def reset_cache_warnings() -> None:
    """Start a new run: each cache problem is reported again (once) in this run."""
    _warned.clear()


def warn_once(topic: str, message: str) -> None:
    """One ``CacheWarning`` per ``topic`` and process (a broken cache is reported once, not per file)."""
    if topic not in _warned:
        _warned.add(topic)
        warnings.warn(CacheWarning(message), stacklevel=3)


def cache_unavailable(root: Path, err: OSError) -> None:
    """Report, once per cache folder, that it cannot be written and the run goes on without it."""
    warn_once(f"unavailable:{root}",
              f"the cache folder {root} cannot be used ({type(err).__name__}: {err.strerror or err}); this run "
              f"goes on without it (nothing is stored: predictions stay in memory, images are decoded in "
              f"line). Free space, fix its "
              f"permissions, or pass --cache-dir (or set FACEBENCH_CACHE) to a writable folder.")
