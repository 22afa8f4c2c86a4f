"""Interpolated weight optimisation (Open-VCLIP's ``TRAIN.LINEAR_CONNECT_CLIMB``).

Each training step, with θ the current weights and θ0 the reference (the original CLIP):

1. draw α ~ U(sample_low, sample_high);
2. move the reference keys to θα = α·θ0 + (1 - α)·θ and backpropagate ``loss_ratio`` × the loss there;
3. put θ back exactly and backpropagate the plain loss.

The optimizer then steps with g(θ) + λ·g(θα): the gradient at θα is added as it is, without the
(1 - α) chain-rule factor (the original leaves that factor out, commented).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from paxion.registry import registry
from paxion.techniques.base import BackwardFn, StepFn, Technique, interpolate_, reference_state, restore_, unwrap


@dataclass
class IWOConfig:
    sample_low: float = 0.0  # LINEAR_CONNECT_SAMPLE_L as the released scripts set it (code default 0.4)
    sample_high: float = 0.6  # LINEAR_CONNECT_SAMPLE_R
    loss_ratio: float = 0.5  # LINEAR_CONNECT_LOSS_RATIO as the released scripts set it (code default 1.0)
    reference: str = "model"  # model | initial | path of a state dict in the model's key space

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_low <= self.sample_high <= 1.0:
            low, high = self.sample_low, self.sample_high
            raise ValueError(f"iwo: need 0 <= sample_low <= sample_high <= 1, got {low}, {high}")
        if self.loss_ratio < 0:
            raise ValueError(f"iwo: loss_ratio must be >= 0, got {self.loss_ratio}")


@registry.register("technique", "iwo")
class InterpolatedWeightOptimization(Technique):
    Config = IWOConfig

    def __init__(self, cfg: IWOConfig, experiment: DictConfig, model: nn.Module) -> None:
        super().__init__(cfg, experiment, model)
        self.reference = reference_state(model, cfg.reference)

    def sample_alpha(self) -> float:
        """α ~ U(L, R) from torch's global generator (its state is checkpointed by the runner)."""
        return float(torch.empty(()).uniform_(self.cfg.sample_low, self.cfg.sample_high))

    def wrap_train_step(self, step: StepFn, backward: BackwardFn) -> StepFn:
        def iwo_step(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            alpha = self.sample_alpha()
            saved = interpolate_(unwrap(model), self.reference, alpha)
            try:
                interpolated_loss, _ = step(model, batch)
                backward(interpolated_loss * self.cfg.loss_ratio)
            finally:
                restore_(unwrap(model), saved)
            loss, logs = step(model, batch)
            alpha_log = torch.tensor(alpha, device=loss.device)  # logs are reduced across ranks on the device
            logs = {**logs, "iwo_loss": interpolated_loss.detach(), "iwo_alpha": alpha_log}
            return loss, logs

        return iwo_step
