"""``TemporalConsistentRandomAugment``: RandAugment whose randomly chosen operations are applied
identically to every frame of a clip (ALPRO's QA training augmentation, N=2 of 10 ops at M=5).

Per clip: ``N`` distinct operations drawn from ``augs``; each applied (with probability ``1 - p``)
at magnitude ``M`` of 10, the same on all frames. Operations follow the original's OpenCV ones on
uint8 RGB: affine warps map pixel centres with the top-left origin (bilinear, border grey 128),
``Rotate`` turns counter-clockwise about (W/2, H/2), enhancement factors are ``M/10 * 1.8 + 0.1``
(so at M=5 Contrast, Brightness and Sharpness leave the clip unchanged, as in the original).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

MAX_LEVEL = 10
TRANSLATE_CONST = 10
FILL = 128.0
QA_AUGS = ("Identity", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
           "Rotate", "HorizontalFlip")


def _warp(frames: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """uint8 (T, C, H, W), forward 2x3 pixel map -> warped uint8 (bilinear, outside = FILL)."""
    t, c, h, w = frames.shape
    inverse = torch.linalg.inv(torch.cat([matrix, torch.tensor([[0.0, 0.0, 1.0]])]))[:2]  # dst -> src
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    src = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ inverse.t()  # (H, W, 2) source pixel coords
    grid = torch.stack([2 * src[..., 0] / (w - 1) - 1, 2 * src[..., 1] / (h - 1) - 1], dim=-1)
    out = F.grid_sample(frames.float() - FILL, grid.expand(t, h, w, 2), mode="bilinear", padding_mode="zeros",
                        align_corners=True) + FILL
    return out.round().clamp(0, 255).to(torch.uint8)


def _enhance(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def contrast(frames: torch.Tensor, factor: float) -> torch.Tensor:
    # the original weights the channel means with (0.114, 0.587, 0.299) in RGB order
    weights = torch.tensor([0.114, 0.587, 0.299]).view(1, 3)
    mean = (frames.float().mean(dim=(2, 3)) * weights).sum(1).view(-1, 1, 1, 1)  # per frame
    return ((frames.float() - mean) * factor + mean).clamp(0, 255).to(torch.uint8)


def brightness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    return (frames.float() * factor).clamp(0, 255).to(torch.uint8)


def sharpness(frames: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1.0:
        return frames
    kernel = torch.ones(3, 3)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13).expand(frames.shape[1], 1, 3, 3)
    blurred = F.conv2d(frames.float(), kernel, groups=frames.shape[1]).round()  # interior only
    out = frames.float().clone()
    out[:, :, 1:-1, 1:-1] = blurred + factor * (out[:, :, 1:-1, 1:-1] - blurred)
    return out.clamp(0, 255).to(torch.uint8)


def affine(a: float, b: float, c: float, d: float, e: float, f: float) -> torch.Tensor:
    return torch.tensor([[a, b, c], [d, e, f]], dtype=torch.float32)


def rotate(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    h, w = frames.shape[-2:]
    cx, cy, rad = w / 2, h / 2, math.radians(degrees)
    a, b = math.cos(rad), math.sin(rad)
    return _warp(frames, affine(a, b, (1 - a) * cx - b * cy, -b, a, b * cx + (1 - a) * cy))


OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "Identity": lambda x, m: x,
    "Contrast": lambda x, m: contrast(x, _enhance(m)),
    "Brightness": lambda x, m: brightness(x, _enhance(m)),
    "Sharpness": lambda x, m: sharpness(x, _enhance(m)),
    "ShearX": lambda x, m: _warp(x, affine(1, m / MAX_LEVEL * 0.3, 0, 0, 1, 0)),
    "ShearY": lambda x, m: _warp(x, affine(1, 0, 0, m / MAX_LEVEL * 0.3, 1, 0)),
    "TranslateX": lambda x, m: _warp(x, affine(1, 0, -m / MAX_LEVEL * TRANSLATE_CONST, 0, 1, 0)),
    "TranslateY": lambda x, m: _warp(x, affine(1, 0, 0, 0, 1, -m / MAX_LEVEL * TRANSLATE_CONST)),
    "Rotate": lambda x, m: rotate(x, m / MAX_LEVEL * 30),
    "HorizontalFlip": lambda x, m: x.flip(-1),
}


class TemporalConsistentRandomAugment:
    """``aug(frames uint8 (T, C, H, W)) -> uint8 (T, C, H, W)``, the same random ops on every frame."""

    def __init__(self, n: int = 2, m: float = 5, p: float = 0.0, augs: Sequence[str] = QA_AUGS) -> None:
        unknown = sorted(set(augs) - set(OPS))
        if unknown or n > len(augs):
            raise ValueError(f"augs {unknown} unknown (valid {sorted(OPS)}) or n={n} > {len(augs)} ops")
        self.n, self.m, self.p, self.augs = n, m, p, list(augs)

    def draw(self, generator: Optional[torch.Generator] = None) -> list[str]:
        """The ops of one clip: ``n`` distinct, each kept with probability ``1 - p``."""
        picks = torch.randperm(len(self.augs), generator=generator)[: self.n].tolist()
        keep = torch.rand(self.n, generator=generator) >= self.p
        return [self.augs[i] for i, k in zip(picks, keep.tolist()) if k]

    def __call__(self, frames: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected uint8 frames (T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        for name in self.draw(generator):
            frames = OPS[name](frames, self.m)
        return frames


class AugmentedClips(Dataset):
    """A video dataset whose clips pass through ``augment``; every other attribute is the wrapped one's."""

    def __init__(self, dataset: Any, augment: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        return {**sample, "video": self.augment(sample["video"])}

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "augment"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
