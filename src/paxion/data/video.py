"""Reading frames from video files, and choosing which frames to read.

Decoding goes through a small backend interface so that PyAV (default, pip-installable everywhere),
decord (what the original used) and torchcodec (when installed) are interchangeable: for the same
file and indices they return the same uint8 frames (tested frame for frame at native resolution).

Frame choice is a set of pure functions over frame counts and times, faithful to the original:

* whole clip:  ``int(linspace(1, len - 1, T))`` (frame 0 is skipped);
* segment:     ``start = max(int(s * fps), 0)``, ``end = min(int(e * fps), len - 1)``, ``end = start + 1``
  when both are equal; short clips repeat frames because the linspace is truncated.

plus training-time options (random per segment, jittered uniform, single frame) that draw from an
explicit ``torch.Generator`` so a seeded sample is reproducible.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

logger = logging.getLogger(__name__)

SAMPLING_STRATEGIES = ("uniform", "random", "jitter", "single")
BACKENDS = ("pyav", "decord", "torchcodec")


class VideoDecodeError(RuntimeError):
    """A video that is missing, empty, truncated or undecodable; the message names the file."""


# --------------------------------------------------------------------------- frame indices


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
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"unknown frame sampling strategy '{strategy}'; valid: {list(SAMPLING_STRATEGIES)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    end = max(end, start)
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


# --------------------------------------------------------------------------- decoding backends


class VideoReader(Protocol):
    num_frames: int
    fps: float

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (T,) -> uint8 (T, C, H, W)."""
        ...


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoDecodeError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: video file is empty")


class PyAVReader:
    """Sequential PyAV decoding that stops after the last wanted frame.

    Frame count comes from the container (exact for mp4) or, failing that, from counting packets,
    which is what decord's index gives. TODO(long videos): seek to the keyframe before the first
    wanted frame; the 5 fps clips of ActionBench are short enough that sequential decoding wins.
    """

    def __init__(self, path: Path, size: Optional[tuple[int, int]] = None) -> None:
        import av

        self.path, self.size = path, size
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                self.fps = float(stream.average_rate or stream.guessed_rate or 0.0)
                self.num_frames = int(stream.frames) or sum(
                    1 for p in container.demux(stream) if p.size > 0 and p.dts is not None
                )
        except (av.FFmpegError, IndexError) as exc:
            raise VideoDecodeError(f"{path}: cannot open video: {exc}") from exc
        if self.num_frames == 0:
            raise VideoDecodeError(f"{path}: video has no frames")

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        import av

        wanted = sorted(set(indices.tolist()))
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        if self.size is not None:  # scale in YUV, then convert, like a decoder-side filter
                            frame = frame.reformat(width=self.size[1], height=self.size[0])
                        found[i] = frame.to_ndarray(format="rgb24")
                    if i >= wanted[-1]:
                        break
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed: {exc}") from exc
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoDecodeError(f"{self.path}: truncated: frames {missing[:5]} of {self.num_frames} not decoded")
        order = [found[i] for i in indices.tolist()]
        return rearrange(torch.from_numpy(np.stack(order)), "t h w c -> t c h w")


class DecordReader:
    """decord, the original's decoder; resizes on decode like ``VideoReader(path, width, height)``."""

    def __init__(self, path: Path, size: Optional[tuple[int, int]] = None) -> None:
        import decord

        kwargs = {} if size is None else {"height": size[0], "width": size[1]}
        try:
            self._vr = decord.VideoReader(str(path), num_threads=1, **kwargs)
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


class TorchCodecReader:
    """torchcodec (exact frame indexing); resizing happens afterwards in torch."""

    def __init__(self, path: Path, size: Optional[tuple[int, int]] = None) -> None:
        from torchcodec.decoders import VideoDecoder

        try:
            self._dec = VideoDecoder(str(path), seek_mode="exact")
        except (RuntimeError, ValueError) as exc:
            raise VideoDecodeError(f"{path}: cannot open video: {exc}") from exc
        self.path, self.size = path, size
        self.num_frames = len(self._dec)
        self.fps = float(self._dec.metadata.average_fps or 0.0)

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        try:
            frames = self._dec.get_frames_at(indices.tolist()).data  # (T, C, H, W) uint8
        except (RuntimeError, IndexError) as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed: {exc}") from exc
        return frames if self.size is None else resize_exact(frames, self.size)


_READERS = {"pyav": PyAVReader, "decord": DecordReader, "torchcodec": TorchCodecReader}
_MODULES = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}


def available_backends() -> list[str]:
    return [name for name in BACKENDS if importlib.util.find_spec(_MODULES[name]) is not None]


def open_video(path: str | Path, backend: str = "pyav", size: Optional[tuple[int, int]] = None) -> VideoReader:
    """Open ``path`` with ``backend``; ``size=(H, W)`` resizes while decoding (aspect not kept)."""
    if backend not in _READERS:
        raise ValueError(f"unknown video backend '{backend}'; valid: {list(BACKENDS)}")
    if importlib.util.find_spec(_MODULES[backend]) is None:
        raise ImportError(f"video backend '{backend}' needs the '{_MODULES[backend]}' package; installed: {available_backends()}")
    path = Path(path)
    _check_file(path)
    return _READERS[backend](path, size)


def resize_exact(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> uint8 (T, C, size[0], size[1]), bilinear with antialiasing."""
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

    ``segment`` is (start_s, end_s) relative to the clip; ``fps`` overrides the file's frame rate for
    it (the original passes the configured 5 fps of the re-encoded clips).
    """
    reader = open_video(path, backend, size)
    if segment is not None and (segment[0] or segment[1]):
        rate = fps if fps else reader.fps
        if not rate or math.isnan(rate):
            raise VideoDecodeError(f"{path}: a segment needs an fps and the file reports none")
        start, end = segment_bounds(segment[0], segment[1], rate, reader.num_frames)
    else:
        start, end = whole_clip_bounds(reader.num_frames)
    indices = sample_indices(start, end, num_frames, strategy, training, generator)
    indices = indices.clamp(0, reader.num_frames - 1)  # a 1-frame clip would otherwise ask for frame 1
    return reader.get_frames(indices), indices
