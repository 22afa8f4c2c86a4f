"""Which frames to read: pure functions over frame counts and times, faithful to the original.

* whole clip:  ``int(linspace(1, len - 1, T))`` (frame 0 is skipped);
* segment:     ``start = max(int(s * fps), 0)``, ``end = min(int(e * fps), len - 1)``, ``end = start + 1``
  when both are equal; short clips repeat frames because the linspace is truncated.

plus training-time options (random per segment, jittered uniform, single frame) that draw from an
explicit ``torch.Generator`` so a seeded sample is reproducible.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

SAMPLING_STRATEGIES = ("uniform", "random", "jitter", "single", "segments")


def uniform_indices(start: int, end: int, num_frames: int) -> torch.Tensor:
    """``int(linspace(start, end, num_frames))`` as the original (truncation, endpoints included). -> (T,)"""
    return torch.from_numpy(np.linspace(start, end, num=num_frames, endpoint=True).astype(np.int64))


def whole_clip_bounds(num_video_frames: int) -> tuple[int, int]:
    """(start, end) for sampling a whole clip: frame 0 is skipped, as in the original."""
    return 1, max(num_video_frames - 1, 0)


def segment_bounds(start_s: float, end_s: float, fps: float, num_video_frames: int) -> tuple[int, int]:
    """(start, end) frame of a segment given in seconds, following the original rounding."""
    if fps <= 0:
        raise ValueError(f"a segment needs a positive fps, got {fps}")
    last = max(num_video_frames - 1, 0)
    start = min(max(int(start_s * fps), 0), last)
    end = min(int(end_s * fps), last)
    if start == end:
        end = min(start + 1, last)
    return start, max(end, start)


def sample_indices(
    start: int,
    end: int,
    num_frames: int,
    strategy: str = "uniform",
    training: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Frame indices in [start, end] for one clip. -> (T,) int64, or (1,) for single-frame training.

    uniform: the original linspace, train and eval.
    random:  train: one random frame in each of T equal segments; eval: the middle of each segment.
    jitter:  train: the uniform grid shifted by one random offset below its step (equal spacing kept,
             so apparent speed is unchanged); eval: uniform.
    single:  train: one random frame (Singularity-style single-frame training); eval: segment middles.
    segments: Singularity's ``rand`` (train) / ``middle`` (eval), see :func:`segments_indices`.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"unknown frame sampling strategy '{strategy}'; valid: {list(SAMPLING_STRATEGIES)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    end = max(end, start)
    if strategy == "segments":
        return segments_indices(start, end, num_frames, training, generator)
    if strategy == "uniform" or (strategy == "jitter" and not training):
        return uniform_indices(start, end, num_frames)
    span = end - start + 1
    if strategy == "jitter":
        step = (end - start) / max(num_frames - 1, 1)
        offset = torch.rand((), generator=generator) * step
        grid = torch.linspace(start, end, num_frames, dtype=torch.float64)
        return (grid + offset).floor().clamp(max=end).long()
    if strategy == "single" and training:
        return start + torch.randint(span, (1,), generator=generator)
    edges = torch.linspace(start, end + 1, num_frames + 1, dtype=torch.float64)  # (T+1,) segment edges
    if strategy == "random" and training:
        pos = edges[:-1] + torch.rand(num_frames, generator=generator, dtype=torch.float64) * (edges[1:] - edges[:-1])
    else:
        pos = (edges[:-1] + edges[1:]) / 2
    return pos.floor().long().clamp(start, end)


def segments_indices(
    start: int, end: int, num_frames: int, training: bool, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Singularity's frame choice over frames [start, end] (n of them). -> (T,) int64.

    ``k = min(T, n)`` segments with edges ``int(linspace(0, n, k + 1))``. Training ("rand"): a random frame
    in [edge_i, edge_{i+1} - 2] of each segment (the original's range leaves out a segment's last frame);
    when a segment is a single frame, ``k`` distinct random frames in order instead. Evaluation
    ("middle"): ``(edge_i + edge_{i+1} - 1) // 2``. Clips shorter than T are padded with the last index.
    """
    n = end - start + 1
    k = min(num_frames, n)
    edges = torch.from_numpy(np.linspace(0, n, num=k + 1).astype(np.int64))  # (k+1,)
    low, high = edges[:-1], edges[1:] - 1  # (k,) the original's (start, end) of each segment
    if not training:
        picked = (low + high) // 2
    elif bool((high > low).all()):
        picked = low + (torch.rand(k, generator=generator, dtype=torch.float64) * (high - low)).long()
    else:
        picked = torch.randperm(n, generator=generator)[:k].sort().values
    picked = picked + start
    return torch.cat([picked, picked[-1:].expand(num_frames - k)])
