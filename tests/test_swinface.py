"""swinface: the clean re-implementation against the golden fixture made with the authors' code.

The fixture (``shared/golden/swinface``: a tiny SwinFace on random weights, its inputs and all 43 outputs of
``ModelBox.forward`` plus 3 debug tensors) is outside the repo; these tests skip when it is absent.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.data.taxonomy import CELEBA_ATTRIBUTES, LABEL_ORDERS
from facebench.errors import ModelError
from facebench.models import swinface as sf

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "swinface"
CKPT, CONFIG = GOLDEN / "checkpoint.pth", GOLDEN / "config.json"
HAVE_GOLDEN = all(p.is_file() for p in (CKPT, CONFIG, GOLDEN / "inputs.pt", GOLDEN / "outputs.pt"))
needs_golden = pytest.mark.skipif(not HAVE_GOLDEN, reason=f"the SwinFace golden fixture is not at {GOLDEN} "
                                                          "(checkpoint.pth, config.json, inputs.pt, outputs.pt)")
TOL = dict(rtol=1e-5, atol=1e-5)  # the fixture README's tolerance (CPU, float32)

# spec §2.6: standard CelebA index -> index in SwinFace's attribute order
SPEC_STD_TO_SWINFACE = [30, 19, 0, 20, 9, 10, 31, 24, 11, 12, 1, 13, 21, 2, 36, 22, 37, 14, 3, 26, 4, 32, 33,
                        23, 35, 5, 6, 25, 15, 27, 29, 7, 16, 17, 28, 18, 34, 38, 39, 8]


@pytest.fixture(scope="module")
def golden():
    if not HAVE_GOLDEN:
        pytest.skip(f"the SwinFace golden fixture is not at {GOLDEN}")
    x = torch.load(GOLDEN / "inputs.pt", map_location="cpu", weights_only=True)["image_112"]
    expected = torch.load(GOLDEN / "outputs.pt", map_location="cpu", weights_only=True)
    return x, expected


@pytest.fixture(scope="module")
def ckpt():
    if not HAVE_GOLDEN:
        pytest.skip(f"the SwinFace golden fixture is not at {GOLDEN}")
    return torch.load(CKPT, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def adapter():
    if not HAVE_GOLDEN:
        pytest.skip(f"the SwinFace golden fixture is not at {GOLDEN}")
    return sf.SwinFaceAdapter(checkpoint=str(CKPT)).eval()


# -- without the fixture ----------------------------------------------------------------------------------
def test_attribute_mapping_is_the_spec_permutation():
    by_name = {sf.celeba_name(n): i for i, n in enumerate(sf.SWINFACE_ATTRIBUTES)}
    assert sorted(by_name) == sorted(CELEBA_ATTRIBUTES)
    assert [by_name[a] for a in CELEBA_ATTRIBUTES] == SPEC_STD_TO_SWINFACE


def test_shifted_window_mask_and_index():
    mask = sf.shifted_window_mask(14, 7, 3)
    assert mask.shape == (4, 49, 49) and set(mask.unique().tolist()) == {0.0, -100.0}
    assert (mask[0] == 0).all()  # the top-left window is not split by the shift
    idx = sf.relative_position_index(7)
    assert idx.shape == (49, 49) and idx.min() == 0 and idx.max() == 168 and (idx.diagonal() == 84).all()


def test_missing_checkpoint_says_what_and_where(tmp_path):
    with pytest.raises(ModelError, match=r"checkpoint_step_79999_gpu_0\.pt.*drive\.google\.com"):
        sf.SwinFaceAdapter()
    with pytest.raises(ModelError, match="not found"):
        sf.SwinFaceAdapter(checkpoint=str(tmp_path / "nope.pt"))
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match=r"lacks 'state_dict_backbone', 'state_dict_fam', 'state_dict_tss', "
                                         r"'state_dict_om'.*top-level keys: \['state_dict'\]"):
        sf.SwinFaceAdapter(checkpoint=str(tmp_path / "other.pt"))


def test_sizes_are_read_from_the_shapes(tmp_path):
    """A variant unlike the fixture (other depths, heads, FAM split) round-trips through a checkpoint file."""
    torch.manual_seed(0)
    fam_out = [3, 5, 7, 9]  # feature dim 24
    cfg = dict(img_size=112, patch_size=2, embed_dim=8, depths=[2, 2, 4, 2], num_heads=[1, 2, 2, 4],
               window_sizes=[7, 7, 7, 7], mlp_hidden=[16, 32, 64, 128], head_out=512, embedding_size=512,
               branches=11, fam_split_in=[16, 32, 64, 64], fam_split_out=fam_out, fam_kernel=3, cbam_hidden=1,
               tss_dims=[(24, 20, 16)] * 11, om_dims=[(16, n) for g in sf.DEFAULT_OM_OUTPUT_SIZES for n in g],
               om_output_sizes=sf.DEFAULT_OM_OUTPUT_SIZES, om_fc_order=sf.DEFAULT_OM_FC_ORDER,
               output_dict_order=sf.DEFAULT_OUTPUT_ORDER)
    net = sf.SwinFaceNet(cfg).eval()
    parts = (net.backbone, net.fam, net.tss, net.om)
    torch.save({"epoch": 1, "state_optimizer": {}, **{k: m.state_dict() for k, m in zip(sf.SUB_DICTS, parts)}},
               tmp_path / "ckpt.pt")
    adapter = sf.SwinFaceAdapter(checkpoint=str(tmp_path / "ckpt.pt"))
    got = adapter.module.cfg
    for key in ("embed_dim", "depths", "num_heads", "mlp_hidden", "fam_split_in", "fam_split_out", "cbam_hidden",
                "tss_dims", "om_dims"):
        assert got[key] == cfg[key], key
    x = torch.randn(2, 3, 112, 112)
    out = adapter.predict(x, heads=("expression", "age", "attributes"), features=True)
    with torch.no_grad():
        ref = net(x)
    assert torch.equal(out["expression"], ref["Expression"]) and torch.equal(out["features"], ref["Recognition"])
    assert out["attributes"].shape == (2, 40) and out["age"].shape == (2, 1)


# -- the golden fixture -----------------------------------------------------------------------------------
@needs_golden
@pytest.mark.parametrize("use_config", [True, False], ids=["config", "shapes-only"])
def test_reproduces_every_golden_output(golden, ckpt, use_config):
    x, expected = golden
    sub = {k: ckpt[k] for k in sf.SUB_DICTS}
    net = sf.build_from_checkpoint(sub, sf.load_config_json(CONFIG) if use_config else None)
    cfg = net.cfg
    assert (cfg["embed_dim"], cfg["patch_size"], cfg["depths"], cfg["num_heads"]) == (12, 2, [2, 2, 2, 2], [1, 2, 4, 8])
    assert (cfg["fam_split_in"], cfg["fam_split_out"], cfg["cbam_hidden"]) == ([24, 48, 96, 96], [3, 6, 12, 11], 2)
    assert cfg["stage_resolutions"] == [56, 28, 14, 7] and cfg["embedding_size"] == 512
    with torch.no_grad():
        out = net(x, debug=True)
    assert list(out) == list(expected)  # the authors' names, in their dict order, + 3 debug tensors
    for key, want in expected.items():
        torch.testing.assert_close(out[key], want, **TOL, msg=lambda m, k=key: f"{k}: {m}")


@needs_golden
def test_adapter_heads_follow_the_golden_outputs(adapter, golden):
    x, expected = golden
    out = adapter.predict(x, heads=("expression", "age", "attributes", "gender"), features=True)
    assert adapter.heads["expression"].labels == LABEL_ORDERS["rafdb"]
    assert adapter.heads["age"].kind == "regression" and adapter.heads["age"].labels == ("age",)
    assert adapter.heads["attributes"].kind == "binary" and adapter.heads["attributes"].labels == CELEBA_ATTRIBUTES
    assert adapter.feature_dim == 512 and adapter.input_spec.size == (112, 112)
    assert adapter.input_spec.mean == (0.5,) * 3 and adapter.input_spec.std == (0.5,) * 3
    torch.testing.assert_close(out["expression"], expected["Expression"], **TOL)
    torch.testing.assert_close(out["age"], expected["Age"], **TOL)
    torch.testing.assert_close(out["gender"], expected["Gender"], **TOL)
    torch.testing.assert_close(out["features"], expected["Recognition"], **TOL)
    two = torch.stack([expected[sf.SWINFACE_ATTRIBUTES[j]] for j in SPEC_STD_TO_SWINFACE], dim=1)
    torch.testing.assert_close(out["attributes"], two[..., 1] - two[..., 0], **TOL)
    male = CELEBA_ATTRIBUTES.index("Male")
    torch.testing.assert_close(torch.sigmoid(out["attributes"][:, male]), expected["Gender"].softmax(1)[:, 1], **TOL)
    # one head alone runs only its branch and gives the same numbers
    torch.testing.assert_close(adapter.predict(x, heads=("age",))["age"], out["age"], rtol=0, atol=0)


@needs_golden
@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_mismatched_checkpoint_gives_a_clear_error(ckpt, tmp_path, change):
    bad = dict(ckpt)
    if change == "missing":
        bad["state_dict_fam"] = {k: v for k, v in ckpt["state_dict_fam"].items() if k != "nets.3.norm.bias"}
        pattern = r"state_dict_fam .*missing keys: \['nets\.3\.norm\.bias'\]"
    elif change == "unexpected":
        bad["state_dict_om"] = dict(ckpt["state_dict_om"], **{"output_fcs.0.extra": torch.zeros(2)})
        pattern = r"state_dict_om .*unexpected keys: \['output_fcs\.0\.extra'\]"
    else:
        bb = dict(ckpt["state_dict_backbone"])
        bb["layers.1.blocks.1.mlp.fc2.bias"] = torch.zeros(5)
        bad["state_dict_backbone"] = bb
        pattern = r"state_dict_backbone has tensors of unexpected shape.*layers\.1\.blocks\.1\.mlp\.fc2\.bias"
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=pattern + r".*four sub-dicts"):
        sf.SwinFaceAdapter(checkpoint=str(tmp_path / "bad.pt"))


@needs_golden
def test_config_that_disagrees_with_the_checkpoint(ckpt, tmp_path):
    sub = {k: ckpt[k] for k in sf.SUB_DICTS}
    with pytest.raises(ModelError, match="embed_dim = 96 but the checkpoint's shapes say 12"):
        sf.resolve_config(sub, {"embed_dim": 96})
    with pytest.raises(ModelError, match="attn_mask has 64 windows but input size 224 implies 256"):
        sf.resolve_config(sub, {"img_size": 224})
    with pytest.raises(ModelError, match="om_output_sizes"):
        sf.resolve_config(sub, {"om_output_sizes": [[2]] * 11})


@needs_golden
def test_engine_run_equals_direct_prediction(adapter, tmp_path):
    from facebench.data.dataset import Dataset
    from facebench.data.images import ArrayImages
    from facebench.data.preprocess import normalise_batch, prepare_uint8
    from facebench.engine.inference import InferenceSettings, run_inference
    from facebench.engine.store import PredictionStore
    from facebench.registry import MODELS

    assert MODELS.get("swinface") is sf.SwinFaceAdapter
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 120, 100, 3), dtype=np.uint8)
    ds = Dataset("raf-like", "test", [f"s{i}" for i in range(5)], LABEL_ORDERS["rafdb"], None, ArrayImages(images))
    heads = ("expression", "age", "attributes")
    preds, report = run_inference(adapter, ds, PredictionStore(tmp_path / "store"), heads=heads, features=True,
                                  settings=InferenceSettings(batch_size=2, device="cpu", progress=False))
    assert report.computed_samples == 5
    x = normalise_batch(torch.stack([prepare_uint8(im, adapter.input_spec) for im in images]), adapter.input_spec)
    direct = adapter.predict(x, heads=heads, features=True)
    for name in heads + ("features",):
        assert preds.outputs[name].shape == tuple(direct[name].shape)
        np.testing.assert_allclose(preds.outputs[name], direct[name].numpy(), rtol=1e-5, atol=1e-5)
