"""Metric functions against brute-force references (sorting, sklearn-style F1), incl. ties and multi-GT."""

from __future__ import annotations

import pytest
import torch

from paxion.tasks.metrics import accuracy, chunked_ranks, first_hit_ranks, macro_f1, per_group_accuracy, recall_metrics


def _brute_rank(scores: list[float], gt: set[int]) -> int:
    """Sort by score (descending), non-GT before GT among ties (pessimistic); position of the first GT."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j in gt))
    return next(pos for pos, j in enumerate(order) if j in gt)


def _brute_f1(pred: list[int], target: list[int]) -> float:
    classes = sorted(set(pred) | set(target))
    f1s = []
    for c in classes:
        tp = sum(p == c and t == c for p, t in zip(pred, target))
        fp = sum(p == c and t != c for p, t in zip(pred, target))
        fn = sum(p != c and t == c for p, t in zip(pred, target))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def test_ranks_match_brute_force_with_ties_and_many_gt() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (40, 13), generator=g).float()  # many ties
    is_gt = torch.rand(40, 13, generator=g) < 0.2
    is_gt[torch.arange(40), torch.randint(0, 13, (40,), generator=g)] = True
    got = first_hit_ranks(scores, is_gt)
    expected = [_brute_rank(scores[i].tolist(), set(torch.nonzero(is_gt[i]).flatten().tolist())) for i in range(40)]
    assert got.tolist() == expected


def test_constant_scores_get_the_worst_rank() -> None:
    scores = torch.zeros(2, 5)
    is_gt = torch.tensor([[False, False, True, False, False], [True, True, False, False, False]])
    assert first_hit_ranks(scores, is_gt).tolist() == [4, 3]


def test_chunked_ranks_equal_full_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(23, 9, generator=g)
    text_idx = torch.randint(0, 9, (23,), generator=g)
    is_gt = text_idx[:, None] == torch.arange(9)[None]
    full = first_hit_ranks(scores, is_gt)
    chunked = chunked_ranks(lambda s, e: scores[s:e], lambda s, e: is_gt[s:e], 23, chunk_size=4)
    assert torch.equal(full, chunked)


def test_rows_without_ground_truth_are_an_error() -> None:
    with pytest.raises(ValueError, match="ground-truth"):
        first_hit_ranks(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool))


def test_recalls_and_median_mean_rank() -> None:
    ranks = torch.tensor([0, 0, 3, 7, 12, 1])
    out = recall_metrics(ranks, "v2t")
    assert out["v2t_r1"] == pytest.approx(100 * 2 / 6)
    assert out["v2t_r5"] == pytest.approx(100 * 4 / 6)
    assert out["v2t_r10"] == pytest.approx(100 * 5 / 6)
    assert out["v2t_medr"] == pytest.approx(3.0)  # 1-based ranks sorted 1 1 2 4 8 13: mean of 2 and 4
    assert out["v2t_meanr"] == pytest.approx((1 + 1 + 4 + 8 + 13 + 2) / 6)


def test_accuracy_and_macro_f1_against_brute_force() -> None:
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randint(0, 4, (50,), generator=g), torch.randint(0, 5, (50,), generator=g)
    assert accuracy(pred, target) == pytest.approx((pred == target).float().mean().item())
    assert macro_f1(pred, target) == pytest.approx(_brute_f1(pred.tolist(), target.tolist()), rel=1e-6)
    binary = torch.tensor([0, 1, 0, 0])
    assert macro_f1(binary, torch.zeros(4, dtype=torch.long)) == pytest.approx(_brute_f1([0, 1, 0, 0], [0, 0, 0, 0]))


def test_per_group_accuracy() -> None:
    pred, target = torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])
    assert per_group_accuracy(pred, target, torch.tensor([0, 0, 1, 1]), ["CW", "TN"]) == {"CW": 0.5, "TN": 0.5}


def test_recalls_are_computed_as_the_originals_write_them() -> None:
    """23 hits of 40 queries: the originals' ``100.0 * hits / n`` is 57.5; ``100 * mean`` would be 57.49999999999999."""
    import json

    from paxion.tasks.metrics import recall_metrics, singularity_recalls
    from paxion.tasks.alpro_metrics import rank_metrics

    ranks = torch.tensor([0] * 23 + [50] * 17)
    assert 100.0 * (ranks < 10).double().mean().item() != 57.5  # the arithmetic this guards against
    assert json.dumps(rank_metrics(ranks)["r10"]) == "57.5"
    assert json.dumps(recall_metrics(ranks, "v2t")["v2t_r10"]) == "57.5"
    assert singularity_recalls(ranks, ranks)["txt_r10"] == 57.5
