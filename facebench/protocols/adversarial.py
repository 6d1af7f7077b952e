"""Adversarial robustness of a classification head or of face verification: per-sample FGSM / PGD and universal
perturbations (UAP).

The protocol reads stored predictions only. Each budget in ``eps`` is an attacked variant of the task's split
(``requires``: role ``adv:<eps>`` with ``dataset_args: {attack: {...}}``, ``facebench.data.attack_spec``);
the execute step makes the adversarial inputs with the model (``facebench.pipeline.attack_stage``) and stores
the model's outputs on them, so ``facebench rescore`` evaluates again without a model.

Conventions (``spec/robustness.md`` 3.1, 3.5, 3.6):

* Budgets in [0, 1] pixel units of the model's input frame (``"k/255"`` accepted), float adversarial inputs
  (never rounded to uint8). PGD defaults: L-inf, eps 1, 2, 4, 8 /255, 10 steps of eps/4, random start.
* ``robust_accuracy`` = accuracy under attack over **all** evaluated samples; ``attack_success_rate`` = share
  of the **clean-correct** samples misclassified under attack; ``fooling_rate`` = share of **all** samples whose
  predicted class changes (Moosavi-Dezfooli; ground truth unused); ``adversarial_error`` = 1 - robust accuracy
  (what SGA's evaluation also prints as "fooling rate"). Each record names its denominator.
* Labels are matched to the head by class name as ``closed_set`` does (``unsupported_classes``,
  ``extra_model_classes``); the argmax runs over the classes in use. CIs: percentile bootstrap over samples.
* UAP: one perturbation per budget fitted on ``fit`` (``fit_limit``: a seeded random subset) with ``method``
  sga (default) or deepfool; its norms, fit history and a picture of it are in ``details["uap"]``.
* ``inner: verification`` (a pairs split; ``spec/robustness.md`` 3.4): the first image of each pair is
  attacked, the second stays clean (``facebench.pipeline.attack_pairs``); PGD / FGSM push genuine pairs apart
  (dodging) and impostor pairs together (impersonation), a UAP is fitted for ``goal`` (dodging on the fit
  split's genuine pairs, or impersonation on its impostor pairs) and added to every probe. Scores are cosines
  of L2-normalised embeddings (no flip-sum); one threshold ``tau`` is fixed on the **clean** pairs
  (``threshold: best_accuracy``, the accuracy-maximising cosine over all clean pairs as RobFR's per-model
  ``cos`` threshold, or ``far``: the threshold at clean FAR <= ``far``). Records per budget:
  ``verification_accuracy`` at tau under attack (all pairs), ``dodging_fooling_rate`` (genuine pairs accepted
  clean and rejected under attack / genuine pairs accepted clean) and ``impersonation_fooling_rate`` (impostor
  pairs rejected clean and accepted under attack / impostor pairs rejected clean); CIs resample pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facebench.data.attack_spec import budget, fit_ref, parse_attack
from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import bootstrap as bs
from facebench.metrics import fooling
from facebench.protocols._classify import dropped_warning, matched_head, percentile_ci, sample_bootstrap
from facebench.protocols._labels import match_labels
from facebench.protocols.base import (PERTURBATION_ARGS, EvalContext, MetricRecord, Protocol, SplitRef,
                                     TaskResult, choice)
from facebench.records import Requirements

DEFAULT_EPS = ["1/255", "2/255", "4/255", "8/255"]


def eps_label(eps: float, norm: str = "linf") -> str:
    """A budget as a short name: L-inf ``k/255`` when it is a whole number of grey levels, else the number
    (L2 radii always as numbers: 0.5, 1)."""
    k = eps * 255.0
    return f"{int(round(k))}/255" if norm == "linf" and abs(k - round(k)) < 1e-9 else f"{eps:.6g}"


@dataclass
class _Outcome:
    """One budget's per-sample outcomes on the evaluated samples."""

    label: str
    eps: float
    y_pred_adv: np.ndarray
    meta: dict


