"""Metric functions on plain tensors (no model, no I/O).

Retrieval ranks are computed a block of query rows at a time, so a 20k x 20k similarity never sits in
memory at once. Ties are resolved pessimistically: a ground-truth item's rank counts every non-GT
candidate whose score is >= the best GT score (a constant scorer gets the worst rank, not the best).

Non-finite scores (a diverged model) are never a success: a row with a NaN/inf score predicts
:data:`NO_PREDICTION` (wrong for every target), and in ranking a non-finite score counts as beating the
ground truth (a non-finite ground-truth score as losing to every candidate).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

ScoreRows = Callable[[int, int], torch.Tensor]  # (start, stop) -> scores (stop - start, num_candidates)
NO_PREDICTION = -1  # the prediction of a row whose scores are not all finite: wrong whatever the target


def nonfinite_rows(scores: torch.Tensor) -> torch.Tensor:
    """(N, K) scores -> (N,) bool: rows holding a NaN or inf."""
    return ~torch.isfinite(scores).all(dim=-1)


def predict(scores: torch.Tensor) -> torch.Tensor:
    """argmax over the last dim of (N, K) scores; :data:`NO_PREDICTION` for a row with a non-finite score.

    (``argmax([nan, nan])`` is 0, which would make a diverged model right whenever the answer is 0.)
    """
    pred = scores.argmax(dim=-1)
    return pred.masked_fill(nonfinite_rows(scores), NO_PREDICTION)


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction correct (= micro-F1 for single-label classification)."""
    if pred.numel() == 0:
        raise ValueError("accuracy of an empty prediction set")
    return (pred == target).float().mean().item()


def macro_f1(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Unweighted mean over the classes present in ``pred`` or ``target`` of per-class F1 (sklearn's
    ``f1_score(average="macro")``; a class with no true and no predicted positives does not occur).

    :data:`NO_PREDICTION` is no class: such a row is only a miss (false negative) of its target."""
    classes = torch.unique(torch.cat([pred[pred != NO_PREDICTION], target]))
    hit = pred[:, None] == classes[None, :]  # (N, C)
    true = target[:, None] == classes[None, :]  # (N, C)
    tp = (hit & true).sum(0).float()
    denom = hit.sum(0).float() + true.sum(0).float()  # 2TP + FP + FN
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return f1.mean().item()


def first_hit_ranks(scores: torch.Tensor, is_gt: torch.Tensor) -> torch.Tensor:
    """0-based rank of the best-ranked ground truth per row: scores, is_gt (N, M) -> (N,) int64.

    Rank = number of non-GT candidates scoring >= the best finite GT score (pessimistic ties); a
    non-finite candidate score counts as beating it, a row whose GT scores are all non-finite gets the
    worst rank.
    """
    if not bool(is_gt.any(dim=1).all()):
        raise ValueError("every query row needs at least one ground-truth candidate")
    finite = torch.isfinite(scores)
    best_gt = scores.masked_fill(~is_gt | ~finite, float("-inf")).amax(dim=1, keepdim=True)  # (N, 1)
    return (((scores >= best_gt) | ~finite) & ~is_gt).sum(dim=1)


def chunked_ranks(
    score_rows: ScoreRows, gt_rows: Callable[[int, int], torch.Tensor], num_queries: int, chunk_size: int = 1024
) -> torch.Tensor:
    """Ranks of ``num_queries`` rows whose scores and GT masks are produced block by block -> (N,)."""
    ranks = []
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        ranks.append(first_hit_ranks(score_rows(start, stop), gt_rows(start, stop)))
    return torch.cat(ranks).cpu() if ranks else torch.zeros(0, dtype=torch.long)


def recall_percent(ranks: torch.Tensor, k: int) -> float:
    """R@k in percent as the originals compute it, ``100.0 * hits / n`` (23 of 40 -> 57.5, where
    ``100 * mean`` gives 57.49999999999999)."""
    return 100.0 * int((ranks < k).sum()) / ranks.numel()


def recall_metrics(ranks: torch.Tensor, prefix: str, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@k in percent, median and mean rank (1-based) from 0-based ranks."""
    ranks = ranks.double()
    out = {f"{prefix}_r{k}": recall_percent(ranks, k) for k in ks}
    out[f"{prefix}_medr"] = (ranks + 1).quantile(0.5).item()  # numpy's median: mean of the middle two
    out[f"{prefix}_meanr"] = (ranks + 1).mean().item()
    return out


def per_group_accuracy(
    pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor, names: Sequence[str]
) -> dict[str, float]:
    """Accuracy within each group id present (``names[g]`` labels group ``g``)."""
    out = {}
    for g in torch.unique(group).tolist():
        mask = group == g
        out[names[g]] = accuracy(pred[mask], target[mask])
    return out


def singularity_recalls(v2t_ranks: torch.Tensor, t2v_ranks: torch.Tensor) -> dict[str, float]:
    """Singularity's retrieval keys from 0-based ranks: ``txt_*`` = video->text, ``img_*`` = text->video,
    R@1/5/10 in percent, their means and ``r_mean``, each rounded to 2 decimals as the original."""
    def recalls(ranks: torch.Tensor) -> list[float]:
        return [recall_percent(ranks, k) for k in (1, 5, 10)]

    txt, img = recalls(v2t_ranks), recalls(t2v_ranks)
    txt_mean, img_mean = sum(txt) / 3, sum(img) / 3
    out = {f"txt_r{k}": v for k, v in zip((1, 5, 10), txt)}
    out["txt_r_mean"] = txt_mean
    out.update({f"img_r{k}": v for k, v in zip((1, 5, 10), img)})
    out.update(img_r_mean=img_mean, r_mean=(txt_mean + img_mean) / 2)
    return {key: round(value, 2) for key, value in out.items()}
