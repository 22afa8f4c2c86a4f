"""TimeSformer (divided space-time ViT) and ALPRO's encoders as a frozen Knowledge-Patcher backbone."""

from paxion.backbones.timesformer.alpro import ALPRO_BASE, ALPRO_TINY, AlproBackbone, AlproWidths
from paxion.backbones.timesformer.vit import TIMESFORMER_BASE, TIMESFORMER_TINY, TimeSformer, TimeSformerConfig
from paxion.registry import registry

__all__ = ["ALPRO_BASE", "ALPRO_TINY", "AlproBackbone", "AlproWidths", "TIMESFORMER_BASE", "TIMESFORMER_TINY",
           "TimeSformer", "TimeSformerConfig"]


@registry.register("backbone", "alpro_base")
def alpro_base() -> AlproBackbone:
    """ALPRO (TimeSformer-B/16, 8 frames, BERT text layers 0-5); weights: ``load_official_checkpoint(path)``."""
    return AlproBackbone(ALPRO_BASE)


@registry.register("backbone", "alpro_tiny")
def alpro_tiny() -> AlproBackbone:
    """Random tiny ALPRO for tests: 32x32 frames, 4 frames, widths 64, embed 16."""
    return AlproBackbone(ALPRO_TINY)
