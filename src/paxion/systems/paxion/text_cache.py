"""A bounded cache of frozen text features, keyed by token ids.

ActionBench captions, their antonyms and object-shuffled variants repeat across an evaluation split, and
the text tower is frozen, so a caption's features need computing once per evaluation pass. Keys are the
token ids with padding removed (so the same caption padded to different batch lengths hits the same
entry) plus the autocast state (bf16 and fp32 features differ). Only misses reach the text tower, as
one sub-batch. Everything on the host side reads CPU token tensors, so a lookup never waits for the
device.

Use it only where the text tower is deterministic (eval mode: a training-mode backbone may apply
dropout to its text layers, e.g. Singularity's BERT), and clear it whenever weights may change.
"""

from __future__ import annotations

from typing import Callable, Hashable

import torch

from paxion.systems.paxion.row_cache import RowCache

TextInput = dict[str, torch.Tensor]


class TextFeatureCache(RowCache):
    """Least-recently-used map: caption token ids -> feature row (E,) on the compute device."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity, "text")

    @staticmethod
    def keys(tokens: TextInput, device_type: str) -> list[Hashable]:
        """One key per caption: its unpadded token ids and the autocast dtype in force (None: off)."""
        ids, mask = tokens["input_ids"].cpu(), tokens["attention_mask"].cpu().bool()  # (N, L), already on CPU
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        return [(row[keep].numpy().tobytes(), dtype) for row, keep in zip(ids, mask)]

    def encode(self, tokens: TextInput, compute: Callable[[TextInput], torch.Tensor], device_type: str) -> torch.Tensor:
        """Features (N, E) of the tokenised captions; ``compute`` maps a sub-batch of tokens to (M, E)."""
        if self.capacity == 0:
            return compute(tokens)

        def rows(positions: list[int]) -> list[torch.Tensor]:
            picked = torch.tensor(positions)
            return list(compute({name: value[picked] for name, value in tokens.items()}).unbind(0))

        return torch.stack(self.fetch(self.keys(tokens, device_type), rows))  # (N, E)
