"""Protocols declare their needs as data (``Requirements``); parameter types and ranges are checked
when a protocol is built; ``validate`` checks requirements against dataset capabilities and model heads
with no model loaded and no image read."""

import dataclasses
import re

import pytest

from facebench.errors import ConfigError
from facebench.records import CAPABILITIES, Requirements
from facebench.registry import PROTOCOLS


def test_every_protocol_declares_frozen_requirements():
    for name in PROTOCOLS.names():
        req = PROTOCOLS.get(name)().requirements()
        assert isinstance(req, Requirements), name
        assert req.capabilities() <= set(CAPABILITIES)
        with pytest.raises(dataclasses.FrozenInstanceError):
            req.features = True


def test_requirements_follow_the_parameters():
    verification = PROTOCOLS.get("verification")().requirements()
    assert verification.pairs and verification.features and not verification.head and not verification.labels
    assert PROTOCOLS.get("verification")().needs() == {"features": True, "head": False}  # the runner's view
    open_set = PROTOCOLS.get("open_set")
    assert open_set(score="knn").requirements().features and open_set(score="knn").requirements().fit_split
    assert not open_set().requirements().features
    assert open_set(unknowns=[{"dataset": "synth", "split": "test"}]).requirements().unknowns == "splits"
    assert open_set(unknown_classes=["contempt"]).requirements().unknowns == "classes"
    assert open_set(unknown_classes=[]).requirements().unknowns == "none"
    assert open_set(mode="leave_one_out").requirements().unknowns == "leave-one-out"
    fairness = PROTOCOLS.get("fairness")(by=["skin_tone"], target="gender").requirements()
    assert fairness.attributes and not fairness.labels and fairness.attribute_names == ("skin_tone", "gender")
    assert PROTOCOLS.get("age_estimation")().requirements().head_name == "age"
    assert PROTOCOLS.get("closed_set")(head="expression").requirements().head_name == "expression"


@pytest.mark.parametrize("protocol, params, message", [
    ("closed_set", {"ece_bins": "fifteen"}, "ece_bins must be an integer; got 'fifteen'"),
    ("closed_set", {"ece_bins": 0}, "ece_bins must lie in [1, inf]"),
    ("closed_set", {"ece_bins": True}, "ece_bins must be an integer"),
    ("open_set", {"tpr": 1.5}, "tpr must lie in [0, 1]"),
    ("open_set", {"temperature": "hot"}, "temperature must be a number"),
    ("verification", {"flip": "yes"}, "flip must be true or false"),
    ("verification", {"far_targets": 0.001}, "far_targets must be a list"),
    ("fairness", {"min_group_size": 0}, "min_group_size must lie in [1, inf]"),
    ("age_estimation", {"head": 3}, "head must be a string (or null)"),
])
def test_parameter_types_and_ranges_are_checked(protocol, params, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PROTOCOLS.get(protocol)(**params)


def test_well_typed_parameters_still_pass():
    PROTOCOLS.get("closed_set")(ece_bins=10)
    PROTOCOLS.get("open_set")(temperature=2)  # an int where a float is declared
    PROTOCOLS.get("fairness")(by="group", positive=None)  # a single attribute name is accepted, as before
    PROTOCOLS.get("age_estimation")(fixed_sigma=None, cs_threshold=5)
