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
from typing import Callable, Hashable

import torch
from einops import rearrange

from paxion.systems.paxion.row_cache import RowCache

Features = tuple[torch.Tensor, torch.Tensor]  # pooled (V*B, E), tokens (V*B, T, P, D), rows ordered (view, clip)


class FrozenFeatureCache(RowCache):
    """Least-recently-used map: clip pixels -> (pooled (V, E), tokens (V, T, P, D)) on the compute device."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity, "feature")

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

        def rows(positions: list[int]) -> list[Features]:
            pooled, tokens = compute(video[torch.tensor(positions, device=video.device)])
            pooled = rearrange(pooled, "(v m) e -> m v e", v=views)
            tokens = rearrange(tokens, "(v m) t p d -> m v t p d", v=views)
            return list(zip(pooled.unbind(0), tokens.unbind(0)))

        got = self.fetch(self.keys(video, views), rows)
        pooled = rearrange(torch.stack([r[0] for r in got]), "b v e -> (v b) e")
        tokens = rearrange(torch.stack([r[1] for r in got]), "b v t p d -> (v b) t p d")
        return pooled, tokens
