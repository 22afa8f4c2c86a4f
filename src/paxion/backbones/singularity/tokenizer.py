"""bert-base-uncased WordPiece tokenizer, offline, from the vocabulary shipped in this package.

Semantics of Paxion's Singularity text input: lowercase, accents stripped, ``[CLS] ... [SEP]``,
padding with ``[PAD]`` (id 0) to the longest text of the batch, and no truncation (a text longer than
the position table fails loudly in the encoder instead of being cut).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from tokenizers import BertWordPieceTokenizer

VOCAB_PATH = Path(__file__).with_name("vocab.txt")  # see VOCAB_NOTICE.txt for its origin and licence
PAD_ID = 0
CLS_ID = 101
SEP_ID = 102


class WordPieceTokenizer:
    """``tokenizer(list_of_str) -> {"input_ids", "attention_mask"}`` int64 (B, L) on CPU."""

    def __init__(self, vocab_path: Optional[str | Path] = None) -> None:
        path = Path(vocab_path) if vocab_path is not None else VOCAB_PATH
        if not path.is_file():
            raise FileNotFoundError(f"WordPiece vocabulary not found: {path}")
        # strip_accents=None follows lowercase, as bert-base-uncased does
        self._tokenizer = BertWordPieceTokenizer(str(path), lowercase=True, strip_accents=None, clean_text=True)
        self._tokenizer.enable_padding(pad_id=PAD_ID, pad_token="[PAD]")
        self._tokenizer.no_truncation()
        self.vocab_size = self._tokenizer.get_vocab_size()

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("tokenize expects a list of strings")
        if not texts:
            raise ValueError("tokenize got an empty list of texts")
        encodings = self._tokenizer.encode_batch(list(texts))
        return {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),  # (B, L)
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),  # (B, L)
        }
