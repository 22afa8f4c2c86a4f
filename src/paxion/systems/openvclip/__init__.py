"""Open-VCLIP (Weng et al., ICML 2023): temporal CLIP as an open-vocabulary video classifier."""

from paxion.systems.openvclip import schedule  # noqa: F401  (registers the slowfast_cosine lr schedule)
from paxion.systems.openvclip.model import OpenVCLIP, OpenVCLIPModelConfig

__all__ = ["OpenVCLIP", "OpenVCLIPModelConfig"]
