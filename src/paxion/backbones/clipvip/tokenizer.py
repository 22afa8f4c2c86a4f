"""CLIP-ViP's text tokenizer: HF ``CLIPTokenizerFast`` built offline from the CLIP BPE merges.

The original calls ``CLIPTokenizerFast.from_pretrained("openai/clip-vit-base-patch32")``. That
vocabulary is a pure function of OpenAI's ``bpe_simple_vocab_16e6.txt.gz``, which the
``open-clip-torch`` wheel ships, so we derive ``vocab.json``/``merges.txt`` the way CLIP does
(byte symbols, their ``</w>`` forms, the merged pairs, then the two specials), write them to a
temporary folder and load them with ``from_pretrained`` from that local folder; nothing touches
the network and the result is the same on every machine.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import re
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from paxion.backbones.base import TextInput

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
FULL_VOCAB_SIZE = 49408
SOT_ID, EOT_ID = FULL_VOCAB_SIZE - 2, FULL_VOCAB_SIZE - 1
NUM_MERGES = FULL_VOCAB_SIZE - 2 * 256 - 2  # CLIP keeps the first 48,894 merges of the file


def bpe_path() -> Path:
    """The BPE merges file inside the installed open-clip-torch package (found without importing it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"open-clip-torch is not installed; it ships {BPE_FILE}, the CLIP vocabulary")
    path = Path(next(iter(spec.submodule_search_locations))) / BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed open-clip-torch")
    return path


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins CLIP uses for raw bytes, in vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    remaining = [b for b in range(256) if b not in printable]
    # bytes without a printable glyph are shifted past 255, in byte order
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(remaining))]


def clip_vocab_and_merges(path: Path) -> tuple[dict[str, int], list[str]]:
    """(token -> id, merges as "a b" lines) exactly as CLIP's vocabulary is laid out."""
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : 1 + NUM_MERGES]  # line 0 is a version header
    if len(merges) != NUM_MERGES:
        raise ValueError(f"{path} holds {len(merges)} merges, CLIP needs {NUM_MERGES}")
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [SOT, EOT]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != FULL_VOCAB_SIZE:
        raise ValueError(f"vocabulary from {path} has {len(vocab)} distinct tokens, expected {FULL_VOCAB_SIZE}")
    return vocab, merges


@lru_cache(maxsize=1)
def build_hf_tokenizer():  # -> transformers.CLIPTokenizerFast
    """The HF fast CLIP tokenizer of openai/clip-vit-base-patch32, built offline (cached per process)."""
    from transformers import CLIPTokenizerFast

    vocab, merges = clip_vocab_and_merges(bpe_path())
    with tempfile.TemporaryDirectory(prefix="paxion_clip_bpe_") as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        Path(folder, "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        tokenizer = CLIPTokenizerFast.from_pretrained(folder, local_files_only=True, pad_token=EOT)
    if tokenizer.pad_token_id != EOT_ID or tokenizer.bos_token_id != SOT_ID:
        raise RuntimeError(f"offline CLIP tokenizer has pad {tokenizer.pad_token_id} / bos {tokenizer.bos_token_id}")
    return tokenizer


def fold_ids(input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Map CLIP ids into a smaller test vocabulary, keeping SOT/EOT as its two largest ids.

    EOT must stay the largest id because the text model pools at ``argmax(input_ids)``.
    """
    if vocab_size < 3:
        raise ValueError(f"vocab_size {vocab_size} leaves no room for ordinary tokens")
    folded = input_ids % (vocab_size - 2)
    folded = torch.where(input_ids == SOT_ID, vocab_size - 2, folded)
    return torch.where(input_ids == EOT_ID, vocab_size - 1, folded)


def openai_clean(text: str) -> str:
    """OpenAI CLIP's ``SimpleTokenizer`` text clean-up: ftfy's ``fix_text`` (mojibake, NFC), HTML entities
    unescaped twice, whitespace runs collapsed to one space, ends stripped (the HF tokenizer has none of these)."""
    import ftfy

    return re.sub(r"\s+", " ", html.unescape(html.unescape(ftfy.fix_text(text))).strip()).strip()


class CLIPViPTokenizer:
    """Captions -> ``{"input_ids", "attention_mask"}`` (B, L) int64, padded with EOT to the longest caption.

    As in the original there is no truncation: a caption longer than the text model's
    ``context_length`` positions raises. ``vocab_size`` below CLIP's folds ids for tiny test models.
    ``clean`` first applies :func:`openai_clean`, which makes the ids those of OpenAI's ``clip.tokenize``
    (Open-VCLIP's tokenizer); CLIP-ViP's own (HF ``CLIPTokenizerFast``) has no such step.
    """

    def __init__(self, context_length: int = 77, vocab_size: int = FULL_VOCAB_SIZE, clean: bool = False) -> None:
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.clean = clean

    def __call__(self, texts: list[str]) -> TextInput:
        if isinstance(texts, str) or not texts:
            raise ValueError(f"tokenize expects a non-empty list of captions, got {texts!r}")
        texts = [openai_clean(text) for text in texts] if self.clean else list(texts)
        encoded = build_hf_tokenizer()(texts, padding=True, truncation=False, return_tensors="pt")
        ids, mask = encoded["input_ids"].long(), encoded["attention_mask"].long()  # (B, L)
        lengths = mask.sum(dim=1)
        if ids.shape[1] > self.context_length:
            index = int(lengths.argmax())
            raise ValueError(
                f"caption {texts[index]!r} has {int(lengths[index])} tokens; CLIP-ViP's text model takes at most "
                f"{self.context_length} (the original does not truncate)"
            )
        if self.vocab_size < FULL_VOCAB_SIZE:
            ids = fold_ids(ids, self.vocab_size)
        return {"input_ids": ids, "attention_mask": mask}
