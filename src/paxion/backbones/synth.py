"""The embedded default's foundation model: InternVideo's architecture at a size a CPU trains in minutes.

* ``internvideo_synth``: randomly initialised, the architecture that
  ``configs/pretrain/synthaction/internvideo_synth.yaml`` pre-trains;
* ``internvideo_synth_pretrained``: the same with the weights shipped in ``paxion/assets/``
  (single-frame contrastive pre-training on SynthAction's object-only captions: it knows shapes and
  colours, not actions). A re-trained copy loads with
  ``model.backbone=internvideo_synth model.backbone_ckpt=PATH.safetensors``.

The text tower folds CLIP's BPE ids into a small vocabulary (see ``internvideo/tokenizer.py``); the
size below is one where no two words of SynthAction's captions share an id, so an action and its
antonym always get different token embeddings.
"""

from __future__ import annotations

import dataclasses
import logging
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file

from paxion.backbones.internvideo.model import TINY_CONFIG, InternVideo
from paxion.registry import registry

logger = logging.getLogger(__name__)

# the tiny test architecture, widened where the embedded default needs it
SYNTH_CONFIG = dataclasses.replace(
    TINY_CONFIG,
    num_frames=8,
    extractor_dropout=0.1,
    embed_dim=64,
    text_width=64,
    text_heads=4,
    vocab_size=515,  # collision-free for SynthAction's words (tested)
)
WEIGHTS_FILE = "internvideo_synth.safetensors"


def shipped_weights() -> Path:
    """Path of the foundation weights shipped as package data."""
    return Path(str(resources.files("paxion.assets").joinpath(WEIGHTS_FILE)))


def zero_temporal_taps_(model: InternVideo) -> InternVideo:
    """Zero the extractor convs' weights on the previous and next frame.

    Single-frame pre-training never trains them (a one-frame clip only meets the centre tap), so
    left at their random init they would make the pooled vector depend on frame order by chance.
    At zero the foundation model is exactly blind to frame order, the premise of the embedded default.
    """
    with torch.no_grad():
        for conv in model.visual.transformer.dpe:  # weight (D, 1, 3, 3, 3): time is dim 2
            conv.weight[:, :, [0, 2]] = 0.0
    return model


@registry.register("backbone", "internvideo_synth")
def internvideo_synth() -> InternVideo:
    """Random initialisation (the pre-training starting point), temporal taps at zero."""
    return zero_temporal_taps_(InternVideo(SYNTH_CONFIG))


@registry.register("backbone", "internvideo_synth_pretrained")
def internvideo_synth_pretrained() -> InternVideo:
    """The shipped foundation model: pre-trained on object captions, frozen by every Paxion config."""
    model = InternVideo(SYNTH_CONFIG)
    path = shipped_weights()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: shipped foundation weights missing; rebuild them with "
            "configs/pretrain/synthaction/internvideo_synth.yaml (see paxion/assets/README.md)"
        )
    model.load_state_dict(load_file(str(path)), strict=True)
    logger.info("internvideo_synth_pretrained: weights from %s", path)
    return model
