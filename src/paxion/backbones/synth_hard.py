"""The hard SynthAction preset's foundation model: the embedded default's architecture at 64 px.

``internvideo_synth_hard`` is ``internvideo_synth`` (InternVideo's architecture at tiny width, temporal
taps at zero) taking 64 x 64 frames in 16 px patches: the same 4 x 4 token grid and cost per frame as
the 32 px model, but each token sees the hard preset's small objects at twice the resolution.
The shipped weights load with ``model.backbone_ckpt=${paxion_asset:internvideo_synth_hard.safetensors}``.
"""

from __future__ import annotations

import dataclasses

from paxion.backbones.internvideo.model import InternVideo
from paxion.backbones.synth import SYNTH_CONFIG, zero_temporal_taps_
from paxion.registry import registry

SYNTH_HARD_CONFIG = dataclasses.replace(SYNTH_CONFIG, image_size=64, patch_size=16)
HARD_WEIGHTS_FILE = "internvideo_synth_hard.safetensors"


@registry.register("backbone", "internvideo_synth_hard")
def internvideo_synth_hard() -> InternVideo:
    """Random initialisation (the pre-training starting point), temporal taps at zero."""
    return zero_temporal_taps_(InternVideo(SYNTH_HARD_CONFIG))
