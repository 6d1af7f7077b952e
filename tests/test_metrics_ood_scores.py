"""OOD scores against independent oracles (scipy.special, scikit-learn) and hand-worked cases."""

import numpy as np
import pytest
from scipy.stats import entropy as sp_entropy
from scipy.special import logsumexp as sp_logsumexp
from scipy.special import softmax as sp_softmax

from facebench.metrics.ood_scores import (
    FEATURE_DETECTORS,
    LOGIT_SCORES,
    KNNScore,
    LinearProbe,
    Mahalanobis,
    ViM,
    energy,
    logit_score,
    max_logit,
    msp,
    neg_entropy,
)

sklearn = pytest.importorskip("sklearn")
from sklearn.covariance import EmpiricalCovariance  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# --------------------------------------------------------------------------- logit scores


def test_logit_scores_match_scipy(rng):
    z = rng.normal(scale=3.0, size=(200, 7))
    p = sp_softmax(z, axis=1)
    np.testing.assert_allclose(msp(z), p.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(max_logit(z), z.max(axis=1), rtol=0, atol=0)
    np.testing.assert_allclose(energy(z), sp_logsumexp(z, axis=1), rtol=1e-12)
    np.testing.assert_allclose(energy(z, temperature=2.5), 2.5 * sp_logsumexp(z / 2.5, axis=1), rtol=1e-12)
    np.testing.assert_allclose(neg_entropy(z), -sp_entropy(p, axis=1), rtol=1e-10, atol=1e-12)
    for f in (msp, max_logit, energy, neg_entropy):
        out = f(z)
        assert out.shape == (200,) and out.dtype == np.float64


def test_energy_hand_worked():
    # logsumexp([0, ln 3]) = ln(1 + 3) = ln 4
    z = np.array([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(energy(z), [np.log(4.0)], rtol=1e-14)
    # T = 2: 2 * ln(exp(0) + exp(ln 3 / 2)) = 2 ln(1 + sqrt 3)
    np.testing.assert_allclose(energy(z, temperature=2.0), [2 * np.log(1 + np.sqrt(3.0))], rtol=1e-14)
    # msp = 3/4, entropy of [1/4, 3/4]
    np.testing.assert_allclose(msp(z), [0.75], rtol=1e-14)
    np.testing.assert_allclose(neg_entropy(z), [0.25 * np.log(0.25) + 0.75 * np.log(0.75)], rtol=1e-14)


def test_uniform_and_onehot_limits():
    z = np.zeros((1, 4))
    np.testing.assert_allclose(msp(z), [0.25])
    np.testing.assert_allclose(neg_entropy(z), [-np.log(4.0)], rtol=1e-14)
    np.testing.assert_allclose(energy(z), [np.log(4.0)], rtol=1e-14)


def test_huge_logits_finite_and_ordered():
    # rows ordered from confident (ID-like) to flat (OOD-like)
    z = np.array(
        [
            [1e4, 0.0, -1e4],
            [1e4, 1e4 - 1.0, 0.0],
            [1e4, 1e4, 1e4],
        ]
    )
    for name, f in LOGIT_SCORES.items():
        s = f(z)
        assert np.all(np.isfinite(s)), name
    np.testing.assert_allclose(msp(z), [1.0, 1 / (1 + np.exp(-1.0)), 1 / 3], rtol=1e-12)
    np.testing.assert_allclose(neg_entropy(z)[[0, 2]], [0.0, -np.log(3.0)], atol=1e-12)
    assert msp(z)[0] > msp(z)[1] > msp(z)[2]
    assert neg_entropy(z)[0] > neg_entropy(z)[1] > neg_entropy(z)[2]
    np.testing.assert_allclose(energy(z), [1e4, 1e4 + np.log1p(np.exp(-1.0)), 1e4 + np.log(3.0)], rtol=1e-14)
    # scaled-up logits: higher confidence for the peaked row
    big = np.array([[5e4, -5e4], [-3e4, 2e4]])
    np.testing.assert_allclose(msp(big), [1.0, 1.0])
    np.testing.assert_allclose(neg_entropy(big), [0.0, 0.0], atol=0)


def test_logit_score_dispatch(rng):
    z = rng.normal(size=(10, 3))
    assert set(LOGIT_SCORES) == {"msp", "max_logit", "energy", "entropy"}
    for name, f in LOGIT_SCORES.items():
        np.testing.assert_array_equal(logit_score(name, z), f(z))
    np.testing.assert_array_equal(logit_score("energy", z, temperature=3.0), energy(z, 3.0))
    # temperature is ignored by the other scores
    np.testing.assert_array_equal(logit_score("msp", z, temperature=3.0), msp(z))
    with pytest.raises(ValueError, match="msp.*energy|energy.*msp"):
        logit_score("odin", z)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(5), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((3, 1)), "single column"),
        (np.zeros((0, 3)), "row"),
        (np.array([[0.0, np.nan]]), "NaN"),
        (np.array([[0.0, np.inf]]), "inf"),
        (np.array([["a", "b"]]), "numeric"),
    ],
)
def test_logit_scores_reject_bad_input(bad, match):
    for f in LOGIT_SCORES.values():
        with pytest.raises(ValueError, match=match):
            f(bad)


