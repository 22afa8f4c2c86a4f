"""Optimizer over trainable parameters and the registered learning-rate schedules.

Schedules are pure functions of ``(epoch, iteration in epoch)``: the runner calls
``schedule.step(epoch, it)`` before every iteration, so a resumed run recomputes exactly the
learning rate an uninterrupted run would have used and nothing needs restoring.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from paxion.config import RunConfig
from paxion.registry import registry

logger = logging.getLogger(__name__)


def param_groups(model: nn.Module, weight_decay: float, no_decay_bias_and_norm: bool) -> list[dict[str, Any]]:
    """AdamW groups over parameters with ``requires_grad``; frozen ones never reach the optimizer.

    The original decays everything in one group. With ``no_decay_bias_and_norm`` every parameter
    with fewer than two dimensions (biases, norm scales, scalars such as a temperature) goes to a
    group without weight decay.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if no_decay_bias_and_norm and param.ndim < 2 else decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters (every parameter has requires_grad=False)")
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, run: RunConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, or over the model's own ``optimizer_param_groups(weight_decay)``
    when it has one (trainable parameters only; a group may carry an ``lr_scale``, e.g. layer-wise decay)."""
    custom = getattr(model, "optimizer_param_groups", None)
    if callable(custom):
        groups = custom(run.weight_decay)
    else:
        groups = param_groups(model, run.weight_decay, run.no_decay_bias_and_norm)
    if any(not p.requires_grad for g in groups for p in g["params"]):
        raise ValueError("optimizer_param_groups returned a frozen parameter (requires_grad=False)")
    # fused kernels only exist for floating-point params on accelerators; foreach is the CPU fast path
    fused = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=run.init_lr, betas=tuple(run.betas), fused=fused or None)


class _Schedule:
    """Sets ``lr`` on every param group; subclasses give the value for ``(epoch, it)``."""

    def __init__(self, optimizer: torch.optim.Optimizer, run: RunConfig, iters_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.init_lr = run.init_lr
        self.min_lr = run.min_lr
        self.warmup_lr = run.warmup_lr
        self.warmup_steps = run.warmup_steps
        self.max_epoch = run.max_epoch
        self.iters_per_epoch = max(iters_per_epoch, 1)
        self.last_lr = run.init_lr

    def lr_at(self, epoch: int, it: int) -> float:
        raise NotImplementedError

    def step(self, epoch: int, it: int) -> float:
        self.last_lr = self.lr_at(epoch, it)
        for group in self.optimizer.param_groups:
            group["lr"] = self.last_lr * group.get("lr_scale", 1.0)
        return self.last_lr

    def state_dict(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "last_lr": self.last_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_lr = float(state.get("last_lr", self.init_lr))


@registry.register("lr_schedule", "epoch_cosine")
class EpochCosineSchedule(_Schedule):
    """The original's schedule: epoch 0 warms up linearly from ``warmup_lr`` over ``warmup_steps``
    iterations (flat at ``init_lr`` with the defaults ``warmup_lr=-1, warmup_steps=0``); epoch
    ``e >= 1`` uses ``min + (init - min) * 0.5 * (1 + cos(pi * e / max_epoch))`` for the whole epoch.
    """

    def lr_at(self, epoch: int, it: int) -> float:
        if epoch == 0:
            start = self.warmup_lr if self.warmup_lr >= 0 else self.init_lr
            return min(self.init_lr, start + (self.init_lr - start) * it / max(self.warmup_steps, 1))
        cos = 0.5 * (1.0 + math.cos(math.pi * epoch / self.max_epoch))
        return self.min_lr + (self.init_lr - self.min_lr) * cos


@registry.register("lr_schedule", "warmup_cosine")
class WarmupCosineSchedule(_Schedule):
    """Per-iteration schedule: linear warmup from ``warmup_lr`` (0 when negative) to ``init_lr``
    over ``warmup_steps`` iterations, then cosine down to ``min_lr`` at the last iteration of the run.
    """

    def lr_at(self, epoch: int, it: int) -> float:
        t = epoch * self.iters_per_epoch + it
        if t < self.warmup_steps:
            start = max(self.warmup_lr, 0.0)
            return start + (self.init_lr - start) * t / self.warmup_steps
        total = self.max_epoch * self.iters_per_epoch
        progress = min((t - self.warmup_steps) / max(total - self.warmup_steps, 1), 1.0)
        return self.min_lr + (self.init_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedule(optimizer: torch.optim.Optimizer, run: RunConfig, iters_per_epoch: int) -> _Schedule:
    """The ``run.lr_sched`` schedule; an unknown name lists the registered ones."""
    return registry.get("lr_schedule", run.lr_sched)(optimizer, run, iters_per_epoch)
