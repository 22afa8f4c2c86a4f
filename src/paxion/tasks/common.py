"""What every task shares: the model, the datasets, the batch collation and the training step.

:class:`ModelTask` serves any registered model (``model.arch``) through the task protocol
(:mod:`paxion.tasks.protocol`); a Paxion model is seen through :class:`PaxionView` with ``eval_module``.
"""

from __future__ import annotations

import inspect
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
from paxion.systems.paxion.model import EVAL_MODULES, PaxionModel
from paxion.registry import registry
from paxion.tasks.base import BaseTask, Batch, TaskConfig
from paxion.tasks.paxion_view import PaxionView
from paxion.tasks.protocol import eval_num_frames, unwrap_model

logger = logging.getLogger(__name__)


@dataclass
class ModelTaskConfig(TaskConfig):
    eval_module: str = "patcher"  # Paxion models: backbone (zero-shot) | patcher (KP latents) | fused (fuser output)
    compute_val_loss: bool = False  # add the model loss to the eval outputs (selection by val_loss)
    write_predictions: bool = True  # per-sample predictions/scores under <output_dir>/result/


PaxionTaskConfig = ModelTaskConfig  # the name the Paxion tasks and configs know


# sample key -> batch key of the per-sample lists the shared ``collate`` does not know (Singularity-format data)
EXTRA_LIST_KEYS = {
    "text_ids": "text_ids",  # retrieval: every caption index of a video
    "question": "question_input",
    "answers": "answer_input",  # QA training: the answers of a question (list[str])
    "answer_weights": "answer_weights",  # QA training: one weight per answer
    "answer_text": "answer_text",  # QA evaluation: the ground-truth answer string
    "question_id": "question_id",
}


EXTRA_TENSOR_KEYS = {"video_idx": torch.int64}  # retrieval training: equal ids are positives (B,)


def collate_with_extras(samples: list[dict[str, Any]]) -> Batch:
    """``collate`` plus the :data:`EXTRA_LIST_KEYS` entries as plain lists and :data:`EXTRA_TENSOR_KEYS` as tensors."""
    keys = samples[0].keys() if samples else ()
    present = [key for key in (*EXTRA_LIST_KEYS, *EXTRA_TENSOR_KEYS) if key in keys]
    if not present:
        return collate(samples)
    batch = collate([{k: v for k, v in s.items() if k not in present} for s in samples])
    for key in present:
        if key in EXTRA_TENSOR_KEYS:
            batch[key] = torch.tensor([s[key] for s in samples], dtype=EXTRA_TENSOR_KEYS[key])  # (B,)
        else:
            batch[EXTRA_LIST_KEYS[key]] = [s[key] for s in samples]
    return batch


class ModelTask(BaseTask):
    """A task over any registered model: built from ``model.arch``, datasets from its ``preprocess``."""

    Config = ModelTaskConfig

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.task_cfg = section(cfg, "task")
        if self.task_cfg.eval_module not in EVAL_MODULES:
            raise ValueError(f"task.eval_module: '{self.task_cfg.eval_module}' is not one of {list(EVAL_MODULES)}")
        self.datasets: dict[str, Dataset] = {}
        self.model: Optional[nn.Module] = None

    def build_model(self) -> nn.Module:
        if self.cfg.model is None or self.cfg.model.get("arch") is None:
            raise ValueError(f"task '{self.cfg.task.name}' needs a 'model:' section with 'arch'")
        self.model = registry.get("model", self.cfg.model.arch)(section(self.cfg, "model"))
        return self.model

    def view(self, model: nn.Module) -> Any:
        """The object a task calls protocol methods on: the unwrapped model (Paxion: seen with eval_module)."""
        inner = unwrap_model(model)
        if isinstance(inner, PaxionModel):
            return PaxionView(inner, self.task_cfg.eval_module)
        return inner

    def dataset_name(self) -> str:
        names = list(self.cfg.datasets.keys()) if self.cfg.datasets else []
        if len(names) != 1:
            raise ValueError(f"task '{self.cfg.task.name}' needs exactly one entry under 'datasets:', got {names}")
        return str(names[0])

    def build_datasets(self, model: nn.Module, splits: list[str]) -> dict[str, Dataset]:
        """Clips shaped as the model expects: ``preprocess`` frames (``num_frames_test`` on eval splits) and size."""
        self.model = unwrap_model(model)
        pre = self.model.preprocess
        name = self.dataset_name()
        builder = registry.get("dataset", name)(section(self.cfg, f"datasets.{name}"))
        train_splits = set(self.cfg.run.train_splits) if not self.cfg.run.evaluate else set()
        built = {}
        for split in splits:
            training = split in train_splits
            frames = pre.num_frames if training else eval_num_frames(self.model)
            built[split] = builder.build(split, num_frames=frames, image_size=pre.image_size, training=training)
        self.datasets.update(built)
        return built

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate_with_extras

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = model(batch)
        return parts["loss"], {key: value.detach() for key, value in parts.items()}

    def val_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The batch's model loss repeated per sample (B,), without cross-process gathering when supported."""
        inner = unwrap_model(model)
        local = {"gather": False} if "gather" in inspect.signature(inner.forward).parameters else {}
        loss = inner(batch, **local)["loss"].float()
        return loss.expand(len(batch["idx"]))

    def eval_outputs(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
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
