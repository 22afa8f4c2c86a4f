"""VideoMAE fine-tuning for action recognition, with an optional frozen LLM block (LM4VisualEncoding)."""

from paxion.systems.videomae.model import VideoMAEClassifier, VideoMAEClassifierConfig

__all__ = ["VideoMAEClassifier", "VideoMAEClassifierConfig"]
