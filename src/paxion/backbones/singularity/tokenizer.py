"""bert-base-uncased WordPiece tokenizer, offline, from the vocabulary shipped in this package.

Lowercase, accents stripped, CJK characters split, punctuation split, ``[PAD]`` (id 0) on the right,
and a literal ``[CLS]`` / ``[SEP]`` / ``[MASK]`` in a text read as that special token. Two layouts:

* ``append_sep=False``: ``[CLS] X``, no ``[SEP]``: Singularity's own BERT tokenizer (its
  ``models/tokenization_bert.py``, also used by the original Paxion's Singularity backbone), which
  every Singularity checkpoint was trained with. Its QA answers carry their end marker in the text
  (``"answer [SEP]"``), so they read ``[CLS] answer [SEP]``.
* ``append_sep=True``: ``[CLS] X [SEP]``, the usual BERT layout (ALPRO).

``max_length=None`` pads to the longest text of the batch and never truncates (a text longer than the
position table then fails in the encoder instead of being cut). ``max_length=n`` is the originals'
``padding="max_length", truncation=True, max_length=n``: every row has exactly n ids; an over-long text
keeps its first word pieces (n - 1 without ``[SEP]``, n - 2 with it, the ``[SEP]`` still closing the
row), so a ``"... [SEP]"`` written into an over-long text is cut away with the rest.
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
    """``tokenizer(list_of_str, max_length=None) -> {"input_ids", "attention_mask"}`` int64 (B, L) on CPU."""

    def __init__(self, vocab_path: Optional[str | Path] = None, *, append_sep: bool = True) -> None:
        path = Path(vocab_path) if vocab_path is not None else VOCAB_PATH
        if not path.is_file():
            raise FileNotFoundError(f"WordPiece vocabulary not found: {path}")
        # strip_accents=None follows lowercase, as bert-base-uncased does
        self._tokenizer = BertWordPieceTokenizer(str(path), lowercase=True, strip_accents=None, clean_text=True)
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.append_sep = append_sep
        self.vocab_size = self._tokenizer.get_vocab_size()

    def __call__(self, texts: list[str], max_length: Optional[int] = None) -> dict[str, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError("tokenize expects a list of strings")
        if not texts:
            raise ValueError("tokenize got an empty list of texts")
        special = 2 if self.append_sep else 1
        if max_length is not None and max_length < special:
            raise ValueError(f"max_length={max_length} leaves no room for the {special} special token(s)")
        rows = []
        for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False):
            words = encoding.ids if max_length is None else encoding.ids[: max_length - special]
            rows.append([CLS_ID, *words, *([SEP_ID] if self.append_sep else [])])
        length = max(map(len, rows)) if max_length is None else max_length
        ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(rows), length), dtype=torch.long)  # (B, L)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}
