"""CLIP-ViP backbone: official layout, loader, ViP attention, embeddings, tokenizer (CPU, no weights)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from paxion.backbones.base import CheckpointError, VideoTextBackbone, flip_time
from paxion.backbones.clipvip import TINY_CONFIG, CLIPViPBackbone, CLIPViPConfig
from paxion.backbones.clipvip.convert import POSITION_ID_KEYS, model_to_official_key
from paxion.backbones.clipvip.model import vip_attention_mask
from paxion.backbones.clipvip.tokenizer import EOT_ID, SOT_ID, CLIPViPTokenizer, fold_ids
from paxion.registry import registry

M = 1 + TINY_CONFIG.add_cls_num  # video proxies
P = (TINY_CONFIG.image_size // TINY_CONFIG.patch_size) ** 2  # patches per frame

# The official file's layout, transcribed from the spec's backbone manifest ("clipvip_b32").
# Per-layer shapes use w = tower width and m = MLP width.
OFFICIAL_TOP = {
    "logit_scale": (),
    "text_model.embeddings.position_ids": (1, 77),
    "text_model.embeddings.token_embedding.weight": (49408, 512),
    "text_model.embeddings.position_embedding.weight": (77, 512),
    "text_model.final_layer_norm.weight": (512,),
    "text_model.final_layer_norm.bias": (512,),
    "vision_model.embeddings.added_cls": (3, 768),
    "vision_model.embeddings.class_embedding": (768,),
    "vision_model.embeddings.temporal_embedding": (1, 12, 768),
    "vision_model.embeddings.position_ids": (1, 50),
    "vision_model.embeddings.patch_embedding.weight": (768, 3, 32, 32),
    "vision_model.embeddings.position_embedding.weight": (50, 768),
    "vision_model.pre_layrnorm.weight": (768,),
    "vision_model.pre_layrnorm.bias": (768,),
    "vision_model.post_layernorm.weight": (768,),
    "vision_model.post_layernorm.bias": (768,),
    "visual_projection.weight": (512, 768),
    "text_projection.weight": (512, 512),
}
OFFICIAL_LAYER = {
    **{f"self_attn.{p}_proj.weight": ("w", "w") for p in ("q", "k", "v", "out")},
    **{f"self_attn.{p}_proj.bias": ("w",) for p in ("q", "k", "v", "out")},
    **{f"layer_norm{i}.{p}": ("w",) for i in (1, 2) for p in ("weight", "bias")},
    "mlp.fc1.weight": ("m", "w"),
    "mlp.fc1.bias": ("m",),
    "mlp.fc2.weight": ("w", "m"),
    "mlp.fc2.bias": ("w",),
}


def official_layout() -> dict[str, tuple[int, ...]]:
    layout = {"clipmodel." + key: shape for key, shape in OFFICIAL_TOP.items()}
    for tower, sizes in (("text_model", {"w": 512, "m": 2048}), ("vision_model", {"w": 768, "m": 3072})):
        for i in range(12):
            for suffix, symbols in OFFICIAL_LAYER.items():
                layout[f"clipmodel.{tower}.encoder.layers.{i}.{suffix}"] = tuple(sizes[s] for s in symbols)
    return layout


def redraw(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, incl. the zero-initialised temporal embedding, so every path matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
        model.clipmodel.logit_scale.fill_(math.log(50.0))
        # a strong time signal, so that frame order visibly changes the output
        model.clipmodel.vision_model.embeddings.temporal_embedding.mul_(5.0)
    return model


@pytest.fixture(scope="module")
def tiny() -> CLIPViPBackbone:
    return redraw(registry.get("backbone", "clipvip_tiny")()).eval()


def clip(batch: int = 2, frames: int = 4, seed: int = 1) -> torch.Tensor:
    size = TINY_CONFIG.image_size
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registered_and_contract() -> None:
    backbone = registry.get("backbone", "clipvip_tiny")()
    assert isinstance(backbone, VideoTextBackbone)
    assert backbone.frame_order_invariant_frames is False
    widths = (backbone.vision_width, backbone.text_width, backbone.embed_dim, backbone.tokens_per_frame)
    assert widths == (64, 32, 24, P)
    with torch.device("meta"):
        full = registry.get("backbone", "clipvip_b32")()
    assert (full.vision_width, full.text_width, full.embed_dim, full.tokens_per_frame) == (768, 512, 512, 49)
    assert (full.preprocess.num_frames, full.preprocess.image_size) == (8, 224)
    assert torch.allclose(backbone.logit_scale(), torch.tensor(math.exp(4.60)))  # exp of the stored log-scale


def test_full_size_on_meta_matches_official_layout() -> None:
    with torch.device("meta"):
        backbone = CLIPViPBackbone(CLIPViPConfig())
    ours = {model_to_official_key(k): tuple(v.shape) for k, v in backbone.state_dict().items()}
    expected = official_layout()
    assert len(expected) == 402
    # the model rebuilds the two position_ids buffers; every other official key is one of its tensors
    assert set(ours) | set(POSITION_ID_KEYS) == set(expected)
    assert not set(ours) & set(POSITION_ID_KEYS)
    assert {k: s for k, s in expected.items() if k in ours} == ours
    assert sum(p.numel() for p in backbone.parameters()) == 151_288_833



@torch.no_grad()
def test_full_size_forward_on_meta() -> None:
    """Shapes at full size without memory or compute: meta tensors through both towers (no autocast state)."""
    with torch.device("meta"):
        backbone = registry.get("backbone", "clipvip_b32")().eval()
    video = torch.empty(2, 8, 3, 224, 224, device="meta")
    pooled, tokens = backbone.encode_video(video)
    assert pooled.is_meta and pooled.shape == (2, 512) and tokens.shape == (2, 8, 49, 768)
    text = {k: v.to("meta") for k, v in backbone.tokenize(["a cat jumps", "a dog"]).items()}
    text_pooled, text_tokens = backbone.encode_text(text)
    assert text_pooled.shape == (2, 512) and text_tokens.shape[::2] == (2, 512)

def official_file(model: CLIPViPBackbone, path, with_position_ids: bool = True) -> dict[str, torch.Tensor]:
    """Write ``model`` the way the release file is stored: flat, ``clipmodel.``-prefixed, fp16."""
    state = {model_to_official_key(k): v.half() for k, v in model.state_dict().items()}
    if with_position_ids:
        state["clipmodel.vision_model.embeddings.position_ids"] = torch.arange(P + 1)[None]
        state["clipmodel.text_model.embeddings.position_ids"] = torch.arange(TINY_CONFIG.max_positions)[None]
    torch.save(state, path)
    return state


@pytest.mark.parametrize("with_position_ids", [True, False])
def test_official_loader_reads_fp16_flat_file(tiny, tmp_path, with_position_ids: bool) -> None:
    path = tmp_path / "pretrain_clipvip_tiny.pt"
    saved = official_file(tiny, path, with_position_ids)
    fresh = CLIPViPBackbone(TINY_CONFIG)
    report = fresh.load_official_checkpoint(str(path))
    assert report.missing == []
    assert set(report.unexpected) == (set(POSITION_ID_KEYS) if with_position_ids else set())
    assert len(report.loaded) == len(saved) - len(report.unexpected)
    assert any("float16" in note for note in report.notes)
    for key, value in fresh.state_dict().items():
        assert value.dtype == torch.float32, key
        assert torch.equal(value, saved[key].float()), key
    with torch.device("meta"):
        lazy = CLIPViPBackbone(TINY_CONFIG)  # no random init to pay for: the file supplies every tensor
    lazy.load_official_checkpoint(str(path))
    assert not any(p.is_meta for p in lazy.parameters())
    video = clip()
    assert torch.equal(lazy.encode_video(video)[0], fresh.encode_video(video)[0])


def test_official_loader_rejects_bad_files(tiny, tmp_path) -> None:
    good = tmp_path / "good.pt"
    state = official_file(tiny, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        CLIPViPBackbone(TINY_CONFIG).load_official_checkpoint(str(truncated))

    def broken(name: str, edit) -> str:
        bad = dict(state)
        edit(bad)
        path = tmp_path / name
        torch.save(bad, path)
        return str(path)

    cases = {
        "missing": (lambda s: s.pop("clipmodel.visual_projection.weight"), "clipmodel.visual_projection.weight"),
        "extra": (lambda s: s.update({"clipmodel.mlm_head.weight": torch.zeros(2)}), "clipmodel.mlm_head.weight"),
        "shape": (lambda s: s.update({"clipmodel.logit_scale": torch.zeros(1)}), "clipmodel.logit_scale"),
        "prefix": (lambda s: s.update({"module.logit_scale": torch.zeros(())}), "module.logit_scale"),
        "posids": (lambda s: s.update({POSITION_ID_KEYS[0]: torch.zeros(1, P + 1).long()}), POSITION_ID_KEYS[0]),
    }
    for name, (edit, key) in cases.items():
        path = broken(f"{name}.pt", edit)
        with pytest.raises(CheckpointError) as error:
            CLIPViPBackbone(TINY_CONFIG).load_official_checkpoint(path)
        assert f"{name}.pt" in str(error.value) and key in str(error.value), name


def naive_vip_attention(attn, x: torch.Tensor, frames: int) -> torch.Tensor:
    """Reference with explicit loops: proxies see everything, a patch sees the proxies and its own frame."""
    batch, length, width = x.shape
    heads, dim = attn.heads, width // attn.heads
    q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    out = torch.zeros_like(x)
    for i in range(length):
        if i < M:
            keys = list(range(length))
        else:
            frame = (i - M) // P
            keys = list(range(M)) + list(range(M + frame * P, M + (frame + 1) * P))
        for h in range(heads):
            cols = slice(h * dim, (h + 1) * dim)
            scores = torch.einsum("bd,bkd->bk", q[:, i, cols], k[:, keys, cols]) / math.sqrt(dim)
            out[:, i, cols] = torch.einsum("bk,bkd->bd", scores.softmax(-1), v[:, keys, cols])
    return attn.out_proj(out)


@torch.no_grad()
def test_vip_mask_attention_equals_naive_reference(tiny) -> None:
    frames = 3
    vision = tiny.clipmodel.vision_model
    x = torch.randn(2, M + frames * P, TINY_CONFIG.vision_width)
    mask = vision.attention_mask(frames, x.device, x.dtype)
    for layer in vision.encoder.layers:
        assert torch.allclose(layer.self_attn(x, mask), naive_vip_attention(layer.self_attn, x, frames), atol=1e-5)
    # end to end: the whole tower with the reference attention in every layer
    video = clip(frames=frames)
    h = vision.pre_layrnorm(vision.embeddings(video))
    for layer in vision.encoder.layers:
        h = h + naive_vip_attention(layer.self_attn, layer.layer_norm1(h), frames)
        h = h + layer.mlp(layer.layer_norm2(h))
    pooled, hidden = vision(video)
    assert torch.allclose(hidden, h, atol=1e-4)
    assert torch.allclose(pooled, vision.post_layernorm(h[:, 0]), atol=1e-4)


def test_mask_is_cached_per_frames_device_dtype(tiny) -> None:
    vision = tiny.clipmodel.vision_model
    first = vision.attention_mask(4, torch.device("cpu"), torch.float32)
    assert vision.attention_mask(4, torch.device("cpu"), torch.float32) is first
    other = vision.attention_mask(4, torch.device("cpu"), torch.bfloat16)
    assert other.dtype == torch.bfloat16 and other is not first
    assert vision.attention_mask(5, torch.device("cpu"), torch.float32).shape == (M + 5 * P, M + 5 * P)
    # every row keeps at least the proxies, so no query is fully masked
    assert torch.isfinite(first).sum(dim=1).min() == M + P
    assert torch.equal(vip_attention_mask(M, 2, P, torch.device("cpu"), torch.float32)[:M], torch.zeros(M, M + 2 * P))


def linear_resample_reference(table: torch.Tensor, size: int) -> torch.Tensor:
    """(n, D) -> (size, D): half-pixel-centre linear interpolation, the align_corners=False rule."""
    n = table.shape[0]
    rows = []
    for j in range(size):
        src = max((j + 0.5) * n / size - 0.5, 0.0)
        low = min(int(math.floor(src)), n - 1)
        high = min(low + 1, n - 1)
        rows.append(table[low] * (1 - (src - low)) + table[high] * (src - low))
    return torch.stack(rows)


@torch.no_grad()
@pytest.mark.parametrize("frames", [4, 6])
def test_embeddings_temporal_resample_and_proxies(tiny, frames: int) -> None:
    embeddings = tiny.clipmodel.vision_model.embeddings
    table = embeddings.temporal_embedding[0]  # (6, D)
    expected_time = table if frames == TINY_CONFIG.temporal_size else linear_resample_reference(table, frames)
    assert torch.allclose(embeddings.temporal(frames)[0], expected_time, atol=1e-6)
    if frames == TINY_CONFIG.temporal_size:
        assert embeddings.temporal(frames) is embeddings.temporal_embedding

    video = clip(frames=frames)
    out = embeddings(video)  # (B, M + T*P, D)
    assert out.shape == (2, M + frames * P, TINY_CONFIG.vision_width)
    positions = embeddings.position_embedding.weight
    proxies = torch.cat([embeddings.class_embedding[None], embeddings.added_cls]) + positions[0]
    assert torch.allclose(out[:, :M], proxies.expand(2, -1, -1))
    patches = F.conv2d(video.flatten(0, 1), embeddings.patch_embedding.weight, stride=TINY_CONFIG.patch_size)
    patches = patches.flatten(2).transpose(1, 2).reshape(2, frames, P, -1)
    for t in range(frames):
        want = patches[:, t] + expected_time[t] + positions[1:]
        assert torch.allclose(out[:, M + t * P : M + (t + 1) * P], want, atol=1e-5), t


@torch.no_grad()
def test_video_outputs_slice_proxies_and_project_first_proxy(tiny) -> None:
    video = clip(batch=3)
    pooled, tokens = tiny.encode_video(video)
    assert pooled.shape == (3, TINY_CONFIG.embed_dim)
    assert tokens.shape == (3, 4, P, TINY_CONFIG.vision_width)
    vip_pooled, hidden = tiny.clipmodel.vision_model(video)
    assert torch.equal(pooled, tiny.clipmodel.visual_projection(vip_pooled))
    for t in range(4):
        for p in range(P):
            assert torch.equal(tokens[:, t, p], hidden[:, M + t * P + p])


@torch.no_grad()
def test_frame_order_matters_and_flip_through_aggregate(tiny) -> None:
    video = clip()
    pooled, _ = tiny.encode_video(video)
    flipped_pooled, flipped_tokens = tiny.encode_video(video.flip(1))
    # random weights give near-uniform attention, so the effect is small, but far above fp32 noise (~1e-6)
    assert (pooled - flipped_pooled).abs().max() > 1e-3
    via_features = tiny.aggregate(flip_time(tiny.encode_frames(video)))
    assert torch.equal(via_features[0], flipped_pooled) and torch.equal(via_features[1], flipped_tokens)


def test_frozen_backbone_gets_no_grads_and_builds_no_graph() -> None:
    backbone = redraw(CLIPViPBackbone(TINY_CONFIG)).requires_grad_(False)
    head = nn.Linear(TINY_CONFIG.vision_width, 1)
    pooled, tokens = backbone.encode_video(clip())
    assert not pooled.requires_grad and not tokens.requires_grad
    text_pooled, text_tokens = backbone.encode_text(backbone.tokenize(["a cat jumps", "a dog"]))
    assert not text_pooled.requires_grad and not text_tokens.requires_grad
    head(tokens).mean().backward()
    assert head.weight.grad is not None
    assert all(p.grad is None for p in backbone.parameters())


@torch.no_grad()
def test_deterministic_in_eval_and_train_mode(tiny) -> None:
    video, text = clip(), tiny.tokenize(["someone opens a door", "a door closes"])
    first = tiny.encode_video(video) + tiny.encode_text(text)
    tiny.train()  # no dropout anywhere in CLIP-ViP, so the frozen train-mode backbone is deterministic too
    try:
        second = tiny.encode_video(video) + tiny.encode_text(text)
    finally:
        tiny.eval()
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@torch.no_grad()
def test_bf16_autocast_runs(tiny) -> None:
    video, text = clip(), tiny.tokenize(["a person folds a towel"])
    reference = tiny.encode_video(video)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, tokens = tiny.encode_video(video)
        text_pooled, _ = tiny.encode_text(text)
    assert torch.isfinite(pooled).all() and torch.isfinite(tokens).all() and torch.isfinite(text_pooled).all()
    assert F.cosine_similarity(pooled.float(), reference).min() > 0.98


SAMPLE_CAPTIONS = [
    "Pushing something from left to right",
    "a person is opening a door.",
    "Putting [something] onto [something else]",
    "Someone un-folds a towel, then it's folded again!",
    "  Turning   the camera LEFT while filming 2 cups  ",
    "pouring water into a glass (slowly), 30% full",
    "tearing a piece of paper into two pieces",
]


def test_tokenizer_ids_equal_open_clip() -> None:
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer()
    tokenizer = CLIPViPTokenizer()
    for caption in SAMPLE_CAPTIONS:
        ids = tokenizer([caption])["input_ids"][0].tolist()
        assert ids == [SOT_ID, *reference.encode(caption), EOT_ID], caption


def test_tokenizer_pads_with_eot_and_masks() -> None:
    batch = CLIPViPTokenizer()(SAMPLE_CAPTIONS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == mask.dtype == torch.int64 and ids.device.type == "cpu"
    lengths = [len(CLIPViPTokenizer()([c])["input_ids"][0]) for c in SAMPLE_CAPTIONS]
    assert ids.shape == (len(SAMPLE_CAPTIONS), max(lengths))
    for row, length in enumerate(lengths):
        assert mask[row].tolist() == [1] * length + [0] * (ids.shape[1] - length)
        assert ids[row, length - 1] == EOT_ID and (ids[row, length:] == EOT_ID).all()


def test_tokenizer_refuses_long_captions_by_name() -> None:
    long_caption = " ".join(["walking"] * 80)
    with pytest.raises(ValueError, match="walking walking"):
        CLIPViPTokenizer()(["short one", long_caption])
    with pytest.raises(ValueError, match="non-empty list"):
        CLIPViPTokenizer()("a bare string")


def test_fold_ids_keeps_eot_largest() -> None:
    ids = torch.tensor([[SOT_ID, 5, 49000, EOT_ID, EOT_ID]])
    folded = fold_ids(ids, 64)
    assert folded.max() < 64 and folded[0, 0] == 62 and (folded[0, 3:] == 63).all()
    assert folded[0, 1:3].max() < 62 and folded.argmax(-1).item() == 3


@torch.no_grad()
def test_text_shapes_and_padding_does_not_change_features(tiny) -> None:
    captions = ["a man throws a ball", "a ball", "kids run"]
    batch = tiny.tokenize(captions)
    assert batch["input_ids"].max() == TINY_CONFIG.vocab_size - 1
    pooled, tokens = tiny.encode_text(batch)
    assert pooled.shape == (3, TINY_CONFIG.embed_dim)
    assert tokens.shape == (3, batch["input_ids"].shape[1], TINY_CONFIG.text_width)
    for row, caption in enumerate(captions):
        single = tiny.tokenize([caption])
        alone_pooled, alone_tokens = tiny.encode_text(single)
        length = single["input_ids"].shape[1]
        assert torch.allclose(pooled[row], alone_pooled[0], atol=1e-5)
        assert torch.allclose(tokens[row, :length], alone_tokens[0], atol=1e-5)



@torch.no_grad()
def test_text_tower_equals_hf_clip_text_model(tiny) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = TINY_CONFIG
    hf_config = CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.text_width, intermediate_size=cfg.text_mlp,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        hidden_act="quick_gelu", bos_token_id=cfg.vocab_size - 2, pad_token_id=cfg.vocab_size - 1,
        eos_token_id=2,  # HF's legacy switch for argmax(input_ids) pooling, which CLIP-ViP uses
    )  # fmt: skip
    hf = CLIPTextModel(hf_config).eval()
    target = getattr(hf, "text_model", hf)  # transformers 4.x nests the tower, 5.x does not
    missing, unexpected = target.load_state_dict(tiny.clipmodel.text_model.state_dict(), strict=False)
    assert unexpected == [] and set(missing) <= {"embeddings.position_ids"}
    batch = tiny.tokenize(["a man throws a ball", "kids run"])
    reference = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    pooled, hidden = tiny.clipmodel.text_model(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(hidden, reference.last_hidden_state, atol=1e-5)
    assert torch.allclose(pooled, reference.pooler_output, atol=1e-5)


@torch.no_grad()
def test_single_frame_without_extra_proxies_equals_hf_clip_vision() -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPViPConfig(**{**TINY_CONFIG.__dict__, "add_cls_num": 0, "temporal_size": 1})
    ours = redraw(CLIPViPBackbone(cfg)).clipmodel.vision_model.eval()
    ours.embeddings.temporal_embedding.zero_()  # plain CLIP has no time; with T=1 the ViP mask is full attention
    hf_config = CLIPVisionConfig(
        hidden_size=cfg.vision_width, intermediate_size=cfg.vision_mlp, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
        hidden_act="quick_gelu",
    )  # fmt: skip
    hf = CLIPVisionModel(hf_config).eval()
    vip_only = ("embeddings.added_cls", "embeddings.temporal_embedding")
    shared = {k: v for k, v in ours.state_dict().items() if k not in vip_only}
    missing, unexpected = getattr(hf, "vision_model", hf).load_state_dict(shared, strict=False)
    assert unexpected == [] and set(missing) <= {"embeddings.position_ids"}
    video = clip(frames=1)
    reference = hf(pixel_values=video[:, 0])
    pooled, hidden = ours(video)
    assert torch.allclose(hidden, reference.last_hidden_state, atol=1e-5)
    assert torch.allclose(pooled, reference.pooler_output, atol=1e-5)
