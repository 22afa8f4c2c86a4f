"""Paxion (Wang et al., NeurIPS 2023): a Knowledge Patcher over a frozen video-language backbone, fused back by
Patch & Fuse. ``model`` composes backbone + patcher + fuser, ``losses`` holds VTC/VAC/ATM/DVDM as functions,
``weights`` reads the official release files, ``scoring`` turns features into probe scores."""

from paxion.systems.paxion import fuser, patcher  # noqa: F401  (registration side effects)
from paxion.systems.paxion import model  # noqa: F401  (registration side effects)
