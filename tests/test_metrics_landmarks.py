"""Landmark metrics (facebench/metrics/landmarks.py) against independent computations: hand-worked vectors,
the simps-integrated AUC recipe of the spec, a test-local re-derivation of HRNet's compute_nme, and a plain
index bootstrap."""

import numpy as np
import pytest
from scipy.integrate import simpson

from facebench.data.landmark_schemes import SCHEMES
from facebench.errors import MetricInputError
from facebench.metrics import landmarks as lm

# -- hand-worked vectors -----------------------------------------------------------------------------------
# Image 0: errors (5, 0, 0) px, d = 10 -> NME = 5 / (10 * 3) = 1/6.
# Image 1: errors (0, 0, 4) px, d = 20 -> NME = 4 / (20 * 3) = 1/15.
GT = np.array([[[0, 0], [10, 0], [5, 5]], [[0, 0], [20, 0], [10, 10]]], dtype=float)
PRED = np.array([[[3, 4], [10, 0], [5, 5]], [[0, 0], [20, 0], [10, 6]]], dtype=float)


def test_point_errors_and_normaliser_by_hand():
    assert np.allclose(lm.point_errors(PRED, GT), [[5, 0, 0], [0, 0, 4]])
    assert np.allclose(lm.normaliser_distances(GT, (0,), (1,)), [10, 20])


def test_per_image_and_dataset_nme_by_hand():
    d = lm.normaliser_distances(GT, (0,), (1,))
    nme = lm.per_image_nme(PRED, GT, d)
    assert np.allclose(nme, [1 / 6, 1 / 15])
    assert lm.mean_nme(nme) == pytest.approx((1 / 6 + 1 / 15) / 2)  # 7/60: a fraction, not a percentage


def test_visibility_leaves_points_out_and_the_mean_is_not_pooled():
    pred = PRED.copy()
    pred[1, 0] = (100, 100)  # a wild prediction on a point that has no ground truth
    vis = np.array([[True, True, True], [False, True, True]])
    nme = lm.per_image_nme(pred, GT, [10, 20], vis)
    assert np.allclose(nme, [1 / 6, 4 / (20 * 2)])
    assert lm.mean_nme(nme) == pytest.approx((1 / 6 + 0.1) / 2)  # plain mean over images: 0.1333...
    pooled = (5 / 10 + 4 / 20) / 5  # pooled over the 5 visible points would give 0.14
    assert lm.mean_nme(nme) != pytest.approx(pooled)


def test_per_point_nme_by_hand():
    assert np.allclose(lm.per_point_nme(PRED, GT, [10, 20]), [(0.5 + 0) / 2, 0, (0 + 0.2) / 2])
    vis = np.array([[True, False, True], [False, False, True]])
    out = lm.per_point_nme(PRED, GT, [10, 20], vis)
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.1)


def test_group_normaliser_uses_the_visible_points_of_each_group():
    gt = np.zeros((1, 4, 2))
    gt[0] = [[0, 0], [2, 0], [10, 0], [12, 6]]
    # group means (1, 0) and (11, 3): d = sqrt(100 + 9)
    assert lm.normaliser_distances(gt, (0, 1), (2, 3))[0] == pytest.approx(np.sqrt(109))
    vis = np.array([[True, False, True, True]])
    assert lm.normaliser_distances(gt, (0, 1), (2, 3), vis)[0] == pytest.approx(np.hypot(11, 3))


def test_box_normaliser_is_sqrt_of_width_times_height():
    assert np.allclose(lm.box_normalisers([[0, 0, 4, 9], [10, 20, 26, 21]]), [6, 4])


def test_a_zero_normaliser_is_an_error_naming_the_image():
    gt = GT.copy()
    gt[1, 1] = gt[1, 0]  # coincident normaliser points in image 1
    with pytest.raises(MetricInputError, match=r"normaliser is 0.*image 1 "):
        lm.normaliser_distances(gt, (0,), (1,))
    with pytest.raises(MetricInputError, match=r"image 0 "):
        lm.per_image_nme(PRED, GT, [0.0, 20.0])
    with pytest.raises(MetricInputError, match="image 1"):
        lm.per_point_nme(PRED, GT, [10.0, np.nan])


