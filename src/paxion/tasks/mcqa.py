"""Multiple-choice video QA (NExT-QA): pick the best of the "question? answer_k" candidates.

Metrics: accuracy (= micro-F1), macro-F1, accuracy per question type; ``agg_metrics`` = macro +
micro F1 as the original. The NExT-QA training configs select checkpoints by ``val_loss`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paxion.metrics import accuracy, macro_f1
from paxion.registry import registry
from paxion.tasks.base import Batch
from paxion.tasks.common import PaxionTask, PaxionTaskConfig, unwrap


@dataclass
class MultiChoiceQAConfig(PaxionTaskConfig):
    name: str = "multi_choice_qa"


@registry.register("task", "multi_choice_qa")
class MultiChoiceQATask(PaxionTask):
    Config = MultiChoiceQAConfig

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        model = unwrap(model)
        module = self.task_cfg.eval_module
        out = self.eval_outputs(model, batch)
        for key in ("candidates", "answer"):
            if batch.get(key) is None:
                raise KeyError(f"multiple-choice QA needs '{key}' in the batch (dataset '{self.dataset_name()}')")
        enc = model.encode_video(batch["video_input"], use_patcher=module != "backbone")
        logits = model.candidate_logits(enc, [list(c) for c in batch["candidates"]], module)  # (B, K)
        out["scores"] = logits.float().softmax(dim=-1)
        out["pred"] = logits.argmax(dim=-1)
        out["answer"] = torch.as_tensor(batch["answer"]).to(logits.device)
        out["question_type"] = list(batch.get("question_type") or ["all"] * len(batch["idx"]))
        return out

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        metrics = self.base_metrics(outputs)
        pred, answer = outputs["pred"], outputs["answer"]
        micro, macro = accuracy(pred, answer), macro_f1(pred, answer)
        metrics.update(accuracy=micro, macro_f1=macro, agg_metrics=micro + macro)
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
