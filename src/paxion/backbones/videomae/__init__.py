"""VideoMAE's ViT (S, B and a test-sized twin) and the loader for its release files.

It is a video-only encoder, not a :class:`~paxion.backbones.base.VideoTextBackbone` (no text tower),
so it is built by name with :func:`build_videomae` rather than through the ``backbone`` registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from paxion.backbones.videomae.convert import load_videomae_checkpoint, load_videomae_state
from paxion.backbones.videomae.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    VIDEOMAE_VIT_B,
    VIDEOMAE_VIT_S,
    VIDEOMAE_VIT_TINY,
    VideoMAEConfig,
    VideoMAEViT,
)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "VARIANTS", "VIDEOMAE_VIT_B", "VIDEOMAE_VIT_S", "VIDEOMAE_VIT_TINY",
    "VideoMAEConfig", "VideoMAEViT", "build_videomae", "load_videomae_checkpoint", "load_videomae_state",
]


def build_videomae(name: str, **overrides: Any) -> VideoMAEViT:
    """``videomae_vit_s`` | ``videomae_vit_b`` | ``videomae_vit_tiny``, with config fields overridden."""
    if name not in VARIANTS:
        raise KeyError(f"unknown VideoMAE variant '{name}'; valid: {sorted(VARIANTS)}")
    return VideoMAEViT(dataclasses.replace(VARIANTS[name], **overrides))
