"""ActionBench's two-way choices scored by any video-text model through the task protocol.

A Paxion model scores the probes with its own ``paired_logits`` (``tasks/actionbench.py``); every other
video-text model (Singularity, ALPRO, Open-VCLIP, ...) is asked only for the protocol's retrieval
capabilities, so it scores a probe exactly as it scores retrieval:

* ``use_pair_scorer=False``: the model's retrieval similarity (``retrieval_rows``: its
  ``retrieval_similarity`` or the dot product of the ``"embed"`` states) — Singularity ITC, ALPRO VTC,
  Open-VCLIP's cosine;
* ``use_pair_scorer=True``: the model's re-ranker ``score_pairs`` on every candidate pair — Singularity
  ITM, ALPRO VTM. Its retrieval re-ranks the similarity's top-k with it; with two candidates the top-k
  holds both, so the re-ranker alone decides.

Scores come back as probabilities over the candidates (a softmax of the model's own scores), the
correct candidate first, as the Paxion path returns them, so the tie rule and metrics are shared.
"""

from __future__ import annotations

from typing import Any

import torch

from paxion.tasks.protocol import index_state, require, retrieval_rows

TASK = "actionbench"


def _pair_scores(model: Any, video_state: dict, text_state: dict, video_index: torch.Tensor,
                 text_index: torch.Tensor) -> torch.Tensor:
    """Re-ranker scores of the pairs (video_index[p], text_index[p]) -> (P,)."""
    score = require(model, "score_pairs", TASK)
    return score(index_state(video_state, video_index), index_state(text_state, text_index)).float()


def encode_clips(model: Any, video: torch.Tensor, with_reversed: bool) -> dict:
    """uint8 video (B, T, C, H, W) -> the model's retrieval state of the clips, then (with_reversed) of the
    clips reversed in time, stacked on dim 0 (B or 2B rows): one pass serves every probe of a batch."""
    clips = torch.cat([video, video.flip(1)]) if with_reversed else video
    return require(model, "encode_video_for_retrieval", TASK)(clips)


def caption_choice_scores(model: Any, video_state: dict, candidates: list[list[str]],
                          use_pair_scorer: bool) -> torch.Tensor:
    """The first B clips of ``video_state`` x each clip's own K captions -> probabilities (B, K)."""
    size, count = len(candidates), len(candidates[0])
    if any(len(row) != count for row in candidates):
        raise ValueError(f"every clip needs the same number of candidate captions, got {[len(r) for r in candidates]}")
    video_state = index_state(video_state, slice(0, size))
    text_state = require(model, "encode_text_for_retrieval", TASK)([text for row in candidates for text in row])
    if use_pair_scorer:
        video_index = torch.arange(size).repeat_interleave(count)  # (B*K,)
        scores = _pair_scores(model, video_state, text_state, video_index, torch.arange(size * count))
        scores = scores.view(size, count)
    else:
        rows = retrieval_rows(model, video_state, text_state, "v2t").view(size, size, count)  # (B, B, K)
        own = torch.arange(size, device=rows.device)
        scores = rows[own, own].float()  # each clip against its own captions (B, K)
    return scores.softmax(dim=1)


def reversal_choice_scores(model: Any, video_state: dict, texts: list[str], use_pair_scorer: bool) -> torch.Tensor:
    """Each caption x [its clip, the clip reversed in time] -> probabilities (B, 2).

    ``video_state`` holds 2B rows: the clips, then their reversals (:func:`encode_clips` with_reversed)."""
    size = len(texts)
    text_state = require(model, "encode_text_for_retrieval", TASK)(list(texts))
    own = torch.arange(size)
    if use_pair_scorer:
        views = torch.cat([own, own + size])  # clip i, then reversed clip i
        scores = _pair_scores(model, video_state, text_state, views, torch.cat([own, own]))
        scores = scores.view(2, size).t()
    else:
        rows = retrieval_rows(model, video_state, text_state, "t2v")  # (B, 2B)
        own = own.to(rows.device)
        scores = torch.stack([rows[own, own], rows[own, own + size]], dim=1).float()
    return scores.softmax(dim=1)
