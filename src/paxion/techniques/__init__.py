"""Techniques switched on by the ``techniques:`` config section: IWO, weight patching, SWA."""

from paxion.techniques import iwo, swa, weight_patching  # noqa: F401  (registration side effects)
from paxion.techniques import frozen_llm_block  # noqa: F401  (registration side effects)
from paxion.techniques.base import Technique, TechniqueSet, build_techniques

__all__ = ["Technique", "TechniqueSet", "build_techniques"]
