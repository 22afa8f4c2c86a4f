"""Singularity (Lei et al., 2022): single-frame training, multi-frame testing; retrieval and QA models."""

from paxion.systems.singularity.config import SingularityQAConfig, SingularityRetrievalConfig
from paxion.systems.singularity.qa import SingularityQA
from paxion.systems.singularity.retrieval import SingularityRetrieval

__all__ = ["SingularityQA", "SingularityQAConfig", "SingularityRetrieval", "SingularityRetrievalConfig"]
