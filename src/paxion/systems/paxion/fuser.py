"""Knowledge Fusers: merge the backbone's pooled video vector with the Knowledge Patcher's latents.

Every fuser maps ``pooled (B, E)`` and ``latents (B, Q, D)`` (unnormalised patcher output) to one
video vector ``(B, E)`` that is scored against the frozen text like the backbone's own vector.
Official key names: ``knowledge_fuser.{attn,ff}.*`` (+ ``attn_gate``/``ff_gate``) and ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from paxion.modules.perceiver import CrossAttentionBlock
from paxion.registry import registry


@dataclass
class FuserConfig:
    name: Optional[str] = None  # None (patcher only) | xattn | gated_xattn | side_tuning
    dim_head: int = 64
    heads: int = 8
    ff_mult: float = 2.0


class _CrossAttentionFuser(CrossAttentionBlock):
    """The pooled vector is the single query; the patcher latents are keys/values."""

    def __init__(self, embed_dim: int, latent_dim: int, *, dim_head: int, heads: int, ff_mult: float, gated: bool):
        super().__init__(embed_dim, latent_dim, dim_head, heads, ff_mult, gated=gated)

    def forward(self, pooled: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """pooled (B, E), latents (B, Q, D) -> fused (B, E), not normalised."""
        fused = super().forward(rearrange(pooled, "b e -> b 1 e"), latents)
        return rearrange(fused, "b 1 e -> b e")


@registry.register("fuser", "xattn")
class CrossAttentionFuser(_CrossAttentionFuser):
    """Ungated residual cross-attention + feed-forward: the fuser the original actually uses."""

    def __init__(self, embed_dim: int, latent_dim: int, *, dim_head: int = 64, heads: int = 8, ff_mult: float = 2.0):
        super().__init__(embed_dim, latent_dim, dim_head=dim_head, heads=heads, ff_mult=ff_mult, gated=False)


@registry.register("fuser", "gated_xattn")
class GatedCrossAttentionFuser(_CrossAttentionFuser):
    """Flamingo-style: both branches scaled by tanh of zero-initialised gates (starts as the identity)."""

    def __init__(self, embed_dim: int, latent_dim: int, *, dim_head: int = 64, heads: int = 8, ff_mult: float = 2.0):
        super().__init__(embed_dim, latent_dim, dim_head=dim_head, heads=heads, ff_mult=ff_mult, gated=True)


@registry.register("fuser", "side_tuning")
class SideTuningFuser(nn.Module):
    """sigmoid(alpha) * norm(pooled) + (1 - sigmoid(alpha)) * norm(mean over latents); alpha starts at 0."""

    def __init__(self, embed_dim: int, latent_dim: int, **_unused: object) -> None:
        super().__init__()
        if embed_dim != latent_dim:
            raise ValueError(f"side_tuning blends vectors: embed_dim {embed_dim} != latent dim {latent_dim}")
        self.alpha = nn.Parameter(torch.tensor(0.0))

    def forward(self, pooled: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """pooled (B, E), latents (B, Q, E) -> (B, E)."""
        weight = torch.sigmoid(self.alpha)
        side = F.normalize(latents.mean(dim=1), dim=-1)
        return weight * F.normalize(pooled, dim=-1) + (1 - weight) * side


def build_fuser(cfg: FuserConfig, embed_dim: int, latent_dim: int) -> Optional[nn.Module]:
    """The registered fuser ``cfg.name`` (None when the model is patcher-only)."""
    if cfg.name is None:
        return None
    cls = registry.get("fuser", cfg.name)
    return cls(embed_dim, latent_dim, dim_head=cfg.dim_head, heads=cfg.heads, ff_mult=cfg.ff_mult)
