"""The canonical expression taxonomy and each dataset's own label order.

Labels travel as canonical class names, never as indices. The canonical order is AffectNet's
(as Faceptor uses it): neutral, happiness, sadness, surprise, fear, disgust, anger, contempt.
Each dataset and each model head declares its own order as a tuple of canonical names; index
maps between any two orders are derived from the names (see ``index_map``), and the maps that
circulate in the field's code (spec/protocols.md §1.4) are reproduced by tests.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from facebench.errors import ConfigError, did_you_mean

CANONICAL_EXPRESSIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)
BASIC_EXPRESSIONS: tuple[str, ...] = CANONICAL_EXPRESSIONS[:7]

# Spellings seen in dataset folders and papers -> canonical name.
SYNONYMS: dict[str, str] = {
    "neutral": "neutral", "ne": "neutral", "neu": "neutral",
    "happiness": "happiness", "happy": "happiness", "ha": "happiness", "hap": "happiness", "joy": "happiness",
    "sadness": "sadness", "sad": "sadness", "sa": "sadness",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise", "sur": "surprise",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear", "fea": "fear",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust", "dis": "disgust",
    "anger": "anger", "angry": "anger", "an": "anger", "ang": "anger",
    "contempt": "contempt", "co": "contempt",
}

# Each dataset's native label order (index i of the native file -> canonical name).
LABEL_ORDERS: dict[str, tuple[str, ...]] = {
    # RAF-DB basic, after the universal `label - 1` (file labels are 1-based).
    "rafdb": ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"),
    # AffectNet native ids 0..7 (8-10 = none / uncertain / non-face are excluded by loaders).
    "affectnet": CANONICAL_EXPRESSIONS,
    # FERPlus vote columns / ids 0..7.
    "ferplus": ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
    # FER2013 `emotion` column 0..6.
    "fer2013": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
    # SFEW 2.0 / MMA alphabetical folders (Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise).
    "sfew": ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
    # CK+ Emotion files 0..7.
    "ckplus": ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
    # ExpW label.lst 0..6.
    "expw": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
    # JAFFE codes in file names.
    "jaffe": ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"),
}


def canonical_name(name: str, known: Iterable[str] = CANONICAL_EXPRESSIONS) -> str:
    """Map a spelling (case-insensitive) to its canonical class name, or raise with a suggestion."""
    key = str(name).strip().lower().replace(" ", "_")
    if key in SYNONYMS:
        return SYNONYMS[key]
    known = tuple(known)
    if key in known:
        return key
    raise ConfigError(
        f"Unknown expression class {name!r}.{did_you_mean(key, list(SYNONYMS) + list(known))} "
        f"Canonical classes: {', '.join(CANONICAL_EXPRESSIONS)}. Pass a name map to the dataset "
        f"(e.g. `name_map: {{{name}: neutral}}`) for other spellings."
    )


def index_map(source: Sequence[str], target: Sequence[str]) -> list[int]:
    """For each class of `source` order, its index in `target` order (-1 when absent)."""
    position = {name: i for i, name in enumerate(target)}
    return [position.get(name, -1) for name in source]

# The 40 CelebA binary attributes in the standard `list_attr_celeba.txt` order.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
