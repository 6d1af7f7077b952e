"""Facial landmark schemes as data: point names, mirror pairs, normaliser groups and mappings between schemes.

Conventions (binding: ``shared/spec/landmarks.md``):

* Indices are 0-based, in the order of the dataset's own annotation files.
* "right" / "left" in a point name is the SUBJECT's side (anatomical): ``right_eye_*`` is the eye on the image
  left of an upright face. iBUG-68 (36..41 = subject's right eye), WFLW-98, COFW-29, AFLW-19 and MTFL's
  five points all list the subject's right side first in every mirror pair used here.
* ``mirror_pairs`` are ``(subject-right, subject-left)`` index pairs; points on the midline have no pair.
  Swapping every pair (and the image x) mirrors a face; the swap check of the metrics uses this.
* ``normalisers`` maps a normaliser name to two point groups; the normalising distance of image i is
  ``d_i = || mean(G_i[group_a]) - mean(G_i[group_b]) ||``. ``inter_ocular`` is the outer eye corners,
  ``inter_pupil`` the eye centres, ``eye_centres_5pt`` the annotated eye centres of a 5-point set. The
  ``box`` normaliser (sqrt(w*h) of the ground-truth face box, AFLW-19) is not point-based: it comes from the
  dataset's boxes, so no scheme lists it.
* ``map_points`` maps (N, K, 2) points of one scheme to another by point groups: each target point is the
  mean of a group of source points (:data:`MAPPINGS`). iBUG-68 -> five_point is the spec's definitional
  rule: eye centres = mean(36..41) and mean(42..47), nose = 30, mouth corners = 48 and 54.

Sources of the point orders and mirror pairs (public facts, checked with the code search; no code taken):

* Mirror pairs of all four markups: HRNet-Facial-Landmark-Detection ``lib/utils/transforms.py``
  ``MATCHED_PARTS`` (1-based for 300W / AFLW / COFW, 0-based for WFLW) and mmpose
  ``configs/_base_/datasets/{300w,wflw,cofw,aflw}.py`` (``swap=``); both list the same pairs as here.
* Which member of each pair is the subject's right: PIPNet's mean faces (``data/{WFLW,COFW,AFLW}/meanface.txt``,
  normalised x, y of the training annotations): the first index of every pair has the smaller x (image left
  of an upright face), e.g. COFW 0 / 1 at x = 0.09 / 0.93, AFLW 6 / 11 at 0.29 / 0.71, WFLW 96 / 97 at
  0.32 / 0.68.
* iBUG-68: the 300-W markup (ibug.doc.ic.ac.uk/resources/300-W); 36..41 subject's right eye; inter-ocular
  36/45 (iBUG ``compute_error.m`` 37/46 1-based; HRNet ``lib/core/evaluation.py``; mmpose ``NME``).
* WFLW-98: the WFLW markup (wywu.github.io/projects/LAB/WFLW.html): contour 0..32, brows 33..50 (upper edge
  outer -> inner, then lower edge), nose 51..59 (54 tip), eyes 60..75 (60 / 72 outer corners), lips 76..95,
  pupils 96 / 97; inter-ocular 60/72 (mmpose ``NME.DEFAULT_KEYPOINT_INDICES``, PIPNet ``lib/test.py``).
* COFW-29: the LFPW / COFW 29-point markup of Burgos-Artizzu et al. (ICCV 2013): brow corners 0..3, brow
  mid-points 4..7, eye corners 8..11, eyelid mid-points 12..15, pupils 16 / 17, nose 18..21, mouth corners
  22 / 23, lip mid-points 24..27, chin 28; inter-ocular 8/9 (mmpose, PIPNet); inter-pupil 16/17.
* AFLW-19: AFLW's 21 points without the two ear points, as HRNet ``lib/datasets/aflw.py`` and Faceptor read
  them (brows 0..5, eyes 6..11 with the eye centres 7 / 10, nose 12..14, mouth 15..17, chin 18). Normalised
  by the box (sqrt(w*h)), not by points.
* five_point: MTFL / CelebA order (``shared/data/mtfl/MANIFEST.txt``): subject's right eye centre, left eye
  centre, nose, right mouth corner, left mouth corner (MTFL's "left eye" is the image-left eye).
* dlib5: dlib's ``shape_predictor_5_face_landmarks`` (as ``facebench.models.dlib_landmarks`` reads it):
  0 / 1 the subject's left eye outer / inner corner (iBUG 45 / 42), 2 / 3 the right eye outer / inner corner
  (iBUG 36 / 39), 4 the nose base (iBUG 33). No mouth points, so no mapping to five_point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.errors import ConfigError, did_you_mean

__all__ = ["LandmarkScheme", "SCHEMES", "MAPPINGS", "get_scheme", "map_points"]


@dataclass(frozen=True)
class LandmarkScheme:
    """One landmark markup: point names in file order, (subject-right, subject-left) mirror pairs and
    point-based normalisers (name -> two groups; d = distance between the two group means)."""

    name: str
    point_names: tuple[str, ...]
    mirror_pairs: tuple[tuple[int, int], ...]
    normalisers: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]

    def __post_init__(self):
        k = len(self.point_names)
        if len(set(self.point_names)) != k:
            raise ConfigError(f"scheme {self.name}: point names are not unique")
        paired = [i for pair in self.mirror_pairs for i in pair]
        if len(set(paired)) != len(paired) or not all(0 <= i < k for i in paired):
            raise ConfigError(f"scheme {self.name}: mirror pairs must be distinct indices in 0..{k - 1}")
        for norm, groups in self.normalisers.items():
            if len(groups) != 2 or not all(g and all(0 <= i < k for i in g) for g in groups):
                raise ConfigError(f"scheme {self.name}: normaliser {norm} needs two non-empty groups in 0..{k - 1}")

    def __hash__(self) -> int:  # the normalisers dict would make the generated hash fail
        return hash((self.name, self.point_names, self.mirror_pairs, tuple(sorted(self.normalisers.items()))))

    @property
    def n_points(self) -> int:
        """K, the number of points."""
        return len(self.point_names)

    def index(self, point_name: str) -> int:
        """0-based index of a point by name (ConfigError with a suggestion on an unknown name)."""
        try:
            return self.point_names.index(point_name)
        except ValueError:
            raise ConfigError(f'scheme {self.name} has no point "{point_name}".'
                              f"{did_you_mean(point_name, self.point_names)}") from None

    def mirror_permutation(self) -> np.ndarray:
        """(K,) int64 permutation that swaps every mirror pair (midline points stay): ``points[:, perm]``."""
        perm = np.arange(self.n_points)
        for right, left in self.mirror_pairs:
            perm[right], perm[left] = left, right
        return perm


def _side(side: str, names) -> tuple[str, ...]:
    return tuple(f"{side}_{n}" for n in names)


#: The 20 mouth points shared by iBUG-68 (48..67) and WFLW-98 (76..95): the 12 outer lip points from the subject's
#: right corner over the upper lip and back under the lower lip, then the 8 inner lip points the same way.
_MOUTH20 = (
    "mouth_right_corner", "upper_lip_right_outer", "upper_lip_right_mid", "upper_lip_top",
    "upper_lip_left_mid", "upper_lip_left_outer", "mouth_left_corner", "lower_lip_left_outer",
    "lower_lip_left_mid", "lower_lip_bottom", "lower_lip_right_mid", "lower_lip_right_outer",
    "inner_mouth_right_corner", "inner_upper_lip_right", "inner_upper_lip_centre", "inner_upper_lip_left",
    "inner_mouth_left_corner", "inner_lower_lip_left", "inner_lower_lip_centre", "inner_lower_lip_right",
)


def _ibug68_names() -> tuple[str, ...]:
    eye_r = ("outer_corner", "upper_outer", "upper_inner", "inner_corner", "lower_inner", "lower_outer")
    eye_l = ("inner_corner", "upper_inner", "upper_outer", "outer_corner", "lower_outer", "lower_inner")
    return (
        tuple(f"jaw_{i:02d}" for i in range(17))  # 0 = at the subject's right ear, 8 = chin, 16 = left ear
        + _side("right_brow", ("outer", "outer_mid", "mid", "inner_mid", "inner"))
        + _side("left_brow", ("inner", "inner_mid", "mid", "outer_mid", "outer"))
        + tuple(f"nose_bridge_{i}" for i in range(3)) + ("nose_tip",)
        + ("nose_base_right", "nose_base_right_mid", "nose_base_centre", "nose_base_left_mid", "nose_base_left")
        + _side("right_eye", eye_r) + _side("left_eye", eye_l)
        + _MOUTH20
    )


_IBUG68_PAIRS = (
    tuple((i, 16 - i) for i in range(8))  # jaw
    + tuple((17 + i, 26 - i) for i in range(5))  # brows
    + ((31, 35), (32, 34))  # nose base
    + ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46))  # eyes
    + ((48, 54), (49, 53), (50, 52), (59, 55), (58, 56))  # outer lips
    + ((60, 64), (61, 63), (67, 65))  # inner lips
)


def _wflw98_names() -> tuple[str, ...]:
    eye_r = ("outer_corner", "upper_outer", "upper_mid", "upper_inner", "inner_corner",
             "lower_inner", "lower_mid", "lower_outer")
    eye_l = ("inner_corner", "upper_inner", "upper_mid", "upper_outer", "outer_corner",
             "lower_outer", "lower_mid", "lower_inner")
    return (
        tuple(f"contour_{i:02d}" for i in range(33))  # 0 = subject's right ear, 16 = chin, 32 = left ear
        + _side("right_brow", ("outer", "upper_outer", "upper_mid", "upper_inner", "inner",
                               "lower_inner", "lower_inner_mid", "lower_outer_mid", "lower_outer"))
        + _side("left_brow", ("inner", "upper_inner", "upper_mid", "upper_outer", "outer",
                              "lower_outer", "lower_outer_mid", "lower_inner_mid", "lower_inner"))
        + tuple(f"nose_bridge_{i}" for i in range(3)) + ("nose_tip",)
        + ("nose_base_right", "nose_base_right_mid", "nose_base_centre", "nose_base_left_mid", "nose_base_left")
        + _side("right_eye", eye_r) + _side("left_eye", eye_l)
        + _MOUTH20
        + ("right_pupil", "left_pupil")
    )


_WFLW98_PAIRS = (
    tuple((i, 32 - i) for i in range(16))  # contour
    + tuple((33 + i, 46 - i) for i in range(5)) + ((38, 50), (39, 49), (40, 48), (41, 47))  # brows
    + ((55, 59), (56, 58))  # nose base
    + tuple((60 + i, 72 - i) for i in range(5)) + ((65, 75), (66, 74), (67, 73))  # eyes
    + ((76, 82), (77, 81), (78, 80), (87, 83), (86, 84))  # outer lips
    + ((88, 92), (89, 91), (95, 93))  # inner lips
    + ((96, 97),)  # pupils
)

_COFW29_NAMES = (
    "right_brow_outer", "left_brow_outer", "right_brow_inner", "left_brow_inner",
    "right_brow_upper_mid", "right_brow_lower_mid", "left_brow_upper_mid", "left_brow_lower_mid",
    "right_eye_outer_corner", "left_eye_outer_corner", "right_eye_inner_corner", "left_eye_inner_corner",
    "right_eye_upper_mid", "right_eye_lower_mid", "left_eye_upper_mid", "left_eye_lower_mid",
    "right_pupil", "left_pupil", "nose_right", "nose_left", "nose_tip", "nose_base_centre",
    "mouth_right_corner", "mouth_left_corner", "upper_lip_top", "upper_lip_inner", "lower_lip_inner",
    "lower_lip_bottom", "chin",
)
_COFW29_PAIRS = ((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23))

_AFLW19_NAMES = (
    "right_brow_outer", "right_brow_centre", "right_brow_inner", "left_brow_inner", "left_brow_centre",
    "left_brow_outer", "right_eye_outer_corner", "right_eye_centre", "right_eye_inner_corner",
    "left_eye_inner_corner", "left_eye_centre", "left_eye_outer_corner", "nose_right", "nose_centre",
    "nose_left", "mouth_right_corner", "mouth_centre", "mouth_left_corner", "chin",
)
_AFLW19_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17))

_DLIB5_NAMES = ("left_eye_outer_corner", "left_eye_inner_corner", "right_eye_outer_corner",
                "right_eye_inner_corner", "nose_base")

_FIVE_NAMES = ("right_eye_centre", "left_eye_centre", "nose", "mouth_right_corner", "mouth_left_corner")

SCHEMES: dict[str, LandmarkScheme] = {
    s.name: s for s in (
        LandmarkScheme("ibug68", _ibug68_names(), _IBUG68_PAIRS, {
            "inter_ocular": ((36,), (45,)),
            "inter_pupil": (tuple(range(36, 42)), tuple(range(42, 48))),
        }),
        LandmarkScheme("wflw98", _wflw98_names(), _WFLW98_PAIRS, {"inter_ocular": ((60,), (72,))}),
        LandmarkScheme("cofw29", _COFW29_NAMES, _COFW29_PAIRS, {
            "inter_ocular": ((8,), (9,)),
            "inter_pupil": ((16,), (17,)),
        }),
        LandmarkScheme("aflw19", _AFLW19_NAMES, _AFLW19_PAIRS, {}),
        LandmarkScheme("five_point", _FIVE_NAMES, ((0, 1), (3, 4)), {"eye_centres_5pt": ((0,), (1,))}),
        LandmarkScheme("dlib5", _DLIB5_NAMES, ((2, 0), (3, 1)), {"inter_ocular": ((2,), (0,))}),
    )
}

#: WFLW-98 -> iBUG-68: the usual one-to-one pick (even contour points, the upper brow edges, nose, the six eye
#: points that iBUG has, both lip contours).
_WFLW98_TO_IBUG68 = (
    tuple(range(0, 33, 2)) + tuple(range(33, 38)) + tuple(range(42, 47)) + tuple(range(51, 60))
    + (60, 61, 63, 64, 65, 67) + (68, 69, 71, 72, 73, 75) + tuple(range(76, 96))
)

#: (source, target) -> one group of source indices per target point (target point = mean of its group).
MAPPINGS: dict[tuple[str, str], tuple[tuple[int, ...], ...]] = {
    ("ibug68", "five_point"): (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,)),
    ("ibug68", "dlib5"): ((45,), (42,), (36,), (39,), (33,)),
    ("wflw98", "ibug68"): tuple((i,) for i in _WFLW98_TO_IBUG68),
    ("aflw19", "five_point"): ((7,), (10,), (13,), (15,), (17,)),
    ("cofw29", "five_point"): ((16,), (17,), (20,), (22,), (23,)),
}


def _through_ibug68(dst: str) -> tuple[tuple[int, ...], ...]:
    """WFLW-98 -> ``dst`` through iBUG-68 (each 68 point is one WFLW point), so the 68 rules hold for WFLW."""
    return tuple(tuple(_WFLW98_TO_IBUG68[i] for i in group) for group in MAPPINGS[("ibug68", dst)])


MAPPINGS[("wflw98", "five_point")] = _through_ibug68("five_point")
MAPPINGS[("wflw98", "dlib5")] = _through_ibug68("dlib5")


def get_scheme(name: str) -> LandmarkScheme:
    """The scheme called ``name`` (ConfigError listing the known ones, with a suggestion, otherwise)."""
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise ConfigError(f'unknown landmark scheme "{name}"; known: {", ".join(SCHEMES)}.'
                          f"{did_you_mean(name, SCHEMES)}") from None


def map_points(points, src: str, dst: str) -> np.ndarray:
    """Map (N, K_src, 2) points of scheme ``src`` to (N, K_dst, 2) float64 points of ``dst`` by the group
    means of :data:`MAPPINGS`; a copy when ``src == dst``. ConfigError for an unknown scheme or pair."""
    source, target = get_scheme(src), get_scheme(dst)
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (source.n_points, 2):
        raise ConfigError(f"points of scheme {src} must have shape (N, {source.n_points}, 2); got {p.shape}")
    if src == dst:
        return p.copy()
    groups = MAPPINGS.get((src, dst))
    if groups is None:
        known = ", ".join(f"{a} -> {b}" for a, b in MAPPINGS)
        raise ConfigError(f"no landmark mapping from {src} to {target.name}; known mappings: {known}")
    return np.stack([p[:, list(g)].mean(axis=1) for g in groups], axis=1)
