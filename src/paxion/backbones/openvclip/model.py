"""Open-VCLIP's temporal CLIP: OpenAI CLIP whose vision tower lets each frame attend to its neighbours.

Parameter names are OpenAI CLIP's (``visual.conv1.weight``, ``visual.transformer.resblocks.0.attn.
in_proj_weight``, ``transformer.resblocks.0.mlp.c_fc.weight``, ``ln_final.weight``, ...), so the CLIP
file and the Open-VCLIP release map onto :class:`TemporalCLIP` key for key. The temporal variants
listed in :mod:`.temporal` add no parameters: the state dict is image CLIP's, which is what lets
weights be interpolated with the original CLIP.

Vision: frames (B, T, 3, H, W) -> per-frame tokens (B, T, 1 + P, D) -> blocks whose attention sees
the neighbour frames -> ``ln_post`` of each frame's CLS, projected: frame embeddings (B, T, E).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from paxion.backbones.base import FrameFeatures, LoadReport, Preprocess, TextInput, VideoTextBackbone
from paxion.backbones.clipvip.model import quick_gelu
from paxion.backbones.openvclip.temporal import ADAPTER_TYPES, check_type, temporal_attention


@dataclass(frozen=True)
class OpenVCLIPConfig:
    """Sizes of CLIP; the defaults are ViT-B/16 (the Open-VCLIP release), 8 frames, expand_temporal_view."""

    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12  # CLIP: width // 64
    embed_dim: int = 512
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    num_frames: int = 8
    temporal_modeling: str = "expand_temporal_view"
    mask_clip_ends: bool = False  # original: missing neighbours are zero keys/values, not masked out
    fixed_channel_shift: bool = False  # original: channel_shift reads its buffer back in a mixed layout
    # original: a CLIP file's Linear/Conv/attention-projection weights pass through fp16 on loading
    clip_fp16_cast: bool = True

    def __post_init__(self) -> None:
        check_type(self.temporal_modeling)
        towers = (("vision", self.vision_width, self.vision_heads), ("text", self.text_width, self.text_heads))
        for tower, width, heads in towers:
            if width % heads:
                raise ValueError(f"{tower} width {width} is not divisible by {heads} heads")


class MLP(nn.Module):
    """CLIP's ``mlp.c_fc`` / ``mlp.c_proj`` with QuickGELU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(quick_gelu(self.c_fc(x)))


class PackedAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (packed ``in_proj``), computed with SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., N, D) -> q, k, v (..., h, N, d)."""
        parts = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (rearrange(p, "... n (h d) -> ... h n d", h=self.heads) for p in parts)
        return q, k, v

    def project(self, out: torch.Tensor) -> torch.Tensor:
        return self.out_proj(rearrange(out, "... h n d -> ... n (h d)"))


class TextBlock(nn.Module):
    """Pre-LN residual block with a causal mask (CLIP's text transformer)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = PackedAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        q, k, v = self.attn.qkv(self.ln_1(x))
        x = x + self.attn.project(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return x + self.mlp(self.ln_2(x))


class FrameBlock(nn.Module):
    """CLIP vision block whose attention of frame t sees the neighbour frames chosen by ``temporal_modeling``.

    ``cross_frame_attend`` and ``stadapt_zeroinit`` add their modules under the original's names.
    """

    def __init__(self, width: int, heads: int, cfg: OpenVCLIPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.temporal_modeling
        if self.kind == "cross_frame_attend":
            self.message_fc = nn.Linear(width, width)
            self.message_ln = nn.LayerNorm(width)
            self.message_attn = PackedAttention(width, heads)
        elif self.kind == "stadapt_zeroinit":
            half = width // 2
            self.stadapt_down_1 = nn.Conv3d(width, half, kernel_size=1)
            self.stadapt_conv3d_1 = nn.Conv3d(half, half, kernel_size=(3, 1, 1), padding="same", groups=half)
            self.stadapt_up_1 = nn.Conv3d(half, width, kernel_size=1)
            nn.init.zeros_(self.stadapt_up_1.weight)
            nn.init.zeros_(self.stadapt_up_1.bias)
        self.attn = PackedAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width)

    def messages(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, N, D) -> one message token per frame (B, T, 1, D): CLS -> fc, then attention across frames."""
        msg = self.message_fc(x[:, :, 0])  # (B, T, D)
        q, k, v = self.message_attn.qkv(self.message_ln(msg))  # (B, h, T, d)
        return (msg + self.message_attn.project(F.scaled_dot_product_attention(q, k, v)))[:, :, None]

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, 1 + P, D) -> the same with the zero-initialised spatio-temporal adapter added to the patches."""
        grid = math.isqrt(x.shape[2] - 1)
        patches = rearrange(x[:, :, 1:], "b t (h w) d -> b d t h w", h=grid)
        delta = self.stadapt_up_1(self.stadapt_conv3d_1(self.stadapt_down_1(patches)))
        return torch.cat([x[:, :, :1], x[:, :, 1:] + rearrange(delta, "b d t h w -> b t (h w) d")], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, N, D) -> (B, T, N, D)."""
        cfg, tokens = self.cfg, x.shape[2]
        if self.kind == "stadapt_zeroinit":
            x = self.adapt(x)
        if self.kind == "cross_frame_attend":
            x = torch.cat([x, self.messages(x)], dim=2)  # (B, T, N + 1, D)
        q, k, v = self.attn.qkv(self.ln_1(x))  # (B, T, h, N, d)
        if self.kind in ADAPTER_TYPES:  # their attention is image CLIP's, frame by frame
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = temporal_attention(q, k, v, cfg.temporal_modeling, cfg.mask_clip_ends, cfg.fixed_channel_shift)
        x = (x + self.attn.project(out))[:, :, :tokens]  # message tokens leave after attention
        return x + self.mlp(self.ln_2(x))


class Blocks(nn.Module):
    """``transformer.resblocks`` of either tower."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class TemporalVisionTransformer(nn.Module):
    """CLIP's ``visual`` tower over the frames of a clip."""

    def __init__(self, cfg: OpenVCLIPConfig) -> None:
        super().__init__()
        width, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Blocks([FrameBlock(width, cfg.vision_heads, cfg) for _ in range(cfg.vision_layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, cfg.embed_dim))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, 3, H, W) -> (frame embeddings (B, T, E), tokens (B, T, 1 + P, D) before ln_post)."""
        batch = video.shape[0]
        x = self.conv1(rearrange(video, "b t c h w -> (b t) c h w"))  # (B*T, D, g, g)
        x = rearrange(x, "(b t) d gh gw -> b t (gh gw) d", b=batch)
        cls = self.class_embedding.to(x.dtype).expand(*x.shape[:2], 1, -1)
        x = torch.cat([cls, x], dim=2) + self.positional_embedding.to(x.dtype)  # (B, T, 1 + P, D)
        tokens = self.transformer(self.ln_pre(x))
        return self.ln_post(tokens[:, :, 0]) @ self.proj, tokens


class TemporalCLIP(nn.Module):
    """The parameters of OpenAI CLIP (ViT), with the temporal vision tower."""

    def __init__(self, cfg: OpenVCLIPConfig) -> None:
        super().__init__()
        self.visual = TemporalVisionTransformer(cfg)
        self.transformer = Blocks([TextBlock(cfg.text_width, cfg.text_heads) for _ in range(cfg.text_layers)])
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.text_width) * 0.01)
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.randn(cfg.text_width, cfg.embed_dim) * cfg.text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_text(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, L) -> (pooled (B, E) at the EOT = max id, tokens (B, L, D) after ln_final)."""
        length = input_ids.shape[1]
        if length > self.positional_embedding.shape[0]:
            raise ValueError(f"text of {length} tokens exceeds the {self.positional_embedding.shape[0]} positions")
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = self.ln_final(self.transformer(x))
        eot = input_ids.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection, x


class OpenVCLIPBackbone(VideoTextBackbone):
    """Temporal CLIP behind the backbone contract; frames see their neighbours, so ``aggregate`` runs the ViT."""

    def __init__(self, cfg: OpenVCLIPConfig = OpenVCLIPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = TemporalCLIP(cfg)  # attribute name of the original, so release keys are "model.<CLIP key>"
        self.vision_width = cfg.vision_width
        self.text_width = cfg.text_width
        self.embed_dim = cfg.embed_dim
        self.tokens_per_frame = (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.preprocess = Preprocess(num_frames=cfg.num_frames, image_size=cfg.image_size)
        self.frame_order_invariant_frames = cfg.temporal_modeling == "none"
        self._tokenizer = None

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        """Identity: with temporal attention the ViT cannot run frame by frame."""
        return {"video": video}

    def frame_embeddings(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, 3, H, W) normalised -> (per-frame embeddings (B, T, E), tokens (B, T, 1 + P, D_v))."""
        return self.model.visual(video)

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """{"video"} -> (mean of the frame embeddings (B, E), tokens (B, T, 1 + P, D_v))."""
        frames, tokens = self.frame_embeddings(features["video"])
        return frames.mean(dim=1), tokens

    def encode_text(self, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_text(text["input_ids"])

    def tokenize(self, texts: list[str]) -> TextInput:
        """``clip.tokenize``'s ids (OpenAI's text clean-up, 0 after the EOT up to ``context_length``; a text
        longer than that raises, as the original's does); ids folded for tiny vocabularies."""
        if self._tokenizer is None:
            from paxion.backbones.clipvip.tokenizer import CLIPViPTokenizer

            self._tokenizer = CLIPViPTokenizer(self.cfg.context_length, self.cfg.vocab_size, clean=True)
        out = self._tokenizer(texts)
        out["input_ids"] = out["input_ids"] * out["attention_mask"]  # clip.tokenize: 0 after the EOT, not EOT
        pad = self.cfg.context_length - out["input_ids"].shape[1]
        # clip.tokenize pads with 0 up to the context length; the EOT argmax and causal mask make padding inert
        return {key: F.pad(value, (0, pad)) for key, value in out.items()}

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def visual_projection_weight(self) -> torch.Tensor:
        return self.model.visual.proj.t()  # (E, D_v)

    def load_official_checkpoint(self, path: str) -> LoadReport:
        """A CLIP file (its Linear/Conv/projection tensors rounded through fp16 as the original loads them,
        unless ``clip_fp16_cast`` is off) or an Open-VCLIP release/SlowFast file (as stored)."""
        from paxion.backbones.openvclip.convert import load_openvclip_checkpoint

        return load_openvclip_checkpoint(self, path, self.cfg.clip_fp16_cast, self.cfg.temporal_modeling)
