"""Stochastic weight averaging over an epoch window (Open-VCLIP's ``weight_average_tool.py``).

The uniform mean of the weights after epochs ``start`` ... ``end`` (1-based, the numbering of the
original's ``checkpoint_epoch_XXXXX.pyth`` files); epoch 0 stands for the reference θ0 (the
original CLIP), so it only takes part when ``start`` is 0. The result is saved as
``swa_{start}_{end}.pth`` = ``{"model_state": state}``, the release layout.

Two ways to get it: the runner option (``techniques: {swa: {start, end}}``: a running mean kept in
memory while training, written and loaded into the model when the window closes) and the command
line tool ``python -m paxion.tools.swa`` over saved checkpoints.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from paxion.registry import registry
from paxion.techniques.base import State, Technique, reference_state, unwrap

logger = logging.getLogger(__name__)

_EPOCH_SUFFIX = re.compile(r"_(\d+)$")


_RUNNER_CHECKPOINT = re.compile(r"^checkpoint_(\d+)\.pth$")


def epoch_from_name(path: str | Path) -> int:
    """1-based epoch of a checkpoint file, the original's numbering.

    SlowFast files carry it as the last ``_<digits>`` (``checkpoint_epoch_00007.pyth`` -> 7); this
    framework's runner writes ``checkpoint_<e>.pth`` after its 0-based epoch e, i.e. epoch e + 1.
    """
    name = Path(path).name
    runner = _RUNNER_CHECKPOINT.match(name)
    if runner:
        return int(runner.group(1)) + 1
    match = _EPOCH_SUFFIX.search(name.split(".")[0])
    if match is None:
        raise ValueError(f"'{path}': no _<epoch> suffix in the file name")
    return int(match.group(1))


def average_states(states: Iterable[State]) -> State:
    """Uniform mean of floating-point tensors key by key (accumulated in fp64); other tensors from the last state."""
    total: State = {}
    last: State = {}
    count = 0
    for state in states:
        if count and set(state) != set(last):
            extra = sorted(set(state) ^ set(last))
            raise KeyError(f"state dicts to average differ in keys, first '{extra[0]}'")
        for key, value in state.items():
            if value.is_floating_point():
                total[key] = total[key] + value.double() if key in total else value.double().clone()
        last, count = state, count + 1
    if not count:
        raise ValueError("no state dicts to average")
    return {key: (total[key] / count).to(value.dtype) if key in total else value for key, value in last.items()}


def in_window(epoch: int, start: int, end: int) -> bool:
    return start <= epoch <= end


@dataclass
class SWAConfig:
    start: int = 2  # first epoch averaged (1-based; 0 = the reference θ0)
    end: int = 22  # last epoch averaged (the released recipe trains 22 epochs)
    apply: bool = True  # load the average into the model when the window closes
    reference: str = "model"  # θ0 for epoch 0 (used only when start == 0)

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"swa: need 0 <= start <= end, got start={self.start}, end={self.end}")


@registry.register("technique", "swa")
class StochasticWeightAveraging(Technique):
    Config = SWAConfig

    def __init__(self, cfg: SWAConfig, experiment: DictConfig, model: nn.Module) -> None:
        super().__init__(cfg, experiment, model)
        self.sum: Optional[State] = None
        self.count = 0
        self.last_epoch = min(cfg.end, int(experiment.run.max_epoch))
        self.output_dir = Path(str(experiment.run.output_dir))
        if cfg.start == 0:
            own = unwrap(model).state_dict()
            self._add({**own, **reference_state(model, cfg.reference)})

    def _add(self, state: State) -> None:
        floats = {k: v.detach().double() for k, v in state.items() if v.is_floating_point()}
        self.sum = floats if self.sum is None else {k: self.sum[k] + floats[k] for k in self.sum}
        self.count += 1

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        number = epoch + 1  # the runner counts from 0, the original's checkpoint files from 1
        if not in_window(number, self.cfg.start, self.cfg.end):
            return
        self._add(unwrap(model).state_dict())
        if number != self.last_epoch or self.sum is None:
            return
        own = unwrap(model).state_dict()
        average = {k: (self.sum[k] / self.count).to(own[k].dtype) for k in self.sum}
        path = self.output_dir / f"swa_{self.cfg.start}_{self.cfg.end}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model_state": average}, path)
        logger.info("swa: averaged %d epochs (%d..%d) into %s", self.count, self.cfg.start, number, path)
        if self.cfg.apply:
            unwrap(model).load_state_dict(average, strict=False)
