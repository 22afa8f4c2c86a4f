"""Open-VCLIP's temporal CLIP (Weng et al., ICML 2023): ViT-B/32, B/16, L/14 and a tiny test size.

Measured against the original (wengzejia1/Open-VCLIP @047a817, CPU fp32, random weights; the golden
files of ``tests/test_golden_openvclip.py``): token ids identical; per-frame video embeddings 4.8e-7,
text embeddings 2.4e-7, logits 4.8e-7 on a small CLIP loaded from an fp32 file with the fp16 round trip;
≤ 2.1e-6 at full ViT-B/16 size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from paxion.backbones.openvclip.model import OpenVCLIPBackbone, OpenVCLIPConfig
from paxion.registry import registry

# OpenAI CLIP sizes (heads = width // 64, as the original's build_model derives them)
SIZES: dict[str, OpenVCLIPConfig] = {
    "b32": OpenVCLIPConfig(patch_size=32),
    "b16": OpenVCLIPConfig(patch_size=16),
    "l14": OpenVCLIPConfig(
        patch_size=14, vision_width=1024, vision_layers=24, vision_heads=16, embed_dim=768,
        text_width=768, text_heads=12,
    ),
    # every code path at a few thousand parameters
    "tiny": OpenVCLIPConfig(
        image_size=32, patch_size=16, vision_width=32, vision_layers=2, vision_heads=2, embed_dim=16,
        context_length=16, vocab_size=64, text_width=32, text_layers=2, text_heads=2, num_frames=4,
    ),
}


def build_openvclip_backbone(size: str = "b16", **overrides: Any) -> OpenVCLIPBackbone:
    """A temporal CLIP of ``size`` (b32 | b16 | l14 | tiny) with config ``overrides`` (temporal_modeling, ...)."""
    if size not in SIZES:
        raise ValueError(f"Open-VCLIP size '{size}' is not one of {sorted(SIZES)}")
    return OpenVCLIPBackbone(dataclasses.replace(SIZES[size], **overrides))


@registry.register("backbone", "openvclip_b32")
def build_openvclip_b32() -> OpenVCLIPBackbone:
    return build_openvclip_backbone("b32")


@registry.register("backbone", "openvclip_b16")
def build_openvclip_b16() -> OpenVCLIPBackbone:
    return build_openvclip_backbone("b16")


@registry.register("backbone", "openvclip_l14")
def build_openvclip_l14() -> OpenVCLIPBackbone:
    return build_openvclip_backbone("l14")


@registry.register("backbone", "openvclip_tiny")
def build_openvclip_tiny() -> OpenVCLIPBackbone:
    return build_openvclip_backbone("tiny")


__all__ = ["OpenVCLIPBackbone", "OpenVCLIPConfig", "SIZES", "build_openvclip_backbone"]
