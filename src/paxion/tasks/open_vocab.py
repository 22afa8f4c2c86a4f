"""Open-vocabulary video classification (Open-VCLIP): train on some classes, score any class names.

Classifier: the split's class names (``dataset.class_names``) in every prompt template of the model
(``model.templates``; Open-VCLIP: its 28), each template's text embeddings L2-normalised, averaged
and normalised again: one unit row per class, built once per evaluation pass without gradients.
Logits of a view: ``scale * similarity(video, class)``, where the similarity is the model's own
(Open-VCLIP: the cosine averaged over frames) and ``scale`` its ``zero_shot_logit_scale()`` (1 when
it has none). A video's logits are the *sum* over its views (``TEST.NUM_ENSEMBLE_VIEWS`` temporal x
``NUM_SPATIAL_CROPS`` spatial; ``ensemble_method: max`` takes the maximum), scored as top-1 / top-5
accuracy in percent and written as the original's final line ``result/{split}_openvclip.json`` =
``{"split": "test_final", "top1_acc": "xx.xx", "top5_acc": "xx.xx"}``.

Training (``model(batch)``) uses the model's own classifier over the training classes, which this
task hands it through ``set_class_names`` when the model has that method.

Evaluation protocols (several runs, one per split, summarised by :func:`protocol_summary` and
``python -m paxion.tools.open_vocab_protocol``): UCF-101 / HMDB-51 three official test splits and
the full class set; Kinetics-600 three splits of its 220 classes new to Kinetics-400; mean ± std.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from paxion.data.datasets.ssv2_list import collate_actions
from paxion.registry import registry
from paxion.systems.openvclip.objectives import OPENVCLIP_TEMPLATES, class_prompts, ensemble_classifier
from paxion.tasks import protocol
from paxion.tasks.base import Batch
from paxion.tasks.common import ModelTask, ModelTaskConfig

ENSEMBLE_METHODS = ("sum", "max")


@dataclass
class OpenVocabConfig(ModelTaskConfig):
    name: str = "open_vocab_classification"
    eval_module: str = "backbone"  # Paxion models: zero-shot through the backbone unless told otherwise
    ensemble_method: str = "sum"  # TEST.ENSEMBLE_METHOD
    topk: list[int] = field(default_factory=lambda: [1, 5])

    def __post_init__(self) -> None:
        if self.ensemble_method not in ENSEMBLE_METHODS:
            raise ValueError(f"task.ensemble_method '{self.ensemble_method}' is not one of {list(ENSEMBLE_METHODS)}")


def template_classifier(encode_text: Callable[[list[str]], dict], names: list[str], templates: tuple[str, ...]):
    """(C, E) unit rows from a model's text encoder: names x templates, normalised, averaged, normalised."""
    embeds = encode_text(class_prompts(names, templates))["embed"]
    return ensemble_classifier(embeds, len(templates))


def ensemble_views(logits: torch.Tensor, video_index: torch.Tensor, labels: torch.Tensor, method: str):
    """Per-view logits (N, C) -> (video ids (V,), combined logits (V, C), labels (V,)): sum or max over views."""
    videos, slot = torch.unique(video_index, return_inverse=True)
    if method == "sum":
        combined = torch.zeros(len(videos), logits.shape[1]).index_add_(0, slot, logits.float())
    else:
        combined = torch.full((len(videos), logits.shape[1]), float("-inf"))
        combined = combined.scatter_reduce_(0, slot[:, None].expand_as(logits), logits.float(), "amax")
    video_labels = torch.zeros(len(videos), dtype=torch.long).index_put_((slot,), labels.long())
    return videos, combined, video_labels


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Percent of rows whose label is among the ``k`` highest scores (k capped at C)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return 100.0 * (top == labels[:, None]).any(dim=1).double().mean().item()


def final_line(top1: float, top5: float) -> dict[str, str]:
    """The original's final test record: accuracies as strings with two decimals."""
    return {"split": "test_final", "top1_acc": f"{top1:.2f}", "top5_acc": f"{top5:.2f}"}


