"""faceptor: the clean re-implementation against the golden fixture made with the authors' code.

The fixture (``shared/golden/faceptor``, see its README) is a tiny random-weight Faceptor-Full
(stage 1) and its stage-2 Layer-Attention variant, with every task's output on ``inputs.pt``.
Every output in ``outputs.pt`` / ``stage2/outputs.pt`` is compared at the README's tolerance
(rtol = atol = 1e-4, CPU float32): recognition embedding, age (morph2, utkface), CelebA attributes,
the three expression heads, parsing logits and 512x512 output, landmarks and heatmaps, and the debug
backbone / decoder tensors. Skipped when the fixture folder is absent.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from facebench.data.taxonomy import CELEBA_ATTRIBUTES, LABEL_ORDERS
from facebench.errors import ModelError
from facebench.models import faceptor as fp
from facebench.models.faceptor_net import age_expectation, align_output, is_map_task, parsing_output

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "faceptor"
needs_golden = pytest.mark.skipif(
    not (GOLDEN / "checkpoint.pth").exists(),
    reason=f"Faceptor golden fixture not found at {GOLDEN} (made with the authors' code; see its README)",
)
TOL = dict(rtol=1e-4, atol=1e-4)
FULL_ONLY = ("age_utkface", "affect_ferplus", "parsing_lapa", "align_cofw", "align_wflw", "align_aflw")


@pytest.fixture(scope="module")
def inputs():
    return torch.load(GOLDEN / "inputs.pt", weights_only=True)


def _all_outputs(net, inputs) -> dict[str, torch.Tensor]:
    """Every fixture output, named as in outputs.pt."""
    tasks = tuple(net.cfg.tasks)
    with torch.no_grad():
        o112 = net(inputs["image_112"], tasks=tuple(t for t in tasks if not is_map_task(t)), recognition=True,
                   debug=True)
        o128 = net(inputs["image_128"], tasks=tuple(t for t in tasks if is_map_task(t)), debug=True)
    out = {"recog_ms1mv3": o112["recog"],
           "debug/affect_rafdb/decoder_output": o112["debug/affect_rafdb/decoder_output"],
           "debug/affect_rafdb/decoder_src": o112["debug/decoder_src"]}
    for task in tasks:
        if task.startswith("parsing_"):
            out[f"{task}/logits"] = o128[task]
            out[f"{task}/output_s16"] = parsing_output(o128[task], net.cfg.parsing_out_size)[:, ::16, ::16, :]
        elif task.startswith("align_"):
            aligned = align_output(o128[task])
            out[f"{task}/landmark"] = aligned["landmark"]
            out[f"{task}/heatmap_s4"] = aligned["heatmap"][:, :, ::4, ::4]
            torch.testing.assert_close(aligned["heatmap_acted"], torch.sigmoid(aligned["heatmap"]))
        else:
            out[task] = o112[task]
    for size, o in (("112", o112), ("128", o128)):
        out[f"debug/backbone_{size}/block00"] = o["debug/feats"][0]
        out[f"debug/backbone_{size}/block11"] = o["debug/feats"][11]
    return out


@needs_golden
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_golden_outputs(stage, inputs):
    folder = GOLDEN if stage == "stage1" else GOLDEN / "stage2"
    net, size = fp.build_faceptor(folder / "checkpoint.pth", GOLDEN / "config.json")
    assert size == 112
    assert (net.cfg.vit_width, net.cfg.vit_heads, net.cfg.dec_hidden, net.cfg.dec_heads) == (32, 2, 48, 4)
    assert (net.cfg.vit_layers, net.cfg.dec_layers, net.cfg.dec_ffn, net.cfg.vit_pos_grid) == (12, 3, 96, 32)
    assert len(net.cfg.tasks) == 12 and net.cfg.tasks["age_morph2"] == 101
    assert net.cfg.new_levels == ((1, 3, 5, 7, 9) if stage == "stage2" else ())
    expected = torch.load(folder / "outputs.pt", weights_only=True)
    mine = _all_outputs(net, inputs)
    assert set(expected) <= set(mine)
    for key, value in expected.items():
        torch.testing.assert_close(mine[key], value, **TOL, msg=lambda m, k=key: f"{stage} {k}: {m}")


@needs_golden
def test_adapter_predict_matches_fixture(inputs):
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)
    adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"))
    assert adapter.variant == "Full"
    assert adapter.input_spec.size == (112, 112) and adapter.input_spec.mean == (0.5, 0.5, 0.5)
    assert adapter.input_spec.std == (0.5, 0.5, 0.5) and adapter.input_spec.color_order == "RGB"
    assert adapter.default_head == "expression" and adapter.feature_dim == 512
    assert adapter.heads["expression"].labels == LABEL_ORDERS["affectnet"][:7]
    assert adapter.heads["attributes"].labels == CELEBA_ATTRIBUTES and adapter.heads["attributes"].kind == "binary"
    assert adapter.heads["age"].labels == ("age",) and adapter.heads["age"].kind == "regression"
    heads = ("expression", "expression_rafdb", "expression_affectnet", "expression_ferplus", "age", "age_morph2",
             "age_utkface", "attributes")
    assert set(heads) == set(adapter.heads)
    x = inputs["image_112"][:2]
    out = adapter.predict(x, heads=heads, features=True)
    for head, task in (("expression", "affect_rafdb"), ("expression_rafdb", "affect_rafdb"),
                       ("expression_affectnet", "affect_affectnet"), ("expression_ferplus", "affect_ferplus"),
                       ("attributes", "biattr_celeba")):
        torch.testing.assert_close(out[head], expected[task][:2], **TOL)
    torch.testing.assert_close(out["features"], expected["recog_ms1mv3"][:2], **TOL)
    for head, task in (("age", "age_morph2"), ("age_morph2", "age_morph2"), ("age_utkface", "age_utkface")):
        p = torch.sigmoid(expected[task][:2])
        want = (p / p.sum(1, keepdim=True) * torch.arange(101.0)).sum(1, keepdim=True)
        torch.testing.assert_close(out[head], want, **TOL)
        assert ((out[head] >= 0) & (out[head] <= 100)).all()
    # head / age_head arguments pick the default heads
    other = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"), config=str(GOLDEN / "config.json"),
                               head="ferplus", age_head="utkface")
    out = other.predict(x, heads=("expression", "age"))
    torch.testing.assert_close(out["expression"], expected["affect_ferplus"][:2], **TOL)
    assert other.fingerprint() != adapter.fingerprint()


def _write(tmp_path, state, name="ckpt.pth.tar", **extra):
    path = tmp_path / name
    torch.save({"step": 0, "state_dict": state, **extra}, path)
    return str(path)


@pytest.fixture(scope="module")
def golden_state():
    return torch.load(GOLDEN / "checkpoint.pth", map_location="cpu", weights_only=True)["state_dict"]


@needs_golden
def test_base_variant_detected_and_ferplus_falls_back(tmp_path, golden_state, inputs):
    base = {k: v for k, v in golden_state.items() if not any(f".{t}." in k for t in FULL_ONLY)}
    path = _write(tmp_path, base)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter = fp.FaceptorAdapter(checkpoint=path, config=str(GOLDEN / "config.json"), head="ferplus",
                                     age_head="utkface")
    messages = " | ".join(str(w.message) for w in caught)
    assert "no affect_ferplus head; using affect_affectnet" in messages
    assert "no age_utkface head; using age_morph2" in messages
    assert adapter._tasks["age"][0] == "age_morph2"
    assert adapter.variant == "Base"
    assert set(adapter.module.cfg.tasks) == {"age_morph2", "biattr_celeba", "affect_affectnet", "affect_rafdb",
                                              "parsing_celebam", "align_300w"}
    assert "expression_ferplus" not in adapter.heads and "age_utkface" not in adapter.heads
    expected = torch.load(GOLDEN / "outputs.pt", weights_only=True)
    out = adapter.predict(inputs["image_112"][:1], heads=("expression",))
    torch.testing.assert_close(out["expression"], expected["affect_affectnet"][:1], **TOL)


@needs_golden
def test_stage2_variant_detected():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter = fp.FaceptorAdapter(checkpoint=str(GOLDEN / "stage2" / "checkpoint.pth"),
                                     config=str(GOLDEN / "config.json"))
    assert adapter.variant == "stage-2 (Full tasks)"


@needs_golden
def test_checkpoint_key_errors(tmp_path, golden_state):
    cfg = str(GOLDEN / "config.json")
    dropped_ok = dict(golden_state)
    assert any(k.startswith("module.losses_module.") for k in dropped_ok)  # dropped knowingly
    missing = {k: v for k, v in golden_state.items()
               if k != "module.heads_module.decoder.transformer_ffn_layers.1.norm.weight"}
    with pytest.raises(ModelError, match=r"missing keys.*transformer_ffn_layers\.1\.norm\.weight.*drive\.google"):
        fp.FaceptorAdapter(checkpoint=_write(tmp_path, missing), config=cfg)
    unexpected = {**golden_state, "module.heads_module.decoder.extra_gate.weight": torch.zeros(3)}
    with pytest.raises(ModelError, match=r"unexpected keys.*decoder\.extra_gate\.weight"):
        fp.FaceptorAdapter(checkpoint=_write(tmp_path, unexpected), config=cfg)
    foreign = {**golden_state, "module.something_else.weight": torch.zeros(3)}
    with pytest.raises(ModelError, match=r"unexpected keys.*something_else"):
        fp.FaceptorAdapter(checkpoint=_write(tmp_path, foreign), config=cfg)
    bad_shape = dict(golden_state)
    bad_shape["module.heads_module.decoder.adapt_pos2d.0.weight"] = torch.zeros(48, 47)
    with pytest.raises(ModelError, match=r"does not match the Faceptor architecture.*adapt_pos2d"):
        fp.FaceptorAdapter(checkpoint=_write(tmp_path, bad_shape), config=cfg)
    no_backbone = {k: v for k, v in golden_state.items() if "backbone_module" not in k}
    with pytest.raises(ModelError, match=r"lacks 'backbone\.conv1\.weight'"):
        fp.FaceptorAdapter(checkpoint=_write(tmp_path, no_backbone), config=cfg)
    # a stage-2 checkpoint whose level count disagrees with the config
    stage2 = {**golden_state, "module.heads_module.decoder.new_level_embed.weight": torch.zeros(2, 48)}
    for j in range(2):
        stage2[f"module.heads_module.decoder.new_input_proj.{j}.weight"] = torch.zeros(48, 32, 1, 1)
        stage2[f"module.heads_module.decoder.new_input_proj.{j}.bias"] = torch.zeros(48)
    with pytest.raises(ModelError, match=r"2 stage-2 level projections"):
        fp.FaceptorAdapter(checkpoint=_write(tmp_path, stage2), config=cfg)
    # sizes the state dict cannot tell: the real defaults do not fit the tiny widths
    with pytest.raises(ModelError, match=r"config=PATH"):
        fp.FaceptorAdapter(checkpoint=str(GOLDEN / "checkpoint.pth"))


def test_missing_or_wrong_checkpoint(tmp_path):
    for ckpt in (None, str(tmp_path / "nope.pth.tar")):
        with pytest.raises(ModelError, match=r"checkpoint_rank0_iter_50000\.pth\.tar.*drive\.google\.com"):
            fp.FaceptorAdapter(checkpoint=ckpt)
    path = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, path)
    with pytest.raises(ModelError, match=r"no 'state_dict' entry.*lxq1000/Faceptor"):
        fp.FaceptorAdapter(checkpoint=str(path))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ModelError, match="could not be read"):
        fp.FaceptorAdapter(checkpoint=str(tmp_path / "junk.pth"))
    with pytest.raises(ModelError, match="head='sfew'"):
        fp.FaceptorAdapter(checkpoint=None, head="sfew")


def test_age_expectation_range():
    logits = torch.randn(4, 101) * 5
    age = age_expectation(logits)
    assert age.shape == (4,) and ((age >= 0) & (age <= 100)).all()
    peaked = torch.full((1, 101), -30.0)
    peaked[0, 37] = 30.0
    assert abs(age_expectation(peaked).item() - 37) < 1e-3


@needs_golden
def test_registry_and_model_args(tmp_path):
    from facebench.models.base import parse_model_args
    from facebench.registry import MODELS
    from facebench.runner import make_model

    assert MODELS.get("faceptor") is fp.FaceptorAdapter
    args = parse_model_args(f"checkpoint={GOLDEN / 'checkpoint.pth'},head=affectnet,config={GOLDEN / 'config.json'}")
    model = make_model("faceptor", args)
    assert model.heads["expression"].labels == LABEL_ORDERS["affectnet"][:7]
    assert model._tasks["expression"][0] == "affect_affectnet"
    assert model.describe()["feature_dim"] == 512


# -- without the fixture: a synthetic checkpoint in the authors' layout ------------------------------
BASE_TASKS = {"age_morph2": 101, "biattr_celeba": 40, "affect_affectnet": 7, "affect_rafdb": 7,
              "parsing_celebam": 19, "align_300w": 68}


def _authors_layout(net) -> dict[str, torch.Tensor]:
    return fp.authors_state_dict(net)


@pytest.mark.parametrize("stage2", [False, True])
def test_synthetic_checkpoint_roundtrip_with_default_sizes(tmp_path, stage2):
    """Widths chosen so the released model's defaults (head size 64, 8 decoder heads) apply: no config."""
    from facebench.models.faceptor_net import FaceptorConfig, FaceptorNet

    torch.manual_seed(0)
    cfg = FaceptorConfig(vit_width=64, vit_heads=1, vit_mlp_hidden=32, vit_pos_grid=8, dec_hidden=16, dec_heads=8,
                         dec_ffn=24, dec_layers=2, tasks=dict(BASE_TASKS), recog_in=64, map_hidden=16,
                         new_levels=(1, 3, 5, 7, 9) if stage2 else ())
    net = FaceptorNet(cfg).eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
    path = tmp_path / "checkpoint_rank0_iter_50000.pth.tar"
    torch.save({"step": 50000, "state_dict": _authors_layout(net), "optimizer": {}}, path)
    adapter = fp.FaceptorAdapter(checkpoint=str(path))
    got = adapter.module.cfg
    assert (got.vit_heads, got.dec_heads, got.vit_pos_grid, got.dec_layers, got.dec_ffn) == (1, 8, 8, 2, 24)
    assert got.tasks == BASE_TASKS and got.new_levels == cfg.new_levels
    assert adapter.variant == ("stage-2 (Base tasks)" if stage2 else "Base")
    x = torch.randn(2, 3, 112, 112)
    out = adapter.predict(x, heads=("expression", "expression_affectnet", "age", "attributes"), features=True)
    with torch.no_grad():
        ref = net(x, tasks=("affect_rafdb", "affect_affectnet", "age_morph2", "biattr_celeba"), recognition=True)
    torch.testing.assert_close(out["expression"], ref["affect_rafdb"], rtol=0, atol=0)
    torch.testing.assert_close(out["expression_affectnet"], ref["affect_affectnet"], rtol=0, atol=0)
    torch.testing.assert_close(out["attributes"], ref["biattr_celeba"], rtol=0, atol=0)
    torch.testing.assert_close(out["age"][:, 0], age_expectation(ref["age_morph2"]), rtol=0, atol=0)
    torch.testing.assert_close(out["features"], ref["recog"], rtol=0, atol=0)
    assert out["features"].shape == (2, 512)
