"""Closed-set identification: the metrics (mate ranks with both tie rules, CMC, blockwise cosine search)
against hand-worked numbers and the spec's golden vectors (TinyFace DIR_FAR closed set, XQLFW evaluator),
and the ``identification`` protocol end to end: a stub feature model on a TinyFace fixture through the
engine, rank-1 per SCface distance, flip-sum features, and a suite run on an SCface fixture."""

import warnings

import numpy as np
import pytest
from PIL import Image

from facebench.data.dataset import Dataset
from facebench.data.images import ArrayImages
from facebench.data.lrfr import TinyFace
from facebench.data.preprocess import InputSpec
from facebench.engine.inference import InferenceSettings, run_inference
from facebench.engine.store import PredictionStore
from facebench.errors import ConfigError, MetricInputError
from facebench.metrics import identification as im
from facebench.metrics.verification import xqlfw_10fold
from facebench.models.base import ModelAdapter
from facebench.protocols.base import EvalContext, ExtraSplit
from facebench.protocols.identification import IdentificationProtocol
from facebench.records import Predictions
from facebench.registry import PROTOCOLS
from facebench.runner import run_suite


# -- metrics ------------------------------------------------------------------------------------------------
def test_mate_ranks_hand_worked_with_both_tie_rules():
    scores = np.array([[0.9, 0.5, 0.7, 0.1],   # best mate 0.5, beaten by 0.9 and 0.7 -> rank 3
                       [0.2, 0.2, 0.1, 0.3],   # best mate 0.2 ties a non-mate 0.2, beaten by 0.3 -> 3 or 2
                       [0.9, 0.8, 0.7, 0.6],   # no mate -> 0
                       [0.4, 0.6, 0.6, 0.0]])  # two mates at 0.6, nothing above -> 1
    mates = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 0]], dtype=bool)
    assert im.mate_ranks(scores, mates).tolist() == [3, 3, 0, 1]
    assert im.mate_ranks(scores, mates, ties="optimistic").tolist() == [3, 2, 0, 1]
    assert im.cmc_curve([3, 3, 0, 1], 4).tolist() == pytest.approx([1 / 3, 1 / 3, 1.0, 1.0])
    assert im.rank_hits([3, 3, 0, 1], [1, 3]).tolist() == [[0, 1], [0, 1], [1, 1]]
    assert np.isnan(im.cmc_curve([0, 0], 2)).all()
    with pytest.raises(MetricInputError, match="ties must be one of"):
        im.mate_ranks(scores, mates, ties="random")
    with pytest.raises(MetricInputError, match="one shape"):
        im.mate_ranks(scores, mates[:, :3])


def test_golden_tinyface_dir_far_closed_set():
    score = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert im.closed_set_dir(score, np.eye(2, dtype=bool), [1]).tolist() == [1.0]
    swapped = np.array([[0, 1], [1, 0]], dtype=bool)
    assert im.closed_set_dir(score, swapped, [1, 2]).tolist() == [0.0, 1.0]


def test_blockwise_search_matches_the_full_matrix():
    rng = np.random.default_rng(3)
    gallery, probes = rng.normal(size=(50, 8)), rng.normal(size=(23, 8))
    g_subj = np.array([str(i % 12) for i in range(45)] + [""] * 5)  # the last 5: distractors
    p_subj = np.array([str(i % 14) for i in range(23)])  # subjects 12 and 13 have no gallery image
    full = im.l2_rows(probes) @ im.l2_rows(gallery).T
    expected = im.mate_ranks(full, (p_subj[:, None] == g_subj[None, :]) & (g_subj != "")[None, :])
    for chunk in (1, 50, 170, 1 << 22):
        assert im.search_ranks(probes, p_subj, gallery, g_subj, chunk_elements=chunk).tolist() == expected.tolist()
    assert (expected == 0).sum() == 2 and expected.max() > 1
    assert im.search_ranks(probes * 7.5, p_subj, gallery, g_subj).tolist() == expected.tolist()  # scale-free
    with pytest.raises(MetricInputError, match="the gallery is empty"):
        im.search_ranks(probes, p_subj, gallery[:0], g_subj[:0])


