"""What every Paxion task shares: the model, the datasets, the batch collation and the training step."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from paxion.config import section
from paxion.data.collate import collate
from paxion.model import EVAL_MODULES, PaxionModel
from paxion.registry import registry
from paxion.tasks.base import BaseTask, Batch, TaskConfig

logger = logging.getLogger(__name__)


@dataclass
class PaxionTaskConfig(TaskConfig):
    eval_module: str = "patcher"  # backbone (zero-shot) | patcher (KP latents) | fused (fuser output)
    compute_val_loss: bool = False  # add the model loss to the eval outputs (selection by val_loss)
    write_predictions: bool = True  # per-sample predictions/scores under <output_dir>/result/


def unwrap(model: nn.Module) -> PaxionModel:
    """The PaxionModel inside a DDP wrapper (or the model itself)."""
    inner = getattr(model, "module", model)
    if not isinstance(inner, PaxionModel):
        raise TypeError(f"this task needs a PaxionModel (model.arch: paxion), got {type(inner).__name__}")
    return inner


class PaxionTask(BaseTask):
    Config = PaxionTaskConfig

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.task_cfg = section(cfg, "task")
        if self.task_cfg.eval_module not in EVAL_MODULES:
            raise ValueError(f"task.eval_module: '{self.task_cfg.eval_module}' is not one of {list(EVAL_MODULES)}")
        self.datasets: dict[str, Dataset] = {}
        self.model: Optional[PaxionModel] = None

    def build_model(self) -> nn.Module:
        if self.cfg.model is None or self.cfg.model.arch != "paxion":
            raise ValueError(f"task '{self.cfg.task.name}' needs model.arch: paxion")
        self.model = PaxionModel(section(self.cfg, "model"))
        return self.model

    def dataset_name(self) -> str:
        names = list(self.cfg.datasets.keys()) if self.cfg.datasets else []
        if len(names) != 1:
            raise ValueError(f"task '{self.cfg.task.name}' needs exactly one entry under 'datasets:', got {names}")
        return str(names[0])

    def build_datasets(self, model: nn.Module, splits: list[str]) -> dict[str, Dataset]:
        """Clips shaped as the backbone expects (its ``preprocess``: frames and size)."""
        self.model = unwrap(model)
        pre = self.model.backbone.preprocess
        name = self.dataset_name()
        builder = registry.get("dataset", name)(section(self.cfg, f"datasets.{name}"))
        train_splits = set(self.cfg.run.train_splits) if not self.cfg.run.evaluate else set()
        built = {
            split: builder.build(
                split, num_frames=pre.num_frames, image_size=pre.image_size, training=split in train_splits
            )
            for split in splits
        }
        self.datasets.update(built)
        return built

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = model(batch)
        return parts["loss"], {key: value.detach() for key, value in parts.items()}

    def val_loss(self, model: PaxionModel, batch: Batch) -> torch.Tensor:
        """The batch's model loss repeated per sample (B,), computed without cross-process gathering."""
        loss = model(batch, gather=False)["loss"].float()
        return loss.expand(len(batch["idx"]))

    def eval_outputs(self, model: PaxionModel, batch: Batch) -> dict[str, Any]:
        """Outputs every task returns: ``idx`` and, when configured, ``val_loss``."""
        out: dict[str, Any] = {"idx": batch["idx"]}
        if self.task_cfg.compute_val_loss:
            out["val_loss"] = self.val_loss(model, batch)
        return out

    def base_metrics(self, outputs: dict[str, Any]) -> dict[str, float]:
        metrics: dict[str, float] = {"num_samples": int(outputs["idx"].numel())}
        if "val_loss" in outputs:
            metrics["val_loss"] = outputs["val_loss"].mean().item()
        return metrics

    def write_predictions(self, output_dir: Path, split: str, name: str, rows: list[dict[str, Any]]) -> None:
        if not self.task_cfg.write_predictions:
            return
        path = Path(output_dir) / "result" / f"{split}_{name}_predictions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        logger.info("per-sample predictions: %s", path)
