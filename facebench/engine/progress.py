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
    the run's overall progress and an ETA, above each split's own bar or lines.

    ``sizes`` gives each split's work in the order the splits finish: its image count, or ``(rows, unit)`` for
    other work (``(600, "attacked pairs")``: an attack costs far more per row than a forward pass, and a pair is
    not an image). Each unit has its own rate: the ETA adds, unit by unit, the rows still to come divided by the
    rate of that unit's rows *computed* so far (splits read from the store take no time and do not count towards
    a rate); while a unit with rows to come has no rate yet the ETA is ``?``. On a terminal an overall tqdm bar
    stays at the top and the lines go above it (``tqdm.write``); elsewhere the lines are printed as they are.
    Not ``enabled``: silent.
    """

    def __init__(self, sizes: list, enabled: bool, stream=None):
        self.work = [(int(s[0]), str(s[1])) if isinstance(s, tuple) else (int(s), "img") for s in sizes]
        self.units = list(dict.fromkeys(unit for _, unit in self.work)) or ["img"]
        self.k_total = len(self.work)
        self.total = {u: sum(n for n, unit in self.work if unit == u) for u in self.units}
        self.done = dict.fromkeys(self.units, 0)
        self.computed = dict.fromkeys(self.units, 0)
        self.busy_s = dict.fromkeys(self.units, 0.0)
        self.k = 0
        self.enabled = enabled and self.k_total > 1
        self.stream = stream or sys.stderr
        self.bar = None
        if self.enabled and interactive():
            unit = self.units[0] if len(self.units) == 1 else "rows"
            self.bar = tqdm(total=sum(self.total.values()), unit=unit, desc=f"run: {self.k_total} splits", position=0,
                            leave=False)

    def _eta(self) -> str:
        seconds = 0.0
        for u in self.units:
            left = self.total[u] - self.done[u]
            if left <= 0:
                continue
            if self.busy_s[u] <= 0 or self.computed[u] <= 0:
                return "?"
            seconds += left / (self.computed[u] / self.busy_s[u])
        return _duration(seconds)

    def _position(self) -> str:
        if len(self.units) == 1:
            u = self.units[0]
            share = 100 * self.done[u] // self.total[u] if self.total[u] else 100
            return f"{self.done[u]}/{self.total[u]} {u} ({share}%)"
        return ", ".join(f"{self.done[u]}/{self.total[u]} {u}" for u in self.units)

    def split_done(self, what: str, n: int, computed: int, seconds: float, note: str = "") -> str:
        """Record one finished split (``n`` rows of its unit, ``computed`` of them by the model in ``seconds``);
        returns (and shows) its line."""
        unit = self.work[self.k][1] if self.k < len(self.work) else self.units[0]
        self.k += 1
        self.done[unit] += int(n)
        if computed:
            self.computed[unit] += int(computed)
            self.busy_s[unit] += float(seconds)
        line = (f"[{self.k}/{self.k_total}] {what}: {note or f'{computed} {unit} computed'} in {_duration(seconds)}; "
                f"run {self._position()}, ETA {self._eta()}")
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