def _xqlfw_reference(dist, same, k=10):
    """The XQLFW evaluator written out: contiguous KFold, thresholds 0..2 step 0.001, same iff dist < t."""
    n, grid = len(dist), np.arange(0, 2, 0.001)
    bounds = np.cumsum([0] + [n // k + (1 if i < n % k else 0) for i in range(k)])
    accs = []
    for i in range(k):
        test = np.zeros(n, dtype=bool)
        test[bounds[i]:bounds[i + 1]] = True
        train_acc = [np.mean((dist[~test] < t) == same[~test]) for t in grid]
        t = grid[int(np.argmax(train_acc))]
        accs.append(np.mean((dist[test] < t) == same[test]))
    return float(np.mean(accs))


def test_golden_xqlfw_evaluator():
    same = np.tile([True, False], 10)
    e = np.eye(20)
    emb_a = e[np.arange(20)]
    emb_b = np.where(same[:, None], emb_a, e[(np.arange(20) + 1) % 20])  # identical vs orthogonal
    cos = np.sum(emb_a * emb_b, axis=1)
    out = xqlfw_10fold(cos, same)
    assert out["fold_accuracies"].tolist() == [1.0] * 10 and out["accuracy_mean"] == 1.0
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.5
    cos = np.clip(np.where(same, 0.55, 0.2) + rng.normal(0, 0.2, 200), -1, 1)
    assert xqlfw_10fold(cos, same)["accuracy_mean"] == pytest.approx(_xqlfw_reference(1 - cos, same), abs=1e-12)


# -- the protocol on a TinyFace fixture, through the engine ---------------------------------------------------
class _MeanColour(ModelAdapter):
    """Stub feature model: the mean RGB of the (resized) input."""

    name = "mean-colour"

    def __init__(self):
        super().__init__()
        self.input_spec = InputSpec(size=(4, 4), channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.heads, self.default_head = {}, None

    def forward(self, batch, heads, features):
        return {"features": batch.mean(dim=(2, 3))}


TINY = {"Probe/1_1.png": (210, 15, 20), "Probe/1_2.png": (150, 60, 20), "Probe/7_1.png": (25, 190, 25),
        "Probe/9_1.png": (20, 20, 200), "Gallery_Match/1_3.png": (200, 20, 20),
        "Gallery_Match/7_2.png": (20, 200, 20), "Gallery_Match/7_3.png": (30, 180, 60),
        "Gallery_Distractor/a/d0.png": (150, 70, 20), "Gallery_Distractor/a/d1.png": (20, 20, 20),
        "Gallery_Distractor/d2.png": (100, 100, 100)}


def _tiny_fixture(root):
    base = root / "tinyface" / "Testing_Set"
    for rel, colour in TINY.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 6, 3), colour, dtype=np.uint8)).save(base / rel)
    return root


def _predict(ds, tmp_path):
    settings = InferenceSettings(batch_size=4, device="cpu", progress=False)
    preds, _ = run_inference(_MeanColour(), ds, PredictionStore(tmp_path / "store"), heads=(), features=True,
                             settings=settings)
    return preds


