"""InternVideo-MM-L-14 (UniFormerV2-style ``vit_only_global_l14`` video tower + CLIP text tower).

Vision: a CLIP ViT runs on every frame independently (attention within a frame only); the outputs
of a few late blocks feed the "extractor": a running temporal CLS query that cross-attends to all
frames' tokens after a depthwise 3D conv (DPE) has mixed neighbouring frames into the patch tokens.
DPE is the only place where frame order enters. The video vector blends the extractor query with
the mean frame CLS, then ``visual_ln_post`` and ``visual_proj``.

Because the ViT never mixes frames, :meth:`InternVideo.encode_frames` holds everything that does not
depend on frame order and :meth:`InternVideo.aggregate` re-runs only the cheap extractor, so a
time-reversed clip costs one extractor pass instead of a second ViT pass.

State-dict keys are exactly the official ones after stripping ``clip.`` (see ``convert.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from paxion.backbones.base import FrameFeatures, LoadReport, Preprocess, TextInput, VideoTextBackbone
from paxion.backbones.internvideo.convert import load_official_checkpoint
from paxion.backbones.internvideo.layers import Extractor, LayerNorm, ResidualAttentionBlock, init_block_
from paxion.backbones.internvideo.tokenizer import ClipTokenizer


@dataclass(frozen=True)
class InternVideoConfig:
    """Sizes of the model; the defaults are the released InternVideo-MM-L-14."""

    image_size: int = 224
    patch_size: int = 14
    num_frames: int = 8  # what the data pipeline feeds; the model itself accepts any T
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    mlp_ratio: float = 4.0
    extractor_blocks: tuple[int, ...] = (20, 21, 22, 23)  # 0-based ViT blocks whose outputs feed the extractor
    extractor_heads: int = 16
    extractor_mlp_ratio: float = 4.0
    extractor_dropout: float = 0.5
    extractor_zero_init: bool = True  # UniFormerV2 starts the extractor as a no-op (order-blind pooled vector)
    # initial patch position embedding: normal (CLIP, std width^-0.5) | sincos (2-D sine-cosine rows of
    # amplitude 1, MAE-style: a position signal strong enough to survive training from scratch)
    visual_pos_init: str = "normal"
    embed_dim: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    logit_scale_init: float = math.log(1 / 0.07)

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not self.extractor_blocks or list(self.extractor_blocks) != sorted(set(self.extractor_blocks)):
            raise ValueError(f"extractor_blocks must be non-empty, sorted and unique, got {self.extractor_blocks}")
        if self.visual_pos_init not in ("normal", "sincos"):
            raise ValueError(f"visual_pos_init: '{self.visual_pos_init}' is not one of ['normal', 'sincos']")
        if self.extractor_blocks[0] < 0 or self.extractor_blocks[-1] >= self.vision_layers:
            raise ValueError(f"extractor_blocks {self.extractor_blocks} outside 0..{self.vision_layers - 1}")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_size**2 + 1


TINY_CONFIG = InternVideoConfig(
    image_size=32,
    patch_size=8,
    num_frames=4,
    vision_width=64,
    vision_layers=4,
    vision_heads=4,
    extractor_blocks=(2, 3),
    extractor_heads=4,
    embed_dim=32,
    text_width=32,
    text_layers=2,
    text_heads=2,
    context_length=16,
    vocab_size=64,
)


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """(grid * grid, width) rows in raster order: half the channels encode x, half y, as sines and cosines
    of geometric frequencies (MAE's fixed 2-D embedding)."""
    if width % 4:
        raise ValueError(f"a 2-D sine-cosine embedding needs width divisible by 4, got {width}")
    freqs = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width // 4))  # (W/4,)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (xs, ys) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1).float()  # (G*G, W)


def feature_key(block: int) -> str:
    """Key of a ViT block's per-frame output in :class:`FrameFeatures`."""
    return f"block{block}"


class VideoTransformer(nn.Module):
    """``visual.transformer``: the frame ViT blocks plus the extractor (``dpe``, ``dec``, ``balance``)."""

    def __init__(self, cfg: InternVideoConfig) -> None:
        super().__init__()
        width, levels = cfg.vision_width, len(cfg.extractor_blocks)
        self.grid_size = cfg.grid_size
        self.extractor_blocks = cfg.extractor_blocks
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, cfg.vision_heads, cfg.mlp_ratio) for _ in range(cfg.vision_layers)
        )
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, width))
        # depthwise over (time, h, w): the extractor's only view of frame order
        self.dpe = nn.ModuleList(nn.Conv3d(width, width, 3, padding=1, groups=width) for _ in range(levels))
        self.dec = nn.ModuleList(
            Extractor(width, cfg.extractor_heads, cfg.extractor_mlp_ratio, cfg.extractor_dropout) for _ in range(levels)
        )
        self.balance = nn.Parameter(torch.zeros(width))

    @property
    def output_keys(self) -> tuple[str, ...]:
        last = len(self.resblocks) - 1
        return tuple(feature_key(i) for i in sorted({*self.extractor_blocks, last}))

    def run_frames(self, x: torch.Tensor, batch: int) -> FrameFeatures:
        """x (B*T, P, D) embedded frames -> {block key: (B, T, P, D)} for the extractor inputs and last block."""
        keep = set(self.output_keys)
        features: FrameFeatures = {}
        for i, block in enumerate(self.resblocks):
            x = block(x)
            if feature_key(i) in keep:
                features[feature_key(i)] = rearrange(x, "(b t) p d -> b t p d", b=batch)
        return features

    def pool(self, features: FrameFeatures) -> torch.Tensor:
        """Frame features -> video vector (B, D) before ``visual_ln_post``."""
        last = features[feature_key(len(self.resblocks) - 1)]  # (B, T, P, D)
        query = self.temporal_cls_token.expand(last.shape[0], -1, -1).to(last.dtype)  # (B, 1, D)
        for block_idx, dpe, dec in zip(self.extractor_blocks, self.dpe, self.dec):
            tokens = features[feature_key(block_idx)]  # (B, T, P, D)
            cls, patches = tokens[:, :, :1], tokens[:, :, 1:]
            grid = rearrange(patches, "b t (h w) d -> b d t h w", h=self.grid_size)
            mixed = patches + rearrange(dpe(grid), "b d t h w -> b t (h w) d")
            context = rearrange(torch.cat([cls, mixed], dim=2), "b t p d -> b (t p) d")
            query = dec(query, context)
        weight = torch.sigmoid(self.balance)
        frame_cls = last[:, :, 0].mean(dim=1)  # (B, D)
        return (1 - weight) * query[:, 0] + weight * frame_cls


