"""ALPRO: joint fusion, VTC / VTM / PEM objectives, frozen Prompter, QA head and checkpoint conversion."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from paxion.backbones.base import CheckpointError
from paxion.backbones.timesformer.convert import official_key_names
from paxion.systems.alpro import Alpro, AlproConfig
from paxion.systems.alpro import objectives as obj
from paxion.systems.alpro.config import PromptBankConfig
from paxion.systems.alpro.convert import load_checkpoint

ENTITIES = ["circle", "square", "triangle"]


def _model(seed: int = 0, **kw) -> Alpro:
    torch.manual_seed(seed)
    kw.setdefault("objectives", ["vtc", "vtm"])
    return Alpro(AlproConfig(size="tiny", num_frames=4, **kw))


def _video(b: int = 3, t: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (b, t, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


TEXTS = ["a circle moves left", "a square turns", "the triangle falls down"]


def test_fusion_is_joint_self_attention_over_text_and_video() -> None:
    model = _model().eval()
    ids, mask = model.tokenize(["a circle", "a much longer caption here"], 12)
    with torch.no_grad():
        hidden = model.encode_text(ids, mask)
        video = model.encode_video(model.normalize_video(_video(2)))
        fused = model.fuse(hidden, mask, video)
        assert fused.shape == (2, 12 + 5, 64)  # video tokens come out updated too: not cross-attention
        assert not torch.allclose(fused[:, 12:], video)
        other = model.fuse(hidden, mask, video.flip(0))
        assert not torch.allclose(fused[:, 0], other[:, 0])  # the text [CLS] sees the video
        padded = hidden.clone()
        padded[0, 4:] = 7.0  # row 0 has 4 real tokens: its padding must not matter
        torch.testing.assert_close(model.fuse(padded, mask, video)[0, :4], fused[0, :4])


def test_vtc_loss_targets_this_process_block_and_temperature_is_clamped() -> None:
    v, t = F.normalize(torch.randn(2, 8), dim=-1), F.normalize(torch.randn(2, 8), dim=-1)
    all_v, all_t = torch.cat([torch.randn(2, 8), v]), torch.cat([torch.randn(2, 8), t])  # this rank = 1
    loss, sim_v2t, _ = obj.vtc_loss(v, t, all_v, all_t, torch.tensor(0.1), offset=2)
    expected = (F.cross_entropy(v @ all_t.t() / 0.1, torch.tensor([2, 3]))
                + F.cross_entropy(t @ all_v.t() / 0.1, torch.tensor([2, 3]))) / 2
    torch.testing.assert_close(loss, expected)
    model = _model()
    with torch.no_grad():
        model.temp.fill_(3.0)
    model({"video_input": _video(), "text_input": TEXTS})
    assert model.temp.item() == pytest.approx(0.5)


def test_vtm_hard_negatives_never_pick_self_and_labels() -> None:
    sim = torch.eye(4) * 50 + torch.randn(4, 4) * 0.01  # self would win every draw if allowed
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        video_for_text, text_for_video = obj.hard_negatives(sim, sim.clone(), generator=gen)
        assert (video_for_text != torch.arange(4)).all() and (text_for_video != torch.arange(4)).all()
    hard = torch.zeros(3, 3)
    hard[0, 2] = hard[2, 0] = hard[1, 0] = 30.0  # the hardest non-self candidate dominates
    v, t = obj.hard_negatives(hard, hard.clone(), generator=gen)
    assert v.tolist() == [2, 0, 0] and t.tolist() == [2, 0, 0]
    assert obj.vtm_labels(2, torch.device("cpu")).tolist() == [1, 1, 0, 0, 0, 0]


def test_prompt_bank_and_pseudo_labels_under_both_ignore_rules() -> None:
    feats = torch.arange(2 * 3 * 2, dtype=torch.float).view(6, 2)  # 2 templates x 3 entities, template-major
    bank = obj.prompt_bank(feats, 3)
    torch.testing.assert_close(bank, (feats[:3] + feats[3:]) / 2)
    bank = torch.eye(4)
    crops = torch.stack([
        torch.zeros(4),                      # uniform: top prob 0.25, argmax index 0
        torch.tensor([5.0, 0, 0, 0]),        # confident on entity 0
        torch.tensor([0, 0, 0, 5.0]),        # confident on entity 3
    ])
    labels, paper = obj.pseudo_labels(crops, bank, torch.tensor(1.0), "paper")
    torch.testing.assert_close(labels.sum(1), torch.ones(3))
    assert paper.tolist() == [False, False, False]  # 0.25 >= 0.2
    _, paper_hot = obj.pseudo_labels(crops, torch.eye(4).repeat(2, 1)[:8], torch.tensor(1.0), "paper")
    assert paper_hot.tolist() == [True, False, False]  # 8 entities: uniform top prob 0.125 < 0.2
    _, code = obj.pseudo_labels(crops, bank, torch.tensor(1.0), "code")
    assert code.tolist() == [True, True, False]  # argmax index 0 < 0.2
    logits = torch.randn(3, 4)
    kept = obj.pem_loss(logits, labels, torch.tensor([True, False, False]))
    expected = -(F.log_softmax(logits, 1) * labels).sum(1)[1:].mean()
    torch.testing.assert_close(kept, expected)


def test_boxes_crops_and_pooling() -> None:
    boxes = obj.random_boxes(20, 64, 16, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert ((boxes % 16) == 0).all() and (h > 0).all() and (w > 0).all()
    assert (top + h <= 64).all() and (left + w <= 64).all()
    box = torch.tensor([[16, 0, 16, 32]])
    video = torch.ones(1, 2, 3, 64, 64)
    crop = obj.crop_video(video, box)
    assert crop[0, :, :, 16:32, 0:32].eq(1).all() and crop.sum() == 2 * 3 * 16 * 32
    tokens = torch.arange(16.0).view(1, 16, 1)  # 4x4 grid
    assert obj.pooled_in_box(tokens, box, 16).item() == pytest.approx((4 + 5) / 2)  # row 1, cols 0-1


def test_pretraining_step_with_pem_leaves_the_prompter_untouched() -> None:
    model = _model(objectives=["vtc", "vtm", "mlm", "pem"], prompts=PromptBankConfig(entities=ENTITIES)).train()
    assert not model.prompter.training
    assert model.prompter.video_prompt_feat.shape == (3, 16)
    before = {k: v.clone() for k, v in model.prompter.state_dict().items()}
    out = model({"video_input": _video(), "text_input": TEXTS})
    assert {"loss_vtc", "loss_vtm", "loss_mlm", "loss_pem"} <= set(out)
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in model.prompter.parameters())
    assert model.mpm_head[0].weight.grad is not None and model.visual_encoder.cls_token.grad is not None
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    assert all(torch.equal(v, model.prompter.state_dict()[k]) for k, v in before.items())


def test_qa_head_and_out_of_vocabulary_labels_are_ignored() -> None:
    model = _model(objectives=["qa"], num_answers=5)
    logits = model.answer_logits(_video(), ["what moves?"] * 3)
    assert logits.shape == (3, 5)
    out = model({"video_input": _video(), "question_input": ["q"] * 3, "label": torch.tensor([-100, -100, 2])})
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="num_answers"):
        AlproConfig(size="tiny", objectives=["qa"])


def test_retrieval_scores_are_softmax_of_vtm() -> None:
    model = _model().eval()
    v, t = model.encode_video_for_retrieval(_video()), model.encode_text_for_retrieval(TEXTS)
    scores = model.score_pairs(v, t)
    logits = model.vtm_logits(t["hidden"], t["mask"], v["tokens"])
    torch.testing.assert_close(scores, logits.softmax(1)[:, 1])
    assert v["embed"].shape == (3, 16) and torch.allclose(v["embed"].norm(dim=-1), torch.ones(3))


# ---------------------------------------------------------------------------- checkpoints

def _official_pretrained(path: Path, seed: int = 3, container: bool = False) -> dict[str, torch.Tensor]:
    """A tiny file in the pre-trained release layout (incl. the parts our models do not hold)."""
    model = _model(seed, objectives=["vtc", "vtm", "mlm", "pem"], prompts=PromptBankConfig(entities=ENTITIES))
    sd = model.state_dict()
    official = dict(zip(official_key_names(sd), sd.values()))
    official["visual_encoder.model.head.weight"] = torch.randn(400, 64)
    official["visual_encoder.model.head.bias"] = torch.randn(400)
    official["text_encoder.bert.embeddings.position_ids"] = torch.arange(64)[None]
    official["prompter.video_prompt_feat"] = torch.randn(3, 16)
    official["prompter.image_prompt_feat"] = torch.randn(3, 16)
    for key in [k for k in official if k.startswith("text_encoder.bert.encoder.layer.2.")]:
        official["prompter." + key] = torch.randn_like(official[key])  # the teacher's unused joint layers
    torch.save({"model": official} if container else official, path)
    return official


def test_pretrained_file_loads_into_retrieval_model_every_key_accounted(tmp_path: Path) -> None:
    official = _official_pretrained(tmp_path / "alpro_pretrained_ckpt.pt")
    model = _model(seed=9)
    report = load_checkpoint(model, str(tmp_path / "alpro_pretrained_ckpt.pt"))
    assert report.missing == [] and sorted(report.loaded) == sorted(model.state_dict())
    assert len(report.loaded) + len(report.unexpected) == len(official)  # every file key landed or is a known head
    assert "visual_encoder.model.head.weight" in report.unexpected
    assert all(k.startswith(("prompter.", "text_encoder.cls.", "mpm_head.", "visual_encoder.model.head"))
               or k.endswith("position_ids") for k in report.unexpected)
    torch.testing.assert_close(model.text_encoder.encoder.layer[3].output.dense.weight,
                               official["text_encoder.bert.encoder.layer.3.output.dense.weight"])
    torch.testing.assert_close(model.visual_encoder.blocks[1].temporal_fc.weight,
                               official["visual_encoder.model.blocks.1.temporal_fc.weight"])


def test_container_layout_qa_model_and_embedding_resizing(tmp_path: Path) -> None:
    official = _official_pretrained(tmp_path / "ckpt.pt", container=True)
    model = Alpro(AlproConfig(size="tiny", num_frames=8, objectives=["qa"], num_answers=4,
                              video_overrides={"image_size": 64}, pretrained=str(tmp_path / "ckpt.pt")))
    assert model.visual_encoder.time_embed.shape == (1, 8, 64) and model.visual_encoder.pos_embed.shape == (1, 17, 64)
    torch.testing.assert_close(model.visual_encoder.time_embed[0, 1], official["visual_encoder.model.time_embed"][0, 0])
    torch.testing.assert_close(model.visual_encoder.pos_embed[0, 0], official["visual_encoder.model.pos_embed"][0, 0])
    # a fine-tuned QA file (plain BertModel: no "bert.") loads back with its classifier
    sd = model.state_dict()
    qa_file = {k.replace("visual_encoder.", "visual_encoder.model.", 1): v for k, v in sd.items()}
    torch.save(qa_file, tmp_path / "qa.pt")
    again = Alpro(AlproConfig(size="tiny", num_frames=8, objectives=["qa"], num_answers=4,
                              video_overrides={"image_size": 64}))
    report = load_checkpoint(again, str(tmp_path / "qa.pt"))
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(again.classifier[2].weight, model.classifier[2].weight)


def test_bad_files_name_the_key(tmp_path: Path) -> None:
    official = _official_pretrained(tmp_path / "a.pt")
    official["visual_encoder.model.blocks.0.surprise"] = torch.zeros(1)
    torch.save(official, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="surprise"):
        load_checkpoint(_model(), str(tmp_path / "b.pt"))
    del official["visual_encoder.model.blocks.0.surprise"], official["text_proj.weight"]
    torch.save(official, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="text_proj.weight"):
        load_checkpoint(_model(), str(tmp_path / "c.pt"))
    (tmp_path / "d.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="d.pt"):
        load_checkpoint(_model(), str(tmp_path / "d.pt"))


def test_prompter_file_loads_into_the_teacher(tmp_path: Path) -> None:
    teacher = _model(seed=5, objectives=["vtc"])  # a VTC-only model is the Prompter
    sd = teacher.state_dict()
    torch.save(dict(zip(official_key_names(sd), sd.values())), tmp_path / "prompter.pt")
    student = _model(objectives=["vtc", "pem"], prompts=PromptBankConfig(entities=ENTITIES),
                     prompter_checkpoint=str(tmp_path / "prompter.pt"))
    torch.testing.assert_close(student.prompter.vision_proj.weight, teacher.vision_proj.weight)
    torch.testing.assert_close(student.prompter.temp, teacher.temp)


def test_full_size_model_on_meta() -> None:
    with torch.device("meta"):
        model = Alpro(AlproConfig(objectives=["vtc", "vtm", "mlm"]))
    d = 768
    linear = lambda i, o: i * o + o  # noqa: E731
    bert_layer = 4 * linear(d, d) + 4 * d + linear(d, 3072) + linear(3072, d)
    bert = (30522 + 512 + 2) * d + 2 * d + 12 * bert_layer
    heads = 2 * linear(d, 256) + 1 + linear(d, 2) + (linear(d, d) + 2 * d + 30522)  # projections, temp, itm, mlm
    assert sum(p.numel() for p in model.parameters()) == 121_258_752 + bert + heads
    assert math.isclose(model.widths.temp_init, 0.07)


def test_lavis_protocol_scores_vtm_logit_plus_cosine() -> None:
    model = _model(retrieval_protocol="lavis").eval()
    v, t = model.encode_video_for_retrieval(_video()), model.encode_text_for_retrieval(TEXTS)
    logits = model.vtm_logits(t["hidden"], t["mask"], v["tokens"])
    torch.testing.assert_close(model.score_pairs(v, t), logits[:, 1] + (v["embed"] * t["embed"]).sum(-1))


def test_mlm_never_masks_special_tokens() -> None:
    from paxion.systems.alpro.model import obj_mlm

    model = _model()
    ids, _ = model.tokenize(TEXTS * 20, 16)
    torch.manual_seed(0)
    masked, labels = obj_mlm(ids, 0.9, 30522)
    special = (ids == 101) | (ids == 102) | (ids == 0)
    assert torch.equal(masked[special], ids[special]) and (labels[special] == -100).all()
    assert (labels[~special] != -100).float().mean() > 0.8  # 90 % of the words are targets


def test_knowledge_patcher_backbone_loads_the_pretrained_file(tmp_path: Path) -> None:
    from paxion.backbones.timesformer import ALPRO_TINY, AlproBackbone

    official = _official_pretrained(tmp_path / "alpro_pretrained_ckpt.pt")
    backbone = AlproBackbone(ALPRO_TINY).eval()
    report = backbone.load_official_checkpoint(str(tmp_path / "alpro_pretrained_ckpt.pt"))
    assert report.missing == [] and sorted(report.loaded) == sorted(backbone.state_dict())
    assert "text_encoder.bert.encoder.layer.2.attention.self.query.weight" in report.unexpected  # joint layers
    system = _model(seed=9).eval()
    load_checkpoint(system, str(tmp_path / "alpro_pretrained_ckpt.pt"))
    video = _video(2)
    with torch.no_grad():
        pooled, tokens = backbone.encode_video(system.normalize_video(video))
        expected = system.encode_video_for_retrieval(video)["embed"]
    torch.testing.assert_close(F.normalize(pooled, dim=-1), expected)
    assert tokens.shape == (2, 4, 5, 64) and len(official) > len(report.loaded)


def test_text_and_video_width_change_together_through_the_overrides() -> None:
    widths = AlproConfig(size="tiny", size_overrides={"text_width": 32, "text_heads": 2},
                         video_overrides={"width": 32, "heads": 2}).widths()
    assert (widths.text_width, widths.video.width, widths.video.num_frames) == (32, 32, 8)
    with pytest.raises(ValueError, match="video width 32 == text width 64"):
        AlproConfig(size="tiny", video_overrides={"width": 32, "heads": 2})
