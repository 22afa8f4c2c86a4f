"""Post-LN BERT blocks for Singularity's text encoder and its temporal vision encoder.

Module and parameter names follow the original ``xbert`` / HF BERT layout
(``encoder.layer.N.attention.self.query`` ...), so the official checkpoint maps onto them by a prefix
change only. Attention runs through ``scaled_dot_product_attention``; the padding mask is the
original additive ``-10000`` mask rather than ``-inf``, which keeps fully padded rows finite.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

PAD_MASK_VALUE = -10000.0  # xbert's additive mask value for padded keys


def additive_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """attention_mask (B, L) with 1 = token, 0 = pad -> additive mask (B, 1, 1, L) in ``dtype``."""
    mask = rearrange(attention_mask, "b l -> b 1 1 l").to(dtype)
    return (1.0 - mask) * PAD_MASK_VALUE


class BertSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"BERT width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x (B, L, D), mask additive (B, 1, 1, L) or None -> context (B, L, D)."""
        q, k, v = (
            rearrange(proj(x), "b l (h d) -> b h l d", h=self.heads) for proj in (self.query, self.key, self.value)
        )
        if mask is not None:
            mask = mask.to(q.dtype)  # SDPA wants the float mask in the query dtype (bf16 under autocast)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return rearrange(context, "b h l d -> b l (h d)")


class BertResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(. + residual): BERT's ``*Output`` modules."""

    def __init__(self, d_in: int, width: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.self = BertSelfAttention(width, heads, dropout)
        self.output = BertResidualOutput(width, width, dropout, eps)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, width: int, mlp_width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, mlp_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, BERT's "gelu"


class BertLayer(nn.Module):
    """One post-LN self-attention layer (the cross-attention of fusion layers is never built)."""

    def __init__(self, width: int, heads: int, mlp_width: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.attention = BertAttention(width, heads, dropout, eps)
        self.intermediate = BertIntermediate(width, mlp_width)
        self.output = BertResidualOutput(mlp_width, width, dropout, eps)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, mlp_width: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(width, heads, mlp_width, dropout, eps) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, L, D), optional additive mask (B, 1, 1, L) -> (B, L, D)."""
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertEmbeddings(nn.Module):
    """word + absolute position + token type (always type 0) -> LayerNorm -> dropout.

    Position ids are made on the fly instead of kept as a ``position_ids`` buffer, so a model built on
    the meta device needs nothing re-derived after loading.
    """

    def __init__(
        self, vocab_size: int, max_positions: int, type_vocab_size: int, width: int, dropout: float, eps: float
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_positions, width)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L) -> (B, L, D)."""
        length = input_ids.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"text of {length} tokens exceeds the {self.position_embeddings.num_embeddings} position embeddings"
            )
        positions = self.position_embeddings.weight[:length]  # (L, D)
        token_type = self.token_type_embeddings.weight[0]  # (D,): segment ids are all zero
        x = self.word_embeddings(input_ids) + positions + token_type
        return self.dropout(self.LayerNorm(x))


class BertTextEncoder(nn.Module):
    """Embeddings + the first ``fusion_layer`` BERT layers: Singularity's ``mode='text'`` forward."""

    def __init__(
        self,
        *,
        vocab_size: int,
        max_positions: int,
        type_vocab_size: int,
        width: int,
        layers: int,
        heads: int,
        mlp_width: int,
        dropout: float,
        eps: float,
    ) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(vocab_size, max_positions, type_vocab_size, width, dropout, eps)
        self.encoder = BertEncoder(layers, width, heads, mlp_width, dropout, eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask (B, L) -> last hidden state (B, L, D)."""
        x = self.embeddings(input_ids)
        return self.encoder(x, additive_padding_mask(attention_mask, x.dtype))
