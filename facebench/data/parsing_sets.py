"""Face-parsing datasets in their native layouts: LaPa and CelebAMask-HQ.

Every split is a ``Dataset`` without class labels whose ``parsing`` (``ParsingLabels``) names the label
files of each sample, read lazily (a test split of CelebAMask-HQ holds 2,824 x 512 x 512 labels). Class names
are in id order with background first.

* **LaPa** (Liu et al., AAAI 2020): ``<split>/images/<name>.jpg``, ``<split>/labels/<name>.png`` (8-bit label
  maps, values 0..10 = background, skin, left/right brow, left/right eye, nose, upper lip, inner mouth, lower
  lip, hair; Faceptor's / FaRL's names ``face_lr_rr, lb, rb, le, re, nose, ul, im, ll, hair``) and
  ``<split>/landmarks/<name>.txt`` (the count 106, then 106 lines ``x y``). Splits train (18,168), val (2,000),
  test (2,000). The 106 points are kept (``ParsingLabels.points``, as given: LaPa's test transform aligns on
  points 104, 105, 54, 84, 90 -- eye centres, nose tip, mouth corners).
* **CelebAMask-HQ** (Lee et al., CVPR 2020): ``CelebA-HQ-img/<i>.jpg`` (1024 x 1024),
  ``CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png`` (512 x 512 binary masks, one per annotated part;
  a part absent from the image has no file), ``CelebA-HQ-to-CelebA-mapping.txt`` (``idx orig_idx orig_file``)
  and CelebA's ``list_eval_partition.txt`` (``<orig_file> 0|1|2``): the official split is CelebA's partition
  of each image's CelebA original (train 24,183 / val 2,993 / test 2,824). Parts are merged into 19 classes,
  later parts overwriting earlier ones, in one of two documented orders (``order:``):

  - ``faceptor`` (default): Faceptor's / FaRL's ``make_label`` order ``neck, skin, cloth, l_ear, r_ear, l_brow,
    r_brow, l_eye, r_eye, nose, mouth, l_lip, u_lip, hair, eye_g, hat, ear_r, neck_l`` = ids 1..18, named
    ``neck, face, cloth, rr, lr, rb, lb, re, le, nose, imouth, llip, ulip, hair, glass, hat, earr, neckl``
    (the names of Faceptor's ``parsing_celebam`` head, so its ids need no mapping);
  - ``official``: the release's ``g_mask.py`` order ``skin, nose, eye_g, l_eye, r_eye, l_brow, r_brow, l_ear,
    r_ear, mouth, u_lip, l_lip, hair, hat, ear_r, neck_l, neck, cloth`` = ids 1..18, named by the part names.

  The two orders give different maps where parts overlap (the later one wins), so results say which.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from facebench.data._native import NativeLoader, check_choice, find_child
from facebench.data.confine import joined_strings
from facebench.data.dataset import Dataset, ParsingLabels
from facebench.data.images import FileImages
from facebench.data.tanh_warp import LAPA_WARP_FACTOR, WarpedImages, WarpFrame, lapa_align_matrix
from facebench.errors import ConfigError, DataError

LAPA_CLASSES = ("background", "face_lr_rr", "lb", "rb", "le", "re", "nose", "ul", "im", "ll", "hair")
LAPA_POINTS = 106
LAPA_ALIGN_POINTS = (104, 105, 54, 84, 90)  # eye centres, nose tip, mouth corners (FaRL / Faceptor)

CELEBAM_ORDERS = {
    "faceptor": (("neck", "skin", "cloth", "l_ear", "r_ear", "l_brow", "r_brow", "l_eye", "r_eye", "nose",
                  "mouth", "l_lip", "u_lip", "hair", "eye_g", "hat", "ear_r", "neck_l"),
                 ("background", "neck", "face", "cloth", "rr", "lr", "rb", "lb", "re", "le", "nose", "imouth",
                  "llip", "ulip", "hair", "glass", "hat", "earr", "neckl")),
    "official": (("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
                  "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"),
                 ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                  "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")),
}
CELEBAM_MASK_SIZE = (512, 512)
CELEBAM_PER_FOLDER = 2000
CELEBA_PARTITION = {"train": 0, "val": 1, "test": 2}


class ParsingLoader(NativeLoader):
    """Base of the parsing loaders: ``table(split)`` gives ids, image paths, sources and points."""

    capabilities = frozenset()
    label_space = ()
    attribute_names = frozenset()

    def table(self, split: str) -> dict:
        raise NotImplementedError

    def summary(self, split: str) -> dict:
        split = self.resolve_split(split)
        self.check_labels(split)
        n = len(self.table(split)["ids"])
        return {"n": n, "counts": {}, "rows": n}

    def load(self, split: str) -> Dataset:
        split = self.resolve_split(split)
        self.check(split)
        t = self.table(split)
        frame = self.warp_frame(t)
        labels = ParsingLabels(self.classes(), t["sources"], t.get("mask_size"), points=t.get("points"), frame=frame)
        images = FileImages(t["images"])
        return Dataset(self.name, split, t["ids"], (), None, images if frame is None else WarpedImages(images, frame),
                       content_tag=self.fingerprint_tag(), parsing=labels)

    def warp_frame(self, table: dict) -> WarpFrame | None:
        """The test transform's per-sample warp (None: the whole image; see :class:`LaPa`)."""
        return None

    def classes(self) -> tuple[str, ...]:
        raise NotImplementedError


