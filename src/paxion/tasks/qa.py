"""Open-ended video QA by answer ranking over a fixed answer list (MSRVTT-QA, ActivityNet-QA).

Any model with ``encode_video_for_retrieval`` and ``rank_answers`` serves (Singularity: the top
``k_test`` answers by first-token probability, re-scored by full-sequence likelihood). The prediction
is the best-scoring answer of the dataset's ``answer_list``; a ground truth outside the list is
always wrong. Metrics: ``overall`` = exact-match accuracy in percent (2 decimals, as the original),
plus the same per question type (the annotation's type, e.g. ActivityNet-QA's, or the question's
first word) under ``<type>``; ``agg_metrics`` = ``overall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paxion.registry import registry
from paxion.tasks import protocol
from paxion.tasks.base import Batch
from paxion.tasks.common import ModelTask, ModelTaskConfig


@dataclass
class AnswerRankingQAConfig(ModelTaskConfig):
    name: str = "answer_ranking_qa"
    k_test: int = 128  # answers re-scored per question by the model (Singularity's k_test)
    per_type: bool = True  # add the accuracy of every question type

    def __post_init__(self) -> None:
        if self.k_test < 1:
            raise ValueError(f"task.k_test must be >= 1, got {self.k_test}")


@registry.register("task", "answer_ranking_qa")
class AnswerRankingQATask(ModelTask):
    Config = AnswerRankingQAConfig

    def answer_list(self) -> list[str]:
        """The dataset's fixed answer list (one file for every split, as the original's ``answer_list``)."""
        lists = {tuple(getattr(d, "answer_list", None) or ()) for d in self.datasets.values()}
        lists.discard(())
        if len(lists) != 1:
            raise ValueError(f"answer-ranking QA needs one 'answer_list' shared by the splits of dataset "
                             f"'{self.dataset_name()}', found {len(lists)}")
        return list(lists.pop())

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        view, task = self.view(model), self.cfg.task.name
        out = self.eval_outputs(model, batch)
        for key in ("question_input", "answer_text"):
            if batch.get(key) is None:
                raise KeyError(f"answer-ranking QA needs '{key}' in the batch (dataset '{self.dataset_name()}')")
        answers = self.answer_list()
        state = protocol.require(view, "encode_video_for_retrieval", task)(batch["video_input"])
        scores = protocol.require(view, "rank_answers", task)(
            state, list(batch["question_input"]), answers, min(self.task_cfg.k_test, len(answers))
        )  # (B, A)
        if scores.shape != (len(batch["idx"]), len(answers)):
            raise ValueError(f"rank_answers of model.arch '{protocol.model_arch(view)}' returned shape "
                             f"{tuple(scores.shape)}, expected {(len(batch['idx']), len(answers))}")
        out["pred"] = scores.float().argmax(dim=-1)
        out["answer_text"] = list(batch["answer_text"])
        out["question_type"] = list(batch.get("question_type") or ["all"] * len(batch["idx"]))
        out["question_id"] = list(batch.get("question_id") or batch["idx"].tolist())
        return out

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        answers = self.answer_list()
        predicted = [answers[int(i)] for i in outputs["pred"]]
        correct = [p == a for p, a in zip(predicted, outputs["answer_text"])]
        metrics = self.base_metrics(outputs)
        metrics["overall"] = _percent(correct)
        if self.task_cfg.per_type:
            types = outputs["question_type"]
            for qtype in sorted(set(types)):
                metrics[str(qtype)] = _percent([c for c, t in zip(correct, types) if t == qtype])
        metrics["agg_metrics"] = metrics["overall"]
        rows = [
            {"question_id": q, "answer": p, "gt": a, "question_type": t}
            for q, p, a, t in zip(outputs["question_id"], predicted, outputs["answer_text"], outputs["question_type"])
        ]
        self.write_predictions(output_dir, split, "qa", rows)
        return metrics


def _percent(correct: list[bool]) -> float:
    """Accuracy in percent, 2 decimals (the original's rounding)."""
    if not correct:
        raise ValueError("accuracy of an empty prediction set")
    return round(100.0 * sum(correct) / len(correct), 2)
