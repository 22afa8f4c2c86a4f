"""Tasks: what to train and how to score it. Each module registers its task(s)."""
from paxion.tasks import toy  # noqa: F401
