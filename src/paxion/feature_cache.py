"""A bounded cache of a frozen backbone's video features, keyed by the clip's pixels.

When the backbone is frozen (eval mode, no trainable weight) and the training clips are the same every
epoch (no colour jitter, deterministic frame sampling), every epoch after the first recomputes exactly
the features of the first. This cache keeps them: the key is a hash of the clip's uint8 pixels (so an
augmented clip simply misses, it never gets stale features), the number of views (clip, or clip plus
its reversal) and the autocast dtype in force. Only misses reach the backbone, as one sub-batch, so the
result equals the uncached computation bit for bit.

Clear it whenever the backbone's weights may change (a checkpoint load, a device or dtype move).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Callable, Hashable

import torch
from einops import rearrange

Features = tuple[torch.Tensor, torch.Tensor]  # pooled (V*B, E), tokens (V*B, T, P, D), rows ordered (view, clip)


class FrozenFeatureCache:
    """Least-recently-used map: clip pixels -> (pooled (V, E), tokens (V, T, P, D)) on the compute device."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"feature cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._rows: OrderedDict[Hashable, Features] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()

    @staticmethod
    def keys(video: torch.Tensor, views: int) -> list[Hashable]:
        """One key per clip of a uint8 (B, T, C, H, W) batch: pixel digest, shape, views, autocast dtype."""
        device_type = video.device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        host = video.detach().cpu().contiguous()
        return [(hashlib.blake2b(clip.numpy().tobytes(), digest_size=16).digest(), tuple(clip.shape), views, dtype)
                for clip in host]

    def encode(self, video: torch.Tensor, views: int, compute: Callable[[torch.Tensor], Features]) -> Features:
        """Features of ``video`` (B, T, C, H, W) uint8; ``compute`` maps a sub-batch (M, ...) to its features."""
        if self.capacity == 0:
            return compute(video)
        keys = self.keys(video, views)
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))  # unique, in order
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        fresh: dict[Hashable, Features] = {}
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # key -> first clip holding it
            pooled, tokens = compute(video[torch.tensor([first[k] for k in missing], device=video.device)])
            pooled = rearrange(pooled, "(v m) e -> m v e", v=views)
            tokens = rearrange(tokens, "(v m) t p d -> m v t p d", v=views)
            fresh = {k: (pooled[i], tokens[i]) for i, k in enumerate(missing)}
        rows = [fresh[k] if k in fresh else self._rows[k] for k in keys]
        for key, row in zip(keys, rows):  # refresh recency, insert the new rows, then evict the oldest
            self._rows[key] = row
            self._rows.move_to_end(key)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        pooled = rearrange(torch.stack([r[0] for r in rows]), "b v e -> (v b) e")
        tokens = rearrange(torch.stack([r[1] for r in rows]), "b v t p d -> (v b) t p d")
        return pooled, tokens
