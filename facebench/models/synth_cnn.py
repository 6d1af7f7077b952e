"""``synth-cnn``: the small CNN trained on the embedded synthetic faces (``python -m facebench.train_synth_cnn``)."""

from __future__ import annotations

from pathlib import Path

import torch

from facebench.data.preprocess import Preprocessing
from facebench.errors import ModelError
from facebench.models.base import Head, ModelAdapter

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "synth_cnn.pt"
SYNTH_CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
PREPROCESSING = Preprocessing(
    source="facebench.train_synth_cnn: trained on synthetic faces rendered at 48x48 (no resize in training); "
           "other sizes go through facebench's own torch resize (bilinear, antialiased when shrinking)",
    crop="the whole rendered face image; datasets' face crops are fed whole",
    resize="torch", interpolation="bilinear",
)


class SynthCNNAdapter(ModelAdapter):
    """Small CNN trained on the embedded synthetic faces (48x48 RGB, 7 basic expressions)"""

    name = "synth-cnn"
    preprocessing = PREPROCESSING
    input_spec = PREPROCESSING.spec(size=(48, 48), channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    heads = {"expression": Head("expression", SYNTH_CLASSES)}
    default_head = "expression"

    def __init__(self, weights: str | None = None):
        from facebench.models.synth_cnn_net import SynthCNN

        super().__init__(weights=weights)
        path = Path(weights) if weights else DEFAULT_WEIGHTS
        if not path.exists():
            raise ModelError(
                f"synth-cnn weights not found at {path}. They ship with facebench; regenerate them with "
                f"`python -m facebench.train_synth_cnn --out {path}`."
            )
        self.path = path
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.module = SynthCNN(n_classes=len(SYNTH_CLASSES))
        try:
            self.module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelError(f"{path} does not match the SynthCNN architecture: {err}") from err
        self.module.eval()
        self.feature_dim = int(self.module.features(torch.zeros(1, 3, 48, 48)).shape[1])

    def model_files(self):
        """The state-dict file the weights were loaded from."""
        return {"weights": self.path}

    def forward(self, batch, heads, features):
        feats = self.module.features(batch)
        out = {"expression": self.module.classifier(feats)}
        if features:
            out["features"] = feats
        return out
