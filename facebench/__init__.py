"""facebench: evaluate face-perception models under the protocols the field's papers use.

Architecture: run the model once into a prediction store, then evaluate many times
(protocols are pure functions of stored predictions and dataset metadata).
"""

__version__ = "0.1.0"

__all__ = ["evaluate", "Results", "__version__"]

# Lazy exports: name -> "module:attribute", imported on first access, so `import facebench` (which every
# layer does for __version__) loads nothing else and no layer reaches the top row (api, runner) through it.
_LAZY = {"evaluate": "facebench.api:evaluate", "Results": "facebench.records:Results"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'facebench' has no attribute {name!r}")
    import importlib

    module, _, attr = _LAZY[name].partition(":")
    return getattr(importlib.import_module(module), attr)
