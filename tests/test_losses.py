"""Objectives and scoring on hand-built features, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from paxion.systems.paxion import losses
from paxion.systems.paxion.scoring import combine_scores, paired_similarity, similarity


def _ce_ls(logits: list[float], target: int, eps: float = 0.1) -> float:
    """Label-smoothed cross-entropy of one row, written out: (1-eps) * nll + eps * mean(-log p)."""
    lse = math.log(sum(math.exp(x) for x in logits))
    logp = [x - lse for x in logits]
    return -(1 - eps) * logp[target] - eps * sum(logp) / len(logp)


def test_similarity_is_max_over_latents() -> None:
    video = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [-1.0, 0.0]]])  # (2, Q=2, 2)
    text = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    assert torch.equal(similarity(video, text), torch.tensor([[1.0, 0.0], [0.6, 0.0]]))
    assert torch.equal(similarity(video[:, 0], text), torch.tensor([[1.0, 0.0], [0.6, -0.8]]))  # vectors


def test_paired_similarity_both_directions() -> None:
    video = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2)
    texts = torch.tensor([[[0.6, 0.8], [0.0, -1.0]]])  # (1, K=2, 2)
    assert torch.equal(paired_similarity(video, texts), torch.tensor([[0.8, 0.0]]))
    clips = torch.stack([video, -video], dim=1)  # (1, K=2, Q=2, 2)
    assert torch.equal(paired_similarity(clips, torch.tensor([[0.6, 0.8]])), torch.tensor([[0.8, -0.6]]))


def test_vtc_label_smoothing_and_temperature_by_hand() -> None:
    video = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (B=2, Q=1, D=2)
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    temp = torch.tensor(0.5)
    sim = [[1.0, 0.6], [0.0, 0.8]]  # v2t; t2v is its transpose
    v2t = [_ce_ls([s / 0.5 for s in sim[i]], i) for i in range(2)]
    t2v = [_ce_ls([sim[j][i] / 0.5 for j in range(2)], i) for i in range(2)]
    expected = (sum(v2t) / 2 + sum(t2v) / 2) / 2
    got = losses.video_text_contrastive(video, text, temp)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_vac_antonyms_are_v2t_negatives_only() -> None:
    video = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    antonym = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    temp = torch.tensor(1.0)
    v2t_rows = [[1.0, 0.6, 0.8, 0.0], [0.0, 0.8, 0.6, 1.0]]  # [t_1, t_2, a_1, a_2]; target i (stride 2B)
    v2t = sum(_ce_ls(v2t_rows[i], i) for i in range(2)) / 2
    t2v = sum(_ce_ls([[1.0, 0.0], [0.6, 0.8]][i], i) for i in range(2)) / 2  # antonyms never appear here
    got = losses.video_text_contrastive(video, text, temp, negative_text=antonym)
    assert got.item() == pytest.approx((v2t + t2v) / 2, rel=1e-6)


def test_vtc_without_smoothing_is_plain_cross_entropy() -> None:
    video, text = torch.eye(3)[:, None, :], torch.eye(3)
    got = losses.video_text_contrastive(video, text, torch.tensor(1.0), label_smoothing=0.0)
    expected = -math.log(math.e / (math.e + 2))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_atm_filters_salient_samples_by_hand() -> None:
    video = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.6, 0.8]]])
    reversed_video = torch.tensor([[[0.0, 1.0]], [[0.0, 1.0]], [[1.0, 0.0]]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    temp = torch.tensor(0.25)
    per = [_ce_ls([1.0 / 0.25, 0.0], 0), _ce_ls([4.0, 4.0], 0), _ce_ls([0.8 / 0.25, 0.0], 0)]
    salient = torch.tensor([True, False, True])
    got = losses.action_temporal_matching(video, reversed_video, text, temp, salient=salient)
    assert got.item() == pytest.approx((per[0] + per[2]) / 2, rel=1e-6)
    unfiltered = losses.action_temporal_matching(video, reversed_video, text, temp)
    assert unfiltered.item() == pytest.approx(sum(per) / 3, rel=1e-6)
    none = losses.action_temporal_matching(video, reversed_video, text, temp, salient=torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0


def test_atm_gradient_is_zero_for_non_salient_samples() -> None:
    video = torch.randn(2, 3, 4, requires_grad=True)
    losses.action_temporal_matching(video, video.flip(0), torch.randn(2, 4), torch.tensor(0.1),
                                    salient=torch.tensor([True, False])).backward()
    assert video.grad is not None and video.grad[1].abs().sum() > 0  # sample 1 is sample 0's reversal here
    fresh = torch.randn(2, 3, 4, requires_grad=True)
    losses.action_temporal_matching(fresh, torch.randn(2, 3, 4), torch.randn(2, 4), torch.tensor(0.1),
                                    salient=torch.tensor([True, False])).backward()
    assert fresh.grad[1].abs().sum() == 0 and fresh.grad[0].abs().sum() > 0


def test_mcqa_loss_and_antonym_padding() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0, 0.0, 0.0]])
    got = losses.multiple_choice(logits, torch.tensor([2]))
    assert got.item() == pytest.approx(_ce_ls([2.0, 0.0, 1.0, 0.0, 0.0], 2), rel=1e-6)
    cands = ["q? a0", "q? a1", "q? a2", "q? a3", "q? a4"]
    assert losses.pad_antonym_choices(["q? x"], cands, answer=1) == ["q? x", "q? a0", "q? a2", "q? a3", "q? a4"]
    assert losses.pad_antonym_choices([], cands, answer=0) == ["q? a1", "q? a2", "q? a3", "q? a4", "q? a1"]
    five = [f"q? n{i}" for i in range(5)]
    assert losses.pad_antonym_choices(five, cands, answer=0) == five
    with pytest.raises(ValueError):
        losses.pad_antonym_choices(five + ["q? n5"], cands, answer=0)


def test_combine_scores_methods() -> None:
    model = torch.tensor([[2.0, 1.0, 0.0, 3.0]])
    backbone = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    probs = model.softmax(-1)
    assert torch.equal(combine_scores(model, None), probs)
    torch.testing.assert_close(combine_scores(model, backbone, "ensemble_with_backbone"), probs + backbone.softmax(-1))
    two_step = combine_scores(model, backbone, "two_step_independent", top_k=2)
    assert torch.equal(two_step, torch.tensor([[0.0, probs[0, 1].item(), probs[0, 2].item(), 0.0]]))
    with pytest.raises(ValueError, match="unknown eval_method"):
        combine_scores(model, backbone, "bogus")
