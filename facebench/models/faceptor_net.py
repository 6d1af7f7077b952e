"""Faceptor (ECCV 2024) as plain PyTorch modules, written from ``shared/spec/faceptor.md`` §1.4.

Layout (module names mirror the authors' state-dict keys after the prefix remap in
``facebench.models.faceptor``, so their checkpoints load unchanged and strictly):

* ``backbone``  -- FaRL ViT (CLIP visual transformer, QuickGELU); returns every block's output
  without the CLS token as (B, C, S, S) maps; ``ln_post``/``proj`` are not part of it (unused).
* ``decoder``   -- transformer decoder with one learned query set per task; memory = the projected
  last block (stage 1) plus, for the stage-2 Layer-Attention decoder, projected earlier blocks with
  their own level embeddings; sine anchor positions through ``adapt_pos2d``; every layer is
  cross-attention -> self-attention -> FFN, post-norm.
* ``recog``     -- recognition head on the last block (LayerNorm, token mean, Linear-BN-Linear-BN).
* ``value``     -- one Linear(C, 1) shared by all value tasks (age, attributes, expression).
* ``map``       -- mask head for dense tasks (parsing, landmarks): 4x upsampled memory map times
  per-query MLP embeddings.

All sizes are constructor arguments; ``FaceptorConfig`` holds them (see ``faceptor.py`` for how they
are read from a state dict and an optional JSON config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from facebench.errors import ModelError


@dataclass
class FaceptorConfig:
    """Every size the network needs. Defaults are the released (real) model's values."""

    vit_width: int = 768
    vit_layers: int = 12
    vit_heads: int = 12
    vit_patch: int = 16
    vit_mlp_hidden: int = 3072
    vit_pos_grid: int = 32
    dec_hidden: int = 256
    dec_heads: int = 8
    dec_ffn: int = 2048
    dec_layers: int = 9
    levels: tuple[int, ...] = (11,)
    new_levels: tuple[int, ...] = ()  # stage 2 (Layer-Attention): (1, 3, 5, 7, 9)
    tasks: dict[str, int] = field(default_factory=dict)  # decoder task name -> number of queries
    recog_in: int = 768
    recog_out: int = 512
    map_hidden: int = 256
    map_mlp_layers: int = 3
    vit_ln_eps: float = 1e-5
    dec_ln_eps: float = 1e-5
    recog_ln_eps: float = 1e-5
    recog_bn_eps: float = 2e-5
    norm2d_eps: float = 1e-6
    pos_temperature: float = 10000.0
    parsing_out_size: tuple[int, int] = (512, 512)
    dense_input_size: int = 512  # group-1 input (parsing, landmarks); not visible in the state dict
    softargmax_clamp: float = 1e-6


# -- backbone ------------------------------------------------------------------------------------
class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class _MLP(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_hidden: int, eps: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.mlp = _MLP(width, mlp_hidden)
        self.ln_2 = nn.LayerNorm(width, eps=eps)

    def forward(self, x):  # (L, B, C)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(cfg.vit_width, cfg.vit_heads, cfg.vit_mlp_hidden, cfg.vit_ln_eps)
            for _ in range(cfg.vit_layers)
        )


class FaRLViT(nn.Module):
    """CLIP-style ViT returning the list of all block outputs (without CLS) as (B, C, S, S)."""

    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        c, p = cfg.vit_width, cfg.vit_patch
        self.patch = p
        self.grid = cfg.vit_pos_grid
        self.conv1 = nn.Conv2d(3, c, kernel_size=p, stride=p, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(c))
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.vit_pos_grid ** 2 + 1, c))
        self.ln_pre = nn.LayerNorm(c, eps=cfg.vit_ln_eps)
        self.transformer = _Transformer(cfg)

    def pos_embed(self, s: int) -> torch.Tensor:
        pe = self.positional_embedding
        if s == self.grid:
            return pe
        g = self.grid
        grid = pe[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(s, s), mode="bicubic", align_corners=False)
        return torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(s * s, -1)], dim=0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.conv1(x)
        b, c, s, s2 = x.shape
        if s != s2:
            raise ModelError(f"Faceptor expects square inputs; got a {s}x{s2} patch grid")
        x = x.flatten(2).transpose(1, 2)  # (B, S*S, C)
        cls = self.class_embedding.to(x.dtype).expand(b, 1, c)
        x = torch.cat([cls, x], dim=1) + self.pos_embed(s).to(x.dtype)
        x = self.ln_pre(x).transpose(0, 1)  # (L, B, C)
        outs = []
        for block in self.transformer.resblocks:
            x = block(x)
            outs.append(x[1:].permute(1, 2, 0).reshape(b, c, s, s))
        return outs


