"""ALPRO (Li et al., CVPR 2022): TimeSformer video encoder + BERT whose layers from ``fusion_layer`` on
self-attend over the concatenated [text; video] tokens; VTC, VTM, MLM, PEM; retrieval and QA heads.

The video tokens the fusion layers see are the "temporal" pooling of the TimeSformer output:
[CLS] + the mean over frames of every patch token, (B, 1 + N, D). Parameter names are ours
(``visual_encoder.``, ``text_encoder.``, ``mlm_head.``); :mod:`paxion.systems.alpro.convert` maps the
release files onto them.

Training batch keys: ``video_input`` uint8 (B, T, C, H, W) and ``text_input`` (B captions), or for
QA ``question_input`` and ``label`` (B,) (index in ``ans2label``; -100 for an answer outside it).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from paxion.backbones.base import CLIP_MEAN, CLIP_STD, Preprocess
from paxion.backbones.singularity.bert import BertLMHead, additive_padding_mask, bert_init_
from paxion.backbones.singularity.tokenizer import SEP_ID, WordPieceTokenizer
from paxion.backbones.timesformer.alpro import build_text_encoder
from paxion.backbones.timesformer.vit import TimeSformer, temporal_pool
from paxion.engine.dist import gather_features, get_rank
from paxion.registry import registry
from paxion.systems.alpro import objectives as obj
from paxion.systems.alpro.config import AlproConfig
from paxion.systems.alpro.prompter import Prompter
from paxion.systems.singularity.base import fit_tokens
from paxion.systems.singularity.objectives import mlm_loss, mlm_mask

logger = logging.getLogger(__name__)

TEMP_RANGE = (0.001, 0.5)


def mlp_head(width: int, outputs: int) -> nn.Sequential:
    """Linear(D, 2D) -> ReLU -> Linear(2D, outputs): ALPRO's QA classifier and PEM head."""
    return nn.Sequential(nn.Linear(width, width * 2), nn.ReLU(True), nn.Linear(width * 2, outputs))


