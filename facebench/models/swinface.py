"""``swinface``: SwinFace (Qin et al., TCSVT 2023), a clean PyTorch re-implementation that loads the
authors' ``checkpoint_step_79999_gpu_0.pt`` unchanged (``shared/spec/faceptor.md`` §2).

Model (spec §2.4): a Swin transformer (official Microsoft layout, ``downsample`` at the end of a stage;
Swin-T with patch 2 at 112x112 in the released model) gives the recognition embedding (``norm`` ->
token mean -> Linear/BN/Linear/BN) and a 7x7 multi-scale map: the outputs of stages 0-2 after their
patch merging, average-pooled to 7x7, concatenated with the last stage's output (before ``norm``).
Eleven Feature Attention branches (split 3x3 convs, CBAM channel gate, ReLU, global max-pool, BN), eleven
task-specific subnets (Linear-ReLU-Dropout x2) and 42 output fcs give 42 named outputs.

Loading (spec §2.9): ``torch.load(PATH)`` must hold ``state_dict_backbone``, ``state_dict_fam``,
``state_dict_tss`` and ``state_dict_om`` (other top-level keys -- optimiser, PartialFC centres, ... --
are ignored); each sub-dict is loaded strictly, without prefix, into its sub-module. The backbone's
unused ``head.{weight,bias}`` are kept (loaded, never used). The ``attn_mask`` / ``relative_position_index``
buffers are recomputed and must equal the checkpoint's.

Sizes come from the tensor shapes (embed dim, patch, depths, heads, window, MLP width, FAM split
channels and kernel, CBAM width, TSS/OM widths, embedding size). What shapes cannot tell -- input size,
the branch -> fc grouping, the output names -- defaults to the released model's values and may be given
with ``config=PATH`` (a JSON like the golden fixture's ``config.json``: top-level or ``hyperparameters``
keys ``img_size``, ``om_output_sizes``, ``om_fc_order``; values may be ``{"tiny": .., "real": ..}``).

Heads (input 112x112 RGB, ``(x/255 - 0.5)/0.5``):

* ``expression``: 7 logits in RAF-DB order (surprise, fear, disgust, happiness, sadness, anger, neutral);
* ``age``: kind "regression", the direct age regression in years, shape (B, 1);
* ``attributes``: kind "binary", 40 logits in the standard CelebA (``list_attr_celeba.txt``) order; each is
  ``l1 - l0`` of SwinFace's two-way ``[No, Yes]`` logits, so ``sigmoid(logit)`` equals the softmax
  probability of "Yes"; ``Male`` is SwinFace's ``Gender`` output ([Female, Male]);
* ``gender``: the raw ``Gender`` logits, labels ``(female, male)``;
* features: the raw (un-normalised) 512-d recognition embedding.

``SwinFaceNet.forward`` returns all 42 outputs plus ``Recognition`` under the authors' names.
Not implemented: the authors' CUDA autocast quirk (fp16 qkv/proj/MLP on GPU); this module runs in the
dtype it is given (the engine's ``--amp`` applies autocast to the whole model instead).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facebench.data.preprocess import Preprocessing
from facebench.data.taxonomy import CELEBA_ATTRIBUTES, LABEL_ORDERS
from facebench.models._config import load_config_json as _load_config_json
from facebench.errors import ModelError
from facebench.models.base import Head, ModelAdapter

SUB_DICTS = ("state_dict_backbone", "state_dict_fam", "state_dict_tss", "state_dict_om")
CHECKPOINT_HINT = (
    "SwinFace expects the authors' `checkpoint_step_79999_gpu_0.pt`: a torch.save dict with the four "
    "sub-dicts 'state_dict_backbone' (Swin keys patch_embed.*, layers.<s>.blocks.<b>.*, norm.*, feature.*), "
    "'state_dict_fam' (nets.<i>.conv.convs.<j>.weight, nets.<i>.channel_attention.mlp.*, nets.<i>.norm.*), "
    "'state_dict_tss' (nets.<i>.feature.{0,3}.*) and 'state_dict_om' (output_fcs.<k>.*), without a `module.` "
    "prefix. It is published in the Google Drive folder "
    "https://drive.google.com/drive/folders/1NjVN3Kp_Tmwt17hWCIWgHpuWzkHYaman linked from the README of "
    "https://github.com/lxq1000/SwinFace. Pass it as --model-args checkpoint=PATH."
)

# What the state dict cannot tell: the released model's values (spec §2.4, §2.6).
DEFAULT_IMG_SIZE = 112
DEFAULT_OM_OUTPUT_SIZES: tuple[tuple[int, ...], ...] = (
    (2,), (1, 2), (7, 2), (2,) * 6, (2,) * 10, (2,) * 5, (2,) * 2, (2,) * 4, (2,) * 6, (2,) * 2, (2,) * 2,
)
DEFAULT_OM_FC_ORDER: tuple[str, ...] = (
    "Gender", "Age", "Young", "Expression", "Smiling", "Attractive", "Blurry", "Chubby", "Heavy Makeup",
    "Oval Face", "Pale Skin", "Bald", "Bangs", "Black Hair", "Blond Hair", "Brown Hair", "Gray Hair",
    "Receding Hairline", "Straight Hair", "Wavy Hair", "Wearing Hat", "Arched Eyebrows", "Bags Under Eyes",
    "Bushy Eyebrows", "Eyeglasses", "Narrow Eyes", "Big Nose", "Pointy Nose", "High Cheekbones", "Rosy Cheeks",
    "Wearing Earrings", "Sideburns", "Five O'Clock Shadow", "Big Lips", "Mouth Slightly Open", "Mustache",
    "Wearing Lipstick", "No Beard", "Double Chin", "Goatee", "Wearing Necklace", "Wearing Necktie",
)
# SwinFace's 40 attributes in its own order (``set_output_type("Attribute")``, spec §2.6).
SWINFACE_ATTRIBUTES: tuple[str, ...] = (
    "Attractive", "Blurry", "Chubby", "Heavy Makeup", "Gender", "Oval Face", "Pale Skin", "Smiling", "Young",
    "Bald", "Bangs", "Black Hair", "Blond Hair", "Brown Hair", "Gray Hair", "Receding Hairline", "Straight Hair",
    "Wavy Hair", "Wearing Hat", "Arched Eyebrows", "Bags Under Eyes", "Bushy Eyebrows", "Eyeglasses",
    "Narrow Eyes", "Big Nose", "Pointy Nose", "High Cheekbones", "Rosy Cheeks", "Wearing Earrings", "Sideburns",
    "Five O'Clock Shadow", "Big Lips", "Mouth Slightly Open", "Mustache", "Wearing Lipstick", "No Beard",
    "Double Chin", "Goatee", "Wearing Necklace", "Wearing Necktie",
)
# The order of the authors' output dict (``OutputModule.task_names`` + ``Recognition``).
DEFAULT_OUTPUT_ORDER: tuple[str, ...] = ("Age",) + SWINFACE_ATTRIBUTES + ("Expression", "Recognition")
ATTN_MASK_VALUE = -100.0
LN_EPS = 1e-5
BN_EPS = 2e-5
EXPRESSION_LABELS: tuple[str, ...] = LABEL_ORDERS["rafdb"]


def celeba_name(swinface_name: str) -> str:
    """SwinFace's attribute name -> the CelebA column name (``Gender`` is ``Male``)."""
    if swinface_name == "Gender":
        return "Male"
    if swinface_name == "Five O'Clock Shadow":
        return "5_o_Clock_Shadow"
    return swinface_name.replace(" ", "_")


