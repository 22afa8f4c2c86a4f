"""Perceiver resampler and (gated) cross-attention blocks used by the Knowledge Patcher and Fusers.

Parameter names follow the original release (``layers.{i}.0.to_q``, ``norm_media``, ``ff.1``, ...)
so that its checkpoints load without a key map inside the patcher/fuser.

Attention goes through ``F.scaled_dot_product_attention``: the original subtracts the row maximum
before its softmax, which changes nothing mathematically, so SDPA's fused kernel is the same
computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def feed_forward(dim: int, mult: float) -> nn.Sequential:
    """LN -> Linear(no bias) -> GELU -> Linear(no bias); indices 0, 1, 3 hold the parameters."""
    inner = int(dim * mult)
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, inner, bias=False),
        nn.GELU(),
        nn.Linear(inner, dim, bias=False),
    )


def _multi_head_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """q (B, Nq, H*Dh), k/v (B, Nk, H*Dh) -> (B, Nq, H*Dh); softmax(q k^T / sqrt(Dh)) v per head."""
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)  # default scale = Dh ** -0.5, as the original
    return rearrange(out, "b h n d -> b n (h d)")


class PerceiverAttention(nn.Module):
    """Latents attend to the media only (no latent tokens in K/V, unlike Flamingo)."""

    def __init__(self, dim: int, k_v_dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_media = nn.LayerNorm(k_v_dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(k_v_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """media (B, N, k_v_dim), latents (B, Q, dim) -> update (B, Q, dim)."""
        media = self.norm_media(media)
        q = self.to_q(self.norm_latents(latents))
        k, v = self.to_kv(media).chunk(2, dim=-1)
        return self.to_out(_multi_head_attention(q, k, v, self.heads))


class PerceiverResampler(nn.Module):
    """``num_latents`` learned queries read a token sequence; output (B, Q, dim) after a final LayerNorm."""

    def __init__(
        self,
        dim: int,
        k_v_dim: int,
        depth: int = 1,
        dim_head: int = 64,
        heads: int = 8,
        num_latents: int = 16,
        ff_mult: float = 2,
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, k_v_dim, dim_head, heads), feed_forward(dim, ff_mult)])
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, media: torch.Tensor) -> torch.Tensor:
        """media (B, N, k_v_dim) -> latents (B, Q, dim), not normalised."""
        latents = repeat(self.latents, "q d -> b q d", b=media.shape[0])
        for attn, ff in self.layers:
            latents = attn(media, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class CrossAttention(nn.Module):
    """Queries from ``x``, keys/values from ``kv``; LN on both inputs, bias-free projections."""

    def __init__(self, dim: int, k_v_dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(k_v_dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(k_v_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """x (B, Nq, dim), kv (B, Nk, k_v_dim) -> (B, Nq, dim)."""
        q = self.to_q(self.norm_q(x))
        k, v = self.to_kv(self.norm_kv(kv)).chunk(2, dim=-1)
        return self.to_out(_multi_head_attention(q, k, v, self.heads))


class CrossAttentionBlock(nn.Module):
    """x = attn(x, kv) + x; x = ff(x) + x. With ``gated`` both branches are scaled by tanh of a
    zero-initialised scalar (Flamingo), so the block starts as the identity."""

    def __init__(
        self, dim: int, k_v_dim: int, dim_head: int = 64, heads: int = 8, ff_mult: float = 2, gated: bool = False
    ) -> None:
        super().__init__()
        self.attn = CrossAttention(dim, k_v_dim, dim_head, heads)
        self.ff = feed_forward(dim, ff_mult)
        self.gated = gated
        if gated:
            self.attn_gate = nn.Parameter(torch.zeros(1))
            self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """x (B, Nq, dim), kv (B, Nk, k_v_dim) -> (B, Nq, dim)."""
        if self.gated:
            x = self.attn(x, kv) * self.attn_gate.tanh() + x
            return self.ff(x) * self.ff_gate.tanh() + x
        x = self.attn(x, kv) + x
        return self.ff(x) + x
