"""Full systems: each a registered model composing parts, its objectives and its checkpoint converter."""

from paxion.systems import paxion  # noqa: F401  (registration side effects)
from paxion.systems import singularity  # noqa: F401  (registration side effects)
from paxion.systems import openvclip  # noqa: F401  (registration side effects)
from paxion.systems import videomae  # noqa: F401  (registration side effects)
from paxion.systems import alpro  # noqa: F401  (registration side effects)
