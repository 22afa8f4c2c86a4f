"""Reading frames from video files, and choosing which frames to read.

Decoding goes through a small backend interface so that PyAV (default, pip-installable everywhere),
decord (what the original used) and torchcodec (when installed) are interchangeable: for the same file
and indices every backend returns the same RGB uint8 frames at native size (tested frame for frame).
Resizing is never done by a decoder: :func:`load_clip` resizes once, in torch, for every backend, so a
clip's pixels do not depend on the backend at any size.

Backends: ``pyav`` seeks to the keyframe before each run of wanted frames and decodes forward only as
far as needed (files without a usable index fall back to sequential decoding, see
:mod:`paxion.data.video.pyav`); ``pyav_sequential`` always decodes from the start (the reference);
``decord``; ``torchcodec``. A segment (a window in seconds) is turned into frame indices first, so
reading a late window of a long file decodes only from the keyframe before it.
"""

from __future__ import annotations

import importlib.util
import math
from contextlib import closing
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from paxion.data.video.backends import DecordReader, TorchCodecReader, VideoReader
from paxion.data.video.errors import VideoDecodeError
from paxion.data.video.pyav import PyAVReader, seek_fallbacks
from paxion.data.video.sampling import (
    SAMPLING_STRATEGIES,
    sample_indices,
    segment_bounds,
    uniform_indices,
    whole_clip_bounds,
)

__all__ = [
    "BACKENDS", "SAMPLING_STRATEGIES", "VideoDecodeError", "VideoReader", "available_backends", "load_clip",
    "open_video", "resize_exact", "sample_indices", "seek_fallbacks", "segment_bounds", "uniform_indices",
    "whole_clip_bounds",
]

BACKENDS = ("pyav", "pyav_sequential", "decord", "torchcodec")
_MODULES = {"pyav": "av", "pyav_sequential": "av", "decord": "decord", "torchcodec": "torchcodec"}
_READERS = {
    "pyav": lambda path: PyAVReader(path, seek=True),
    "pyav_sequential": lambda path: PyAVReader(path, seek=False),
    "decord": DecordReader,
    "torchcodec": TorchCodecReader,
}


def available_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(_MODULES[name]) is not None]


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: video file is empty")


def open_video(path: str | Path, backend: str = "pyav") -> VideoReader:
    """Open ``path`` with ``backend``; the reader returns native-size RGB uint8 frames (close it when done)."""
    if backend not in _READERS:
        raise ValueError(f"unknown video backend '{backend}'; valid: {list(BACKENDS)}")
    if importlib.util.find_spec(_MODULES[backend]) is None:
        raise ImportError(f"video backend '{backend}' needs the '{_MODULES[backend]}' package; "
                          f"installed: {available_backends()}")
    path = Path(path)
    _check_file(path)
    return _READERS[backend](path)


def resize_exact(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> uint8 (T, C, size[0], size[1]), bilinear with antialiasing (no-op at that size)."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    out = F.interpolate(video.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def load_clip(
    path: str | Path,
    num_frames: int,
    *,
    backend: str = "pyav",
    size: Optional[tuple[int, int]] = None,
    segment: Optional[tuple[float, float]] = None,
    fps: Optional[float] = None,
    strategy: str = "uniform",
    training: bool = False,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the sampled frames of one clip. -> (uint8 (T, C, H, W), indices (T,)).

    ``size=(H, W)`` stretches the decoded frames to that size in torch (:func:`resize_exact`, the same for
    every backend; the original let decord resize while decoding). ``segment`` is a window
    (start_s, end_s) of the file; ``fps`` overrides the file's frame rate for it (the original passes
    the configured 5 fps of the re-encoded clips). Only the window is decoded by the seeking backends.
    """
    with closing(open_video(path, backend)) as reader:
        if segment is not None and (segment[0] or segment[1]):
            rate = fps if fps else reader.fps
            if not rate or math.isnan(rate):
                raise VideoDecodeError(f"{path}: a segment needs an fps and the file reports none")
            start, end = segment_bounds(segment[0], segment[1], rate, reader.num_frames)
        elif strategy == "segments":  # Singularity samples from every frame, frame 0 included
            start, end = 0, max(reader.num_frames - 1, 0)
        else:
            start, end = whole_clip_bounds(reader.num_frames)
        indices = sample_indices(start, end, num_frames, strategy, training, generator)
        indices = indices.clamp(0, reader.num_frames - 1)  # a 1-frame clip would otherwise ask for frame 1
        video = reader.get_frames(indices)  # (T, C, H, W) native size
    return (video if size is None else resize_exact(video, size)), indices
