"""The encoders both Singularity models share: per-frame BEiT, optional temporal parts, BERT text.

Video (``encode_video``, the original's ``encode_image``): each frame through BEiT, the hidden states
through ``vision_layernorm``; then, when switched on, the temporal embedding is added and (with more
than one frame) the 2-layer temporal encoder attends across frames at every token position; the
frames are concatenated into one token sequence (B, T*L, D) for the fusion layers ("concat", early
fusion). The late-fusion frame ensembles (mean | max | lse) instead keep frames apart and use the
plain per-frame BEiT output (``encode_frames``), as the original does.

Parameter names are the original's, so a downstream checkpoint loads with no renaming.
"""

from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange
from torch import nn

from paxion.backbones.base import Preprocess
from paxion.backbones.singularity.beit import BeitModel
from paxion.backbones.singularity.bert import BertEncoder, BertTextEncoder, bert_init_
from paxion.backbones.singularity.model import SingularityConfig, temporal_embedding_rows
from paxion.backbones.singularity.tokenizer import PAD_ID, SEP_ID, WordPieceTokenizer
from paxion.systems.singularity.config import SingularityVideoConfig

BEIT_MEAN = (0.5, 0.5, 0.5)  # BEiT (pt22k-ft22k) normalisation, as the original's transforms
BEIT_STD = (0.5, 0.5, 0.5)


def build_text_encoder(w: SingularityConfig, *, layers: int, cross_from: int, cross_width: int,
                       causal: bool = False) -> BertTextEncoder:
    return BertTextEncoder(
        vocab_size=w.vocab_size,
        max_positions=w.max_positions,
        type_vocab_size=w.type_vocab_size,
        width=w.text_width,
        layers=layers,
        heads=w.text_heads,
        mlp_width=w.text_mlp_width,
        dropout=w.dropout,
        eps=w.layer_norm_eps,
        cross_from=cross_from,
        cross_width=cross_width,
        causal=causal,
    )