@pytest.mark.parametrize("t", [0.0, -1.0, np.inf, np.nan, "1"])
def test_energy_bad_temperature(t):
    with pytest.raises(ValueError, match="temperature"):
        energy(np.zeros((2, 2)), temperature=t)


# --------------------------------------------------------------------------- Mahalanobis


def _mahalanobis_oracle(xtr, ytr, xte):
    classes = np.unique(ytr)
    mus = np.stack([xtr[ytr == c].mean(axis=0) for c in classes])
    centred = xtr - mus[np.searchsorted(classes, ytr)]
    cov = EmpiricalCovariance(assume_centered=True).fit(centred).covariance_
    prec = np.linalg.inv(cov)
    d = np.stack([np.einsum("ij,jk,ik->i", xte - m, prec, xte - m) for m in mus], axis=1)
    return -d.min(axis=1), classes[d.argmin(axis=1)]


def test_mahalanobis_matches_sklearn_oracle(rng):
    d, n_cls = 6, 4
    a = rng.normal(size=(d, d))
    means = rng.normal(scale=3.0, size=(n_cls, d))
    y = rng.integers(0, n_cls, size=500)
    x = means[y] + rng.normal(size=(500, d)) @ a.T
    xte = rng.normal(scale=4.0, size=(300, d))
    det = Mahalanobis().fit(x, y)
    want, want_cls = _mahalanobis_oracle(x, y, xte)
    np.testing.assert_allclose(det.score(xte), want, rtol=1e-9)
    np.testing.assert_array_equal(det.predict(xte), want_cls)
    np.testing.assert_allclose(det.covariance_, (x - det.means_[y]).T @ (x - det.means_[y]) / 500, rtol=1e-12)
    assert det.skipped_classes_.size == 0
    np.testing.assert_array_equal(det.classes_, np.arange(n_cls))


def test_mahalanobis_skips_empty_classes(rng):
    y = rng.choice([0, 2, 5], size=200)
    x = rng.normal(size=(200, 3)) + y[:, None]
    det = Mahalanobis().fit(x, y)
    np.testing.assert_array_equal(det.classes_, [0, 2, 5])
    np.testing.assert_array_equal(det.skipped_classes_, [1, 3, 4])
    assert det.means_.shape == (3, 3)
    xte = rng.normal(size=(50, 3)) * 3
    want, want_cls = _mahalanobis_oracle(x, y, xte)
    np.testing.assert_allclose(det.score(xte), want, rtol=1e-9)
    np.testing.assert_array_equal(det.predict(xte), want_cls)


def test_mahalanobis_hand_worked_1d():
    # class 0: {0, 2} -> mu 0 = 1; class 1: {10, 14} -> mu 1 = 12
    # residuals -1, 1, -2, 2 -> sigma^2 = (1 + 1 + 4 + 4) / 4 = 2.5
    x = np.array([[0.0], [2.0], [10.0], [14.0]])
    y = np.array([0, 0, 1, 1])
    det = Mahalanobis().fit(x, y)
    np.testing.assert_allclose(det.covariance_, [[2.5]])
    # x = 3: min((3-1)^2, (3-12)^2) / 2.5 = 4 / 2.5 = 1.6 ; x = 12: 0 ; x = 7: 25/2.5 = 10
    np.testing.assert_allclose(det.score([[3.0], [12.0], [7.0]]), [-1.6, 0.0, -10.0], atol=1e-12)


