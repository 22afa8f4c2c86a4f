"""Singularity-temporal-17m (BEiT-B/16 + temporal BERT + BERT text) and its test-sized twin."""

from paxion.backbones.singularity.model import (
    SINGULARITY_TEMPORAL_17M,
    SINGULARITY_TINY,
    SingularityBackbone,
    SingularityConfig,
)
from paxion.registry import registry

__all__ = ["SINGULARITY_TEMPORAL_17M", "SINGULARITY_TINY", "SingularityBackbone", "SingularityConfig"]


@registry.register("backbone", "singularity_temporal_17m")
def singularity_temporal_17m() -> SingularityBackbone:
    """Full size, 8 frames; load weights with ``load_official_checkpoint(path)``."""
    return SingularityBackbone(SINGULARITY_TEMPORAL_17M)


@registry.register("backbone", "singularity_tiny")
def singularity_tiny() -> SingularityBackbone:
    """Random tiny model for tests: 32x32 frames, 4 frames, widths 64, embed 16."""
    return SingularityBackbone(SINGULARITY_TINY)
