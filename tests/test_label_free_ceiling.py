"""tools/label_free_ceiling.py on per-set details made up so that the truth is a function of one indicator: every
regressor learns it leave one family out (MAE well under predicting the mean), and the report prints per detector."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("label_free_ceiling", REPO / "tools" / "label_free_ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sets(rng) -> list[dict]:
    out = []
    for k in range(120):
        x = rng.uniform(0, 1)
        mpe = {m: {"pi": rng.uniform(), "auroc": None if k % 3 == 0 else rng.uniform()} for m in
               ("bbe", "scott", "tail", "bbe_any")}
        out.append({"detector": "msp", "family": f"f{k % 4}", "true_auroc": 0.3 + 0.6 * x, "n_id": 100, "n_ood": 100,
                    "indicators": {"gmm_auroc": x, "mean_score": rng.uniform()},
                    "shift": {"ks": rng.uniform(), "wasserstein": rng.uniform()}, "mpe": mpe})
    return out


def test_ceilings_learn_a_function_of_one_indicator(tmp_path, capsys):
    tool = _tool()
    rows = tool.ceilings(_sets(np.random.default_rng(0)))
    row = rows["msp"]
    assert row["n_sets"] == 120 and row["families"] == 4
    for name in ("ridge", "gradient boosting", "random forest"):
        mae, rho = row[name]
        assert mae < 0.05 < row["mean predictor"][0] and rho > 0.95, (name, mae, rho)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"tasks": [{"name": "lf", "details": {"sets": _sets(np.random.default_rng(1))}}]}))
    assert tool.main([str(results)]) == 0
    printed = capsys.readouterr().out
    assert "lf / msp: 120 sets, 4 families, leave one family out" in printed and "random forest" in printed
    (tmp_path / "empty.json").write_text(json.dumps({"tasks": [{"name": "x", "details": {}}]}))
    assert tool.main([str(tmp_path / "empty.json")]) == 2
