"""InternVideo-MM-L-14 backbone: layout vs. the official manifest, loader, forward semantics, tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import paxion.backbones.internvideo
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from open_clip.transformer import QuickGELU as OpenClipQuickGELU
from open_clip.transformer import ResidualAttentionBlock as OpenClipBlock
from open_clip.transformer import TextTransformer as OpenClipTextTransformer

from paxion.backbones.base import CheckpointError, VideoTextBackbone, flip_time
from paxion.backbones.internvideo import TINY_CONFIG, InternVideo, InternVideoConfig
from paxion.backbones.internvideo.convert import model_to_official_key, official_to_model_key
from paxion.backbones.internvideo.model import feature_key
from paxion.backbones.internvideo.tokenizer import ClipTokenizer
from paxion.registry import registry

MANIFEST = Path(paxion.backbones.internvideo.__file__).with_name("official_layout.json")
B, T = 2, TINY_CONFIG.num_frames
SIZE = TINY_CONFIG.image_size
CAPTIONS = [
    "Moving [something] from left to right",
    "Pretending to put something onto something, but failing!",
    "a person opens the fridge &amp; takes out   milk",
    "Putting something   INTO something",
    "x",
]
LONG_CAPTION = " ".join(["someone slowly pushes the red cup from the left edge of the table"] * 12)


def tiny(seed: int = 0, **overrides: object) -> InternVideo:
    torch.manual_seed(seed)
    cfg = InternVideoConfig(**{**TINY_CONFIG.__dict__, **overrides})
    return InternVideo(cfg)


def redraw_zero_init_(model: InternVideo, seed: int = 1) -> InternVideo:
    """The extractor starts as a no-op (spec section 7); give it weights so frame order matters."""
    gen = torch.Generator().manual_seed(seed)
    video = model.visual.transformer
    zero_init = [video.temporal_cls_token, video.balance]
    for dec, dpe in zip(video.dec, video.dpe):
        zero_init += [dec.attn.out_proj.weight, dec.attn.out_proj.bias, dec.mlp.c_proj.weight, dec.mlp.c_proj.bias]
        zero_init.append(dpe.bias)
    with torch.no_grad():
        for param in zero_init:
            param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return model


def video_batch(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))  # (B, T, C, H, W)


def expand_manifest(entries: list[dict]) -> dict[str, tuple[int, ...]]:
    layout = {}
    for entry in entries:
        lo, hi = entry.get("i", (0, 0))
        for i in range(lo, hi + 1):
            layout[entry["key"].replace("{i}", str(i))] = tuple(entry["shape"])
    return layout


# ----------------------------------------------------------------------------------------- layout


def test_full_size_on_meta_matches_official_manifest() -> None:
    manifest = json.loads(MANIFEST.read_text())
    with torch.device("meta"):
        model = registry.get("backbone", "internvideo_mm_l14")()
    state = model.state_dict()
    assert all(v.is_meta for v in state.values())
    # through the key map: model key -> file key -> model key
    official = {model_to_official_key(k): tuple(v.shape) for k, v in state.items()}
    assert all(k.startswith(manifest["checkpoint_prefix"]) for k in official)
    mapped = {official_to_model_key(k): shape for k, shape in official.items()}
    expected = expand_manifest(manifest["entries"])
    assert sorted(set(mapped) ^ set(expected)) == []
    assert {k: s for k, s in mapped.items() if s != expected[k]} == {}
    assert len(state) == manifest["num_tensors"] == 513
    assert sum(v.numel() for v in state.values()) == manifest["num_elements_float"] == 478_127_105
    assert model.tokens_per_frame == 257 and model.vision_width == 1024 and model.embed_dim == 768


def test_registry_gives_backbones_with_contract_attributes() -> None:
    model = registry.get("backbone", "internvideo_tiny")()
    assert isinstance(model, VideoTextBackbone)
    assert (model.vision_width, model.text_width, model.embed_dim, model.tokens_per_frame) == (64, 32, 32, 17)
    assert model.preprocess.num_frames == 4 and model.preprocess.image_size == 32
    assert model.frame_order_invariant_frames
    assert "internvideo_mm_l14" in registry.names("backbone")


# ----------------------------------------------------------------------------------------- loader


def save_official(model: InternVideo, path: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    state = {model_to_official_key(k): v.to(dtype) for k, v in model.state_dict().items()}
    state["caption_decoder.x"] = torch.ones(3)
    torch.save({"epoch": 3, "global_step": 10, "state_dict": state}, path)
    return state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_official_container_loads_with_expected_key_sets(tmp_path: Path, dtype: torch.dtype) -> None:
    source = redraw_zero_init_(tiny(seed=0))
    path = tmp_path / "InternVideo-MM-L-14.ckpt"
    save_official(source, path, dtype)
    target = tiny(seed=1).train()
    report = target.load_official_checkpoint(str(path))
    assert report.unexpected == ["caption_decoder.x"]
    assert report.missing == []
    assert report.loaded == sorted(source.state_dict())
    assert any("cast torch.float16" in n for n in report.notes) == (dtype == torch.float16)
    assert not target.training
    for key, value in target.state_dict().items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, source.state_dict()[key].to(dtype).float(), rtol=0, atol=0)


def test_truncated_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "truncated.ckpt"
    save_official(tiny(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        tiny().load_official_checkpoint(str(path))
    with pytest.raises(CheckpointError, match="not found"):
        tiny().load_official_checkpoint(str(tmp_path / "absent.ckpt"))


def test_wrong_containers_and_keys_are_named(tmp_path: Path) -> None:
    model = tiny()
    flat = tmp_path / "flat.pt"
    torch.save({model_to_official_key(k): v for k, v in model.state_dict().items()}, flat)
    with pytest.raises(CheckpointError, match="flat.pt.*'state_dict'"):
        model.load_official_checkpoint(str(flat))

    state = {model_to_official_key(k): v for k, v in model.state_dict().items()}
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "clip.visual.ln_pre.bias"}, "clip.visual.ln_pre.bias"),
        "shape": ({**state, "clip.visual_proj": torch.zeros(64, 16)}, r"clip.visual_proj.*\(64, 16\)"),
        "extra": ({**state, "clip.visual.transformer.dec.9.ln_1.weight": torch.ones(64)}, "dec.9.ln_1.weight"),
    }
    for name, (bad_state, pattern) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": bad_state}, path)
        with pytest.raises(CheckpointError, match=f"{name}.ckpt.*{pattern}"):
            model.load_official_checkpoint(str(path))


# ----------------------------------------------------------------------------------------- forward


def test_forward_shapes_and_feature_keys() -> None:
    model = tiny().eval()
    feats = model.encode_frames(video_batch())
    assert sorted(feats) == [feature_key(2), feature_key(3)]
    assert all(f.shape == (B, T, 17, 64) for f in feats.values())
    pooled, tokens = model.aggregate(feats)
    assert pooled.shape == (B, 32) and tokens.shape == (B, T, 17, 64)
    assert torch.equal(tokens, feats[feature_key(3)])
    text_pooled, text_tokens = model.encode_text(model.tokenize(CAPTIONS))
    assert text_pooled.shape == (len(CAPTIONS), 32) and text_tokens.shape == (len(CAPTIONS), 16, 32)
    with pytest.raises(ValueError, match=r"\(B, T, 3, 32, 32\)"):
        model.encode_frames(torch.zeros(B, T, 3, 28, 28))
    assert torch.isclose(model.logit_scale(), torch.tensor(1 / 0.07))


def test_frozen_backbone_gets_no_grads_downstream_does() -> None:
    model = redraw_zero_init_(tiny()).train().requires_grad_(False)
    head = torch.nn.Linear(64, 1)
    pooled, tokens = model.encode_video(video_batch())
    text_pooled, _ = model.encode_text(model.tokenize(CAPTIONS[:B]))
    loss = head(tokens).mean() + (pooled * text_pooled).sum()
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_eval_is_deterministic_and_train_mode_has_extractor_dropout() -> None:
    model = redraw_zero_init_(tiny())
    video = video_batch()
    with torch.no_grad():
        model.eval()
        first, second = model.encode_video(video), model.encode_video(video)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
        model.train()
        torch.manual_seed(0)
        a_pooled, a_tokens = model.encode_video(video)
        torch.manual_seed(1)
        b_pooled, b_tokens = model.encode_video(video)
    assert not torch.allclose(a_pooled, b_pooled)  # extractor MLP dropout 0.5 is active
    assert torch.equal(a_tokens, b_tokens) and torch.equal(a_tokens, first[1])  # the frame ViT has no dropout


def test_bf16_autocast_runs_and_stays_close() -> None:
    model = redraw_zero_init_(tiny()).eval()
    video, text = video_batch(), model.tokenize(CAPTIONS)
    with torch.no_grad():
        ref_video, ref_text = model.encode_video(video)[0], model.encode_text(text)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_video, tokens = model.encode_video(video)
            low_text, _ = model.encode_text(text)
    assert torch.isfinite(tokens).all() and torch.isfinite(low_video).all()
    assert F.cosine_similarity(low_video.float(), ref_video).min() > 0.98
    assert F.cosine_similarity(low_text.float(), ref_text).min() > 0.98


def test_one_vit_pass_serves_the_reversed_clip_exactly() -> None:
    model = redraw_zero_init_(tiny()).eval()
    video = video_batch()
    with torch.no_grad():
        feats = model.encode_frames(video)
        feats_reversed = model.encode_frames(video.flip(1))
        for key in feats:
            assert torch.equal(flip_time(feats)[key], feats_reversed[key]), key
        reused_pooled, reused_tokens = model.aggregate(flip_time(feats))
        full_pooled, full_tokens = model.encode_video(video.flip(1))
        forward_pooled, _ = model.aggregate(feats)
    assert torch.equal(reused_pooled, full_pooled) and torch.equal(reused_tokens, full_tokens)
    assert not torch.allclose(forward_pooled, reused_pooled, atol=1e-3)  # DPE makes the vector order-aware


def test_original_init_is_blind_to_frame_order() -> None:
    model = tiny().eval()  # zero-initialised extractor: pooled = ln_post(0.5 * mean frame CLS)
    video = video_batch()
    with torch.no_grad():
        pooled, _ = model.encode_video(video)
        pooled_reversed, _ = model.encode_video(video.flip(1))
    torch.testing.assert_close(pooled, pooled_reversed, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- reference computations


def reference_pool(model: InternVideo, feats: dict[str, torch.Tensor]) -> torch.Tensor:
    """The original's sequence-first (L, N, T, C) extractor, with torch's reference MHA, eval mode."""
    video = model.visual.transformer
    last = rearrange(feats[feature_key(3)], "n t l c -> l n t c")
    length, n, t, c = last.shape
    grid = int((length - 1) ** 0.5)
    cls_token = video.temporal_cls_token.repeat(1, n, 1)  # (1, N, C)
    for j, block_idx in enumerate(TINY_CONFIG.extractor_blocks):
        x = rearrange(feats[feature_key(block_idx)], "n t l c -> l n t c").clone()
        patches = x[1:].permute(1, 3, 2, 0).reshape(n, c, t, grid, grid)
        x[1:] = x[1:] + video.dpe[j](patches).view(n, c, t, length - 1).permute(3, 0, 2, 1)
        kv = x.permute(2, 0, 1, 3).flatten(0, 1)  # (T*L, N, C), time-major
        dec = video.dec[j]
        attn, _ = F.multi_head_attention_forward(
            dec.ln_1(cls_token), dec.ln_3(kv), dec.ln_3(kv), c, TINY_CONFIG.extractor_heads,
            dec.attn.in_proj_weight, dec.attn.in_proj_bias, None, None, False, 0.0,
            dec.attn.out_proj.weight, dec.attn.out_proj.bias, training=False, need_weights=False,
        )
        cls_token = cls_token + attn
        cls_token = cls_token + dec.mlp(dec.ln_2(cls_token))
    weight = torch.sigmoid(video.balance)
    return (1 - weight) * cls_token[0] + weight * last[0].mean(1)


def test_extractor_matches_the_sequence_first_reference() -> None:
    model = redraw_zero_init_(tiny()).eval()
    with torch.no_grad():
        feats = model.encode_frames(video_batch())
        ours = model.visual.transformer.pool(feats)
        reference = reference_pool(model, feats)
        pooled, _ = model.aggregate(feats)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, model.visual_ln_post(reference) @ model.visual_proj, rtol=1e-5, atol=1e-5)


def test_blocks_match_open_clip() -> None:
    model = tiny().eval()
    ours = model.visual.transformer.resblocks[0]
    theirs = OpenClipBlock(64, 4, act_layer=OpenClipQuickGELU, batch_first=True).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 17, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_text_tower_matches_open_clip_quickgelu_text_transformer() -> None:
    model = tiny().eval()
    theirs = OpenClipTextTransformer(
        context_length=16, vocab_size=64, width=32, heads=2, layers=2, output_dim=32, act_layer=OpenClipQuickGELU
    ).eval()
    text_keys = ("token_embedding", "positional_embedding", "transformer.", "ln_final", "text_projection")
    state = {k: v for k, v in model.state_dict().items() if k.startswith(text_keys)}
    theirs.load_state_dict(state)
    text = model.tokenize(CAPTIONS)
    with torch.no_grad():
        pooled, tokens = model.encode_text(text)
        reference = theirs(text["input_ids"])
    torch.testing.assert_close(pooled, reference, rtol=1e-5, atol=1e-5)
    assert tokens[:, 0].abs().sum() > 0


# ----------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_matches_open_clip_reference() -> None:
    texts = CAPTIONS + [LONG_CAPTION]
    ours = tiny(vocab_size=49408, context_length=77).tokenize(texts)
    reference = open_clip.get_tokenizer("ViT-L-14-quickgelu")(texts)
    assert ours["input_ids"].dtype == torch.int64 and ours["attention_mask"].dtype == torch.int64
    assert torch.equal(ours["input_ids"], reference)
    assert ours["input_ids"][-1, 76] == 49407 and ours["attention_mask"][-1].all()  # truncated: EOT forced last
    assert (ours["input_ids"][:, 0] == 49406).all()
    lengths = ours["attention_mask"].sum(1)
    assert torch.equal(ours["input_ids"].gather(1, (lengths - 1)[:, None])[:, 0], torch.full((len(texts),), 49407))


def test_folded_tokenizer_keeps_eot_as_argmax() -> None:
    tokenizer = ClipTokenizer(context_length=16, vocab_size=64)
    out = tokenizer(CAPTIONS + [LONG_CAPTION])
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.max() == 63 and ids.min() == 0
    assert torch.equal(ids.argmax(1), mask.sum(1) - 1)  # EOT is the last real token and the largest id
    assert (ids[mask == 0] == 0).all() and (ids[:, 0] == 62).all()
    assert not torch.equal(ids[0], ids[3])  # different captions stay different after folding
    with pytest.raises(TypeError, match="list of str"):
        tokenizer("a single string")


def test_config_rejects_inconsistent_sizes() -> None:
    with pytest.raises(ValueError, match="extractor_blocks"):
        InternVideoConfig(**{**TINY_CONFIG.__dict__, "extractor_blocks": (2, 4)})
    with pytest.raises(ValueError, match="patch_size"):
        InternVideoConfig(**{**TINY_CONFIG.__dict__, "image_size": 30})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_full_size_bf16_forward_on_gpu() -> None:
    with torch.device("cuda"):
        model = registry.get("backbone", "internvideo_mm_l14")().eval().requires_grad_(False)
        video = torch.randn(2, 8, 3, 224, 224)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        feats = model.encode_frames(video)
        pooled, tokens = model.aggregate(feats)
        reversed_pooled, _ = model.aggregate(flip_time(feats))
    assert pooled.shape == (2, 768) and tokens.shape == (2, 8, 257, 1024)
    assert torch.isfinite(pooled).all() and torch.isfinite(reversed_pooled).all()


def test_sincos_position_init_gives_every_patch_its_own_strong_row():
    import dataclasses

    from paxion.backbones.internvideo.model import TINY_CONFIG, InternVideo, sincos_2d

    rows = sincos_2d(4, 64)
    assert rows.shape == (16, 64)
    dist = torch.cdist(rows, rows)
    assert dist[~torch.eye(16, dtype=torch.bool)].min() > 0.5  # distinct positions
    model = InternVideo(dataclasses.replace(TINY_CONFIG, visual_pos_init="sincos"))
    pos = model.visual.positional_embedding.detach()
    assert torch.equal(pos[1:], rows) and not pos[0].any()
    plain = InternVideo(TINY_CONFIG).visual.positional_embedding.detach()
    assert pos[1:].norm(dim=1).mean() > 4 * plain[1:].norm(dim=1).mean()
    with pytest.raises(ValueError, match="visual_pos_init"):
        dataclasses.replace(TINY_CONFIG, visual_pos_init="learned")