def test_protocol_on_tinyface_fixture_with_distractors(tmp_path):
    ds = TinyFace(_tiny_fixture(tmp_path)).load("test")
    ctx = EvalContext(ds, _predict(ds, tmp_path), None, (), n_resamples=300, seed=1)
    res = IdentificationProtocol(ranks=[1, 5]).evaluate(ctx)
    m = {r.metric: r for r in res.records}
    # probe 1_2 is nearer distractor d0 than its mate 1_3 (rank 2); probe 9_1 has no gallery image
    assert m["rank1"].value == pytest.approx(2 / 3) and m["rank1"].n == 3 and m["rank1"].headline
    assert m["rank5"].value == 1.0 and not m["rank5"].headline
    assert m["probes_without_mate"].value == 1 and m["probes_without_mate"].n == 4
    lo, hi = m["rank1"].ci
    assert 0 <= lo <= 2 / 3 <= hi <= 1 and "unit=probe" in m["rank1"].conventions["bootstrap"]
    assert m["rank1"].conventions["counts"] == {"probes": 4, "probes_ranked": 3, "gallery": 3, "distractors": 3}
    assert res.details["cmc"][:3] == pytest.approx([2 / 3, 1.0, 1.0]) and len(res.details["cmc"]) == 20
    assert any("1 of 4 probes have no mate" in w for w in res.warnings)
    plain = TinyFace(tmp_path, distractors=False).load("test")
    res = IdentificationProtocol().evaluate(EvalContext(plain, _predict(plain, tmp_path), None, (), n_resamples=0))
    m = {r.metric: r for r in res.records}
    assert m["rank1"].value == 1.0 and m["rank1"].ci is None and [r.metric for r in res.records][:4] == \
        ["rank1", "rank5", "rank10", "rank20"]


# -- groups, flip, errors on hand-made features ----------------------------------------------------------------
def _scface_like():
    """Gallery: subjects a, b (unit vectors e0, e1); probes at distances 1 and 3 (d1 probes of b look like a)."""
    ids = ["g_a", "g_b", "p_a1", "p_b1", "p_a3", "p_b3"]
    feats = np.array([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0], [0.8, 0.3, 0], [1, 0.1, 0], [0.1, 1, 0]], dtype=float)
    attrs = {"subject": np.array(["a", "b", "a", "b", "a", "b"]),
             "role": np.array(["gallery", "gallery", "probe", "probe", "probe", "probe"]),
             "distance": np.array(["", "", "1", "1", "3", "3"])}
    ds = Dataset("toy", "test", ids, (), None, ArrayImages(np.zeros((6, 2, 2, 3), np.uint8)), attributes=attrs)
    return ds, Predictions(np.array(ids), {"features": feats})


def test_rank1_per_group_and_their_mean():
    ds, preds = _scface_like()
    res = IdentificationProtocol(ranks=[1, 2], group_by="distance").evaluate(EvalContext(ds, preds, None, (),
                                                                                         n_resamples=100))
    m = {r.metric: r for r in res.records}
    assert m["rank1[distance=1]"].value == 0.5 and m["rank1[distance=3]"].value == 1.0
    assert m["rank1[distance_mean]"].value == 0.75 and m["rank1[distance_mean]"].headline
    assert m["rank1"].value == 0.75 and m["rank2"].value == 1.0
    assert res.details["groups"] == [{"group": "1", "probes_ranked": 2, "rank1": 0.5},
                                     {"group": "3", "probes_ranked": 2, "rank1": 1.0}]


def test_flip_sums_normalised_features_of_the_mirrored_split():
    ds, preds = _scface_like()
    mirrored = preds.outputs["features"].copy()
    mirrored[3] = [0.0, 1.0, 0.0]  # the mirrored p_b1 looks like b: the flip-sum puts it nearer b's mugshot
    flipped = Predictions(preds.ids[::-1], {"features": mirrored[::-1]})  # stored in another order: aligned by id
    proto = IdentificationProtocol(flip=True)
    task = type("T", (), {"dataset": "scface", "split": "test", "path": None, "dataset_args": {"cameras": [1]}})()
    ref = proto.requires(task)["flipped"]
    assert ref.dataset_args == {"cameras": [1], "transform": "hflip"} and ref.features
    ctx = EvalContext(ds, preds, None, (), n_resamples=0, extras={"flipped": ExtraSplit(ds, flipped)})
    m = {r.metric: r for r in proto.evaluate(ctx).records}
    assert m["rank1"].value == 1.0 and "hflip" in m["rank1"].conventions["embedding"]
    assert {r.metric: r for r in IdentificationProtocol().evaluate(ctx).records}["rank1"].value == 0.75


