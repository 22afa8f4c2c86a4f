"""Singularity systems: objectives on hand-built features, retrieval/QA models through the protocol."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paxion.registry import registry
from paxion.systems.singularity import objectives as obj
from paxion.systems.singularity.base import fit_tokens
from paxion.systems.singularity.config import SingularityQAConfig, SingularityRetrievalConfig
from singularity_fixtures import single_thread  # noqa: F401  (autouse fixture)

SIZE = 32


def retrieval(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = SingularityRetrievalConfig(size="tiny", **overrides)
    return registry.get("model", "singularity_retrieval")(cfg)


def clip(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)


# ----------------------------------------------------------------------------------------- objectives


def test_itc_multi_positive_targets_exact_loss() -> None:
    # 3 captions: 0 and 1 describe video A, 2 describes video B; sim has planted values
    sim = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 2.0]])
    ids = torch.tensor([7, 7, 9])
    lse = torch.logsumexp

    def row_loss(row: torch.Tensor, positives: list[int]) -> float:
        return float(-sum(row[j] - lse(row, 0) for j in positives) / len(positives))

    rows = [row_loss(sim[0], [0, 1]), row_loss(sim[1], [0, 1]), row_loss(sim[2], [2])]
    cols = [row_loss(sim[:, 0], [0, 1]), row_loss(sim[:, 1], [0, 1]), row_loss(sim[:, 2], [2])]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert obj.itc_loss(sim, ids).item() == pytest.approx(expected, abs=1e-6)
    # without ids: the diagonal only
    diag = (F.cross_entropy(sim, torch.arange(3)) + F.cross_entropy(sim.T, torch.arange(3))) / 2
    assert obj.itc_loss(sim, None).item() == pytest.approx(diag.item(), abs=1e-6)


@pytest.mark.parametrize("hard", [True, False])
def test_itm_negatives_are_never_positives(hard: bool) -> None:
    torch.manual_seed(0)
    ids = torch.tensor([0, 0, 1, 1, 2, 3, 3, 3])
    sim = torch.randn(8, 8) * 5
    sim[ids[:, None] == ids[None]] += 50.0  # positives dominate the softmax: only the mask keeps them out
    for _ in range(20):
        video_for_text, text_for_video = obj.sample_itm_negatives(sim, ids, hard)
        assert (ids[video_for_text] != ids).all() and (ids[text_for_video] != ids).all()


def test_itm_hard_negatives_follow_the_similarity_softmax() -> None:
    # text 0's only plausible negative video is 2 (similarity 10 vs -10)
    sim = torch.tensor([[5.0, -10.0, 10.0], [-10.0, 5.0, -10.0], [10.0, -10.0, 5.0]])
    torch.manual_seed(0)
    picks = [int(obj.sample_itm_negatives(sim, None, True)[0][0]) for _ in range(50)]
    assert picks == [2] * 50


def test_itm_batch_without_negatives_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no negative"):
        obj.sample_itm_negatives(torch.zeros(2, 2), torch.tensor([4, 4]), True)


def test_itm_loss_labels() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 3.0]])  # N = 1: pos, neg, neg
    positive = F.cross_entropy(logits[:1], torch.tensor([1]))
    expected = (positive + F.cross_entropy(logits[1:], torch.tensor([0, 0])) * 2) / 3
    assert obj.itm_loss(logits).item() == pytest.approx(expected.item(), abs=1e-6)


def test_frame_ensembles_on_planted_scores() -> None:
    scores = torch.tensor([[1.0, -2.0], [3.0, 0.0], [2.0, 4.0]])  # (clips, pairs)
    assert obj.ensemble(scores, "mean").tolist() == [2.0, pytest.approx(2 / 3)]
    assert obj.ensemble(scores, "max").tolist() == [3.0, 4.0]
    lse = [math.log(math.e + math.e**3 + math.e**2), math.log(math.e**-2 + 1 + math.e**4)]
    assert obj.ensemble(scores, "lse").tolist() == [pytest.approx(lse[0]), pytest.approx(lse[1])]
    with pytest.raises(ValueError, match="concat"):
        obj.ensemble(scores, "concat")


def test_mlm_mask_never_touches_pad_or_cls() -> None:
    ids = torch.tensor([[101, 2417, 2732, 5829, 102, 0, 0]] * 64)
    masked, labels = obj.mlm_mask(ids, 0.5, 30522, torch.Generator().manual_seed(0))
    assert (labels[:, 0] == -100).all() and (labels[:, 5:] == -100).all()
    assert (masked[:, 0] == 101).all() and (masked[:, 5:] == 0).all()
    chosen = labels != -100
    assert torch.equal(labels[chosen], ids[chosen])
    assert 0.35 < chosen[:, 1:5].float().mean() < 0.65 and (masked[chosen] == obj.MASK_ID).float().mean() > 0.6


def test_sequence_nll_sums_next_token_losses() -> None:
    logits = torch.randn(2, 4, 10)
    ids = torch.tensor([[1, 3, 4, 0], [1, 5, 6, 7]])
    logp = logits.log_softmax(-1)
    expected = [-(logp[0, 0, 3] + logp[0, 1, 4]), -(logp[1, 0, 5] + logp[1, 1, 6] + logp[1, 2, 7])]
    assert torch.allclose(obj.sequence_nll(logits, ids), torch.stack(expected), atol=1e-5)


def test_fit_tokens_pads_and_truncates_keeping_sep() -> None:
    """BERT's usual [CLS] X [SEP] layout (ALPRO); Singularity's own rows are cut by its tokenizer."""
    ids = torch.tensor([[101, 5, 6, 7, 8, 102], [101, 5, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    cut, cut_mask = fit_tokens(ids, mask, 4)
    assert cut.tolist() == [[101, 5, 6, 102], [101, 5, 102, 0]] and cut_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    padded, padded_mask = fit_tokens(ids, mask, 8)
    assert padded[:, 6:].eq(0).all() and padded_mask[:, 6:].eq(0).all() and torch.equal(padded[:, :6], ids)


# ----------------------------------------------------------------------------------------- retrieval model


def test_retrieval_forward_trains_all_objectives() -> None:
    model = retrieval(objectives=["itc", "itm", "mlm"])
    batch = {
        "video_input": clip(4, 1),
        "text_input": ["a red star moves left", "a star moving left", "a blue ball", "the green square"],
        "video_idx": torch.tensor([0, 0, 1, 2]),
    }
    out = model(batch)
    assert set(out) == {"loss", "loss_itc", "loss_itm", "loss_mlm"}
    assert out["loss"].item() == pytest.approx(sum(out[k].item() for k in ("loss_itc", "loss_itm", "loss_mlm")))
    out["loss"].backward()
    cross_key = model.text_encoder.encoder.layer[3].crossattention.self.key.weight
    assert model.itm_head.weight.grad.abs().sum() > 0 and cross_key.grad.abs().sum() > 0
    # the MLM decoder is tied to the word embeddings, as the original
    assert model.mlm_head.predictions.decoder.weight is model.text_encoder.embeddings.word_embeddings.weight


def test_itm_head_learns_planted_pairs_beyond_the_class_prior() -> None:
    # 4 grey-level clips, each with its own word: separable only through the fusion layers' view of the video
    # (uniform negatives, ITM alone). A head stuck at the 1:2 prior sits at its entropy, about 0.637.
    model = retrieval(objectives=["itm"], itm_hard_neg=False, max_txt_l=8)
    words = ["red", "green", "blue", "yellow"]
    video = torch.linspace(0, 255, 4).to(torch.uint8).view(4, 1, 1, 1, 1).expand(4, 1, 3, SIZE, SIZE).contiguous()
    prior = -(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(120):
        out = model({"video_input": video, "text_input": words})
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss_itm"].item())
    assert sum(losses[-30:]) / 30 < prior - 0.15
    model.eval()
    vs, ts = model.encode_video_for_retrieval(video), model.encode_text_for_retrieval(words)
    scores = model.score_pairs(
        {k: v.repeat_interleave(4, 0) for k, v in vs.items()}, {k: v.repeat(4, *[1] * (v.ndim - 1)) for k, v in ts.items()}
    ).view(4, 4)  # (video, text)
    mismatched = scores[~torch.eye(4, dtype=torch.bool)]
    assert scores.diagonal().mean() > mismatched.mean() + 0.5  # a prior-only head scores them alike


def test_single_frame_training_multi_frame_testing_by_config() -> None:
    model = retrieval(num_frames=1, num_frames_test=4).eval()
    assert model.preprocess.num_frames == 1 and model.num_frames_test == 4
    state = model.encode_video_for_retrieval(clip(2, 4))
    assert state["embed"].shape == (2, 4, 16) and state["tokens"].shape == (2, 1, 4 * 5, 64)
    assert torch.allclose(state["embed"].norm(dim=-1), torch.ones(2, 4))
    text = model.encode_text_for_retrieval(["a red star", "a blue ball moves right"])
    sim = model.retrieval_similarity(state["embed"], text["embed"])
    assert torch.allclose(sim, (state["embed"] @ text["embed"].T).mean(1), atol=1e-6)


def test_score_pairs_is_the_itm_positive_logit_and_ensembles_frames() -> None:
    concat = retrieval(seed=3).eval()
    video = clip(2, 3, seed=1)
    texts = ["a red star", "a blue ball moves right"]
    vs, ts = concat.encode_video_for_retrieval(video), concat.encode_text_for_retrieval(texts)
    tokens, _ = concat.encode_video(concat.normalize_video(video))
    manual = concat.itm_head(concat.fuse(ts["hidden"], ts["mask"], tokens)[:, 0])[:, 1]
    assert torch.allclose(concat.score_pairs(vs, ts), manual, atol=1e-6)

    for mode in ("mean", "max", "lse"):
        late = retrieval(seed=3, frame_ensemble=mode).eval()
        vs = late.encode_video_for_retrieval(video)
        assert vs["tokens"].shape == (2, 3, 5, 64)
        per_frame = torch.stack(
            [late.itm_head(late.fuse(ts["hidden"], ts["mask"], vs["tokens"][:, f])[:, 0])[:, 1] for f in range(3)]
        )
        assert torch.allclose(late.score_pairs(vs, ts), obj.ensemble(per_frame, mode), atol=1e-6)


def test_late_ensemble_needs_a_single_frame_model() -> None:
    with pytest.raises(ValueError, match="1-frame model"):
        SingularityRetrievalConfig(size="tiny", num_frames=4, frame_ensemble="mean")


def test_temporal_switches() -> None:
    video = clip(2, 4, seed=2)
    plain = retrieval(seed=1, num_frames=4).eval()
    temporal = retrieval(seed=1, num_frames=4, add_temporal_embed=True, temporal_encoder=True).eval()
    assert not any(k.startswith("temporal_vision_encoder") for k in plain.state_dict())
    assert sum(k.startswith("temporal_vision_encoder.") for k in temporal.state_dict()) == 2 * 16
    with torch.no_grad():
        temporal.temporal_embeddings.normal_()
    fwd = temporal.encode_video_for_retrieval(video)["tokens"]
    rev = temporal.encode_video_for_retrieval(video.flip(1))["tokens"]
    assert not torch.allclose(fwd.view(2, 4, 5, -1).flip(1), rev.view(2, 4, 5, -1), atol=1e-4)
    # without temporal parts, frames are encoded independently: reversal only permutes the tokens
    fwd = plain.encode_video_for_retrieval(video)["tokens"].view(2, 4, 5, -1)
    rev = plain.encode_video_for_retrieval(video.flip(1))["tokens"].view(2, 4, 5, -1)
    assert torch.allclose(fwd.flip(1), rev, atol=1e-5)


def test_score_candidates_matches_score_pairs() -> None:
    model = retrieval(seed=4).eval()
    vs = model.encode_video_for_retrieval(clip(2, 2))
    candidates = [["a star", "a ball", "a cat"], ["left", "right", "up"]]
    scores = model.score_candidates(vs, candidates)
    assert scores.shape == (2, 3)
    ts = model.encode_text_for_retrieval(candidates[1])
    one = model.score_pairs({k: v[1:].expand(3, *v.shape[1:]) for k, v in vs.items()}, ts)
    assert torch.allclose(scores[1], one, atol=1e-5)


# ----------------------------------------------------------------------------------------- QA model


def qa(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = registry.get("model", "singularity_qa")(SingularityQAConfig(size="tiny", **overrides))
    with torch.no_grad():  # sharpen the random decoder so answers get clearly different scores
        model.text_decoder.cls.predictions.transform.LayerNorm.weight.mul_(30)
    return model.eval()


def answer_log_likelihood(model, states, states_mask, answer: str) -> torch.Tensor:
    """log p(answer [SEP] | question) token by token, one answer at a time (a brute-force reference)."""
    ids, mask = model.answer_tokens([answer])
    logits = model.decode(ids, mask, states, states_mask)[0].log_softmax(-1)  # (La, V)
    return sum(logits[t - 1, ids[0, t]] for t in range(1, int(mask.sum())))


def test_rank_answers_equals_brute_force_sequence_scores() -> None:
    model = qa(seed=1)
    answers = ["left", "right", "up", "red", "blue green", "down"]
    questions = ["which way does the star move?", "what color is the ball?"]
    state = model.encode_video_for_retrieval(clip(2, 2, seed=3))
    k = 3
    scores = model.rank_answers(state, questions, answers, k)
    assert scores.shape == (2, 6) and torch.allclose(scores.sum(1), torch.ones(2))

    states, states_mask = model.encode_question(state["tokens"][:, 0], questions)
    for b in range(2):
        s, m = states[b:b + 1], states_mask[b:b + 1]
        start = torch.tensor([[101]])
        first = model.decode(start, torch.ones_like(start), s, m)[0, 0].softmax(-1)
        first_ids = model.answer_tokens(answers)[0][:, 1]
        top = first[first_ids].topk(k).indices.tolist()
        assert sorted(scores[b].nonzero().flatten().tolist()) == sorted(top)
        # log p(first) counted once more on top of the full-sequence log-likelihood, as the original
        raw = torch.stack([first[first_ids[a]].log() + answer_log_likelihood(model, s, m, answers[a]) for a in top])
        assert torch.allclose(scores[b, top], raw.softmax(0), atol=1e-5)


def test_rank_answers_late_ensemble_shapes_and_single_clip_identity() -> None:
    answers = ["left", "right", "up", "down"]
    video = clip(2, 3, seed=4)
    for mode in ("mean", "max", "lse"):
        model = qa(seed=2, frame_ensemble=mode)
        state = model.encode_video_for_retrieval(video)
        assert state["tokens"].shape == (2, 3, 5, 64)
        scores = model.rank_answers(state, ["where?", "which way?"], answers, 2)
        assert scores.shape == (2, 4) and ((scores > 0).sum(1) == 2).all()
    # one clip through "mean" equals the concat path except for the original's second softmax of the
    # first-token probabilities, which changes the top-k scores but not the chosen answers here
    concat, mean = qa(seed=2), qa(seed=2, frame_ensemble="mean")
    one = clip(2, 1, seed=5)
    a = concat.rank_answers(concat.encode_video_for_retrieval(one), ["where?", "which way?"], answers, 4)
    b = mean.rank_answers(mean.encode_video_for_retrieval(one), ["where?", "which way?"], answers, 4)
    assert torch.equal(a.argmax(1), b.argmax(1))


def test_qa_training_loss_weights_answers() -> None:
    model = qa(seed=3)  # eval mode: no dropout, so the loss is a deterministic function of the batch
    batch = {"video_input": clip(2, 1), "question_input": ["which way?", "what color?"],
             "answer_input": [["left", "left", "right"], ["red"]]}
    loss = model(batch)["loss"]
    tokens, _ = model.encode_video(model.normalize_video(batch["video_input"]))
    states, mask = model.encode_question(tokens, batch["question_input"])
    nll = {a: -answer_log_likelihood(model, states[i:i + 1], mask[i:i + 1], a)
           for i, answers in enumerate([["left", "right"], ["red"]]) for a in answers}
    expected = (2 / 3 * nll["left"] + 1 / 3 * nll["right"] + nll["red"]) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    weighted = model({**batch, "answer_input": [["left", "right"], ["red"]], "answer_weights": [[0.5, 0.5], [1.0]]})
    expected = ((nll["left"] + nll["right"]) / 2 + nll["red"]) / 2
    assert weighted["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_rank_answers_stays_finite_when_first_token_probabilities_underflow() -> None:
    # the original took log(softmax): a probability that underflows to 0 made every score of the question NaN
    model = qa(seed=4)
    answers = ["left", "right", "up"]
    first_ids = model.answer_tokens(answers)[0][:, 1]
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias[first_ids] -= 200.0  # exp(-200) is 0 in float32
    state = model.encode_video_for_retrieval(clip(1, 1))
    scores = model.rank_answers(state, ["which way?"], answers, 3)
    assert torch.isfinite(scores).all() and scores.sum().item() == pytest.approx(1.0, abs=1e-5)
