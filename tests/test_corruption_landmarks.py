"""corruption protocol with ``inner: landmarks``, end to end on an MTFL-layout fixture: the NME of every variant
equals a clean ``landmarks`` run on the same images corrupted by hand (``corrupt`` with ``variant_seed`` per
sample index, saved losslessly), CI included, with a landmark model whose points follow the image's brightness."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_detector_stage import CornerModel, _FrameModel, _mtfl

from facebench.data.corruptions import corrupt, variant_seed
from facebench.registry import DATASETS
from facebench.runner import run_suite

CASES = [("gaussian_noise", 2), ("contrast", 5)]
SQUARES = [(60, 20, 30), (10, 10, 50), (40, 30, 36), (70, 40, 28)]
PARAMS = "{normaliser: eye_centres_5pt}"


class CentroidModel(_FrameModel):
    """Five points at fixed offsets from the brightness centroid of its frame: corruptions move them."""

    name = "test-centroid-model"

    def forward(self, batch, heads, features):
        w = batch.float().mean(dim=1)
        w = w / w.sum(dim=(1, 2), keepdim=True)
        side = torch.arange(w.shape[-1], dtype=torch.float32) + 0.5
        cx, cy = (w * side[None, None, :]).sum(dim=(1, 2)), (w * side[None, :, None]).sum(dim=(1, 2))
        offsets = torch.tensor(CornerModel.POINTS - 20.0, dtype=torch.float32)
        return {"landmarks": torch.stack([cx, cy], dim=1)[:, None, :] + offsets}


def _run(suite_text: str, tmp_path, name: str):
    suite = tmp_path / f"{name}.yaml"
    suite.write_text(suite_text)
    out = run_suite(suite, adapter=CentroidModel(), out=tmp_path / name, cache_dir=tmp_path / "store",
                    progress=False, log=lambda m: None)
    assert out.exit_code == 0, [t.get("reason") for t in out.results["tasks"]]
    return {r["metric"]: r for r in out.results["records"]}


def _nme(records: dict) -> dict:
    [rec] = [r for r in records.values() if r["metric"].startswith("nme[") and r["headline"]]
    return rec


def test_each_variant_equals_a_clean_run_on_hand_corrupted_images(tmp_path):
    truth = np.stack([CornerModel.POINTS * 0.75 + [50 + i, 20 + i] for i in range(len(SQUARES))])
    _mtfl(tmp_path / "mtfl", SQUARES, truth)
    severities = sorted({s for _, s in CASES})
    corruptions = [c for c, _ in CASES]
    records = _run(f"""name: cl
defaults: {{bootstrap: 50, seed: 3}}
tasks:
  - {{name: corr, dataset: mtfl, split: test, path: {tmp_path / 'mtfl'}, protocol: corruption,
      params: {{corruptions: {corruptions}, severities: {severities}, inner: landmarks, inner_params: {PARAMS}}}}}
""", tmp_path, "corr")
    ds = DATASETS.get("mtfl")(path=tmp_path / "mtfl").load("test")
    clean_metric = None
    for corruption, severity in CASES:
        folder = tmp_path / f"hand-{corruption}-{severity}"
        shutil.copytree(tmp_path / "mtfl", folder)
        for i in range(len(ds)):
            image = corrupt(ds.images.load(i), corruption, severity, variant_seed(0, i, corruption, severity)).image
            Image.fromarray(image).save(folder / "AFLW" / f"face{i}.png")
        hand = _run(f"""name: h
defaults: {{bootstrap: 50, seed: 3}}
tasks:
  - {{name: lm, dataset: mtfl, split: test, path: {folder}, protocol: landmarks, params: {PARAMS}}}
""", tmp_path, f"run-{corruption}-{severity}")
        variant = [r for m, r in records.items() if m.endswith(f"[{corruption}@{severity}]")]
        assert len(variant) == 1, sorted(records)
        assert variant[0]["value"] == pytest.approx(_nme(hand)["value"], rel=1e-9)
        # variant_cis (default): the CI the landmarks protocol gives the same images with the same bootstrap
        assert variant[0]["ci"] == pytest.approx(_nme(hand)["ci"], rel=1e-9)
        assert variant[0]["ci"][0] <= variant[0]["value"] <= variant[0]["ci"][1]
        clean_metric = variant[0]["metric"].split("[")[0]
    clean = [r for m, r in records.items() if m == f"{clean_metric}[clean]"]
    assert clean and clean[0]["value"] != pytest.approx(records[f"{clean_metric}[gaussian_noise@2]"]["value"])