class VisionTower(nn.Module):
    """``visual``: framewise patchify (5-D ``conv1``), CLS + positions, ``ln_pre``, ViT + extractor."""

    def __init__(self, cfg: InternVideoConfig) -> None:
        super().__init__()
        width, patch = cfg.vision_width, cfg.patch_size
        self.image_size = cfg.image_size
        self.conv1 = nn.Conv3d(3, width, kernel_size=(1, patch, patch), stride=(1, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(cfg.tokens_per_frame, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = VideoTransformer(cfg)

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        """video (B, T, 3, H, W) -> {block key: (B, T, P, D)}."""
        if video.ndim != 5 or video.shape[2] != 3 or video.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"InternVideo expects video (B, T, 3, {self.image_size}, {self.image_size}), got {tuple(video.shape)}"
            )
        batch = video.shape[0]
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        # conv1 has a temporal kernel of 1, so a 2-D conv over all frames at once is the same computation
        x = nn.functional.conv2d(frames, self.conv1.weight.squeeze(2), stride=self.conv1.stride[1:])
        x = rearrange(x, "n d h w -> n (h w) d")  # (B*T, HW, D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B*T, P, D)
        return self.transformer.run_frames(self.ln_pre(x), batch)


class TextTransformer(nn.Module):
    """Top-level ``transformer``: the causal text blocks (the name the official keys use)."""

    def __init__(self, cfg: InternVideoConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(cfg.text_width, cfg.text_heads, cfg.mlp_ratio) for _ in range(cfg.text_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D), causal."""
        for block in self.resblocks:
            x = block(x, is_causal=True)
        return x


class InternVideo(VideoTextBackbone):
    """InternVideo-MM-L-14 behind the :class:`VideoTextBackbone` contract; any size via its config."""

    frame_order_invariant_frames = True

    def __init__(self, cfg: InternVideoConfig = InternVideoConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_width = cfg.vision_width
        self.text_width = cfg.text_width
        self.embed_dim = cfg.embed_dim
        self.tokens_per_frame = cfg.tokens_per_frame
        self.preprocess = Preprocess(num_frames=cfg.num_frames, image_size=cfg.image_size)
        self.tokenizer = ClipTokenizer(cfg.context_length, cfg.vocab_size)

        self.visual = VisionTower(cfg)
        self.visual_ln_post = LayerNorm(cfg.vision_width)
        self.visual_proj = nn.Parameter(torch.empty(cfg.vision_width, cfg.embed_dim))  # x @ W layout

        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.text_width))
        self.transformer = TextTransformer(cfg)
        self.ln_final = LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.text_width, cfg.embed_dim))
        self.text_mask_embedding = nn.Parameter(torch.empty(1, 1, cfg.text_width))  # MLM-only, kept for the keys
        self.logit_scale_param = nn.Parameter(torch.empty(()))
        self.init_parameters()

    def init_parameters(self) -> None:
        """CLIP-style init, UniFormerV2's zero-initialised extractor outputs unless the config says otherwise."""
        cfg = self.cfg
        vision_scale = cfg.vision_width**-0.5
        nn.init.normal_(self.visual.class_embedding, std=vision_scale)
        nn.init.normal_(self.visual.positional_embedding, std=vision_scale)
        if cfg.visual_pos_init == "sincos":
            with torch.no_grad():
                self.visual.positional_embedding[0].zero_()  # the class token has no place in the grid
                self.visual.positional_embedding[1:] = sincos_2d(cfg.grid_size, cfg.vision_width)
        nn.init.normal_(self.visual_proj, std=vision_scale)
        for block in self.visual.transformer.resblocks:
            init_block_(block, cfg.vision_layers)
        video = self.visual.transformer
        for dpe in video.dpe:
            nn.init.zeros_(dpe.bias)
        for dec in video.dec:
            init_block_(dec, len(video.dec), zero_out=cfg.extractor_zero_init)
        if not cfg.extractor_zero_init:
            nn.init.normal_(video.temporal_cls_token, std=vision_scale)

        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.resblocks:
            init_block_(block, cfg.text_layers)
        nn.init.normal_(self.text_projection, std=cfg.text_width**-0.5)
        nn.init.normal_(self.text_mask_embedding, std=0.02)
        nn.init.constant_(self.logit_scale_param, cfg.logit_scale_init)

    # The official key is ``logit_scale``, but the contract needs ``logit_scale()`` as a method.
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "logit_scale"] = destination.pop(prefix + "logit_scale_param")

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        if prefix + "logit_scale" in state_dict:
            state_dict[prefix + "logit_scale_param"] = state_dict.pop(prefix + "logit_scale")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        """video (B, T, 3, H, W) normalised -> {"block<i>": (B, T, P, D_v)} for the extractor blocks and the last."""
        return self.visual.encode_frames(video)

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """-> pooled (B, E) unnormalised, tokens (B, T, P, D_v): last block output before ``ln_post``."""
        missing = [key for key in self.visual.transformer.output_keys if key not in features]
        if missing:
            raise KeyError(f"InternVideo.aggregate: frame features lack {missing}; got {sorted(features)}")
        video = self.visual.transformer.pool(features)  # (B, D_v)
        pooled = self.visual_ln_post(video) @ self.visual_proj.to(video.dtype)
        tokens = features[feature_key(self.cfg.vision_layers - 1)]
        return pooled, tokens

    def encode_text(self, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        """-> pooled (B, E) at the EOT (largest id), tokens (B, L, D_t) after ``ln_final``."""
        ids = text["input_ids"].to(self.token_embedding.weight.device)  # (B, L)
        if ids.ndim != 2 or ids.shape[1] > self.cfg.context_length:
            raise ValueError(f"input_ids must be (B, L<= {self.cfg.context_length}), got {tuple(ids.shape)}")
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        x = self.ln_final(self.transformer(x))  # (B, L, D_t)
        eot = x[torch.arange(x.shape[0], device=x.device), ids.argmax(dim=-1)]  # (B, D_t)
        return eot @ self.text_projection.to(eot.dtype), x

    def tokenize(self, texts: list[str]) -> TextInput:
        """CLIP BPE, padded/truncated to ``context_length`` with EOT kept last; int64 on CPU."""
        return self.tokenizer(texts)

    def logit_scale(self) -> torch.Tensor:
        return self.logit_scale_param.exp()

    def visual_projection_weight(self) -> torch.Tensor:
        return self.visual_proj.t()  # stored (Dv, E) for x @ W

    def load_official_checkpoint(self, path: str) -> LoadReport:
        """Load ``InternVideo-MM-L-14.ckpt`` as released (see ``convert.py``); returns the model in eval mode."""
        return load_official_checkpoint(self, path)
