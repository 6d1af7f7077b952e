"""The libraries the evaluation step needs, imported in a background thread while the model runs.

The metric modules import SciPy where they use it, so planning a run (which checks every task before the model
loads) does not wait about two seconds for ``scipy.stats`` and friends. :func:`start` begins those imports in a
daemon thread just before inference, whose kernels release the GIL (matplotlib too when the run draws
figures); :meth:`Preload.wait` joins it before the evaluation step, so no import is in flight when the
evaluation forks worker processes. A failed import is left
for the evaluation to raise where it needs the module, with its own message.
"""

from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager

#: What the built-in protocols' metrics import lazily (SciPy's sub-packages; scipy.stats is the slowest).
EVALUATION_MODULES = ("scipy.special", "scipy.linalg", "scipy.optimize", "scipy.stats")
#: What drawing figures in this process imports (matplotlib through facebench's figure module).
FIGURE_MODULES = ("facebench.report.figures",)


class Preload:
    """Imports ``modules`` in a daemon thread (none when all are imported already); ``wait()`` joins it."""

    def __init__(self, modules=EVALUATION_MODULES):
        self.missing = tuple(name for name in modules if name not in sys.modules)
        self._thread = None
        if self.missing:
            self._thread = threading.Thread(target=self._import_all, name="facebench-preload", daemon=True)
            self._thread.start()

    def _import_all(self) -> None:
        for name in self.missing:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 -- the evaluation imports it again and reports the error there
                pass

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def start(modules=EVALUATION_MODULES) -> Preload:
    """Begin importing ``modules`` in the background; call ``wait()`` on the result before evaluating."""
    return Preload(modules)


@contextmanager
def during(modules=EVALUATION_MODULES, figures: bool = False):
    """``with during(): infer()``: ``modules`` (and with ``figures`` :data:`FIGURE_MODULES`) imported in the
    background while the block runs, joined at its end (also when it raises)."""
    loading = start(tuple(modules) + (FIGURE_MODULES if figures else ()))
    try:
        yield loading
    finally:
        loading.wait()
