import pytest

from facebench.data.taxonomy import LABEL_ORDERS, canonical_name, index_map
from facebench.errors import ConfigError


def test_raf_file_labels_to_affectnet_order_match_faceptor():
    # Faceptor RAFDBDataset.standard_label: [-1, 3, 4, 5, 1, 2, 6, 0][label], labels 1..7 (spec §1.4)
    faceptor = [-1, 3, 4, 5, 1, 2, 6, 0]
    ours = index_map(LABEL_ORDERS["rafdb"], LABEL_ORDERS["affectnet"])
    assert [ours[label - 1] for label in range(1, 8)] == faceptor[1:]


def test_ferplus_to_affectnet_order_match_faceptor():
    assert index_map(LABEL_ORDERS["ferplus"], LABEL_ORDERS["affectnet"]) == [0, 1, 3, 2, 6, 5, 4, 7]


def test_affectnet_to_raf_order_match_generalizable_fer():
    expected = {0: 6, 1: 3, 2: 4, 3: 0, 4: 1, 5: 2, 6: 5}
    ours = index_map(LABEL_ORDERS["affectnet"][:7], LABEL_ORDERS["rafdb"])
    assert {i: ours[i] for i in range(7)} == expected


def test_sfew_to_raf_order_match_generalizable_fer():
    expected = {0: 5, 1: 2, 2: 1, 3: 3, 4: 6, 5: 4, 6: 0}
    ours = index_map(LABEL_ORDERS["sfew"], LABEL_ORDERS["rafdb"])
    assert {i: ours[i] for i in range(7)} == expected


def test_contempt_absent_from_seven_class_orders():
    assert index_map(("contempt",), LABEL_ORDERS["rafdb"]) == [-1]


@pytest.mark.parametrize("raw,name", [("Angry", "anger"), ("happy", "happiness"), ("Sad", "sadness"),
                                      ("surprised", "surprise"), ("FEAR", "fear"), ("NE", "neutral")])
def test_synonyms(raw, name):
    assert canonical_name(raw) == name


def test_unknown_name_suggests():
    with pytest.raises(ConfigError, match='Did you mean "happy"'):
        canonical_name("hapy")
