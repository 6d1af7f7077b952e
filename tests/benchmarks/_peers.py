"""Benchmark-only peers imported the way their own packages allow here (shared by scaling.py and the OOD
benchmark)."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types


def pytorch_ood_metrics():
    """``(pytorch_ood.metrics, whole)``, or None when pytorch-ood is not installed. Its package ``__init__``
    imports torchvision (for its datasets and models); without torchvision the ``metrics`` subpackage, which
    needs only torch, is imported under a bare package module (``whole`` False): the peer's code runs
    unchanged. The package is looked up on ``sys.path`` (``PathFinder``), so a bare package module left in
    ``sys.modules`` by an earlier call (it has no ``__spec__``) does not get in the way. Another missing
    module raises ``ModuleNotFoundError``."""
    package = sys.modules.get("pytorch_ood")
    if "pytorch_ood.metrics" in sys.modules:
        return sys.modules["pytorch_ood.metrics"], getattr(package, "__spec__", None) is not None
    spec = importlib.machinery.PathFinder.find_spec("pytorch_ood")
    if spec is None:
        return None
    try:
        return importlib.import_module("pytorch_ood.metrics"), True
    except ModuleNotFoundError as err:
        if err.name != "torchvision":
            raise
    for name in [m for m in sys.modules if m == "pytorch_ood" or m.startswith("pytorch_ood.")]:
        del sys.modules[name]
    bare = types.ModuleType("pytorch_ood")  # the package without its __init__
    bare.__path__ = list(spec.submodule_search_locations)
    sys.modules["pytorch_ood"] = bare
    return importlib.import_module("pytorch_ood.metrics"), False
