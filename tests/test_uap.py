"""facebench.engine.uap: DeepFool-based universal perturbations (Moosavi-Dezfooli 2017) and SGA, on tiny models.

Golden vectors of spec/robustness.md 4.4 (projections, the LTS4 L2 "projection" in compat mode, SGA's step),
fooling rates on a small trained classifier, budgets respected, a smaller last batch, transfer to any callable."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facebench.engine import uap
from facebench.errors import ConfigError, ModelError
from facebench.metrics import fooling as fo

torch.set_num_threads(1)
SHAPE = (3, 4, 4)


def blobs(n: int, seed: int, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """k separable classes of (3, 4, 4) 'images': 0.5 +- 0.15 in a fixed sign pattern per class, plus noise."""
    patterns = torch.randint(0, 2, (k, *SHAPE), generator=torch.Generator().manual_seed(100)).float() * 2 - 1
    y = torch.arange(n) % k
    noise = 0.05 * torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    return (0.5 + 0.15 * patterns[y] + noise).clamp(0, 1), y


def train(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    x, y = blobs(400, seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def models():
    return train(0), train(5)


@pytest.fixture(scope="module")
def fit_set():
    return blobs(80, 7)[0]


# -- golden vectors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compat", [False, True])
def test_linf_projection_golden_vector(compat):
    v = uap.proj_lp(torch.tensor([20.0, -5.0, 3.0]), 10, "inf", reference_projection=compat)
    assert v.tolist() == [10.0, -5.0, 3.0]


def test_l2_projection_golden_vectors_and_the_reference_bug():
    assert torch.allclose(uap.proj_lp(torch.tensor([3.0, 4.0]), 10, 2), torch.tensor([3.0, 4.0]))
    assert torch.allclose(uap.proj_lp(torch.tensor([3.0, 4.0]), 10, 2, reference_projection=True),
                          torch.tensor([6.0, 8.0]))  # LTS4's proj_lp rescales onto the sphere from inside
    for compat in (False, True):
        assert torch.allclose(uap.proj_lp(torch.tensor([30.0, 40.0]), 10, 2, reference_projection=compat),
                              torch.tensor([6.0, 8.0]))
    assert uap.proj_lp(torch.zeros(2), 10, 2, reference_projection=True).tolist() == [0.0, 0.0]


def test_sga_step_and_default_budgets():
    assert uap.sga_step_size(10 / 255, 0.1) == pytest.approx(1 / 255)
    assert uap.default_xi("inf", (3, 112, 112)) == 10 / 255
    assert uap.default_xi(2, (3, 224, 224)) == pytest.approx(2000 / 255)
    assert uap.default_xi(2, (3, 112, 112)) == pytest.approx(2000 / 255 / 2)  # same RMS, a quarter of the pixels


def test_deepfool_crosses_a_linear_boundary_in_one_step():
    w = torch.tensor([0.3, -0.4, 0.5, 0.1])
    logits_fn = lambda x: torch.stack([torch.zeros(len(x)), x.flatten(1) @ w - 0.2], dim=1)  # noqa: E731
    x = torch.full((1, 4), 0.5)  # w . x - 0.2 = 0.05 > 0: class 1
    r, iterations = uap.deepfool(logits_fn, x, overshoot=0.02)
    assert iterations == 1 and int(logits_fn(x + r).argmax()) == 0
    expected = 1.02 * (0.05 / w.norm() + 1e-4) * -w / w.norm()  # the nearest boundary point, overshot
    assert torch.allclose(r[None], expected, atol=1e-6)


# -- DeepFool-based UAP ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p, xi", [("inf", 0.2), (2, 1.2)])
def test_deepfool_uap_fools_a_trained_classifier_within_its_budget(models, fit_set, p, xi):
    model = models[0]
    seen = []
    result = uap.deepfool_uap(model, fit_set, xi=xi, p=p, max_passes=3, progress=seen.append)
    v = result.perturbation
    assert v.shape == SHAPE and seen == result.history and result.algorithm == "deepfool"
    assert (v.abs().max() if p == "inf" else v.norm()) <= xi + 1e-6
    clean = uap.predict_labels(model, fit_set)
    rate = fo.fooling_rate(clean, uap.predict_labels(model, fit_set, v))
    assert rate.value == pytest.approx(result.history[-1]["fooling_rate"])
    assert max(h["fooling_rate"] for h in result.history) >= 0.3
    assert rate.value >= 0.15
    assert uap.predict_labels(model, fit_set, v * 0).tolist() == clean.tolist()


def test_deepfool_uap_stops_at_the_target_and_at_the_cap(models, fit_set):
    easy = uap.deepfool_uap(models[0], fit_set, xi=0.2, delta=0.9, max_passes=5)  # 10 % is enough
    assert len(easy.history) == 1 and easy.history[0]["fooling_rate"] >= 0.1
    capped = uap.deepfool_uap(models[0], fit_set, xi=0.2, max_passes=5, max_iterations=30)
    assert [h["visited"] for h in capped.history] == [30]


def test_reference_projection_puts_v_on_the_l2_sphere(models, fit_set):
    kw = dict(xi=5.0, p=2, max_passes=1, max_iterations=3)
    compat = uap.deepfool_uap(models[0], fit_set, reference_projection=True, **kw)
    correct = uap.deepfool_uap(models[0], fit_set, **kw)
    assert compat.history[0]["updates"] >= 1 and correct.history[0]["updates"] >= 1
    assert float(compat.perturbation.norm()) == pytest.approx(5.0, rel=1e-5)
    assert float(correct.perturbation.norm()) < 4.0  # a few DeepFool steps stay well inside the ball


def test_deepfool_uap_is_deterministic_per_seed(models, fit_set):
    a = uap.deepfool_uap(models[0], fit_set, xi=0.2, max_passes=1, max_iterations=20, seed=1)
    b = uap.deepfool_uap(models[0], fit_set, xi=0.2, max_passes=1, max_iterations=20, seed=1)
    assert torch.equal(a.perturbation, b.perturbation)


# -- SGA -------------------------------------------------------------------------------------------------------------
def test_sga_fools_a_trained_classifier_with_a_smaller_last_batch(models, fit_set):
    model = models[0]
    x = fit_set[:73]  # batches of 25: 25 + 25 + 23; the last inner minibatches are drawn from 23
    seen, objective = [], uap.clean_label_objective(model, x)
    result = uap.sga_uap(objective, x, eps=0.15, epochs=5, batch_size=25, minibatch=10, progress=seen.append)
    v = result.perturbation
    assert v.shape == SHAPE and v.abs().max() <= 0.15 + 1e-7 and seen == result.history
    assert [h["updates"] for h in result.history] == [3, 6, 9, 12, 15]
    rate = fo.fooling_rate(uap.predict_labels(model, x), uap.predict_labels(model, x, v))
    assert rate.value >= 0.2
    with torch.no_grad():
        clean_loss = float(objective(x, torch.arange(len(x))).mean())
    assert result.history[-1]["objective"] > clean_loss + 0.1  # the clamped CE of the clean labels went up


def test_sga_handles_a_batch_smaller_than_the_minibatch(models, fit_set):
    x = fit_set[:7]
    result = uap.sga_uap(uap.clean_label_objective(models[0], x, loss="logit"), x, eps=0.1, epochs=1, batch_size=5,
                         minibatch=10, max_iterations=2)
    assert result.history[0]["updates"] == 2 and result.perturbation.abs().max() <= 0.1 + 1e-7


def test_sga_is_deterministic_and_capped(models, fit_set):
    run = lambda seed: uap.sga_uap(uap.clean_label_objective(models[0], fit_set), fit_set, eps=0.1,  # noqa: E731
                                   epochs=3, batch_size=20, max_iterations=5, seed=seed)
    a, b = run(4), run(4)
    assert torch.equal(a.perturbation, b.perturbation)
    assert a.history[-1]["updates"] == 5 and len(a.history) == 2  # 4 updates in epoch 1, 1 in epoch 2


def test_sga_dodging_lowers_similarity_to_the_references():
    torch.manual_seed(3)
    embed = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 6)).eval()
    x = torch.rand((30, *SHAPE), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        refs = embed(x) + 0.1 * torch.randn(30, 6)  # genuine partners: similar embeddings
    result = uap.sga_uap(uap.reference_objective(embed, refs, "dodging"), x, eps=0.1, epochs=3, batch_size=10)
    before = F.cosine_similarity(torch.from_numpy(uap.embed(embed, x)), refs.double())
    after = F.cosine_similarity(torch.from_numpy(uap.embed(embed, x, result.perturbation)), refs.double())
    assert after.mean() < before.mean() - 0.05
    assert result.history[-1]["objective"] > result.history[0]["objective"] - 1e-9


# -- transfer and inputs ---------------------------------------------------------------------------------------------
def test_transfer_to_another_model_through_any_callable(models, fit_set):
    model_a, model_b = models
    objective = uap.clean_label_objective(model_a, fit_set)
    v = uap.sga_uap(objective, fit_set, eps=0.15, epochs=5, batch_size=25).perturbation
    weights = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in model_b if hasattr(m, "weight")]

    def numpy_model_b(x):  # no autograd at all: evaluation needs none
        h = np.tanh(x.flatten(1).numpy() @ weights[0][0].T + weights[0][1])
        return torch.from_numpy(h @ weights[1][0].T + weights[1][1])

    test_x = blobs(80, 8)[0]
    clean = uap.predict_labels(numpy_model_b, test_x, batch_size=32)
    assert clean.tolist() == uap.predict_labels(model_b, test_x).tolist()
    rate = fo.fooling_rate(clean, uap.predict_labels(numpy_model_b, test_x, v, batch_size=32))
    assert rate.value >= 0.2


def test_uint8_sets_are_divided_by_255(models):
    pixels = torch.randint(0, 256, (9, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    v = torch.full(SHAPE, 0.1)
    assert uap.predict_labels(models[0], pixels, v, batch_size=4).tolist() == \
        uap.predict_labels(models[0], pixels.float() / 255, v).tolist()


def test_refusals_say_what_is_wrong(models, fit_set):
    with pytest.raises(ConfigError, match="p must be"):
        uap.deepfool_uap(models[0], fit_set, p=1)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        uap.predict_labels(models[0], fit_set * 2)
    with pytest.raises(ConfigError, match="minibatch"):
        uap.sga_uap(uap.clean_label_objective(models[0], fit_set), fit_set, minibatch=0)
    with pytest.raises(ConfigError, match="max_iterations"):
        uap.deepfool_uap(models[0], fit_set, max_iterations=0)
    with pytest.raises(ConfigError, match="delta"):
        uap.deepfool_uap(models[0], fit_set, delta=1.0)
    with pytest.raises(ConfigError, match="loss"):
        uap.clean_label_objective(models[0], fit_set, loss="mse")

    with pytest.raises(ConfigError, match="training mode"):
        uap.deepfool_uap(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 4)), fit_set)  # training mode

    def frozen(x):
        with torch.no_grad():
            return models[0](x)

    with pytest.raises(ModelError, match="surrogate"):
        uap.deepfool_uap(frozen, fit_set, xi=0.2, max_passes=1)
    with pytest.raises(ModelError, match="surrogate"):
        uap.sga_uap(uap.clean_label_objective(frozen, fit_set), fit_set, epochs=1)
