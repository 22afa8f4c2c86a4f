"""A frozen video-text backbone seen as a model of the task protocol (``load_model("backbone/<name>")``).

It scores as Paxion's ``backbone`` module does: cosine of the pooled, normalised video and text
vectors times the backbone's own ``logit_scale``, so its caption probabilities equal those of a
Paxion model built on the same backbone (``Scores.backbone``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from paxion.backbones.base import Preprocess, VideoTextBackbone
from paxion.registry import registry


class FrozenBackbone(nn.Module):
    """A registered backbone in eval mode with the retrieval capabilities of the task protocol."""

    def __init__(self, name: str, checkpoint: Optional[str] = None) -> None:
        super().__init__()
        self.name = name
        self.backbone: VideoTextBackbone = registry.get("backbone", name)()
        if checkpoint is not None:
            self.backbone.load_official_checkpoint(str(checkpoint))
        self.backbone.requires_grad_(False)
        pre = self.backbone.preprocess
        mean, std = torch.tensor(pre.mean).view(1, 1, 3, 1, 1), torch.tensor(pre.std).view(1, 1, 3, 1, 1)
        # (x / 255 - mean) / std as uint8 * scale + shift, the arithmetic of Paxion's normalize_video
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)

    @property
    def preprocess(self) -> Preprocess:
        return self.backbone.preprocess

    @property
    def device(self) -> torch.device:
        return self.pixel_scale.device

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> normalised float32 on the model's device."""
        if video.dtype != torch.uint8:
            raise TypeError(f"video must be uint8 (B, T, C, H, W), got {video.dtype}")
        return video.to(self.device).float() * self.pixel_scale + self.pixel_shift

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.backbone.tokenize(list(texts))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        raise TypeError(f"backbone/{self.name} is frozen: it scores, it does not train")

    @torch.no_grad()
    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled, _ = self.backbone.encode_video(self.normalize_video(video))
        return {"embed": F.normalize(pooled.float(), dim=-1)}  # (B, E)

    @torch.no_grad()
    def encode_text_for_retrieval(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        pooled, _ = self.backbone.encode_text(tokens)
        return {"embed": F.normalize(pooled.float(), dim=-1)}  # (M, E)

    def retrieval_similarity(self, video_embed: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
        """(Nv, E) x (Nt, E) -> the backbone's zero-shot logits (cosine x logit_scale)."""
        return (video_embed @ text_embed.t()) * self.backbone.logit_scale().float()