def fit_tokens(ids: torch.Tensor, mask: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad / truncate ``[CLS] X [SEP]`` rows (B, L) to exactly ``max_len`` (HF ``padding="max_length",
    truncation=True``): a cut row keeps its final ``[SEP]``. BERT's usual layout (ALPRO); Singularity's
    own rows have no ``[SEP]`` and are cut by its tokenizer (``max_length``)."""
    lengths = mask.sum(1)  # (B,)
    if ids.shape[1] < max_len:
        pad = max_len - ids.shape[1]
        ids = torch.cat([ids, ids.new_full((ids.shape[0], pad), PAD_ID)], 1)
        mask = torch.cat([mask, mask.new_zeros(mask.shape[0], pad)], 1)
    ids, mask = ids[:, :max_len].clone(), mask[:, :max_len]
    ids[lengths > max_len, max_len - 1] = SEP_ID
    return ids, mask


class SingularityVideoText(nn.Module):
    """Shared encoders; subclasses add their heads (retrieval: projections + ITM; QA: answer decoder)."""

    def __init__(self, cfg: SingularityVideoConfig, *, text_layers: int, vision_pooler: bool) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths()
        self.widths = w
        self.num_frames_test = cfg.num_frames_test
        self.preprocess = Preprocess(num_frames=cfg.num_frames, image_size=w.image_size, mean=BEIT_MEAN, std=BEIT_STD)
        self.vision_encoder = BeitModel(
            image_size=w.image_size,
            patch_size=w.patch_size,
            width=w.vision_width,
            layers=w.vision_layers,
            heads=w.vision_heads,
            mlp_width=w.vision_mlp_width,
            layer_scale=w.layer_scale_init,
            drop_path_rate=w.drop_path_rate,
            eps=w.layer_norm_eps,
            pooler=vision_pooler,
        )
        self.vision_layernorm = nn.LayerNorm(w.vision_width, eps=w.layer_norm_eps)
        self.temporal_embeddings = nn.Parameter(torch.zeros(1, cfg.num_frames, 1, w.vision_width))
        # unused without add_temporal_embed: frozen, so DDP needs no unused-parameter search for it
        self.temporal_embeddings.requires_grad_(cfg.add_temporal_embed)
        self.temporal_vision_encoder: Optional[BertEncoder] = None
        if cfg.temporal_encoder:
            self.temporal_vision_encoder = BertEncoder(
                w.temporal_layers, w.vision_width, w.temporal_heads, w.temporal_mlp_width, w.dropout, w.layer_norm_eps
            )
        self.text_encoder = build_text_encoder(
            w, layers=text_layers, cross_from=w.fusion_layer, cross_width=w.vision_width
        )
        self.reset_pixel_buffers()
        self._tokenizer: Optional[WordPieceTokenizer] = None

    def reset_pixel_buffers(self) -> None:
        """(Re)make the normalisation buffers on the parameters' device (after a load into a meta-built model)."""
        device = self.temporal_embeddings.device
        std = torch.tensor(BEIT_STD, device=device).view(1, 1, 3, 1, 1)
        mean = torch.tensor(BEIT_MEAN, device=device).view(1, 1, 3, 1, 1)
        # normalised = uint8 * scale + shift = (x / 255 - mean) / std
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """BERT-style init (std 0.02, zero biases, unit LayerNorms); a loaded checkpoint overwrites it."""
        std = self.widths.init_std
        bert_init_(self, std)
        for module in self.modules():  # a tied LM-head decoder was drawn after its embedding: pad rows again
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        nn.init.normal_(self.vision_encoder.embeddings.cls_token, std=std)
        self.temporal_embeddings.zero_()

    # ------------------------------------------------------------------ protocol basics
    @property
    def device(self) -> torch.device:
        return self.temporal_embeddings.device

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> normalised float32 on the model's device."""
        if video.dtype != torch.uint8:
            raise TypeError(f"video_input must be uint8 (B, T, C, H, W), got {video.dtype}")
        return video.to(self.device, non_blocking=True).float() * self.pixel_scale + self.pixel_shift

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            self._tokenizer = WordPieceTokenizer(append_sep=False)
        return self._tokenizer

    def tokenize(self, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> (input_ids, attention_mask) (B, max_len) on the model's device.

        The original's layout: ``[CLS] X`` with no ``[SEP]``, padded to ``max_len``; an over-long text
        keeps its first ``max_len - 1`` word pieces.
        """
        tokens = self.tokenizer(list(texts), max_length=max_len)
        return tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)

    # ------------------------------------------------------------------ video
    def encode_frames(self, video: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """normalised (B, T, C, H, W) -> (tokens (B, T, L, D) after vision_layernorm, pooled (B, T, D) | None)."""
        if video.ndim != 5:
            raise ValueError(f"video must be (B, T, C, H, W), got shape {tuple(video.shape)}")
        batch = video.shape[0]
        hidden, pooled = self.vision_encoder(rearrange(video, "b t c h w -> (b t) c h w"))
        tokens = rearrange(self.vision_layernorm(hidden), "(b t) l d -> b t l d", b=batch)
        if pooled is not None:
            pooled = rearrange(pooled, "(b t) d -> b t d", b=batch)
        return tokens, pooled

    def encode_video(self, video: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """normalised (B, T, C, H, W) -> (tokens (B, T*L, D), pooled (B, T, D) | None): early fusion."""
        tokens, pooled = self.encode_frames(video)
        num_frames = tokens.shape[1]
        if self.cfg.add_temporal_embed:
            tokens = tokens + temporal_embedding_rows(self.temporal_embeddings, num_frames)
        if num_frames > 1 and self.temporal_vision_encoder is not None:  # skipped for single frames
            batch = tokens.shape[0]
            over_time = self.temporal_vision_encoder(rearrange(tokens, "b t l d -> (b l) t d"))
            tokens = rearrange(over_time, "(b l) t d -> b t l d", b=batch)
            if self.cfg.update_pooler_embed:
                pooled = tokens[:, :, 0]
        return rearrange(tokens, "b t l d -> b (t l) d"), pooled

    def video_clips(self, video: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Evaluation view -> (clips (B, C, S, D), pooled (B, T, D) | None).

        ``concat``: one clip of all frames (C = 1, S = T*L); late ensembles: one clip per frame (C = T, S = L).
        """
        if self.cfg.frame_ensemble == "concat":
            tokens, pooled = self.encode_video(video)
            return tokens[:, None], pooled
        return self.encode_frames(video)

    # ------------------------------------------------------------------ text
    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, Lt) -> text-mode hidden states (B, Lt, D): embeddings + layers 0 .. fusion_layer-1."""
        return self.text_encoder(ids, mask, end=self.widths.fusion_layer)

    def fuse(self, hidden: torch.Tensor, mask: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        """Text hidden (B, Lt, D) through the fusion layers, cross-attending to video (B, S, Dv) -> (B, Lt, D).

        Video tokens are never padded, so the cross-attention needs no mask.
        """
        return self.text_encoder.fuse(hidden, mask, video_tokens, start=self.widths.fusion_layer)

