"""Knowledge Patchers: trainable readers of the frozen backbone's video tokens.

* ``perceiver`` (KP-Perceiver, the method): a Perceiver resampler over all frame tokens plus a learned
  per-frame temporal embedding, giving ``num_latents`` vectors in the joint space. ``spatial_embedding:
  true`` (not in the original, off by default) also adds a learned per-token-position embedding, zero at
  the start: for backbones whose last tokens no longer say where they are in the frame.
* ``transformer`` (KP-Transformer, the baseline): one ``nn.TransformerEncoder`` layer over the tokens,
  mean-pooled and projected to the joint space; returned as a single latent so scoring is shared.

Widths come from the backbone (``vision_width`` for the tokens, ``embed_dim`` for the joint space).
Both take ``views``: the batch holds ``views`` equal-sized groups (the clip and its time-reversed
copy) that get independent dropout draws, as two separate passes would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from einops import rearrange, repeat
from torch import nn

from paxion.modules.perceiver import PerceiverResampler
from paxion.registry import registry


@dataclass
class PatcherConfig:
    name: str = "perceiver"  # registered patcher: perceiver | transformer
    dim: Optional[int] = None  # latent width; None: the backbone's embed_dim (needed to compare with text)
    depth: int = 1
    dim_head: int = 64
    heads: int = 8
    num_latents: int = 16
    ff_mult: float = 2.0
    ff_dim: Optional[int] = None  # transformer only; None: 2 * vision_width (original InternVideo 2048)
    spatial_embedding: bool = False  # perceiver only: add a learned embedding per token position (not original)


@registry.register("patcher", "perceiver")
class PerceiverPatcher(nn.Module):
    """KP-Perceiver. Official key names: ``vision_perceiver.*`` and ``temporal_embedding``."""

    def __init__(
        self,
        vision_width: int,
        embed_dim: int,
        num_frames: int,
        *,
        dim: Optional[int] = None,
        depth: int = 1,
        dim_head: int = 64,
        heads: int = 8,
        num_latents: int = 16,
        ff_mult: float = 2.0,
        use_temporal_embedding: bool = True,
        temporal_dropout: float = 0.1,
        spatial_embedding: bool = False,
        tokens_per_frame: Optional[int] = None,
        **_unused: object,
    ) -> None:
        super().__init__()
        dim = dim or embed_dim
        if dim != embed_dim:
            raise ValueError(f"patcher.dim={dim} must equal the backbone embed_dim {embed_dim} (latents meet text)")
        self.out_dim = dim
        self.num_frames = num_frames
        self.vision_perceiver = PerceiverResampler(dim, vision_width, depth, dim_head, heads, num_latents, ff_mult)
        self.temporal_embedding: Optional[nn.Parameter] = None
        if use_temporal_embedding:
            self.temporal_embedding = nn.Parameter(torch.randn(num_frames, vision_width))
        self.temporal_dropout = nn.Dropout(temporal_dropout)
        self.spatial_embedding: Optional[nn.Parameter] = None
        if spatial_embedding:
            if not tokens_per_frame:
                raise ValueError("patcher.spatial_embedding needs the backbone's tokens_per_frame")
            self.spatial_embedding = nn.Parameter(torch.zeros(tokens_per_frame, vision_width))

    def add_temporal_embedding(self, tokens: torch.Tensor, views: int = 1) -> torch.Tensor:
        """tokens (B, T, P, Dv) -> (B, T, P, Dv) with row t of the embedding added to every token of frame t.

        Dropout acts on the embedding repeated over the P tokens (one draw per view, shared by the
        clips of that view), exactly where the original applies it.
        """
        if self.temporal_embedding is None:
            return tokens
        b, t, p, _ = tokens.shape
        if t != self.num_frames:
            raise ValueError(f"patcher temporal embedding has {self.num_frames} frames, video tokens have {t}")
        emb = repeat(self.temporal_embedding, "t d -> v t p d", v=views, p=p)
        emb = self.temporal_dropout(emb).to(tokens.dtype)  # (V, T, P, Dv)
        tokens = rearrange(tokens, "(v b) t p d -> v b t p d", v=views) + emb[:, None]
        return rearrange(tokens, "v b t p d -> (v b) t p d")

    def forward(self, tokens: torch.Tensor, views: int = 1) -> torch.Tensor:
        """tokens (B, T, P, Dv) -> latents (B, Q, D), not normalised."""
        tokens = self.add_temporal_embedding(tokens, views)
        if self.spatial_embedding is not None:
            if tokens.shape[2] != self.spatial_embedding.shape[0]:
                raise ValueError(f"patcher spatial embedding has {self.spatial_embedding.shape[0]} positions, "
                                 f"video tokens have {tokens.shape[2]} per frame")
            tokens = tokens + self.spatial_embedding.to(tokens.dtype)  # row p to token p of every frame
        return self.vision_perceiver(rearrange(tokens, "b t p d -> b (t p) d"))


class _AdaptorEncoder(nn.Module):
    """Holds the encoder under the original attribute name (``vision_adaptor.transformer_encoder``)."""

    def __init__(self, width: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=width, nhead=heads, dim_feedforward=ff_dim, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)


@registry.register("patcher", "transformer")
class TransformerPatcher(nn.Module):
    """KP-Transformer baseline: encoder layer over all tokens -> mean -> projection, as one latent.

    ``proj`` stands in for the backbone's own visual projection, which the original applies here.
    :meth:`PaxionModel` copies the backbone's projection into it and freezes it when the backbone
    exposes ``visual_projection_weight()``; otherwise it stays a trainable bias-free linear layer.
    """

    def __init__(
        self,
        vision_width: int,
        embed_dim: int,
        num_frames: int,
        *,
        heads: int = 8,
        ff_dim: Optional[int] = None,
        **_unused: object,
    ) -> None:
        super().__init__()
        self.out_dim = embed_dim
        self.num_frames = num_frames
        self.vision_adaptor = _AdaptorEncoder(vision_width, heads, ff_dim or 2 * vision_width)
        self.proj = nn.Linear(vision_width, embed_dim, bias=False)

    def forward(self, tokens: torch.Tensor, views: int = 1) -> torch.Tensor:
        """tokens (B, T, P, Dv) -> (B, 1, E), not normalised. ``views`` needs no special handling here."""
        adapted = self.vision_adaptor.transformer_encoder(rearrange(tokens, "b t p d -> b (t p) d"))
        return self.proj(adapted.mean(dim=1, keepdim=True))


def build_patcher(
    cfg: PatcherConfig,
    vision_width: int,
    embed_dim: int,
    num_frames: int,
    use_temporal_embedding: bool,
    temporal_dropout: float,
    tokens_per_frame: Optional[int] = None,
) -> nn.Module:
    """The registered patcher ``cfg.name`` with widths from the backbone."""
    if cfg.spatial_embedding and cfg.name != "perceiver":
        raise ValueError(f"patcher.spatial_embedding is a perceiver option; patcher '{cfg.name}' has none")
    cls = registry.get("patcher", cfg.name)
    return cls(
        vision_width,
        embed_dim,
        num_frames,
        dim=cfg.dim,
        depth=cfg.depth,
        dim_head=cfg.dim_head,
        heads=cfg.heads,
        num_latents=cfg.num_latents,
        ff_mult=cfg.ff_mult,
        ff_dim=cfg.ff_dim,
        use_temporal_embedding=use_temporal_embedding,
        temporal_dropout=temporal_dropout,
        spatial_embedding=cfg.spatial_embedding,
        tokens_per_frame=tokens_per_frame,
    )
