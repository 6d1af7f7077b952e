"""Heads of kind 'parsing' (label maps of a declared size) and how a protocol that reads one kind of head picks
it when its task names none (``pipeline.plan.head_of_kind``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facebench.engine.inference import _stored_copy
from facebench.errors import ModelError
from facebench.models.base import Head
from facebench.models.stored import StoredModel
from facebench.pipeline.plan import head_of_kind


class _Model:
    def __init__(self, default, **heads):
        self.heads, self.default_head = heads, default


def _lm(name):
    return Head(name, ("a", "b"), "landmarks", "five_point")


def _parsing(name):
    return Head(name, ("background", "skin"), "parsing", size=(8, 8))


def test_head_of_kind_picks_by_dataset_name():
    model = _Model("landmarks_300w", landmarks_300w=_lm("landmarks_300w"), landmarks_wflw=_lm("landmarks_wflw"),
                   parsing_celebam=_parsing("parsing_celebam"), parsing_lapa=_parsing("parsing_lapa"))
    assert head_of_kind(model, "parsing", "lapa") == "parsing_lapa"
    assert head_of_kind(model, "parsing", "celebamask-hq") == "parsing_celebam"
    assert head_of_kind(model, "parsing", "helen") == "parsing_celebam"  # none named after it: the first
    assert head_of_kind(model, "landmarks", "wflw") is None  # the default head is a landmark head: kept
    assert head_of_kind(model, None, "lapa") is None  # the protocol names no kind: the default head
    assert head_of_kind(_Model("expression", expression=Head("expression", ("a",))), "parsing", "lapa") is None


def test_parsing_head_shape_and_size_rules():
    head = _parsing("p")
    assert head.output_shape(3) == (3, 8, 8) and head.to_dict()["size"] == [8, 8]
    assert "size" not in _lm("l").to_dict()  # other heads' fingerprints unchanged
    with pytest.raises(ModelError, match="needs its label-map size"):
        Head("p", ("a",), "parsing")
    with pytest.raises(ModelError, match="only a parsing head"):
        Head("c", ("a",), "classification", size=(4, 4))


def test_stored_model_keeps_kind_scheme_and_size():
    description = {"name": "m", "default_head": "p", "fingerprint": "f", "feature_dim": None,
                   "heads": {"p": _parsing("p").to_dict(), "l": _lm("l").to_dict()},
                   "input_spec": {"size": [8, 8], "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3}}
    model = StoredModel(description)
    assert model.heads["p"] == _parsing("p") and model.heads["l"] == _lm("l")
    bad = {**description, "heads": {"p": {"name": "p", "labels": ["a"], "kind": "parsing"}}}
    with pytest.raises(ModelError, match="incomplete"):
        StoredModel(bad)


def test_stored_copies_keep_label_maps_uint8():
    maps = torch.randint(0, 11, (2, 4, 4), dtype=torch.uint8)
    copy = _stored_copy(maps)
    assert copy.dtype == torch.uint8 and torch.equal(copy, maps) and copy.data_ptr() != maps.data_ptr()
    assert _stored_copy(torch.ones(2, 3, dtype=torch.float16)).dtype == torch.float32
    assert _stored_copy(torch.ones(2, dtype=torch.int64)).dtype == torch.float32  # as before: only uint8 kept
    np.testing.assert_array_equal(_stored_copy(torch.tensor([1.5])).numpy(), [1.5])
