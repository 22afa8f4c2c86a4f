"""ALPRO's evaluation formats and its every-pair retrieval scoring, as plain functions.

* retrieval: ``{"text2video": {r1, r5, r10, medianR, meanR}, "video2text": {...}}``, recalls in percent,
  ranks 1-indexed (numpy median: the mean of the two middle ranks for an even count); a query with
  several ground truths is ranked by its best one.
* QA (MSRVTT-QA / MSVD-QA): ``overall_acc`` and ``{what,who,how,where,when}_acc`` in percent (2 dp)
  and ``ratios`` ``{"<type>_ratio": [percent of questions (2 dp), count]}``; a type with no question
  scores 0, as the original. A prediction equals the ground truth only as a string, so a ground-truth
  answer outside ``ans2label`` is always wrong.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from paxion.tasks.metrics import recall_percent

logger = logging.getLogger(__name__)

QA_TYPES = ("what", "who", "how", "where", "when")
State = dict[str, torch.Tensor]


def rank_metrics(ranks: torch.Tensor) -> dict[str, float]:
    """0-based ranks (N,) -> ALPRO's r1/r5/r10 (percent), medianR, meanR (1-based)."""
    one_based = ranks.double() + 1
    out = {f"r{k}": recall_percent(ranks, k) for k in (1, 5, 10)}
    out["medianR"] = one_based.quantile(0.5).item()  # numpy's median
    out["meanR"] = one_based.mean().item()
    return out


def retrieval_metrics(v2t_ranks: torch.Tensor, t2v_ranks: torch.Tensor) -> dict[str, dict[str, float]]:
    return {"text2video": rank_metrics(t2v_ranks), "video2text": rank_metrics(v2t_ranks)}


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"text2video": {"r1": ..}} -> {"<prefix>text2video/r1": ..}; lists (ratios) become /percent, /count."""
    out: dict[str, float] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif isinstance(value, (list, tuple)):
            out[name + "/percent"], out[name + "/count"] = float(value[0]), float(value[1])
        else:
            out[name] = float(value)
    return out


def qa_metrics(predicted: Sequence[str], answers: Sequence[str], types: Sequence[str]) -> dict[str, Any]:
    """ALPRO's open-ended QA metrics from predicted and ground-truth answer strings and answer types."""
    if not predicted or len(predicted) != len(answers) or len(answers) != len(types):
        raise ValueError("qa_metrics needs equally long, non-empty predictions, answers and types")
    unknown = sorted(set(types) - set(QA_TYPES))
    if unknown:
        raise ValueError(f"answer types {unknown} are not ALPRO's {list(QA_TYPES)}")
    correct = [p == a for p, a in zip(predicted, answers)]
    total = len(correct)
    metrics: dict[str, Any] = {"overall_acc": round(100.0 * sum(correct) / total, 2)}
    ratios = {}
    for qtype in QA_TYPES:
        hits = [c for c, t in zip(correct, types) if t == qtype]
        metrics[f"{qtype}_acc"] = round(100.0 * sum(hits) / len(hits), 2) if hits else 0
        ratios[f"{qtype}_ratio"] = [round(100.0 * len(hits) / total, 2), len(hits)]
    metrics["ratios"] = ratios
    return metrics


def all_pair_scores(score_pairs: Callable[[State, State], torch.Tensor], video: State, text: State,
                    pair_batch_size: int, device: torch.device) -> torch.Tensor:
    """ALPRO's protocol: ``score_pairs`` on every (video, caption) pair -> (Nv, Nt) on the CPU."""
    num_videos, num_texts = video["embed"].shape[0], text["embed"].shape[0]
    out = torch.empty(num_videos, num_texts)
    rows = max(1, pair_batch_size // num_texts)
    for start in range(0, num_videos, rows):
        stop = min(start + rows, num_videos)
        v_idx = torch.arange(start, stop).repeat_interleave(num_texts)  # (n*Nt,)
        t_idx = torch.arange(num_texts).repeat(stop - start)
        v = {key: value[v_idx].to(device) for key, value in video.items()}
        t = {key: value[t_idx].to(device) for key, value in text.items()}
        out[start:stop] = score_pairs(v, t).float().cpu().view(stop - start, num_texts)
    return out


def write_retrieval(ranks: dict[str, torch.Tensor], split: str, output_dir: Any) -> dict[str, float]:
    """ALPRO's dicts for the final scores (``v2t``/``t2v``) and the VTC-only ones (``*_emb``), written with
    the split name to ``<output_dir>/result/<split>_retrieval_alpro.json``; returns them flat plus
    ``agg_metrics`` (mean of the six final recalls)."""
    final = retrieval_metrics(ranks["v2t"], ranks["t2v"])
    itc = retrieval_metrics(ranks["v2t_emb"], ranks["t2v_emb"])
    path = Path(output_dir) / "result" / f"{split}_retrieval_alpro.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"split": split, **final, "vtc_only": itc}, indent=2))
    logger.info("ALPRO retrieval %s: %s (written to %s)", split, json.dumps(final), path)
    out = flatten(final, f"{split}/")
    out.update(flatten(itc, f"{split}_vtc/"))
    recalls = [final[d][f"r{k}"] for d in ("text2video", "video2text") for k in (1, 5, 10)]
    out["agg_metrics"] = sum(recalls) / len(recalls)
    return out
