"""ALPRO (Li et al., 2022): TimeSformer + BERT with concatenation fusion; VTC, VTM, MLM, PEM; retrieval and QA."""

from paxion.systems.alpro.config import AlproConfig
from paxion.systems.alpro.model import Alpro
from paxion.systems.alpro import schedule  # noqa: F401  (registers the lr schedules)

__all__ = ["Alpro", "AlproConfig"]
