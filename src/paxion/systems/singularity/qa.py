"""Singularity for open-ended video QA: the question is encoded with the video, an answer decoder scores answers.

The question runs through every text layer (layers from ``fusion_layer`` on cross-attend to the video
tokens); a causal BERT decoder of ``text_layers - fusion_layer`` layers (3 at full size, initialised
from encoder layers 9..11) cross-attends to the question states and scores answers token by token.

Training batch keys: ``video_input`` uint8 (B, T, C, H, W), ``question_input`` (B strings),
``answer_input`` (B lists of answer strings) and optionally ``answer_weights`` (B lists, one weight
per answer). Without weights, repeated answers are merged and weighted by their frequency, as the
original's dataset does. Loss = sum over answers of weight x answer NLL, divided by B.

Answer ranking (``rank_answers``): the first answer token's probability after ``[CLS]`` picks the
top k answers of the list; each is re-scored by log(first-token probability) + log-likelihood of the
whole answer (the first token counted again, as the original); a softmax over the k gives the
returned probabilities, 0 for answers outside the top k.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from paxion.backbones.singularity.bert import BertLMHeadModel
from paxion.backbones.singularity.tokenizer import CLS_ID
from paxion.registry import registry
from paxion.systems.singularity import objectives as obj
from paxion.systems.singularity.base import SingularityVideoText, build_text_encoder
from paxion.systems.singularity.config import SingularityQAConfig

logger = logging.getLogger(__name__)


def merge_answers(answers: list[str]) -> tuple[list[str], list[float]]:
    """Raw answers of one question -> unique answers and their frequency weights (1/n per occurrence)."""
    counts = Counter(answers)
    return list(counts), [counts[a] / len(answers) for a in counts]


@registry.register("model", "singularity_qa")
class SingularityQA(SingularityVideoText):
    Config = SingularityQAConfig

    def __init__(self, cfg: SingularityQAConfig) -> None:
        w = cfg.widths()
        super().__init__(cfg, text_layers=w.text_layers, vision_pooler=False)
        decoder = build_text_encoder(
            w, layers=w.text_layers - w.fusion_layer, cross_from=0, cross_width=w.text_width, causal=True
        )
        self.text_decoder = BertLMHeadModel(decoder, w.text_width, w.vocab_size, w.layer_norm_eps)
        self.init_weights()
        if cfg.pretrained:
            from paxion.systems.singularity.convert import load_checkpoint

            report = load_checkpoint(self, cfg.pretrained)
            logger.info("Singularity weights: %s: %d tensors; %s", report.path, len(report.loaded), report.notes)

    # ------------------------------------------------------------------ encoders
    def encode_question(self, video_tokens: torch.Tensor, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, S, Dv), B questions -> question states (B, Lq, D) over all text layers, mask (B, Lq)."""
        ids, mask = self.tokenize(questions, self.cfg.max_q_len)
        return self.text_encoder(ids, mask, context=video_tokens), mask

    def answer_tokens(self, answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """answers -> ``[CLS] answer [SEP]`` ids / mask (N, max_a_len): the ``eos`` text appended, as the
        original's data does, is the only ``[SEP]``; an answer too long for ``max_a_len`` loses it."""
        return self.tokenize([f"{a} {self.cfg.eos}" for a in answers], self.cfg.max_a_len)

    def decode(
        self, ids: torch.Tensor, mask: torch.Tensor, states: torch.Tensor, states_mask: torch.Tensor
    ) -> torch.Tensor:
        """answer ids (N, La) given question states (N, Lq, D) -> vocabulary logits (N, La, V)."""
        return self.text_decoder(ids, mask, states, states_mask)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        video = self.normalize_video(batch["video_input"])
        tokens, _ = self.encode_video(video)  # (B, T*L, Dv)
        states, states_mask = self.encode_question(tokens, list(batch["question_input"]))
        answers, weights, counts = [], [], []
        given = batch.get("answer_weights")
        for i, raw in enumerate(batch["answer_input"]):
            raw = [raw] if isinstance(raw, str) else list(raw)
            merged, merged_weights = (raw, [float(x) for x in given[i]]) if given is not None else merge_answers(raw)
            if len(merged) != len(merged_weights) or not merged:
                raise ValueError(f"QA sample {i}: {len(merged)} answers but {len(merged_weights)} weights")
            answers += merged
            weights += merged_weights
            counts.append(len(merged))
        index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(self.device)
        ids, mask = self.answer_tokens(answers)
        nll = obj.sequence_nll(self.decode(ids, mask, states[index], states_mask[index]), ids)  # (N,)
        loss = (torch.tensor(weights, device=nll.device) * nll).sum() / video.shape[0]
        return {"loss": loss, "loss_vqa": loss.detach()}

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (B, T, C, H, W) -> ``tokens`` (B, C, S, Dv): one clip (concat) or one per frame (late ensembles).

        The QA model has no joint embedding space, so the state carries no ``embed``.
        """
        clips, _ = self.video_clips(self.normalize_video(video))
        return {"tokens": clips}

    @torch.no_grad()
    def rank_answers(
        self, video_state: dict[str, torch.Tensor], questions: list[str], answer_list: list[str], k: int
    ) -> torch.Tensor:
        """-> (B, A) probabilities of the re-ranked top-k answers (0 outside the top k)."""
        clips = video_state["tokens"].to(self.device)  # (B, C, S, Dv)
        batch, num_clips = clips.shape[:2]
        k = min(k, len(answer_list))
        # one question pass per clip: (C*B, Lq, D), clip-major
        states, states_mask = self.encode_question(
            rearrange(clips, "b c s d -> (c b) s d"), list(questions) * num_clips
        )
        answer_ids, answer_mask = self.answer_tokens(answer_list)  # (A, La)
        start = torch.full((states.shape[0], 1), CLS_ID, dtype=torch.long, device=self.device)
        first = self.decode(start, torch.ones_like(start), states, states_mask)[:, 0]  # (C*B, V)
        first = rearrange(first.float(), "(c b) v -> c b v", c=num_clips)
        probs, logp = F.softmax(first, dim=-1), F.log_softmax(first, dim=-1)
        late = self.cfg.frame_ensemble != "concat"
        if late:  # the original ensembles the probabilities, then applies a softmax once more (never 0)
            probs = F.softmax(obj.ensemble(probs, self.cfg.frame_ensemble), dim=-1)[None]
            logp = probs.log()
        # top k chosen on the probabilities, as the original (log space would blur near-ties); their log
        # taken as a log-softmax: finite where a probability underflows (the original's log(0) gave NaN)
        top_ids = probs[0].index_select(1, answer_ids[:, 1]).topk(k, dim=1).indices  # (B, k)
        top_logp = logp[0].index_select(1, answer_ids[:, 1]).gather(1, top_ids)

        ids = answer_ids[top_ids.flatten()]  # (B*k, La), question-major
        mask = answer_mask[top_ids.flatten()]
        ids_c, mask_c = repeat(ids, "n l -> (c n) l", c=num_clips), repeat(mask, "n l -> (c n) l", c=num_clips)
        index = repeat(torch.arange(batch, device=self.device), "b -> (c b k)", c=num_clips, k=k)
        index = index + repeat(torch.arange(num_clips, device=self.device) * batch, "c -> (c b k)", b=batch, k=k)
        nll = obj.sequence_nll(self.decode(ids_c, mask_c, states[index], states_mask[index]), ids_c)
        scores = top_logp[None] - rearrange(nll, "(c b k) -> c b k", c=num_clips, b=batch)  # (C, B, k)
        scores = obj.ensemble(scores, self.cfg.frame_ensemble) if late else scores[0]
        out = torch.zeros(batch, len(answer_list), device=self.device)
        return out.scatter_(1, top_ids, F.softmax(scores, dim=-1))
