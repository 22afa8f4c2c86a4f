"""CLIP-ViP-B/32: a CLIP whose vision tower sees a whole clip through video proxy tokens.

Parameter names follow the original ``VidCLIP.clipmodel`` (HF ``CLIPModel`` layout), so the official
file maps onto :class:`CLIPViPModel` with only its two ``position_ids`` buffers left over.

Vision sequence: ``[cls, added_cls x A, frame_0 patches, ..., frame_{T-1} patches]`` with M = 1 + A
proxies. Proxies attend to every token; a patch attends to the proxies and to its own frame only.
That structure is one additive block mask handed to ``scaled_dot_product_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from paxion.backbones.base import FrameFeatures, LoadReport, Preprocess, TextInput, VideoTextBackbone
from paxion.backbones.clipvip.convert import load_official_checkpoint


@dataclass(frozen=True)
class CLIPViPConfig:
    """Sizes of CLIP-ViP; the defaults are the released B/32 (``pretrain_clipvip_base_32``)."""

    image_size: int = 224
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp: int = 3072
    add_cls_num: int = 3  # extra video proxies next to CLIP's CLS
    temporal_size: int = 12  # rows of the learned temporal embedding; other T are resampled linearly
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_mlp: int = 2048
    vocab_size: int = 49408
    max_positions: int = 77
    embed_dim: int = 512
    logit_scale_init: float = 4.60  # overwritten by the checkpoint
    layer_norm_eps: float = 1e-5
    num_frames: int = 8  # frames Paxion feeds (not a parameter shape)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with HF CLIP's separate q/k/v/out projections."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, D), mask broadcastable to (B, h, N, N): bool (True = attend) or additive."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        q, k, v = (rearrange(proj(x), "b n (h d) -> b h n d", h=self.heads) for proj in projections)
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)  # SDPA wants an additive mask in the query dtype (bf16 under autocast)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # default scale = 1/sqrt(head_dim)
        return self.out_proj(rearrange(out, "b h n d -> b n (h d)"))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Pre-LN CLIP block (``CLIPEncoderLayer`` names)."""

    def __init__(self, width: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.self_attn = Attention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width, eps=eps)
        self.mlp = MLP(width, hidden)
        self.layer_norm2 = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(width, heads, hidden, eps) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class ViPEmbeddings(nn.Module):
    """Patch + temporal + spatial embeddings of every frame, preceded by the M video proxies."""

    def __init__(self, cfg: CLIPViPConfig) -> None:
        super().__init__()
        width = cfg.vision_width
        self.grid = cfg.image_size // cfg.patch_size
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.added_cls = nn.Parameter(torch.randn(cfg.add_cls_num, width) * width**-0.5)
        self.temporal_embedding = nn.Parameter(torch.zeros(1, cfg.temporal_size, width))
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.position_embedding = nn.Embedding(self.grid**2 + 1, width)

    def temporal(self, num_frames: int) -> torch.Tensor:
        """(1, T, D): the learned rows, linearly resampled when T differs from ``temporal_size``."""
        table = self.temporal_embedding
        if num_frames == table.shape[1]:
            return table
        channels_first = rearrange(table, "1 t d -> 1 d t")
        resampled = F.interpolate(channels_first, size=num_frames, mode="linear", align_corners=False)
        return rearrange(resampled, "1 d t -> 1 t d")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, 3, H, W) -> embeddings (B, M + T*P, D)."""
        batch, frames = video.shape[:2]
        patches = self.patch_embedding(rearrange(video, "b t c h w -> (b t) c h w"))  # (B*T, D, g, g)
        patches = rearrange(patches, "(b t) d gh gw -> b t (gh gw) d", b=batch)  # (B, T, P, D)
        positions = self.position_embedding.weight  # (1 + P, D)
        patches = patches + rearrange(self.temporal(frames), "1 t d -> 1 t 1 d") + positions[1:]
        # every proxy shares CLS's position row 0 and gets no temporal embedding
        proxies = torch.cat([self.class_embedding[None], self.added_cls]) + positions[:1]  # (M, D)
        proxies = repeat(proxies, "m d -> b m d", b=batch)
        return torch.cat([proxies, rearrange(patches, "b t p d -> b (t p) d")], dim=1)


def vip_attention_mask(
    num_proxies: int, frames: int, patches: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(N, N) additive mask, N = M + T*P: 0 where a query may attend, -inf elsewhere."""
    proxy_frame = torch.full((num_proxies,), -1, device=device)
    patch_frame = repeat(torch.arange(frames, device=device), "t -> (t p)", p=patches)
    frame_of = torch.cat([proxy_frame, patch_frame])  # (N,) frame index, -1 for proxies
    is_proxy = frame_of < 0
    allowed = is_proxy[:, None] | is_proxy[None, :] | (frame_of[:, None] == frame_of[None, :])
    mask = torch.zeros(allowed.shape, device=device, dtype=dtype)
    return mask.masked_fill(~allowed, float("-inf"))