def test_fewer_than_two_visible_normaliser_points_is_an_error_naming_the_image():
    vis = np.ones((2, 3), dtype=bool)
    vis[1, 1] = False
    with pytest.raises(MetricInputError, match=r"fewer than 2 visible normaliser points at image 1 "):
        lm.normaliser_distances(GT, (0,), (1,), vis)
    with pytest.raises(MetricInputError, match="no visible point at image 0"):
        lm.per_image_nme(PRED, GT, [10, 20], np.array([[False] * 3, [True] * 3]))
    with pytest.raises(MetricInputError, match=r"0\.\.2"):
        lm.normaliser_distances(GT, (0,), (3,))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(MetricInputError, match="same"):
        lm.point_errors(PRED[:, :2], GT)
    with pytest.raises(MetricInputError, match=r"\(N, K, 2\)"):
        lm.point_errors(PRED[..., 0], GT[..., 0])
    bad = PRED.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(MetricInputError, match="pred has NaN or inf at image 1"):
        lm.point_errors(bad, GT)
    with pytest.raises(MetricInputError, match="visible"):
        lm.per_image_nme(PRED, GT, [10, 20], np.ones((2, 2), bool))
    with pytest.raises(MetricInputError, match="one normalising distance per image"):
        lm.per_image_nme(PRED, GT, [10])
    with pytest.raises(MetricInputError, match="negative"):
        lm.failure_rate([0.1, -0.01])
    with pytest.raises(MetricInputError, match="fractions"):
        lm.auc([0.05], threshold=10)
    with pytest.raises(MetricInputError, match="box"):
        lm.box_normalisers([[0, 0, 0, 5]])


# -- FR, AUC, CED --------------------------------------------------------------------------------------------
def test_failure_rate_is_strict():
    assert lm.failure_rate([0.05, 0.1, 0.1000001, 0.2], 0.1) == 0.5
    assert lm.failure_rate([0.08, 0.08], 0.08) == 0.0


def test_auc_by_hand():
    # CED = 1/4 on [0, 0.05), 2/4 on [0.05, 0.1): integral 0.05/4 + 0.05/2 = 0.0375; / 0.1 = 0.375
    assert lm.auc([0.0, 0.05, 0.1, 0.2], 0.1) == pytest.approx(0.375)
    assert lm.auc([0.3, 0.5], 0.1) == 0.0
    assert lm.auc([0.0, 0.0], 0.08) == 1.0


def _simps_auc(nme, t, step=0.0001):
    """The spec's reference recipe (PIPNet-style compute_fr_and_auc), with simps renamed simpson."""
    xs = np.arange(0, t + step, step)
    ys = np.array([np.count_nonzero(nme <= x) for x in xs]) / len(nme)
    return simpson(ys, x=xs) / t


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("t", [0.10, 0.08])
def test_auc_agrees_with_the_simps_recipe(seed, t):
    rng = np.random.default_rng(seed)
    # realistic NMEs: log-normal around 0.05 with a tail of failures
    nme = np.concatenate([rng.lognormal(np.log(0.05), 0.35, size=2900), rng.uniform(0.1, 0.4, size=95)])
    exact = lm.auc(nme, t)
    assert abs(exact - _simps_auc(nme, t)) < 1e-4
    assert 0.3 < exact < 0.7  # the vectors are realistic: the check is not trivially 0 or 1


def test_ced_points_integrate_to_the_auc():
    rng = np.random.default_rng(3)
    nme = rng.lognormal(np.log(0.05), 0.5, size=500)
    for t in (0.1, 0.08):
        xs, ys = lm.ced_points(nme, t)
        assert xs[0] == 0.0 and xs[-1] == t and np.all(np.diff(xs) > 0) and np.all(np.diff(ys) >= 0)
        assert ys[-1] == pytest.approx(1 - lm.failure_rate(nme, t))
        assert ys[0] == pytest.approx(np.mean(nme <= 0))
        step_area = np.sum(np.diff(xs) * ys[:-1])  # the step holds y until the next x
        assert step_area / t == pytest.approx(lm.auc(nme, t), abs=1e-12)
        brute = np.array([np.mean(nme <= x) for x in xs])
        assert np.array_equal(ys, brute)


