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

from collections import OrderedDict
from typing import Callable, Hashable

import torch

TextInput = dict[str, torch.Tensor]


class TextFeatureCache:
    """Least-recently-used map: caption token ids -> feature row (E,) on the compute device."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"text cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._rows: OrderedDict[Hashable, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()

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
        keys = self.keys(tokens, device_type)
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))  # unique, in order
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh: dict[Hashable, torch.Tensor] = {}
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # key -> first row holding it
            rows = torch.tensor([first[k] for k in missing])
            computed = compute({name: value[rows] for name, value in tokens.items()})  # (M, E)
            fresh = dict(zip(missing, computed.unbind(0)))
        out = torch.stack([fresh[k] if k in fresh else self._rows[k] for k in keys])  # (N, E)
        for key in keys:  # refresh recency, insert the new rows, then evict the oldest
            self._rows[key] = fresh[key] if key in fresh else self._rows[key]
            self._rows.move_to_end(key)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        return out
