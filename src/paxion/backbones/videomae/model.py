"""VideoMAE's fine-tuning ViT: tubelet embedding, fixed sinusoidal positions, mean pooling, a linear head.

    video (B, C, T, H, W) --Conv3d(t x p x p, stride the same)--> tokens (B, N, D),
                            N = (T / t) * (H / p) * (W / p), time-major (slice 0 first)
    tokens + sinusoid table (fixed, not a parameter; no CLS token)
    -> depth x Block (pre-norm; attention with q and v biases but no k bias; GELU MLP; drop-path)
    -> fc_norm(mean over tokens) -> dropout -> head (B, num_classes)

Parameter names are VideoMAE's (``patch_embed.proj``, ``blocks.N.attn.qkv``/``q_bias``/``v_bias``,
``fc_norm``, ``head``), so a fine-tuned state dict loads as is; :mod:`.convert` handles the containers,
prefixes and pre-training files. ``forward_tokens`` takes modules to run after given blocks, which is
how a frozen LLM block (``paxion.modules.frozen_llm_block``) is inserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VideoMAEConfig:
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    num_frames: int = 16
    image_size: int = 224
    in_chans: int = 3
    num_classes: int = 174
    qkv_bias: bool = True  # q and v biases (k has none), as VideoMAE
    norm_eps: float = 1e-6
    init_values: float = 0.0  # > 0: layer-scale gammas (unused by the SSv2 recipes)
    drop_path_rate: float = 0.1  # linearly increasing over the blocks
    fc_drop_rate: float = 0.0
    init_scale: float = 0.001  # head weights and bias scaled by this after init (the original's --init_scale)

    def __post_init__(self) -> None:
        if self.num_frames % self.tubelet_size or self.image_size % self.patch_size:
            raise ValueError(
                f"num_frames {self.num_frames} must divide by tubelet_size {self.tubelet_size} and "
                f"image_size {self.image_size} by patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T/t, H/p, W/p): tubelet grid of one clip."""
        side = self.image_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w


VIDEOMAE_VIT_S = VideoMAEConfig(embed_dim=384, depth=12, num_heads=6)
VIDEOMAE_VIT_B = VideoMAEConfig(embed_dim=768, depth=12, num_heads=12)
VIDEOMAE_VIT_TINY = VideoMAEConfig(
    embed_dim=32, depth=2, num_heads=2, patch_size=8, num_frames=4, image_size=32, num_classes=20
)
# the CPU demo's encoder: big enough to learn SynthAction's 20 templates from scratch in minutes
VIDEOMAE_VIT_MINI = VideoMAEConfig(
    embed_dim=96, depth=4, num_heads=4, patch_size=8, num_frames=8, image_size=32, num_classes=20
)
VARIANTS: dict[str, VideoMAEConfig] = {
    "videomae_vit_s": VIDEOMAE_VIT_S,
    "videomae_vit_b": VIDEOMAE_VIT_B,
    "videomae_vit_tiny": VIDEOMAE_VIT_TINY,
    "videomae_vit_mini": VIDEOMAE_VIT_MINI,
}


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """(1, N, D) float32: sin on even channels, cos on odd, angle pos / 10000^(2*(j//2)/D)."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (N, 1)
    j = torch.arange(dim, dtype=torch.float64)
    angles = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)  # (N, D)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()[None]


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``prob``, rescale the rest."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VideoMAEConfig) -> None:
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, N, D), N ordered (t, h, w)."""
        return self.proj(video).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])  # k has no bias
        qkv = F.linear(x, self.qkv.weight, bias).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d_h)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d_h)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: VideoMAEConfig, drop_path_prob: float) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.drop_path_prob = drop_path_prob
        if cfg.init_values > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), cfg.init_values))
            self.gamma_2 = nn.Parameter(torch.full((dim,), cfg.init_values))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn(self.norm1(x))
        x = x + drop_path(a if self.gamma_1 is None else self.gamma_1 * a, self.drop_path_prob, self.training)
        m = self.mlp(self.norm2(x))
        return x + drop_path(m if self.gamma_2 is None else self.gamma_2 * m, self.drop_path_prob, self.training)


class VideoMAEViT(nn.Module):
    """The encoder and its classification head (``num_classes == 0``: no head, ``forward`` gives pooled features)."""

    def __init__(self, cfg: VideoMAEConfig = VIDEOMAE_VIT_B) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.register_buffer("pos_embed", sinusoid_table(cfg.num_patches, cfg.embed_dim), persistent=False)
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # linspace(0, rate, depth)
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.fc_dropout = nn.Dropout(cfg.fc_drop_rate)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """VideoMAE's init: truncated normal (std 0.02) linears, zero biases, unit LayerNorms; head scaled."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(self.cfg.init_scale)
                self.head.bias.mul_(self.cfg.init_scale)

    def num_layers(self) -> int:
        return len(self.blocks)

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) normalised float -> tokens with positions (B, N, D)."""
        _, _, t, h, w = video.shape
        cfg = self.cfg
        if (t, h, w) != (cfg.num_frames, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"VideoMAE expects clips of {cfg.num_frames} frames at {cfg.image_size}x{cfg.image_size}, "
                f"got {t} frames at {h}x{w}"
            )
        return self.patch_embed(video) + self.pos_embed.to(video.dtype)

    def forward_tokens(
        self, video: torch.Tensor, after_block: Optional[Mapping[int, nn.Module]] = None
    ) -> torch.Tensor:
        """(B, C, T, H, W) -> tokens after the last block (B, N, D); ``after_block[i]`` runs after block i."""
        x = self.embed(video)
        after_block = after_block or {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in after_block:
                x = after_block[i](x)
        return x

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> fc_norm(mean over tokens) (B, D)."""
        return self.fc_norm(tokens.mean(1))

    def classify_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> logits (B, num_classes)."""
        return self.head(self.fc_dropout(self.pool(tokens)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> logits (B, num_classes)."""
        return self.classify_tokens(self.forward_tokens(video))

