"""Landmark schemes (facebench/data/landmark_schemes.py): point counts, mirror pairs, normalisers and the
68 -> 5 mapping, checked against hand-written facts and a constructed face."""

import numpy as np
import pytest

from facebench.data.landmark_schemes import MAPPINGS, SCHEMES, LandmarkScheme, get_scheme, map_points
from facebench.errors import ConfigError

COUNTS = {"ibug68": 68, "wflw98": 98, "cofw29": 29, "aflw19": 19, "five_point": 5, "dlib5": 5}
# points on the midline of each markup (no mirror partner), written out by hand from the markups
MIDLINE = {
    "ibug68": {8, 27, 28, 29, 30, 33, 51, 57, 62, 66},
    "wflw98": {16, 51, 52, 53, 54, 57, 79, 85, 90, 94},
    "cofw29": {20, 21, 24, 25, 26, 27, 28},
    "aflw19": {13, 16, 18},
    "five_point": {2},
    "dlib5": {4},
}


def test_the_five_schemes_and_their_sizes():
    assert {name: s.n_points for name, s in SCHEMES.items()} == COUNTS
    assert all(s.name == name for name, s in SCHEMES.items())


@pytest.mark.parametrize("name", COUNTS)
def test_every_point_is_paired_once_or_on_the_midline(name):
    s = SCHEMES[name]
    paired = [i for pair in s.mirror_pairs for i in pair]
    assert len(paired) == len(set(paired))
    assert set(range(s.n_points)) - set(paired) == MIDLINE[name]


@pytest.mark.parametrize("name", COUNTS)
def test_pairs_put_the_subjects_right_first_and_names_agree(name):
    s = SCHEMES[name]
    for right, left in s.mirror_pairs:
        a, b = s.point_names[right], s.point_names[left]
        assert a.replace("right", "SIDE") == b.replace("left", "SIDE") or "contour" in a or "jaw" in a, (a, b)
        assert "left" not in a and "right" not in b


@pytest.mark.parametrize("name", COUNTS)
def test_mirror_permutation_is_an_involution(name):
    perm = SCHEMES[name].mirror_permutation()
    assert sorted(perm) == list(range(COUNTS[name]))
    assert np.array_equal(perm[perm], np.arange(COUNTS[name]))
    assert {i for i in range(COUNTS[name]) if perm[i] == i} == MIDLINE[name]


def test_normalisers_from_the_spec():
    assert SCHEMES["ibug68"].normalisers["inter_ocular"] == ((36,), (45,))
    assert SCHEMES["ibug68"].normalisers["inter_pupil"] == ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47))
    assert SCHEMES["wflw98"].normalisers["inter_ocular"] == ((60,), (72,))
    assert SCHEMES["cofw29"].normalisers["inter_ocular"] == ((8,), (9,))
    assert SCHEMES["five_point"].normalisers == {"eye_centres_5pt": ((0,), (1,))}
    assert SCHEMES["aflw19"].normalisers == {}  # AFLW-19 is normalised by the box, not by points


def test_named_points_sit_where_the_markups_put_them():
    ibug, wflw = SCHEMES["ibug68"], SCHEMES["wflw98"]
    assert (ibug.index("right_eye_outer_corner"), ibug.index("left_eye_outer_corner")) == (36, 45)
    assert (ibug.index("nose_tip"), ibug.index("mouth_right_corner"), ibug.index("mouth_left_corner")) == (30, 48, 54)
    assert (wflw.index("right_eye_outer_corner"), wflw.index("left_eye_outer_corner")) == (60, 72)
    assert (wflw.index("right_pupil"), wflw.index("left_pupil"), wflw.index("nose_tip")) == (96, 97, 54)
    assert SCHEMES["five_point"].point_names[0] == "right_eye_centre"


def test_unknown_names_say_what_exists():
    with pytest.raises(ConfigError, match='Did you mean "wflw98"'):
        get_scheme("wflw_98")
    with pytest.raises(ConfigError, match="known: ibug68"):
        get_scheme("menpo")
    with pytest.raises(ConfigError, match='Did you mean "nose_tip"'):
        SCHEMES["ibug68"].index("nose_tp")


def test_schemes_are_hashable_and_compare_by_value():
    again = LandmarkScheme("five_point", SCHEMES["five_point"].point_names, ((0, 1), (3, 4)),
                           {"eye_centres_5pt": ((0,), (1,))})
    assert again == SCHEMES["five_point"] and hash(again) == hash(SCHEMES["five_point"])
    assert len({*SCHEMES.values(), again}) == len(SCHEMES)