def test_mahalanobis_singular_covariance_uses_pseudo_inverse(rng):
    # features live in a 2-D subspace of R^4: covariance is rank 2, pinv must be used
    z = rng.normal(size=(100, 2))
    basis = rng.normal(size=(2, 4))
    y = rng.integers(0, 2, size=100)
    x = (z + 3 * y[:, None]) @ basis
    det = Mahalanobis().fit(x, y)
    assert det.rank_ == 2
    s = det.score(x)
    assert np.all(np.isfinite(s))
    cov = det.covariance_
    prec = np.linalg.pinv(cov, hermitian=True)
    d = np.stack([np.einsum("ij,jk,ik->i", x - m, prec, x - m) for m in det.means_], axis=1)
    np.testing.assert_allclose(s, -d.min(axis=1), rtol=1e-6, atol=1e-8)


def test_mahalanobis_errors(rng):
    x = rng.normal(size=(10, 3))
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="not fitted"):
        Mahalanobis().score(x)
    with pytest.raises(ValueError, match="labels"):
        Mahalanobis().fit(x, y[:9])
    with pytest.raises(ValueError, match="negative"):
        Mahalanobis().fit(x, -y)
    with pytest.raises(ValueError, match="2-D"):
        Mahalanobis().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="NaN"):
        Mahalanobis().fit(np.where(x > 1, np.nan, x), y)
    det = Mahalanobis().fit(x, y)
    with pytest.raises(ValueError, match="3-dim"):
        det.score(x[:, :2])
    with pytest.raises(ValueError, match="inf"):
        det.score(np.full((2, 3), np.inf))


# --------------------------------------------------------------------------- KNN


def _knn_oracle(xtr, xte, k):
    ntr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    nte = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    nn = NearestNeighbors(n_neighbors=k, algorithm="ball_tree", metric="euclidean").fit(ntr)
    dist, _ = nn.kneighbors(nte)
    return -dist[:, k - 1]


@pytest.mark.parametrize("k", [1, 5, 50])
@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_knn_matches_sklearn(rng, k, chunk):
    xtr = rng.normal(size=(300, 16)) * rng.uniform(0.1, 10, size=(300, 1))
    xte = np.concatenate([rng.normal(size=(90, 16)), xtr[:10] * 3.0])  # includes exact train directions
    det = KNNScore(k=k).fit(xtr)
    got = det.score(xte, chunk=chunk)
    np.testing.assert_allclose(got, _knn_oracle(xtr, xte, k), rtol=1e-9, atol=1e-9)
    if k == 1:
        np.testing.assert_allclose(got[-10:], 0.0, atol=1e-12)


def test_knn_cosine_relation(rng):
    xtr = rng.normal(size=(40, 5))
    xte = rng.normal(size=(8, 5))
    ntr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    nte = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    cos = np.sort(nte @ ntr.T, axis=1)[:, ::-1]  # descending similarity
    k = 3
    np.testing.assert_allclose(KNNScore(k=k).fit(xtr).score(xte), -np.sqrt(2 - 2 * cos[:, k - 1]), rtol=1e-9)


def test_knn_k_equals_n_and_labels_ignored(rng):
    xtr = rng.normal(size=(12, 4))
    xte = rng.normal(size=(5, 4))
    a = KNNScore(k=12).fit(xtr).score(xte, chunk=5)
    b = KNNScore(k=12).fit(xtr, labels=np.arange(12) % 3).score(xte)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(a, _knn_oracle(xtr, xte, 12), rtol=1e-9)


