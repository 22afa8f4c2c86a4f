"""InternVideo-MM-L-14 and its tiny test/synthetic variant, registered as backbone factories."""

from paxion.backbones.internvideo.model import TINY_CONFIG, InternVideo, InternVideoConfig
from paxion.registry import registry

__all__ = ["TINY_CONFIG", "InternVideo", "InternVideoConfig"]


@registry.register("backbone", "internvideo_mm_l14")
def internvideo_mm_l14() -> InternVideo:
    """Full size, randomly initialised; load the release with ``load_official_checkpoint(path)``."""
    return InternVideo(InternVideoConfig())


@registry.register("backbone", "internvideo_tiny")
def internvideo_tiny() -> InternVideo:
    """Same code paths at toy size (32 px, 4 frames, width 64) for tests and synthetic pretraining."""
    return InternVideo(TINY_CONFIG)
