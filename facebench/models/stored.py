"""A stand-in for a model whose predictions are already in the prediction store.

Built from a run's ``results.json`` model description (heads, input spec, fingerprint), it lets
``facebench rescore`` re-evaluate a finished run -- other protocols, other parameters, more
bootstrap resamples -- without loading the model or its weights. It never computes: a split with
no stored predictions is an error that names the command that computes them.
"""

from __future__ import annotations

from facebench.data.preprocess import InputSpec
from facebench.errors import ConfigError, ModelError
from facebench.models.base import Head, ModelAdapter


class StoredModel(ModelAdapter):
    """Predictions of an earlier run, read from the store (no model is loaded)"""

    store_only = True
    differentiable = False  # stored outputs: nothing to differentiate

    def __init__(self, description: dict):
        try:
            super().__init__(**dict(description.get("settings") or {}))
            self.name = str(description["name"])
            self.heads = {k: Head(h["name"], tuple(h["labels"]), h.get("kind", "classification"), h.get("scheme"),
                                  None if h.get("size") is None else tuple(int(v) for v in h["size"]))
                          for k, h in description["heads"].items()}
            self.default_head = description["default_head"]
            spec = dict(description["input_spec"])
            for key in ("size", "mean", "std"):
                spec[key] = tuple(spec[key])
            self.input_spec = InputSpec(**spec)
            self.feature_dim = description.get("feature_dim")
            self._fingerprint = str(description["fingerprint"])
        except (KeyError, TypeError, ValueError, ConfigError, ModelError) as err:
            raise ModelError(f"the run's model description is incomplete ({type(err).__name__}: {err}); "
                             f"it must come from a results.json written by `facebench run`.") from None
        self.adapter_name = description.get("adapter", "")

    def describe(self) -> dict:
        out = super().describe()
        out["adapter"] = self.adapter_name or out["adapter"]
        return out

    def forward(self, batch, heads, features):
        raise ModelError(f"{self.name}: stored predictions only; this model cannot compute new ones.")
