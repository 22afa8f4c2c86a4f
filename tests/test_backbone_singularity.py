"""Singularity-temporal backbone: layout vs. the official manifest, loader, forward semantics, tokenizer."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import paxion.backbones.singularity
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from transformers import BeitConfig, BertConfig, BertModel
from transformers import BeitModel as HFBeitModel
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from paxion.backbones.base import CLIP_MEAN, CLIP_STD, CheckpointError, VideoTextBackbone, flip_time
from paxion.backbones.singularity import SINGULARITY_TEMPORAL_17M, SINGULARITY_TINY, SingularityBackbone
from paxion.backbones.singularity.beit import relative_position_index
from paxion.backbones.singularity.convert import (
    MLM_HEAD_KEYS,
    OMEGACONF_SAFE_GLOBALS,
    convert_official_state_dict,
    resample_relative_position_table,
)
from paxion.backbones.singularity.tokenizer import VOCAB_PATH, WordPieceTokenizer
from paxion.registry import registry

LAYOUT = json.loads(Path(paxion.backbones.singularity.__file__).with_name("official_layout.json").read_text())
B, T, SIZE = 2, SINGULARITY_TINY.num_frames, SINGULARITY_TINY.image_size
CAPTIONS = [
    "Moving [something] from left to right",
    "Pretending to put something onto something, but failing!",
    "A person UNFOLDS the café napkin — then folds it again.",
    "someone is cutting an apple; 她 slices it",
    "x",
]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0) -> SingularityBackbone:
    torch.manual_seed(seed)
    return SingularityBackbone(SINGULARITY_TINY)


def video_batch(seed: int = 0, frames: int = T) -> torch.Tensor:
    return torch.randn(B, frames, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))  # (B, T, C, H, W)


def redraw_temporal_embeddings_(model: SingularityBackbone) -> SingularityBackbone:
    """Zero-initialised temporal embeddings make the temporal encoder order-blind; give it order."""
    with torch.no_grad():
        model.temporal_embeddings.normal_(generator=torch.Generator().manual_seed(3))
    return model


def expand(entries: list[dict]) -> dict[str, tuple[tuple[int, ...], str]]:
    layout = {}
    for entry in entries:
        lo, hi = entry.get("i", (0, 0))
        for i in range(lo, hi + 1):
            layout[entry["key"].replace("{i}", str(i))] = (tuple(entry["shape"]), entry.get("dtype", "float32"))
    return layout


def unbuilt_text_layer(key: str, fusion_layer: int) -> bool:
    match = re.match(r"^text_encoder\.(?:bert\.)?encoder\.layer\.(\d+)\.", key)
    return match is not None and int(match.group(1)) >= fusion_layer


def numel(shape: tuple[int, ...]) -> int:
    return int(torch.Size(shape).numel())


# ----------------------------------------------------------------------------------------- layout


def full_size_on_meta() -> SingularityBackbone:
    with torch.device("meta"):
        return registry.get("backbone", "singularity_temporal_17m")()


def test_full_size_on_meta_matches_paxion_layout() -> None:
    manifest = LAYOUT["paxion_model"]
    expected = expand(manifest["entries"])
    assert len(expected) == manifest["num_tensors"] == 503
    float_total = sum(numel(s) for s, dtype in expected.values() if dtype == "float32")
    assert float_total == manifest["num_elements_float"] == 216_324_035

    state = full_size_on_meta().state_dict()
    # Not built by design: int64 buffers derived at forward time, and the fusion text layers 9..11.
    derived = {k for k, (_, dtype) in expected.items() if dtype == "int64"}
    unbuilt = {k for k in expected if unbuilt_text_layer(k, SINGULARITY_TEMPORAL_17M.fusion_layer)}
    assert len(derived) == 13 and len(unbuilt) == 3 * 26
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: shape for k, (shape, _) in expected.items() if k not in derived | unbuilt
    }
    assert all(v.dtype == torch.float32 for v in state.values())
    model_total = sum(v.numel() for v in state.values())
    assert model_total + sum(numel(expected[k][0]) for k in unbuilt) == 216_324_035


def test_full_size_checkpoint_layout_converts_onto_model() -> None:
    manifest = LAYOUT["checkpoint_model_entry"]
    layout = expand(manifest["entries"])
    assert len(layout) == manifest["num_tensors"] == 510
    official = {
        k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, (shape, dtype) in layout.items()
    }
    model = full_size_on_meta()
    target = model.state_dict()
    converted = convert_official_state_dict(official, target, fusion_layer=9, text_layers=12)

    assert {k: v.shape for k, v in converted.state_dict.items()} == {k: v.shape for k, v in target.items()}
    assert converted.state_dict["temporal_embeddings"].shape == (1, 8, 1, 768)  # the file holds 4 frames
    expected_ignored = set(MLM_HEAD_KEYS) | {k for k in official if unbuilt_text_layer(k, 9)}
    assert set(converted.ignored) == expected_ignored
    assert len(converted.ignored) == 7 + 78
    assert len(converted.dropped_buffers) == 12 + 1
    assert any("4 -> 8 frames" in note for note in converted.notes)


def test_registry_and_contract_attributes() -> None:
    assert {"singularity_temporal_17m", "singularity_tiny"} <= set(registry.names("backbone"))
    full = full_size_on_meta()
    assert isinstance(full, VideoTextBackbone)
    assert (full.vision_width, full.text_width, full.embed_dim, full.tokens_per_frame) == (768, 768, 256, 197)
    assert (full.preprocess.num_frames, full.preprocess.image_size) == (8, 224)
    assert (full.preprocess.mean, full.preprocess.std) == (CLIP_MEAN, CLIP_STD)
    assert full.frame_order_invariant_frames
    assert len(full.text_encoder.encoder.layer) == 9 and len(full.temporal_vision_encoder.layer) == 2
    assert isinstance(registry.get("backbone", "singularity_tiny")(), SingularityBackbone)


# ----------------------------------------------------------------------------------------- loader


def yaml_built_config() -> OmegaConf:
    """A config made the way Singularity's setup_config makes it: YAML, CLI merge, then setattr."""
    yaml = "model:\n  embed_dim: 256\n  temp: 0.07\ntrain_file: [[a.json, images], [b.json, videos]]\n"
    yaml += "video_input: {num_frames: 4, sample_type: rand}\noptimizer: {lr: 1.0e-4, different_lr: {enable: false}}\n"
    config = OmegaConf.merge(OmegaConf.create(yaml), OmegaConf.from_dotlist(["output_dir=out", "debug=False"]))
    config.scheduler = None
    config.gpu = 0
    return config


