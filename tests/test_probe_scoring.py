"""ActionBench over the task protocol: planted retrieval scores and pair scores reach the right cells."""

from __future__ import annotations

import torch

from paxion.tasks.probe_scoring import caption_choice_scores, encode_clips, reversal_choice_scores

VOCAB = {"up": 0, "down": 1, "left": 2, "right": 3}


class Planted:
    """Video embed = the first frame's first 4 pixel values; text embed = one-hot of its word; re-ranker planted."""

    def encode_video_for_retrieval(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embed": video[:, 0, 0, 0, :4].float()}  # (B, 4)

    def encode_text_for_retrieval(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"embed": torch.nn.functional.one_hot(torch.tensor([VOCAB[t] for t in texts]), 4).float()}

    def score_pairs(self, video_state: dict, text_state: dict) -> torch.Tensor:
        return -(video_state["embed"] * text_state["embed"]).sum(-1)  # the opposite of the similarity


def clips(first: list[list[int]], last: list[list[int]]) -> torch.Tensor:
    video = torch.zeros(len(first), 3, 1, 1, 4, dtype=torch.uint8)  # (B, T, C, H, W)
    video[:, 0, 0, 0] = torch.tensor(first, dtype=torch.uint8)
    video[:, -1, 0, 0] = torch.tensor(last, dtype=torch.uint8)
    return video


def test_caption_choices_use_each_clips_own_candidates():
    video = clips([[5, 1, 0, 0], [0, 0, 2, 7]], [[0, 0, 0, 0], [0, 0, 0, 0]])
    state = encode_clips(Planted(), video, with_reversed=False)
    scores = caption_choice_scores(Planted(), state, [["up", "down"], ["right", "left"]], use_pair_scorer=False)
    expected = torch.tensor([[5.0, 1.0], [7.0, 2.0]]).softmax(1)
    assert torch.allclose(scores, expected)
    pairs = caption_choice_scores(Planted(), state, [["up", "down"], ["right", "left"]], use_pair_scorer=True)
    assert torch.allclose(pairs, torch.tensor([[-5.0, -1.0], [-7.0, -2.0]]).softmax(1))


def test_reversal_compares_each_clip_with_its_own_reversal():
    video = clips([[9, 0, 0, 0], [0, 1, 0, 0]], [[2, 0, 0, 0], [0, 6, 0, 0]])
    state = encode_clips(Planted(), video, with_reversed=True)
    assert state["embed"].shape == (4, 4)  # clips, then reversed clips (their first frame = the last frame)
    scores = reversal_choice_scores(Planted(), state, ["up", "down"], use_pair_scorer=False)
    assert torch.allclose(scores, torch.tensor([[9.0, 2.0], [1.0, 6.0]]).softmax(1))
    pairs = reversal_choice_scores(Planted(), state, ["up", "down"], use_pair_scorer=True)
    assert torch.allclose(pairs, torch.tensor([[-9.0, -2.0], [-1.0, -6.0]]).softmax(1))


def test_a_model_without_the_capability_is_named():
    class NoPairs(Planted):
        score_pairs = None

    state = encode_clips(NoPairs(), clips([[1, 0, 0, 0]], [[0, 0, 0, 0]]), with_reversed=False)
    try:
        caption_choice_scores(NoPairs(), state, [["up", "down"]], use_pair_scorer=True)
    except TypeError as exc:
        assert "score_pairs" in str(exc) and "actionbench" in str(exc)
    else:
        raise AssertionError("a model without score_pairs was accepted")
