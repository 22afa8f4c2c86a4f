"""ALPRO's learning-rate schedule: linear warmup over a fraction of all iterations, then linear decay to 0.

Registered as ``run.lr_sched: alpro_linear`` (warmup 10%, the original's downstream default) and
``alpro_linear_5pct`` (warmup 5%, its pre-training configs). ``run.warmup_steps > 0`` overrides the ratio.
"""

from __future__ import annotations

from typing import Any

import torch

from paxion.engine.optim import _Schedule
from paxion.registry import registry


class WarmupLinearSchedule(_Schedule):
    def __init__(self, optimizer: torch.optim.Optimizer, run: Any, iters_per_epoch: int, ratio: float) -> None:
        super().__init__(optimizer, run, iters_per_epoch)
        self.total = max(self.max_epoch * self.iters_per_epoch, 1)
        self.warmup = self.warmup_steps if self.warmup_steps > 0 else int(ratio * self.total)

    def lr_at(self, epoch: int, it: int) -> float:
        step = epoch * self.iters_per_epoch + it + 1  # the original counts optimizer steps from 1
        if step < self.warmup:
            return self.init_lr * step / self.warmup
        return self.init_lr * max(0.0, (self.total - step) / max(self.total - self.warmup, 1))


@registry.register("lr_schedule", "alpro_linear")
def alpro_linear(optimizer: torch.optim.Optimizer, run: Any, iters_per_epoch: int) -> WarmupLinearSchedule:
    return WarmupLinearSchedule(optimizer, run, iters_per_epoch, ratio=0.1)


@registry.register("lr_schedule", "alpro_linear_5pct")
def alpro_linear_5pct(optimizer: torch.optim.Optimizer, run: Any, iters_per_epoch: int) -> WarmupLinearSchedule:
    return WarmupLinearSchedule(optimizer, run, iters_per_epoch, ratio=0.05)
