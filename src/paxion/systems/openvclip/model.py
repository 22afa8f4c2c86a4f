"""Open-VCLIP: a temporal CLIP fine-tuned as a video classifier over class-name prompts.

The model (``model.arch: openvclip``) holds a video-text backbone; its classifier is the template
ensemble of the class names' text embeddings (computed without gradients, as the original does once
at start-up). Training: ``logit_scale.exp() * cos(frame, class)`` averaged over frames, against the
labels with soft cross-entropy; only the visual tower and ``logit_scale`` train (the original's text
tower gets no gradient because the classifier is precomputed).

Any registered backbone works: the temporal CLIP gives one embedding per frame, other backbones
(the shipped tiny InternVideo of the CPU demo) their pooled clip embedding as a single "frame".
The reference state dict θ0 for IWO / weight patching / SWA is the original CLIP (``clip_ckpt``)
as stored in its file, fp32 (the original reads it with ``torch.jit.load(...).state_dict()``, without
the fp16 round trip its model loading applies; for OpenAI's fp16 files both are the same values), or
the backbone's weights as built when no file is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from paxion.backbones.base import CheckpointError, Preprocess
from paxion.backbones.safe_load import load_safetensors, torch_load
from paxion.backbones.openvclip import SIZES, OpenVCLIPBackbone, build_openvclip_backbone
from paxion.backbones.openvclip.convert import read_clip_state, read_pickled_checkpoint
from paxion.backbones.openvclip.jit_archive import is_torchscript_archive
from paxion.backbones.openvclip.temporal import is_added_key
from paxion.registry import registry
from paxion.systems.openvclip.objectives import (
    TEMPLATE_SETS,
    class_prompts,
    ensemble_classifier,
    frame_logits,
    soft_cross_entropy,
)

logger = logging.getLogger(__name__)

CLIP_TRAINABLE = ["visual.", "logit_scale"]


@dataclass
class OpenVCLIPModelConfig:
    arch: str = "openvclip"
    backbone: str = "b16"  # b32 | b16 | l14 | tiny (temporal CLIP) or any registered backbone name
    temporal_modeling: str = "expand_temporal_view"  # none | expand_temporal_view[_step2|_step3] | channel_shift
    mask_clip_ends: bool = False  # original: zero-filled neighbours at the clip ends
    fixed_channel_shift: bool = False
    num_frames: int = 8
    clip_ckpt: Optional[str] = None  # OpenAI CLIP file (JIT .pt or state dict): start weights and θ0
    # round the CLIP file's Linear/Conv/projection weights through fp16 as the original loads them
    # (changes nothing for OpenAI's fp16 files); false keeps an fp32 file's values
    clip_fp16_cast: bool = True
    release_ckpt: Optional[str] = None  # Open-VCLIP file (swa_2_22.pth, checkpoint_epoch_*.pyth) loaded after
    state_ckpt: Optional[str] = None  # a state dict in this model's key space ({"model_state": ...} too), e.g. SWA
    templates: str = "openvclip"  # openvclip (the 28 prompts) | name_only
    text_batch: int = 256  # prompts per text-tower pass when building the classifier
    # parameter-name prefixes (inside the CLIP module) that train; the rest is frozen
    trainable: list[str] = field(default_factory=lambda: list(CLIP_TRAINABLE))

    def __post_init__(self) -> None:
        if self.templates not in TEMPLATE_SETS:
            raise ValueError(f"model.templates '{self.templates}' is not one of {sorted(TEMPLATE_SETS)}")


def build_backbone(cfg: OpenVCLIPModelConfig) -> nn.Module:
    if cfg.backbone in SIZES:
        backbone = build_openvclip_backbone(
            cfg.backbone,
            temporal_modeling=cfg.temporal_modeling,
            mask_clip_ends=cfg.mask_clip_ends,
            fixed_channel_shift=cfg.fixed_channel_shift,
            num_frames=cfg.num_frames,
            clip_fp16_cast=cfg.clip_fp16_cast,
        )
    else:
        backbone = registry.get("backbone", cfg.backbone)()
    if cfg.clip_ckpt:
        backbone.load_official_checkpoint(cfg.clip_ckpt)
    return backbone


@registry.register("model", "openvclip")
class OpenVCLIP(nn.Module):
    Config = OpenVCLIPModelConfig

    def __init__(self, cfg: OpenVCLIPModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        self.templates = TEMPLATE_SETS[cfg.templates]
        self.clip_prefix = "backbone.model." if isinstance(self.backbone, OpenVCLIPBackbone) else "backbone."
        self._reference = self._initial_reference()
        if cfg.release_ckpt:
            self.backbone.load_official_checkpoint(cfg.release_ckpt)
        if cfg.state_ckpt:
            self.load_state_file(cfg.state_ckpt)
        self._freeze()
        pre = self.backbone.preprocess
        self.num_frames_test = cfg.num_frames
        mean, std = torch.tensor(pre.mean).view(3, 1, 1), torch.tensor(pre.std).view(3, 1, 1)
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)
        self.register_buffer("classifier", torch.zeros(0), persistent=False)  # (C, E) once classes are set
        self.class_names: list[str] = []

    def _initial_reference(self) -> dict[str, torch.Tensor]:
        """θ0 before any release file: the CLIP file's tensors as stored, or the backbone as built."""
        if self.cfg.clip_ckpt and isinstance(self.backbone, OpenVCLIPBackbone):
            stored = read_clip_state(self.cfg.clip_ckpt)  # fp32, no fp16 round trip (the original's θ0)
            return {self.clip_prefix + key: value for key, value in stored.items()}
        return {
            name: value.detach().clone()
            for name, value in self.state_dict().items()
            if name.startswith(self.clip_prefix) and value.is_floating_point() and not is_added_key(name)
        }

    def reference_from_file(self, path: str) -> dict[str, torch.Tensor]:
        """A technique's ``reference:`` file in this model's key space: a state dict of this model, or any file
        the backbone's converter reads (OpenAI CLIP JIT/state dict, ``swa_*.pth``, SlowFast ``.pyth``), as stored."""
        own = self.state_dict()
        raw = None if is_torchscript_archive(path) else read_pickled_checkpoint(path)  # never run an archive
        state = raw.get("model_state", raw) if isinstance(raw, dict) else raw
        if isinstance(state, dict) and state and all(key in own for key in state):
            return state  # already in this model's key space
        if not isinstance(self.backbone, OpenVCLIPBackbone):
            raise CheckpointError(f"'{path}': keys are not this model's and its backbone has no CLIP converter")
        return {self.clip_prefix + key: value for key, value in read_clip_state(path).items()}

    def load_state_file(self, path: str) -> None:
        """Load a state dict in this model's key space (a subset is fine; unknown keys are an error)."""
        raw = load_safetensors(path) if str(path).endswith(".safetensors") else torch_load(path)
        state = raw.get("model_state", raw.get("model", raw)) if isinstance(raw, dict) else raw
        if not isinstance(state, dict) or not state:
            raise CheckpointError(f"'{path}' holds no state dict")
        unknown = [key for key in state if key not in self.state_dict()]
        if unknown:
            raise CheckpointError(f"'{path}': key '{unknown[0]}' is not a parameter of this Open-VCLIP model")
        self.load_state_dict(state, strict=False)
        logger.info("loaded %d tensors from %s", len(state), path)

    def _freeze(self) -> None:
        for name, param in self.named_parameters():
            inner = name[len(self.clip_prefix) :] if name.startswith(self.clip_prefix) else name
            param.requires_grad = any(inner.startswith(prefix) for prefix in self.cfg.trainable)

    # ------------------------------------------------------------------ protocol basics

    @property
    def device(self) -> torch.device:
        return self.pixel_scale.device

    @property
    def preprocess(self) -> Preprocess:
        pre = self.backbone.preprocess
        return Preprocess(num_frames=self.cfg.num_frames, image_size=pre.image_size, mean=pre.mean, std=pre.std)

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> normalised float32 on the model's device."""
        if video.dtype != torch.uint8:
            raise TypeError(f"video must be uint8 (B, T, C, H, W), got {video.dtype}")
        return video.to(self.device, non_blocking=True).float() * self.pixel_scale + self.pixel_shift

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """θ0 in this model's key space: the original CLIP weights (techniques interpolate towards them)."""
        return self._reference

    def zero_shot_logit_scale(self) -> torch.Tensor:
        return self.backbone.logit_scale()

    # ------------------------------------------------------------------ features

    def frame_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """normalised video (B, T, C, H, W) -> per-frame embeddings (B, T', E); T' = 1 for pooled backbones."""
        if isinstance(self.backbone, OpenVCLIPBackbone):
            return self.backbone.frame_embeddings(video)[0]
        return self.backbone.encode_video(video)[0].unsqueeze(1)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """(M,) strings -> (M, E) unnormalised, in chunks of ``text_batch``, without gradients."""
        chunks = []
        for start in range(0, len(texts), self.cfg.text_batch):
            tokens = self.backbone.tokenize(texts[start : start + self.cfg.text_batch])
            chunks.append(self.backbone.encode_text({k: v.to(self.device) for k, v in tokens.items()})[0].float())
        return torch.cat(chunks)

    @torch.no_grad()
    def build_classifier(self, class_names: list[str]) -> torch.Tensor:
        """(C, E) unit rows: class names x templates, normalised, averaged over templates, normalised."""
        prompts = class_prompts(list(class_names), self.templates)
        return ensemble_classifier(self.text_embeddings(prompts), len(self.templates))

    def set_class_names(self, class_names: list[str]) -> None:
        """The classes training and ``classify`` score against (computed once, as the original)."""
        self.class_names = list(class_names)
        self.classifier = self.build_classifier(self.class_names)

    # ------------------------------------------------------------------ training and protocol

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """batch {"video" (B, T, C, H, W) normalised, "label" (B,) or (B, C)} -> {"loss", "top1"}."""
        logits = self.logits(batch["video"])
        label = batch["label"]
        loss = soft_cross_entropy(logits.float(), label)
        hard = label if label.dim() == 1 else label.argmax(dim=-1)
        return {"loss": loss, "top1": (logits.argmax(dim=-1) == hard).float().mean().detach()}

    def logits(self, video: torch.Tensor) -> torch.Tensor:
        """normalised video -> (B, C) against the classes of :meth:`set_class_names`."""
        if self.classifier.numel() == 0:
            raise RuntimeError("Open-VCLIP has no classes yet: call set_class_names(names) first")
        return frame_logits(self.frame_embeddings(video), self.classifier, self.zero_shot_logit_scale())

    def classify(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 video (B, T, C, H, W) -> (B, C) logits."""
        return self.logits(self.normalize_video(video))

    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 video -> {"embed": (B, T', E) unit per-frame embeddings}."""
        return {"embed": F.normalize(self.frame_embeddings(self.normalize_video(video)).float(), dim=-1)}

    def encode_text_for_retrieval(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"embed": F.normalize(self.text_embeddings(list(texts)), dim=-1)}

    def retrieval_similarity(self, video_embed: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
        """(Nv, T', E) x (Nt, E) -> (Nv, Nt): cosine averaged over frames (Open-VCLIP's frame averaging)."""
        if video_embed.dim() == 2:
            video_embed = video_embed.unsqueeze(1)
        return (video_embed @ text_embed.to(video_embed.dtype).t()).mean(dim=1)
