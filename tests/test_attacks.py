"""facebench.engine.attacks: FGSM / PGD (L-inf, L2) on [0, 1] pixels, their losses, and the differentiable flag.

Golden vectors of spec/robustness.md 4.4 (FGSM on a linear model, projections, PGD invariants), PGD against a
small trained classifier, the L2 random start that torchattacks' PGDL2 forgot to add, and the refusals."""

import pytest
import torch
import torch.nn.functional as F

from facebench.data.preprocess import InputSpec, normalise_batch
from facebench.engine import attacks as at
from facebench.errors import ConfigError, ModelError
from facebench.models.base import Head, ModelAdapter

torch.set_num_threads(1)


def linear_objective(w: torch.Tensor):
    """f(x) = w . x per sample (a loss increasing with f)."""
    return lambda x: x.flatten(1) @ w


def tiny_model(seed: int, d_in: int, n_out: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d_in, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, n_out)).eval()


# -- golden vectors --------------------------------------------------------------------------------------------------
def test_fgsm_on_a_linear_model_moves_eps_times_the_sign_of_w():
    w = torch.tensor([0.5, -2.0, 0.0001, -0.3, 1.0, -1e-3])
    x = torch.full((2, 1, 2, 3), 0.5)
    eps = 4 / 255
    x_adv = at.fgsm(linear_objective(w), x, eps=eps)
    assert torch.allclose(x_adv - x, eps * torch.sign(w).view(1, 1, 2, 3).expand_as(x), atol=1e-7)
    assert (x_adv - x).abs().max() == pytest.approx(eps, abs=1e-7)


def test_fgsm_l2_moves_eps_along_the_normalised_gradient():
    w = torch.tensor([3.0, -4.0])
    x = torch.full((1, 2), 0.5)
    x_adv = at.fgsm(linear_objective(w), x, eps=0.1, norm="l2")
    assert torch.allclose(x_adv - x, torch.tensor([[0.06, -0.08]]), atol=1e-6)


def test_fgsm_through_cross_entropy_agrees_with_the_linear_golden_vector():
    w = torch.tensor([1.0, -1.0, 2.0, -0.5])
    logits_fn = lambda x: torch.stack([torch.zeros(len(x)), x.flatten(1) @ w], dim=1)  # noqa: E731
    x = torch.full((3, 4), 0.5)
    labels = torch.zeros(3, dtype=torch.long)  # CE of class 0 grows with w . x
    x_adv = at.fgsm(at.cross_entropy_objective(logits_fn, labels), x, eps=0.01)
    assert torch.allclose(x_adv - x, 0.01 * torch.sign(w).expand_as(x), atol=1e-7)


def test_projection_golden_vectors():
    assert at.project_linf(torch.tensor([[20.0, -5.0, 3.0]]), 10).tolist() == [[10.0, -5.0, 3.0]]
    assert torch.allclose(at.project_l2(torch.tensor([[3.0, 4.0], [30.0, 40.0]]), 10.0),
                          torch.tensor([[3.0, 4.0], [6.0, 8.0]]))


def test_fgsm_clamps_to_the_pixel_range():
    x = torch.tensor([[0.0, 1.0, 0.999]])
    x_adv = at.fgsm(linear_objective(torch.tensor([-1.0, 1.0, 1.0])), x, eps=0.1)
    assert x_adv.tolist() == [[0.0, 1.0, 1.0]]


# -- PGD invariants --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm, eps, alpha", [("linf", 8 / 255, 2 / 255), ("linf", 0.3, 0.2), ("l2", 0.5, 0.2),
                                              ("l2", 2.0, 1.5)])