# -- Swin backbone ------------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, w * w, C), windows in row-major order."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """(B * nW, w * w, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // w) * (wd // w))
    x = windows.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, c)


def relative_position_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)  # 2, N
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)  # N, N, 2
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def shifted_window_mask(res: int, w: int, shift: int) -> torch.Tensor:
    """The (nW, w*w, w*w) additive mask of a cyclically shifted window layer (0 or -100)."""
    region = torch.zeros(1, res, res, 1)
    spans = (slice(0, -w), slice(-w, -shift), slice(-shift, None))
    n = 0
    for hs in spans:
        for ws in spans:
            region[:, hs, ws, :] = n
            n += 1
    ids = window_partition(region, w).squeeze(-1)  # nW, N
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, ATTN_MASK_VALUE)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0).to(attn.dtype)
            attn = attn.view(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, res: int, heads: int, window: int, shift: int, hidden: int):
        super().__init__()
        if res <= window:  # the whole map is one window; no shift (Swin's rule)
            window, shift = res, 0
        self.res, self.window, self.shift = res, window, shift
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden)
        if shift > 0:
            self.register_buffer("attn_mask", shifted_window_mask(res, window, shift))
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.norm1(x).view(b, self.res, self.res, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = self.attn(window_partition(h, self.window), self.attn_mask)
        h = window_reverse(h, self.window, self.res, self.res)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated as [(0,0), (1,0), (0,1), (1,1)] (row, col) -> LN(4C) -> Linear(4C, 2C)."""

    def __init__(self, dim: int, res: int):
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim, eps=LN_EPS)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        b, _, c = x.shape
        x = x.view(b, self.res, self.res, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim, res, depth, heads, window, hidden, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, res, heads, window, 0 if i % 2 == 0 else window // 2, hidden) for i in range(depth)
        )
        self.downsample = PatchMerging(dim, res) if downsample else None

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


def _tokens_to_map(x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    side = int(round(n ** 0.5))
    return x.transpose(1, 2).reshape(b, c, side, side)


class SwinFaceBackbone(nn.Module):
    """Swin with SwinFace's outputs: (7x7 multi-scale map, 512-d embedding)."""

    def __init__(self, img_size, patch, dim, depths, heads, window, mlp_hidden, head_out, emb):
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(patch, dim)
        res = img_size // patch
        self.layers = nn.ModuleList()
        for s, (depth, nh, hidden) in enumerate(zip(depths, heads, mlp_hidden)):
            d = dim * 2 ** s
            self.layers.append(SwinStage(d, res // 2 ** s, depth, nh, window[s], hidden, s < len(depths) - 1))
        last = dim * 2 ** (len(depths) - 1)
        self.final_res = res // 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(last, eps=LN_EPS)
        self.head = nn.Linear(last, head_out)  # in the checkpoint; unused by SwinFace
        self.feature = nn.Sequential(
            nn.Linear(last, last, bias=False), nn.BatchNorm1d(last, eps=BN_EPS),
            nn.Linear(last, emb, bias=False), nn.BatchNorm1d(emb, eps=BN_EPS),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ModelError(f"SwinFace takes {self.img_size}x{self.img_size} inputs, got {tuple(x.shape[-2:])}.")
        x = self.patch_embed(x)
        local = []
        for s, layer in enumerate(self.layers):
            x = layer(x)
            if s < len(self.layers) - 1:
                m = _tokens_to_map(x)
                k = m.shape[-1] // self.final_res
                local.append(F.avg_pool2d(m, k) if k > 1 else m)
        fmap = torch.cat(local + [_tokens_to_map(x)], dim=1)
        emb = self.feature(self.norm(x).mean(dim=1))
        return fmap, emb


# -- FAM / TSS / OM --------------------------------------------------------------------------------------
class SplitConv(nn.Module):
    def __init__(self, split_in, split_out, kernel):
        super().__init__()
        self.split_in = list(split_in)
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, kernel, padding=kernel // 2, bias=False) for i, o in zip(split_in, split_out)
        )

    def forward(self, x):
        parts = torch.split(x, self.split_in, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.convs, parts)], dim=1)


class ChannelGate(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avg-pool) + MLP(max-pool))."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        gate = self.mlp(x.mean(dim=(2, 3), keepdim=True)) + self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(gate)[:, :, None, None]


