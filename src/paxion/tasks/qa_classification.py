"""Open-ended video QA as classification over the training answers (ALPRO: MSRVTT-QA, MSVD-QA).

Any model with ``answer_logits(video, questions) -> (B, num_answers)`` serves. The answer vocabulary
is the dataset's ``ans2label`` (answers of the training split); the prediction is its arg-max label.
Ground-truth answers outside the vocabulary carry label -100 (ignored by the training loss) and are
always wrong at evaluation. Metrics: ALPRO's dict (:func:`paxion.tasks.alpro_metrics.qa_metrics`),
written with the split name to ``result/<split>_qa_alpro.json`` and returned flat under ``<split>/``;
``agg_metrics`` = ``overall_acc``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from paxion.registry import registry
from paxion.tasks import alpro_metrics, protocol
from paxion.tasks.base import Batch
from paxion.tasks.common import ModelTask, ModelTaskConfig, collate_with_extras

logger = logging.getLogger(__name__)

SAMPLE_ONLY_KEYS = ("label", "answer_type")


@dataclass
class QAClassificationConfig(ModelTaskConfig):
    name: str = "qa_classification"


def collate_qa(samples: list[dict[str, Any]]) -> Batch:
    """``collate_with_extras`` plus ``label`` (B,) int64 and ``answer_type`` (list)."""
    present = [key for key in SAMPLE_ONLY_KEYS if samples and key in samples[0]]
    batch = collate_with_extras([{k: v for k, v in s.items() if k not in present} for s in samples])
    if "label" in present:
        batch["label"] = torch.tensor([int(s["label"]) for s in samples], dtype=torch.int64)
    if "answer_type" in present:
        batch["answer_type"] = [s["answer_type"] for s in samples]
    return batch


@registry.register("task", "qa_classification")
class QAClassificationTask(ModelTask):
    Config = QAClassificationConfig

    def answers(self) -> list[str]:
        """label -> answer string, from the dataset's ``ans2label`` (one for every split)."""
        tables = {tuple(sorted(getattr(d, "ans2label", {}).items(), key=lambda kv: kv[1]))
                  for d in self.datasets.values()}
        tables.discard(())
        if len(tables) != 1:
            raise ValueError(f"QA classification needs one 'ans2label' shared by the splits of dataset "
                             f"'{self.dataset_name()}', found {len(tables)}")
        return [answer for answer, _ in tables.pop()]

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate_qa

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        view, task = self.view(model), self.cfg.task.name
        out = self.eval_outputs(model, batch)
        for key in ("question_input", "answer_text"):
            if batch.get(key) is None:
                raise KeyError(f"QA classification needs '{key}' in the batch (dataset '{self.dataset_name()}')")
        logits = protocol.require(view, "answer_logits", task)(batch["video_input"], list(batch["question_input"]))
        out["pred"] = logits.float().argmax(dim=-1).cpu()
        out["answer_text"] = list(batch["answer_text"])
        types = batch.get("answer_type") or batch.get("question_type") or ["what"] * len(batch["idx"])
        out["answer_type"] = list(types)
        out["question_id"] = list(batch.get("question_id") or batch["idx"].tolist())
        return out

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        answers = self.answers()
        predicted = [answers[int(i)] for i in outputs["pred"]]
        found = alpro_metrics.qa_metrics(predicted, outputs["answer_text"], outputs["answer_type"])
        path = Path(output_dir) / "result" / f"{split}_qa_alpro.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"split": split, **found}, indent=2))
        logger.info("ALPRO QA %s: %s (written to %s)", split, json.dumps(found), path)
        metrics = self.base_metrics(outputs)
        metrics.update(alpro_metrics.flatten(found, f"{split}/"))
        metrics["agg_metrics"] = found["overall_acc"]
        rows = [{"question_id": q, "answer": p, "gt": a, "answer_type": t} for q, p, a, t in
                zip(outputs["question_id"], predicted, outputs["answer_text"], outputs["answer_type"])]
        self.write_predictions(output_dir, split, "qa", rows)
        return metrics