def to_official(model: SingularityBackbone, fusion_layer: int, text_layers: int) -> dict[str, torch.Tensor]:
    """The tiny model's weights in the release layout: bert-nested text, fusion layers, MLM head, buffers."""
    gen = torch.Generator().manual_seed(7)
    state = {}
    for key, value in model.state_dict().items():
        state[key.replace("text_encoder.", "text_encoder.bert.", 1) if key.startswith("text_encoder.") else key] = value
    layer0 = {k.split("layer.0.", 1)[1]: v for k, v in state.items() if k.startswith("text_encoder.bert.encoder.layer.0.")}
    for i in range(fusion_layer, text_layers):
        for suffix, value in layer0.items():
            state[f"text_encoder.bert.encoder.layer.{i}.{suffix}"] = torch.randn(value.shape, generator=gen)
            if suffix.startswith("attention."):
                state[f"text_encoder.bert.encoder.layer.{i}.cross{suffix}"] = torch.randn(value.shape, generator=gen)
    width, vocab = model.config.text_width, model.config.vocab_size
    shapes = [(vocab,), (width, width), (width,), (width,), (width,), (vocab, width), (vocab,)]
    state.update({k: torch.randn(s, generator=gen) for k, s in zip(MLM_HEAD_KEYS, shapes)})
    grid = model.config.image_size // model.config.patch_size
    for i in range(model.config.vision_layers):
        prefix = f"vision_encoder.encoder.layer.{i}.attention.attention.relative_position_bias."
        state[prefix + "relative_position_index"] = relative_position_index(grid, grid, torch.device("cpu"))
    state["text_encoder.bert.embeddings.position_ids"] = torch.arange(model.config.max_positions)[None]
    return state