def test_a_bad_scheme_is_refused():
    with pytest.raises(ConfigError, match="mirror pairs"):
        LandmarkScheme("bad", ("a", "b"), ((0, 2),), {})
    with pytest.raises(ConfigError, match="not unique"):
        LandmarkScheme("bad", ("a", "a"), (), {})
    with pytest.raises(ConfigError, match="normaliser"):
        LandmarkScheme("bad", ("a", "b"), (), {"x": ((0,), ())})


def _constructed_face() -> np.ndarray:
    """An iBUG-68 face built point by point: right eye ring around (30, 40), left eye ring around (70, 40),
    nose tip (50, 60), mouth corners (35, 80) / (65, 80); every other point far away at (999, 999)."""
    face = np.full((68, 2), 999.0)
    ring = np.array([[-6, 0], [-3, -2], [3, -2], [6, 0], [3, 2], [-3, 2]], dtype=float)  # sums to 0
    face[36:42] = ring + (30, 40)
    face[42:48] = ring + (70, 40)
    face[30] = (50, 60)
    face[48], face[54] = (35, 80), (65, 80)
    return face


def test_68_to_5_by_the_spec_rule_on_a_constructed_face():
    face = _constructed_face()
    five = map_points(face[None], "ibug68", "five_point")
    assert five.shape == (1, 5, 2)
    expected = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]  # worked by hand
    assert np.allclose(five[0], expected)
    # the subject's right eye (image left in an upright face) comes first, as in MTFL
    assert five[0, 0, 0] < five[0, 1, 0]


def test_68_to_dlib5_picks_the_eye_corners_and_nose_base():
    face = _constructed_face()
    face[33] = (50, 66)
    five = map_points(face[None], "ibug68", "dlib5")[0]
    # dlib's order: left eye outer, left eye inner, right eye outer, right eye inner, nose base
    assert np.allclose(five, [[76, 40], [64, 40], [24, 40], [36, 40], [50, 66]])
    wflw = np.random.default_rng(1).uniform(0, 100, size=(2, 98, 2))
    assert np.array_equal(map_points(wflw, "wflw98", "dlib5"),
                          map_points(map_points(wflw, "wflw98", "ibug68"), "ibug68", "dlib5"))


def test_mapping_moves_with_the_points():
    face = _constructed_face()
    shifted = face + (5.0, -2.0)
    both = map_points(np.stack([face, shifted]), "ibug68", "five_point")
    assert np.allclose(both[1] - both[0], (5.0, -2.0))


def test_wflw_to_68_and_to_5_agree_with_the_68_rule():
    rng = np.random.default_rng(0)
    wflw = rng.uniform(0, 100, size=(3, 98, 2))
    as68 = map_points(wflw, "wflw98", "ibug68")
    assert as68.shape == (3, 68, 2)
    assert np.array_equal(as68[:, 36], wflw[:, 60]) and np.array_equal(as68[:, 45], wflw[:, 72])
    assert np.array_equal(as68[:, 30], wflw[:, 54]) and np.array_equal(as68[:, 48:68], wflw[:, 76:96])
    assert np.allclose(map_points(wflw, "wflw98", "five_point"), map_points(as68, "ibug68", "five_point"))


def _side(name: str):
    return "right" if "right" in name else "left" if "left" in name else None


def test_mappings_keep_the_subjects_side_and_the_names():
    """Each target point is built from source points of the same side (right from right, midline from
    midline); a one-point group of the same anatomical name keeps its name."""
    for (src, dst), groups in MAPPINGS.items():
        a, b = SCHEMES[src], SCHEMES[dst]
        assert len(groups) == b.n_points
        for j, group in enumerate(groups):
            assert {_side(a.point_names[i]) for i in group} == {_side(b.point_names[j])}, (src, dst, j)
    wflw, ibug = SCHEMES["wflw98"], SCHEMES["ibug68"]
    same = [wflw.point_names[g[0]] == ibug.point_names[j] for j, g in enumerate(MAPPINGS[("wflw98", "ibug68")])]
    # every point but the 17 contour points (renumbered) and the 3 middle points of each brow (WFLW's "upper_*")
    assert sum(same) == 68 - 17 - 6


def test_map_points_identity_and_errors():
    pts = np.zeros((2, 5, 2))
    out = map_points(pts, "five_point", "five_point")
    assert np.array_equal(out, pts) and out is not pts
    with pytest.raises(ConfigError, match=r"shape \(N, 68, 2\)"):
        map_points(np.zeros((2, 5, 2)), "ibug68", "five_point")
    with pytest.raises(ConfigError, match="no landmark mapping from five_point to ibug68"):
        map_points(pts, "five_point", "ibug68")
    with pytest.raises(ConfigError, match="unknown landmark scheme"):
        map_points(pts, "five", "ibug68")
