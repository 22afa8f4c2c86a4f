"""The hard SynthAction preset's foundation model: the embedded default's architecture at 64 px.

``internvideo_synth_hard`` is ``internvideo_synth`` (InternVideo's architecture at tiny width, temporal
taps at zero) taking 64 x 64 frames in 8 px patches (an 8 x 8 token grid: the hard preset's small
objects get tokens of their own), with the patch position embedding started as 2-D sines and cosines:
trained from scratch on cluttered frames, the tiny model's last tokens otherwise lose where they are,
and the Knowledge Patcher, which reads them, cannot see which way an object moves.
The shipped weights were pre-trained in two stages (captions with position words, then plain object
captions: ``configs/pretrain/synthaction/internvideo_synth_hard_positions.yaml``, then
``internvideo_synth_hard.yaml``) and load with
``model.backbone_ckpt=${paxion_asset:internvideo_synth_hard.safetensors}``.
"""

from __future__ import annotations

import dataclasses

from paxion.backbones.internvideo.model import InternVideo
from paxion.backbones.synth import SYNTH_CONFIG, zero_temporal_taps_
from paxion.registry import registry

SYNTH_HARD_CONFIG = dataclasses.replace(SYNTH_CONFIG, image_size=64, patch_size=8, visual_pos_init="sincos")
HARD_WEIGHTS_FILE = "internvideo_synth_hard.safetensors"


@registry.register("backbone", "internvideo_synth_hard")
def internvideo_synth_hard() -> InternVideo:
    """Random initialisation (the pre-training starting point), temporal taps at zero."""
    return zero_temporal_taps_(InternVideo(SYNTH_HARD_CONFIG))
