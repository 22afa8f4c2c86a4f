"""Optimizer groups over trainable parameters and the two learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paxion.config import RunConfig
from paxion.engine.optim import build_optimizer, build_schedule, param_groups
from paxion.registry import RegistryError


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    return model


def test_only_trainable_params_and_decay_groups() -> None:
    model = _model()
    one = param_groups(model, 0.05, no_decay_bias_and_norm=False)
    assert len(one) == 1 and len(one[0]["params"]) == 4  # LN w/b + Linear w/b; frozen layer excluded
    two = param_groups(model, 0.05, no_decay_bias_and_norm=True)
    assert [len(g["params"]) for g in two] == [1, 3]
    assert [g["weight_decay"] for g in two] == [0.05, 0.0]
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), 0.0, False)


def test_epoch_cosine_matches_the_original() -> None:
    run = RunConfig(init_lr=1e-3, min_lr=1e-5, max_epoch=4)
    sched = build_schedule(build_optimizer(_model(), run), run, iters_per_epoch=10)
    assert sched.step(0, 0) == sched.step(0, 9) == pytest.approx(1e-3)  # flat through epoch 0
    for epoch in range(1, 4):
        expected = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * epoch / 4))
        assert sched.step(epoch, 0) == pytest.approx(expected)
        assert sched.step(epoch, 7) == pytest.approx(expected)  # constant within an epoch
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(sched.last_lr)


def test_warmup_cosine_per_step() -> None:
    run = RunConfig(init_lr=1e-3, min_lr=0.0, max_epoch=2, warmup_steps=4, lr_sched="warmup_cosine")
    sched = build_schedule(build_optimizer(_model(), run), run, iters_per_epoch=10)
    assert sched.step(0, 0) == pytest.approx(0.0)
    assert sched.step(0, 2) == pytest.approx(5e-4)
    assert sched.step(0, 4) == pytest.approx(1e-3)
    lrs = [sched.step(e, i) for e in range(2) for i in range(10)]
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # monotone decay after warmup
    assert lrs[-1] < 1e-5


def test_unknown_schedule_lists_valid_names() -> None:
    run = RunConfig(lr_sched="linear")
    with pytest.raises(RegistryError, match="epoch_cosine"):
        build_schedule(torch.optim.SGD(_model()[2].parameters(), lr=0.1), run, 1)
