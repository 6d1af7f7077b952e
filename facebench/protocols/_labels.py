"""Matching a model head's label space to a dataset's, by class name, under two explicit policies
(shared by the closed-set, imbalanced, cross-domain and open-set protocols).

* ``unsupported``: dataset classes the model cannot predict -- ``drop`` those samples, or count
  them as ``error`` (appended to the label space; never predicted, so always wrong).
* ``extra``: model classes the dataset lacks -- ``restrict`` argmax and softmax to the shared
  classes, or ``keep`` them (predicting one is an error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import MetricInputError


@dataclass
class MatchedLabels:
    label_space: list[str]   # model classes in use, then (``error`` policy) unsupported dataset classes
    used: list[str]          # the model classes the argmax runs over
    keep: np.ndarray         # bool per dataset sample: evaluated
    y_true: np.ndarray       # int per kept sample, index into label_space
    logits: np.ndarray       # (kept, len(used)) float64, columns in ``used`` order
    present: list[str]       # dataset classes with samples
    empty: list[str]         # dataset classes without samples
    unsupported: list[str]   # present dataset classes outside ``used``
    eval_classes: list[int]  # label_space indices of the present classes that are evaluated

    @property
    def dropped(self) -> int:
        return int((~self.keep).sum())

    @property
    def y_pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1).astype(np.int64)


def match_labels(logits, labels, dataset_classes, model_classes, unsupported: str = "drop",
                 extra: str = "restrict", where: str = "") -> MatchedLabels:
    """Align ``logits`` (n, len(model_classes)) and class-name ``labels`` (n,) on shared class names."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    model_classes = tuple(model_classes)
    present = [c for c in dataset_classes if np.any(labels == c)]
    empty = [c for c in dataset_classes if c not in present]
    used = [c for c in model_classes if c in dataset_classes] if extra == "restrict" else list(model_classes)
    if not used:
        raise MetricInputError(f"model classes {model_classes} and dataset classes {tuple(dataset_classes)} share no class "
                         f"name{' (' + where + ')' if where else ''}")
    unsupported_classes = [c for c in present if c not in used]
    label_space = used + (unsupported_classes if unsupported == "error" else [])
    index = {c: i for i, c in enumerate(label_space)}
    codes = np.full(labels.shape[0], -1, dtype=np.int64)  # index into label_space, -1 when not in it
    for c, i in index.items():
        codes[labels == c] = i
    keep = codes >= 0
    columns = [model_classes.index(c) for c in used]
    y_true = codes[keep]
    eval_classes = [index[c] for c in present if c in index]
    return MatchedLabels(label_space, used, keep, y_true, logits[np.ix_(keep, columns)], present, empty,
                         unsupported_classes, eval_classes)
