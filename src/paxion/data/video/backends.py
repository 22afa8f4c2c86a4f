"""The decord and torchcodec backends (PyAV lives in :mod:`paxion.data.video.pyav`).

Every backend decodes at native size to RGB uint8 (T, C, H, W); resizing happens once, in torch, for
all of them (:func:`paxion.data.video.resize_exact`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from einops import rearrange

from paxion.data.video.errors import VideoDecodeError


class VideoReader(Protocol):
    num_frames: int
    fps: float

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (T,) -> uint8 (T, C, H, W) at native size."""
        ...

    def close(self) -> None:
        ...


class ClosingReader:
    """``with reader:`` closes it at the end."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DecordReader(ClosingReader):
    """decord, the original's decoder (its own keyframe index and seeking)."""

    def __init__(self, path: Path) -> None:
        import decord

        try:
            self._vr = decord.VideoReader(str(path), num_threads=1)
        except (decord.DECORDError, RuntimeError) as exc:
            raise VideoDecodeError(f"{path}: cannot open video: {exc}") from exc
        self.path = path
        self.num_frames = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())
        if self.num_frames == 0:
            raise VideoDecodeError(f"{path}: video has no frames")

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        import decord

        try:
            frames = self._vr.get_batch(indices.tolist()).asnumpy()  # (T, H, W, C)
        except (decord.DECORDError, RuntimeError) as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed: {exc}") from exc
        return rearrange(torch.from_numpy(frames), "t h w c -> t c h w")

    def close(self) -> None:
        self._vr = None


class TorchCodecReader(ClosingReader):
    """torchcodec with exact frame indexing (it scans the file's packets once, as the PyAV reader does)."""

    def __init__(self, path: Path) -> None:
        from torchcodec.decoders import VideoDecoder

        try:
            self._dec = VideoDecoder(str(path), seek_mode="exact")
        except (RuntimeError, ValueError) as exc:
            raise VideoDecodeError(f"{path}: cannot open video: {exc}") from exc
        self.path = path
        self.num_frames = len(self._dec)
        self.fps = float(self._dec.metadata.average_fps or 0.0)

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        try:
            return self._dec.get_frames_at(indices.tolist()).data  # (T, C, H, W) uint8
        except (RuntimeError, IndexError) as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed: {exc}") from exc

    def close(self) -> None:
        self._dec = None
