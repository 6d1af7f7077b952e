"""Progress of long loops: a tqdm bar on a terminal, plain lines elsewhere (CI logs, files, pipes).

``progress_bar(total, desc, enabled)`` returns an object with ``update(n)`` and ``close()``. On a terminal
(stderr is a TTY and ``TERM`` is not ``dumb``) it is a tqdm bar; otherwise a :class:`PlainProgress` that prints
whole lines, no carriage returns or escape sequences: one at each further tenth of the work (at most one per
``MIN_INTERVAL_S`` seconds) with the count, the rate and an ETA, and a last line with the total time.
``FACEBENCH_PROGRESS=plain`` or ``=bar`` forces one or the other.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm

MIN_INTERVAL_S = 5.0
ENV = "FACEBENCH_PROGRESS"


def interactive() -> bool:
    """Whether progress goes to a terminal that redraws a bar (see the module docstring)."""
    forced = os.environ.get(ENV, "").lower()
    if forced in ("plain", "bar"):
        return forced == "bar"
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)()) and os.environ.get("TERM", "") != "dumb"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """Line-by-line progress for logs (see the module docstring)."""

    def __init__(self, total: int, desc: str, initial: int = 0, unit: str = "img", stream=None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self.start_n = int(initial)
        self.stream = stream or sys.stderr
        self.t0 = self.last_t = time.perf_counter()
        self.next_tenth = self._tenth(self.n) + 1
        self.closed = False

    def _tenth(self, n: int) -> int:
        return 10 * n // self.total if self.total else 10

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if self.n >= self.total or self._tenth(self.n) < self.next_tenth or now - self.last_t < MIN_INTERVAL_S:
            return
        self.next_tenth, self.last_t = self._tenth(self.n) + 1, now
        rate = (self.n - self.start_n) / max(now - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        self._print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * self.n // self.total}%), "
                    f"{rate:.1f} {self.unit}/s, ETA {_duration(eta) if eta == eta else '?'}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start_n
        if done:
            self._print(f"{self.desc}: {self.n}/{self.total} {self.unit} in {_duration(elapsed)} "
                        f"({done / max(elapsed, 1e-9):.1f} {self.unit}/s)")


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0, unit: str = "img"):
    """A tqdm bar on a terminal, :class:`PlainProgress` lines elsewhere, a silent bar when not ``enabled``."""
    if enabled and not interactive():
        return PlainProgress(total, desc, initial, unit)
    return tqdm(total=total, initial=initial, disable=not enabled, unit=unit, desc=desc, leave=False)


class RunProgress:
    """The whole execute step at a glance: one line per split as it finishes (``[k/K] what: how, in time``) with
    the run's overall share of images done and an ETA, above each split's own bar or lines.

    The ETA divides the images still to come by the rate of the images *computed* so far (splits read from the
    store take no time and do not count towards the rate); before anything was computed it is ``?``. On a
    terminal an overall tqdm bar stays at the top and the lines go above it (``tqdm.write``); elsewhere the
    lines are printed as they are. Not ``enabled``: silent.
    """

    def __init__(self, sizes: list[int], enabled: bool, stream=None):
        self.k_total, self.total = len(sizes), int(sum(sizes))
        self.k = self.done = self.computed = 0
        self.busy_s = 0.0
        self.enabled = enabled and self.k_total > 1
        self.stream = stream or sys.stderr
        self.bar = None
        if self.enabled and interactive():
            self.bar = tqdm(total=self.total, unit="img", desc=f"run: {self.k_total} splits", position=0, leave=False)

    def split_done(self, what: str, n: int, computed: int, seconds: float, note: str = "") -> str:
        """Record one finished split (``n`` images, ``computed`` of them by the model in ``seconds``); returns
        (and shows) its line."""
        self.k, self.done = self.k + 1, self.done + int(n)
        if computed:
            self.computed, self.busy_s = self.computed + int(computed), self.busy_s + float(seconds)
        rate = self.computed / self.busy_s if self.busy_s > 0 else 0.0
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else ("0s" if left == 0 else "?")
        share = 100 * self.done // self.total if self.total else 100
        line = (f"[{self.k}/{self.k_total}] {what}: {note or f'{computed} img computed'} in {_duration(seconds)}; "
                f"run {self.done}/{self.total} img ({share}%), ETA {eta}")
        if not self.enabled:
            return line
        if self.bar is not None:
            self.bar.update(int(n))
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
        return line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
