"""results.json's ``sample_counts`` (facebench.pipeline.counts): evaluated, left-out and no-face counts overall and
per group, counted by hand on a small split; the leaderboard section that shows them."""

import numpy as np

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.engine.store import Predictions
from facebench.pipeline.counts import sample_counts
from facebench.report.leaderboard import sample_count_tables


def _dataset(attributes: dict) -> Dataset:
    n = len(next(iter(attributes.values())))
    return Dataset("toy", "test", [f"s{i}" for i in range(n)], (), None, ArrayImages(np.zeros((n, 2, 2, 3), np.uint8)),
                   attributes=attributes)


def test_counts_by_hand_from_the_models_detection_and_the_left_out_files():
    race = np.array(["a", "a", "b", "b", "b"])
    subject = np.array([f"p{i}" for i in range(100)])[:5]  # 5 distinct values: still a group attribute
    ds = _dataset({"race": race, "subject": subject})
    preds = Predictions(ds.ids, {"face_detected": np.array([1.0, 0.0, 0.0, 1.0, 0.2])})
    bad = {"n": 3, "of": 8, "by_group": {"race": {"a": 1, "c": 2}}}  # group c: every image unreadable
    c = sample_counts(ds, preds, bad)
    assert (c["evaluated"], c["skipped"], c["no_face"]) == (5, 3, 3)
    assert c["by_group"]["race"] == {"a": {"evaluated": 2, "skipped": 1, "no_face": 1},
                                     "b": {"evaluated": 3, "skipped": 0, "no_face": 2},
                                     "c": {"evaluated": 0, "skipped": 2, "no_face": 0}}
    assert c["by_group"]["subject"]["p1"] == {"evaluated": 1, "skipped": 0, "no_face": 1}


def test_detector_attribute_when_the_model_reports_nothing_and_unknown_otherwise():
    ds = _dataset({"face_detected": np.array(["yes", "no", "no"]), "sex": np.array(["f", "m", "f"])})
    c = sample_counts(ds, Predictions(ds.ids, {"logits": np.zeros((3, 2))}), None)
    assert c["no_face"] == 2 and "face_detected" not in c["by_group"]
    assert c["by_group"]["sex"] == {"f": {"evaluated": 2, "skipped": 0, "no_face": 1},
                                    "m": {"evaluated": 1, "skipped": 0, "no_face": 1}}
    plain = _dataset({"sex": np.array(["f", "m"])})
    assert sample_counts(plain, None, None)["no_face"] is None


def test_leaderboard_section_only_when_something_was_left_out_or_missed():
    clean = {"name": "t0", "sample_counts": {"evaluated": 4, "skipped": 0, "no_face": 0}}
    assert sample_count_tables([clean]) == []
    missed = {"name": "t1", "sample_counts": {"evaluated": 4, "skipped": 1, "no_face": None, "by_group": {
        "race": {"a": {"evaluated": 2, "skipped": 1, "no_face": None}, "b": {"evaluated": 2, "skipped": 0,
                                                                          "no_face": None}}}}}
    text = "\n".join(sample_count_tables([clean, missed]))
    assert "| t1 | 4 | 1 (20.0%) | n/a |" in text and "| t0 |" not in text
    assert "| a | 2 | 1 (33.3%) | n/a |" in text and "| b | 2 | 0 | n/a |" in text


def test_html_task_page_block():
    from facebench.report.html import _sample_counts

    assert _sample_counts({"sample_counts": {"evaluated": 4, "skipped": 0, "no_face": 0}}) == ""
    html = _sample_counts({"sample_counts": {"evaluated": 3, "skipped": 1, "no_face": None, "by_group": {
        "race": {"a<b": {"evaluated": 3, "skipped": 1, "no_face": None}}}}})
    assert "3 evaluated, 1 left out (unreadable images), no face found on not reported" in html
    assert "<td class=\"text\">a&lt;b</td><td>3</td><td>1</td><td>n/a</td>" in html
