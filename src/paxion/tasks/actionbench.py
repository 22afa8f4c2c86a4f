"""ActionBench: does the model know the action, its direction in time, and (control) the objects?

Probes, each a two-way choice with the correct candidate at index 0 (chance 50 %):

* ``action_antonym`` (AA): video -> [caption, caption with the action replaced by its antonym];
* ``video_reversal`` (VR): caption -> [clip, time-reversed clip]; near-ties (|p0 - p1| < 1e-5, e.g. a
  frame-order-blind model) are broken by a seeded random choice;
* ``object_shuffle`` (OS): video -> [caption, caption with the objects replaced].

Any video-text model can be probed: a Paxion model scores with ``task.eval_module`` (backbone | patcher |
fused) and its ``eval_method``; every other model through the task protocol with its own retrieval
similarity, or its re-ranker with ``task.use_pair_scorer`` (:mod:`paxion.tasks.probe_scoring`).

Metrics per probe: accuracy (= micro-F1) and macro-F1; ``agg_metrics`` = macro + micro F1 of the
selection probe (AA), as the original's checkpoint selection. A sample whose scores are not finite
counts as wrong (``nonfinite_scores``: how many samples, any probe). A probe whose negative the split
lacks (ActionBench-SSv2 test has no object shuffles) is skipped with a warning (``skipped_probes``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paxion.tasks.metrics import accuracy, macro_f1, nonfinite_rows, predict
from paxion.systems.paxion.model import PaxionModel
from paxion.registry import registry
from paxion.systems.paxion.scoring import combine_scores
from paxion.tasks.base import Batch
from paxion.tasks.common import ModelTask, PaxionTaskConfig
from paxion.tasks.probe_scoring import caption_choice_scores, encode_clips, reversal_choice_scores
from paxion.tasks.protocol import unwrap_model

logger = logging.getLogger(__name__)

PROBES = {  # probe -> (short name, batch key of the negative caption; None: the negative is a video)
    "action_antonym": ("AA", "action_antonym_text_input"),
    "video_reversal": ("VR", None),
    "object_shuffle": ("OS", "object_shuffled_text_input"),
}


@dataclass
class ActionBenchConfig(PaxionTaskConfig):
    name: str = "actionbench"
    probes: list[str] = field(default_factory=lambda: ["action_antonym", "video_reversal", "object_shuffle"])
    selection_probe: str = "action_antonym"  # agg_metrics = macro + micro F1 of this probe
    tie_tolerance: float = 1e-5
    tie_seed: int = 42
    use_pair_scorer: bool = False  # models other than Paxion: score with score_pairs (ITM/VTM) instead of similarity

    def __post_init__(self) -> None:
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown:
            raise ValueError(f"task.probes: unknown {unknown}; valid: {list(PROBES)}")
        if self.probes and self.selection_probe not in self.probes:
            raise ValueError(f"task.selection_probe '{self.selection_probe}' is not in task.probes {self.probes}")


@registry.register("task", "actionbench")
class ActionBenchTask(ModelTask):
    Config = ActionBenchConfig

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        model = unwrap_model(model)
        out = self.eval_outputs(model, batch)
        # a probe whose negative captions the split lacks is left out (compute_metrics says so)
        probes = [p for p in self.task_cfg.probes if PROBES[p][1] is None or batch.get(PROBES[p][1]) is not None]
        if probes and isinstance(model, PaxionModel):
            out.update(self._paxion_scores(model, batch, probes))
        elif probes:
            out.update(self._protocol_scores(model, batch, probes))
        if probes and "video_id" in batch:
            out["video_id"] = list(batch["video_id"])
        return out

    def scorer_name(self, model: nn.Module) -> str:
        """What scored the probes, for the log: the Paxion module or the protocol scorer."""
        if isinstance(unwrap_model(model), PaxionModel):
            return self.task_cfg.eval_module
        return "pair scorer" if self.task_cfg.use_pair_scorer else "similarity"

    def _protocol_scores(self, model: nn.Module, batch: Batch, probes: list[str]) -> dict[str, torch.Tensor]:
        """Scores of any video-text model through the task protocol (probabilities (B, 2), correct first)."""
        captions, use_pairs = list(batch["text_input"]), self.task_cfg.use_pair_scorer
        clips = encode_clips(model, batch["video_input"], with_reversed="video_reversal" in probes)
        out = {}
        for probe in probes:
            key = PROBES[probe][1]
            if key is None:
                out[f"{probe}_scores"] = reversal_choice_scores(model, clips, captions, use_pairs)
            else:
                candidates = [[c, n] for c, n in zip(captions, batch[key])]
                out[f"{probe}_scores"] = caption_choice_scores(model, clips, candidates, use_pairs)
        return out

    def _paxion_scores(self, model: PaxionModel, batch: Batch, probes: list[str]) -> dict[str, torch.Tensor]:
        out = {}
        module = self.task_cfg.eval_module
        captions = list(batch["text_input"])
        size = len(captions)
        texts = list(captions)
        for probe in probes:
            key = PROBES[probe][1]
            if key is not None:
                texts += list(batch[key])
        enc = model.encode_video(
            batch["video_input"], with_reversed="video_reversal" in probes, use_patcher=module != "backbone"
        )
        text = model.encode_text(texts)  # (B * (1 + #text probes), E)
        offset = size
        for probe in probes:
            if PROBES[probe][1] is None:
                scores = self._reversal_scores(model, enc, text[:size], module)
            else:
                candidates = torch.stack([text[:size], text[offset: offset + size]], dim=1)  # (B, 2, E)
                offset += size
                scores = self._caption_scores(model, enc, candidates, module)
            out[f"{probe}_scores"] = scores  # (B, 2) probabilities, correct candidate first
        return out

    def _combine(self, model: PaxionModel, logits: torch.Tensor, backbone_logits: Any) -> torch.Tensor:
        return combine_scores(logits, backbone_logits, model.cfg.eval_method, model.cfg.two_step_top_k)

    def _caption_scores(self, model: PaxionModel, enc: Any, candidates: torch.Tensor, module: str) -> torch.Tensor:
        """video (B) x its two captions (B, 2, E) -> probabilities (B, 2)."""
        size = candidates.shape[0]
        logits = model.paired_logits(enc.features(module)[:size], candidates, module)
        backbone = None
        if model.cfg.eval_method != "default":
            backbone = model.paired_logits(enc.features("backbone")[:size], candidates, "backbone")
        return self._combine(model, logits, backbone)

    def _reversal_scores(self, model: PaxionModel, enc: Any, text: torch.Tensor, module: str) -> torch.Tensor:
        """caption (B, E) x [clip, reversed clip] -> probabilities (B, 2)."""
        logits = model.paired_logits(enc.split_views(enc.features(module)), text, module)
        backbone = None
        if model.cfg.eval_method != "default":
            backbone = model.paired_logits(enc.split_views(enc.features("backbone")), text, "backbone")
        return self._combine(model, logits, backbone)

    def predictions(self, probe: str, scores: torch.Tensor) -> torch.Tensor:
        """argmax of (N, 2) scores; VR near-ties get a seeded coin flip (the same for any process count).

        A row with a non-finite score predicts ``NO_PREDICTION`` (wrong), never the correct index 0.
        """
        pred = predict(scores)
        if probe == "video_reversal":
            tie = (scores[:, 0] - scores[:, 1]).abs() < self.task_cfg.tie_tolerance
            generator = torch.Generator().manual_seed(self.task_cfg.tie_seed)
            coin = torch.randint(0, 2, (scores.shape[0],), generator=generator)
            pred = torch.where(tie, coin, pred)
        return pred

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        metrics = self.base_metrics(outputs)
        probes = self._scored_probes(outputs, split, metrics)
        bad_any = torch.zeros(len(outputs["idx"]), dtype=torch.bool)
        summary = []
        for probe in probes:
            scores = outputs[f"{probe}_scores"]
            pred = self.predictions(probe, scores)
            bad = nonfinite_rows(scores).cpu()
            bad_any |= bad
            if bool(bad.any()):
                logger.warning("ActionBench %s, %s: %d of %d samples have non-finite scores (NaN/inf): counted "
                               "as wrong", split, probe, int(bad.sum()), len(bad))
            target = torch.zeros_like(pred)
            micro, macro = accuracy(pred, target), macro_f1(pred, target)
            metrics[f"{probe}_accuracy"] = micro
            metrics[f"{probe}_macro_f1"] = macro
            summary.append(f"{PROBES[probe][0]} {100 * micro:.2f}")
            if probe == self.task_cfg.selection_probe:
                metrics["agg_metrics"] = micro + macro
            rows = [
                {"idx": int(i), "pred": int(p), "target": 0, "scores": [float(s) for s in sc]}
                for i, p, sc in zip(outputs["idx"], pred, scores)
            ]
            for row, vid in zip(rows, outputs.get("video_id", [None] * len(rows))):
                row["video_id"] = vid
            self.write_predictions(output_dir, split, probe, rows)
        metrics["nonfinite_scores"] = int(bad_any.sum())
        if summary:
            scorer = self.scorer_name(self.model) if self.model is not None else self.task_cfg.eval_module
            logger.info("ActionBench %s (%s, %d clips): %s", split, scorer, metrics["num_samples"], " | ".join(summary))
        return metrics

    def _scored_probes(self, outputs: dict[str, Any], split: str, metrics: dict[str, Any]) -> list[str]:
        """The configured probes that have scores; the others are named in ``skipped_probes`` with a warning."""
        probes, skipped = [], []
        for probe in self.task_cfg.probes:
            (probes if f"{probe}_scores" in outputs else skipped).append(probe)
        for probe in skipped:
            key = PROBES[probe][1]
            logger.warning("ActionBench %s: probe '%s' skipped: the split's samples have no '%s' (batch key '%s')",
                           split, probe, key.removesuffix("_input"), key)
        if skipped:
            metrics["skipped_probes"] = skipped
        return probes