# -- HRNet's compute_nme, re-derived here from the spec's description ---------------------------------------
def _hrnet_style_nme(preds, gts, box_size=None):
    """Per image: sum over the L points of ||p - g|| / (interocular * L); interocular by L: 19 -> the box
    size, 29 -> ||g8 - g9||, 68 -> ||g36 - g45||, 98 -> ||g60 - g72|| (0-based)."""
    out = np.zeros(len(preds))
    for i, (p, g) in enumerate(zip(preds, gts)):
        n_points = len(g)
        if n_points == 19:
            interocular = box_size[i]
        else:
            a, b = {29: (8, 9), 68: (36, 45), 98: (60, 72)}[n_points]
            interocular = np.linalg.norm(g[a] - g[b])
        out[i] = np.sum(np.linalg.norm(p - g, axis=1)) / (interocular * n_points)
    return out


@pytest.mark.parametrize("scheme", ["cofw29", "ibug68", "wflw98", "aflw19"])
def test_nme_matches_the_hrnet_formula(scheme):
    rng = np.random.default_rng(7)
    k = SCHEMES[scheme].n_points
    gt = rng.uniform(20, 200, size=(6, k, 2))
    pred = gt + rng.normal(0, 3, size=gt.shape)
    if scheme == "aflw19":
        lo, hi = gt.min(axis=1), gt.max(axis=1)
        boxes = np.concatenate([lo, hi], axis=1)
        d = lm.box_normalisers(boxes)
        reference = _hrnet_style_nme(pred, gt, np.sqrt((hi - lo).prod(axis=1)))
    else:
        d = lm.normaliser_distances(gt, *SCHEMES[scheme].normalisers["inter_ocular"])
        reference = _hrnet_style_nme(pred, gt)
    assert np.allclose(lm.per_image_nme(pred, gt, d), reference, rtol=1e-12)


# -- swap check --------------------------------------------------------------------------------------------
def _symmetric_faces(scheme, n, rng):
    """Faces whose mirror pairs sit at mirrored x about x = 100; midline points on x = 100."""
    s = SCHEMES[scheme]
    gt = np.zeros((n, s.n_points, 2))
    gt[..., 0] = 100.0
    gt[..., 1] = rng.uniform(40, 160, size=(n, s.n_points))
    for right, left in s.mirror_pairs:
        a = rng.uniform(10, 50, size=n)
        gt[:, right, 0], gt[:, left, 0] = 100 - a, 100 + a
        gt[:, left, 1] = gt[:, right, 1]
    return gt


