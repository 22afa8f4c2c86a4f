"""Video-text retrieval (SSv2-label, SSv2-template, Temporal-SSv2/-Kinetics) over a fixed caption gallery.

``eval_step`` keeps only text-independent video features (per sample); ``compute_metrics`` encodes
the dataset's caption gallery once and ranks block by block, so a 20k x 20k similarity matrix never
sits in memory. A caption may have many ground-truth videos (SSv2-template): its rank is that of the
best-ranked one. ``agg_metrics`` = mean of the recalls (R@1/5/10 of each direction).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from paxion.metrics import chunked_ranks, recall_metrics
from paxion.model import PaxionModel
from paxion.registry import registry
from paxion.scoring import combine_scores
from paxion.tasks.base import Batch
from paxion.tasks.common import PaxionTask, PaxionTaskConfig, unwrap

logger = logging.getLogger(__name__)

DIRECTIONS = ("v2t", "t2v")


@dataclass
class RetrievalConfig(PaxionTaskConfig):
    name: str = "retrieval"
    directions: list[str] = field(default_factory=lambda: ["v2t", "t2v"])
    score_budget: int = 1 << 24  # max similarity entries (incl. per-latent ones) held at once
    text_batch_size: int = 256

    def __post_init__(self) -> None:
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or not self.directions:
            raise ValueError(f"task.directions: {self.directions}; valid: non-empty subset of {list(DIRECTIONS)}")


@registry.register("task", "retrieval")
class RetrievalTask(PaxionTask):
    Config = RetrievalConfig

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        model = unwrap(model)
        module = self.task_cfg.eval_module
        out = self.eval_outputs(model, batch)
        if batch.get("text_idx") is None:
            raise KeyError(f"retrieval needs 'text_idx' in the batch (dataset '{self.dataset_name()}')")
        enc = model.encode_video(batch["video_input"], use_patcher=module != "backbone")
        out["text_idx"] = batch["text_idx"]
        out["video"] = enc.features(module)  # (B, Q, D) | (B, E)
        if model.cfg.eval_method != "default":
            out["backbone_video"] = enc.features("backbone")  # (B, E)
        return out

    def encode_gallery(self, model: PaxionModel, texts: list[str]) -> torch.Tensor:
        """Normalised features of the caption gallery (M, E), in batches."""
        step = self.task_cfg.text_batch_size
        return torch.cat([model.encode_text(texts[i: i + step]) for i in range(0, len(texts), step)])

    def _score_rows(
        self, model: PaxionModel, outputs: dict[str, Any], text: torch.Tensor, direction: str
    ) -> Callable[[int, int], torch.Tensor]:
        """(start, stop) -> candidate probabilities of those query rows, with the configured eval_method."""
        module, method = self.task_cfg.eval_module, model.cfg.eval_method
        device = model.device
        video = outputs["video"].to(device)
        backbone_video = outputs["backbone_video"].to(device) if method != "default" else None
        backbone_text = text  # the model's text side is the frozen backbone text

        def logits(v: torch.Tensor, t: torch.Tensor, mod: str) -> torch.Tensor:
            return model.logits(v, t, mod).float()  # (Nv, Nt)

        def rows(start: int, stop: int) -> torch.Tensor:
            side = None
            if direction == "v2t":
                main = logits(video[start:stop], text, module)
                if backbone_video is not None:
                    side = logits(backbone_video[start:stop], backbone_text, "backbone")
            else:
                main = logits(video, text[start:stop], module).t()
                if backbone_video is not None:
                    side = logits(backbone_video, backbone_text[start:stop], "backbone").t()
            return combine_scores(main, side, method, model.cfg.two_step_top_k)

        return rows

    def ranks(self, model: PaxionModel, outputs: dict[str, Any], texts: list[str], direction: str) -> torch.Tensor:
        text = self.encode_gallery(model, texts)  # (M, E)
        text_idx = outputs["text_idx"].to(model.device)  # (Nv,)
        num_videos, num_texts = text_idx.shape[0], len(texts)
        latents = outputs["video"].shape[1] if outputs["video"].dim() == 3 else 1
        rows_fn = self._score_rows(model, outputs, text, direction)
        if direction == "v2t":
            chunk = max(1, self.task_cfg.score_budget // (num_texts * latents))

            def gt(start: int, stop: int) -> torch.Tensor:
                return text_idx[start:stop, None] == torch.arange(num_texts, device=text_idx.device)[None]

            return chunked_ranks(rows_fn, gt, num_videos, chunk)
        chunk = max(1, self.task_cfg.score_budget // (num_videos * latents))

        def gt_t2v(start: int, stop: int) -> torch.Tensor:
            return torch.arange(start, stop, device=text_idx.device)[:, None] == text_idx[None]

        with_video = torch.unique(text_idx)  # captions without any video have no t2v ground truth
        if with_video.numel() != num_texts:
            logger.warning("%d of %d captions have no video; they are left out of t2v",
                           num_texts - with_video.numel(), num_texts)
        ranks = chunked_ranks(rows_fn, lambda s, e: _gt_or_self(gt_t2v(s, e)), num_texts, chunk)
        return ranks[with_video.cpu()]

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        if self.model is None or split not in self.datasets:
            raise RuntimeError("retrieval metrics need build_datasets() to have run for this split")
        model = self.model
        texts = self.datasets[split].texts
        if not texts:
            raise ValueError(f"dataset '{self.dataset_name()}' split '{split}' has no caption gallery ('texts')")
        metrics = self.base_metrics(outputs)
        recalls = []
        for direction in self.task_cfg.directions:
            found = recall_metrics(self.ranks(model, outputs, texts, direction), direction)
            metrics.update(found)
            recalls += [found[f"{direction}_r{k}"] for k in (1, 5, 10)]
        metrics["agg_metrics"] = sum(recalls) / len(recalls)
        logger.info("retrieval %s (%s, %s): %s", split, self.task_cfg.eval_module, model.cfg.eval_method,
                    ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if "_r" in k))
        return metrics


def _gt_or_self(is_gt: torch.Tensor) -> torch.Tensor:
    """Rows without any ground truth (captions with no video) get a dummy GT; they are dropped later."""
    empty = ~is_gt.any(dim=1)
    if bool(empty.any()):
        is_gt = is_gt.clone()
        is_gt[empty, 0] = True
    return is_gt
