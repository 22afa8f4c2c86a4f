"""What turns a user's video and text into a model's input: :class:`VideoPreprocess` and :class:`Tokenizer`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from paxion.data.base import VideoDataConfig
from paxion.data.transforms import video_transform
from paxion.data.video import load_clip, resize_exact, sample_indices, whole_clip_bounds

Video = Union[str, Path, np.ndarray, torch.Tensor]


def asset(name: str) -> Path:
    """A file shipped inside the package (``paxion/assets``)."""
    return Path(str(resources.files("paxion.assets").joinpath(name)))


@dataclass(frozen=True)
class VideoPreprocess:
    """A video file or uint8 frames -> the model's evaluation input, uint8 (1, T, C, S, S).

    The system's own evaluation pipeline: files are decoded and sampled exactly as the evaluation
    datasets of its configs do (``decoder``, ``resize_on_decode``, ``frame_sampling``: ``uniform`` over the
    whole clip for Paxion, ALPRO, Open-VCLIP and VideoMAE, Singularity's segment middles), then resized
    and centre-cropped to ``image_size``. ``num_frames`` is the system's evaluation frame count
    (Singularity: ``num_frames_test``). Frames are uint8 ``(N, H, W, C)`` (numpy, as decoders return) or
    ``(N, C, H, W)`` (torch) holding the whole video at the file's size: they are sampled and resized like
    the frames of a file, so ``preprocess(frames) == preprocess(file)``. Clips already shaped
    ``(1, T, C, S, S)`` go to the helpers as they are. Mean / std normalisation happens inside the model
    (``model.normalize_video``), on its device.
    """

    num_frames: int
    image_size: int
    decoder: str = VideoDataConfig.decoder
    resize_on_decode: bool = VideoDataConfig.resize_on_decode
    frame_sampling: str = VideoDataConfig.frame_sampling

    def __call__(self, video: Video) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        if isinstance(video, (str, Path)):
            frames, _ = load_clip(Path(video), self.num_frames, backend=self.decoder,
                                  size=size if self.resize_on_decode else None, strategy=self.frame_sampling)
        else:
            frames = self._sample(_as_tchw(video))
            if self.resize_on_decode:
                frames = resize_exact(frames, size)
        return video_transform(frames, self.image_size, training=False)[None]  # (1, T, C, S, S)

    def _sample(self, frames: torch.Tensor) -> torch.Tensor:
        count = frames.shape[0]
        # as load_clip: Singularity's segments sample from every frame, the others skip frame 0
        start, end = (0, max(count - 1, 0)) if self.frame_sampling == "segments" else whole_clip_bounds(count)
        index = sample_indices(start, end, self.num_frames, self.frame_sampling, False, None)
        return frames[index.clamp(0, count - 1)]


def _as_tchw(video: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """uint8 frames (N, H, W, C) numpy or (N, C, H, W) torch -> uint8 (N, C, H, W) tensor."""
    channels_last = isinstance(video, np.ndarray)
    frames = torch.from_numpy(np.ascontiguousarray(video)) if channels_last else video
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 4:
        shape = tuple(getattr(video, "shape", ()))
        raise TypeError(f"preprocess takes a video path or uint8 frames (N, H, W, C) numpy / (N, C, H, W) torch, "
                        f"got {type(video).__name__} {getattr(video, 'dtype', '')} {shape}")
    frames = frames.permute(0, 3, 1, 2) if channels_last else frames
    if frames.shape[1] != 3:
        raise ValueError(f"preprocess: frames need 3 colour channels, got shape {tuple(frames.shape)} (N, C, H, W)")
    return frames.cpu()


def as_clips(preprocess: VideoPreprocess, video: Video) -> torch.Tensor:
    """A path, raw frames, or preprocessed clips (B, T, C, S, S) -> uint8 clips (B, T, C, S, S)."""
    if isinstance(video, torch.Tensor) and video.dim() == 5:
        if video.dtype != torch.uint8:
            raise TypeError(f"a preprocessed clip is uint8 (B, T, C, S, S), got {video.dtype}")
        return video
    return preprocess(video)


class Tokenizer:
    """Texts -> the model's text input (``input_ids``, ``attention_mask``), as the model tokenizes them."""

    def __init__(self, tokenize: Callable[[list[str]], Any]) -> None:
        self._tokenize = tokenize

    def __call__(self, texts: Union[str, Sequence[str]]) -> dict[str, torch.Tensor]:
        out = self._tokenize([texts] if isinstance(texts, str) else list(texts))
        if isinstance(out, tuple):  # Singularity / ALPRO: (ids, mask)
            ids, mask = out
            return {"input_ids": ids, "attention_mask": mask}
        return out