def test_pgd_stays_in_the_ball_and_in_range(seed, norm, eps, alpha):
    model = tiny_model(seed, 2 * 4 * 4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((5, 2, 4, 4), generator=gen)
    x[0] = 0.0
    x[1] = 1.0  # saturated samples: clamping must not push the result outside [0, 1]
    labels = torch.randint(0, 3, (5,), generator=gen)
    x_adv = at.pgd(at.cross_entropy_objective(model, labels), x, norm=norm, eps=eps, alpha=alpha, steps=7, seed=seed)
    delta = (x_adv - x).flatten(1)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if norm == "linf":
        assert delta.abs().max() <= eps + 1e-7
    else:
        assert (delta.norm(dim=1) <= eps + 1e-5).all()


def test_pgd_defaults_are_torchattacks():
    assert at.PGD_DEFAULTS == {"linf": {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10},
                               "l2": {"eps": 1.0, "alpha": 0.2, "steps": 40}}
    x = torch.full((2, 6), 0.5)
    x_adv = at.pgd(linear_objective(torch.ones(6)), x, random_start=False)  # 10 steps of 2/255, capped at 8/255
    assert torch.allclose(x_adv - x, torch.full_like(x, 8 / 255), atol=1e-7)


def test_l2_random_start_is_applied():
    """torchattacks' PGDL2 (commit 005d51c) draws the start but never adds it; here it is added."""
    x = torch.full((4, 3, 5, 5), 0.5)
    flat = lambda t: 0.0 * t.flatten(1).sum(dim=1)  # noqa: E731 - zero gradient: only the start moves x
    moved = at.pgd(flat, x, norm="l2", eps=0.5, steps=2, random_start=True, seed=3)
    norms = (moved - x).flatten(1).norm(dim=1)
    assert (norms > 0).all() and (norms <= 0.5 + 1e-6).all()
    assert torch.equal(at.pgd(flat, x, norm="l2", eps=0.5, steps=2, random_start=False), x)


def test_random_starts_are_deterministic_per_seed_and_device_agnostic():
    x = torch.rand((3, 2, 4, 4), generator=torch.Generator().manual_seed(0))
    a = at.random_start_point(x, 0.1, "linf", seed=5)
    assert torch.equal(a, at.random_start_point(x, 0.1, "linf", seed=torch.Generator().manual_seed(5)))
    assert not torch.equal(a, at.random_start_point(x, 0.1, "linf", seed=6))
    assert (a - x).abs().max() <= 0.1 + 1e-7


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two separable classes of (2, 3, 3) 'images' around 0.4 and 0.6."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.4 + 0.2 * y.view(-1, 1, 1, 1).float() + 0.03 * torch.randn((n, 2, 3, 3), generator=gen)
    return x.clamp(0, 1), y


def trained_classifier() -> torch.nn.Module:
    model = tiny_model(0, 18, n_out=2).train()
    x, y = _blobs(200, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return trained_classifier()


@pytest.mark.parametrize("norm, eps", [("linf", 0.15), ("l2", 0.6)])
def test_pgd_breaks_a_trained_classifier(classifier, norm, eps):
    x, y = _blobs(100, 2)
    clean = (classifier(x).argmax(1) == y).float().mean()
    objective = at.cross_entropy_objective(classifier, y)
    robust = (classifier(at.pgd(objective, x, norm=norm, eps=eps, alpha=eps / 4, steps=10)).argmax(1) == y)
    weak = (classifier(at.pgd(objective, x, norm=norm, eps=eps / 50, alpha=eps / 200, steps=10)).argmax(1) == y)
    assert clean >= 0.98
    assert robust.float().mean() <= 0.1  # the budget crosses the class gap
    assert weak.float().mean() >= 0.9  # a tiny budget does not


def test_pgd_works_under_no_grad_and_in_batches(classifier):
    x, y = _blobs(10, 3)
    def attack(xb, yb):
        return at.pgd(at.cross_entropy_objective(classifier, yb), xb, eps=0.05, alpha=0.01, steps=3,
                      random_start=False)

    whole = attack(x, y)
    with torch.no_grad():
        batched = at.attack_in_batches(attack, x, 4, y)  # 4 + 4 + 2
    assert torch.allclose(whole, batched, atol=1e-6)


def test_targeted_cross_entropy_moves_towards_the_target(classifier):
    x, y = _blobs(20, 4)
    target = 1 - y
    x_adv = at.pgd(at.cross_entropy_objective(classifier, target, targeted=True), x, eps=0.15, alpha=0.04, steps=10)
    assert (classifier(x_adv).argmax(1) == target).float().mean() >= 0.9


# -- verification losses ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("goal, sign", [("dodging", -1), ("impersonation", 1)])
def test_verification_objective_moves_similarity_the_right_way(goal, sign):
    embed = tiny_model(7, 12, n_out=5)
    gen = torch.Generator().manual_seed(7)
    x = torch.rand((6, 3, 2, 2), generator=gen)
    refs = torch.randn((6, 5), generator=gen)
    before = F.cosine_similarity(embed(x), refs)
    x_adv = at.pgd(at.verification_objective(embed, refs, goal), x, eps=0.1, alpha=0.02, steps=10)
    after = F.cosine_similarity(embed(x_adv), refs)
    assert (sign * (after - before) > 0).all()
    assert at.cosine_goal_loss(refs, refs, goal).tolist() == pytest.approx([float(sign)] * 6, abs=1e-6)


# -- refusals --------------------------------------------------------------------------------------------------------
def test_bad_inputs_and_settings_are_config_errors():
    obj = linear_objective(torch.ones(2))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        at.fgsm(obj, torch.tensor([[1.5, 0.0]]))
    with pytest.raises(ConfigError, match="norm"):
        at.pgd(obj, torch.zeros(1, 2), norm="l1")
    with pytest.raises(ConfigError, match="steps"):
        at.pgd(obj, torch.zeros(1, 2), steps=0)
    with pytest.raises(ConfigError, match="one loss per sample"):
        at.fgsm(lambda x: x.sum(), torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="goal"):
        at.verification_objective(lambda x: x, torch.zeros(2), "evade")
    with pytest.raises(ConfigError, match="inference_mode"), torch.inference_mode():
        at.fgsm(obj, torch.zeros(1, 2))


def test_a_module_in_training_mode_is_refused():
    model = tiny_model(0, 4).train()
    with pytest.raises(ConfigError, match=r"training mode; call \.eval\(\)"):
        at.cross_entropy_objective(model, torch.zeros(1, dtype=torch.long))
    with pytest.raises(ConfigError, match="training mode"):
        at.verification_objective(model.forward, torch.zeros(3), "dodging")  # a bound method too
    assert at.check_eval_mode(model.eval()) is model


def test_a_model_without_gradients_is_named():
    def no_grad_model(x):
        with torch.no_grad():
            return x.flatten(1).sum(dim=1)

    with pytest.raises(ModelError, match="no gradient"):
        at.fgsm(no_grad_model, torch.zeros(2, 3))


class _TinyAdapter(ModelAdapter):
    name = "tiny"
    default_head = "expression"

    def __init__(self):
        super().__init__()
        self.input_spec = InputSpec(size=(2, 2), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
        self.heads = {"expression": Head("expression", ("a", "b", "c"))}
        self.module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(12, 3))

    def forward(self, batch, heads, features):
        out = {h: self.module(batch) for h in heads}
        if features:
            out["features"] = batch.flatten(1)
        return out


def test_adapter_function_normalises_like_the_engine_and_keeps_gradients():
    adapter = _TinyAdapter()
    adapter.module.train()
    fn = at.adapter_function(adapter)
    assert not adapter.module.training  # eval mode: dropout off
    pixels = torch.randint(0, 256, (4, 3, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = adapter.predict(normalise_batch(pixels, adapter.input_spec))["expression"]
    assert torch.allclose(fn(pixels.float() / 255), expected, atol=1e-5)
    x_adv = at.fgsm(at.cross_entropy_objective(fn, expected.argmax(1)), pixels.float() / 255, eps=0.05)
    assert (x_adv - pixels.float() / 255).abs().max() == pytest.approx(0.05, abs=1e-6)
    feats = at.adapter_function(adapter, features=True)(pixels.float() / 255)
    assert torch.allclose(feats, normalise_batch(pixels, adapter.input_spec).flatten(1), atol=1e-5)


def test_require_differentiable_refuses_with_what_to_do():
    adapter = _TinyAdapter()
    assert at.require_differentiable(adapter, "pgd") is None
    adapter.differentiable = False
    with pytest.raises(ConfigError, match="surrogate") as info:
        at.require_differentiable(adapter, "pgd")
    assert str(info.value).startswith("pgd needs input gradients") and "'tiny'" in str(info.value)
    with pytest.raises(ConfigError, match="differentiable"):
        at.adapter_function(adapter)


def test_onnx_and_dlib_adapters_declare_no_gradients():
    from facebench.models import (cydral, dlib_face, dlib_landmarks, faceapi, fer_minixception, generic,
                                  mtcnn_landmarks, sface, stored, synth_cnn)

    assert ModelAdapter.differentiable is True
    not_differentiable = [cydral.CydralAgeAdapter, cydral.CydralGenderAdapter, dlib_face.DlibResNetAdapter,
                          dlib_landmarks.Dlib68Adapter, dlib_landmarks.Dlib5Adapter, generic.OnnxAdapter,
                          generic.PredictionsAdapter, mtcnn_landmarks.MTCNNLandmarkAdapter, sface.SFaceAdapter,
                          stored.StoredModel]
    assert [c.__name__ for c in not_differentiable if c.differentiable] == []
    differentiable = [synth_cnn.SynthCNNAdapter, fer_minixception.FerMiniXceptionAdapter,
                      faceapi.FaceApiExpressionAdapter, generic.TorchScriptAdapter, generic.PythonAdapter]
    assert all(c.differentiable for c in differentiable)


def test_pgd_on_the_shipped_synth_cnn_through_its_adapter():
    """A real adapter end to end: engine-style pixels / 255 -> adapter_function -> PGD at 2/255."""
    from facebench.models.synth_cnn import SYNTH_CLASSES, SynthCNNAdapter
    from facebench.synth.generator import render_split

    faces = render_split("attack-test", 16, seed=0, size=48)
    x = torch.from_numpy(faces.images).permute(0, 3, 1, 2).float() / 255
    y = torch.tensor([SYNTH_CLASSES.index(str(label)) for label in faces.labels])
    fn = at.adapter_function(SynthCNNAdapter())
    with torch.no_grad():
        clean = (fn(x).argmax(1) == y).float().mean()
        x_adv = at.pgd(at.cross_entropy_objective(fn, y), x, eps=2 / 255, alpha=0.5 / 255, steps=5)
        robust = (fn(x_adv).argmax(1) == y).float().mean()
    assert clean >= 0.6 and robust <= clean - 0.4
    assert (x_adv - x).abs().max() <= 2 / 255 + 1e-7
