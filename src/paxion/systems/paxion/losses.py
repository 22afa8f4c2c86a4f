"""Training objectives as pure functions of normalised features (no model access).

Notation: B = per-process batch, W = world size, Q = latents, D = joint width. Video features are
per-latent normalised latents (B, Q, D) or normalised vectors (B, D); text is normalised (B, D).
``temp`` is the learnable scalar temperature (logits = similarity / temp).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from paxion.engine import dist
from paxion.systems.paxion.scoring import paired_similarity, similarity


def video_text_contrastive(
    video: torch.Tensor,
    text: torch.Tensor,
    temp: torch.Tensor,
    *,
    negative_text: Optional[torch.Tensor] = None,
    label_smoothing: float = 0.1,
    gather_with_grad: bool = False,
    gather: bool = True,
) -> torch.Tensor:
    """VTC (+ VAC when ``negative_text`` is given) -> scalar.

    video (B, Q, D) | (B, D), text (B, D), negative_text (B, D): antonym captions appended to the
    local texts as extra video->text negatives, so the v2t target stride becomes 2B. Features of all
    processes are gathered; with ``gather_with_grad=False`` (the original) the gathered copies carry no
    gradient, so under several processes the t2v half trains only ``temp``. ``gather=False`` keeps
    the loss local to this process (evaluation, where ranks may hold different batch counts).

        v2t[i, j] = max_q <z_i^q, T_j> / temp over all gathered texts,  target rank * |T_local| + i
        t2v[i, j] = max_q <t_i, Z_j^q> / temp over all gathered videos, target rank * B + i
        loss = (CE_ls(v2t) + CE_ls(t2v)) / 2
    """
    batch = video.shape[0]
    local_text = text if negative_text is None else torch.cat([text, negative_text], dim=0)  # (Bt, D)
    all_text, all_video, rank = local_text, video, 0
    if gather:
        all_text = dist.gather_features(local_text, with_grad=gather_with_grad)  # (W * Bt, D)
        all_video = dist.gather_features(video, with_grad=gather_with_grad)  # (W * B, Q, D) | (W * B, D)
        rank = dist.get_rank()
    arange = torch.arange(batch, device=video.device)
    v2t = similarity(video, all_text) / temp  # (B, W * Bt)
    t2v = similarity(all_video, text).t() / temp  # (B, W * B)
    loss_v2t = F.cross_entropy(v2t.float(), rank * local_text.shape[0] + arange, label_smoothing=label_smoothing)
    loss_t2v = F.cross_entropy(t2v.float(), rank * batch + arange, label_smoothing=label_smoothing)
    return (loss_v2t + loss_t2v) / 2


def action_temporal_matching(
    video: torch.Tensor,
    reversed_video: torch.Tensor,
    text: torch.Tensor,
    temp: torch.Tensor,
    *,
    salient: Optional[torch.Tensor] = None,
    label_smoothing: float = 0.1,
) -> torch.Tensor:
    """ATM: the caption must prefer the clip over its time reversal -> scalar.

    video, reversed_video (B, Q, D) | (B, D); text (B, D); salient (B,) bool or None.
    logits = [s(v_i, t_i), s(rev v_i, t_i)] / temp, CE_ls with target 0, averaged over the salient
    samples. With no salient sample the loss is exactly 0 (the original skips the term); a masked mean
    keeps shapes static, so no host synchronisation is needed to find out.
    """
    candidates = torch.stack([video, reversed_video], dim=1)  # (B, 2, Q, D) | (B, 2, D)
    logits = paired_similarity(candidates, text) / temp  # (B, 2)
    targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    per_sample = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, reduction="none")  # (B,)
    if salient is None:
        return per_sample.mean()
    weight = salient.to(per_sample.dtype)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def multiple_choice(
    logits: torch.Tensor, answer: torch.Tensor, *, label_smoothing: float = 0.1
) -> torch.Tensor:
    """MCQA: logits (B, K) over the candidate answers (K = 5, or 10 with antonym answers), answer (B,)."""
    return F.cross_entropy(logits.float(), answer, label_smoothing=label_smoothing)


def pad_antonym_choices(antonyms: list[str], candidates: list[str], answer: int, count: int = 5) -> list[str]:
    """Antonym answers of one question padded to ``count`` with the wrong original candidates.

    As the original: the wrong candidates (in order, listed twice) are appended, then the list is cut
    to ``count``; the appended choices are extra negatives, so the target index is unchanged.
    """
    if len(antonyms) > count:
        raise ValueError(f"{len(antonyms)} antonym choices, at most {count} expected")
    wrong = [c for k, c in enumerate(candidates) if k != answer]
    return (list(antonyms) + wrong + wrong)[:count]
