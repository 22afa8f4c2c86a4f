"""Singularity's objectives and score reductions as pure functions of features (no model access).

* ITC: similarity = mean over frames of the cosine between each frame's projected pooled vector and
  the text [CLS] projection, divided by the temperature; targets are every pair with an equal video
  id, each row normalised to sum 1 (several captions of one video are all positives); loss = mean
  of the video->text and text->video soft cross-entropies.
* ITM: per text one negative video and per video one negative text, drawn from the softmax of the
  similarities with every positive pair's weight set to zero (hard negatives), or uniformly among
  non-positives; batch = [positives; (text, negative video); (negative text, video)], labels 1/0/0.
* MLM: BERT masking (50% by default: 80% [MASK], 10% random word, 10% kept), [PAD] and [CLS] never.
* Answer likelihood: per-sequence sum of the next-token cross-entropies (padding ignored).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from paxion.backbones.singularity.tokenizer import CLS_ID, PAD_ID

MASK_ID = 103  # bert-base-uncased [MASK]
IGNORE = -100


def frame_similarity(video_embed: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
    """Normalised video (Nv, T, E) x normalised text (Nt, E) -> (Nv, Nt): mean over frames of cosines."""
    return torch.einsum("vte,ne->vtn", video_embed, text_embed).mean(1)


def positive_mask(ids: Optional[torch.Tensor], size: int, device: torch.device) -> torch.Tensor:
    """(N,) video ids -> bool (N, N), True where the ids are equal; no ids: the diagonal."""
    if ids is None:
        return torch.eye(size, dtype=torch.bool, device=device)
    ids = ids.to(device).view(-1, 1)
    return ids == ids.T


def itc_loss(sim_v2t: torch.Tensor, ids: Optional[torch.Tensor]) -> torch.Tensor:
    """sim (N, N) video->text logits (already / temperature), ids (N,) -> scalar multi-positive ITC loss."""
    positives = positive_mask(ids, sim_v2t.shape[0], sim_v2t.device).to(sim_v2t.dtype)
    targets = positives / positives.sum(1, keepdim=True)  # symmetric mask: the same targets serve both ways
    loss_v2t = -(F.log_softmax(sim_v2t, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(sim_v2t.T, dim=1) * targets).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


@torch.no_grad()
def sample_itm_negatives(
    sim_v2t: torch.Tensor, ids: Optional[torch.Tensor], hard: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (negative video index for each text (N,), negative text index for each video (N,)).

    Never a positive: positive pairs get weight 0 (hard) or are excluded (uniform). A batch row whose
    every candidate is a positive has no negative to draw, which is an error.
    """
    positives = positive_mask(ids, sim_v2t.shape[0], sim_v2t.device)
    if positives.all(1).any():
        row = int(positives.all(1).nonzero()[0])
        raise ValueError(
            f"ITM: sample {row} of the batch has no negative (every sample shares its video id); "
            "use larger or more varied batches"
        )
    if hard:
        weights_v2t = F.softmax(sim_v2t.float() + 1e-4, dim=1).masked_fill(positives, 0.0)
        weights_t2v = F.softmax(sim_v2t.T.float() + 1e-4, dim=1).masked_fill(positives, 0.0)
    else:
        weights_v2t = weights_t2v = (~positives).float()
    video_for_text = torch.multinomial(weights_t2v, 1).squeeze(1)
    text_for_video = torch.multinomial(weights_v2t, 1).squeeze(1)
    return video_for_text, text_for_video


def itm_loss(logits: torch.Tensor) -> torch.Tensor:
    """logits (3N, 2) for [positives; text+negative video; negative text+video] -> cross-entropy."""
    n = logits.shape[0] // 3
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[:n] = 1
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def mlm_mask(
    input_ids: torch.Tensor, prob: float, vocab_size: int, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids (B, L) -> (masked ids, labels with -100 off the masked positions)."""
    draw = lambda p: torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < p  # noqa: E731
    masked = draw(prob) & (input_ids != PAD_ID) & (input_ids != CLS_ID)
    labels = input_ids.masked_fill(~masked, IGNORE)
    replaced = draw(0.8) & masked
    randomised = draw(0.5) & masked & ~replaced
    words = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    ids = input_ids.masked_fill(replaced, MASK_ID)
    ids = torch.where(randomised, words, ids)
    return ids, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, L, V), labels (B, L) with -100 ignored -> mean cross-entropy over masked tokens."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


def sequence_nll(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Decoder logits (N, L, V), token ids (N, L) -> (N,) summed next-token NLL (token 0 is the [CLS] start,
    padding ignored)."""
    targets = ids[:, 1:].masked_fill(ids[:, 1:] == PAD_ID, IGNORE)
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                          reduction="none")
    return nll.view(ids.shape[0], -1).sum(1)


def ensemble(scores: torch.Tensor, mode: str, dim: int = 0) -> torch.Tensor:
    """Reduce per-frame scores over ``dim``: mean | max | lse (log-sum-exp)."""
    if mode == "mean":
        return scores.mean(dim)
    if mode == "max":
        return scores.amax(dim)
    if mode == "lse":
        return torch.logsumexp(scores, dim)
    raise ValueError(f"frame ensemble '{mode}' is not one of ['mean', 'max', 'lse']")