class ViPVisionModel(nn.Module):
    def __init__(self, cfg: CLIPViPConfig) -> None:
        super().__init__()
        self.num_proxies = 1 + cfg.add_cls_num
        self.embeddings = ViPEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.vision_width, eps=cfg.layer_norm_eps)  # upstream spelling
        width, eps = cfg.vision_width, cfg.layer_norm_eps
        self.encoder = Encoder(width, cfg.vision_layers, cfg.vision_heads, cfg.vision_mlp, eps)
        self.post_layernorm = nn.LayerNorm(cfg.vision_width, eps=cfg.layer_norm_eps)
        # Built once per (T, device, dtype); a plain dict keeps it out of the state dict.
        self._mask_cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def attention_mask(self, frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (frames, device, dtype)
        if key not in self._mask_cache:
            patches = self.embeddings.grid**2
            self._mask_cache[key] = vip_attention_mask(self.num_proxies, frames, patches, device, dtype)
        return self._mask_cache[key]

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, 3, H, W) -> (pooled (B, D) after post-LN, last hidden state (B, M + T*P, D))."""
        x = self.pre_layrnorm(self.embeddings(video))
        device_type = video.device.type
        # the mask must match the query dtype, which autocast decides; meta has no autocast state (it raises)
        autocast = device_type != "meta" and torch.is_autocast_enabled(device_type)
        mask_dtype = torch.get_autocast_dtype(device_type) if autocast else x.dtype
        x = self.encoder(x, self.attention_mask(video.shape[1], video.device, mask_dtype))
        return self.post_layernorm(x[:, 0]), x  # only the first proxy (CLIP's CLS) is pooled


class TextEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPViPConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.position_embedding = nn.Embedding(cfg.max_positions, cfg.text_width)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L) -> (B, L, D)."""
        return self.token_embedding(input_ids) + self.position_embedding.weight[: input_ids.shape[1]]


class TextModel(nn.Module):
    def __init__(self, cfg: CLIPViPConfig) -> None:
        super().__init__()
        self.max_positions = cfg.max_positions
        self.embeddings = TextEmbeddings(cfg)
        self.encoder = Encoder(cfg.text_width, cfg.text_layers, cfg.text_heads, cfg.text_mlp, cfg.layer_norm_eps)
        self.final_layer_norm = nn.LayerNorm(cfg.text_width, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask (B, L) -> (pooled (B, D) at the EOT = max id, hidden states (B, L, D))."""
        length = input_ids.shape[1]
        if length > self.max_positions:
            raise ValueError(f"text of {length} tokens exceeds the {self.max_positions} positions of the text model")
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
        mask = causal & rearrange(attention_mask.bool(), "b l -> b 1 1 l")  # (B, 1, L, L)
        x = self.final_layer_norm(self.encoder(self.embeddings(input_ids), mask))
        eot = input_ids.argmax(dim=-1)  # first maximum, so EOT padding after the caption is harmless
        return x[torch.arange(x.shape[0], device=x.device), eot], x


class CLIPViPModel(nn.Module):
    """The parameters of the original ``VidCLIP.clipmodel``."""

    def __init__(self, cfg: CLIPViPConfig) -> None:
        super().__init__()
        self.vision_model = ViPVisionModel(cfg)
        self.text_model = TextModel(cfg)
        self.visual_projection = nn.Linear(cfg.vision_width, cfg.embed_dim, bias=False)
        self.text_projection = nn.Linear(cfg.text_width, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.full((), cfg.logit_scale_init))


class CLIPViPBackbone(VideoTextBackbone):
    """CLIP-ViP behind the backbone contract; the proxies see every frame, so ``aggregate`` runs the ViT."""

    frame_order_invariant_frames = False

    def __init__(self, cfg: CLIPViPConfig = CLIPViPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.clipmodel = CLIPViPModel(cfg)  # same attribute name as upstream, so checkpoint keys match
        self.vision_width = cfg.vision_width
        self.text_width = cfg.text_width
        self.embed_dim = cfg.embed_dim
        self.tokens_per_frame = (cfg.image_size // cfg.patch_size) ** 2
        self.num_proxies = 1 + cfg.add_cls_num
        self.preprocess = Preprocess(num_frames=cfg.num_frames, image_size=cfg.image_size)
        self._tokenizer = None  # built on first use; the full BPE takes a moment to load

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        """Identity: the ViT cannot run per frame because the proxies attend across frames."""
        return {"video": video}

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """{"video": (B, T, 3, H, W)} -> (pooled (B, E), tokens (B, T, P, D_v) without proxies or post-LN)."""
        pooled, hidden = self.clipmodel.vision_model(features["video"])
        tokens = rearrange(hidden[:, self.num_proxies :], "b (t p) d -> b t p d", p=self.tokens_per_frame)
        return self.clipmodel.visual_projection(pooled), tokens

    def encode_text(self, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        """{"input_ids", "attention_mask"} (B, L) -> (pooled (B, E), tokens (B, L, D_t) after the final LN)."""
        pooled, hidden = self.clipmodel.text_model(text["input_ids"], text["attention_mask"])
        return self.clipmodel.text_projection(pooled), hidden

    def tokenize(self, texts: list[str]) -> TextInput:
        if self._tokenizer is None:
            # imported here so that ``import paxion`` does not pay for loading transformers
            from paxion.backbones.clipvip.tokenizer import CLIPViPTokenizer

            self._tokenizer = CLIPViPTokenizer(context_length=self.cfg.max_positions, vocab_size=self.cfg.vocab_size)
        return self._tokenizer(texts)

    def logit_scale(self) -> torch.Tensor:
        return self.clipmodel.logit_scale.exp()

    def visual_projection_weight(self) -> torch.Tensor:
        return self.clipmodel.visual_projection.weight  # (E, Dv)

    def load_official_checkpoint(self, path: str) -> LoadReport:
        return load_official_checkpoint(self, path)
