"""The one-call Python API.

    import facebench
    results = facebench.evaluate("synth-cnn", "suites/demo.yaml")     # a registered name
    results = facebench.evaluate(module, "suites/demo.yaml",           # a torch.nn.Module (or a callable)
                                 input_spec={"size": 48, "mean": 0.5, "std": 0.5},
                                 heads={"expression": "neutral|happiness|sadness|surprise|fear|disgust|anger"})
    results.to_pandas()                                                # one row per task x metric

``run`` is the older call that returns the runner's ``RunOutcome`` and writes a run folder.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from pathlib import Path

from facebench import settings
from facebench.errors import ConfigError, ModelError, did_you_mean
from facebench.records import Results
from facebench.runner import RunOutcome, run_suite


def run(suite: str | Path, model: str | None = None, model_args: dict | None = None, *,
        out: str | Path | None = None, force: bool = False, cache_dir: str | Path | None = None,
        progress: bool = True, figures: bool = True, **overrides) -> RunOutcome:
    """Run ``suite`` on ``model``; ``overrides`` are suite defaults (batch_size, device, seed, bootstrap, ...;
    the settings are listed below), checked before anything runs; ``figures`` draws each task's figures into
    ``<out>/figures``."""
    check_overrides(overrides, "facebench.run")
    return run_suite(suite, model=model, model_args=model_args, overrides=overrides, out=out, force=force,
                     cache_dir=cache_dir, progress=progress, figures=figures)


_SPEC_HELP = ("declare size/channels/mean/std/classes: pass input_spec={'size': 112, 'mean': 0.5, 'std': 0.5} "
              "(or a facebench InputSpec) and heads={'expression': 'rafdb'} (or classes='rafdb'), or one "
              "info={...} dict with the keys of the `python` adapter")


def check_overrides(overrides: dict, caller: str = "facebench.evaluate") -> None:
    """API overrides are settings (``facebench.settings.SETTINGS``: suite ``defaults:`` keys) of the right
    type and range, checked by ``check_value`` as the suite's own are; None means "not given". Raises
    ConfigError naming every bad one."""
    problems = []
    for key, value in overrides.items():
        if key not in settings.BY_NAME:
            problems.append(f"unknown key {key!r} in overrides.{did_you_mean(key, settings.BY_NAME)} "
                            f"Settings: {', '.join(settings.BY_NAME)}.")
        elif value is not None:
            problems.append(settings.check_value(key, value))
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError(f"{caller}: " + "; ".join(problems))


def _model_info(info, input_spec, heads, classes) -> dict:
    """One ``python``-adapter info dict from ``info`` and the separate ``input_spec``/``heads``/``classes``."""
    from facebench.data.preprocess import InputSpec
    from facebench.models.generic import INFO_KEYS, SPEC_KEYS

    if info is not None and not isinstance(info, dict):
        raise ConfigError(f"facebench.evaluate: info must be a dict, got {type(info).__name__}.")
    merged = dict(info or {})
    if isinstance(input_spec, InputSpec):
        input_spec = {k: v for k, v in input_spec.to_dict().items() if k in SPEC_KEYS}
    if input_spec is not None:
        if not isinstance(input_spec, dict):
            raise ConfigError(f"facebench.evaluate: input_spec must be a dict or an InputSpec, got "
                              f"{type(input_spec).__name__}.")
        merged.update(input_spec)
    if heads is not None:
        merged["heads"] = heads
    if classes is not None:
        merged["classes"] = classes
    missing = [k for k in ("size",) if merged.get(k) in (None, "")]
    if not (merged.get("heads") or merged.get("classes")):
        missing.append("classes")
    if missing and not set(merged) - set(INFO_KEYS):  # a misspelt key: the adapter names it (did-you-mean)
        raise ConfigError(f"facebench.evaluate: no {' or '.join(missing)} declared for the model; {_SPEC_HELP}.")
    return merged


def _safe_model_name(obj) -> str:
    raw = getattr(obj, "__name__", None) or type(obj).__name__
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(raw)).replace("..", "-").strip("._-")[:100] or "model"


def _adapter_for(model, info: dict, name: str | None):
    """A ``PythonAdapter`` over a torch module or a plain callable ``f(batch) -> logits``."""
    import inspect

    import torch.nn as nn

    from facebench.models.generic import PythonAdapter

    if isinstance(model, nn.Module):
        try:
            source = inspect.getsourcefile(type(model))
        except TypeError:
            source = None
        name = name or _safe_model_name(type(model))
        return PythonAdapter.from_module(model, info, f"model {name!r}", name=name, source=source,
                                         module_class=type(model).__qualname__)
    name = name or _safe_model_name(model)
    # a callable's weights cannot be hashed: a nonce keeps its predictions from being reused for another one
    return PythonAdapter.from_module(_wrap_callable(model), info, f"model {name!r}", name=name,
                                     callable=getattr(model, "__qualname__", type(model).__name__),
                                     nonce=uuid.uuid4().hex)


def _wrap_callable(fn):
    """An ``nn.Module`` whose forward is ``fn`` (no parameters)."""
    import torch.nn as nn

    class CallableModule(nn.Module):
        """Wraps ``f(batch) -> logits`` (or a tuple / dict as the ``python`` adapter accepts)."""

        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, batch):
            return self.fn(batch)

    return CallableModule(fn)


def evaluate(model, suite: str | Path, *, out: str | Path | None = None, cache_dir: str | Path | None = None,
             progress: bool = False, figures: bool = False, force: bool = False, model_args: dict | None = None,
             info: dict | None = None, input_spec=None, heads: dict | None = None, classes=None,
             name: str | None = None, **overrides) -> Results:
    """Evaluate ``model`` on ``suite`` (a suite file) and return its ``Results``.

    ``model`` is a registered name (with ``model_args``), a ready ``ModelAdapter``, a ``torch.nn.Module``
    or a callable ``f(batch) -> logits``. A module or callable declares what it expects and returns:
    ``input_spec`` (a dict with size, channels, mean, std, scale, color_order, ...; or an ``InputSpec``)
    and ``heads`` (head name -> class order, e.g. ``{"expression": "rafdb"}``) or ``classes``; or the
    same keys in one ``info`` dict, as the ``python`` adapter takes them. ``name`` names it in results.

    ``overrides`` are suite ``defaults:`` keys (batch_size, device, seed, bootstrap, ...; listed below),
    checked (type and range) before anything runs.
    By default nothing is kept on disk but the prediction store: the run folder is written to a
    temporary folder and removed (``Results.out_dir`` is None); with ``out=`` it stays there (``force``
    replaces an earlier run). A plain callable's predictions go to a temporary store unless
    ``cache_dir`` is given. ``figures`` needs ``out``. A module is put in eval mode and moved to the
    run's device (as any adapter's is).
    """
    from facebench.models.base import ModelAdapter

    check_overrides(overrides)
    tmp_store = None
    if figures and out is None:
        raise ConfigError("facebench.evaluate: figures=True draws files into the run folder; pass out=FOLDER too.")
    kwargs: dict = {}
    if isinstance(model, str):
        if any(v is not None for v in (info, input_spec, heads, classes, name)):
            raise ConfigError(f"facebench.evaluate: model {model!r} is a registered name: it declares its own "
                              f"input spec and heads (info/input_spec/heads/classes/name are for a module or "
                              f"callable); pass its options as model_args.")
        kwargs.update(model=model, model_args=model_args)
    elif model_args:
        raise ConfigError("facebench.evaluate: model_args are for a registered model name.")
    elif isinstance(model, ModelAdapter):
        kwargs["adapter"] = model
    elif callable(model):
        import torch.nn as nn

        spec = _model_info(info, input_spec, heads, classes)
        kwargs["adapter"] = _adapter_for(model, spec, name)
        if not isinstance(model, nn.Module) and cache_dir is None:
            cache_dir = tmp_store = Path(tempfile.mkdtemp(prefix="facebench-store-"))
    else:
        raise ModelError(f"facebench.evaluate: model must be a registered name, a ModelAdapter, a torch.nn.Module "
                         f"or a callable; got {type(model).__name__}.")
    tmp_root = None if out is not None else Path(tempfile.mkdtemp(prefix="facebench-run-"))
    try:
        outcome = run_suite(suite, overrides=overrides, out=out if out is not None else tmp_root / "run",
                            force=force, cache_dir=cache_dir, progress=progress, figures=figures, **kwargs)
    finally:
        for folder in (tmp_root, tmp_store):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    return Results.from_run(outcome.results, outcome.manifest, outcome.leaderboard, outcome.exit_code,
                            outcome.out_dir if out is not None else None)


_SETTINGS_DOC = ("\n\n    Settings (keyword arguments; suite ``defaults:`` keys; the model and its model_args are "
                 "arguments of their own):\n\n" + settings.settings_doc(skip=("model", "model_args")) + "\n")
for _f in (run, evaluate):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ += _SETTINGS_DOC
