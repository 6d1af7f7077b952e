"""results.json's ``sample_counts`` per task: samples evaluated, left out and without a face, overall and per group.

* ``evaluated``: samples of the task's split that were evaluated (after screening);
* ``skipped``: samples left out because their image cannot be read (``on_bad_image: skip``; the split's
  ``bad_images`` summary, which the screen step keeps per group); on a pairs split ``evaluated`` and
  ``skipped`` count images and ``pairs_dropped`` the pairs that lost an image;
* ``no_face``: evaluated samples on which no face was found: the model's own ``face_detected`` output < 0.5
  (dlib-resnet, sface, the landmark models), else the declared detector's ``face_detected`` attribute
  (``facebench.pipeline.detect``); ``None`` when neither reports detection.

``by_group``: the same three counts per value of every sample attribute with at most ``MAX_GROUP_VALUES``
distinct values (the grouping that ``bad_images`` uses), so a group whose faces go undetected more often shows.
"""

from __future__ import annotations

import numpy as np

from facebench.data.scan import MAX_GROUP_VALUES

DETECTOR_ATTRIBUTE = "face_detected"


def no_face_mask(dataset, predictions) -> np.ndarray | None:
    """Per evaluated sample: True where no face was found (see the module docstring), None when unknown."""
    found = None if predictions is None else predictions.outputs.get("face_detected")
    if found is not None:
        found = np.asarray(found, dtype=np.float64).reshape(-1)
        return found < 0.5 if found.size == len(dataset) else None
    attr = dataset.attributes.get(DETECTOR_ATTRIBUTE)
    return None if attr is None else np.asarray(attr).astype(str) == "no"


def _group_attributes(dataset) -> dict[str, np.ndarray]:
    out = {}
    for key, values in sorted(dataset.attributes.items()):
        values = np.asarray(values).astype(str)
        if key != DETECTOR_ATTRIBUTE and len(np.unique(values)) <= MAX_GROUP_VALUES:
            out[key] = values
    return out


def sample_counts(dataset, predictions, bad_images: dict | None) -> dict:
    """``{evaluated, skipped, no_face, by_group: {attribute: {group: {evaluated, skipped, no_face}}}}``."""
    no_face = no_face_mask(dataset, predictions)
    skipped_by = (bad_images or {}).get("by_group") or {}
    out = {"evaluated": len(dataset), "skipped": int((bad_images or {}).get("n", 0)),
           "no_face": None if no_face is None else int(no_face.sum())}
    if (bad_images or {}).get("pairs_dropped"):
        out["pairs_dropped"] = int(bad_images["pairs_dropped"])
    groups = {}
    for key, values in _group_attributes(dataset).items():
        names = sorted(set(values.tolist()) | set(skipped_by.get(key, {})))
        groups[key] = {name: {"evaluated": int((values == name).sum()),
                              "skipped": int(skipped_by.get(key, {}).get(name, 0)),
                              "no_face": None if no_face is None else int((no_face & (values == name)).sum())}
                       for name in names}
    if groups:
        out["by_group"] = groups
    return out
