"""Everything between a video file and a batch. Never imports the model side.

Importing this package registers the text processors and every dataset builder.
"""

from paxion.data import text  # noqa: F401  (registers processors)
from paxion.data.datasets import actionbench, nextqa, retrieval  # noqa: F401  (registers builders)
from paxion.data.datasets import ssv2_list  # noqa: F401  (registers builders)
