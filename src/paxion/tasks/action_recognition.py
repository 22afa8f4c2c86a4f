"""Closed-set action recognition (SSv2, SynthAction templates) for any model with ``classify``.

Per epoch: single-view top-1 / top-5 accuracy in percent (``acc1``, ``acc5``), as VideoMAE's
``validation_one_epoch``. Final test: every clip is seen as ``test_num_segment x test_num_crop``
views (one dataset item each); the softmax of every view is averaged over the *distinct* views of a
clip (a view seen twice, e.g. through distributed padding, counts once) and the clip is scored on the
average (``final_top1``, ``final_top5``; the original's "Final top-1" / "Final top-5"), next to the
per-view ``acc1`` / ``acc5``. ``agg_metrics`` is ``final_top1`` on multi-view splits, else ``acc1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from paxion.data.datasets.ssv2_list import collate_actions
from paxion.registry import registry
from paxion.tasks import protocol
from paxion.tasks.base import Batch
from paxion.tasks.common import ModelTask, ModelTaskConfig


@dataclass
class ActionRecognitionConfig(ModelTaskConfig):
    name: str = "action_recognition"
    topk: list[int] = field(default_factory=lambda: [1, 5])


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C), (N,) -> (N,) bool: label among the ``k`` highest scores (k capped at C)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # (N, k)
    return (top == labels[:, None]).any(dim=1)


def merge_views(
    logits: torch.Tensor, video_index: torch.Tensor, views: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-view logits (N, C) -> (clip ids (V,), mean softmax over distinct views (V, C), labels (V,)).

    ``views`` (N, 2) holds (temporal, crop); a (clip, temporal, crop) triple seen again is ignored.
    """
    key = torch.cat([video_index[:, None], views], dim=1)  # (N, 3)
    _, inverse = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(key), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(key)), reduce="amin"
    )  # first occurrence of every distinct view
    probs = logits[first].float().softmax(dim=-1)  # (U, C)
    clips, slot = torch.unique(video_index[first], return_inverse=True)  # (V,), (U,)
    summed = torch.zeros(len(clips), logits.shape[1]).index_add_(0, slot, probs)
    counts = torch.zeros(len(clips)).index_add_(0, slot, torch.ones(len(slot)))
    clip_labels = torch.zeros(len(clips), dtype=torch.long).index_put_((slot,), labels[first])
    return clips, summed / counts[:, None], clip_labels


@registry.register("task", "action_recognition")
class ActionRecognitionTask(ModelTask):
    Config = ActionRecognitionConfig

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate_actions

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        view = self.view(model)
        logits = protocol.require(view, "classify", self.cfg.task.name)(batch["video_input"])  # (B, C)
        out = self.eval_outputs(model, batch)
        out.update(logits=logits.float(), label=batch["label"], video_index=batch["video_index"], view=batch["view"])
        return out

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        logits, labels = outputs["logits"], outputs["label"]
        metrics = self.base_metrics(outputs)
        for k in self.task_cfg.topk:
            metrics[f"acc{k}"] = 100.0 * topk_correct(logits, labels, k).float().mean().item()
        metrics["agg_metrics"] = metrics["acc1"]
        if len(torch.unique(outputs["view"], dim=0)) > 1:
            clips, probs, clip_labels = merge_views(logits, outputs["video_index"], outputs["view"], labels)
            for k in self.task_cfg.topk:
                metrics[f"final_top{k}"] = 100.0 * topk_correct(probs, clip_labels, k).float().mean().item()
            metrics["num_videos"] = len(clips)
            metrics["agg_metrics"] = metrics["final_top1"]
            rows = [{"video_index": int(c), "pred": int(p.argmax()), "label": int(y)}
                    for c, p, y in zip(clips, probs, clip_labels)]
            self.write_predictions(output_dir, split, "action", rows)
        return metrics