@registry.register("model", "alpro")
class Alpro(nn.Module):
    Config = AlproConfig

    def __init__(self, cfg: AlproConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths()
        self.widths = w
        self.num_frames_test = cfg.num_frames_test or cfg.num_frames
        self.preprocess = Preprocess(num_frames=cfg.num_frames, image_size=w.video.image_size)
        self.visual_encoder = TimeSformer(w.video)
        self.text_encoder = build_text_encoder(w, w.text_layers)
        self.vision_proj = nn.Linear(w.video.width, w.embed_dim)
        self.text_proj = nn.Linear(w.text_width, w.embed_dim)
        self.temp = nn.Parameter(torch.tensor(w.temp_init))
        self.itm_head = nn.Linear(w.text_width, 2)
        wants = set(cfg.objectives)
        self.mlm_head = (BertLMHead(w.text_width, w.vocab_size, w.eps, self.text_encoder.embeddings.word_embeddings)
                         if "mlm" in wants else None)
        self.classifier = mlp_head(w.text_width, cfg.num_answers) if cfg.num_answers else None
        self.prompter: Optional[Prompter] = None
        self.mpm_head: Optional[nn.Sequential] = None
        if "pem" in wants:
            self.prompter = Prompter(w)
            self.mpm_head = mlp_head(w.text_width, len(self.prompter_entities()))
        bert_init_(self, w.init_std, skip="visual_encoder")
        self._tokenizer: Optional[WordPieceTokenizer] = None
        self.reset_pixel_buffers()
        if cfg.pretrained:
            from paxion.systems.alpro.convert import load_checkpoint

            report = load_checkpoint(self, cfg.pretrained)
            logger.info("ALPRO weights %s: %d tensors, %d left as built; %s", report.path, len(report.loaded),
                        len(report.missing), report.notes)
        if self.prompter is not None:
            self.prompter.prepare(self.cfg.prompter_checkpoint, self.prompter_entities(), self.cfg.prompts.prompt_len)

    def prompter_entities(self) -> list[str]:
        p = self.cfg.prompts
        if p.entities:
            return list(p.entities)[: p.num_entities]
        if not p.entity_file:
            raise ValueError("objective 'pem' needs model.prompts.entities or model.prompts.entity_file")
        with open(p.entity_file) as f:
            words = [line.split(" ")[0].strip() for line in f.read().split("\n")[: p.num_entities]]
        return [word for word in words if word]

    def reset_pixel_buffers(self) -> None:
        device = self.temp.device
        std = torch.tensor(CLIP_STD, device=device).view(1, 1, 3, 1, 1)
        mean = torch.tensor(CLIP_MEAN, device=device).view(1, 1, 3, 1, 1)
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)

    # ------------------------------------------------------------------ protocol basics
    @property
    def device(self) -> torch.device:
        return self.temp.device

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> CLIP-normalised float32 on the model's device."""
        if video.dtype != torch.uint8:
            raise TypeError(f"video_input must be uint8 (B, T, C, H, W), got {video.dtype}")
        return video.to(self.device, non_blocking=True).float() * self.pixel_scale + self.pixel_shift

    def tokenize(self, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> (input_ids, attention_mask) (B, max_len): padded to max_length, truncated (HF rules)."""
        if self._tokenizer is None:
            self._tokenizer = WordPieceTokenizer()
        tokens = self._tokenizer(list(texts))
        ids, mask = fit_tokens(tokens["input_ids"], tokens["attention_mask"], max_len)
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------ encoders
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """normalised (B, T, C, H, W) -> pooled video tokens (B, 1 + N, D)."""
        return temporal_pool(self.visual_encoder(video), video.shape[1])

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> text-only hidden states (B, L, D): embeddings + layers 0 .. fusion_layer-1."""
        return self.text_encoder(ids, mask, end=self.widths.fusion_layer)

    def fuse(self, text: torch.Tensor, mask: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """Joint self-attention over [text (B, L, D); video (B, S, D)] in the fusion layers -> (B, L+S, D)."""
        joint_mask = torch.cat([mask, mask.new_ones(video.shape[:2])], dim=1)
        x = torch.cat([text, video], dim=1)
        return self.text_encoder.encoder(x, additive_padding_mask(joint_mask, x.dtype), start=self.widths.fusion_layer)

    def video_feat(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vision_proj(tokens[:, 0]), dim=-1)

    def text_feat(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(hidden[:, 0]), dim=-1)

    def vtm_logits(self, text: torch.Tensor, mask: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """P pairs -> (P, 2) logits of the fused text [CLS]."""
        return self.itm_head(self.fuse(text, mask, video)[:, 0])

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, Any], gather: bool = True) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            self.temp.clamp_(*TEMP_RANGE)
        video = self.normalize_video(batch["video_input"])
        tokens = self.encode_video(video)  # (B, 1+N, D)
        losses: dict[str, torch.Tensor] = {}
        weights = self.cfg.loss_weights
        if "qa" in self.cfg.objectives:
            logits = self.answer_head(tokens, list(batch["question_input"]))
            labels = batch["label"].to(self.device)
            losses["loss_qa"] = F.cross_entropy(logits, labels, ignore_index=-100) * weights.qa
        if {"vtc", "vtm", "mlm", "pem"} & set(self.cfg.objectives):
            losses.update(self.pretrain_losses(video, tokens, list(batch["text_input"]), gather))
        out = {key: value.detach() for key, value in losses.items()}
        out["loss"] = torch.stack(list(losses.values())).sum()
        return out

    def pretrain_losses(self, video: torch.Tensor, tokens: torch.Tensor, texts: list[str],
                        gather: bool) -> dict[str, torch.Tensor]:
        weights, wants = self.cfg.loss_weights, set(self.cfg.objectives)
        ids, mask = self.tokenize(texts, self.cfg.max_txt_len)
        hidden = self.encode_text(ids, mask)
        v_feat, t_feat = self.video_feat(tokens), self.text_feat(hidden)
        all_v = gather_features(v_feat, with_grad=True) if gather else v_feat
        all_t = gather_features(t_feat, with_grad=True) if gather else t_feat
        offset = get_rank() * v_feat.shape[0] if gather else 0
        vtc, sim_v2t, sim_t2v = obj.vtc_loss(v_feat, t_feat, all_v, all_t, self.temp, offset)
        losses: dict[str, torch.Tensor] = {}
        if "vtc" in wants:
            losses["loss_vtc"] = vtc * weights.vtc
        fused_pos = None
        if "vtm" in wants or "pem" in wants:
            fused_pos = self.fuse(hidden, mask, tokens)  # (B, L+S, D)
        if "vtm" in wants:
            neg_video, neg_text = obj.hard_negatives(sim_v2t.detach(), sim_t2v.detach(), offset)
            fused_neg = self.fuse(torch.cat([hidden, hidden[neg_text]]), torch.cat([mask, mask[neg_text]]),
                                  torch.cat([tokens[neg_video], tokens]))
            logits = self.itm_head(torch.cat([fused_pos[:, 0], fused_neg[:, 0]]))
            losses["loss_vtm"] = obj.vtm_loss(logits) * weights.vtm
        if "mlm" in wants:
            masked, labels = obj_mlm(ids, self.cfg.mlm_prob, self.widths.vocab_size)
            fused = self.fuse(self.encode_text(masked, mask), mask, tokens)[:, : ids.shape[1]]
            losses["loss_mlm"] = mlm_loss(self.mlm_head(fused), labels) * weights.mlm
        if "pem" in wants:
            losses["loss_pem"] = self.pem(video, fused_pos[:, ids.shape[1] + 1:]) * weights.pem
        return losses

    def pem(self, video: torch.Tensor, student_patches: torch.Tensor) -> torch.Tensor:
        """Soft-CE of the student's MLP over its fused patch tokens in a random box vs the Prompter's labels."""
        patch = self.widths.video.patch_size
        boxes = obj.random_boxes(video.shape[0], video.shape[-1], patch)
        raw = (video - self.pixel_shift) / self.pixel_scale  # back to 0..255: the crop is zero-padded in pixels
        crops = obj.crop_video(raw, boxes) * self.pixel_scale + self.pixel_shift
        soft, ignore = self.prompter.pseudo_labels(crops, self.cfg.prompts.ignore_rule)
        logits = self.mpm_head(obj.pooled_in_box(student_patches, boxes, patch))
        return obj.pem_loss(logits, soft, ignore)

    # ------------------------------------------------------------------ QA
    def answer_head(self, tokens: torch.Tensor, questions: list[str]) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("answer_logits needs a QA classifier: set model.num_answers (and objectives: [qa])")
        ids, mask = self.tokenize(questions, self.cfg.max_txt_len)
        return self.classifier(self.fuse(self.encode_text(ids, mask), mask, tokens)[:, 0])

    @torch.no_grad()
    def answer_logits(self, video: torch.Tensor, questions: list[str]) -> torch.Tensor:
        """uint8 (B, T, C, H, W), B questions -> (B, num_answers)."""
        return self.answer_head(self.encode_video(self.normalize_video(video)), questions)

    # ------------------------------------------------------------------ retrieval
    @torch.no_grad()
    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> ``embed`` (B, E) normalised VTC feature, ``tokens`` (B, 1+N, D) for the VTM head."""
        tokens = self.encode_video(self.normalize_video(video))
        return {"embed": self.video_feat(tokens), "tokens": tokens}

    @torch.no_grad()
    def encode_text_for_retrieval(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids, mask = self.tokenize(texts, self.cfg.max_txt_len)
        hidden = self.encode_text(ids, mask)
        return {"embed": self.text_feat(hidden), "hidden": hidden, "mask": mask}

    @torch.no_grad()
    def score_pairs(self, video_state: dict[str, torch.Tensor], text_state: dict[str, torch.Tensor]) -> torch.Tensor:
        """P pairs -> (P,) softmax(VTM logits)[:, 1] (the original's score); ``lavis``: VTM logit[1] + VTC sim."""
        logits = self.vtm_logits(text_state["hidden"].to(self.device), text_state["mask"].to(self.device),
                                 video_state["tokens"].to(self.device))
        if self.cfg.retrieval_protocol == "lavis":
            sim = (video_state["embed"].to(self.device) * text_state["embed"].to(self.device)).sum(-1)
            return logits[:, 1] + sim
        return logits.float().softmax(dim=1)[:, 1]


def obj_mlm(ids: torch.Tensor, prob: float, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of the captions (Singularity's), with [SEP] never masked: ALPRO excludes every special token."""
    masked, labels = mlm_mask(ids, prob, vocab_size)
    sep = ids == SEP_ID
    return torch.where(sep, ids, masked), labels.masked_fill(sep, -100)
