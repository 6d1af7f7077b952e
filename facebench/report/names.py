"""Display names for figures and pages: the one table that turns identifiers into human labels.

Identifiers stay what results.json holds (``fpr@tpr95[pos=known,rule=interp]``, ``rafdb``, ``happiness``,
``tone1 & long``); only what a reader sees goes through here. Conventions:

* A metric id is ``base`` or ``base[q1,q2,...]``, each qualifier ``key=value`` or a bare value. The base is
  looked up in :data:`METRICS`, or read as a threshold pattern (``fpr@tpr95`` -> "FPR at 95% TPR",
  ``tar@far1e-3`` -> "TAR at 0.1% FAR", ``ccr@fpr0.01`` -> "CCR at 1% FPR", ``rank5`` -> "Rank-5"), else
  spelled out (underscores to spaces, first letter capitalised).
* Qualifiers that state a computation convention (:data:`CONVENTION_KEYS`: ``pos``, ``rule``, ``method``,
  ``bins``, ...; and bare values with a hyphen such as ``equal-width``) are left out; the others name a slice
  and are added in parentheses: ``recall[happiness]`` -> "Recall (Happiness)", ``accuracy[group=tone1 &
  long]`` -> "Accuracy (tone1 & long)". So two records that differ only in a convention share a label: a
  figure shows one of them (the headline), the tables keep the full id.
* Unknown datasets, classes and groups are returned unchanged (a class gets its first letter capitalised).
"""

from __future__ import annotations

import re

__all__ = ["METRICS", "DATASETS", "FIGURES", "CONVENTION_KEYS", "metric_name", "dataset_name", "class_name",
           "group_name", "task_name", "split_metric", "figure_name", "sanitise_filename"]

#: Base metric id -> display name.
METRICS: dict[str, str] = {
    "accuracy": "Accuracy", "mean_class_accuracy": "Mean class accuracy", "macro_f1": "Macro F1",
    "nll": "NLL", "ce": "Cross-entropy", "ece": "ECE", "mce": "MCE", "auroc": "AUROC", "aupr": "AUPR",
    "oscr": "OSCR", "detection_error": "Detection error", "closed_set_accuracy": "Closed-set accuracy",
    "recall": "Recall", "precision": "Precision", "group_accuracy": "Group accuracy",
    "imbalance_ratio": "Imbalance ratio", "gap": "Gap", "mae": "MAE", "rmse": "RMSE", "r2": "R²",
    "pearson": "Pearson r", "spearman": "Spearman ρ", "kendall": "Kendall τ", "eer": "EER", "nme": "NME",
    "rank1": "Rank-1", "fdr": "FDR", "accuracy_difference": "Accuracy difference",
    "accuracy_ratio": "Accuracy ratio", "accuracy_std": "Accuracy SD", "accuracy_ser": "Accuracy SER",
    "clean_accuracy": "Clean accuracy", "robust_accuracy": "Robust accuracy", "error": "Error",
    "u-mce": "Unnormalised mCE", "relative_mce": "Relative mCE", "mean_attribute_accuracy": "Mean attribute accuracy",
    "best_mae": "Best MAE", "best_spearman": "Best Spearman ρ", "no_face_images": "Images without a face",
}

#: Dataset id -> display name (as the datasets' papers write them).
DATASETS: dict[str, str] = {
    "300w": "300-W", "affectnet": "AffectNet", "aflw19": "AFLW-19", "celeba": "CelebA",
    "celebamask-hq": "CelebAMask-HQ", "ckplus": "CK+", "ckplus48": "CK+48", "clap2015": "LAP 2015",
    "cofw29": "COFW-29", "expw": "ExpW", "fairface": "FairFace", "fer2013": "FER2013", "fer2013-images": "FER2013",
    "ferplus": "FERPlus", "jaffe": "JAFFE", "lapa": "LaPa", "lfw": "LFW", "morph2": "MORPH II", "mtfl": "MTFL",
    "rafdb": "RAF-DB", "rafdb-compound": "RAF-DB compound", "rfw": "RFW", "scface": "SCface", "sfew": "SFEW 2.0",
    "synth": "Synthetic", "tinyface": "TinyFace", "utkface": "UTKFace", "wflw": "WFLW", "xqlfw": "XQLFW",
    "noise": "Noise",
}

#: Figure kind (``FIGURES_BY_PROTOCOL``) -> display name, for captions and alt texts.
FIGURES: dict[str, str] = {
    "confusion_matrix": "Confusion matrix (row-normalised)", "per_class_recall": "Recall per class",
    "reliability": "Reliability diagram", "roc": "ROC curve", "det": "DET curve", "oscr": "OSCR curve",
    "per_class_auroc": "AUROC per held-out class", "heatmap": "Accuracy per domain", "group_bars": "Metric per group",
    "scatter_accuracy": "Estimated vs true accuracy", "scatter_auroc": "Estimated vs true AUROC",
    "ced": "Cumulative error distribution", "worst_cases": "Worst cases", "severity_curves": "Metric per severity",
    "resolution_curve": "Metric per resolution", "budget_curve": "Metric per attack budget",
    "perturbation": "Universal perturbation", "cmc": "Cumulative match characteristic",
    "decomposition": "Test scores decomposed into ID and OOD parts",
}

