"""PaxionModel seen through the task protocol (:mod:`paxion.tasks.protocol`).

A Paxion model scores with one of three feature sets (``task.eval_module``: backbone | patcher |
fused) and optionally ensembles with the frozen backbone (``model.eval_method``), so the view holds
the module chosen by the task and forwards every protocol call to the model's own scoring methods.
Scores are exactly those of the model's ``logits`` / ``paired_logits`` (the Paxion tests guard this).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from paxion.systems.paxion.model import PaxionModel
from paxion.systems.paxion.scoring import combine_scores
from paxion.tasks.protocol import State


class PaxionView:
    """Protocol methods of a :class:`PaxionModel` scoring with ``module``."""

    def __init__(self, model: PaxionModel, module: str) -> None:
        self.model, self.module = model, module
        self.cfg = model.cfg

    def __getattr__(self, name: str) -> Any:  # preprocess, device, normalize_video, forward, ...
        return getattr(self.model, name)

    def encode_video_for_retrieval(self, video: torch.Tensor) -> State:
        """uint8 (B, T, C, H, W) -> {"embed": (B, Q, D) | (B, E)} (+ "backbone_embed" for ensembles)."""
        enc = self.model.encode_video(video, use_patcher=self.module != "backbone")
        state = {"embed": enc.features(self.module)}
        if self.model.cfg.eval_method != "default":
            state["backbone_embed"] = enc.features("backbone")  # (B, E)
        return state

    def encode_text_for_retrieval(self, texts: list[str]) -> State:
        return {"embed": self.model.encode_text(texts)}  # (M, E)

    def retrieval_rows(self, video: State, text: State, direction: str) -> torch.Tensor:
        """Candidate probabilities per query row, with the configured ``eval_method``."""
        model, method = self.model, self.model.cfg.eval_method

        def logits(v: torch.Tensor, t: torch.Tensor, module: str) -> torch.Tensor:
            out = model.logits(v.to(model.device), t, module).float()  # (Nv, Nt)
            return out if direction == "v2t" else out.t()

        main = logits(video["embed"], text["embed"], self.module)
        side = None
        if method != "default":  # the model's text side is the frozen backbone text
            side = logits(video["backbone_embed"], text["embed"], "backbone")
        return combine_scores(main, side, method, model.cfg.two_step_top_k)

    def score_candidates(self, video: State, candidates: list[list[str]]) -> torch.Tensor:
        """B clips x their own K candidate texts -> logits (B, K)."""
        count = len(candidates[0])
        if any(len(c) != count for c in candidates):
            raise ValueError(f"every sample needs the same number of candidates, got {[len(c) for c in candidates]}")
        text = self.model.encode_text([t for cands in candidates for t in cands])
        text = rearrange(text, "(b k) d -> b k d", k=count)
        return self.model.paired_logits(video["embed"], text, self.module)
