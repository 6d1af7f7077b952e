"""The ``adversarial`` protocol on verification pairs (``inner: verification``; ``spec/robustness.md`` 3.4).

Scores: cosine of L2-normalised embeddings (no flip-sum); clean pairs from the task's split, attacked pairs from
each budget's split, whose rows are the pairs' attacked probes (``facebench.pipeline.attack_pairs``). One
threshold ``tau`` is fixed on the clean pairs and a pair is accepted iff ``cos >= tau``:

* ``threshold: best_accuracy``: ``metrics.verification.best_accuracy_threshold`` over all clean pairs (RobFR's
  per-model ``cos`` threshold is the clean LFW best-accuracy one);
* ``threshold: far``: the cosine threshold at the largest clean FAR <= ``far`` (``tar_at_far``).

Per budget: ``verification_accuracy`` (all pairs, attacked probes, at tau), ``dodging_fooling_rate`` and
``impersonation_fooling_rate`` (``metrics.fooling``; denominators: genuine pairs accepted clean, impostor pairs
rejected clean). Headline: the accuracy under attack (PGD / FGSM), the goal's fooling rate (UAP).
"""

from __future__ import annotations

import numpy as np

from facebench.errors import MetricInputError
from facebench.metrics import fooling
from facebench.metrics import verification as vm
from facebench.data.attack_spec import PAIR_FEATURES, pair_ids
from facebench.protocols import _variants as var
from facebench.protocols.base import EvalContext, MetricRecord, TaskResult

CURVE_KEYS = ("verification_accuracy", "dodging_fooling_rate", "impersonation_fooling_rate")


def clean_threshold(clean_cos: np.ndarray, same: np.ndarray, rule: str, far: float) -> tuple[float, dict]:
    """(tau, what it is) fitted on the clean pairs by ``rule``."""
    if rule == "best_accuracy":
        tau, acc = vm.best_accuracy_threshold(clean_cos, same)
        return tau, {"rule": "best accuracy on all clean pairs (accept cos >= tau)", "clean_accuracy": acc}
    row = vm.tar_at_far(clean_cos, same, [far])[far]
    if not row.get("resolved"):
        raise MetricInputError(f"threshold: far {far:g} cannot be fixed on these clean pairs: {row.get('reason')}; "
                               f"use threshold: best_accuracy or a larger far")
    return float(row["threshold"]), {"rule": f"clean FAR <= {far:g} (accept cos >= tau)", "clean_far": row["far"],
                                     "clean_tar": row["tar"]}


def _attacked_cos(ctx: EvalContext, label: str, emb: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, dict]:
    extra = ctx.extras.get(f"adv:{label}")
    if extra is None or extra.predictions is None:
        raise MetricInputError(f"no predictions of the attacked pairs at eps {label}: the run must make them "
                               f"(facebench run) before they can be evaluated")
    if extra.dataset.pairs_fingerprint() != ctx.dataset.pairs_fingerprint():
        raise MetricInputError(f"the attacked pairs at eps {label} are not the clean split's pairs (a pair was left "
                               f"out of one of them); run again so that both are predicted from the same pair list")
    preds = extra.predictions.align(pair_ids(ctx.dataset))
    adv = vm.l2_normalize(np.asarray(preds.outputs[PAIR_FEATURES], dtype=np.float64))
    return np.sum(adv * emb[b], axis=1), dict(preds.meta.get("attack") or {})


