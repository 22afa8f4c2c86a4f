"""Singularity-temporal backbone: contract, forward semantics, library references, tokenizer."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from transformers import BeitConfig, BertConfig, BertModel
from transformers import BeitModel as HFBeitModel
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from paxion.backbones.base import CLIP_MEAN, CLIP_STD, VideoTextBackbone, flip_time
from paxion.backbones.singularity import SINGULARITY_TEMPORAL_17M, SINGULARITY_TINY, SingularityBackbone
from paxion.backbones.singularity.tokenizer import VOCAB_PATH, WordPieceTokenizer
from paxion.registry import registry
from singularity_fixtures import single_thread, tiny  # noqa: F401  (autouse fixture)

B, T, SIZE = 2, SINGULARITY_TINY.num_frames, SINGULARITY_TINY.image_size
CAPTIONS = [
    "Moving [something] from left to right",
    "Pretending to put something onto something, but failing!",
    "A person UNFOLDS the café napkin — then folds it again.",
    "someone is cutting an apple; 她 slices it",
    "x",
]




def video_batch(seed: int = 0, frames: int = T) -> torch.Tensor:
    return torch.randn(B, frames, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))  # (B, T, C, H, W)


def redraw_temporal_embeddings_(model: SingularityBackbone) -> SingularityBackbone:
    """Zero-initialised temporal embeddings make the temporal encoder order-blind; give it order."""
    with torch.no_grad():
        model.temporal_embeddings.normal_(generator=torch.Generator().manual_seed(3))
    return model


def test_registry_and_contract_attributes() -> None:
    assert {"singularity_temporal_17m", "singularity_tiny"} <= set(registry.names("backbone"))
    with torch.device("meta"):
        full = registry.get("backbone", "singularity_temporal_17m")()
    assert isinstance(full, VideoTextBackbone)
    assert (full.vision_width, full.text_width, full.embed_dim, full.tokens_per_frame) == (768, 768, 256, 197)
    assert (full.preprocess.num_frames, full.preprocess.image_size) == (8, 224)
    assert (full.preprocess.mean, full.preprocess.std) == (CLIP_MEAN, CLIP_STD)
    assert full.frame_order_invariant_frames
    assert len(full.text_encoder.encoder.layer) == 9 and len(full.temporal_vision_encoder.layer) == 2
    assert isinstance(registry.get("backbone", "singularity_tiny")(), SingularityBackbone)


# ----------------------------------------------------------------------------------------- forward


def test_forward_shapes_and_temporal_lengths() -> None:
    model = tiny().eval()
    features = model.encode_frames(video_batch())
    assert features["hidden"].shape == (B, T, 5, 64) and features["pooled"].shape == (B, T, 64)
    pooled, tokens = model.aggregate(features)
    assert pooled.shape == (B, 16) and tokens.shape == (B, T, 5, 64)
    for frames in (3, 6):  # fewer frames: first rows; more: linear resample of the embedding
        pooled, tokens = model.encode_video(video_batch(frames=frames))
        assert pooled.shape == (B, 16) and tokens.shape == (B, frames, 5, 64)
    text = model.tokenize(CAPTIONS)
    pooled_text, text_tokens = model.encode_text(text)
    assert pooled_text.shape == (len(CAPTIONS), 16)
    assert text_tokens.shape == (len(CAPTIONS), text["input_ids"].shape[1], 64)
    assert torch.allclose(model.logit_scale(), torch.tensor(1 / 0.07))


def test_temporal_embedding_interpolates_linearly() -> None:
    model = tiny()
    with torch.no_grad():
        model.temporal_embeddings.copy_(torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 1, 64))
    assert torch.equal(model.temporal_embedding(3)[0, :, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    resampled = model.temporal_embedding(8)[0, :, 0, 0]  # align_corners=False: half-pixel centres
    assert torch.allclose(resampled, torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]))


def test_vision_layernorm_applies_to_tokens_not_to_pooled() -> None:
    model = tiny().eval()
    video = video_batch()
    before = model.encode_frames(video)
    with torch.no_grad():
        model.vision_layernorm.weight.fill_(2.0)
    after = model.encode_frames(video)
    assert torch.equal(after["pooled"], before["pooled"])
    assert torch.allclose(after["hidden"], 2 * before["hidden"], atol=1e-6)


def test_pooled_video_ignores_frame_order_while_tokens_do_not() -> None:
    model = redraw_temporal_embeddings_(tiny()).eval()
    video = video_batch()
    pooled, tokens = model.encode_video(video)
    pooled_rev, tokens_rev = model.encode_video(video.flip(1))
    assert torch.allclose(pooled, pooled_rev, atol=1e-6)
    assert (tokens_rev.flip(1) - tokens).abs().max() > 1e-2


def test_one_pass_reversal_equals_re_encoding() -> None:
    model = redraw_temporal_embeddings_(tiny()).eval()
    video = video_batch()
    with torch.no_grad():
        pooled_r, tokens_r = model.aggregate(flip_time(model.encode_frames(video)))
        pooled_ref, tokens_ref = model.encode_video(video.flip(1))
    assert torch.equal(pooled_r, pooled_ref) and torch.equal(tokens_r, tokens_ref)


def test_frozen_backbone_gets_no_gradients() -> None:
    model = tiny().requires_grad_(False)
    head = nn.Linear(64, 1)
    _, tokens = model.encode_video(video_batch())
    _, text_tokens = model.encode_text(model.tokenize(CAPTIONS[:2]))
    assert not tokens.requires_grad  # nothing recorded for the frozen forward
    (head(tokens).mean() + head(text_tokens).mean()).backward()
    assert all(p.grad is None for p in model.parameters())
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_eval_is_deterministic_and_train_mode_is_stochastic() -> None:
    model = redraw_temporal_embeddings_(tiny())
    video, text = video_batch(), model.tokenize(CAPTIONS)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.encode_video(video)[1], model.encode_video(video)[1])
        assert torch.equal(model.encode_text(text)[0], model.encode_text(text)[0])
        model.train()  # the original leaves the frozen backbone in train mode: drop-path and dropout 0.1
        assert not torch.equal(model.encode_video(video)[1], model.encode_video(video)[1])
        assert not torch.equal(model.encode_text(text)[0], model.encode_text(text)[0])


def test_bf16_autocast_runs_close_to_fp32() -> None:
    model = tiny().eval()
    video, text = video_batch(), model.tokenize(CAPTIONS)
    with torch.no_grad():
        ref_video, ref_text = model.encode_video(video)[1], model.encode_text(text)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_video, low_text = model.encode_video(video)[1], model.encode_text(text)[0]
    assert low_video.dtype in (torch.bfloat16, torch.float32) and torch.isfinite(low_video.float()).all()
    assert torch.allclose(low_video.float(), ref_video, atol=0.1, rtol=0.05)
    assert torch.allclose(low_text.float(), ref_text, atol=0.1, rtol=0.05)


def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        model.encode_frames(torch.zeros(2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="32x32"):
        model.encode_video(torch.zeros(1, T, 3, 48, 48))
    with pytest.raises(ValueError, match="position embeddings"):
        model.encode_text(model.tokenize([" ".join(["word"] * 80)]))


# ----------------------------------------------------------------------------------------- references


HF5_BEIT_NAMES = {  # transformers-5 BEiT names -> the 4.x names of the official checkpoint
    ".attention.q_proj": ".attention.attention.query",
    ".attention.k_proj": ".attention.attention.key",
    ".attention.v_proj": ".attention.attention.value",
    ".attention.o_proj": ".attention.output.dense",
    ".mlp.fc1": ".intermediate.dense",
    ".mlp.fc2": ".output.dense",
    ".relative_position_bias.": ".attention.attention.relative_position_bias.",
}


def hf5_beit_key(key: str) -> str:
    key = re.sub(r"^layers\.", "encoder.layer.", key)
    for new, old in HF5_BEIT_NAMES.items():
        key = key.replace(new, old)
    return key


def test_beit_matches_transformers_beit() -> None:
    cfg = SINGULARITY_TINY
    hf_config = BeitConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
        num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
        intermediate_size=cfg.vision_mlp_width, use_relative_position_bias=True, use_mean_pooling=True,
        layer_scale_init_value=0.1, layer_norm_eps=1e-12, use_absolute_position_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = HFBeitModel(hf_config, add_pooling_layer=True).eval()
    with torch.no_grad():  # the tables start at zero; make the bias path matter
        for name, param in hf.named_parameters():
            if name.endswith("relative_position_bias_table"):
                param.normal_(std=0.5)
    ours = tiny().vision_encoder.eval()
    ours.load_state_dict({hf5_beit_key(k): v for k, v in hf.state_dict().items()}, strict=True)
    images = video_batch()[:, 0]  # (B, 3, H, W)
    with torch.no_grad():
        reference = hf(pixel_values=images)
        hidden, pooled = ours(images)
    assert torch.allclose(hidden, reference.last_hidden_state, atol=2e-5)
    assert torch.allclose(pooled, reference.pooler_output, atol=2e-5)


def test_text_encoder_matches_transformers_bert() -> None:
    cfg = SINGULARITY_TINY
    hf_config = BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.text_width, num_hidden_layers=cfg.fusion_layer,
        num_attention_heads=cfg.text_heads, intermediate_size=cfg.text_mlp_width,
        max_position_embeddings=cfg.max_positions, layer_norm_eps=1e-12,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = BertModel(hf_config, add_pooling_layer=False).eval()
    model = tiny().eval()
    model.text_encoder.load_state_dict(hf.state_dict(), strict=True)
    text = model.tokenize(CAPTIONS)
    with torch.no_grad():
        reference = hf(**text).last_hidden_state
        tokens = model.encode_text(text)[1]
    keep = text["attention_mask"].bool()  # padded rows are don't-care outputs
    assert torch.allclose(tokens[keep], reference[keep], atol=2e-5)


# ----------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_matches_slow_bert_tokenizer() -> None:
    """Both layouts against the library's slow BERT tokenizer: [CLS] X [SEP] (usual), and [CLS] X (Singularity's)."""
    reference = BertTokenizerLegacy(vocab_file=str(VOCAB_PATH), do_lower_case=True)
    captions = CAPTIONS + ["Turning the camera left while filming something", "[CLS] Naïve résumé\tWITH\u00a0tabs"]
    expected = reference(captions, padding=True, return_tensors="pt")
    got = WordPieceTokenizer()(captions)
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])
    assert got["input_ids"].dtype == torch.int64 and got["attention_mask"].dtype == torch.int64
    assert got["input_ids"][0, 0] == 101 and (got["input_ids"] == 102).sum() == len(captions)
    assert got["input_ids"][-1].tolist().count(0) == (got["attention_mask"][-1] == 0).sum()
    assert WordPieceTokenizer().vocab_size == 30522

    # Singularity's layout: the same rows with their closing [SEP] turned into padding
    singularity = SingularityBackbone(SINGULARITY_TINY).tokenize(captions)
    closing = expected["attention_mask"].sum(1) - 1  # (B,) position of each row's [SEP]
    ids = expected["input_ids"].clone()
    ids[torch.arange(len(captions)), closing] = 0
    assert torch.equal(singularity["input_ids"], ids[:, :-1])
    assert (singularity["input_ids"] != 102).all()


# ----------------------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_full_size_bf16_forward_on_gpu() -> None:
    torch.manual_seed(0)
    model = SingularityBackbone(SINGULARITY_TEMPORAL_17M).cuda().eval().requires_grad_(False)
    redraw_temporal_embeddings_(model)
    video = torch.randn(2, 8, 3, 224, 224, device="cuda")
    text = model.tokenize(CAPTIONS)
    with torch.no_grad():
        ref_pooled, ref_tokens = model.encode_video(video)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            features = model.encode_frames(video)
            pooled, tokens = model.aggregate(features)
            pooled_r, tokens_r = model.aggregate(flip_time(features))
            text_pooled, _ = model.encode_text(text)
    assert tokens.shape == (2, 8, 197, 768) and pooled.shape == (2, 256) and text_pooled.shape == (len(CAPTIONS), 256)
    assert torch.isfinite(tokens.float()).all() and torch.isfinite(text_pooled.float()).all()
    assert torch.nn.functional.cosine_similarity(pooled.float(), ref_pooled, dim=-1).min() > 0.99
    assert torch.nn.functional.cosine_similarity(tokens.float().flatten(1), ref_tokens.flatten(1), dim=-1).min() > 0.99
    assert torch.allclose(pooled_r.float(), pooled.float(), atol=1e-2)  # order-blind pooled vector