def test_swap_check_by_hand_on_five_points():
    gt = np.array([[[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]], dtype=float)
    mirrored = gt[:, [1, 0, 2, 4, 3]]  # labels from the viewer's side
    # plain: eyes off by 40 px each, mouth corners by 30 px: (40 + 40 + 0 + 30 + 30) / (40 * 5) = 0.7
    check = lm.swap_check(mirrored, gt, [40.0], ((0, 1), (3, 4)))
    assert check.nme == pytest.approx(0.7) and check.nme_swapped == 0.0
    assert check.mirrored and check.images_lower == 1.0
    assert check.to_dict() == {"nme": pytest.approx(0.7), "nme_swapped": 0.0, "images_lower": 1.0,
                               "mirrored": True}


@pytest.mark.parametrize("scheme", ["ibug68", "wflw98", "cofw29", "aflw19"])
def test_swap_check_flags_mirrored_models_only(scheme):
    rng = np.random.default_rng(11)
    s = SCHEMES[scheme]
    gt = _symmetric_faces(scheme, 20, rng)
    good = gt + rng.normal(0, 1.0, size=gt.shape)
    d = np.full(20, 60.0)
    ok = lm.swap_check(good, gt, d, s.mirror_pairs)
    assert not ok.mirrored and ok.nme_swapped > 3 * ok.nme and ok.images_lower == 0.0
    bad = lm.swap_check(good[:, s.mirror_permutation()], gt, d, s.mirror_pairs)
    assert bad.mirrored and bad.nme == pytest.approx(ok.nme_swapped) and bad.nme_swapped == pytest.approx(ok.nme)
    with pytest.raises(MetricInputError, match="mirror_pairs"):
        lm.swap_check(good, gt, d, ((0, s.n_points),))


# -- bootstrap -----------------------------------------------------------------------------------------------
def _index_bootstrap(values, n_resamples, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    return np.percentile(values[idx].mean(axis=1), [2.5, 97.5])


def test_bootstrap_cis_agree_with_a_plain_index_bootstrap():
    rng = np.random.default_rng(5)
    nme = np.concatenate([rng.lognormal(np.log(0.05), 0.4, size=570), rng.uniform(0.1, 0.3, size=30)])
    cis = lm.bootstrap_cis(nme, thresholds=(0.1, 0.08), n_resamples=4000, seed=1)
    assert set(cis) == {"nme", "fr@0.1", "auc@0.1", "fr@0.08", "auc@0.08"}
    estimates = {"nme": lm.mean_nme(nme), "fr@0.1": lm.failure_rate(nme, 0.1), "auc@0.1": lm.auc(nme, 0.1),
                 "fr@0.08": lm.failure_rate(nme, 0.08), "auc@0.08": lm.auc(nme, 0.08)}
    per_image = {"nme": nme, "fr@0.1": (nme > 0.1) * 1.0, "auc@0.1": np.maximum(0, 0.1 - nme) / 0.1,
                 "fr@0.08": (nme > 0.08) * 1.0, "auc@0.08": np.maximum(0, 0.08 - nme) / 0.08}
    for key, ci in cis.items():
        lo, hi = _index_bootstrap(per_image[key], 4000, seed=99)
        width = hi - lo
        assert ci.low < estimates[key] < ci.high, key
        assert abs(ci.low - lo) < 0.1 * width and abs(ci.high - hi) < 0.1 * width, key
        assert ci.n_resamples == 4000 and ci.confidence == 0.95 and ci.unit == "sample"


def test_bootstrap_is_seeded_and_takes_clusters():
    nme = np.random.default_rng(0).lognormal(np.log(0.05), 0.4, size=200)
    a = lm.bootstrap_cis(nme, thresholds=(0.1,), n_resamples=200, seed=3)
    b = lm.bootstrap_cis(nme, thresholds=(0.1,), n_resamples=200, seed=3)
    assert {k: v.to_dict() for k, v in a.items()} == {k: v.to_dict() for k, v in b.items()}
    clustered = lm.bootstrap_cis(nme, thresholds=(0.1,), n_resamples=200, seed=3, clusters=np.arange(200) // 4)
    assert clustered["nme"].unit == "cluster" and clustered["nme"].low < lm.mean_nme(nme) < clustered["nme"].high


# -- real MTFL annotations (skipped when ../shared/data is absent) -------------------------------------------
def _mtfl_test_points(root):
    """(N, 5, 2) MTFL test points read straight from testing.txt (path, x1..x5, y1..y5, 4 attributes)."""
    rows = [line.split() for line in (root / "testing.txt").read_text().splitlines() if line.strip()]
    xy = np.array([[float(v) for v in row[1:11]] for row in rows])
    return np.stack([xy[:, :5], xy[:, 5:]], axis=2)


def test_swap_check_on_the_real_mtfl_test_faces(shared_data):
    gt = _mtfl_test_points(shared_data / "mtfl")
    assert gt.shape == (2995, 5, 2)
    d = lm.normaliser_distances(gt, (0,), (1,))  # eye centres: every test face has a usable normaliser
    rng = np.random.default_rng(0)
    pred = gt + rng.normal(0, 0.04, size=gt.shape) * d[:, None, None]  # a plausible model, NME about 0.05
    ok = lm.swap_check(pred, gt, d, ((0, 1), (3, 4)))
    assert 0.04 < ok.nme < 0.06 and not ok.mirrored
    assert ok.nme_swapped > 8 * ok.nme  # the spec's "about ninefold" on a correct model
    assert ok.images_lower < 0.01  # the few upside-down / profile faces at most
    bad = lm.swap_check(pred[:, [1, 0, 2, 4, 3]], gt, d, ((0, 1), (3, 4)))
    assert bad.mirrored and bad.images_lower > 0.99
