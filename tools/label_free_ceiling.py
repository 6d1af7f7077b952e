"""How far can a learned combination of every label-free indicator go on a label_free run's meta-benchmark?

    python tools/label_free_ceiling.py RUN/results.json [--task NAME]

Reads the per-set details of a ``label_free`` task (``details.sets``: for each test set and detector the score
indicators, the shift indicators, each MPE estimator's OOD fraction and AUROC or "unidentifiable", the set size
and the true AUROC) and fits, **leave one family out** as the protocol judges its indicators, three regressors
of the true AUROC on all of them at once: ridge regression, gradient boosting (depth-2 trees) and a random
forest (scikit-learn). An unanswered MPE estimate enters as its flag, an AUROC of 0.5 and its raw OOD fraction.
It prints, per detector, the MAE and Spearman of each over all sets, beside predicting the other families' mean
truth, and the random
forest's MAE per held-out family. This is a diagnostic, not an estimator facebench reports: it shows how much of
the truth these score-distribution features carry on the benchmark (a ceiling for combining them), and which
families stay out of reach.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr



def features(s: dict) -> list[float]:
    """One set's feature vector: the protocol's ``combined`` features over every MPE method."""
    from facebench.metrics.mpe import ESTIMATORS
    from facebench.protocols.label_free import combined_features

    return combined_features(s, ESTIMATORS)


def lofo_predictions(make, X: np.ndarray, y: np.ndarray, family: np.ndarray) -> np.ndarray:
    """Each family's predictions from a model fitted on the other families (features standardised on them)."""
    pred = np.zeros_like(y)
    for f in np.unique(family):
        train = family != f
        mu, sd = X[train].mean(axis=0), X[train].std(axis=0) + 1e-9
        model = make().fit((X[train] - mu) / sd, y[train])
        pred[~train] = model.predict((X[~train] - mu) / sd)
    return np.clip(pred, 0.0, 1.0)


def ceilings(sets: list[dict]) -> dict:
    """Per detector: {regressor: (MAE, Spearman)} and the random forest's MAE per family."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import RidgeCV

    makers = {"ridge": lambda: RidgeCV(alphas=np.logspace(-3, 3, 13)),
              "gradient boosting": lambda: GradientBoostingRegressor(max_depth=2, n_estimators=200, random_state=0),
              "random forest": lambda: RandomForestRegressor(200, min_samples_leaf=5, random_state=0)}
    out = {}
    for detector in sorted({s["detector"] for s in sets}):
        mine = [s for s in sets if s["detector"] == detector]
        X = np.nan_to_num(np.array([features(s) for s in mine], dtype=np.float64))
        y = np.array([s["true_auroc"] for s in mine], dtype=np.float64)
        family = np.array([s["family"] for s in mine])
        others_mean = np.array([y[family != f].mean() for f in family])  # leave one family out, as the rest
        row = {"n_sets": len(mine), "families": int(len(np.unique(family))),
               "mean predictor": (float(np.mean(np.abs(y - others_mean))), float("nan"))}
        for name, make in makers.items():
            pred = lofo_predictions(make, X, y, family)
            row[name] = (float(np.mean(np.abs(pred - y))), float(spearmanr(pred, y)[0]))
        row["per_family_mae"] = {str(f): float(np.mean(np.abs(pred - y)[family == f])) for f in np.unique(family)}
        out[detector] = row
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--task", help="the label_free task (default: the first with per-set details)")
    args = parser.parse_args(argv)
    tasks = json.loads(args.results.read_text())["tasks"]
    task = next((t for t in tasks if (args.task is None or t["name"] == args.task)
                 and (t.get("details") or {}).get("sets")), None)
    if task is None:
        print(f"no label_free task with per-set details in {args.results}", file=sys.stderr)
        return 2
    for detector, row in ceilings(task["details"]["sets"]).items():
        print(f"{task['name']} / {detector}: {row['n_sets']} sets, {row['families']} families, leave one family out")
        for name in ("mean predictor", "ridge", "gradient boosting", "random forest"):
            mae, rho = row[name]
            print(f"  {name:18s} MAE {mae:.3f}" + ("" if rho != rho else f"  Spearman {rho:.3f}"))
        worst = sorted(row["per_family_mae"].items(), key=lambda kv: -kv[1])[:5]
        print("  random forest, worst families (MAE): " + ", ".join(f"{f} {m:.3f}" for f, m in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