#: Qualifier keys that state how a metric was computed, not which slice it covers (left out of labels).
CONVENTION_KEYS = frozenset({"pos", "rule", "method", "bins", "conf", "map", "indicator", "ddof", "score",
                             "norm", "normaliser"})

_SUMMARIES = frozenset({"mean", "overall", "min", "max", "between_groups", "to_overall", "test", "train"})
_SLICE_KEYS = ("group", "open", "target", "source", "class", "detector", "rho", "attack", "severity")
_PERCENT = re.compile(r"^(?P<a>[a-z]+)@(?P<b>[a-z]+)(?P<t>[0-9.eE+-]+)$")


def split_metric(metric: str) -> tuple[str, list[str]]:
    """``"base[q1,q2]"`` -> ``("base", ["q1", "q2"])`` (qualifiers split at commas)."""
    text = str(metric)
    if not text.endswith("]") or "[" not in text:
        return text, []
    base, _, inner = text[:-1].partition("[")
    return base, [q.strip() for q in inner.split(",") if q.strip()]


def _percent(value: str) -> str:
    """``"95"`` -> ``"95%"`` (a whole-number percent), ``"0.01"`` / ``"1e-3"`` -> ``"1%"`` / ``"0.1%"``."""
    x = float(value)
    pct = x if x > 1 else 100.0 * x
    return f"{pct:g}%"


def _base_name(base: str) -> str:
    if base in METRICS:
        return METRICS[base]
    m = _PERCENT.match(base)
    if m:
        a, b = m["a"].upper(), m["b"].upper()
        try:
            return f"{a} at {_percent(m['t'])} {b}"
        except ValueError:
            pass
    rank = re.fullmatch(r"rank(\d+)", base)
    if rank:
        return f"Rank-{rank[1]}"
    at = re.fullmatch(r"([a-z]+)@([0-9.]+)", base)  # cs@5, auc@0.08, fr@0.1: a threshold in the metric's unit
    if at:
        return f"{at[1].upper()}@{at[2]}"
    if base.endswith("_ser") and base[:-4] in METRICS:
        return f"{METRICS[base[:-4]]} SER"
    text = base.replace("_", " ")
    return text[:1].upper() + text[1:]


def _slice_label(qualifier: str) -> str | None:
    """The label a qualifier adds, or None for a convention."""
    key, sep, value = qualifier.partition("=")
    if not sep:  # a bare value: a class (recall[happiness]), a summary (mean), a difference, or a convention word
        left, dash, right = qualifier.partition("-")
        if dash and left in METRICS and right in METRICS:  # gap[accuracy-mean_class_accuracy]
            return f"{METRICS[left]} − {METRICS[right].lower()}"
        if dash:  # equal-width, right-closed, max-prob: how the metric was computed
            return None
        return qualifier.replace("_", " ") if qualifier in _SUMMARIES else class_name(qualifier)
    if key in CONVENTION_KEYS:
        return None
    if key == "group":
        return group_name(value)
    if key in ("open", "class"):
        return class_name(value)
    if key == "rho":
        return f"ρ = {value}"
    return value.replace("_", " ") if key in _SLICE_KEYS else f"{key} {value}".replace("_", " ")


def metric_name(metric: str, qualifiers: bool = True) -> str:
    """The display name of a metric id (see the module docstring); ``qualifiers=False``: the base only."""
    base, quals = split_metric(metric)
    name = _base_name(base)
    if not qualifiers:
        return name
    extra = [label for label in (_slice_label(q) for q in quals) if label]
    return f"{name} ({', '.join(extra)})" if extra else name


def dataset_name(dataset: str) -> str:
    """A dataset's display name (:data:`DATASETS`), else the id unchanged."""
    return DATASETS.get(str(dataset), str(dataset))


def class_name(label: str) -> str:
    """A class label for display: underscores to spaces, first letter capitalised (``happily_surprised`` ->
    ``Happily surprised``)."""
    text = str(label).replace("_", " ")
    return text[:1].upper() + text[1:]


def group_name(group: str) -> str:
    """A group label for display: intersections joined by `` & `` keep their parts, underscores become spaces."""
    return " & ".join(part.strip().replace("_", " ") for part in str(group).split("&"))


def task_name(task: str) -> str:
    """A task name for display: the name as the suite spells it (task names are the user's own words)."""
    return str(task)


def figure_name(kind: str) -> str:
    """A figure kind's display name (:data:`FIGURES`; ``scatter_auroc_msp`` -> "Estimated vs true AUROC (msp)"),
    else the kind spelled out."""
    if kind in FIGURES:
        return FIGURES[kind]
    base = next((k for k in sorted(FIGURES, key=len, reverse=True) if kind.startswith(k + "_")), None)
    if base is not None:
        return f"{FIGURES[base]} ({kind[len(base) + 1:].replace('_', ' ')})"
    text = kind.replace("_", " ")
    return text[:1].upper() + text[1:]


def sanitise_filename(name: str) -> str:
    """A file-name-safe version of ``name``: characters outside ``[A-Za-z0-9._-]`` become ``_`` (the figure
    files' task part)."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return text or "figure"
