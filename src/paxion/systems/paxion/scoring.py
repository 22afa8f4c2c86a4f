"""Video-text similarity: the one definition shared by the losses, the tasks and the demo.

Video features are either latents ``(N, Q, D)`` (Knowledge Patcher: per-latent L2-normalised, score =
max over latents) or vectors ``(N, D)`` (fused or backbone vector, treated as a single latent). Text
features are normalised vectors ``(M, D)``. Logits are similarities divided by the learnable ``temp``
(patcher, fused) or multiplied by the backbone's logit scale (backbone zero-shot).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange

EVAL_METHODS = ("default", "ensemble_with_backbone", "two_step_independent")


def as_latents(video: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, 1, D); (N, Q, D) unchanged."""
    if video.dim() == 2:
        return rearrange(video, "n d -> n 1 d")
    if video.dim() != 3:
        raise ValueError(f"video features must be (N, D) or (N, Q, D), got shape {tuple(video.shape)}")
    return video


def normalize(features: torch.Tensor) -> torch.Tensor:
    """L2 normalisation over the last dim (per latent for (N, Q, D))."""
    return F.normalize(features, dim=-1)


def similarity(video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Every video against every text: video (N, Q, D) | (N, D), text (M, D) -> (N, M), max over latents."""
    sim = torch.einsum("nqd,md->nqm", as_latents(video), text.to(video.dtype))
    return sim.amax(dim=1)


def paired_similarity(video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Each video against its own candidates.

    video (B, Q, D) | (B, D) and text (B, K, D) -> (B, K); or video (B, K, Q, D) | (B, K, D) (candidate
    videos) and text (B, D) -> (B, K).
    """
    if text.dim() == 3:
        sim = torch.einsum("bqd,bkd->bqk", as_latents(video), text.to(video.dtype))
        return sim.amax(dim=1)
    if video.dim() == 3:
        video = rearrange(video, "b k d -> b k 1 d")
    sim = torch.einsum("bkqd,bd->bkq", video, text.to(video.dtype))
    return sim.amax(dim=2)


def combine_scores(
    model_logits: torch.Tensor,
    backbone_logits: Optional[torch.Tensor],
    method: str = "default",
    top_k: int = 50,
) -> torch.Tensor:
    """Candidate probabilities along the last dim, as the original's eval code computes them.

    * ``default``: softmax of the model logits;
    * ``ensemble_with_backbone``: softmax(model) + softmax(backbone);
    * ``two_step_independent``: model probabilities on the backbone's top-``top_k`` candidates, 0 elsewhere.
    """
    probs = model_logits.float().softmax(dim=-1)
    if method == "default":
        return probs
    if backbone_logits is None:
        raise ValueError(f"eval_method '{method}' needs backbone logits")
    if method == "ensemble_with_backbone":
        return probs + backbone_logits.float().softmax(dim=-1)
    if method == "two_step_independent":
        k = min(top_k, backbone_logits.shape[-1])
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep.scatter_(-1, backbone_logits.topk(k, dim=-1).indices, True)
        return probs.masked_fill(~keep, 0.0)
    raise ValueError(f"unknown eval_method '{method}'; valid: {list(EVAL_METHODS)}")