# -- LaPa ------------------------------------------------------------------------------------------------------
def read_lapa_points(path: Path) -> np.ndarray:
    """(106, 2) float64 from a LaPa landmark file: the count 106, then 106 ``x y`` pairs (whitespace-separated)."""
    try:
        values = [float(v) for v in Path(path).read_text().split()]
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read LaPa landmarks ({err}); expected the count {LAPA_POINTS} then "
                        f"{LAPA_POINTS} lines `x y`") from None
    if len(values) != 1 + 2 * LAPA_POINTS or values[0] != LAPA_POINTS:
        raise DataError(f"{path}: expected the count {LAPA_POINTS} then {LAPA_POINTS} `x y` pairs "
                        f"({1 + 2 * LAPA_POINTS} numbers); got {len(values)} numbers starting {values[:1]}")
    return np.asarray(values[1:], dtype=np.float64).reshape(LAPA_POINTS, 2)


class LaPa(ParsingLoader):
    """LaPa: 22,168 faces with 11-class label maps and 106 landmarks (train 18,168 / val 2,000 / test 2,000)"""

    name = "lapa"
    description = __doc__.splitlines()[0]
    citation = ("Y. Liu, H. Shi, H. Shen, Y. Si, X. Wang, T. Mei. A New Dataset and Boundary-Attention Semantic "
                "Segmentation for Face Parsing. AAAI 2020")
    license = "research use only (JDAI-CV/lapa-dataset)"
    how_to_get = "https://github.com/JDAI-CV/lapa-dataset (LaPa.tar.gz)"
    layout = (
        "  <path>/{train,val,test}/images/<name>.jpg\n"
        "  <path>/{train,val,test}/labels/<name>.png      8-bit label maps, 0 background .. 10 hair\n"
        "  <path>/{train,val,test}/landmarks/<name>.txt   `106` then 106 lines `x y`"
    )
    splits = ("train", "val", "test")
    default_dirname = "lapa"
    expected_sizes = {"train": 18168, "val": 2000, "test": 2000}
    ALIGNS = ("none", "tanh_warp")

    def __init__(self, path=None, data_root=None, *, align: str = "none", warp_size: int = 512, **options):
        """``align: tanh_warp`` reads each image through LaPa's test transform (FaRL / Faceptor): the similarity
        taking points 104, 105, 54, 84, 90 onto the template, then the tanh-warp (factor 0.8) into a
        ``warp_size`` square; the face_parsing protocol brings predictions back to each image through the same
        warp. ``none`` (default): the whole image."""
        if align != "none":  # set only when used: default fingerprints stay as they were
            options = {**options, "align": align, "warp_size": int(warp_size)}
        super().__init__(path, data_root, **options)
        if align not in self.ALIGNS:
            raise ConfigError(f"lapa: align={align!r} is not one of {', '.join(self.ALIGNS)}.")
        if isinstance(warp_size, bool) or not isinstance(warp_size, int) or not 16 <= warp_size <= 4096:
            raise ConfigError(f"lapa: warp_size must be an integer in [16, 4096], got {warp_size!r}.")
        self.align, self.warp_size = align, int(warp_size)

    def warp_frame(self, table: dict) -> WarpFrame | None:
        if self.align == "none":
            return None
        return WarpFrame(np.stack([lapa_align_matrix(p, self.warp_size) for p in table["points"]]), self.warp_size,
                         LAPA_WARP_FACTOR)

    def classes(self):
        return LAPA_CLASSES

    def _dirs(self, split: str) -> tuple[Path, Path, Path]:
        base = find_child(self.root, split)
        return tuple(find_child(base, d) for d in ("images", "labels", "landmarks"))

    def label_paths(self, split):
        return list(self._dirs(self.resolve_split(split))[1:])

    def required_paths(self, split):
        return list(self._dirs(self.resolve_split(split)))

    def table(self, split: str) -> dict:
        images, labels, marks = self._dirs(split)
        with os.scandir(labels) as it:
            names = sorted(e.name[:-4] for e in it if e.name.lower().endswith(".png") and e.is_file())
        if not names:
            raise self._not_found(f"no label maps (*.png) in {labels}")
        missing = [n for n in names if not (images / f"{n}.jpg").is_file() or not (marks / f"{n}.txt").is_file()]
        if missing:
            raise self._not_found(f"{len(missing)} of {len(names)} {split} label maps have no image "
                                  f"(images/<name>.jpg) or landmark file (landmarks/<name>.txt); first: {missing[0]}")
        points = np.stack([read_lapa_points(marks / f"{n}.txt") for n in names])
        return {"ids": np.asarray(names), "images": joined_strings(images, [f"{n}.jpg" for n in names]),
                "sources": [((-1, str(labels / f"{n}.png")),) for n in names], "points": points}


