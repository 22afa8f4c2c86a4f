"""Singularity official checkpoint: full-size layout vs. the manifest, key map, loader and its errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import paxion.backbones.singularity
import pytest
import torch
from omegaconf import OmegaConf

from paxion.backbones.base import CheckpointError
from paxion.backbones.singularity import SINGULARITY_TEMPORAL_17M, SINGULARITY_TINY, SingularityBackbone
from paxion.backbones.singularity.beit import relative_position_index
from paxion.backbones.singularity.convert import (
    MLM_HEAD_KEYS,
    OMEGACONF_SAFE_GLOBALS,
    convert_official_state_dict,
    resample_relative_position_table,
)
from paxion.registry import registry
from singularity_fixtures import single_thread, tiny  # noqa: F401  (autouse fixture)

LAYOUT = json.loads(Path(paxion.backbones.singularity.__file__).with_name("official_layout.json").read_text())
B, T, SIZE = 2, SINGULARITY_TINY.num_frames, SINGULARITY_TINY.image_size



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
    return torch.Size(shape).numel()


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
        state[re.sub(r"^text_encoder\.", "text_encoder.bert.", key)] = value
    layer0 = {k.split("layer.0.", 1)[1]: v for k, v in state.items() if "bert.encoder.layer.0." in k}
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
    key = "encoder.layer.1.output.dense.weight"
    assert torch.equal(loaded[f"text_encoder.{key}"], state[f"text_encoder.bert.{key}"])
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
    video = torch.randn(B, T, 3, SIZE, SIZE)  # (B, T, C, H, W)
    pooled, tokens = model.eval().encode_video(video)
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
