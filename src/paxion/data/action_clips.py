"""Frame choice and host-side (uint8) clip augmentation for action recognition, as VideoMAE's SSv2 loader.

Frames (``T`` per clip, from a video of ``n`` frames):
* training: the video is cut into ``T`` equal segments of ``n // T`` frames and one random frame is
  taken in each (fewer frames than ``T``: sorted random frames; none: frame 0 repeated);
* test view ``c`` of ``C`` temporal views: ``int(tick * x + tick * c / C)``, ``tick = n / T``,
  ``x = 0..T-1``; for ``C = 2`` these are exactly the original's two interleaved index sets;
* validation: view 0 of 2 shifted to segment middles, ``int(tick / 2 + tick * x)`` (the original
  draws random training offsets here, which makes validation accuracy vary between runs).

Space: training runs RandAugment then a random resized crop (scale 0.08-1, ratio 3/4-4/3, no flip
for SSv2); validation resizes the short side and centre-crops; test view ``k`` of ``K`` crops takes
the ``S x S`` window at ``int(k * (long - S) / (K - 1))`` along the long side after resizing the short
side to ``S``. Every random choice comes from the sample's ``torch.Generator``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF

from paxion.data.video import resize_exact


def train_indices(num_video_frames: int, num_frames: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One random frame in each of ``num_frames`` equal segments. -> (T,) int64."""
    step = num_video_frames // num_frames
    if step > 0:
        offsets = torch.randint(0, step, (num_frames,), generator=generator)
        return torch.arange(num_frames) * step + offsets
    if num_video_frames > num_frames:
        return torch.randint(0, num_video_frames, (num_frames,), generator=generator).sort().values
    return torch.zeros(num_frames, dtype=torch.int64)


def view_indices(num_video_frames: int, num_frames: int, view: int, num_views: int) -> torch.Tensor:
    """Temporal test view ``view`` of ``num_views``: ``int(tick * (x + view / num_views))``. -> (T,) int64."""
    tick = num_video_frames / float(num_frames)
    idx = [int(tick * x + tick * view / num_views) for x in range(num_frames)]
    return torch.tensor(idx, dtype=torch.int64).clamp_(0, max(num_video_frames - 1, 0))


def val_indices(num_video_frames: int, num_frames: int) -> torch.Tensor:
    """Segment middles ``int(tick / 2 + tick * x)``. -> (T,) int64."""
    return view_indices(num_video_frames, num_frames, 1, 2)


def resize_short(video: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (T, C, H, W) -> short side ``size``, aspect kept."""
    h, w = video.shape[-2:]
    scale = size / min(h, w)
    return resize_exact(video, (max(size, round(h * scale)), max(size, round(w * scale))))


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    h, w = video.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return video[..., top:top + size, left:left + size]


def spatial_view(video: torch.Tensor, size: int, view: int, num_views: int) -> torch.Tensor:
    """Test crop ``view`` of ``num_views`` along the long side (after short side -> ``size``). -> (T, C, S, S)."""
    video = resize_short(video, size)
    h, w = video.shape[-2:]
    step = (max(h, w) - size) / (num_views - 1) if num_views > 1 else 0.0
    start = int(view * step) if num_views > 1 else (max(h, w) - size) // 2
    if h >= w:
        return video[..., start:start + size, :size]
    return video[..., :size, start:start + size]


def parse_rand_augment(spec: str) -> tuple[int, int]:
    """timm-style ``rand-m7-n4-...`` -> (magnitude, num_ops); the other fields are not used here."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"rand_augment: '{spec}' does not start with 'rand-'")
    fields = {p[0]: p[1:] for p in parts[1:] if p and p[0] in "mn" and p[1:].replace(".", "").isdigit()}
    return int(float(fields.get("m", 9))), int(fields.get("n", 2))


def train_augment(
    video: torch.Tensor,
    size: int,
    generator: Optional[torch.Generator],
    rand_augment: Optional[str] = "rand-m7-n4-mstd0.5-inc1",
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (0.75, 4.0 / 3.0),
    flip: bool = False,
) -> torch.Tensor:
    """uint8 (T, C, H, W) -> uint8 (T, C, size, size); one draw of every parameter for the whole clip."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG: seed it from the sample
        torch.manual_seed(seed)
        if rand_augment:
            magnitude, num_ops = parse_rand_augment(rand_augment)
            video = T.RandAugment(num_ops=num_ops, magnitude=magnitude)(video)
        top, left, h, w = T.RandomResizedCrop.get_params(video, scale=list(scale), ratio=list(ratio))
        video = TF.resized_crop(video, top, left, h, w, [size, size], antialias=True)
        if flip and torch.rand(()) < 0.5:
            video = video.flip(-1)
    return video.contiguous()
