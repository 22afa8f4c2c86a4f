"""Weight patching at test time (Open-VCLIP's ``TEST.PATCHING_MODEL``): θ = r·θ0 + (1 - r)·θ_ft.

``ratio`` r = 0 keeps the fine-tuned weights, r = 1 restores the reference θ0 (the original CLIP).
Only the reference's keys are mixed; every other weight is used as it is. The patch holds for the
final/test evaluation and is undone afterwards, so a training run continues from θ_ft.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator

from omegaconf import DictConfig
from torch import nn

from paxion.registry import registry
from paxion.techniques.base import Technique, interpolate_, reference_state, restore_

logger = logging.getLogger(__name__)


@dataclass
class WeightPatchingConfig:
    ratio: float = 0.5  # TEST.PATCHING_RATIO of the released test scripts
    reference: str = "model"  # model | initial | path of a state dict in the model's key space

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"weight_patching: ratio must be in [0, 1], got {self.ratio}")


@registry.register("technique", "weight_patching")
class WeightPatching(Technique):
    Config = WeightPatchingConfig

    def __init__(self, cfg: WeightPatchingConfig, experiment: DictConfig, model: nn.Module) -> None:
        super().__init__(cfg, experiment, model)
        self.reference = reference_state(model, cfg.reference)

    @contextlib.contextmanager
    def eval_context(self, model: nn.Module) -> Iterator[None]:
        saved = interpolate_(model, self.reference, self.cfg.ratio)
        logger.info("weight patching: ratio %.3f on %d tensors", self.cfg.ratio, len(saved))
        try:
            yield
        finally:
            restore_(model, saved)
