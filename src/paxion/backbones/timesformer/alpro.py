"""ALPRO's encoders as a frozen backbone for the Knowledge Patcher.

ALPRO (Li et al., 2022): TimeSformer ViT-B/16 video encoder, BERT-base whose first ``fusion_layer``
layers encode text alone (the rest jointly encode [text; video] tokens; not needed here), 256-d
projections of the two [CLS] tokens and a temperature.

What Paxion reads from it:

* tokens (B, T, 1+N, D): the final TimeSformer tokens of each frame behind a copy of the video
  [CLS] token (the divided attention mixes frames, so ``encode_frames`` is the raw clip and
  ``aggregate`` the full pass: ``frame_order_invariant_frames = False``);
* pooled video (B, 256): ``vision_proj`` of the video [CLS] token;
* text: ``text_proj`` of the text [CLS] token after the text-only layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from paxion.backbones.base import FrameFeatures, LoadReport, Preprocess, VideoTextBackbone
from paxion.backbones.singularity.bert import BertTextEncoder, bert_init_
from paxion.backbones.singularity.text_side import BertTextSide
from paxion.backbones.timesformer.vit import (
    TIMESFORMER_BASE, TIMESFORMER_TINY, TimeSformer, TimeSformerConfig, frame_tokens,
)


@dataclass(frozen=True)
class AlproWidths:
    """Widths and depths of ALPRO; the defaults are the released model (``base_model.json``)."""

    video: TimeSformerConfig = field(default_factory=lambda: TIMESFORMER_BASE)
    text_width: int = 768
    text_layers: int = 12
    fusion_layer: int = 6  # layers 0..5 text only, 6..11 joint [text; video] self-attention
    text_heads: int = 12
    text_mlp_width: int = 3072
    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    eps: float = 1e-12
    embed_dim: int = 256
    temp_init: float = 0.07
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.fusion_layer < self.text_layers:
            raise ValueError(f"fusion_layer must be in 1..{self.text_layers - 1} (text_layers - 1), "
                             f"got {self.fusion_layer}")
        if self.video.width != self.text_width:
            raise ValueError(f"joint self-attention needs video width {self.video.width} == text width "
                             f"{self.text_width}")


ALPRO_BASE = AlproWidths()
# test-sized: 2x2 patch grid, 4 frames, 2 text-only + 2 joint layers; the real WordPiece vocab is kept
ALPRO_TINY = AlproWidths(
    video=TIMESFORMER_TINY, text_width=64, text_layers=4, fusion_layer=2, text_heads=4, text_mlp_width=128,
    max_positions=64, embed_dim=16,
)


def build_text_encoder(w: AlproWidths, layers: int) -> BertTextEncoder:
    """BERT with self-attention only in every layer (ALPRO's fusion concatenates, it does not cross-attend)."""
    return BertTextEncoder(
        vocab_size=w.vocab_size, max_positions=w.max_positions, type_vocab_size=w.type_vocab_size,
        width=w.text_width, layers=layers, heads=w.text_heads, mlp_width=w.text_mlp_width,
        dropout=w.dropout, eps=w.eps,
    )


class AlproBackbone(BertTextSide, VideoTextBackbone):
    """Frozen-backbone view of ALPRO; parameter names are the system's (``convert`` maps release files)."""

    frame_order_invariant_frames = False  # temporal attention mixes frames

    def __init__(self, widths: AlproWidths = ALPRO_BASE) -> None:
        super().__init__()
        self.widths = widths
        self.vision_width = widths.video.width
        self.text_width = widths.text_width
        self.embed_dim = widths.embed_dim
        self.tokens_per_frame = widths.video.grid ** 2 + 1
        self.preprocess = Preprocess(num_frames=widths.video.num_frames, image_size=widths.video.image_size)
        self.visual_encoder = TimeSformer(widths.video)
        self.text_encoder = build_text_encoder(widths, widths.fusion_layer)  # text-only layers
        self.vision_proj = nn.Linear(self.vision_width, widths.embed_dim)
        self.text_proj = nn.Linear(widths.text_width, widths.embed_dim)
        self.temp = nn.Parameter(torch.tensor(widths.temp_init))
        bert_init_(self, widths.init_std, skip="visual_encoder")

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        return {"video": video}

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """{"video": (B, T, 3, H, W)} -> (pooled (B, E), tokens (B, T, 1+N, D))."""
        video = features["video"]
        tokens = self.visual_encoder(video)  # (B, 1 + N*T, D)
        return self.vision_proj(tokens[:, 0]), frame_tokens(tokens, video.shape[1])

    def load_official_checkpoint(self, path: str) -> LoadReport:
        from paxion.backbones.timesformer.convert import load_alpro_checkpoint

        return load_alpro_checkpoint(self, path)