# -- CelebAMask-HQ ----------------------------------------------------------------------------------------------
class CelebAMaskHQ(ParsingLoader):
    """CelebAMask-HQ: 30,000 CelebA-HQ faces with 19-class part masks; CelebA's split (24,183 / 2,993 / 2,824)"""

    name = "celebamask-hq"
    description = __doc__.splitlines()[0]
    citation = ("C.-H. Lee, Z. Liu, L. Wu, P. Luo. MaskGAN: Towards Diverse and Interactive Facial Image "
                "Manipulation. CVPR 2020")
    license = "non-commercial research and educational use only (CelebA's agreement)"
    how_to_get = ("https://github.com/switchablenorms/CelebAMask-HQ (CelebAMask-HQ.zip); list_eval_partition.txt "
                  "from CelebA (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, Eval/)")
    layout = (
        "  <path>/CelebA-HQ-img/<i>.jpg                            1024 x 1024 images, i = 0..29999\n"
        "  <path>/CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png   512 x 512 part masks\n"
        "  <path>/CelebA-HQ-to-CelebA-mapping.txt                 `idx orig_idx orig_file`\n"
        "  <path>/list_eval_partition.txt                          CelebA's `<orig_file> 0|1|2` (train/val/test)\n"
        "  options: order faceptor|official (the merge order of the parts), partition_file PATH"
    )
    splits = ("train", "val", "test")
    default_dirname = "CelebAMask-HQ"
    expected_sizes = {"train": 24183, "val": 2993, "test": 2824}
    mapping_name: ClassVar[str] = "CelebA-HQ-to-CelebA-mapping.txt"

    def __init__(self, path=None, data_root=None, *, order: str = "faceptor", partition_file: str | None = None,
                 **options):
        super().__init__(path, data_root, order=order, partition_file=partition_file, **options)
        check_choice(self.name, "order", order, tuple(CELEBAM_ORDERS))
        self.order = order
        self.partition_file = partition_file

    def classes(self):
        return CELEBAM_ORDERS[self.order][1]

    def _partition_path(self) -> Path:
        if self.partition_file:
            p = Path(self.partition_file).expanduser()
            return p if p.is_absolute() else self.root / p
        return self.root / "list_eval_partition.txt"

    def label_paths(self, split):
        return [self.root / self.mapping_name, self._partition_path(), self.root / "CelebAMask-HQ-mask-anno"]

    def required_paths(self, split):
        return [*self.label_paths(split), self.root / "CelebA-HQ-img"]

    def split_ids(self, split: str) -> list[int]:
        """The CelebA-HQ indices of ``split``: each index's CelebA file (the mapping) in CelebA's partition."""
        hq_of = {}
        for line in (self.root / self.mapping_name).read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0].isdigit():
                hq_of[parts[2]] = int(parts[0])
        if not hq_of:
            raise DataError(f"{self.root / self.mapping_name}: no `idx orig_idx orig_file` rows")
        want, ids = CELEBA_PARTITION[split], []
        for line in self._partition_path().read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in hq_of and parts[1].lstrip("-").isdigit() and int(parts[1]) == want:
                ids.append(hq_of[parts[0]])
        return sorted(ids)

    def table(self, split: str) -> dict:
        ids = self.split_ids(split)
        anno = self.root / "CelebAMask-HQ-mask-anno"
        parts, _ = CELEBAM_ORDERS[self.order]
        listed: dict[int, set] = {}
        sources = []
        for i in ids:
            k = i // CELEBAM_PER_FOLDER
            if k not in listed:
                folder = anno / str(k)
                listed[k] = set(os.listdir(folder)) if folder.is_dir() else set()
            stem = f"{i:05d}_"
            sources.append(tuple((c + 1, str(anno / str(k) / f"{stem}{p}.png")) for c, p in enumerate(parts)
                                 if f"{stem}{p}.png" in listed[k]))
        present = set(os.listdir(self.root / "CelebA-HQ-img"))
        absent = [i for i in ids if f"{i}.jpg" not in present]
        if absent:
            raise self._not_found(f"{len(absent)} of {len(ids)} {split} images are absent from CelebA-HQ-img/ "
                                  f"(first: {absent[0]}.jpg)")
        if not any(sources):
            raise self._not_found(f"no part mask of the {split} split in {anno}/<i // 2000>/<i:05d>_<part>.png")
        images = joined_strings(self.root / "CelebA-HQ-img", [f"{i}.jpg" for i in ids])
        return {"ids": np.asarray([str(i) for i in ids]), "images": images, "sources": sources,
                "mask_size": CELEBAM_MASK_SIZE}
