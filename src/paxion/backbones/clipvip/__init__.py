"""CLIP-ViP-B/32 (Xue et al., 2023) and a tiny variant of it for tests."""

from paxion.backbones.clipvip.model import CLIPViPBackbone, CLIPViPConfig
from paxion.registry import registry

# Sizes from the spec's test table: every code path of the full model at a few thousand parameters.
TINY_CONFIG = CLIPViPConfig(
    image_size=32,
    patch_size=16,
    vision_width=64,
    vision_layers=2,
    vision_heads=4,
    vision_mlp=256,
    add_cls_num=3,
    temporal_size=6,
    text_width=32,
    text_layers=2,
    text_heads=2,
    text_mlp=64,
    vocab_size=64,
    max_positions=16,
    embed_dim=24,
    num_frames=4,  # != temporal_size, so the default clip takes the resampling path
)


@registry.register("backbone", "clipvip_b32")
def build_clipvip_b32() -> CLIPViPBackbone:
    """CLIP-ViP-B/32 at release size; load weights with ``load_official_checkpoint``."""
    return CLIPViPBackbone(CLIPViPConfig())


@registry.register("backbone", "clipvip_tiny")
def build_clipvip_tiny() -> CLIPViPBackbone:
    return CLIPViPBackbone(TINY_CONFIG)


__all__ = ["CLIPViPBackbone", "CLIPViPConfig", "TINY_CONFIG", "build_clipvip_b32", "build_clipvip_tiny"]
