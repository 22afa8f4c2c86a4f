"""Singularity against files made by running the original code (jayleicn/singularity, commit in each file).

``tests/golden/singularity/`` comes from ``tools/golden/singularity.py`` (its docstring says how to
rerun it): small random-weight models of the original architecture, their weights in the release
layout, and their outputs. Everything here goes through the public path: the rebuilt release file is
read by the project's converters, and every text starts as a raw string through the project's tokenizer.

Tolerances (fp32, CPU): token ids and masks exactly equal; every float output within ``ATOL`` = 1e-5
absolute (the measured gaps are 1e-8 .. 1e-6); the answer ranking picks the same answers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from paxion.backbones.singularity.model import SINGULARITY_TINY, SingularityBackbone
from paxion.backbones.singularity.tokenizer import CLS_ID, PAD_ID
from paxion.systems.singularity import (
    SingularityQA,
    SingularityQAConfig,
    SingularityRetrieval,
    SingularityRetrievalConfig,
)
from paxion.systems.singularity import objectives as obj

GOLDEN = Path(__file__).parent / "golden" / "singularity"
COMMIT = "10a7f70"
ATOL = 1e-5
VOCAB = 30522
MASK_ID = 103


def load(name: str) -> dict:
    golden = torch.load(GOLDEN / f"{name}.pt", weights_only=True)
    assert golden["meta"]["commit"].startswith(COMMIT)
    return golden


def release_file(golden: dict, path: Path) -> str:
    """The release checkpoint ``{"model", "config"}``, vocabulary tables back at full size (unused rows 0)."""
    state = {}
    for key, value in golden["state"].items():
        if key in golden["vocab_keys"]:
            full = value.new_zeros((VOCAB, *value.shape[1:]))
            full[golden["vocab_rows"]] = value
            value = full
        state[key] = value
    torch.save({"model": state, "config": OmegaConf.create(golden["config"])}, path)
    return str(path)


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    gap = (got.float() - expected.float()).abs().max().item()
    assert gap <= ATOL, f"max |difference| {gap:.3g} > {ATOL}"


@pytest.fixture(scope="module")
def tokens() -> dict:
    return load("tokens")["forms"]


@pytest.fixture(scope="module")
def retrieval(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, SingularityRetrieval, str]:
    golden = load("retrieval")
    path = release_file(golden, tmp_path_factory.mktemp("sing") / "pretrain.pth")
    cfg = SingularityRetrievalConfig(
        size="tiny", size_overrides=golden["project_sizes"], num_frames=4, num_frames_test=4,
        add_temporal_embed=True, temporal_encoder=True, objectives=["itc", "itm", "mlm"],
        max_txt_l=golden["config"]["max_txt_l"], pretrained=path,
    )  # fmt: skip
    return golden, SingularityRetrieval(cfg).eval(), path


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, SingularityQA]:
    golden = load("qa")
    path = release_file(golden, tmp_path_factory.mktemp("sing") / "ckpt_best.pth")
    cfg = SingularityQAConfig(
        size="tiny", size_overrides=golden["project_sizes"], num_frames=1, num_frames_test=2,
        max_q_len=golden["config"]["max_q_len"], max_a_len=golden["config"]["max_a_len"], pretrained=path,
    )  # fmt: skip
    return golden, SingularityQA(cfg).eval()


# ----------------------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("form, max_length", [("caption", 32), ("question", 25)])
def test_single_sequences_are_the_originals(tokens: dict, form: str, max_length: int) -> None:
    """[CLS] X, no [SEP], padded to max_length; an over-long text keeps its first max_length - 1 pieces."""
    golden = tokens[form]
    model = SingularityRetrieval(SingularityRetrievalConfig(size="tiny"))
    ids, mask = model.tokenize(golden["texts"], max_length)
    assert torch.equal(ids, golden["input_ids"].long()) and torch.equal(mask, golden["attention_mask"].long())


@pytest.mark.parametrize("max_a_len", [5, 6])
def test_qa_answers_are_the_originals(tokens: dict, max_a_len: int) -> None:
    """An "answer [SEP]" text -> [CLS] answer [SEP]; the [SEP] is lost when the answer is cut."""
    golden = tokens[f"answer_{max_a_len}"]
    ids, mask = SingularityQA(SingularityQAConfig(size="tiny", max_a_len=max_a_len)).answer_tokens(
        golden["raw_answers"]
    )
    assert torch.equal(ids, golden["input_ids"].long()) and torch.equal(mask, golden["attention_mask"].long())


def test_backbone_tokenize_is_the_original_paxions(tokens: dict) -> None:
    """The original Paxion's Singularity backbone: padding=True (longest), never truncated, no [SEP]."""
    golden = tokens["longest"]
    got = SingularityBackbone(SINGULARITY_TINY).tokenize(golden["texts"])
    assert torch.equal(got["input_ids"], golden["input_ids"].long())
    assert torch.equal(got["attention_mask"], golden["attention_mask"].long())


