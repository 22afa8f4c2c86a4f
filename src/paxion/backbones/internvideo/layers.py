"""CLIP-style building blocks shared by InternVideo's frame ViT, its extractor and its text tower.

Parameter names follow ``nn.MultiheadAttention`` and OpenAI CLIP (``attn.in_proj_weight``,
``attn.out_proj``, ``mlp.c_fc``, ``mlp.c_proj``, ``ln_1``/``ln_2``) so official checkpoints load
without renaming, but attention itself runs through ``F.scaled_dot_product_attention`` on
batch-first tensors, which picks the fused flash / memory-efficient kernels on GPUs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back to the input dtype (CLIP's fp16-safe LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation the CLIP / InternVideo weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameter layout, computed with SDPA on (N, L, D) tensors."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.width = width
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(
        self, query: torch.Tensor, context: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """query (N, Lq, D), context (N, Lk, D) or None for self-attention -> (N, Lq, D)."""
        if context is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_kv = self.in_proj_weight.split([self.width, 2 * self.width])
            b_q, b_kv = self.in_proj_bias.split([self.width, 2 * self.width])
            q = F.linear(query, w_q, b_q)
            k, v = F.linear(context, w_kv, b_kv).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "n l (h d) -> n h l d", h=self.heads) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)  # (N, H, Lq, Dh)
        return self.out_proj(rearrange(out, "n h l d -> n l (h d)"))


def _mlp(width: int, hidden: int, dropout: float = 0.0) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [("c_fc", nn.Linear(width, hidden)), ("gelu", QuickGELU())]
    if dropout > 0:
        layers.append(("dropout", nn.Dropout(dropout)))
    layers.append(("c_proj", nn.Linear(hidden, width)))
    return nn.Sequential(OrderedDict(layers))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x += attn(ln_1 x); x += mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = _mlp(width, round(width * mlp_ratio))

    def forward(self, x: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
        """x (N, L, D) -> (N, L, D)."""
        x = x + self.attn(self.ln_1(x), is_causal=is_causal)
        return x + self.mlp(self.ln_2(x))


class Extractor(nn.Module):
    """UniFormerV2 "global UniBlock": a query token cross-attends to the tokens of all frames.

    q += attn(ln_1 q, ln_3 kv); q += mlp(ln_2 q), with dropout inside the MLP (active in train mode).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.ln_3 = LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = _mlp(width, round(width * mlp_ratio), dropout)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """query (B, 1, D), context (B, T*P, D) -> (B, 1, D)."""
        query = query + self.attn(self.ln_1(query), self.ln_3(context))
        return query + self.mlp(self.ln_2(query))


def init_block_(block: ResidualAttentionBlock | Extractor, depth: int, zero_out: bool = False) -> None:
    """CLIP's residual-scaled normal init; ``zero_out`` zeroes both output projections (UniFormerV2)."""
    width = block.attn.width
    attn_std = width**-0.5
    proj_std = attn_std * (2 * depth) ** -0.5
    fc_std = (2 * width) ** -0.5
    nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
    nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
    for out_layer in (block.attn.out_proj, block.mlp.c_proj):
        if zero_out:
            nn.init.zeros_(out_layer.weight)
        else:
            nn.init.normal_(out_layer.weight, std=proj_std)
    for bias in (block.attn.in_proj_bias, block.attn.out_proj.bias, block.mlp.c_fc.bias, block.mlp.c_proj.bias):
        nn.init.zeros_(bias)
