"""ALPRO's objectives as pure functions of features (no model access).

* VTC: normalised 256-d [CLS] projections; similarities / temperature against the negatives
  gathered from every process (identity targets on this process's block); mean of both directions.
* VTM: per text one negative video and per video one negative text drawn from the softmax of the
  in-batch similarities with the diagonal at -inf (self is never a negative); batch =
  [positives; (text, negative video); (negative text, video)], labels [1]*B + [0]*2B.
* PEM: a random patch-aligned box per clip; the frozen Prompter's softmax over the entity-prompt
  bank of the boxed clip is the soft label; the student's MLP over its mean fused video token inside
  the box is trained with soft cross-entropy; samples whose label is unreliable are ignored.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

IGNORE_RULES = ("paper", "code")
IGNORE_THRESHOLD = 0.2


def vtc_loss(video_feat: torch.Tensor, text_feat: torch.Tensor, all_video: torch.Tensor, all_text: torch.Tensor,
             temp: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local (B, E) and gathered (N, E) normalised features -> (loss, sim_v2t (B, N), sim_t2v (B, N)).

    ``offset``: index of this process's first sample in the gathered features.
    """
    sim_v2t = video_feat @ all_text.t() / temp
    sim_t2v = text_feat @ all_video.t() / temp
    targets = torch.zeros_like(sim_v2t)
    b = video_feat.shape[0]
    targets[:, offset: offset + b] = torch.eye(b, device=targets.device, dtype=targets.dtype)
    loss_v2t = -(F.log_softmax(sim_v2t, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(sim_t2v, dim=1) * targets).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2, sim_v2t, sim_t2v


@torch.no_grad()
def hard_negatives(sim_v2t: torch.Tensor, sim_t2v: torch.Tensor, offset: int = 0,
                   generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (negative video index per text (B,), negative text index per video (B,)), local indices.

    Weights: softmax over this process's block of the similarities, the diagonal (self) at -inf.
    """
    b = sim_v2t.shape[0]
    block_v2t = sim_v2t[:, offset: offset + b].float().clone()
    block_t2v = sim_t2v[:, offset: offset + b].float().clone()
    if b < 2:
        raise ValueError("VTM needs at least 2 samples per process to draw a negative")
    block_v2t.fill_diagonal_(-math.inf)
    block_t2v.fill_diagonal_(-math.inf)
    video_for_text = torch.multinomial(F.softmax(block_t2v, dim=1), 1, generator=generator).squeeze(1)
    text_for_video = torch.multinomial(F.softmax(block_v2t, dim=1), 1, generator=generator).squeeze(1)
    return video_for_text, text_for_video


def vtm_labels(batch: int, device: torch.device) -> torch.Tensor:
    """[1]*B + [0]*2B."""
    return torch.cat([torch.ones(batch, dtype=torch.long), torch.zeros(2 * batch, dtype=torch.long)]).to(device)


def vtm_loss(logits: torch.Tensor) -> torch.Tensor:
    """logits (3B, 2) for [positives; text + negative video; negative text + video] -> cross-entropy."""
    return F.cross_entropy(logits, vtm_labels(logits.shape[0] // 3, logits.device))


def prompt_bank(template_feats: torch.Tensor, num_entities: int) -> torch.Tensor:
    """Normalised text features of template-major prompts (K*E, D) -> (E, D) mean over the K templates."""
    if template_feats.shape[0] % num_entities:
        raise ValueError(f"{template_feats.shape[0]} prompt features are not templates x {num_entities} entities")
    return template_feats.view(-1, num_entities, template_feats.shape[-1]).mean(0)


def pseudo_labels(crop_feat: torch.Tensor, bank: torch.Tensor, temp: torch.Tensor,
                  rule: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """Prompter crop features (B, D) x bank (E, D) -> (soft labels (B, E), ignore mask (B,) bool).

    ``paper``: ignore a sample whose top entity probability is below 0.2. ``code`` (the released
    code): the *index* of the top entity is compared with 0.2, so only samples whose top entity is
    entity 0 are ignored.
    """
    logits = crop_feat @ bank.t() / temp
    labels = F.softmax(logits, dim=1)
    if rule == "paper":
        ignore = labels.max(dim=1).values < IGNORE_THRESHOLD
    elif rule == "code":
        ignore = logits.argmax(dim=1) < IGNORE_THRESHOLD
    else:
        raise ValueError(f"PEM ignore rule '{rule}' is not one of {list(IGNORE_RULES)}")
    return labels, ignore


def pem_loss(logits: torch.Tensor, soft_labels: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy (B, E) averaged over the kept samples (0 when every sample is ignored)."""
    ce = -(F.log_softmax(logits, dim=1) * soft_labels).sum(1).masked_fill(ignore, 0.0)
    kept = (~ignore).sum()
    return ce.sum() / kept.clamp(min=1)


@torch.no_grad()
def random_boxes(batch: int, image_size: int, patch: int, generator: Optional[torch.Generator] = None,
                 area: tuple[float, float] = (0.3, 0.5), ratio: tuple[float, float] = (0.3, 1 / 0.3)) -> torch.Tensor:
    """(B, 4) int64 patch-aligned boxes (top, left, height, width) in pixels, each inside the image.

    As the original: area fraction uniform in ``area``, aspect ratio uniform in ``ratio``, corner
    uniform, sides and corner floored to the patch size, redrawn until the box fits (and is non-empty).
    """
    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    boxes = []
    for _ in range(batch):  # a few scalar draws per clip, not a hot path
        while True:
            s, r = uniform(*area) * image_size ** 2, uniform(*ratio)
            w, h = int(math.sqrt(s / r)), int(math.sqrt(s * r))
            left, top = (int(torch.randint(image_size, (), generator=generator)) for _ in range(2))
            w, h, left, top = w - w % patch, h - h % patch, left - left % patch, top - top % patch
            if w > 0 and h > 0 and left + w <= image_size and top + h <= image_size:
                boxes.append((top, left, h, w))
                break
    return torch.tensor(boxes, dtype=torch.long)


def box_masks(boxes: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """(B, 4) boxes -> bool (B, size, size), True inside (pixel or patch units, as the boxes)."""
    grid = torch.arange(size, device=device)
    top, left, h, w = (boxes[:, i, None].to(device) for i in range(4))
    rows = (grid >= top) & (grid < top + h)  # (B, S)
    cols = (grid >= left) & (grid < left + w)
    return rows[:, :, None] & cols[:, None, :]


def crop_video(video: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> the same with every pixel outside the clip's box set to 0 (the original pads with 0)."""
    inside = box_masks(boxes, video.shape[-1], video.device)  # (B, H, W)
    return video * inside[:, None, None].to(video.dtype)


def pooled_in_box(tokens: torch.Tensor, boxes: torch.Tensor, patch: int) -> torch.Tensor:
    """Video patch tokens (B, N, D) on a square grid -> (B, D) mean over the patches inside each box."""
    grid = int(round(tokens.shape[1] ** 0.5))
    inside = box_masks(torch.div(boxes, patch, rounding_mode="floor"), grid, tokens.device).flatten(1)  # (B, N)
    weights = inside.to(tokens.dtype)
    return (weights[:, :, None] * tokens).sum(1) / weights.sum(1, keepdim=True)
