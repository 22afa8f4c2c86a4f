"""Video-text retrieval over a fixed caption gallery, for any model with the retrieval capability.

``eval_step`` keeps only text-independent video state (per sample); ``compute_metrics`` encodes the
dataset's caption gallery once and ranks. Ground truth: a caption may have many videos (SSv2-template:
its rank is that of the best-ranked one) and a video many captions (``text_ids``).

Two ways to score, chosen by config and the model's capabilities:

* dual encoder (Paxion and every model without ``score_pairs``, or ``k_test: 0``): similarity rows
  block by block, so a 20k x 20k matrix never sits in memory; keys ``v2t_r1``... and ``agg_metrics``
  = mean of the recalls;
* re-ranked (Singularity, ALPRO-style): the full similarity ("ITC") matrix, then the top ``k_test`` of
  each row re-scored by ``score_pairs`` in each direction, every other entry -100 (as the original).

``metric_format: singularity`` reports ``{split}/`` (re-ranked) and ``{split}_emb/`` (similarity only)
with Singularity's keys (``txt_r1``... ``r_mean``, 2 decimals); ``agg_metrics`` is then ``r_mean`` of the
re-ranked scores (of the similarity when the model has no re-ranker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from paxion.tasks.metrics import chunked_ranks, first_hit_ranks, nonfinite_rows, recall_metrics, singularity_recalls
from paxion.registry import registry
from paxion.tasks import alpro_metrics, protocol
from paxion.tasks.base import Batch
from paxion.tasks.common import ModelTask, ModelTaskConfig
from paxion.tasks.protocol import State

logger = logging.getLogger(__name__)

DIRECTIONS = ("v2t", "t2v")
METRIC_FORMATS = ("paxion", "singularity", "alpro")
RERANK_FILL = -100.0  # score of every candidate outside a row's top k_test (the original's value)


@dataclass
class RetrievalConfig(ModelTaskConfig):
    name: str = "retrieval"
    directions: list[str] = field(default_factory=lambda: ["v2t", "t2v"])
    score_budget: int = 1 << 24  # max similarity entries (incl. per-latent ones) held at once
    text_batch_size: int = 256
    k_test: int = 128  # re-rank the top k of each row with the model's score_pairs (if any); 0: never
    pair_batch_size: int = 1024  # (video, text) pairs per score_pairs call
    metric_format: str = "paxion"  # paxion: v2t_/t2v_ keys | singularity: {split}/ and {split}_emb/ keys | alpro
    rerank_all: bool = False  # score_pairs on every (video, caption) pair (ALPRO's protocol), not the top k_test

    def __post_init__(self) -> None:
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or not self.directions:
            raise ValueError(f"task.directions: {self.directions}; valid: non-empty subset of {list(DIRECTIONS)}")
        if self.metric_format not in METRIC_FORMATS:
            raise ValueError(f"task.metric_format: '{self.metric_format}' is not one of {list(METRIC_FORMATS)}")
        if self.metric_format in ("singularity", "alpro") and sorted(self.directions) != sorted(DIRECTIONS):
            raise ValueError(f"task.metric_format {self.metric_format} reports both directions; set task.directions: [v2t, t2v]")
        if self.k_test < 0 or self.pair_batch_size < 1:
            raise ValueError(f"task.k_test must be >= 0 and task.pair_batch_size >= 1, got {self.k_test}, "
                             f"{self.pair_batch_size}")


@registry.register("task", "retrieval")
class RetrievalTask(ModelTask):
    Config = RetrievalConfig

    @torch.no_grad()
    def eval_step(self, model: nn.Module, batch: Batch) -> dict[str, Any]:
        view = self.view(model)
        out = self.eval_outputs(model, batch)
        if batch.get("text_idx") is None:
            raise KeyError(f"retrieval needs 'text_idx' in the batch (dataset '{self.dataset_name()}')")
        out["text_idx"] = batch["text_idx"]
        if batch.get("text_ids") is not None:  # several captions per video
            out["text_ids"] = list(batch["text_ids"])
        encode = protocol.require(view, "encode_video_for_retrieval", self.cfg.task.name)
        state = dict(encode(batch["video_input"]))  # a copy: the model's dict stays as it was
        out["video"] = state.pop("embed")  # (B, Q, D) | (B, E)
        out.update(protocol.prefixed(state, "video"))
        return out

    # ------------------------------------------------------------------ ground truth

    def gt_pairs(self, outputs: dict[str, Any]) -> torch.Tensor:
        """(P, 2) int64 (video row, caption index) ground-truth pairs."""
        per_video = outputs.get("text_ids") or [[int(t)] for t in outputs["text_idx"]]
        rows = [(i, int(t)) for i, ids in enumerate(per_video) for t in ids]
        return torch.tensor(rows, dtype=torch.long).view(-1, 2)

    # ------------------------------------------------------------------ scoring

    def _rows_fn(self, view: Any, video: State, text: State, direction: str) -> Callable[[int, int], torch.Tensor]:
        """(start, stop) -> scores of those query rows (videos for v2t, captions for t2v)."""
        device = view.device

        def rows(start: int, stop: int) -> torch.Tensor:
            if direction == "v2t":
                v, t = _to(protocol.index_state(video, slice(start, stop)), device), text
            else:
                v, t = _to(video, device), protocol.index_state(text, slice(start, stop))
            return protocol.retrieval_rows(view, v, t, direction).float()

        return rows

    def _chunk(self, num_candidates: int, video: State) -> int:
        latents = video["embed"].shape[1] if video["embed"].dim() == 3 else 1
        return max(1, self.task_cfg.score_budget // (num_candidates * latents))

    def blockwise_ranks(
        self, view: Any, video: State, text: State, pairs: torch.Tensor, direction: str
    ) -> torch.Tensor:
        """Ranks computed a block of query rows at a time (dual encoder); t2v: captions with a video only."""
        num_videos, num_texts = video["embed"].shape[0], text["embed"].shape[0]
        rows_fn = self._rows_fn(view, video, text, direction)
        device = view.device
        if direction == "v2t":
            return chunked_ranks(rows_fn, lambda s, e: _gt_block(pairs, s, e, num_texts, 0).to(device),
                                 num_videos, self._chunk(num_texts, video))
        with_video = torch.unique(pairs[:, 1])
        if with_video.numel() != num_texts:  # captions without any video have no t2v ground truth
            logger.warning("%d of %d captions have no video; they are left out of t2v",
                           num_texts - with_video.numel(), num_texts)
        ranks = chunked_ranks(rows_fn, lambda s, e: _gt_or_self(_gt_block(pairs, s, e, num_videos, 1)).to(device),
                              num_texts, self._chunk(num_videos, video))
        return ranks[with_video]

    def similarity_matrix(self, view: Any, video: State, text: State) -> torch.Tensor:
        """The full video x caption similarity (Nv, Nt), on the CPU."""
        rows_fn = self._rows_fn(view, video, text, "v2t")
        num_videos, step = video["embed"].shape[0], self._chunk(text["embed"].shape[0], video)
        return torch.cat([rows_fn(s, min(s + step, num_videos)).cpu() for s in range(0, num_videos, step)])

    def rerank(self, view: Any, scores: torch.Tensor, query: State, candidates: State, direction: str) -> torch.Tensor:
        """Top ``k_test`` of each row of ``scores`` (N, M) re-scored by ``score_pairs``; the rest RERANK_FILL."""
        return rerank_top_k(view, scores, query, candidates, direction, self.task_cfg.k_test,
                            self.task_cfg.pair_batch_size, self.cfg.task.name)

    # ------------------------------------------------------------------ metrics

    def compute_metrics(self, outputs: dict[str, Any], split: str, output_dir: Path) -> dict[str, float]:
        if self.model is None or split not in self.datasets:
            raise RuntimeError("retrieval metrics need build_datasets() to have run for this split")
        view = self.view(self.model)
        texts = self.datasets[split].texts
        if not texts:
            raise ValueError(f"dataset '{self.dataset_name()}' split '{split}' has no caption gallery ('texts')")
        text = protocol.encode_texts(view, list(texts), self.task_cfg.text_batch_size, self.cfg.task.name)
        video = {"embed": outputs["video"], **protocol.unprefixed(outputs, "video")}
        pairs = self.gt_pairs(outputs)
        metrics = self.base_metrics(outputs)
        metrics["nonfinite_scores"] = _count_nonfinite(split, video, text)  # ranked last, never a hit
        reranked = self.task_cfg.k_test > 0 and protocol.provides(view, "score_pairs")
        if self.task_cfg.metric_format == "paxion" and not reranked:
            found = {d: self.blockwise_ranks(view, video, text, pairs, d) for d in self.task_cfg.directions}
        else:
            found = self.full_ranks(view, video, text, pairs, reranked)
        if self.task_cfg.metric_format == "singularity":
            metrics.update(self._singularity_metrics(found, split, reranked))
        elif self.task_cfg.metric_format == "alpro":
            metrics.update(alpro_metrics.write_retrieval(found, split, output_dir))
        else:
            metrics.update(self._paxion_metrics(found))
        logger.info("retrieval %s (%s): %s", split, protocol.model_arch(view),
                    ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if "_r" in k or "/r" in k))
        return metrics

    def full_ranks(self, view: Any, video: State, text: State, pairs: torch.Tensor,
                   reranked: bool) -> dict[str, torch.Tensor]:
        """Ranks from the full similarity matrix: ``v2t``/``t2v`` (re-ranked when possible), ``*_emb``."""
        sim = self.similarity_matrix(view, video, text)  # (Nv, Nt)
        gt = torch.zeros(sim.shape, dtype=torch.bool)
        gt[pairs[:, 0], pairs[:, 1]] = True
        with_video = gt.any(dim=0)  # t2v rows with a ground truth
        ranks = {"v2t_emb": first_hit_ranks(sim, gt),
                 "t2v_emb": first_hit_ranks(sim.t()[with_video], gt.t()[with_video])}
        if reranked and self.task_cfg.rerank_all:  # one score per pair serves both directions
            v2t = alpro_metrics.all_pair_scores(protocol.require(view, "score_pairs", self.cfg.task.name), video, text,
                                                self.task_cfg.pair_batch_size, view.device)
            t2v = v2t.t()
            ranks["v2t"] = first_hit_ranks(v2t, gt)
            ranks["t2v"] = first_hit_ranks(t2v[with_video], gt.t()[with_video])
        elif reranked:
            v2t = self.rerank(view, sim, video, text, "v2t")
            t2v = self.rerank(view, sim.t().contiguous(), text, video, "t2v")
            ranks["v2t"] = first_hit_ranks(v2t, gt)
            ranks["t2v"] = first_hit_ranks(t2v[with_video], gt.t()[with_video])
        else:
            ranks["v2t"], ranks["t2v"] = ranks["v2t_emb"], ranks["t2v_emb"]
        return ranks

    def _paxion_metrics(self, ranks: dict[str, torch.Tensor]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        recalls = []
        for direction in self.task_cfg.directions:
            found = recall_metrics(ranks[direction], direction)
            metrics.update(found)
            recalls += [found[f"{direction}_r{k}"] for k in (1, 5, 10)]
        metrics["agg_metrics"] = sum(recalls) / len(recalls)
        return metrics

    def _singularity_metrics(self, ranks: dict[str, torch.Tensor], split: str, reranked: bool) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for prefix, suffix in ((f"{split}/", ""), (f"{split}_emb/", "_emb")):
            found = singularity_recalls(ranks[f"v2t{suffix}"], ranks[f"t2v{suffix}"])
            metrics.update({prefix + key: value for key, value in found.items()})
        metrics["agg_metrics"] = metrics[f"{split}/r_mean"]
        if not reranked:
            logger.info("retrieval %s: the model has no score_pairs (or k_test is 0); %s/ equals %s_emb/",
                        split, split, split)
        return metrics


def rerank_top_k(view: Any, scores: torch.Tensor, query: State, candidates: State, direction: str, k_test: int,
                 pair_batch_size: int, task: str) -> torch.Tensor:
    """Top ``k_test`` of each row of ``scores`` (N, M) re-scored by ``score_pairs``; the rest RERANK_FILL.

    ``query`` holds the row states (videos for v2t, captions for t2v), ``candidates`` the column states."""
    score_pairs = protocol.require(view, "score_pairs", task)
    k = min(k_test, scores.shape[1])
    top = scores.topk(k, dim=1).indices  # (N, k)
    out = torch.full_like(scores, RERANK_FILL)
    step = max(1, pair_batch_size // k)
    for start in range(0, scores.shape[0], step):
        idx = top[start: start + step]  # (n, k)
        rows = torch.arange(start, start + idx.shape[0]).repeat_interleave(k)  # (n*k,)
        q = _to(protocol.index_state(query, rows), view.device)
        c = _to(protocol.index_state(candidates, idx.flatten()), view.device)
        video, text = (q, c) if direction == "v2t" else (c, q)
        out[start: start + idx.shape[0]].scatter_(1, idx, score_pairs(video, text).float().cpu().view(-1, k))
    return out


def _to(state: State, device: torch.device) -> State:
    return {key: value.to(device, non_blocking=True) for key, value in state.items()}


def _gt_block(pairs: torch.Tensor, start: int, stop: int, num_candidates: int, query_col: int) -> torch.Tensor:
    """Ground-truth mask (stop - start, num_candidates) of query rows [start, stop); queries in column ``query_col``."""
    query, cand = pairs[:, query_col], pairs[:, 1 - query_col]
    keep = (query >= start) & (query < stop)
    block = torch.zeros(stop - start, num_candidates, dtype=torch.bool)
    block[query[keep] - start, cand[keep]] = True
    return block


def _count_nonfinite(split: str, video: State, text: State) -> int:
    """Videos plus captions whose features hold NaN/inf: every score they enter is non-finite (a miss)."""
    videos = int(nonfinite_rows(video["embed"].flatten(1)).sum())
    captions = int(nonfinite_rows(text["embed"].flatten(1)).sum())
    if videos or captions:
        logger.warning("retrieval %s: %d videos and %d captions have non-finite features (NaN/inf); their "
                       "scores count as misses", split, videos, captions)
    return videos + captions


def _gt_or_self(is_gt: torch.Tensor) -> torch.Tensor:
    """Rows without any ground truth (captions with no video) get a dummy GT; they are dropped later."""
    empty = ~is_gt.any(dim=1)
    if bool(empty.any()):
        is_gt = is_gt.clone()
        is_gt[empty, 0] = True
    return is_gt
