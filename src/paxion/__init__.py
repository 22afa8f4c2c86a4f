"""Paxion: patching action knowledge into frozen video-language models.

Importing the package registers every component (explicit imports, no ``import *``).
"""

from paxion import backbones, data  # noqa: F401  (registration side effects)
from paxion import systems  # noqa: F401  (registration side effects: Paxion first, then the other systems)
from paxion.engine import optim  # noqa: F401  (registration side effects: lr schedules)
from paxion import tasks  # noqa: F401  (registration side effects)
from paxion import techniques  # noqa: F401  (registration side effects)
from paxion.registry import registry  # noqa: F401
from paxion.api import LoadedModel, Scores, list_models, load_model  # noqa: F401  (public API)
from paxion.api import Ranked, Retrieval, answer, classify, retrieve  # noqa: F401  (public API)
from paxion.api import score_captions, score_reversal  # noqa: F401  (public API)

__version__ = "0.1.0"