class FeatureAttentionNet(nn.Module):
    def __init__(self, split_in, split_out, kernel, cbam_hidden):
        super().__init__()
        dim = sum(split_out)
        self.conv = SplitConv(split_in, split_out, kernel)
        self.channel_attention = ChannelGate(dim, cbam_hidden)
        self.norm = nn.BatchNorm1d(dim, eps=BN_EPS)

    def forward(self, x):
        x = F.relu(self.channel_attention(self.conv(x)))
        return self.norm(x.amax(dim=(2, 3)))


class FeatureAttentionModule(nn.Module):
    def __init__(self, branches, split_in, split_out, kernel, cbam_hidden):
        super().__init__()
        self.nets = nn.ModuleList(
            FeatureAttentionNet(split_in, split_out, kernel, cbam_hidden) for _ in range(branches)
        )


class TaskSpecificSubnet(nn.Module):
    def __init__(self, dim_in, hidden, dim_out):
        super().__init__()
        self.feature = nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Dropout(0.5),
                                     nn.Linear(hidden, dim_out), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x):
        return self.feature(x)


class TaskSpecificSubnets(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.nets = nn.ModuleList(TaskSpecificSubnet(*d) for d in dims)


class OutputModule(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.output_fcs = nn.ModuleList(nn.Linear(i, o) for i, o in dims)


class SwinFaceNet(nn.Module):
    """Backbone + FAM + TSS + OM with the authors' sub-module names ``backbone/fam/tss/om``."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        self.backbone = SwinFaceBackbone(cfg["img_size"], cfg["patch_size"], cfg["embed_dim"], cfg["depths"],
                                         cfg["num_heads"], cfg["window_sizes"], cfg["mlp_hidden"],
                                         cfg["head_out"], cfg["embedding_size"])
        self.fam = FeatureAttentionModule(cfg["branches"], cfg["fam_split_in"], cfg["fam_split_out"],
                                          cfg["fam_kernel"], cfg["cbam_hidden"])
        self.tss = TaskSpecificSubnets(cfg["tss_dims"])
        self.om = OutputModule(cfg["om_dims"])
        self.fc_names = list(cfg["om_fc_order"])
        self.output_order = list(cfg["output_dict_order"])
        self.fc_branch = [g for g, sizes in enumerate(cfg["om_output_sizes"]) for _ in sizes]

    def forward(self, x: torch.Tensor, names: tuple[str, ...] | None = None,
                debug: bool = False) -> dict[str, torch.Tensor]:
        """Outputs by the authors' names: those in ``names`` (all 42 when None) plus ``Recognition``;
        only the FAM/TSS branches feeding them run. ``debug`` adds the three fixture debug tensors."""
        fmap, emb = self.backbone(x)
        wanted = set(self.fc_names if names is None else names)
        fcs = [k for k, n in enumerate(self.fc_names) if n in wanted]
        branches = sorted({self.fc_branch[k] for k in fcs}) if not debug else range(len(self.fam.nets))
        fam = {g: self.fam.nets[g](fmap) for g in branches}
        tss = {g: self.tss.nets[g](fam[g]) for g in branches}
        out = {self.fc_names[k]: self.om.output_fcs[k](tss[self.fc_branch[k]]) for k in fcs}
        out["Recognition"] = emb  # always computed: the embedding is the backbone's own output
        if names is None:  # the authors' dict order
            out = {n: out[n] for n in self.output_order}
        if debug:
            out["debug/fam_input"] = fmap
            out["debug/fam_output"] = torch.stack([fam[g] for g in branches])
            out["debug/tss_output"] = torch.stack([tss[g] for g in branches])
        return out


# -- checkpoint and sizes ---------------------------------------------------------------------------------
def read_checkpoint(path: str | Path | None) -> dict[str, dict[str, torch.Tensor]]:
    """The four sub-dicts of a SwinFace training checkpoint."""
    if not path:
        raise ModelError(f"swinface needs a checkpoint. {CHECKPOINT_HINT}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"swinface checkpoint not found at {path}. {CHECKPOINT_HINT}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a wrong file
        raise ModelError(f"{path} could not be read as a torch checkpoint ({err}). {CHECKPOINT_HINT}") from None
    if not isinstance(ckpt, dict):
        raise ModelError(f"{path} holds a {type(ckpt).__name__}, not a dict. {CHECKPOINT_HINT}")
    missing = [k for k in SUB_DICTS if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(repr(m) for m in missing)} (top-level keys: "
                         f"{list(ckpt)[:12]}). {CHECKPOINT_HINT}")
    return {k: ckpt[k] for k in SUB_DICTS}


def load_config_json(path: str | Path | None) -> dict[str, Any]:
    """Flat view of a swinface config JSON (see ``facebench.models._config``)."""
    return _load_config_json(path, "swinface")


def _count(state: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state for m in [pat.match(k)] if m}
    return max(idx) + 1 if idx else 0


def _shape(state: dict, key: str, part: str) -> tuple[int, ...]:
    if key not in state:
        raise ModelError(f"swinface checkpoint: {part} lacks {key!r}. {CHECKPOINT_HINT}")
    return tuple(state[key].shape)


def _config_value(config: dict, name: str, inferred=None, default=None):
    """A config value; ``{"tiny": a, "real": b}`` picks the variant agreeing with ``inferred``."""
    v = config.get(name)
    if isinstance(v, dict):
        options = [x for key, x in v.items() if key not in ("from_state_dict", "note")]
        if inferred is not None:
            return inferred if _same(inferred, options) else _mismatch(name, inferred, options)
        options = [x for x in options if x is not None]
        if len({json.dumps(x) for x in options}) > 1:
            raise ModelError(f"swinface config gives several values for {name!r} ({options}) and the "
                             f"checkpoint cannot tell which; give one value.")
        v = options[0] if options else None
    if v is None:
        return inferred if inferred is not None else default
    if inferred is not None and not _same(inferred, [v]):
        _mismatch(name, inferred, [v])
    return v


def _same(value, options) -> bool:
    return any(json.dumps(value) == json.dumps(o) for o in options)


def _mismatch(name, inferred, options):
    raise ModelError(f"swinface: the config gives {name} = {options[0] if len(options) == 1 else options} "
                     f"but the checkpoint's shapes say {inferred}; the config does not describe this checkpoint.")


def _backbone_shapes(bb: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the backbone's state dict shows: embed dim, patch size, per-stage depth / heads / window / MLP
    width, the largest window, the embedding size and the pre-FAM head's width."""
    dim, _, patch, _ = _shape(bb, "patch_embed.proj.weight", "state_dict_backbone")
    n_stages = _count(bb, "layers.")
    if n_stages == 0:
        raise ModelError(f"swinface checkpoint: state_dict_backbone has no layers.<s>.* keys. {CHECKPOINT_HINT}")
    depths, heads, windows, hidden = [], [], [], []
    for s in range(n_stages):
        depths.append(_count(bb, f"layers.{s}.blocks."))
        p = f"layers.{s}.blocks.0."
        heads.append(_shape(bb, p + "attn.relative_position_bias_table", "state_dict_backbone")[1])
        n = _shape(bb, p + "attn.relative_position_index", "state_dict_backbone")[0]
        windows.append(int(round(n ** 0.5)))
        hidden.append(_shape(bb, p + "mlp.fc1.weight", "state_dict_backbone")[0])
    return {"dim": dim, "patch": patch, "n_stages": n_stages, "depths": depths, "heads": heads,
            "windows": windows, "window": max(windows), "hidden": hidden,
            "emb": _shape(bb, "feature.3.weight", "state_dict_backbone")[0],
            "head_out": _shape(bb, "head.weight", "state_dict_backbone")[0]}


def _head_shapes(fam: dict[str, torch.Tensor], tss: dict[str, torch.Tensor],
                 om: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the FAM, TSS and output-module state dicts show: branches, FAM conv shapes, CBAM width, the
    subnets' (in, hidden, out) and the output fcs' (in, out)."""
    branches = _count(fam, "nets.")
    n_conv = _count(fam, "nets.0.conv.convs.")
    if branches == 0 or n_conv == 0:
        raise ModelError("swinface checkpoint: state_dict_fam has no nets.<i>.conv.convs.<j>.weight. "
                         + CHECKPOINT_HINT)
    conv_shapes = [_shape(fam, f"nets.0.conv.convs.{j}.weight", "state_dict_fam") for j in range(n_conv)]
    cbam_hidden = _shape(fam, "nets.0.channel_attention.mlp.1.weight", "state_dict_fam")[0]
    tss_dims = []
    for g in range(_count(tss, "nets.")):
        h, i = _shape(tss, f"nets.{g}.feature.0.weight", "state_dict_tss")
        o, _ = _shape(tss, f"nets.{g}.feature.3.weight", "state_dict_tss")
        tss_dims.append((i, h, o))
    om_dims = [tuple(reversed(_shape(om, f"output_fcs.{k}.weight", "state_dict_om")))
               for k in range(_count(om, "output_fcs."))]
    return {"branches": branches, "conv_shapes": conv_shapes, "cbam_hidden": cbam_hidden, "tss_dims": tss_dims,
            "om_dims": om_dims}


def _merged_config(shown: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The architecture: ``config`` where it gives a value, else the shapes ``shown``, else the defaults."""
    conv_shapes = shown["conv_shapes"]
    cfg = {
        "img_size": int(_config_value(config, "img_size", default=DEFAULT_IMG_SIZE)),
        "patch_size": _config_value(config, "patch_size", shown["patch"]),
        "embed_dim": _config_value(config, "embed_dim", shown["dim"]),
        "depths": _config_value(config, "depths", shown["depths"]),
        "num_heads": _config_value(config, "num_heads", shown["heads"]),
        "window_size": _config_value(config, "window_size", shown["window"]),
        "window_sizes": shown["windows"],
        "mlp_hidden": shown["hidden"],
        "head_out": shown["head_out"],
        "embedding_size": _config_value(config, "embedding_size", shown["emb"]),
        "branches": _config_value(config, "branch_num", shown["branches"]),
        "fam_split_in": _config_value(config, "fam_split_in", [c[1] for c in conv_shapes]),
        "fam_split_out": _config_value(config, "fam_split_out", [c[0] for c in conv_shapes]),
        "fam_kernel": conv_shapes[0][-1],
        "cbam_hidden": shown["cbam_hidden"],
        "tss_dims": shown["tss_dims"],
        "om_dims": shown["om_dims"],
        "om_output_sizes": [list(s) for s in _config_value(config, "om_output_sizes",
                                                           default=DEFAULT_OM_OUTPUT_SIZES)],
        "om_fc_order": list(_config_value(config, "om_fc_order", default=DEFAULT_OM_FC_ORDER)),
    }
    order = list(_config_value(config, "output_dict_order", default=DEFAULT_OUTPUT_ORDER))
    if sorted(order) != sorted(cfg["om_fc_order"] + ["Recognition"]):
        raise ModelError("swinface: output_dict_order must name each output of om_fc_order once, plus 'Recognition'.")
    cfg["output_dict_order"] = order
    return cfg


def _check_resolution(cfg: dict[str, Any], bb: dict[str, torch.Tensor], shown: dict[str, Any]) -> int:
    """Check the input size (from the config or the default) against the patch size, the stages' windows and
    their attention masks; return the first stage's resolution (img_size // patch)."""
    patch, n_stages, windows = shown["patch"], shown["n_stages"], shown["windows"]
    res = cfg["img_size"] // patch
    if cfg["img_size"] % patch or res % 2 ** (n_stages - 1):
        raise ModelError(f"swinface: input size {cfg['img_size']} does not fit patch {patch} and {n_stages} stages.")
    for s in range(n_stages):
        expected = min(shown["window"], res // 2 ** s)
        if windows[s] != expected:
            raise ModelError(f"swinface: stage {s} has window {windows[s]} in the checkpoint but input size "
                             f"{cfg['img_size']} implies {expected}; give the right img_size in config=PATH.")
        mask = bb.get(f"layers.{s}.blocks.1.attn_mask")
        n_windows = (res // 2 ** s // windows[s]) ** 2
        if mask is not None and mask.shape[0] != n_windows:
            raise ModelError(f"swinface: stage {s}'s attn_mask has {mask.shape[0]} windows but input size "
                             f"{cfg['img_size']} implies {n_windows}; give the right img_size in config=PATH.")
    return res


def _check_heads_fit(cfg: dict[str, Any], shown: dict[str, Any]) -> None:
    """The FAM takes what the backbone gives, and branches, subnets, output groups and output fcs agree."""
    dim, n_stages, conv_shapes = shown["dim"], shown["n_stages"], shown["conv_shapes"]
    branches, tss_dims, om_dims = shown["branches"], shown["tss_dims"], shown["om_dims"]
    stage_dims = [dim * 2 ** (s + 1) for s in range(n_stages - 1)] + [dim * 2 ** (n_stages - 1)]
    if sum(c[1] for c in conv_shapes) != sum(stage_dims):
        raise ModelError(f"swinface: the FAM convs take {sum(c[1] for c in conv_shapes)} channels but the "
                         f"backbone gives {sum(stage_dims)}.")
    sizes = cfg["om_output_sizes"]
    if len(sizes) != branches or len(tss_dims) != branches:
        raise ModelError(f"swinface: {branches} FAM branches, {len(tss_dims)} subnets and {len(sizes)} "
                         f"output groups (om_output_sizes) disagree.")
    flat = [n for group in sizes for n in group]
    if flat != [o for _, o in om_dims] or len(cfg["om_fc_order"]) != len(om_dims):
        raise ModelError(f"swinface: the output fcs have widths {[o for _, o in om_dims]} but om_output_sizes "
                         f"gives {flat} and om_fc_order names {len(cfg['om_fc_order'])}; pass the config that "
                         f"matches this checkpoint.")


def resolve_config(sub: dict[str, dict[str, torch.Tensor]], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Architecture sizes from the sub-dicts' shapes, plus ``config`` for what shapes cannot tell; every size
    is checked against the others (a ModelError names the mismatch)."""
    bb, fam, tss, om = (sub[k] for k in SUB_DICTS)
    shown = {**_backbone_shapes(bb), **_head_shapes(fam, tss, om)}
    cfg = _merged_config(shown, config or {})
    res = _check_resolution(cfg, bb, shown)
    _check_heads_fit(cfg, shown)
    n_stages = shown["n_stages"]
    cfg["stage_resolutions"] = [res // 2 ** s for s in range(n_stages)]
    cfg["final_resolution"] = res // 2 ** (n_stages - 1)
    return cfg


def build_from_checkpoint(sub: dict[str, dict[str, torch.Tensor]],
                          config: dict[str, Any] | None = None) -> SwinFaceNet:
    """SwinFaceNet sized from ``sub`` (the four sub-dicts), each loaded strictly."""
    cfg = resolve_config(sub, config)
    net = SwinFaceNet(cfg)
    for key, part in zip(SUB_DICTS, (net.backbone, net.fam, net.tss, net.om)):
        own = part.state_dict()
        given = sub[key]
        missing = [k for k in own if k not in given]
        unexpected = [k for k in given if k not in own]
        if missing or unexpected:
            raise ModelError(
                f"swinface checkpoint: {key} does not match the architecture inferred from its shapes"
                + (f"; missing keys: {missing[:8]}{' ...' if len(missing) > 8 else ''}" if missing else "")
                + (f"; unexpected keys: {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}" if unexpected else "")
                + f". {CHECKPOINT_HINT}"
            )
        bad = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if tuple(given[k].shape) != tuple(v.shape)]
        if bad:
            raise ModelError(f"swinface checkpoint: {key} has tensors of unexpected shape: {bad[:6]}. "
                             + CHECKPOINT_HINT)
        # buffers the constructor computes must equal the stored ones (they encode the input size)
        for k, v in own.items():
            if k.endswith(("attn_mask", "relative_position_index")) and not torch.equal(v, given[k].to(v.dtype)):
                raise ModelError(f"swinface checkpoint: {key}[{k!r}] differs from the value recomputed for "
                                 f"input size {cfg['img_size']}; is img_size right?")
        part.load_state_dict(given, strict=True)
    return net.eval()


# -- the adapter -------------------------------------------------------------------------------------------
PREPROCESSING = Preprocessing(
    source="SwinFace (lxq1000/SwinFace, shared/spec/faceptor.md 2.5), SF/analysis/datasets.py: PIL RGB, "
           "torchvision Resize([112, 112]) (PIL bilinear), ToTensor, Normalize(0.5, 0.5); SF/inference.py's "
           "demo resizes with cv2.resize INTER_LINEAR instead",
    crop="the authors evaluate ArcFace 5-point aligned 112x112 crops (insightface bins or the standard "
         "template); facebench feeds the dataset's face crop whole (no alignment)",
    resize="pillow", interpolation="bilinear",
)


class SwinFaceAdapter(ModelAdapter):
    """SwinFace (TCSVT 2023) Swin-T multi-task face model from the authors' checkpoint: expression, age, 40 attributes, 512-d embedding"""

    name = "swinface"
    preprocessing = PREPROCESSING
    default_head = "expression"

    def __init__(self, checkpoint: str | None = None, config: str | None = None):
        super().__init__(checkpoint=checkpoint, config=config)
        sub = read_checkpoint(checkpoint)
        self.module = build_from_checkpoint(sub, load_config_json(config))
        cfg = self.module.cfg
        size = cfg["img_size"]
        self.input_spec = self.preprocessing.spec(size=(size, size), channels=3, mean=(0.5, 0.5, 0.5),
                                                  std=(0.5, 0.5, 0.5))
        self.feature_dim = cfg["embedding_size"]
        names = cfg["om_fc_order"]
        for need in ("Expression", "Age"):
            if need not in names:
                raise ModelError(f"swinface: the output names (om_fc_order) lack {need!r}.")
        attr_names = [n for n in names if n not in ("Age", "Expression")]
        by_celeba = {celeba_name(n): n for n in attr_names}
        missing = [a for a in CELEBA_ATTRIBUTES if a not in by_celeba]
        if missing:
            raise ModelError(f"swinface: the output names lack the CelebA attributes {missing}.")
        self.attribute_sources: tuple[str, ...] = tuple(by_celeba[a] for a in CELEBA_ATTRIBUTES)
        self.heads = {
            "expression": Head("expression", EXPRESSION_LABELS),
            "age": Head("age", ("age",), "regression"),
            "attributes": Head("attributes", CELEBA_ATTRIBUTES, "binary"),
            "gender": Head("gender", ("female", "male")),
        }
        self._sources = {"expression": ("Expression",), "age": ("Age",), "attributes": self.attribute_sources,
                         "gender": ("Gender",)}

    def model_files(self):
        """The checkpoint and config files (their bytes; the loaded weights are hashed too)."""
        return {"checkpoint": self.settings.get("checkpoint"), "config": self.settings.get("config")}

    def forward(self, batch, heads, features):
        wanted = tuple(dict.fromkeys(n for h in heads for n in self._sources[h]))
        raw = self.module(batch, names=wanted)
        out = {}
        for h in heads:
            if h == "attributes":
                two = torch.stack([raw[n] for n in self.attribute_sources], dim=1)  # B, 40, 2
                out[h] = two[..., 1] - two[..., 0]
            else:
                out[h] = raw[self._sources[h][0]]
        if features:
            out["features"] = raw["Recognition"]
        return out
