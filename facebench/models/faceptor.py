"""``faceptor``: Faceptor (Qin et al., ECCV 2024), a clean PyTorch re-implementation that loads the
authors' checkpoints unchanged (``shared/spec/faceptor.md`` §1).

Loading (spec §1.9): ``torch.load(PATH)["state_dict"]``; strip ``module.``; drop, knowingly, the keys
no output uses -- ``losses_module.*`` (the recognition CosFace class centres), the tied duplicate
``*.mask_map.1.ln.*`` and the backbone's ``ln_post.*`` / ``proj`` (never used by any task); remap
the prefixes onto ``FaceptorNet`` and load strictly. The variant is read from the keys: the task
set from ``decoder.query_feat.<task>`` (Base: 7 tasks, Full: 13), stage 2 (Layer-Attention) from
``decoder.new_level_embed``. Widths, layer counts, FFN sizes, query counts and the positional grid
come from tensor shapes; the few sizes the state dict cannot tell (ViT heads, decoder heads, level
indices, input size) come from ``config=PATH`` (JSON) or default to the released model's values.

Heads (all on the 112x112 group-0 input, RGB, (x/255 - 0.5)/0.5):

* ``expression`` (= the ``head=`` argument's task, default RAF-DB), ``expression_rafdb``,
  ``expression_affectnet``, ``expression_ferplus`` (Full only): 7 logits in AffectNet order;
* ``age`` (``age_head=morph2|utkface``, default morph2), ``age_morph2``, ``age_utkface`` (Full only):
  kind "regression", the expected age sum_k k p_k with p = sigmoid(101 logits) L1-normalised;
* ``attributes``: kind "binary", 40 CelebA logits in ``list_attr_celeba`` order;
* features: the raw 512-d recognition embedding (no flip-sum, no L2 normalisation).

Parsing and landmarks need the 512x512 group-1 input with FaRL normalisation and per-image warps, which
the 112 input spec cannot express; they are methods (``faceptor_dense``):
``adapter.landmarks(images, boxes, dataset="300w"|"cofw"|"wflw"|"aflw")`` gives (N, K, 2) original
pixel coordinates (continuous: pixel i spans [i, i + 1]; subtract 0.5 for facebench's 0-based pixel
centres), ``adapter.parsing(images, dataset="celebam"|"lapa")`` label maps at each image's original size;
``adapter.dense_heads`` lists what the checkpoint has.

Landmarks through the engine (``--model-args input=dense``): the adapter's input is then the group-1 frame
(S = the dense input size, 512 for the released models; RGB, FaRL mean/std, torch bilinear resize without
antialiasing, as the authors' warp) and its heads are ``landmarks_300w`` / ``landmarks_cofw`` /
``landmarks_wflw`` / ``landmarks_aflw`` (those the checkpoint has) of kind "landmarks", schemes ibug68 /
cofw29 / wflw98 / aflw19, point names from ``landmark_schemes``. The input frame the engine gives (the image,
or the dataset's crop box, resized to S) is taken as Faceptor's crop: ``crop_matrix`` of the frame's own
box (0, 0, S, S) with ``scale_mu`` (default 1.0: no zoom). The authors' 0.8 zoom-out of a box is the
landmark loaders' ``crop: box, margin: 0.125`` (1 + 2m = 1 / 0.8), with real pixels around the box, up to
the crop's rounding to whole pixels and its clamping at the image edge (the authors pad black there);
``scale_mu=0.8`` instead zooms out inside the frame, black around it. ``decode_landmarks`` of the head's
normalised points, minus 0.5, gives (B, K, 2) points in the input frame's 0-based pixel centres (with
``scale_mu`` 1: norm * S - 0.5, the authors' ``denormalize_points``). The boxes are the dataset's (WFLW's
rectangle, AFLW-19's square) or the ground truth's (``crop: landmarks``), not the authors' 300-W/WFLW
boxes (their CSV's centre +- 100 scale), so paper comparisons need that caveat. The group-0 heads
(expression, age, attributes, features) are not offered with ``input=dense``.

Parsing through the engine (``input=dense`` too): heads ``parsing_celebam`` / ``parsing_lapa`` of kind
"parsing" give (B, S, S) uint8 label maps in the input frame (``frame_label_map``); the face_parsing
protocol maps them to each ground truth's size by nearest neighbour, or, for LaPa read with
``align: tanh_warp``, back through the inverse of the warp. Differences from ``adapter.parsing`` (which
resizes the logits bilinearly to each image's own size before the argmax): the argmax is taken in the S x S
frame and the label map is then resized by nearest neighbour.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facebench.data.landmark_schemes import get_scheme
from facebench.data.preprocess import Preprocessing
from facebench.data.taxonomy import CELEBA_ATTRIBUTES, LABEL_ORDERS
from facebench.models._config import load_config_json as _load_config_json
from facebench.errors import ConfigError, ModelError
from facebench.models.base import Head, ModelAdapter

EXPRESSION_LABELS: tuple[str, ...] = LABEL_ORDERS["affectnet"][:7]
CHECKPOINT_HINT = (
    "Faceptor expects the authors' `checkpoint_rank0_iter_50000.pth.tar` (a torch.save dict whose "
    "'state_dict' has DDP `module.`-prefixed keys), published in the Google Drive folder "
    "https://drive.google.com/drive/folders/1dMuoto2JFGjek74qa-6twQygQcfqLalL linked from the README of "
    "https://github.com/lxq1000/Faceptor (output/faceptor/stage_1/train_recog_age_biattr_affect_parsing_align"
    "[_plus]/<date>/checkpoints/ for Faceptor-Base / Faceptor-Full). Pass it as --model-args checkpoint=PATH."
)
EXPRESSION_TASKS = {"rafdb": "affect_rafdb", "affectnet": "affect_affectnet", "ferplus": "affect_ferplus"}
AGE_TASKS = {"morph2": "age_morph2", "utkface": "age_utkface"}
ATTRIBUTE_TASK = "biattr_celeba"

# Keys no output uses, dropped on purpose (after stripping ``module.``).
DROPPED_KEYS = (
    re.compile(r"^losses_module\."),
    re.compile(r"\.mask_map\.1\.ln\.(weight|bias)$"),
    re.compile(r"^backbone_module\.visual\.(proj|ln_post\.weight|ln_post\.bias)$"),
)
PREFIXES = (
    ("backbone_module.visual.", "backbone."),
    ("heads_module.decoder.", "decoder."),
    ("heads_module.interpreters.feature_v2.", "recog."),
    ("heads_module.interpreters.value.", "value."),
    ("heads_module.interpreters.map_v2.", "map."),
)
# Defaults for what the state dict cannot tell: the released model's values (spec §1.4, config.json).
REAL_DEFAULTS = {"vit_head_dim": 64, "dec_nheads": 8, "levels": (11,), "new_levels": (1, 3, 5, 7, 9),
                 "input_size": 112}  # group-1 (dense) input: 512


# -- checkpoint reading ---------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The raw state dict (with ``module.`` stripped) of a Faceptor checkpoint file."""
    if not path:
        raise ModelError(f"faceptor needs a checkpoint. {CHECKPOINT_HINT}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"faceptor checkpoint not found at {path}. {CHECKPOINT_HINT}")
    try:
        try:  # memory-map: the real file also holds a large AdamW state that is never used
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) torch.save format cannot be memory-mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a wrong file
        raise ModelError(f"{path} could not be read as a torch checkpoint ({err}). {CHECKPOINT_HINT}") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        keys = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ModelError(f"{path} has no 'state_dict' entry (top level: {keys}). {CHECKPOINT_HINT}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def remap_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Authors' keys -> FaceptorNet keys. Returns (remapped, dropped keys, keys with no known prefix)."""
    out, dropped, unknown = {}, [], []
    for key, value in state.items():
        if any(p.search(key) for p in DROPPED_KEYS):
            dropped.append(key)
            continue
        for old, new in PREFIXES:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            unknown.append(key)
    return out, dropped, unknown


def authors_state_dict(net) -> dict[str, torch.Tensor]:
    """FaceptorNet state -> the authors' DDP checkpoint layout (``module.``-prefixed), including the keys
    the loader drops on purpose (unused projection, duplicated norm, recognition classifier).

    The inverse of ``remap_state_dict``; used to build checkpoints in the real file structure for tests
    (``torch.save({"step": ..., "state_dict": authors_state_dict(net)}, path)``).
    """
    out = {}
    for key, value in net.state_dict().items():
        match = next(((o, n) for o, n in PREFIXES if key.startswith(n)), None)
        if match is None:
            raise ModelError(f"no authors' prefix for {key!r}")
        old, new = match
        out["module." + old + key[len(new):]] = value
    width = net.cfg.vit_width
    out["module.backbone_module.visual.proj"] = torch.randn(width, net.cfg.recog_out)
    out["module.backbone_module.visual.ln_post.weight"] = torch.ones(width)
    out["module.backbone_module.visual.ln_post.bias"] = torch.zeros(width)
    tied = "module.heads_module.interpreters.map_v2.mask_map.1."
    if tied + "weight" in out:
        out[tied + "ln.weight"], out[tied + "ln.bias"] = out[tied + "weight"], out[tied + "bias"]
    out["module.losses_module.losses.recog_ms1mv3.classifier"] = torch.randn(5, net.cfg.recog_out)
    return out


# -- sizes ----------------------------------------------------------------------------------------
def load_config_json(path: str | Path | None) -> dict[str, Any]:
    """Flat view of a faceptor config JSON (see ``facebench.models._config``)."""
    return _load_config_json(path, "faceptor")


def _count(state: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state for m in [pat.match(k)] if m}
    return max(idx) + 1 if idx else 0


def _shape(state: dict, key: str) -> tuple[int, ...]:
    if key not in state:
        raise ModelError(f"faceptor checkpoint lacks {key!r}, so it is not a Faceptor (Base/Full/stage-2) "
                         f"checkpoint. {CHECKPOINT_HINT}")
    return tuple(state[key].shape)


def resolve_sizes(state: dict[str, torch.Tensor], config: dict[str, Any]):
    """FaceptorConfig from the remapped state dict's shapes plus ``config`` for what shapes cannot tell.
    Returns (FaceptorConfig, input size)."""
    from facebench.models.faceptor_net import FaceptorConfig

    width = _shape(state, "backbone.conv1.weight")[0]
    hidden = _shape(state, "decoder.level_embed.weight")[1]
    variants = {k for v in config.values() if isinstance(v, dict) for k in v if k != "from_state_dict"}

    def matches(variant: str) -> bool:
        def val(name):
            v = config.get(name)
            return v.get(variant) if isinstance(v, dict) else None
        return val("vit_width") == width and val("dec_hidden_dim") == hidden

    chosen = [v for v in sorted(variants) if matches(v)]
    variant = chosen[0] if chosen else None

    def get(name: str, default=None):
        v = config.get(name, None)
        if isinstance(v, dict):
            if variant is None or variant not in v:
                return default
            v = v[variant]
        return default if v is None else v

    vit_heads = get("vit_heads")
    if vit_heads is None:
        head_dim = get("vit_head_dim", REAL_DEFAULTS["vit_head_dim"])
        if width % head_dim:
            raise ModelError(f"faceptor: ViT width {width} is not a multiple of the head size {head_dim}; "
                             f"give the number of heads in config=PATH (key 'vit_heads').")
        vit_heads = width // head_dim
    dec_heads = get("dec_nheads", REAL_DEFAULTS["dec_nheads"])
    if width % vit_heads or hidden % dec_heads:
        raise ModelError(f"faceptor: widths {width}/{hidden} are not divisible by the head counts "
                         f"{vit_heads}/{dec_heads}; fix 'vit_heads' / 'dec_nheads' in config=PATH.")
    levels = tuple(get("dec_levels", get("levels", REAL_DEFAULTS["levels"])))
    n_new = _count(state, "decoder.new_input_proj.")
    new_levels: tuple[int, ...] = ()
    if n_new:
        new_levels = tuple(get("dec_new_levels_stage2", get("new_levels", REAL_DEFAULTS["new_levels"])))
        if len(new_levels) != n_new:
            raise ModelError(f"faceptor: the checkpoint has {n_new} stage-2 level projections but the config "
                             f"names {len(new_levels)} levels {list(new_levels)}.")
    tasks = {}
    for key, value in state.items():
        m = re.fullmatch(r"decoder\.query_feat\.(\w+)\.weight", key)
        if m:
            tasks[m.group(1)] = int(value.shape[0])
    if not tasks:
        raise ModelError(f"faceptor checkpoint has no decoder.query_feat.<task> tables. {CHECKPOINT_HINT}")
    pos_rows = _shape(state, "backbone.positional_embedding")[0] - 1
    grid = int(round(math.sqrt(pos_rows)))
    if grid * grid != pos_rows:
        raise ModelError(f"faceptor: positional_embedding has {pos_rows + 1} rows, not a square grid + 1.")
    cfg = FaceptorConfig(
        vit_width=width,
        vit_layers=_count(state, "backbone.transformer.resblocks."),
        vit_heads=int(vit_heads),
        vit_patch=_shape(state, "backbone.conv1.weight")[-1],
        vit_mlp_hidden=_shape(state, "backbone.transformer.resblocks.0.mlp.c_fc.weight")[0],
        vit_pos_grid=grid,
        dec_hidden=hidden,
        dec_heads=int(dec_heads),
        dec_ffn=_shape(state, "decoder.transformer_ffn_layers.0.linear1.weight")[0],
        dec_layers=_count(state, "decoder.transformer_ffn_layers."),
        levels=levels,
        new_levels=new_levels,
        tasks=tasks,
        recog_in=_shape(state, "recog.head.0.weight")[1],
        recog_out=_shape(state, "recog.head.2.weight")[0],
        map_hidden=_shape(state, "map.mask_map.0.weight")[1],
        map_mlp_layers=_count(state, "map.mask_embed.layers."),
        dense_input_size=int(get("input_size_group_1", 512)),
    )
    input_size = int(get("input_size_group_0", REAL_DEFAULTS["input_size"]))
    return cfg, input_size


def build_faceptor(checkpoint: str | Path, config: str | Path | None = None):
    """(FaceptorNet in eval mode with the checkpoint loaded strictly, input size of group 0)."""
    from facebench.models.faceptor_net import FaceptorNet

    raw = read_checkpoint(checkpoint)
    state, _dropped, unknown = remap_state_dict(raw)
    if unknown:
        raise ModelError(f"faceptor checkpoint {checkpoint} has {len(unknown)} unexpected keys (e.g. "
                         f"{unknown[:5]}) outside backbone_module / heads_module / losses_module. {CHECKPOINT_HINT}")
    cfg, input_size = resolve_sizes(state, load_config_json(config))
    try:
        net = FaceptorNet(cfg)
    except ModelError as err:
        raise ModelError(f"faceptor checkpoint {checkpoint}: {err}") from None
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        detail = " ".join(str(err).split())
        raise ModelError(f"faceptor checkpoint {checkpoint} does not match the Faceptor architecture: {detail} "
                         f"{CHECKPOINT_HINT}") from None
    if missing or unexpected:
        raise ModelError(
            f"faceptor checkpoint {checkpoint} does not match the Faceptor architecture: missing keys "
            f"{list(missing)[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)}), unexpected keys "
            f"{list(unexpected)[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)}). {CHECKPOINT_HINT}")
    net.eval()
    return net, input_size


def _variant_name(tasks: dict[str, int], stage2: bool) -> str:
    base = "Full" if "affect_ferplus" in tasks else "Base"
    return f"stage-2 ({base} tasks)" if stage2 else base


PREPROCESSING = Preprocessing(
    source="Faceptor (lxq1000/Faceptor, shared/spec/faceptor.md 1.5), group-0 tasks: PIL .convert('RGB'), "
           "FP/core/data/transform/attribute_analysis_transform.py Resize([112, 112]) (PIL bilinear), ToTensor, "
           "Normalize(0.5, 0.5)",
    crop="no detection or alignment for the group-0 tasks: the dataset's stored face crop is resized, as "
         "facebench does",
    resize="pillow", interpolation="bilinear",
)


DENSE_PREPROCESSING = Preprocessing(
    source="Faceptor (lxq1000/Faceptor, shared/spec/faceptor.md 1.5), group-1 landmarks: align_test_transform "
           "(crop of the face box to S x S, zoom scale_mu about the centre, bilinear warp, FaRL mean/std)",
    crop="the engine's input frame is the crop (the whole image, or the dataset's crop box with its margin: "
         "landmark loaders' crop: box|landmarks); a scale_mu below 1 zooms out inside the frame (black around)",
    resize="torch", interpolation="bilinear", antialias=False,
)
#: Faceptor's landmark tasks and the landmark schemes their points follow (the datasets' file orders).
LANDMARK_SCHEMES = {"300w": "ibug68", "cofw": "cofw29", "wflw": "wflw98", "aflw": "aflw19"}
INPUTS = ("face", "dense")


def frame_landmarks(norm: torch.Tensor, size: int, scale_mu: float) -> torch.Tensor:
    """(B, K, 2) normalised head points -> input-frame points, 0-based pixel centres: ``decode_landmarks``
    through ``crop_matrix`` of the whole frame (box (0, 0, S, S), continuous), minus 0.5."""
    from facebench.models.faceptor_dense import crop_matrix, decode_landmarks

    matrix = crop_matrix((0, 0, size, size), size, scale_mu)
    pts = [decode_landmarks(p, matrix, size) - 0.5 for p in norm.double().cpu().numpy()]
    return torch.from_numpy(np.stack(pts) if pts else np.zeros((0, norm.shape[1], 2))).float()


def frame_label_map(logits: torch.Tensor, out_size: tuple[int, int], size: int) -> torch.Tensor:
    """(B, Q, h, w) parsing logits -> (B, S, S) uint8 class ids in the S x S input frame: ``ParsingOutput``
    (bilinear to ``out_size``), bilinear to S when ``out_size`` differs, argmax over the classes."""
    import torch.nn.functional as F

    from facebench.models.faceptor_net import parsing_output

    x = parsing_output(logits, out_size).permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.argmax(dim=1).to(torch.uint8)


def zoom_frame(batch: torch.Tensor, size: int, scale_mu: float) -> torch.Tensor:
    """Faceptor's ``scale_mu`` zoom of FaRL-normalised (B, 3, S, S) frames about their centre: un-normalised
    to [0, 1], warped with ``crop_matrix((0, 0, S, S), S, scale_mu)`` (bilinear, black outside, as the
    authors' border 0), normalised again."""
    from facebench.models.faceptor_dense import FARL_MEAN, FARL_STD, crop_matrix, farl_normalise

    mean = torch.tensor(FARL_MEAN, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(FARL_STD, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    inv = np.linalg.inv(crop_matrix((0, 0, size, size), size, scale_mu))
    u, v = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    src_x, src_y = (inv[0, 0] * u + inv[0, 2]), (inv[1, 1] * v + inv[1, 2])  # continuous frame coordinates
    grid = torch.from_numpy(np.stack([2 * src_x / size - 1, 2 * src_y / size - 1], axis=-1)).to(batch)
    out = F.grid_sample(batch * std + mean, grid.unsqueeze(0).expand(len(batch), -1, -1, -1), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return farl_normalise(out)


class FaceptorAdapter(ModelAdapter):
    """Faceptor (ECCV 2024) FaRL ViT-B/16 + task-query decoder from the authors' checkpoint: expression, age, 40 attributes, 512-d embedding"""

    name = "faceptor"
    preprocessing = PREPROCESSING

    def __init__(self, checkpoint: str | None = None, head: str = "rafdb", config: str | None = None,
                 age_head: str = "morph2", input: str = "face", scale_mu: float = 1.0):
        dense = _check_input(input, scale_mu)
        extra = {"input": input, "scale_mu": float(scale_mu)} if dense else {}  # default fingerprints unchanged
        super().__init__(checkpoint=checkpoint, head=head, config=config, age_head=age_head, **extra)
        head, age_head = str(head).lower(), str(age_head).lower()
        if head not in EXPRESSION_TASKS:
            raise ModelError(f"faceptor: head={head!r} is not one of {', '.join(EXPRESSION_TASKS)}.")
        if age_head not in AGE_TASKS:
            raise ModelError(f"faceptor: age_head={age_head!r} is not one of {', '.join(AGE_TASKS)}.")
        self.module, size = build_faceptor(checkpoint, config)
        tasks = self.module.cfg.tasks
        self.variant = _variant_name(tasks, bool(self.module.cfg.new_levels))
        self.scale_mu, self.dense = float(scale_mu), dense
        if dense:
            self._dense_heads(checkpoint)
            return
        self.input_spec = self.preprocessing.spec(size=(size, size), channels=3, color_order="RGB",
                                                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        # head name -> (decoder task, decode)
        self._tasks: dict[str, tuple[str, str]] = {}
        self.heads = {}
        for short, task in EXPRESSION_TASKS.items():
            if task in tasks:
                self._add(f"expression_{short}", task, "logits", EXPRESSION_LABELS, "classification")
        if EXPRESSION_TASKS[head] not in tasks:
            fallback = "affectnet"
            if EXPRESSION_TASKS[fallback] not in tasks:
                raise ModelError(f"faceptor checkpoint {checkpoint} has no expression task (query tables: "
                                 f"{', '.join(tasks)}). {CHECKPOINT_HINT}")
            warnings.warn(f"faceptor {self.variant} checkpoint has no {EXPRESSION_TASKS[head]} head; "
                          f"using {EXPRESSION_TASKS[fallback]} for `expression`.", stacklevel=2)
            head = fallback
        self._add("expression", EXPRESSION_TASKS[head], "logits", EXPRESSION_LABELS, "classification")
        for short, task in AGE_TASKS.items():
            if task in tasks:
                self._add(f"age_{short}", task, "age", ("age",), "regression")
        if AGE_TASKS[age_head] in tasks:
            self._add("age", AGE_TASKS[age_head], "age", ("age",), "regression")
        elif "age_morph2" in tasks:
            warnings.warn(f"faceptor {self.variant} checkpoint has no {AGE_TASKS[age_head]} head; "
                          f"using age_morph2 for `age`.", stacklevel=2)
            self._add("age", "age_morph2", "age", ("age",), "regression")
        if ATTRIBUTE_TASK in tasks:
            self._add("attributes", ATTRIBUTE_TASK, "logits", CELEBA_ATTRIBUTES, "binary")
        for name, (task, decode) in self._tasks.items():
            q = tasks[task]
            n = len(self.heads[name].labels)
            if decode != "age" and q != n:
                raise ModelError(f"faceptor: task {task} has {q} queries in the checkpoint; the {name!r} head "
                                 f"needs {n}. {CHECKPOINT_HINT}")
        self.default_head = "expression"
        self.feature_dim = self.module.cfg.recog_out

    def _dense_heads(self, checkpoint) -> None:
        """``input=dense``: the group-1 frame, one landmark head per align task and one parsing head per
        parsing task of the checkpoint."""
        from facebench.models.faceptor_dense import FARL_MEAN, FARL_STD, PARSING_LABELS

        size = self.module.cfg.dense_input_size
        self.preprocessing = DENSE_PREPROCESSING
        self.input_spec = DENSE_PREPROCESSING.spec(size=(size, size), channels=3, color_order="RGB",
                                                   mean=FARL_MEAN, std=FARL_STD)
        self._tasks, self.heads = {}, {}
        for name, scheme in LANDMARK_SCHEMES.items():
            task = f"align_{name}"
            if task in self.module.cfg.tasks:
                self._tasks[f"landmarks_{name}"] = (task, "landmarks")
                self.heads[f"landmarks_{name}"] = Head(f"landmarks_{name}", get_scheme(scheme).point_names,
                                                       "landmarks", scheme)
        for name, labels in PARSING_LABELS.items():
            if f"parsing_{name}" in self.module.cfg.tasks:
                self._tasks[f"parsing_{name}"] = (f"parsing_{name}", "parsing")
                self.heads[f"parsing_{name}"] = Head(f"parsing_{name}", labels, "parsing", size=(size, size))
        if not self.heads:
            raise ModelError(f"faceptor checkpoint {checkpoint} has no landmark (align_*) or parsing task, so "
                             f"input=dense has no head; use the default input=face. {CHECKPOINT_HINT}")
        self.default_head = "landmarks_300w" if "landmarks_300w" in self.heads else next(iter(self.heads))
        self.feature_dim = None

    def model_files(self):
        """The checkpoint and config files (their bytes; the loaded weights are hashed too)."""
        return {"checkpoint": self.settings.get("checkpoint"), "config": self.settings.get("config")}

    @property
    def dense_heads(self) -> dict[str, tuple[str, ...]]:
        """Dense heads the checkpoint has: ``{"landmarks": (datasets...), "parsing": (datasets...)}``."""
        tasks = self.module.cfg.tasks
        return {"landmarks": tuple(t[len("align_"):] for t in tasks if t.startswith("align_")),
                "parsing": tuple(t[len("parsing_"):] for t in tasks if t.startswith("parsing_"))}

    def landmarks(self, images, boxes, dataset: str = "300w", scale_mu: float | None = None,
                  batch_size: int = 16):
        """(N, K, 2) landmarks in original pixel xy from RGB uint8 images and boxes (y1, x1, y2, x2),
        with the authors' crop (``faceptor_dense.crop_matrix``) and its inverse."""
        from facebench.models.faceptor_dense import predict_landmarks

        return predict_landmarks(self.module, images, boxes, dataset, self.module.cfg.dense_input_size,
                                 scale_mu, batch_size)

    def parsing(self, images, dataset: str = "celebam", frame=None):
        """Parsing label maps (H, W) at each image's original size: the whole-image frame (CelebAMask-HQ), or
        with ``frame`` (a ``facebench.data.tanh_warp.WarpFrame``, e.g. ``lapa`` read with ``align: tanh_warp``:
        ``dataset.parsing.frame``) LaPa's test transform, predictions brought back by its inverse."""
        from facebench.models.faceptor_dense import predict_parsing

        return predict_parsing(self.module, images, dataset, self.module.cfg.dense_input_size, frame)

    def _add(self, name: str, task: str, decode: str, labels: tuple[str, ...], kind: str) -> None:
        self._tasks[name] = (task, decode)
        self.heads[name] = Head(name, tuple(labels), kind)

    def forward(self, batch, heads, features):
        from facebench.models.faceptor_net import age_expectation

        if self.dense:
            return self._forward_dense(batch, heads, features)
        tasks = tuple(dict.fromkeys(self._tasks[h][0] for h in heads))
        raw = self.module(batch, tasks=tasks, recognition=features)
        out = {}
        for h in heads:
            task, decode = self._tasks[h]
            out[h] = age_expectation(raw[task]).unsqueeze(1) if decode == "age" else raw[task]
        if features:
            out["features"] = raw["recog"]
        return out

    def _forward_dense(self, batch, heads, features):
        """Dense heads on the group-1 frame: landmarks (B, K, 2) points in the input frame (see the module
        docstring); parsing (B, S, S) uint8 label maps in the input frame: ``ParsingOutput`` (the logits resized
        bilinearly to the parsing output size), resized bilinearly to S when that differs, argmax."""
        from facebench.models.faceptor_net import align_output

        if features:
            raise ConfigError("faceptor with input=dense gives landmarks and parsing only (no features); use "
                              "input=face.")
        size = self.module.cfg.dense_input_size
        parsing = [h for h in heads if self._tasks[h][1] == "parsing"]
        if parsing and self.scale_mu != 1.0:
            raise ConfigError(f"faceptor: scale_mu={self.scale_mu} zooms the landmark heads' frame; the parsing heads "
                              f"({', '.join(parsing)}) need scale_mu=1 (run them in a task of their own).")
        x = batch if self.scale_mu == 1.0 else zoom_frame(batch, size, self.scale_mu)
        tasks = tuple(dict.fromkeys(self._tasks[h][0] for h in heads))
        raw = self.module(x, tasks=tasks)
        out = {}
        for h in heads:
            if self._tasks[h][1] == "parsing":
                out[h] = frame_label_map(raw[self._tasks[h][0]].float(), self.module.cfg.parsing_out_size, size)
                continue
            norm = align_output(raw[self._tasks[h][0]].float(), self.module.cfg.softargmax_clamp)["landmark"]
            out[h] = frame_landmarks(norm, size, self.scale_mu).to(batch.device)
        return out


def _check_input(input: str, scale_mu) -> bool:
    """Whether ``input`` selects the dense (group-1) frame; ``scale_mu`` a number in (0, 2], only with it."""
    if input not in INPUTS:
        raise ConfigError(f"faceptor: input={input!r} is not one of {', '.join(INPUTS)} (face: the 112 group-0 "
                          f"heads; dense: the landmark heads on the group-1 frame).")
    if isinstance(scale_mu, bool) or not isinstance(scale_mu, (int, float)) or not 0 < scale_mu <= 2:
        raise ConfigError(f"faceptor: scale_mu must be a number in (0, 2] (Faceptor's zoom; 0.8 zooms out), got "
                          f"{scale_mu!r}.")
    if input == "face" and scale_mu != 1.0:
        raise ConfigError("faceptor: scale_mu applies to the landmark heads; set input=dense as well.")
    return input == "dense"
