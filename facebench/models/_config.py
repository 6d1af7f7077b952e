"""Architecture-config JSON files for adapters that re-implement an authors' model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facebench.errors import ModelError


def load_config_json(path: str | Path | None, model: str) -> dict[str, Any]:
    """Flat ``{name: value}`` view of a config JSON: its top-level keys plus the ``hyperparameters`` block.

    Values given per variant (``{"tiny": .., "real": ..}``) stay dicts for the adapter to resolve.
    """
    if not path:
        return {}
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{model} config not found at {path}; pass a JSON file like the fixture's config.json.")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelError(f"{model} config {path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{model} config {path} must be a JSON object.")
    flat = {k: v for k, v in raw.items() if k != "hyperparameters"}
    flat.update(raw.get("hyperparameters") or {})
    return flat