def evaluate_pairs(protocol, ctx: EvalContext) -> TaskResult:
    """The verification form of ``AdversarialProtocol.evaluate`` (see the module docstring)."""
    from facebench.protocols.adversarial import _uap_summary, eps_label

    p = protocol.params
    a, b, same, _ = var.pair_arrays(ctx.dataset)
    emb = var.embeddings(ctx)
    clean_cos = vm.pair_scores(emb[a], emb[b], "cosine")
    tau, how = clean_threshold(clean_cos, same, p.threshold, p.far)
    conv = {"attack": p.attack, "norm": p.norm, "inner": "verification", "score": "cosine of L2-normalised "
            "embeddings (no flip-sum)", "probe": "first image of each pair attacked, second clean", "tau": tau,
            "threshold": how["rule"], "pairs": int(len(same)), "genuine": int(same.sum()),
            "impostor": int((~same).sum()), "bootstrap": f"percentile,resamples={ctx.n_resamples},unit=pair,"
            f"seed={ctx.seed}", "inputs": "float [0, 1] pixels of the model's input frame, not rounded to uint8"}
    if p.attack == "uap":
        conv["goal"] = p.goal
    if p.surrogate is not None:
        conv["surrogate"] = p.surrogate
    accepted = clean_cos >= tau
    everyone = np.ones_like(same)
    records = [protocol._rate_record("clean_verification_accuracy", accepted == same, everyone, ctx,
                                     {**conv, "definition": "clean pairs classified correctly at tau"}, higher=True,
                                     headline=True)]
    metas, labels = [], []
    for eps in protocol.budgets:
        label = eps_label(eps, p.norm)
        adv_cos, meta = _attacked_cos(ctx, label, emb, b)
        records += _budget_records(protocol, ctx, {**conv, "eps": eps, "eps_255": eps * 255.0}, label, clean_cos,
                                   adv_cos, same, tau)
        metas.append(dict(meta, eps=eps, label=label))
        labels.append(label)
    by = {r.metric: r.value for r in records}
    curve = {"eps_255": [e * 255.0 for e in protocol.budgets], "clean_accuracy": by["clean_verification_accuracy"],
             **{k: [by[f"{k}[eps={lab}]"] for lab in labels] for k in CURVE_KEYS}}
    details = {"inner": "verification", "budgets": labels, "tau": tau, "threshold": how, "curve": curve,
               "attack": [{k: v for k, v in m.items() if k not in ("picture", "history")} for m in metas]}
    if p.attack == "uap":
        details["uap"] = {m["label"]: _uap_summary(m) for m in metas}
    return TaskResult(records, details, [])


def _budget_records(protocol, ctx, conv: dict, label: str, clean_cos, adv_cos, same, tau) -> list[MetricRecord]:
    """Accuracy under attack and the two fooling rates at one budget, each checked against ``metrics.fooling``."""
    p = protocol.params
    clean_in, adv_in = clean_cos >= tau, adv_cos >= tau
    dodging = fooling.dodging_fooling_rate(clean_cos[same], adv_cos[same], tau) if same.any() else None
    impersonation = (fooling.impersonation_fooling_rate(clean_cos[~same], adv_cos[~same], tau) if (~same).any()
                     else None)  # no pairs of a kind: its rate is NaN (denominator 0), not cross-checked
    uap = p.attack == "uap"
    rows = [("verification_accuracy", adv_in == same, np.ones_like(same), None, True, not uap,
             "pairs classified correctly at tau with the probe attacked"),
            ("dodging_fooling_rate", ~adv_in, same & clean_in, dodging, False, uap and p.goal == "dodging",
             "genuine pairs accepted clean and rejected under attack / genuine pairs accepted clean"),
            ("impersonation_fooling_rate", adv_in, ~same & ~clean_in, impersonation, False,
             uap and p.goal == "impersonation",
             "impostor pairs rejected clean and accepted under attack / impostor pairs rejected clean")]
    out = []
    for name, hits, eligible, rate, higher, headline, definition in rows:
        rec = protocol._rate_record(f"{name}[eps={label}]", hits, eligible, ctx,
                                    {**conv, "definition": definition, "denominator_n": int(eligible.sum())},
                                    higher, headline)
        if rate is not None and not np.isclose(rec.value, rate.value, equal_nan=True):
            raise MetricInputError(f"{name}: {rec.value} != metrics.fooling's {rate.value}")
        out.append(rec)
    return out