class AdversarialProtocol(Protocol):
    """Adversarial robustness: PGD/FGSM robust accuracy and attack success, universal perturbations' fooling rate"""

    name = "adversarial"
    version = "1"

    @dataclass
    class Params:
        head: str | None = None
        attack: str = choice("pgd", ("pgd", "fgsm", "uap"))
        eps: list = field(default_factory=lambda: list(DEFAULT_EPS))
        norm: str = choice("linf", ("linf", "l2"))
        steps: int | None = None
        step_size: float | str | None = None
        random_start: bool = True
        labels: str = choice("true", ("true", "predicted"))
        method: str = choice("sga", ("sga", "deepfool"))
        fit: dict | str | None = None
        fit_limit: int | None = None
        epochs: int | None = None
        sga_batch_size: int = 250
        max_iterations: int | None = None
        surrogate: str | dict | None = None
        seed: int = 0
        attack_batch_size: int = 128
        unsupported_classes: str = choice("drop", ("drop", "error"))
        extra_model_classes: str = choice("restrict", ("restrict", "keep"))
        inner: str = choice("closed_set", ("closed_set", "verification"))
        goal: str = choice("dodging", ("dodging", "impersonation"))
        threshold: str = choice("best_accuracy", ("best_accuracy", "far"))
        far: float = 1e-3

    RANGES = {"far": (0, 1), "steps": (1, None), "fit_limit": (1, None), "epochs": (1, None), "sga_batch_size": (1, None),
              "max_iterations": (1, None), "seed": (0, None), "attack_batch_size": (1, None)}

    def __init__(self, **params):
        super().__init__(**params)
        p = self.params
        if not isinstance(p.eps, list) or not p.eps:
            raise ConfigError(f"Protocol 'adversarial': eps must be a non-empty list of budgets (e.g. ['2/255', "
                              f"'8/255']), got {p.eps!r}.")
        self.budgets = sorted({budget(e, "Protocol 'adversarial': eps") for e in p.eps})
        if p.inner == "verification" and p.attack == "uap" and p.method != "sga":
            raise ConfigError("Protocol 'adversarial': a universal perturbation for verification is fitted with "
                              "method: sga (DeepFool-UAP needs class boundaries).")
        if p.attack == "uap" and p.fit is None:
            raise ConfigError("Protocol 'adversarial': attack uap needs fit: {dataset, split} (the split the universal "
                              "perturbation is fitted on, e.g. the training faces).")
        for eps in self.budgets:
            parse_attack(self.attack_spec(eps, None))  # every spec checked now (ConfigError)

    def attack_spec(self, eps: float, task) -> dict:
        """The ``attack`` dataset argument of the budget ``eps``."""
        p = self.params
        spec = {"kind": p.attack, "eps": eps, "norm": p.norm, "seed": p.seed, "batch_size": p.attack_batch_size,
                "rows": "pairs" if p.inner == "verification" else "samples"}
        if p.surrogate is not None:
            spec["surrogate"] = p.surrogate
        if p.attack == "uap":
            fit = {"split": p.fit} if isinstance(p.fit, str) else dict(p.fit or {})
            if task is not None:
                fit.setdefault("dataset", task.dataset)
                if fit["dataset"] == task.dataset:  # as base.split_ref: the task's folder and loader options,
                    fit.setdefault("path", task.path)  # not the perturbations of its test data
                    fit.setdefault("dataset_args", {k: v for k, v in task.dataset_args.items()
                                                    if k not in PERTURBATION_ARGS})
            fit.setdefault("dataset", "?")
            fit["limit"] = p.fit_limit
            spec.update(method=p.method, fit=fit, max_iterations=p.max_iterations, goal=p.goal)
            if p.method == "sga":
                spec.update({"sga_batch_size": p.sga_batch_size}, **({} if p.epochs is None else {"epochs": p.epochs}))
            return spec
        spec["labels"] = p.labels
        if p.attack == "pgd":
            spec.update(random_start=p.random_start, **{k: v for k, v in (("steps", p.steps), ("step_size", p.step_size))
                                                        if v is not None})
        return spec

    def requirements(self, task=None) -> Requirements:
        if self.params.inner == "verification":
            return Requirements(head=False, features=True, labels=False, pairs=True)
        return super().requirements(task)

    def split_needs(self, role: str) -> frozenset:
        pairs = self.params.inner == "verification"
        return frozenset({"pairs"} if pairs and (role.startswith("adv:") or role == "uap_fit") else ())

    def requires(self, task) -> dict:
        base = {k: v for k, v in task.dataset_args.items() if k != "attack"}
        out, features = {}, self.params.inner == "verification"
        for eps in self.budgets:
            spec = self.attack_spec(eps, task)
            out[f"adv:{eps_label(eps, self.params.norm)}"] = SplitRef(task.dataset, task.split, task.path,
                                                                      {**base, "attack": spec}, features=features)
            ref = fit_ref(parse_attack(spec))
            if ref is not None:
                out["uap_fit"] = ref
        return out

    def evaluate(self, ctx: EvalContext) -> TaskResult:
        if self.params.inner == "verification":
            from facebench.protocols.adversarial_pairs import evaluate_pairs

            return evaluate_pairs(self, ctx)
        p = self.params
        m = matched_head(ctx, self.name, p.unsupported_classes, p.extra_model_classes)
        outcomes = [self._outcome(ctx, eps, m) for eps in self.budgets]
        conv = {"attack": p.attack, "norm": p.norm, "unsupported_classes": p.unsupported_classes,
                "extra_model_classes": p.extra_model_classes, "prediction": "argmax", **sample_bootstrap(ctx),
                "inputs": "float [0, 1] pixels of the model's input frame, not rounded to uint8"}
        if p.surrogate is not None:
            conv["surrogate"] = p.surrogate
        clean_ok = m.y_pred == m.y_true
        records = [self._rate_record("clean_accuracy", clean_ok, np.ones_like(clean_ok), ctx,
                                     {**conv, "definition": "accuracy on clean inputs over all evaluated samples"},
                                     higher=True)]
        for o in outcomes:
            records += self._budget_records(o, m, ctx, conv)
        details = {"label_space": m.label_space, "budgets": [o.label for o in outcomes],
                   "curve": self._curve(records, outcomes),
                   "attack": [{k: v for k, v in o.meta.items() if k not in ("picture", "history")} for o in outcomes]}
        if p.attack == "uap":
            details["uap"] = {o.label: _uap_summary(o.meta) for o in outcomes}
        return TaskResult(records, details, dropped_warning(m))

    def _outcome(self, ctx: EvalContext, eps: float, m) -> _Outcome:
        label = eps_label(eps, self.params.norm)
        extra = ctx.extras.get(f"adv:{label}")
        if extra is None or extra.predictions is None:
            raise MetricInputError(f"no predictions of the attacked split at eps {label}: the run must make them "
                                   f"(facebench run) before they can be evaluated")
        preds = extra.predictions.align(ctx.dataset.ids)
        adv = match_labels(preds.outputs[ctx.head], ctx.dataset.labels, ctx.dataset.classes, ctx.head_labels,
                           self.params.unsupported_classes, self.params.extra_model_classes)
        return _Outcome(label, eps, adv.y_pred, dict(preds.meta.get("attack") or {}, eps=eps, label=label))

    def _budget_records(self, o: _Outcome, m, ctx: EvalContext, conv: dict) -> list[MetricRecord]:
        y, clean, adv = m.y_true, m.y_pred, o.y_pred_adv
        conv = {**conv, "eps": o.eps, "eps_255": o.eps * 255.0}
        robust = fooling.robust_accuracy(y, adv)
        success = fooling.attack_success_rate(y, clean, adv)
        fooled = fooling.fooling_rate(clean, adv)
        error = fooling.adversarial_error(y, adv)
        uap = self.params.attack == "uap"
        rows = [("robust_accuracy", adv == y, np.ones_like(y, bool), robust, True, not uap),
                ("attack_success_rate", adv != y, clean == y, success, False, False),
                ("fooling_rate", adv != clean, np.ones_like(y, bool), fooled, False, uap),
                ("adversarial_error", adv != y, np.ones_like(y, bool), error, False, False)]
        out = []
        for name, hits, eligible, rate, higher, headline in rows:
            definition = {**conv, "denominator": rate.of, "count": rate.count, "denominator_n": rate.denominator}
            rec = self._rate_record(f"{name}[eps={o.label}]", hits, eligible, ctx, definition, higher, headline)
            if not np.isclose(rec.value, rate.value, equal_nan=True):
                raise MetricInputError(f"{name}: {rec.value} != metrics.fooling's {rate.value}")
            out.append(rec)
        return out

    @staticmethod
    def _rate_record(metric: str, hits, eligible, ctx: EvalContext, conv: dict, higher: bool,
                     headline: bool = False) -> MetricRecord:
        """count(hits & eligible) / count(eligible), with a percentile bootstrap CI over samples."""
        hits, eligible = np.asarray(hits, bool), np.asarray(eligible, bool)
        den = int(eligible.sum())
        value = float((hits & eligible).sum() / den) if den else float("nan")
        ci = None
        if ctx.n_resamples > 0 and den:
            def stat(idx: np.ndarray) -> np.ndarray:
                e = eligible[idx].sum(axis=1)
                return np.where(e > 0, (hits & eligible)[idx].sum(axis=1) / np.maximum(e, 1), np.nan)

            samples = bs.bootstrap_statistic(stat, len(hits), n_resamples=ctx.n_resamples, seed=ctx.seed)
            ci = percentile_ci(ctx)(samples)
        return MetricRecord(metric, value, ci, den, conv, headline=headline, higher_is_better=higher, unit="fraction")

    @staticmethod
    def _curve(records: list[MetricRecord], outcomes: list[_Outcome]) -> dict:
        """Metric vs budget (eps x 255) for the figure: one list per metric, in budget order."""
        curve = {"eps_255": [o.eps * 255.0 for o in outcomes]}
        for name in ("robust_accuracy", "attack_success_rate", "fooling_rate", "adversarial_error"):
            by = {r.metric: r.value for r in records}
            curve[name] = [by.get(f"{name}[eps={o.label}]") for o in outcomes]
        clean = next(r.value for r in records if r.metric == "clean_accuracy")
        curve["clean_accuracy"] = clean
        return curve


def _uap_summary(meta: dict) -> dict:
    """The stored perturbation's summary for the report (its picture included)."""
    keys = ("method", "norm", "eps", "linf", "l2", "fit", "fit_seconds", "history", "picture", "perturbation_key")
    return {k: meta.get(k) for k in keys}
