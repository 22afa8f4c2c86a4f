"""Tasks: what to train and how to score it. Each module registers its task(s)."""
from paxion.tasks import toy  # noqa: F401
from paxion.tasks import actionbench  # noqa: F401
from paxion.tasks import retrieval  # noqa: F401
from paxion.tasks import classification  # noqa: F401
from paxion.tasks import mcqa  # noqa: F401
from paxion.tasks import qa  # noqa: F401
from paxion.tasks import pretrain  # noqa: F401
from paxion.tasks import action_recognition  # noqa: F401
from paxion.tasks import open_vocab  # noqa: F401
from paxion.tasks import qa_classification  # noqa: F401
