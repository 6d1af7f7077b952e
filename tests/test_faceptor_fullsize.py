"""Faceptor at its published size: a checkpoint in the authors' real file structure (random weights)
loads with no missing or unexpected keys and runs end to end through `facebench run`."""

import json
from pathlib import Path

import pytest
import torch

from facebench.models import faceptor as fp
from facebench.models.faceptor_net import FaceptorConfig, FaceptorNet
from facebench.runner import run_suite

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "faceptor" / "config.json"


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory):
    if not GOLDEN.exists():
        pytest.skip(f"golden config {GOLDEN} not present (it lists the published task heads)")
    tasks = {t["name"]: t["queries"] for t in json.loads(GOLDEN.read_text())["tasks"] if t["queries"]}
    torch.manual_seed(0)
    net = FaceptorNet(FaceptorConfig(tasks=tasks)).eval()  # published sizes: ViT-B/16, 9-layer decoder
    path = tmp_path_factory.mktemp("faceptor") / "checkpoint_rank0_iter_50000.pth.tar"
    torch.save({"step": 50000, "state_dict": fp.authors_state_dict(net)}, path)
    return path, net


def test_full_size_checkpoint_loads_strictly(full_checkpoint):
    path, net = full_checkpoint
    adapter = fp.FaceptorAdapter(checkpoint=str(path))
    assert adapter.variant == "Full"
    n_backbone = sum(p.numel() for p in adapter.module.backbone.parameters())
    assert 86e6 < n_backbone < 87.5e6  # spec: 86.83M
    x = torch.randn(2, 3, 112, 112)
    out = adapter.predict(x, heads=("expression", "age", "attributes"), features=True)
    assert out["expression"].shape == (2, 7) and out["attributes"].shape == (2, 40) and out["features"].shape == (2, 512)
    # dense heads at the published 512 x 512 group-1 input: one image of another size, a 300W box
    assert adapter.module.cfg.dense_input_size == 512
    image = (torch.rand(200, 160, 3) * 255).byte().numpy()
    pts = adapter.landmarks([image], [(20, 10, 180, 150)], dataset="300w")
    assert pts.shape == (1, 68, 2)
    # with the 0.8 zoom-out, every point lies inside the frame's footprint: box centre +- (size / 2) / 0.8
    assert (pts[0, :, 0] > 80 - 87.5 - 1e-6).all() and (pts[0, :, 0] < 80 + 87.5 + 1e-6).all()
    assert adapter.parsing([image], dataset="celebam")[0].shape == (200, 160)


def test_full_size_runs_end_to_end(full_checkpoint, tmp_path):
    path, _ = full_checkpoint
    suite = tmp_path / "s.yaml"
    suite.write_text("name: fp\ndefaults: {batch_size: 16, bootstrap: 50}\ntasks:\n"
                     "  - {name: synth, dataset: synth, split: test, protocol: closed_set, dataset_args: {n: 32}}\n")
    out = run_suite(suite, "faceptor", {"checkpoint": str(path)}, out=tmp_path / "o", progress=False)
    assert out.exit_code == 0
    acc = [r for r in out.results["records"] if r["metric"] == "accuracy"][0]
    assert acc["n"] == 32 and 0.0 <= acc["value"] <= 1.0
