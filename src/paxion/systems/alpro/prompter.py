"""PEM's teacher: a frozen VTC-only ALPRO (the Prompter) and its entity-prompt bank.

The bank holds, per entity, the mean over the video templates of the normalised text features of
"<template with the entity>" (template-major order, as the original builds it; the mean is not
re-normalised). Pseudo-labels for a clip are the softmax of its normalised video feature against
the bank divided by the Prompter's temperature. The Prompter never trains: its parameters have
``requires_grad=False``, it stays in eval mode and runs under ``no_grad``.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from paxion.backbones.singularity.bert import bert_init_
from paxion.backbones.singularity.tokenizer import WordPieceTokenizer
from paxion.backbones.timesformer.alpro import AlproWidths, build_text_encoder
from paxion.backbones.timesformer.vit import TimeSformer
from paxion.systems.alpro import objectives as obj
from paxion.systems.singularity.base import fit_tokens

logger = logging.getLogger(__name__)

VIDEO_TEMPLATES = (
    "A footage of a {}.", "A footage of the {}.", "A footage of one {}.",
    "A video of a {}.", "A video of the {}.", "A video of one {}.",
    "A portrait of a {}.", "A portrait of the {}.", "A portrait of one {}.",
    "A video footage of a {}.", "A video footage of the {}.", "A video footage of one {}.",
)


class Prompter(nn.Module):
    """Visual encoder, text-only BERT layers, projections and temperature of a VTC-only model."""

    def __init__(self, widths: AlproWidths) -> None:
        super().__init__()
        self.widths = widths
        self.visual_encoder = TimeSformer(widths.video)
        self.text_encoder = build_text_encoder(widths, widths.fusion_layer)
        self.vision_proj = nn.Linear(widths.video.width, widths.embed_dim)
        self.text_proj = nn.Linear(widths.text_width, widths.embed_dim)
        self.temp = nn.Parameter(torch.tensor(widths.temp_init))
        self.register_buffer("video_prompt_feat", torch.zeros(0, widths.embed_dim), persistent=False)  # rebuilt
        bert_init_(self, widths.init_std, skip="visual_encoder")

    def train(self, mode: bool = True) -> "Prompter":
        return super().train(False)  # a frozen teacher: dropout and drop-path always off

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def prepare(self, checkpoint: Optional[str], entities: list[str], prompt_len: int) -> None:
        """Load the teacher's weights (when given), freeze it and build the prompt bank."""
        if checkpoint:
            from paxion.systems.alpro.convert import load_prompter

            report = load_prompter(self, checkpoint)
            logger.info("Prompter weights %s: %d tensors; ignored %d", report.path, len(report.loaded),
                        len(report.unexpected))
        self.freeze()
        self.build_bank(entities, prompt_len)

    @torch.no_grad()
    def build_bank(self, entities: list[str], prompt_len: int, templates: tuple[str, ...] = VIDEO_TEMPLATES) -> None:
        if not entities:
            raise ValueError("the prompt bank needs at least one entity")
        prompts = [template.format(entity) for template in templates for entity in entities]
        tokens = WordPieceTokenizer()(prompts)
        ids, mask = fit_tokens(tokens["input_ids"], tokens["attention_mask"], prompt_len)
        device = self.temp.device
        hidden = self.text_encoder(ids.to(device), mask.to(device))
        feats = F.normalize(self.text_proj(hidden[:, 0]), dim=-1)  # (K*E, D)
        self.video_prompt_feat = obj.prompt_bank(feats, len(entities))

    @torch.no_grad()
    def pseudo_labels(self, crops: torch.Tensor, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised boxed clips (B, T, C, H, W) -> (soft labels (B, E), ignore (B,))."""
        tokens = self.visual_encoder(crops)
        feat = F.normalize(self.vision_proj(tokens[:, 0]), dim=-1)
        return obj.pseudo_labels(feat, self.video_prompt_feat, self.temp, rule)