# -- decoder -------------------------------------------------------------------------------------
def sine_anchor_embed(h: int, w: int, num_feats: int, temperature: float, device, dtype) -> torch.Tensor:
    """(h*w, 2*num_feats): concat(enc(y), enc(x)) of normalised pixel centres, row-major tokens."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    k = torch.arange(num_feats, device=device, dtype=dtype)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)

    def enc(c):
        v = c.reshape(-1, 1) * (2 * math.pi) / dim_t
        return torch.stack([v[:, 0::2].sin(), v[:, 1::2].cos()], dim=2).flatten(1)

    return torch.cat([enc(y), enc(x)], dim=1)


class _CrossAttentionLayer(nn.Module):
    def __init__(self, d: int, heads: int, eps: float):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d, heads)
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, tgt, memory, pos, query_pos):
        out = self.multihead_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0]
        return self.norm(tgt + out)


class _SelfAttentionLayer(nn.Module):
    def __init__(self, d: int, heads: int, eps: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, tgt, query_pos):
        q = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, q, tgt, need_weights=False)[0])


class _FFNLayer(nn.Module):
    def __init__(self, d: int, hidden: int, eps: float):
        super().__init__()
        self.linear1 = nn.Linear(d, hidden)
        self.linear2 = nn.Linear(hidden, d)
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, tgt):
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


class FaceptorDecoder(nn.Module):
    """Task-query transformer decoder (``TransformerDecoderLevel``; with ``new_levels`` the
    stage-2 Layer-Attention ``TransformerDecoderLevelAddLevel``)."""

    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        d = cfg.dec_hidden
        self.cfg = cfg
        self.query_feat = nn.ModuleDict({t: nn.Embedding(q, d) for t, q in cfg.tasks.items()})
        self.query_embed = nn.ModuleDict({t: nn.Embedding(q, d) for t, q in cfg.tasks.items()})
        self.level_embed = nn.Embedding(len(cfg.levels), d)
        self.input_proj = nn.ModuleList(nn.Conv2d(cfg.vit_width, d, 1) for _ in cfg.levels)
        self.transformer_self_attention_layers = nn.ModuleList(
            _SelfAttentionLayer(d, cfg.dec_heads, cfg.dec_ln_eps) for _ in range(cfg.dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            _CrossAttentionLayer(d, cfg.dec_heads, cfg.dec_ln_eps) for _ in range(cfg.dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            _FFNLayer(d, cfg.dec_ffn, cfg.dec_ln_eps) for _ in range(cfg.dec_layers))
        self.adapt_pos2d = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        if cfg.new_levels:
            self.new_level_embed = nn.Embedding(len(cfg.new_levels), d)
            self.new_input_proj = nn.ModuleList(nn.Conv2d(cfg.vit_width, d, 1) for _ in cfg.new_levels)

    def memory(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(memory (N,B,C), positions (N,B,C), src0 (B,C,S,S) = projected first level)."""
        srcs, poss = [], []
        projs = [(self.input_proj[j], self.level_embed.weight[j], lvl) for j, lvl in enumerate(self.cfg.levels)]
        if self.cfg.new_levels:
            projs += [(self.new_input_proj[j], self.new_level_embed.weight[j], lvl)
                      for j, lvl in enumerate(self.cfg.new_levels)]
        src0 = None
        for proj, level_embed, lvl in projs:
            src = proj(feats[lvl])
            if src0 is None:
                src0 = src
            b, c, h, w = src.shape
            anchors = sine_anchor_embed(h, w, c // 2, self.cfg.pos_temperature, src.device, src.dtype)
            pos = self.adapt_pos2d(anchors) + level_embed
            srcs.append(src.flatten(2).permute(2, 0, 1))
            poss.append(pos.unsqueeze(1).expand(-1, b, -1))
        return torch.cat(srcs, 0), torch.cat(poss, 0), src0

    def forward(self, task: str, memory: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Decoded queries (Q, B, C) of one task."""
        b = memory.shape[1]
        tgt = self.query_feat[task].weight.unsqueeze(1).expand(-1, b, -1)
        qpos = self.query_embed[task].weight.unsqueeze(1).expand(-1, b, -1)
        for cross, self_attn, ffn in zip(self.transformer_cross_attention_layers,
                                         self.transformer_self_attention_layers, self.transformer_ffn_layers):
            tgt = cross(tgt, memory, pos, qpos)
            tgt = self_attn(tgt, qpos)
            tgt = ffn(tgt)
        return tgt


# -- interpreters --------------------------------------------------------------------------------
class RecognitionHead(nn.Module):
    """``FeatureInterpreter_v2``: LayerNorm -> token mean -> Linear-BN1d-Linear-BN1d (raw embedding)."""

    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.recog_in, eps=cfg.recog_ln_eps)
        self.head = nn.Sequential(
            nn.Linear(cfg.recog_in, cfg.recog_in, bias=False),
            nn.BatchNorm1d(cfg.recog_in, eps=cfg.recog_bn_eps),
            nn.Linear(cfg.recog_in, cfg.recog_out, bias=False),
            nn.BatchNorm1d(cfg.recog_out, eps=cfg.recog_bn_eps),
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        tokens = feat.flatten(2).transpose(1, 2)
        return self.head(self.norm(tokens).mean(dim=1))


class ValueHead(nn.Module):
    """One Linear(C, 1) shared by every value task: (Q, B, C) -> (B, Q) logits."""

    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.dec_hidden, 1)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.fc(tgt).squeeze(-1).transpose(0, 1)


class Norm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, c: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class _QueryMLP(nn.Module):
    def __init__(self, d: int, hidden: int, n: int):
        super().__init__()
        dims = [d] + [hidden] * (n - 1) + [hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MapHead(nn.Module):
    """``MapInterpreter_V2``: (B, Q, 4S, 4S) mask logits from the memory map and the decoded queries."""

    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        d, h = cfg.dec_hidden, cfg.map_hidden
        self.mask_map = nn.Sequential(
            nn.ConvTranspose2d(d, h, 2, 2), Norm2d(h, cfg.norm2d_eps), nn.GELU(), nn.ConvTranspose2d(h, h, 2, 2))
        self.mask_embed = _QueryMLP(d, h, cfg.map_mlp_layers)

    def forward(self, tgt: torch.Tensor, src0: torch.Tensor) -> torch.Tensor:
        maps = self.mask_map(src0)
        emb = self.mask_embed(tgt)  # (Q, B, C)
        return torch.einsum("qbc,bchw->bqhw", emb, maps)


# -- the whole network ---------------------------------------------------------------------------
class FaceptorNet(nn.Module):
    """Backbone + decoder + interpreters. ``forward`` runs the requested tasks on one input size."""

    def __init__(self, cfg: FaceptorConfig):
        super().__init__()
        self.cfg = cfg
        if max(cfg.levels + cfg.new_levels) >= cfg.vit_layers:
            raise ModelError(f"decoder levels {cfg.levels + cfg.new_levels} need >= "
                             f"{max(cfg.levels + cfg.new_levels) + 1} ViT blocks; the backbone has {cfg.vit_layers}")
        self.backbone = FaRLViT(cfg)
        self.decoder = FaceptorDecoder(cfg)
        self.recog = RecognitionHead(cfg)
        self.value = ValueHead(cfg)
        self.map = MapHead(cfg)

    def forward(self, x: torch.Tensor, tasks: tuple[str, ...] = (), recognition: bool = False,
                debug: bool = False) -> dict[str, torch.Tensor]:
        """Raw outputs: ``recog`` embedding (B, D); value tasks (B, Q) logits; map tasks (B, Q, 4S, 4S)
        logits (``map_tasks`` are those whose name starts with ``parsing_`` or ``align_``)."""
        feats = self.backbone(x)
        out: dict[str, torch.Tensor] = {}
        if debug:
            out["debug/feats"] = feats
        if recognition:
            out["recog"] = self.recog(feats[-1])
        if tasks:
            memory, pos, src0 = self.decoder.memory(feats)
            if debug:
                out["debug/decoder_src"] = src0.flatten(2).permute(2, 0, 1)
            for task in tasks:
                tgt = self.decoder(task, memory, pos)
                if debug:
                    out[f"debug/{task}/decoder_output"] = tgt
                out[task] = self.map(tgt, src0) if is_map_task(task) else self.value(tgt)
        return out


def is_map_task(task: str) -> bool:
    return task.startswith("parsing_") or task.startswith("align_")


def age_expectation(logits: torch.Tensor) -> torch.Tensor:
    """Expected age from 101 bin logits: p = sigmoid, L1-normalised; age = sum_k k * p_k. (B,) ."""
    p = torch.sigmoid(logits)
    p = p / p.sum(dim=1, keepdim=True)
    ages = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
    return (p * ages).sum(dim=1)


def parsing_output(logits: torch.Tensor, size: tuple[int, int] = (512, 512)) -> torch.Tensor:
    """``ParsingOutput``: bilinear resize (align_corners=False) to ``size``, then (B, H, W, Q)."""
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)


def align_output(logits: torch.Tensor, clamp: float = 1e-6) -> dict[str, torch.Tensor]:
    """``AlignOutput``: sigmoid heatmaps -> soft-argmax -> (p + 0.5) / (w, h); landmarks (B, K, 2) xy."""
    hm = torch.sigmoid(logits)
    b, k, h, w = hm.shape
    xs = torch.arange(w, device=hm.device, dtype=hm.dtype)
    ys = torch.arange(h, device=hm.device, dtype=hm.dtype)
    total = hm.sum(dim=(2, 3)).clamp(min=clamp)
    x = (hm.sum(dim=2) * xs).sum(dim=2) / total
    y = (hm.sum(dim=3) * ys).sum(dim=2) / total
    scale = torch.tensor([w, h], device=hm.device, dtype=hm.dtype)
    landmark = (torch.stack([x, y], dim=-1) + 0.5) / scale
    return {"landmark": landmark, "heatmap": logits, "heatmap_acted": hm}