@pytest.fixture
def fake_release(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny file in the official container; its temporal embedding holds F0=2 frames (model: 4)."""
    source = tiny(seed=5)
    state = to_official(source, SINGULARITY_TINY.fusion_layer, SINGULARITY_TINY.text_layers)
    state["temporal_embeddings"] = torch.randn(1, 2, 1, SINGULARITY_TINY.vision_width)
    state["vision_proj.weight"] = state["vision_proj.weight"].half()  # a stored half tensor must come back fp32
    path = tmp_path / "singularity_temporal_17m.pth"
    torch.save({"model": state, "config": yaml_built_config(), "optimizer": {}, "scaler": {}, "epoch": 0}, path)
    return path, state


def test_fake_release_file_loads_with_exact_key_sets(fake_release) -> None:
    path, state = fake_release
    model = tiny(seed=1)
    report = model.load_official_checkpoint(str(path))

    unbuilt = {k for k in state if unbuilt_text_layer(k, SINGULARITY_TINY.fusion_layer)}
    assert report.missing == []
    assert set(report.unexpected) == set(MLM_HEAD_KEYS) | unbuilt and len(unbuilt) == 26
    assert set(report.loaded) == set(model.state_dict())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    loaded = model.state_dict()
    assert torch.equal(loaded["text_encoder.encoder.layer.1.output.dense.weight"], state["text_encoder.bert.encoder.layer.1.output.dense.weight"])
    assert torch.equal(loaded["vision_proj.weight"], state["vision_proj.weight"].float())
    assert torch.equal(loaded["temporal_embeddings"][:, :2], state["temporal_embeddings"])
    assert torch.count_nonzero(loaded["temporal_embeddings"][:, 2:4]) == 0


def test_safe_globals_are_exactly_what_the_config_needs(fake_release) -> None:
    path, _ = fake_release
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    allowed = {f"{g.__module__}.{getattr(g, '__qualname__', None) or g._name}" for g in OMEGACONF_SAFE_GLOBALS}
    assert needed == allowed


def test_release_file_loads_into_a_meta_built_model(fake_release) -> None:
    path, _ = fake_release
    with torch.device("meta"):
        model = SingularityBackbone(SINGULARITY_TINY)
    model.load_official_checkpoint(str(path))
    assert not any(p.is_meta for p in model.parameters())
    pooled, tokens = model.eval().encode_video(video_batch())
    assert pooled.shape == (B, 16) and torch.isfinite(tokens).all()


def _save(path: Path, state: dict) -> str:
    torch.save({"model": state, "config": yaml_built_config(), "optimizer": {}, "epoch": 0}, path)
    return str(path)


def test_bad_files_name_the_file_and_the_first_offending_key(fake_release, tmp_path: Path) -> None:
    path, state = fake_release
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        tiny().load_official_checkpoint(str(truncated))

    without = {k: v for k, v in state.items() if k != "vision_layernorm.bias"}
    with pytest.raises(CheckpointError, match=r"missing\.pth.*missing key 'vision_layernorm\.bias'"):
        tiny().load_official_checkpoint(_save(tmp_path / "missing.pth", without))

    wrong = {**state, "text_proj.weight": torch.zeros(3, 3)}
    with pytest.raises(CheckpointError, match=r"wrong\.pth.*'text_proj\.weight' has shape \(3, 3\)"):
        tiny().load_official_checkpoint(_save(tmp_path / "wrong.pth", wrong))

    extra = {**state, "text_encoder.bert.pooler.dense.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"unexpected key 'text_encoder\.bert\.pooler\.dense\.weight'"):
        tiny().load_official_checkpoint(_save(tmp_path / "extra.pth", extra))

    no_head = {k: v for k, v in state.items() if k not in MLM_HEAD_KEYS}
    with pytest.raises(CheckpointError, match=r"expected key 'text_encoder\.cls\.predictions"):
        tiny().load_official_checkpoint(_save(tmp_path / "nohead.pth", no_head))

    torch.save({"state_dict": state}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: key 'model' not found"):
        tiny().load_official_checkpoint(str(tmp_path / "other.pth"))


def test_relative_position_table_resampling() -> None:
    table = torch.randn(7 * 7 + 3, 4)  # 4x4 grid
    assert torch.equal(resample_relative_position_table(table, 7 * 7 + 3), table)
    bigger = resample_relative_position_table(table, 11 * 11 + 3)
    assert bigger.shape == (11 * 11 + 3, 4)
    assert torch.equal(bigger[-3:], table[-3:])
    grid, big_grid = table[:-3].reshape(7, 7, 4), bigger[:-3].reshape(11, 11, 4)
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1), (3, 3)]:  # corners and the zero offset stay put
        assert torch.allclose(big_grid[y * 5 // 3 if y > 0 else y, x * 5 // 3 if x > 0 else x], grid[y, x], atol=1e-5)


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
    renames = [
        (r"^layers\.(\d+)\.attention\.(q|k|v)_proj", lambda m: f"encoder.layer.{m[1]}.attention.attention."
         + {"q": "query", "k": "key", "v": "value"}[m[2]]),
        (r"^layers\.(\d+)\.attention\.o_proj", r"encoder.layer.\1.attention.output.dense"),
        (r"^layers\.(\d+)\.mlp\.fc1", r"encoder.layer.\1.intermediate.dense"),
        (r"^layers\.(\d+)\.mlp\.fc2", r"encoder.layer.\1.output.dense"),
        (r"^layers\.(\d+)\.relative_position_bias\.", r"encoder.layer.\1.attention.attention.relative_position_bias."),
        (r"^layers\.", "encoder.layer."),
    ]  # fmt: skip
    state = {}
    for key, value in hf.state_dict().items():
        for pattern, repl in renames:
            key, hits = re.subn(pattern, repl, key)
            if hits:
                break
        state[key] = torch.randn_like(value) * 0.2 if "relative_position_bias_table" in key else value
    ours = tiny().vision_encoder.eval()
    ours.load_state_dict(state, strict=True)
    hf.load_state_dict({k: v for k, v in zip(hf.state_dict(), state.values())})
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
    reference = BertTokenizerLegacy(vocab_file=str(VOCAB_PATH), do_lower_case=True)
    ours = WordPieceTokenizer()
    captions = CAPTIONS + ["Turning the camera left while filming something", "[CLS] Naïve résumé\tWITH\u00a0tabs"]
    expected = reference(captions, padding=True, return_tensors="pt")
    got = ours(captions)
    assert torch.equal(got["input_ids"], expected["input_ids"])
    assert torch.equal(got["attention_mask"], expected["attention_mask"])
    assert got["input_ids"].dtype == torch.int64 and got["attention_mask"].dtype == torch.int64
    assert got["input_ids"][0, 0] == 101 and (got["input_ids"] == 102).sum() == len(captions)
    assert got["input_ids"][-1].tolist().count(0) == (got["attention_mask"][-1] == 0).sum()
    assert ours.vocab_size == 30522
