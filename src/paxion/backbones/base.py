"""The contract every frozen video-language backbone fulfils, and nothing more.

The patcher, fuser and tasks use only what is defined here, so a new backbone is one folder
``backbones/<name>/`` that subclasses :class:`VideoTextBackbone` and registers a factory.

Video encoding is split in two stages so that a time-reversed clip can reuse the expensive,
frame-order-independent part (``encode_frames``) and only re-run the order-dependent part
(``aggregate``) on the time-flipped frame features:

    feats = backbone.encode_frames(video)                 # dict of (B, T, ...) tensors
    pooled, tokens = backbone.aggregate(feats)            # forward clip
    pooled_r, tokens_r = backbone.aggregate(flip_time(feats))   # reversed clip, no second ViT pass

For a backbone whose frame encoder sees other frames (CLIP-ViP), ``encode_frames`` returns the raw
video and ``aggregate`` does the whole forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

FrameFeatures = dict[str, torch.Tensor]  # every tensor is (B, T, ...): time is always dim 1
TextInput = dict[str, torch.Tensor]  # "input_ids" (B, L) int64, "attention_mask" (B, L) int64

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """How clips must look when they reach ``encode_video``; data builders read these values."""

    num_frames: int = 8
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


def flip_time(features: FrameFeatures) -> FrameFeatures:
    """Frame features of the time-reversed clip."""
    return {key: value.flip(1) for key, value in features.items()}


class VideoTextBackbone(nn.Module):
    """Base class. Subclasses set the attributes below in ``__init__`` and implement the four methods.

    Attributes:
        vision_width: width D_v of the video tokens the Knowledge Patcher reads.
        text_width: width of the text token sequence.
        embed_dim: width E of the joint space (pooled video and text).
        tokens_per_frame: P, tokens per frame in ``tokens``.
        preprocess: the :class:`Preprocess` this backbone expects.
        frame_order_invariant_frames: True when ``encode_frames`` treats frames independently,
            so ``flip_time(encode_frames(v)) == encode_frames(v.flip(1))`` exactly.
    """

    vision_width: int
    text_width: int
    embed_dim: int
    tokens_per_frame: int
    preprocess: Preprocess = Preprocess()
    frame_order_invariant_frames: bool = True

    def encode_frames(self, video: torch.Tensor) -> FrameFeatures:
        """video (B, T, C, H, W) normalised float -> frame features (dict of (B, T, ...))."""
        raise NotImplementedError

    def aggregate(self, features: FrameFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """frame features -> (pooled (B, E) unnormalised, tokens (B, T, P, D_v)) for the Knowledge Patcher."""
        raise NotImplementedError

    def encode_video(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video (B, T, C, H, W) -> (pooled (B, E), tokens (B, T, P, D_v))."""
        return self.aggregate(self.encode_frames(video))

    def encode_text(self, text: TextInput) -> tuple[torch.Tensor, torch.Tensor]:
        """tokenized text -> (pooled (B, E) unnormalised, tokens (B, L, D_t))."""
        raise NotImplementedError

    def tokenize(self, texts: list[str]) -> TextInput:
        """Strings -> ``{"input_ids", "attention_mask"}`` on CPU, with the backbone's own rules."""
        raise NotImplementedError

    def logit_scale(self) -> torch.Tensor:
        """Scalar multiplier for zero-shot cosine similarities (e.g. ``exp(logit_scale)``)."""
        raise NotImplementedError

    def visual_projection_weight(self) -> torch.Tensor:
        """(E, D_v) weight of the backbone's own token-to-joint-space projection.

        The KP-Transformer baseline projects its pooled tokens with it, frozen, as the original does.
        """
        raise NotImplementedError

    def load_official_checkpoint(self, path: str) -> "LoadReport":
        """Load the official release file unchanged; assert the exact missing/unexpected key sets."""
        raise NotImplementedError


@dataclass
class LoadReport:
    """What a checkpoint load did: every key accounted for."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # expected-missing keys (e.g. rebuilt buffers)
    unexpected: list[str] = field(default_factory=list)  # expected-ignored keys (e.g. MLM head)
    notes: list[str] = field(default_factory=list)  # transforms applied (prefix strip, resize, dtype cast)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read, written or used; the message names the file and first bad key.

    The project's only checkpoint error: it lives here because a backbone may import nothing but the
    registry and this module; ``paxion.engine.checkpoint`` re-exports it. The command line reports it in one line.
    """