def protocol_summary(per_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{split name: metrics with top1_acc / top5_acc (numbers or the original's strings)} -> mean and std.

    ``std`` is the population standard deviation over the splits (0 for a single split).
    """
    if not per_split:
        raise ValueError("protocol_summary: no splits given")
    summary: dict[str, Any] = {"splits": sorted(per_split)}
    for key in ("top1_acc", "top5_acc"):
        values = [float(metrics[key]) for metrics in per_split.values()]
        summary[f"{key}_mean"] = statistics.fmean(values)
        summary[f"{key}_std"] = statistics.pstdev(values)
    return summary


@registry.register("task", "open_vocab_classification")
class OpenVocabClassificationTask(ModelTask):
    Config = OpenVocabConfig

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.names: list[str] = []  # the label database's classes (one index -> class file per run)
        self._classifier: Optional[torch.Tensor] = None
        self._last_idx = -1  # a batch starting at or before it begins a new evaluation pass on this rank

    def collate_fn(self) -> Optional[Callable[[list[Any]], Batch]]:
        return collate_actions

    def build_datasets(self, model: nn.Module, splits: list[str]) -> dict[str, Dataset]:
        built = super().build_datasets(model, splits)
        for split, dataset in built.items():
            names = getattr(dataset, "class_names", None)
            if not names:
                raise ValueError(f"split '{split}': its dataset has no class_names (use datasets.openvclip_label_db)")
            self.names = list(names)
        if protocol.provides(self.model, "set_class_names"):
            self.model.set_class_names(self.names)  # training classes (the original builds them once at start)
        return built

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inner = protocol.unwrap_model(model)
        parts = model({"video": inner.normalize_video(batch["video_input"]), "label": batch["label"]})
        return parts["loss"], {key: value.detach() for key, value in parts.items()}

    def classifier(self, view: Any) -> torch.Tensor:
        """(C, E) unit rows over the label database's classes, built at the first batch of an evaluation pass."""
        if self._classifier is None:
            encode = protocol.require(view, "encode_text_for_retrieval", self.cfg.task.name)
            templates = tuple(getattr(view, "templates", OPENVCLIP_TEMPLATES))
            self._classifier = template_classifier(encode, self.names, templates)
        return self._classifier

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        view = self.view(model)
        first = int(batch["idx"].min())
        if first <= self._last_idx:  # a new pass: the weights may have changed (training, weight patching)
            self._classifier = None
        self._last_idx = int(batch["idx"].max())
        encode_video = protocol.require(view, "encode_video_for_retrieval", self.cfg.task.name)
        video_embed = encode_video(batch["video_input"])["embed"]
        classifier = self.classifier(view)
        scale = view.zero_shot_logit_scale() if protocol.provides(view, "zero_shot_logit_scale") else 1.0
        logits = scale * protocol.retrieval_similarity(view, video_embed, classifier.to(video_embed.device))
        out = self.eval_outputs(model, batch)
        out.update(logits=logits.float(), label=batch["label"], video_index=batch["video_index"])
        return out

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        self._classifier, self._last_idx = None, -1  # rank 0; other ranks notice the restart in eval_step
        videos, logits, labels = ensemble_views(
            outputs["logits"], outputs["video_index"], outputs["label"], self.task_cfg.ensemble_method
        )
        metrics = self.base_metrics(outputs)
        for k in self.task_cfg.topk:
            metrics[f"top{k}_acc"] = topk_accuracy(logits, labels, k)
        metrics["num_videos"] = len(videos)
        metrics["agg_metrics"] = metrics["top1_acc"]
        line = final_line(metrics["top1_acc"], metrics.get("top5_acc", float("nan")))
        path = Path(output_dir) / "result" / f"{split}_openvclip.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(line) + "\n")
        rows = [
            {"video_index": int(v), "pred": int(s.argmax()), "label": int(y)} for v, s, y in zip(videos, logits, labels)
        ]
        self.write_predictions(output_dir, split, "open_vocab", rows)
        return metrics
