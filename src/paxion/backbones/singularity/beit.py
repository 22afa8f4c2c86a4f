"""BEiT image encoder as Singularity uses it: relative position bias per layer, layer scale, mean pooling.

Names follow the transformers-4.x ``BeitModel`` that wrote the official checkpoint
(``encoder.layer.N.attention.attention.query`` ...). The relative position index is derived from the
patch grid on the fly (cached per grid and device) instead of being kept as a buffer: it is a pure
function of the image size, and the official loader drops the stored copy anyway.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

NUM_EXTRA_DISTANCES = 3  # table rows for cls->patch, patch->cls and cls->cls


@functools.lru_cache(maxsize=8)
def relative_position_index(grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
    """Index (N+1, N+1) into a ``(2h-1)(2w-1)+3`` row table, N = h*w patches plus the CLS token."""
    coords = torch.stack(torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")).flatten(1)  # (2, N)
    rel = rearrange(coords, "c n -> n 1 c") - rearrange(coords, "c m -> 1 m c")  # (N, N, 2)
    rel_h = rel[..., 0] + grid_h - 1
    rel_w = rel[..., 1] + grid_w - 1
    num_distances = (2 * grid_h - 1) * (2 * grid_w - 1)
    index = torch.empty(grid_h * grid_w + 1, grid_h * grid_w + 1, dtype=torch.long)
    index[1:, 1:] = rel_h * (2 * grid_w - 1) + rel_w
    index[0, :] = num_distances  # CLS as query
    index[:, 0] = num_distances + 1  # CLS as key
    index[0, 0] = num_distances + 2
    return index.to(device)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (per frame here): x (N, ...) scaled by 1/keep where kept."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    return x * x.new_empty(shape).bernoulli_(keep) / keep


class RelativePositionBias(nn.Module):
    def __init__(self, grid: tuple[int, int], heads: int) -> None:
        super().__init__()
        self.grid = grid
        rows = (2 * grid[0] - 1) * (2 * grid[1] - 1) + NUM_EXTRA_DISTANCES
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, heads))

    def forward(self) -> torch.Tensor:
        """-> bias (H, N+1, N+1) added to the attention scores."""
        index = relative_position_index(*self.grid, self.relative_position_bias_table.device)
        bias = self.relative_position_bias_table[index]  # (N+1, N+1, H)
        return rearrange(bias, "n m h -> h n m")


class BeitSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, grid: tuple[int, int]) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"BEiT width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)  # BEiT keys carry no bias
        self.value = nn.Linear(width, width)
        self.relative_position_bias = RelativePositionBias(grid, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, P, D) -> context (N, P, D)."""
        q, k, v = (
            rearrange(proj(x), "n p (h d) -> n h p d", h=self.heads) for proj in (self.query, self.key, self.value)
        )
        bias = self.relative_position_bias().to(q.dtype)  # (H, P, P), broadcast over frames
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return rearrange(context, "n h p d -> n p (h d)")


class Dense(nn.Module):
    """A Linear under the name ``dense``, optionally followed by exact GELU (BEiT's intermediate)."""

    def __init__(self, d_in: int, d_out: int, use_gelu: bool = False) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.use_gelu = use_gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense(x)
        return F.gelu(x) if self.use_gelu else x


class BeitAttention(nn.Module):
    def __init__(self, width: int, heads: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.attention = BeitSelfAttention(width, heads, grid)
        self.output = Dense(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x))


class BeitLayer(nn.Module):
    """Pre-LN block: x += dp(lambda_1 * attn(ln x)); x += dp(lambda_2 * mlp(ln x))."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_width: int,
        grid: tuple[int, int],
        layer_scale: float,
        drop_path_rate: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.attention = BeitAttention(width, heads, grid)
        self.intermediate = Dense(width, mlp_width, use_gelu=True)
        self.output = Dense(mlp_width, width)
        self.layernorm_before = nn.LayerNorm(width, eps=eps)
        self.layernorm_after = nn.LayerNorm(width, eps=eps)
        self.lambda_1 = nn.Parameter(torch.full((width,), layer_scale))
        self.lambda_2 = nn.Parameter(torch.full((width,), layer_scale))
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, P, D) -> (N, P, D)."""
        x = x + drop_path(self.lambda_1 * self.attention(self.layernorm_before(x)), self.drop_path_rate, self.training)
        mlp = self.output(self.intermediate(self.layernorm_after(x)))
        return x + drop_path(self.lambda_2 * mlp, self.drop_path_rate, self.training)


class BeitEncoder(nn.Module):
    def __init__(self, layers: list[BeitLayer]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class BeitPatchEmbeddings(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)


class BeitEmbeddings(nn.Module):
    """Patchify + CLS token; BEiT uses no absolute position embedding (the bias carries position)."""

    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.patch_embeddings = BeitPatchEmbeddings(patch_size, width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) -> tokens (N, 1 + h*w, D)."""
        patches = rearrange(self.patch_embeddings.projection(images), "n d h w -> n (h w) d")
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1)


class BeitPooler(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.layernorm = nn.LayerNorm(width, eps=eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (N, P, D) -> LayerNorm of the mean patch token (N, D); the CLS token is left out."""
        return self.layernorm(hidden[:, 1:].mean(dim=1))


class BeitModel(nn.Module):
    """``use_mean_pooling=True`` BEiT: the final LayerNorm is an identity, the pooler normalises the mean."""

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        mlp_width: int,
        layer_scale: float,
        drop_path_rate: float,
        eps: float,
        pooler: bool = True,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"BEiT image size {image_size} is not a multiple of patch size {patch_size}")
        self.image_size = image_size
        grid = (image_size // patch_size, image_size // patch_size)
        # stochastic depth grows linearly from 0 to drop_path_rate over the depth, as in BEiT
        rates = [drop_path_rate * i / max(layers - 1, 1) for i in range(layers)]
        self.embeddings = BeitEmbeddings(patch_size, width)
        self.encoder = BeitEncoder(
            [BeitLayer(width, heads, mlp_width, grid, layer_scale, rate, eps) for rate in rates]
        )
        # the QA model of the original unsets the pooler (its weights are then not part of the model)
        self.pooler = BeitPooler(width, eps) if pooler else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """images (N, 3, H, W) -> (last hidden state (N, P, D), pooled (N, D) or None without a pooler)."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"BEiT expects {self.image_size}x{self.image_size} frames, got {tuple(images.shape[-2:])}"
            )
        hidden = self.encoder(self.embeddings(images))
        return hidden, None if self.pooler is None else self.pooler(hidden)
