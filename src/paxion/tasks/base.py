"""The task contract: what the runner asks of a task, and nothing more.

A task owns its model, its datasets and its metrics. The runner owns the loop, devices, precision,
distribution, checkpoints and logging. Evaluation is split so that the runner can gather every
rank's per-sample outputs and score each sample exactly once:

    outputs = task.eval_step(model, batch)            # per-sample tensors, first dim B, incl. "idx"
    (runner gathers all ranks, drops duplicates by idx, sorts by idx)
    metrics = task.compute_metrics(all_outputs, split, output_dir)   # incl. the run.agg_metric key
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

Batch = dict[str, Any]


@dataclass
class TaskConfig:
    name: str = "???"


class BaseTask:
    Config = TaskConfig

    def __init__(self, cfg: DictConfig) -> None:
        """``cfg`` is the whole validated experiment config."""
        self.cfg = cfg

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_datasets(self, model: nn.Module, splits: list[str]) -> dict[str, Dataset]:
        """Datasets for the requested splits. ``model`` is the unwrapped model (for preprocess settings)."""
        raise NotImplementedError

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return None

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward through ``model`` (possibly DDP-wrapped) -> (scalar loss, detached logs)."""
        raise NotImplementedError

    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-sample outputs: tensors with first dim B; must contain ``idx`` (B,) int64."""
        raise NotImplementedError

    def compute_metrics(self, outputs: dict[str, torch.Tensor], split: str, output_dir: Path) -> dict[str, float]:
        """Metrics over the whole split from the gathered outputs (sorted by ``idx``, each once)."""
        raise NotImplementedError
