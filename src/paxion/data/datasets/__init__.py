"""One module per dataset family; importing them registers the builders."""

from paxion.data.datasets import actionbench, nextqa, retrieval  # noqa: F401
from paxion.data.datasets import singularity  # noqa: F401
from paxion.data.datasets import ssv2_list  # noqa: F401
from paxion.data.datasets import openvclip_lists  # noqa: F401
from paxion.data.datasets import alpro  # noqa: F401
