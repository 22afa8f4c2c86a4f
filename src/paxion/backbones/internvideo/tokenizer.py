"""OpenAI CLIP BPE tokenizer with InternVideo's rules, offline.

The BPE merges file (``bpe_simple_vocab_16e6.txt.gz``) ships inside the open-clip-torch wheel and
open_clip's ``SimpleTokenizer`` applies exactly InternVideo's cleaning (ftfy, html-unescape twice,
whitespace collapse, lowercase) and truncation rule (cut to the context length, last id forced to
EOT), so it is reused rather than re-implemented.

Small test/synthetic models use a vocabulary far below CLIP's 49,408 ids. For them the ids are
folded deterministically: padding stays 0, SOT and EOT become the two largest ids (so EOT is still
the argmax the text tower pools at) and every other BPE id ``i`` maps to ``1 + i % (vocab - 3)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from einops import repeat

from paxion.backbones.base import TextInput

if TYPE_CHECKING:
    from open_clip.tokenizer import SimpleTokenizer

CLIP_VOCAB_SIZE = 49408
MIN_FOLDED_VOCAB = 8


@lru_cache(maxsize=None)
def _bpe(context_length: int) -> SimpleTokenizer:
    # building the merge table takes ~0.5 s, so every model of the same context length shares one;
    # open_clip itself is imported here because importing it costs seconds at `import paxion`
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


class ClipTokenizer:
    """Strings -> ``{"input_ids", "attention_mask"}`` (B, context_length) int64 on CPU."""

    def __init__(self, context_length: int = 77, vocab_size: int = CLIP_VOCAB_SIZE) -> None:
        if context_length < 2:
            raise ValueError(f"context_length must hold at least SOT and EOT, got {context_length}")
        if vocab_size != CLIP_VOCAB_SIZE and not MIN_FOLDED_VOCAB <= vocab_size < CLIP_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size {vocab_size}: use {CLIP_VOCAB_SIZE} (CLIP) or a folded size in "
                f"[{MIN_FOLDED_VOCAB}, {CLIP_VOCAB_SIZE})"
            )
        self.context_length = context_length
        self.vocab_size = vocab_size

    @property
    def eot_token_id(self) -> int:
        return self.vocab_size - 1 if self.vocab_size != CLIP_VOCAB_SIZE else _bpe(self.context_length).eot_token_id

    def __call__(self, texts: list[str]) -> TextInput:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"tokenize expects a list of str, got {type(texts).__name__}: {texts!r:.80}")
        bpe = _bpe(self.context_length)
        ids = bpe(list(texts), context_length=self.context_length)  # (B, L) int64, zero-padded
        # CLIP id 0 is a real token ("!"), so the mask comes from the EOT position, not from ids != 0
        eot_pos = (ids == bpe.eot_token_id).int().argmax(dim=1, keepdim=True)  # (B, 1)
        positions = repeat(torch.arange(self.context_length), "l -> b l", b=ids.shape[0])
        mask = positions <= eot_pos  # (B, L)
        if self.vocab_size != CLIP_VOCAB_SIZE:
            ids = self._fold(ids, bpe)
        return {"input_ids": ids * mask, "attention_mask": mask.long()}

    def _fold(self, ids: torch.Tensor, bpe: SimpleTokenizer) -> torch.Tensor:
        folded = 1 + ids % (self.vocab_size - 3)
        folded = torch.where(ids == bpe.sot_token_id, self.vocab_size - 2, folded)
        return torch.where(ids == bpe.eot_token_id, self.vocab_size - 1, folded)
