"""Multiple-choice video QA (NExT-QA, MSRVTT-MC): pick the best of each sample's K candidate texts.

Any model with ``encode_video_for_retrieval`` and ``score_candidates`` serves (:mod:`paxion.tasks.protocol`).

Metrics: accuracy (= micro-F1), macro-F1, accuracy per question type; ``agg_metrics`` = macro +
micro F1 as the original. The NExT-QA training configs select checkpoints by ``val_loss`` instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paxion.tasks.metrics import accuracy, macro_f1, nonfinite_rows, predict
from paxion.registry import registry
from paxion.tasks.base import Batch
from paxion.tasks import protocol
from paxion.tasks.common import ModelTask, ModelTaskConfig

logger = logging.getLogger(__name__)


@dataclass
class MultiChoiceQAConfig(ModelTaskConfig):
    name: str = "multi_choice_qa"
    metric_format: str = "paxion"  # paxion: accuracy, macro_f1, per type | singularity: adds {split: percent}

    def __post_init__(self) -> None:
        if self.metric_format not in ("paxion", "singularity"):
            raise ValueError(f"task.metric_format: '{self.metric_format}' is not one of ['paxion', 'singularity']")


@registry.register("task", "multi_choice_qa")
class MultiChoiceQATask(ModelTask):
    Config = MultiChoiceQAConfig

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        view, task = self.view(model), self.cfg.task.name
        out = self.eval_outputs(model, batch)
        for key in ("candidates", "answer"):
            if batch.get(key) is None:
                raise KeyError(f"multiple-choice QA needs '{key}' in the batch (dataset '{self.dataset_name()}')")
        score = protocol.require(view, "score_candidates", task)
        state = protocol.require(view, "encode_video_for_retrieval", task)(batch["video_input"])
        logits = score(state, [list(c) for c in batch["candidates"]])  # (B, K)
        out["scores"] = logits.float().softmax(dim=-1)
        out["pred"] = predict(logits.float())  # a non-finite row: NO_PREDICTION, never right
        out["answer"] = torch.as_tensor(batch["answer"]).to(logits.device)
        out["question_type"] = list(batch.get("question_type") or ["all"] * len(batch["idx"]))
        return out

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        metrics = self.base_metrics(outputs)
        pred, answer = outputs["pred"], outputs["answer"]
        micro, macro = accuracy(pred, answer), macro_f1(pred, answer)
        metrics.update(accuracy=micro, macro_f1=macro, agg_metrics=micro + macro)
        bad = int(nonfinite_rows(outputs["scores"]).sum())
        metrics["nonfinite_scores"] = bad
        if bad:
            logger.warning("%s %s: %d of %d samples have non-finite scores (NaN/inf): counted as wrong",
                           self.cfg.task.name, split, bad, len(pred))
        if self.task_cfg.metric_format == "singularity":  # MSRVTT-MC: {"test": accuracy in percent, 2 decimals}
            metrics[split] = round(100.0 * micro, 2)
            metrics["agg_metrics"] = metrics[split]
        types = outputs["question_type"]
        for qtype in sorted(set(types)):
            mask = torch.tensor([t == qtype for t in types])
            metrics[f"accuracy_{qtype}"] = accuracy(pred[mask], answer[mask])
        rows = [
            {"idx": int(i), "pred": int(p), "target": int(a), "question_type": t, "scores": [float(s) for s in sc]}
            for i, p, a, t, sc in zip(outputs["idx"], pred, answer, types, outputs["scores"])
        ]
        self.write_predictions(output_dir, split, "mcqa", rows)
        return metrics