def test_golden_texts_cover_the_awkward_cases(tokens: dict) -> None:
    """The list holds what it claims: an empty text, an over-long one, a literal [SEP], CJK, accents."""
    caption, longest = tokens["caption"], tokens["longest"]
    texts = caption["texts"]
    assert "" in texts and any("[SEP]" in t for t in texts) and any("日本語" in t for t in texts)
    assert any("é" in t for t in texts) and any("😀" in t for t in texts)
    assert longest["attention_mask"].sum(1).max() > 512  # an over-long text, kept whole by padding=True
    assert caption["attention_mask"].all(1).any()  # one cut at max_length
    assert (caption["input_ids"] == 102).any()  # the literal [SEP] is the special token


# ----------------------------------------------------------------------------------------- retrieval model


def test_retrieval_video_side(retrieval: tuple) -> None:
    golden, model, _ = retrieval
    with torch.no_grad():
        video_tokens, pooled = model.encode_video(model.normalize_video(golden["video"]))
    close(video_tokens, golden["image_embeds"])
    close(pooled, golden["pooled_image"])


def test_retrieval_text_features_and_itc(retrieval: tuple) -> None:
    golden, model, _ = retrieval
    with torch.no_grad():
        text = model.encode_text_for_retrieval(golden["texts"])
        video = model.encode_video_for_retrieval(golden["video"])
        sim = model.retrieval_similarity(video["embed"], text["embed"]) / model.temp
        square = model.encode_text_for_retrieval(golden["texts"][:3])
        loss_itc = obj.itc_loss(
            model.retrieval_similarity(video["embed"], square["embed"]) / model.temp, golden["itc_idx"]
        )
    close(text["hidden"], golden["text_embeds"])
    close(text["embed"], golden["text_feat"])
    close(sim, golden["sim_i2t"])
    close(loss_itc, golden["loss_ita"])


def test_retrieval_itm_logits(retrieval: tuple) -> None:
    golden, model, _ = retrieval
    num_videos, num_texts = golden["itm_logits"].shape[:2]
    v_index = torch.arange(num_videos).repeat_interleave(num_texts)
    t_index = torch.arange(num_texts).repeat(num_videos)
    with torch.no_grad():
        video_tokens, _ = model.encode_video(model.normalize_video(golden["video"]))
        text = model.encode_text_for_retrieval(golden["texts"])
        logits = model.itm_logits(text["hidden"][t_index], text["mask"][t_index], video_tokens[v_index])
    close(logits.view(num_videos, num_texts, 2), golden["itm_logits"])


def test_retrieval_mlm_loss(retrieval: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The masked positions are fixed (the original draws them); the ids come from the project's tokenizer."""
    golden, model, _ = retrieval
    positions = golden["mlm_positions"]

    def fixed_mask(ids: torch.Tensor, prob: float, vocab_size: int, generator=None) -> tuple:
        masked = positions & (ids != PAD_ID) & (ids != CLS_ID)
        return ids.masked_fill(masked, MASK_ID), ids.masked_fill(~masked, obj.IGNORE)

    monkeypatch.setattr(obj, "mlm_mask", fixed_mask)
    with torch.no_grad():
        video_tokens, _ = model.encode_video(model.normalize_video(golden["video"]))
        ids, mask = model.tokenize(golden["texts"][:3], model.cfg.max_txt_l)
        loss = model.mlm(ids, mask, video_tokens)
    close(loss, golden["loss_mlm"])


def test_paxion_backbone_text_path(retrieval: tuple) -> None:
    """The Paxion backbone on the same release file: tokenize + encode_text = the original's encode_text."""
    golden, _, path = retrieval
    config = dataclasses.replace(SINGULARITY_TINY, **golden["project_sizes"], num_frames=4)
    backbone = SingularityBackbone(config).eval()
    backbone.load_official_checkpoint(path)
    with torch.no_grad():
        pooled, hidden = backbone.encode_text(backbone.tokenize(golden["texts"]))
    close(hidden, golden["backbone_hidden"])
    close(pooled, golden["backbone_text_proj"])


# ----------------------------------------------------------------------------------------- QA model


def question_states(golden: dict, model: SingularityQA) -> tuple[torch.Tensor, torch.Tensor]:
    video_tokens, _ = model.encode_video(model.normalize_video(golden["video"]))
    return model.encode_question(video_tokens, golden["questions"])


def test_qa_first_token_logits(qa: tuple) -> None:
    golden, model = qa
    with torch.no_grad():
        states, states_mask = question_states(golden, model)
        start = torch.full((states.shape[0], 1), CLS_ID)
        logits = model.decode(start, torch.ones_like(start), states, states_mask)[:, 0]
    close(logits[:, golden["vocab_rows"]], golden["first_token_logits"])


def test_qa_answer_ranking(qa: tuple) -> None:
    golden, model = qa
    with torch.no_grad():
        state = model.encode_video_for_retrieval(golden["video"])
        probs = model.rank_answers(state, golden["questions"], golden["answer_list"], golden["config"]["k_test"])
    expected = torch.zeros_like(probs).scatter_(1, golden["topk_ids"], golden["topk_probs"])
    close(probs, expected)
    assert torch.equal(probs.argmax(1), expected.argmax(1))


def test_qa_training_loss(qa: tuple) -> None:
    golden, model = qa
    batch = {
        "video_input": golden["video"],
        "question_input": golden["questions"],
        "answer_input": golden["train_answers"],
    }
    with torch.no_grad():
        out = model(batch)
    close(out["loss_vqa"], golden["loss_vqa"])
