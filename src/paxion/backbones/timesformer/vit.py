"""TimeSformer ViT with divided space-time attention (Bertasius et al., 2021), as ALPRO uses it.

Token layout inside the blocks is the original's: one video [CLS] token followed by the patch tokens
ordered patch-major, time-minor, ``(B, 1 + H*W*T, D)``. Each block runs

1. temporal attention at every patch position over the T frames (the [CLS] token takes no part),
   projected by ``temporal_fc`` and added to the patch tokens;
2. spatial attention inside every frame over [a copy of the [CLS] token; the H*W patches]; the T
   outputs of the [CLS] copies are averaged into the new [CLS] residual;
3. the MLP.

``pos_embed`` (1, 1+H*W, D) is resized (patch part, nearest) when the resolution differs from the
one it was built for, ``time_embed`` (1, F, D) (nearest) when the frame count differs.
Parameter names follow the original ``VisionTransformer`` so release files map by a prefix change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn
from torch.utils.checkpoint import checkpoint

from paxion.backbones.singularity.beit import drop_path


@dataclass(frozen=True)
class TimeSformerConfig:
    """ViT-B/16 divided space-time by default (ALPRO's ``timesformer_divst_8x32_224_k600``)."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    num_frames: int = 8  # rows of time_embed
    drop_rate: float = 0.0  # after the position / time embeddings and in the MLP and projections
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1  # linearly 0 .. rate over the blocks
    eps: float = 1e-6
    gradient_checkpointing: bool = False  # recompute each block in backward (16-frame QA)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


TIMESFORMER_BASE = TimeSformerConfig()
TIMESFORMER_TINY = TimeSformerConfig(image_size=32, patch_size=16, width=64, layers=2, heads=4, num_frames=4)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection, through SDPA."""

    def __init__(self, width: int, heads: int, attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"TimeSformer width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(width, width * 3)
        self.proj = nn.Linear(width, width)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, L, D) -> (N, L, D)."""
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(rearrange(out, "n h l d -> n l (h d)")))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class DividedSpaceTimeBlock(nn.Module):
    def __init__(self, cfg: TimeSformerConfig, drop_path_rate: float) -> None:
        super().__init__()
        d = cfg.width
        self.drop_path_rate = drop_path_rate
        self.temporal_norm1 = nn.LayerNorm(d, eps=cfg.eps)
        self.temporal_attn = Attention(d, cfg.heads, cfg.attn_drop_rate, cfg.drop_rate)
        self.temporal_fc = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d, eps=cfg.eps)
        self.attn = Attention(d, cfg.heads, cfg.attn_drop_rate, cfg.drop_rate)
        self.norm2 = nn.LayerNorm(d, eps=cfg.eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio), cfg.drop_rate)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_path_rate, self.training)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x (B, 1 + N*T, D), patches ordered (n t) -> same shape."""
        t = num_frames
        cls, patches = x[:, :1], x[:, 1:]  # (B, 1, D), (B, N*T, D)
        batch = x.shape[0]
        # temporal attention at every patch position
        xt = rearrange(patches, "b (n t) d -> (b n) t d", t=t)
        res_t = self._drop(self.temporal_attn(self.temporal_norm1(xt)))
        patches = patches + self.temporal_fc(rearrange(res_t, "(b n) t d -> b (n t) d", b=batch))
        # spatial attention inside each frame, with a copy of the [CLS] token per frame
        xs = rearrange(patches, "b (n t) d -> (b t) n d", t=t)
        xs = torch.cat([repeat(cls, "b 1 d -> (b t) 1 d", t=t), xs], dim=1)  # (B*T, 1+N, D)
        res_s = self._drop(self.attn(self.norm1(xs)))
        res_cls = reduce(res_s[:, :1], "(b t) 1 d -> b 1 d", "mean", t=t)  # CLS copies averaged over frames
        res_patches = rearrange(res_s[:, 1:], "(b t) n d -> b (n t) d", t=t)
        x = torch.cat([cls, patches], dim=1) + torch.cat([res_cls, res_patches], dim=1)
        return x + self._drop(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """frames (N, 3, H, W) -> (patch tokens (N, h*w, D), h, w)."""
        x = self.proj(frames)
        return rearrange(x, "n d h w -> n (h w) d"), x.shape[-2], x.shape[-1]


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, 1+P*P, D) -> (1, 1+h*w, D): the patch part nearest-resized to ``grid``, the [CLS] row kept."""
    side = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if side * side + 1 != pos_embed.shape[1]:
        raise ValueError(f"pos_embed of {pos_embed.shape[1]} rows is not 1 + a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    patches = rearrange(pos_embed[:, 1:], "1 (h w) d -> 1 d h w", h=side)
    patches = F.interpolate(patches, size=tuple(grid), mode="nearest")
    return torch.cat([pos_embed[:, :1], rearrange(patches, "1 d h w -> 1 (h w) d")], dim=1)


def resize_time_embed(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, F, D) -> (1, T, D), nearest (the original's rule)."""
    if time_embed.shape[1] == num_frames:
        return time_embed
    rows = F.interpolate(rearrange(time_embed, "1 f d -> 1 d f"), size=num_frames, mode="nearest")
    return rearrange(rows, "1 d t -> 1 t d")


class TimeSformer(nn.Module):
    """``forward(video (B, T, 3, H, W)) -> tokens (B, 1 + h*w*T, D)`` after the final LayerNorm."""

    def __init__(self, cfg: TimeSformerConfig = TIMESFORMER_BASE) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid * cfg.grid + 1, d))
        self.time_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, d))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        self.time_drop = nn.Dropout(cfg.drop_rate)
        rates = [cfg.drop_path_rate * i / max(1, cfg.layers - 1) for i in range(cfg.layers)]  # linspace
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(cfg, rate) for rate in rates)
        self.norm = nn.LayerNorm(d, eps=cfg.eps)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The original's init: truncated normal 0.02 for linears and embeddings, temporal_fc of every block
        after the first zeroed (a fresh model starts as a per-frame ViT)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for block in list(self.blocks)[1:]:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) -> input tokens (B, 1 + h*w*T, D) with position and time embeddings."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got shape {tuple(video.shape)}")
        batch, t = video.shape[:2]
        patches, h, w = self.patch_embed(rearrange(video, "b t c h w -> (b t) c h w"))  # (B*T, N, D)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, patches], dim=1) + resize_pos_embed(self.pos_embed, (h, w)))
        cls = x[:batch, :1]  # CLS + its position embedding (identical for every frame)
        x = rearrange(x[:, 1:], "(b t) n d -> (b n) t d", b=batch) + resize_time_embed(self.time_embed, t)
        x = rearrange(self.time_drop(x), "(b n) t d -> b (n t) d", b=batch)
        return torch.cat([cls, x], dim=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        num_frames = video.shape[1]
        x = self.embed(video)
        for block in self.blocks:
            if self.cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, num_frames, use_reentrant=False)
            else:
                x = block(x, num_frames)
        return self.norm(x)


def temporal_pool(tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """ALPRO's "temporal" pooling: (B, 1 + N*T, D) -> (B, 1 + N, D) = [CLS; mean over T of each patch]."""
    patches = reduce(tokens[:, 1:], "b (n t) d -> b n d", "mean", t=num_frames)
    return torch.cat([tokens[:, :1], patches], dim=1)


def frame_tokens(tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, 1 + N*T, D) -> (B, T, 1 + N, D): each frame's patches behind a copy of the [CLS] token."""
    patches = rearrange(tokens[:, 1:], "b (n t) d -> b t n d", t=num_frames)
    cls = repeat(tokens[:, :1], "b 1 d -> b t 1 d", t=num_frames)
    return torch.cat([cls, patches], dim=2)


def count_parameters(module: nn.Module, prefix: Optional[str] = None) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if prefix is None or name.startswith(prefix))