def test_knn_errors(rng):
    x = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="not fitted"):
        KNNScore(k=2).score(x)
    with pytest.raises(ValueError, match="larger than"):
        KNNScore(k=11).fit(x)
    with pytest.raises(ValueError, match="k must"):
        KNNScore(k=0)
    with pytest.raises(ValueError, match="chunk"):
        KNNScore(k=2).fit(x).score(x, chunk=0)
    with pytest.raises(ValueError, match="3-dim"):
        KNNScore(k=2).fit(x).score(x[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        KNNScore(k=2).fit(np.where(x > 1, np.nan, x))
    with pytest.raises(ValueError, match="labels"):
        KNNScore(k=2).fit(x, labels=np.zeros(9, dtype=int))


def test_feature_detectors_registry():
    assert FEATURE_DETECTORS == {"mahalanobis": Mahalanobis, "knn": KNNScore}


# --------------------------------------------------------------------------- LinearProbe


def _standardise(x):
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _make_blobs(rng, n=400, d=6, n_cls=4, sep=1.0):
    y = rng.integers(0, n_cls, size=n)
    centres = rng.normal(scale=sep, size=(n_cls, d))
    x = centres[y] + rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(scale=5, size=d)
    return x, y


@pytest.mark.parametrize("C", [0.05, 1.0, 20.0])
def test_linear_probe_matches_sklearn(rng, C):
    x, y = _make_blobs(rng)
    probe = LinearProbe(C=C).fit(x, y)
    assert probe.converged and probe.n_iter > 0
    xs = _standardise(x)
    sk = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(xs, y)
    xte = x + rng.normal(scale=0.5, size=x.shape)
    xte_s = (xte - x.mean(axis=0)) / x.std(axis=0)
    p = probe.predict_proba(xte)
    np.testing.assert_allclose(p, sk.predict_proba(xte_s), atol=1e-4)
    np.testing.assert_array_equal(probe.predict(xte), sk.predict(xte_s))
    np.testing.assert_allclose(sp_softmax(probe.logits(xte), axis=1), p, rtol=1e-12)
    # weights are identifiable (penalised) -> match up to tolerance
    np.testing.assert_allclose(probe.coef_, sk.coef_, atol=1e-3)


def test_linear_probe_without_standardize(rng):
    x, y = _make_blobs(rng, n=200, d=3, n_cls=3)
    x = _standardise(x)  # well-conditioned raw input
    probe = LinearProbe(C=0.7, standardize=False).fit(x, y)
    sk = LogisticRegression(C=0.7, max_iter=5000, tol=1e-10).fit(x, y)
    np.testing.assert_allclose(probe.predict_proba(x), sk.predict_proba(x), atol=1e-4)
    np.testing.assert_array_equal(probe.mean_, 0.0)


def test_linear_probe_separable_accuracy(rng):
    y = np.repeat(np.arange(3), 30)
    x = np.eye(3)[y] * 10 + rng.normal(scale=0.1, size=(90, 3))
    probe = LinearProbe(C=1.0).fit(x, y)
    assert np.mean(probe.predict(x) == y) == 1.0
    assert probe.logits(x).shape == (90, 3)
    assert probe.predict(x).dtype == np.int64


def test_linear_probe_constant_feature(rng):
    x, y = _make_blobs(rng, n=100, d=3, n_cls=2)
    x[:, 1] = 4.0  # std 0 -> scale 1, weight on it penalised to 0
    probe = LinearProbe().fit(x, y)
    assert probe.scale_[1] == 1.0
    np.testing.assert_allclose(probe.coef_[:, 1], 0.0, atol=1e-8)
    assert np.all(np.isfinite(probe.logits(x)))


def test_linear_probe_absent_classes(rng):
    x, y = _make_blobs(rng, n=300, d=4, n_cls=3)
    probe = LinearProbe(C=1.0).fit(x, y, n_classes=5)
    assert probe.logits(x).shape == (300, 5)
    p = probe.predict_proba(x)
    assert p[:, 3:].max() < 1e-6
    assert set(np.unique(probe.predict(x))) <= {0, 1, 2}
    # no samples -> only the (vanishing) softmax mass pushes the weights; the penalty keeps them ~0
    np.testing.assert_allclose(probe.coef_[3:], 0.0, atol=1e-4)
    sk = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(_standardise(x), y)
    np.testing.assert_allclose(p[:, :3], sk.predict_proba(_standardise(x)), atol=1e-4)


def test_linear_probe_not_converged_warns(rng):
    x, y = _make_blobs(rng, n=200)
    with pytest.warns(UserWarning, match="did not converge"):
        probe = LinearProbe(C=100.0, max_iter=2).fit(x, y)
    assert probe.converged is False and probe.n_iter <= 2


def test_linear_probe_errors(rng):
    x, y = _make_blobs(rng, n=50, d=3, n_cls=3)
    with pytest.raises(ValueError, match="not fitted"):
        LinearProbe().logits(x)
    with pytest.raises(ValueError, match="not fitted"):
        LinearProbe().predict(x)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe().fit(x, np.zeros(50, dtype=int))
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe().fit(x, np.zeros(50, dtype=int), n_classes=4)
    with pytest.raises(ValueError, match="n_classes"):
        LinearProbe().fit(x, y, n_classes=2)
    with pytest.raises(ValueError, match="labels"):
        LinearProbe().fit(x, y[:-1])
    with pytest.raises(ValueError, match="integer"):
        LinearProbe().fit(x, y + 0.5)
    with pytest.raises(ValueError, match="C must"):
        LinearProbe(C=0.0)
    with pytest.raises(ValueError, match="tol must"):
        LinearProbe(tol=-1)
    with pytest.raises(ValueError, match="max_iter"):
        LinearProbe(max_iter=0)
    probe = LinearProbe().fit(x, y)
    with pytest.raises(ValueError, match="3-dim"):
        probe.logits(x[:, :2])
    with pytest.raises(ValueError, match="inf"):
        probe.predict(np.full((1, 3), -np.inf))


def _correlated_blobs(rng, n=600, d=12, n_cls=5):
    """Overlapping classes in strongly correlated features (as a CNN's are): an ill-conditioned fit."""
    y = rng.integers(0, n_cls, size=n)
    mix = rng.normal(size=(d, d)) + 3.0 * np.ones((d, d)) / d
    x = (rng.normal(scale=0.8, size=(n_cls, d))[y] + rng.normal(size=(n, d))) @ mix + rng.normal(scale=4, size=d)
    return x, y


def _objective_grad(probe, x, y):
    """The objective and its max-abs gradient at the probe's (coef_, intercept_), computed here from the
    formula (sum of cross-entropies + ||W||^2 / (2C) on the standardised features)."""
    xs = probe._transform(x)
    z = xs @ probe.coef_.T + probe.intercept_
    onehot = np.eye(probe.n_classes_)[y]
    loss = np.sum(sp_logsumexp(z, axis=1) - z[np.arange(len(y)), y]) + np.sum(probe.coef_ ** 2) / (2 * probe.C)
    dz = sp_softmax(z, axis=1) - onehot
    grad = np.concatenate([(dz.T @ xs + probe.coef_ / probe.C).ravel(), dz.sum(axis=0)])
    return loss, np.abs(grad).max()


@pytest.mark.parametrize("C", [0.01, 1.0, 100.0])
def test_linear_probe_reaches_the_minimiser(rng, C):
    """Strictly convex on the rows summing to zero: a gradient below tol there is the optimality certificate."""
    x, y = _correlated_blobs(rng)
    probe = LinearProbe(C=C).fit(x, y)
    loss, gmax = _objective_grad(probe, x, y)
    assert probe.converged and gmax <= probe.tol
    assert probe.loss_ == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(probe.coef_.sum(axis=0), 0.0, atol=1e-10)  # the penalty's minimum on 1 (x) w
    assert abs(probe.intercept_.sum()) < 1e-10  # the flat direction, fixed at zero
    tight = LinearProbe(C=C, tol=1e-9).fit(x, y)
    assert _objective_grad(tight, x, y)[1] <= 1e-9
    np.testing.assert_allclose(probe.coef_, tight.coef_, atol=1e-6)


def test_linear_probe_does_not_depend_on_the_solver_path(rng, monkeypatch):
    """Stage 1 stopped early or late, a Hessian reused or rebuilt at every step: one minimiser."""
    from facebench.metrics import _multinomial

    x, y = _correlated_blobs(rng, n=800, d=10, n_cls=4)
    base = LinearProbe(C=2.0, tol=1e-8).fit(x, y)
    for name, value in [("STAGE1_RTOL", 0.3), ("STAGE1_RTOL", 1e-6), ("REUSE_CUT", 1e12)]:
        with monkeypatch.context() as m:
            m.setattr(_multinomial, name, value)
            other = LinearProbe(C=2.0, tol=1e-8).fit(x, y)
        assert other.converged, name
        np.testing.assert_allclose(other.coef_, base.coef_, atol=1e-8, err_msg=name)
        np.testing.assert_allclose(other.intercept_, base.intercept_, atol=1e-8, err_msg=name)


def test_linear_probe_many_features_lbfgs_alone(rng, monkeypatch):
    """K (d + 1) above DENSE_MAX: whitened L-BFGS with the relative-decrease stop; the same minimiser as Newton
    to within that stop's precision."""
    from facebench.metrics import _multinomial

    x, y = _correlated_blobs(rng, n=500, d=300, n_cls=4)
    assert 4 * 301 > _multinomial.DENSE_MAX
    probe = LinearProbe(C=0.5).fit(x, y)
    assert probe.converged and _objective_grad(probe, x, y)[1] <= 1e-3
    monkeypatch.setattr(_multinomial, "DENSE_MAX", 10 ** 6)
    newton = LinearProbe(C=0.5).fit(x, y)
    assert newton.converged and _objective_grad(newton, x, y)[1] <= newton.tol
    np.testing.assert_allclose(probe.predict_proba(x), newton.predict_proba(x), atol=1e-5)


def test_linear_probe_ridge_when_cholesky_fails(rng, monkeypatch):
    from scipy import linalg  # _multinomial imports it where it factorises (lazily: planning a run needs no SciPy)

    real, calls = linalg.cho_factor, []

    def refuse_unridged(h, *args, **kwargs):  # the first factorisation of each Hessian fails
        calls.append(1)
        if len(calls) % 2:
            raise np.linalg.LinAlgError("not positive definite")
        return real(h, *args, **kwargs)

    x, y = _correlated_blobs(rng, n=300, d=5, n_cls=3)
    want = LinearProbe(C=1.0, tol=1e-8).fit(x, y)
    monkeypatch.setattr(linalg, "cho_factor", refuse_unridged)
    got = LinearProbe(C=1.0, tol=1e-8).fit(x, y)
    assert got.converged and calls
    np.testing.assert_allclose(got.coef_, want.coef_, atol=1e-8)

    def refuse(*args, **kwargs):
        raise np.linalg.LinAlgError("not positive definite, even with the ridge")

    monkeypatch.setattr(linalg, "cho_factor", refuse)
    with pytest.warns(UserWarning, match="not numerically positive definite"):
        stuck = LinearProbe(C=1.0, tol=1e-12).fit(x, y)
    assert stuck.converged is False


def test_linear_probe_absent_classes_mass_and_gradient(rng):
    x, y = _correlated_blobs(rng, n=400, d=6, n_cls=3)
    probe = LinearProbe(C=1.0).fit(x, y + 1, n_classes=5)  # classes 0 and 4 have no samples
    assert probe.converged
    p = probe.predict_proba(x)
    assert p[:, [0, 4]].sum() <= probe.tol / 10
    np.testing.assert_array_equal(probe.coef_[[0, 4]], 0.0)
    assert _objective_grad(probe, x, y + 1)[1] <= probe.tol
    present = LinearProbe(C=1.0).fit(x, y)
    np.testing.assert_allclose(p[:, 1:4], present.predict_proba(x), atol=1e-6)


def test_linear_probe_unstandardised_large_offsets(rng):
    x, y = _correlated_blobs(rng, n=300, d=4, n_cls=3)
    x = x * 50.0 + 1e3
    probe = LinearProbe(C=1.0, standardize=False).fit(x, y)
    assert probe.converged and _objective_grad(probe, x, y)[1] <= probe.tol


# --------------------------------------------------------------------------- ViM


def test_vim_matches_direct_computation(rng):
    d, n_cls, dim = 10, 4, 3
    x, y = _make_blobs(rng, n=300, d=d, n_cls=n_cls)
    w = rng.normal(size=(n_cls, d))
    b = rng.normal(size=n_cls)
    det = ViM(dim=dim).fit(x, w, b)
    xte = rng.normal(scale=3.0, size=(40, d))
    # direct oracle following Wang et al. (2022)
    u = -np.linalg.pinv(w) @ b
    cov = EmpiricalCovariance(assume_centered=True).fit(x - u).covariance_
    evals, evecs = np.linalg.eigh(cov)
    ns = evecs[:, np.argsort(evals)[::-1][dim:]]
    alpha = (x @ w.T + b).max(axis=1).mean() / np.linalg.norm((x - u) @ ns, axis=1).mean()
    want = sp_logsumexp(xte @ w.T + b, axis=1) - alpha * np.linalg.norm((xte - u) @ ns, axis=1)
    np.testing.assert_allclose(det.score(xte), want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(det.alpha_, alpha, rtol=1e-9)


def test_vim_default_dim_and_errors(rng):
    x = rng.normal(size=(50, 8))
    w = rng.normal(size=(3, 8))
    b = np.zeros(3)
    assert ViM().fit(x, w, b).dim_ == 4
    with pytest.raises(ValueError, match="not fitted"):
        ViM().score(x)
    with pytest.raises(ValueError, match="dim must"):
        ViM(dim=8).fit(x, w, b)
    with pytest.raises(ValueError, match=r"W has shape"):
        ViM().fit(x, w[:, :5], b)
    with pytest.raises(ValueError, match="b must"):
        ViM().fit(x, w, np.zeros(4))
    with pytest.raises(ValueError, match="8-dim"):
        ViM().fit(x, w, b).score(x[:, :3])
