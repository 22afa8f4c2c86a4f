"""Clip transforms on whole uint8 tensors (T, C, H, W), built from the backbone's preprocess values.

The original chain (``video_train`` / ``internvideo_eval``) is: Resize(size) on the short side ->
CenterCrop(size) -> [train] clip-consistent ColorJitter(0.1, 0.1, 0.1, 0.1) -> /255 -> Normalize.
Here the host stops before /255 so that a uint8 batch (4x smaller) crosses to the device, where
:func:`normalize` finishes the chain.

ColorJitter quirk of the original: it shuffles brightness/contrast/saturation/hue ops but applies
each to the *unjittered* frame, keeping only the last result, so exactly one colour op is applied.
``fix_color_jitter=True`` applies all four in the shuffled order instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torchvision.transforms.v2.functional as TF

from paxion.data.video import resize_exact

JITTER_OPS = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class ColorJitterParams:
    """Strengths as torchvision's ColorJitter: factors in [1-s, 1+s], hue shift in [-h, h]."""

    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1


def resize_short_side(video: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, C, H, W) -> shorter side == size, aspect kept (no-op when already there)."""
    h, w = video.shape[-2:]
    if min(h, w) == size:
        return video
    scale = size / min(h, w)
    return resize_exact(video, (max(size, round(h * scale)), max(size, round(w * scale))))


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """(..., H, W) -> (..., size, size); torchvision's rounding of the offsets."""
    h, w = video.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return video[..., top : top + size, left : left + size]


def color_jitter(
    video: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    params: ColorJitterParams = ColorJitterParams(),
    fix_quirk: bool = False,
) -> torch.Tensor:
    """Clip-consistent colour jitter on uint8 (T, C, H, W); one draw of factors for the whole clip."""
    u = torch.rand(4, generator=generator, dtype=torch.float64)
    factors = {
        "brightness": 1 - params.brightness + 2 * params.brightness * u[0].item(),
        "contrast": 1 - params.contrast + 2 * params.contrast * u[1].item(),
        "saturation": 1 - params.saturation + 2 * params.saturation * u[2].item(),
        "hue": -params.hue + 2 * params.hue * u[3].item(),
    }
    order = [JITTER_OPS[i] for i in torch.randperm(4, generator=generator).tolist()]
    ops = {
        "brightness": TF.adjust_brightness,
        "contrast": TF.adjust_contrast,
        "saturation": TF.adjust_saturation,
        "hue": TF.adjust_hue,
    }
    if not fix_quirk:
        return ops[order[-1]](video, factors[order[-1]])
    for name in order:
        video = ops[name](video, factors[name])
    return video


def video_transform(
    video: torch.Tensor,
    image_size: int,
    training: bool,
    *,
    use_color_jitter: bool = True,
    fix_color_jitter: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The host half of ``video_train`` / ``internvideo_eval``: uint8 (T, C, H, W) -> uint8 (T, C, S, S)."""
    video = center_crop(resize_short_side(video, image_size), image_size)
    if training and use_color_jitter:
        video = color_jitter(video, generator, fix_quirk=fix_color_jitter)
    return video.contiguous()


def normalize(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Device half: uint8 (..., C, H, W) -> float (..., C, H, W), /255 then per-channel normalisation.

    Keeps the float dtype of the default (fp32); autocast casts later where it matters.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=video.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=video.device).view(-1, 1, 1)
    return (video.float() / 255.0 - mean_t) / std_t