def test_requirements_parameters_and_input_errors():
    req = PROTOCOLS.get("identification")(group_by="distance").requirements()
    assert req.features and req.attributes and not req.labels and not req.head
    assert req.attribute_names == ("subject", "role", "distance")
    for bad in ([], [0], [1, 1], [1.5]):
        with pytest.raises(ConfigError, match="ranks must be a list of distinct integers"):
            IdentificationProtocol(ranks=bad)
    with pytest.raises(ConfigError, match="ties must be one of"):
        IdentificationProtocol(ties="coin")
    ds, preds = _scface_like()
    no_roles = Dataset("toy", "test", ds.ids, (), None, ds.images, attributes={"subject": ds.attributes["subject"]})
    with pytest.raises(MetricInputError, match="no role attribute"):
        IdentificationProtocol().evaluate(EvalContext(no_roles, preds, None, (), n_resamples=0))
    odd = Dataset("toy", "test", ds.ids, (), None, ds.images, attributes={**ds.attributes, "subject": np.array(
        ["a", "b", "c", "c", "c", "c"])})
    with pytest.raises(MetricInputError, match="none of the 4 probes has a mate"):
        IdentificationProtocol().evaluate(EvalContext(odd, preds, None, (), n_resamples=0))


# -- a suite run on an SCface fixture ------------------------------------------------------------------------
def test_suite_runs_identification_on_scface_fixture(tmp_path):
    from facebench.synth.generator import render_split

    faces = iter(np.asarray(f) for f in render_split("test", 16, seed=2).images)
    root = tmp_path / "scface"
    for s in (51, 52):
        (root / "mugshot_frontal_cropped_all").mkdir(parents=True, exist_ok=True)
        Image.fromarray(next(faces)).save(root / "mugshot_frontal_cropped_all" / f"{s:03d}_frontal.JPG")
        for d in (1, 2, 3):
            folder = root / f"surveillance_cameras_distance_{d}" / "cam1"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(next(faces)).save(folder / f"{s:03d}_cam1_{d}.jpg")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""name: s
defaults: {{bootstrap: 50, missing_data: skip}}
tasks:
  - {{name: scface, dataset: scface, split: test, path: {root}, protocol: identification,
     params: {{ranks: [1, 2], group_by: distance}}}}
  - {{name: tinyface, dataset: tinyface, split: test, path: {tmp_path / 'absent'}, protocol: identification}}
""")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = run_suite(suite, "synth-cnn", out=tmp_path / "o", progress=False)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    m = {r["metric"]: r for r in out.results["records"] if r["task"] == "scface"}
    assert m["rank2"]["value"] == 1.0 and m["rank1"]["n"] == 6  # two gallery subjects: rank <= 2 always
    assert {"rank1[distance=1]", "rank1[distance=2]", "rank1[distance=3]", "rank1[distance_mean]"} <= set(m)
    assert m["rank1[distance_mean]"]["value"] == pytest.approx(np.mean(
        [m[f"rank1[distance={d}]"]["value"] for d in (1, 2, 3)]))
    status = {t["name"]: t.get("status") for t in out.results["tasks"]}
    assert status["tinyface"] == "skipped", status
    from _task_figures import drawn_figures

    row = next(t for t in out.results["tasks"] if t["name"] == "scface")
    assert row["details"]["cmc"][1] == 1.0 and row["details"]["cmc"][0] == m["rank1"]["value"]
    drawn = drawn_figures({"tasks": [row], "records": out.results["records"]}, tmp_path / "figs")
    assert drawn["scface"] == ["scface-cmc.png", "scface-cmc.pdf"]
    from facebench.report import figures as F

    with F.captured_figures() as figs:
        F.task_figures(row, out.results["records"], tmp_path / "content")
    ax = figs[0].axes[0]
    curve, rank1 = ax.get_lines()
    assert list(curve.get_ydata()) == row["details"]["cmc"] and list(curve.get_xdata())[:3] == [1, 2, 3]
    assert list(rank1.get_ydata()) == [m["rank1"]["value"]] * 2
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("rank", "identification rate")
