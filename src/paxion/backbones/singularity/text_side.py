"""The text half of a BERT-text backbone (Singularity, ALPRO): CLS projection, WordPiece, temperature.

A mixin for a ``VideoTextBackbone`` that owns ``text_encoder`` (BERT, returns (B, L, Dt)),
``text_proj`` (Dt -> E), ``vision_proj`` (Dv -> E) and the learned temperature ``temp``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from paxion.backbones.base import TextInput
from paxion.backbones.singularity.tokenizer import WordPieceTokenizer


class BertTextSide:
    """encode_text / tokenizer / tokenize / logit_scale / visual_projection_weight, shared by BERT-text backbones."""

    text_encoder: nn.Module
    text_proj: nn.Linear
    vision_proj: nn.Linear
    temp: torch.Tensor
    text_append_sep: bool = True  # [CLS] X [SEP]; Singularity's own layout is [CLS] X (False)
    _tokenizer: Optional[WordPieceTokenizer] = None  # built on first use

    def encode_text(self, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        """{"input_ids", "attention_mask"} (B, L) -> (pooled (B, E) from CLS, tokens (B, L, Dt))."""
        device = self.text_proj.weight.device
        tokens = self.text_encoder(text["input_ids"].to(device), text["attention_mask"].to(device))
        return self.text_proj(tokens[:, 0]), tokens

    @property
    def tokenizer(self) -> WordPieceTokenizer:
        if self._tokenizer is None:
            self._tokenizer = WordPieceTokenizer(append_sep=self.text_append_sep)
        return self._tokenizer

    def tokenize(self, texts: list[str]) -> TextInput:
        """Padded to the longest text, never truncated (the original Paxion's ``padding=True``)."""
        return self.tokenizer(texts)

    def logit_scale(self) -> torch.Tensor:
        return 1.0 / self.temp

    def visual_projection_weight(self) -> torch.Tensor:
        # the bias of vision_proj is not carried over: the baseline's projection is bias-free
        return self.vision_proj.weight  # (E, Dv)
