"""Singularity-temporal: per-frame BEiT + 2-layer temporal BERT over time + BERT text encoder.

What Paxion reads from it:

* video tokens (B, T, 197, 768): BEiT last hidden state -> ``vision_layernorm`` -> + temporal
  embedding -> temporal encoder (attention across the T frames at each token position);
* pooled video (B, 256): mean over frames of ``vision_proj`` of the per-frame BEiT pooler output,
  which never sees the temporal encoder, so the pooled vector ignores frame order by design;
* text: ``text_proj`` of the CLS token after the first ``fusion_layer`` BERT layers, the text
  tokenised as Singularity's own tokenizer does (``[CLS] X``, no ``[SEP]``).

The per-frame BEiT pass is ``encode_frames``; a time-reversed clip only re-runs ``aggregate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from paxion.backbones.base import FrameFeatures, LoadReport, Preprocess, VideoTextBackbone
from paxion.backbones.singularity.beit import BeitModel
from paxion.backbones.singularity.bert import BertEncoder, BertTextEncoder, bert_init_
from paxion.backbones.singularity.convert import load_official_checkpoint
from paxion.backbones.singularity.text_side import BertTextSide


@dataclass(frozen=True)
class SingularityConfig:
    """Widths and depths; the defaults are Singularity-temporal-17m as Paxion builds it (8 frames)."""

    # BEiT-B/16 frame encoder
    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp_width: int = 3072
    layer_scale_init: float = 0.1
    drop_path_rate: float = 0.1  # 0 -> rate linearly over the BEiT layers, active in train mode
    # temporal encoder: BERT layers of the vision width
    temporal_layers: int = 2
    temporal_heads: int = 12
    temporal_mlp_width: int = 3072
    num_frames: int = 8  # rows of temporal_embeddings (the checkpoint holds 4; rows 4..7 start at zero)
    # BERT text encoder; layers >= fusion_layer are cross-attention layers that text mode never runs
    text_width: int = 768
    text_layers: int = 12  # layers in the official checkpoint
    fusion_layer: int = 9  # layers actually built and run
    text_heads: int = 12
    text_mlp_width: int = 3072
    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    # shared
    embed_dim: int = 256
    dropout: float = 0.1  # BERT hidden and attention dropout (text and temporal encoders)
    layer_norm_eps: float = 1e-12
    temp_init: float = 0.07
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.fusion_layer <= self.text_layers:
            raise ValueError(f"fusion_layer must be in 1..text_layers={self.text_layers}, got {self.fusion_layer}")


SINGULARITY_TEMPORAL_17M = SingularityConfig()

# Test-sized: same code paths (rel-pos grid 2x2, a skipped fusion layer, F=4). The real WordPiece vocab
# is kept so that ``tokenize`` output is valid input for the tiny model too.
SINGULARITY_TINY = SingularityConfig(
    image_size=32,
    vision_width=64,
    vision_layers=2,
    vision_heads=4,
    vision_mlp_width=128,
    temporal_heads=4,
    temporal_mlp_width=128,
    num_frames=4,
    text_width=64,
    text_layers=3,
    fusion_layer=2,
    text_heads=4,
    text_mlp_width=128,
    max_positions=64,
    embed_dim=16,
)


def temporal_embedding_rows(table: torch.Tensor, num_frames: int) -> torch.Tensor:
    """table (1, F, 1, D) -> (1, T, 1, D): the first T rows, or a linear resample when T > F."""
    if num_frames <= table.shape[1]:
        return table[:, :num_frames]
    rows = F.interpolate(rearrange(table, "1 f 1 d -> 1 d f"), size=num_frames, mode="linear", align_corners=False)
    return rearrange(rows, "1 d t -> 1 t 1 d")


class SingularityBackbone(BertTextSide, VideoTextBackbone):
    """Frozen-backbone view of Singularity-temporal; parameter names equal the official checkpoint's."""

    frame_order_invariant_frames = True  # BEiT sees one frame at a time
    text_append_sep = False  # Singularity's tokenizer: [CLS] X, no [SEP]

    def __init__(self, config: SingularityConfig = SINGULARITY_TEMPORAL_17M) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.vision_width = cfg.vision_width
        self.text_width = cfg.text_width
        self.embed_dim = cfg.embed_dim
        self.tokens_per_frame = (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.preprocess = Preprocess(num_frames=cfg.num_frames, image_size=cfg.image_size)

        self.vision_encoder = BeitModel(
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            width=cfg.vision_width,
            layers=cfg.vision_layers,
            heads=cfg.vision_heads,
            mlp_width=cfg.vision_mlp_width,
            layer_scale=cfg.layer_scale_init,
            drop_path_rate=cfg.drop_path_rate,
            eps=cfg.layer_norm_eps,
        )
        self.vision_layernorm = nn.LayerNorm(cfg.vision_width, eps=cfg.layer_norm_eps)
        self.temporal_embeddings = nn.Parameter(torch.zeros(1, cfg.num_frames, 1, cfg.vision_width))
        self.temporal_vision_encoder = BertEncoder(
            layers=cfg.temporal_layers,
            width=cfg.vision_width,
            heads=cfg.temporal_heads,
            mlp_width=cfg.temporal_mlp_width,
            dropout=cfg.dropout,
            eps=cfg.layer_norm_eps,
        )
        self.text_encoder = BertTextEncoder(
            vocab_size=cfg.vocab_size,
            max_positions=cfg.max_positions,
            type_vocab_size=cfg.type_vocab_size,
            width=cfg.text_width,
            layers=cfg.fusion_layer,
            heads=cfg.text_heads,
            mlp_width=cfg.text_mlp_width,
            dropout=cfg.dropout,
            eps=cfg.layer_norm_eps,
        )
        self.vision_proj = nn.Linear(cfg.vision_width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text_width, cfg.embed_dim)
        self.temp = nn.Parameter(torch.tensor(cfg.temp_init))
        self.itm_head = nn.Linear(cfg.text_width, 2)  # unused by Paxion; kept so the layout equals the original
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """BERT-style init; only visible before a checkpoint is loaded (tests, tiny models)."""
        bert_init_(self, self.config.init_std)
        nn.init.normal_(self.vision_encoder.embeddings.cls_token, std=self.config.init_std)

    # ------------------------------------------------------------------ video
    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        """video (B, T, 3, H, W) normalised -> frame features.

        ``hidden`` (B, T, P, Dv): BEiT last hidden state after ``vision_layernorm``;
        ``pooled`` (B, T, Dv): BEiT pooler output (mean patch token, pooler LayerNorm).
        """
        if video.ndim != 5:
            raise ValueError(f"video must be (B, T, C, H, W), got shape {tuple(video.shape)}")
        batch = video.shape[0]
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        hidden, pooled = self.vision_encoder(frames)  # (B*T, P, Dv), (B*T, Dv)
        hidden = self.vision_layernorm(hidden)  # the pooled vector deliberately skips this norm
        return {
            "hidden": rearrange(hidden, "(b t) p d -> b t p d", b=batch),
            "pooled": rearrange(pooled, "(b t) d -> b t d", b=batch),
        }

    def temporal_embedding(self, num_frames: int) -> torch.Tensor:
        """-> (1, T, 1, Dv): the first T rows, or a linear resample when T exceeds the stored rows."""
        return temporal_embedding_rows(self.temporal_embeddings, num_frames)

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """frame features -> (pooled (B, E), tokens (B, T, P, Dv) from the temporal encoder)."""
        hidden, pooled = features["hidden"], features["pooled"]  # (B, T, P, Dv), (B, T, Dv)
        batch, num_frames = hidden.shape[:2]
        hidden = hidden + self.temporal_embedding(num_frames)
        if num_frames > 1:  # the original skips the temporal encoder for single images
            sequences = rearrange(hidden, "b t p d -> (b p) t d")
            hidden = rearrange(self.temporal_vision_encoder(sequences), "(b p) t d -> b t p d", b=batch)
        video = reduce(self.vision_proj(pooled), "b t e -> b e", "mean")
        return video, hidden

    def load_official_checkpoint(self, path: str) -> LoadReport:
        return load_official_checkpoint(self, path)
