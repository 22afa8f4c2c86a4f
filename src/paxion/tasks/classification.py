"""Zero-shot classification over class texts (Temporal-SSv2/-Kinetics, Moments-in-Time).

The class names are the caption gallery (``dataset.texts``) and each clip's class is its
``text_idx``: retrieval with a small gallery, reported as recalls plus top-1/top-5 accuracy.
Moments-in-Time is scored video->text only (``directions: [v2t]``); the Temporal benchmarks use both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paxion.registry import registry
from paxion.tasks.retrieval import RetrievalConfig, RetrievalTask


@dataclass
class ZeroShotClassificationConfig(RetrievalConfig):
    name: str = "zero_shot_classification"
    directions: list[str] = field(default_factory=lambda: ["v2t"])


@registry.register("task", "zero_shot_classification")
class ZeroShotClassificationTask(RetrievalTask):
    Config = ZeroShotClassificationConfig

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        metrics = super().compute_metrics(outputs, split, output_dir)
        if "v2t_r1" in metrics:
            metrics["top1_accuracy"] = metrics["v2t_r1"] / 100.0
            metrics["top5_accuracy"] = metrics["v2t_r5"] / 100.0
        return metrics
