"""Training targets and loss of the VideoMAE classifier: label smoothing, mixup / cutmix, soft-target CE.

Pure functions of tensors. Mixup and cutmix follow timm's batch mode, as VideoMAE's fine-tuning:
one draw per batch; with probability ``prob`` the batch is mixed with its reverse (sample i with
sample B-1-i), by cutmix with probability ``switch_prob`` (a box over H x W, the same in every frame,
lambda corrected to the box's true area) and otherwise by mixup (a convex blend), lambda from
Beta(alpha, alpha). Targets are the same blend of the two samples' smoothed one-hot labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class MixupConfig:
    mixup_alpha: float = 0.8  # 0: no mixup
    cutmix_alpha: float = 1.0  # 0: no cutmix
    prob: float = 1.0  # probability of mixing a batch at all
    switch_prob: float = 0.5  # probability of cutmix when both are on

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) -> (B, C): ``1 - s + s / C`` on the label, ``s / C`` elsewhere."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, C) x (B, C) -> scalar mean of ``-sum(targets * log_softmax(logits))``."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of area about ``(1 - lam) H W`` centred at a random point."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def mix_batch(
    video: torch.Tensor, labels: torch.Tensor, num_classes: int, smoothing: float, cfg: MixupConfig,
    rng: Optional[np.random.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """video (B, T, C, H, W), labels (B,) -> (mixed video, soft targets (B, C), lambda)."""
    if video.shape[0] % 2:
        raise ValueError(f"mixup/cutmix needs an even batch, got {video.shape[0]} clips")
    rng = rng or np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
    lam = 1.0
    if cfg.enabled and rng.random() < cfg.prob:
        use_cutmix = cfg.cutmix_alpha > 0 and (cfg.mixup_alpha <= 0 or rng.random() < cfg.switch_prob)
        alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
        lam = float(rng.beta(alpha, alpha))
        flipped = video.flip(0)
        if use_cutmix:
            h, w = video.shape[-2:]
            top, bottom, left, right = cutmix_box(h, w, lam, rng)
            video = video.clone()
            video[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / float(h * w)
        else:
            video = video * lam + flipped * (1.0 - lam)
    targets = smooth_one_hot(labels, num_classes, smoothing)
    return video, lam * targets + (1.0 - lam) * targets.flip(0), lam


def random_erasing(
    video: torch.Tensor, prob: float, min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3,
    attempts: int = 10,
) -> torch.Tensor:
    """timm's RandomErasing in ``pixel`` mode, on every frame independently as the original applies it.

    video (B, T, C, H, W) normalised -> same, where a box of each erased frame holds N(0, 1) noise.
    A frame is erased with probability ``prob``; the first of ``attempts`` drawn boxes that fits is used.
    """
    if prob <= 0:
        return video
    b, t, c, h, w = video.shape
    n, dev = b * t, video.device
    area = torch.empty(n, attempts, device=dev).uniform_(min_area, max_area) * h * w
    log_ar = torch.empty(n, attempts, device=dev).uniform_(math.log(min_aspect), -math.log(min_aspect))
    bh = torch.sqrt(area * log_ar.exp()).round().long()
    bw = torch.sqrt(area / log_ar.exp()).round().long()
    fits = (bh < h) & (bw < w)
    first = fits.float().argmax(1)  # (N,) first attempt that fits
    pick = torch.arange(n, device=dev)
    bh, bw = bh[pick, first], bw[pick, first]
    erase = (torch.rand(n, device=dev) < prob) & fits.any(1)
    top = (torch.rand(n, device=dev) * (h - bh + 1).clamp(min=1)).long()
    left = (torch.rand(n, device=dev) * (w - bw + 1).clamp(min=1)).long()
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    mask = (rows >= top[:, None, None]) & (rows < (top + bh)[:, None, None])
    mask = mask & (cols >= left[:, None, None]) & (cols < (left + bw)[:, None, None]) & erase[:, None, None]
    mask = mask.view(b, t, 1, h, w)
    return torch.where(mask, torch.randn_like(video), video)
