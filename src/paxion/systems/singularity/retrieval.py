"""Singularity for text-video retrieval (and pre-training with MLM): ITC + ITM over fusion layers.

Training batch keys: ``video_input`` uint8 (B, T, C, H, W), ``text_input`` list of B captions and,
optionally, ``video_idx`` int64 (B,): captions of one video share it and are all ITC positives (and
never ITM negatives); without it each sample is its own only positive.

Evaluation (the protocol): ``encode_video_for_retrieval`` gives normalised per-frame embeddings
(ITC = mean over frames of cosines) plus the token clips the ITM head re-scores; ``score_pairs`` is
the ITM positive logit (the original re-ranks by ``itm_head(...)[:, 1]``), reduced over frames by
the late ensemble when one is configured.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from paxion.backbones.singularity.bert import BertLMHead
from paxion.registry import registry
from paxion.systems.singularity import objectives as obj
from paxion.systems.singularity.base import SingularityVideoText
from paxion.systems.singularity.config import SingularityRetrievalConfig

logger = logging.getLogger(__name__)

TEMP_RANGE = (0.001, 0.5)


@registry.register("model", "singularity_retrieval")
class SingularityRetrieval(SingularityVideoText):
    Config = SingularityRetrievalConfig

    def __init__(self, cfg: SingularityRetrievalConfig) -> None:
        w = cfg.widths()
        super().__init__(cfg, text_layers=w.text_layers, vision_pooler=True)
        self.vision_proj = nn.Linear(w.vision_width, w.embed_dim)
        self.text_proj = nn.Linear(w.text_width, w.embed_dim)
        self.temp = nn.Parameter(torch.tensor(w.temp_init))
        self.itm_head = nn.Linear(w.text_width, 2)
        # pre-training only: the MLM head (``text_encoder.cls`` of the original's BertForMaskedLM)
        self.mlm_head = (
            BertLMHead(w.text_width, w.vocab_size, w.layer_norm_eps, self.text_encoder.embeddings.word_embeddings)
            if "mlm" in cfg.objectives
            else None
        )
        self.init_weights()
        if cfg.pretrained:
            from paxion.systems.singularity.convert import load_checkpoint

            report = load_checkpoint(self, cfg.pretrained)
            logger.info("Singularity weights: %s: %d tensors; %s", report.path, len(report.loaded), report.notes)

    # ------------------------------------------------------------------ features
    def video_embed(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled frames (B, T, Dv) -> normalised per-frame embeddings (B, T, E)."""
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def text_embed(self, hidden: torch.Tensor) -> torch.Tensor:
        """text hidden (M, Lt, Dt) -> normalised [CLS] embedding (M, E)."""
        return F.normalize(self.text_proj(hidden[:, 0]), dim=-1)

    def itm_logits(self, hidden: torch.Tensor, mask: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        """P text (P, Lt, D) + mask, P videos (P, S, Dv) -> ITM logits (P, 2) from the fused [CLS]."""
        return self.itm_head(self.fuse(hidden, mask, video_tokens)[:, 0])

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            self.temp.clamp_(*TEMP_RANGE)
        video = self.normalize_video(batch["video_input"])
        tokens, pooled = self.encode_video(video)  # (B, T*L, Dv), (B, T, Dv)
        ids, mask = self.tokenize(batch["text_input"], self.cfg.max_txt_l)
        hidden = self.encode_text(ids, mask)  # (B, Lt, Dt)
        video_ids = batch.get("video_idx")
        sim = obj.frame_similarity(self.video_embed(pooled), self.text_embed(hidden)) / self.temp  # (B, B)

        weights = self.cfg.loss_weights
        losses: dict[str, torch.Tensor] = {}
        if "itc" in self.cfg.objectives:
            losses["loss_itc"] = obj.itc_loss(sim, video_ids) * weights.itc
        if "itm" in self.cfg.objectives:
            neg_video, neg_text = obj.sample_itm_negatives(sim.detach(), video_ids, self.cfg.itm_hard_neg)
            text_all = torch.cat([hidden, hidden, hidden[neg_text]])  # (3B, Lt, Dt)
            mask_all = torch.cat([mask, mask, mask[neg_text]])
            video_all = torch.cat([tokens, tokens[neg_video], tokens])  # (3B, S, Dv)
            losses["loss_itm"] = obj.itm_loss(self.itm_logits(text_all, mask_all, video_all)) * weights.itm
        if "mlm" in self.cfg.objectives:
            losses["loss_mlm"] = self.mlm(ids, mask, tokens) * weights.mlm
        out = {key: value.detach() for key, value in losses.items()}
        out["loss"] = torch.stack(list(losses.values())).sum()
        return out

    def mlm(self, ids: torch.Tensor, mask: torch.Tensor, video_tokens: torch.Tensor) -> torch.Tensor:
        """Masked-language-model loss of the captions, the fusion layers seeing the video."""
        masked_ids, labels = obj.mlm_mask(ids, self.cfg.mlm_prob, self.widths.vocab_size)
        hidden = self.fuse(self.encode_text(masked_ids, mask), mask, video_tokens)
        return obj.mlm_loss(self.mlm_head(hidden), labels)

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (B, T, C, H, W) -> ``embed`` (B, T, E) normalised per frame, ``tokens`` (B, C, S, Dv) clips."""
        clips, pooled = self.video_clips(self.normalize_video(video))
        return {"embed": self.video_embed(pooled), "tokens": clips}

    @torch.no_grad()
    def encode_text_for_retrieval(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """M strings -> ``embed`` (M, E), ``hidden`` (M, max_txt_l, Dt) and ``mask`` for the ITM head."""
        ids, mask = self.tokenize(texts, self.cfg.max_txt_l)
        hidden = self.encode_text(ids, mask)
        return {"embed": self.text_embed(hidden), "hidden": hidden, "mask": mask}

    def retrieval_similarity(self, video_embed: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
        """(Nv, T, E) x (Nt, E) -> ITC scores (Nv, Nt): mean over frames of the cosines (no temperature)."""
        return obj.frame_similarity(video_embed, text_embed)

    @torch.no_grad()
    def score_pairs(self, video_state: dict[str, torch.Tensor], text_state: dict[str, torch.Tensor]) -> torch.Tensor:
        """P (video, text) pairs -> (P,) ITM positive logits, reduced over frame clips by the late ensemble."""
        clips = video_state["tokens"].to(self.device)  # (P, C, S, Dv)
        num_clips = clips.shape[1]
        hidden = repeat(text_state["hidden"].to(self.device), "p l d -> (p c) l d", c=num_clips)
        mask = repeat(text_state["mask"].to(self.device), "p l -> (p c) l", c=num_clips)
        logits = self.itm_logits(hidden, mask, rearrange(clips, "p c s d -> (p c) s d"))[:, 1]
        scores = rearrange(logits, "(p c) -> c p", c=num_clips)
        return scores[0] if num_clips == 1 else obj.ensemble(scores, self.cfg.frame_ensemble)

    @torch.no_grad()
    def score_candidates(self, video_state: dict[str, torch.Tensor], candidates: list[list[str]]) -> torch.Tensor:
        """Multiple choice (MSRVTT-MC): B videos x K candidate captions -> (B, K) ITM positive logits."""
        num = {len(c) for c in candidates}
        if len(num) != 1:
            raise ValueError(f"score_candidates needs the same number of candidates per video, got {sorted(num)}")
        k = num.pop()
        text_state = self.encode_text_for_retrieval([text for row in candidates for text in row])
        video_state = {key: value.repeat_interleave(k, dim=0) for key, value in video_state.items()}
        return self.score_pairs(video_state, text_state).view(len(candidates), k)
