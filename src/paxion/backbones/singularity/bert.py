"""Post-LN BERT blocks for Singularity's text encoder, fusion layers, answer decoder and temporal encoder.

Module and parameter names follow the original ``xbert`` / HF BERT layout
(``encoder.layer.N.attention.self.query``, ``encoder.layer.N.crossattention.self.key`` ...), so the
official checkpoint maps onto them by a prefix change only. Layers from index ``cross_from`` on also
carry a cross-attention block (query from the text, keys/values from the other stream), which runs
between the self-attention and the feed-forward block. Attention runs through
``scaled_dot_product_attention``; the padding mask is the original additive ``-10000`` mask rather
than ``-inf``, which keeps fully padded rows finite.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

PAD_MASK_VALUE = -10000.0  # xbert's additive mask value for padded keys


@torch.no_grad()
def bert_init_(module: nn.Module, std: float, skip: Optional[str] = None) -> None:
    """BERT-style init in place, in ``named_modules`` order (the random draw order is part of the contract).

    Linear / Conv2d / Embedding weights ~ N(0, std), zero biases and zero padding rows, unit LayerNorms;
    submodules whose name starts with ``skip`` keep their own init.
    """
    for name, sub in module.named_modules():
        if skip is not None and name.startswith(skip):
            continue
        if isinstance(sub, (nn.Linear, nn.Conv2d, nn.Embedding)):
            sub.weight.normal_(0.0, std)
            if getattr(sub, "bias", None) is not None:
                sub.bias.zero_()
            if getattr(sub, "padding_idx", None) is not None:
                sub.weight[sub.padding_idx].zero_()
        elif isinstance(sub, nn.LayerNorm):
            sub.weight.fill_(1.0)
            sub.bias.zero_()


def additive_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """attention_mask (B, L) with 1 = token, 0 = pad -> additive mask (B, 1, 1, L) in ``dtype``."""
    mask = rearrange(attention_mask, "b l -> b 1 1 l").to(dtype)
    return (1.0 - mask) * PAD_MASK_VALUE


def additive_causal_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """attention_mask (B, L) -> additive (B, 1, L, L): query i sees keys j <= i that are not padding."""
    length = attention_mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()  # (L, L)
    allowed = causal[None, None] & rearrange(attention_mask.bool(), "b l -> b 1 1 l")  # (B, 1, L, L)
    return (1.0 - allowed.to(dtype)) * PAD_MASK_VALUE


class BertSelfAttention(nn.Module):
    """Self-attention, or cross-attention when ``kv_width`` is given (keys/values from a ``context``)."""

    def __init__(self, width: int, heads: int, dropout: float, kv_width: Optional[int] = None) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"BERT width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(kv_width or width, width)
        self.value = nn.Linear(kv_width or width, width)

    def forward(
        self, x: torch.Tensor, mask: Optional[torch.Tensor], context: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """x (B, L, D), mask additive (B, 1, 1|L, S) or None, context (B, S, Dc) or None (S = L) -> (B, L, D)."""
        source = x if context is None else context
        q = rearrange(self.query(x), "b l (h d) -> b h l d", h=self.heads)
        k, v = (rearrange(proj(source), "b s (h d) -> b h s d", h=self.heads) for proj in (self.key, self.value))
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
    def __init__(self, width: int, heads: int, dropout: float, eps: float, kv_width: Optional[int] = None) -> None:
        super().__init__()
        self.self = BertSelfAttention(width, heads, dropout, kv_width)
        self.output = BertResidualOutput(width, width, dropout, eps)

    def forward(
        self, x: torch.Tensor, mask: Optional[torch.Tensor], context: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        return self.output(self.self(x, mask, context), x)


class BertIntermediate(nn.Module):
    def __init__(self, width: int, mlp_width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, mlp_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, BERT's "gelu"


class BertLayer(nn.Module):
    """One post-LN layer: self-attention, then (fusion layers only) cross-attention, then the FFN."""

    def __init__(
        self, width: int, heads: int, mlp_width: int, dropout: float, eps: float, cross_width: Optional[int] = None
    ) -> None:
        super().__init__()
        self.attention = BertAttention(width, heads, dropout, eps)
        if cross_width is not None:
            self.crossattention = BertAttention(width, heads, dropout, eps, kv_width=cross_width)
        self.intermediate = BertIntermediate(width, mlp_width)
        self.output = BertResidualOutput(mlp_width, width, dropout, eps)

    @property
    def has_cross_attention(self) -> bool:
        return hasattr(self, "crossattention")

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        context: Optional[torch.Tensor] = None,
        context_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """x (B, L, D), context (B, S, Dc) for a fusion layer, context_mask additive (B, 1, 1, S) -> (B, L, D)."""
        x = self.attention(x, mask)
        if self.has_cross_attention:
            if context is None:
                raise ValueError("a fusion (cross-attention) layer needs the other stream's tokens as context")
            x = self.crossattention(x, context_mask, context)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    """``layers`` BERT layers; those with index >= ``cross_from`` carry cross-attention to ``cross_width`` tokens."""

    def __init__(
        self,
        layers: int,
        width: int,
        heads: int,
        mlp_width: int,
        dropout: float,
        eps: float,
        cross_from: Optional[int] = None,
        cross_width: Optional[int] = None,
    ) -> None:
        super().__init__()
        first_cross = layers if cross_from is None else cross_from
        self.layer = nn.ModuleList(
            BertLayer(width, heads, mlp_width, dropout, eps, cross_width if i >= first_cross else None)
            for i in range(layers)
        )

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        context: Optional[torch.Tensor] = None,
        context_mask: Optional[torch.Tensor] = None,
        start: int = 0,
        end: Optional[int] = None,
    ) -> torch.Tensor:
        """x (B, L, D) through layers ``start .. end-1`` (default all); masks additive -> (B, L, D)."""
        for layer in self.layer[start:end]:
            x = layer(x, mask, context, context_mask)
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
    """Embeddings + BERT layers (xbert's ``BertModel`` without pooler).

    The frozen backbone builds only the first ``fusion_layer`` layers (``mode='text'``). A full system
    builds all of them with ``cross_from=fusion_layer``: :meth:`forward` with ``end=fusion_layer`` is the
    text mode, :meth:`fuse` the ``mode='fusion'`` pass over the remaining layers, and ``forward`` with a
    context over every layer the ``multi_modal`` mode. ``causal=True`` makes it the answer decoder.
    """

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
        cross_from: Optional[int] = None,
        cross_width: Optional[int] = None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.embeddings = BertEmbeddings(vocab_size, max_positions, type_vocab_size, width, dropout, eps)
        self.encoder = BertEncoder(layers, width, heads, mlp_width, dropout, eps, cross_from, cross_width)

    def self_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, L) -> additive (B, 1, 1, L), or (B, 1, L, L) with the causal mask of a decoder."""
        if self.causal:
            return additive_causal_mask(attention_mask, dtype)
        return additive_padding_mask(attention_mask, dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        context: Optional[torch.Tensor] = None,
        context_mask: Optional[torch.Tensor] = None,
        end: Optional[int] = None,
    ) -> torch.Tensor:
        """input_ids, attention_mask (B, L); optional context (B, S, Dc) + mask (B, S) -> hidden (B, L, D)."""
        x = self.embeddings(input_ids)
        cross_mask = None if context_mask is None else additive_padding_mask(context_mask, x.dtype)
        return self.encoder(x, self.self_mask(attention_mask, x.dtype), context, cross_mask, end=end)

    def fuse(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        context: torch.Tensor,
        start: int,
        context_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Text hidden (B, L, D) from layer ``start`` on, cross-attending to context (B, S, Dc) -> (B, L, D)."""
        cross_mask = None if context_mask is None else additive_padding_mask(context_mask, hidden.dtype)
        return self.encoder(hidden, self.self_mask(attention_mask, hidden.dtype), context, cross_mask, start=start)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """transform -> vocabulary logits; ``decoder.bias`` is ``bias`` (one tensor under two names, as in xbert)."""

    def __init__(self, width: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(width, eps)
        self.decoder = nn.Linear(width, vocab_size)
        self.bias = self.decoder.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V)."""
        return self.decoder(self.transform(x))


class BertLMHead(nn.Module):
    """``cls.predictions``: BERT's MLM / LM head; its decoder weight is tied to the word embeddings."""

    def __init__(self, width: int, vocab_size: int, eps: float, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(width, vocab_size, eps)
        self.predictions.decoder.weight = word_embeddings.weight  # tied, as HF's tie_weights does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


class BertLMHeadModel(nn.Module):
    """xbert's ``BertLMHeadModel``: a (causal) BERT under ``bert`` and the tied LM head under ``cls``."""

    def __init__(self, bert: BertTextEncoder, width: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.bert = bert
        self.cls = BertLMHead(width, vocab_size, eps, bert.embeddings.word_embeddings)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        context: torch.Tensor,
        context_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """input_ids (B, L), context (B, S, Dc) + mask (B, S) -> vocabulary logits (B, L, V)."""
        return self.cls(self.bert(input_ids, attention_mask, context, context_mask))
