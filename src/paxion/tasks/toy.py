"""A tiny regression task that exercises every runner feature without video or weights.

The model has a frozen random feature layer (like a frozen backbone) and a trainable head with
dropout (so resuming must restore the RNG). The dataset draws its training noise from the
per-sample seed and can pretend some videos were unreadable (``fake_skip_every``). Used by the core
tests and by ``configs/toy/*.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from paxion.config import section
from paxion.registry import registry
from paxion.tasks.base import BaseTask, Batch, TaskConfig

logger = logging.getLogger(__name__)

_SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


@registry.register("model", "toy_regressor")
class ToyRegressor(nn.Module):
    @dataclass
    class Config:
        arch: str = "toy_regressor"
        in_dim: int = 8
        feat_dim: int = 16
        hidden: int = 32
        dropout: float = 0.1

        def __post_init__(self) -> None:
            if not 0.0 <= self.dropout < 1.0:
                raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.encoder = nn.Linear(cfg.in_dim, cfg.feat_dim)  # stands in for a frozen backbone
        self.encoder.requires_grad_(False)
        self.head = nn.Sequential(
            nn.Linear(cfg.feat_dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # frozen: no graph kept for it
            feats = torch.tanh(self.encoder(x))  # (B, F)
        return self.head(feats).squeeze(-1)  # (B,)


@registry.register("dataset", "toy_regression")
class ToyRegressionBuilder:
    @dataclass
    class Config:
        dim: int = 8
        num_train: int = 64
        num_val: int = 7
        num_test: int = 5
        noise_std: float = 0.1
        data_seed: int = 0
        fake_skip_every: int = 0  # >0: every k-th sample reports a fake unreadable video

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def build(self, split: str, *, num_frames: int = 0, image_size: int = 0, training: bool = False) -> Dataset:
        sizes = {"train": self.cfg.num_train, "val": self.cfg.num_val, "test": self.cfg.num_test}
        if split not in sizes:
            raise KeyError(f"datasets.toy_regression: no split '{split}'; valid splits: {sorted(sizes)}")
        return ToyRegressionDataset(self.cfg, sizes[split], _SPLIT_OFFSETS[split], training)


class ToyRegressionDataset(Dataset):
    def __init__(self, cfg: ToyRegressionBuilder.Config, size: int, split_offset: int, training: bool) -> None:
        gen = torch.Generator().manual_seed(cfg.data_seed)
        weight = torch.randn(cfg.dim, generator=gen)  # shared by every split
        gen.manual_seed(cfg.data_seed * 10 + split_offset + 1)
        self.x = torch.randn(size, cfg.dim, generator=gen)  # (N, D)
        self.y = torch.tanh(self.x @ weight / cfg.dim**0.5)  # (N,), learnable by a small head
        self.cfg = cfg
        self.training = training

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        y = self.y[index]
        if self.training and seed is not None:  # every random choice of a sample comes from its seed
            y = y + self.cfg.noise_std * torch.randn((), generator=torch.Generator().manual_seed(seed))
        sample = {"x": self.x[index], "y": y, "idx": index, "text": f"sample {index}"}
        if self.cfg.fake_skip_every > 0 and index % self.cfg.fake_skip_every == 0:
            sample["skipped_videos"] = [
                {"path": f"toy/{index}.mp4", "error": "fake", "replaced_by": f"toy/{index + 1}.mp4"}
            ]
        return sample


def collate(samples: list[dict[str, Any]]) -> Batch:
    return {
        "x": torch.stack([s["x"] for s in samples]),  # (B, D)
        "y": torch.stack([s["y"] for s in samples]),  # (B,)
        "idx": torch.tensor([s["idx"] for s in samples], dtype=torch.int64),  # (B,)
        "text": [s["text"] for s in samples],
        "skipped_videos": [v for s in samples for v in s.get("skipped_videos", [])],
    }


@registry.register("task", "toy")
class ToyTask(BaseTask):
    @dataclass
    class Config(TaskConfig):
        name: str = "toy"
        # test hook for kill/resume tests: at this training iteration (counted per process) the run
        # writes "<output_dir>/stalled.<pid>" and sleeps, so a test can SIGKILL it at a known point
        stall_at_step: int = -1  # -1: never

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.task_cfg: ToyTask.Config = section(cfg, "task")
        self.steps = 0

    def build_model(self) -> nn.Module:
        if self.cfg.model is None or self.cfg.model.arch != "toy_regressor":
            raise ValueError("task 'toy' needs model.arch: toy_regressor")
        return ToyRegressor(section(self.cfg, "model"))

    def build_datasets(self, model: nn.Module, splits: list[str]) -> dict[str, Dataset]:
        if not self.cfg.datasets or "toy_regression" not in self.cfg.datasets:
            raise ValueError("task 'toy' needs a 'datasets: toy_regression:' section")
        builder = ToyRegressionBuilder(section(self.cfg, "datasets.toy_regression"))
        if builder.cfg.dim != self.cfg.model.in_dim:
            raise ValueError(f"datasets.toy_regression.dim={builder.cfg.dim} != model.in_dim={self.cfg.model.in_dim}")
        return {s: builder.build(s, training=s in self.cfg.run.train_splits) for s in splits}

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.steps += 1
        if self.steps == self.task_cfg.stall_at_step:
            self._stall()
        pred = model(batch["x"])  # (B,)
        loss = F.mse_loss(pred.float(), batch["y"])
        return loss, {"loss": loss.detach()}

    def _stall(self) -> None:
        out = Path(self.cfg.run.output_dir)
        (out / f"stalled.{os.getpid()}").write_text(json.dumps({"step": self.steps}))
        logger.warning("task.stall_at_step=%d reached: sleeping until killed", self.steps)
        time.sleep(3600)

    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        pred = model(batch["x"]).float()  # (B,)
        return {"idx": batch["idx"], "pred": pred, "sq_err": (pred - batch["y"]) ** 2}

    def compute_metrics(self, outputs: dict[str, torch.Tensor], split: str, output_dir: Path) -> dict[str, float]:
        mse = outputs["sq_err"].mean().item()
        return {
            "mse": mse,
            "val_loss": mse,
            "agg_metrics": -mse,
            "num_samples": int(outputs["idx"].numel()),
        }
