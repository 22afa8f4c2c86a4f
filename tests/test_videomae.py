"""VideoMAE ViT: shapes, positions, attention, drop-path, full-size counts on meta, release-file loading."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

from paxion.backbones.base import CheckpointError
from paxion.backbones.videomae import VIDEOMAE_VIT_TINY, VideoMAEViT, build_videomae, load_videomae_checkpoint
from paxion.backbones.videomae.convert import interpolate_pos_embed
from paxion.backbones.videomae.model import sinusoid_table


def _tiny(seed: int = 0, **kw: object) -> VideoMAEViT:
    torch.manual_seed(seed)
    return build_videomae("videomae_vit_tiny", drop_path_rate=0.0, init_scale=1.0, **kw)


def _clip(seed: int = 1, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_token_count() -> None:
    model = _tiny().eval()
    tokens = model.forward_tokens(_clip())
    cfg = VIDEOMAE_VIT_TINY
    assert tokens.shape == (2, (cfg.num_frames // 2) * (cfg.image_size // cfg.patch_size) ** 2, cfg.embed_dim)
    assert model(_clip()).shape == (2, cfg.num_classes)
    with pytest.raises(ValueError, match="expects clips of 4 frames"):
        model(torch.randn(1, 3, 6, 32, 32))


def test_sinusoid_table_values() -> None:
    table = sinusoid_table(5, 8)[0]
    assert table.shape == (5, 8)
    assert torch.allclose(table[1, 0], torch.tensor(math.sin(1.0)))
    assert torch.allclose(table[1, 1], torch.tensor(math.cos(1.0)))
    assert torch.allclose(table[3, 2], torch.tensor(math.sin(3 / 10000 ** (2 / 8))))
    assert torch.allclose(table[3, 7], torch.tensor(math.cos(3 / 10000 ** (6 / 8))))
    assert "pos_embed" not in _tiny().state_dict()  # fixed, not a parameter (as VideoMAE)


def test_attention_matches_explicit_softmax_and_k_has_no_bias() -> None:
    model = _tiny()
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(2, 7, 32)
    heads, d = attn.num_heads, 32 // attn.num_heads
    w = attn.qkv.weight
    q = (x @ w[:32].T + attn.q_bias).view(2, 7, heads, d).transpose(1, 2)
    k = (x @ w[32:64].T).view(2, 7, heads, d).transpose(1, 2)
    v = (x @ w[64:].T + attn.v_bias).view(2, 7, heads, d).transpose(1, 2)
    ref = ((q * d**-0.5) @ k.transpose(-1, -2)).softmax(-1) @ v
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 7, 32))
    assert torch.allclose(attn(x), ref, atol=1e-5)


def test_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_videomae("videomae_vit_tiny", drop_path_rate=0.9)
    clip = _clip()
    model.eval()
    assert torch.equal(model(clip), model(clip))
    model.train()
    torch.manual_seed(1)
    a = model.forward_tokens(clip)
    torch.manual_seed(2)
    assert not torch.allclose(a, model.forward_tokens(clip))
    assert model.blocks[0].drop_path_prob == 0.0 and model.blocks[-1].drop_path_prob == pytest.approx(0.9)


def _vit_params(dim: int, depth: int, classes: int, patch: int = 16, tubelet: int = 2) -> int:
    block = 3 * dim * dim + 2 * dim + dim * dim + dim + 4 * dim + 8 * dim * dim + 4 * dim + dim
    return 3 * tubelet * patch * patch * dim + dim + depth * block + 2 * dim + dim * classes + classes


@pytest.mark.parametrize("name,dim", [("videomae_vit_s", 384), ("videomae_vit_b", 768)])
def test_full_size_on_meta(name: str, dim: int) -> None:
    with torch.device("meta"):
        model = build_videomae(name, num_classes=174)
        tokens = model.forward_tokens(torch.empty(1, 3, 16, 224, 224))
    assert tokens.shape == (1, 1568, dim)
    assert sum(p.numel() for p in model.parameters()) == _vit_params(dim, 12, 174)


# ---------------------------------------------------------------------------------------- release files


def _finetuned_file(tmp_path: Path, model: VideoMAEViT, container: str = "model", prefix: str = "") -> Path:
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / f"finetuned_{container}.pth"
    torch.save({container: state, "epoch": 29, "args": argparse.Namespace(model="vit_base_patch16_224")}, path)
    return path


@pytest.mark.parametrize("container,prefix", [("model", ""), ("module", "backbone.")])
def test_finetuned_file_loads_exactly(tmp_path: Path, container: str, prefix: str) -> None:
    src = _tiny(seed=0).eval()
    path = _finetuned_file(tmp_path, src, container, prefix)
    dst = _tiny(seed=5).eval()
    report, llm = load_videomae_checkpoint(dst, path)
    assert llm == {} and report.missing == [] and report.unexpected == []
    assert set(report.loaded) == set(src.state_dict())
    clip = _clip()
    assert torch.equal(dst(clip), src(clip))


def test_pretrained_mae_file(tmp_path: Path) -> None:
    src = _tiny(seed=0).eval()
    enc = {f"encoder.{k}": v for k, v in src.state_dict().items() if not k.startswith(("fc_norm", "head"))}
    enc["encoder.norm.weight"], enc["encoder.norm.bias"] = torch.ones(32), torch.zeros(32)
    decoder = {"decoder.blocks.0.attn.qkv.weight": torch.randn(48, 16), "decoder.norm.weight": torch.ones(16),
               "decoder.head.weight": torch.randn(384, 16), "encoder_to_decoder.weight": torch.randn(16, 32),
               "mask_token": torch.zeros(1, 1, 16)}
    path = tmp_path / "pretrain.pth"
    torch.save({"model": {**enc, **decoder}}, path)
    dst = _tiny(seed=5)
    report, _ = load_videomae_checkpoint(dst, path)
    assert sorted(report.unexpected) == sorted(["norm.weight", "norm.bias", *(k for k in decoder)])
    assert sorted(report.missing) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    torch.testing.assert_close(dst.forward_tokens(_clip()), src.forward_tokens(_clip()))


def test_head_dropped_when_classes_differ(tmp_path: Path) -> None:
    path = _finetuned_file(tmp_path, _tiny(num_classes=7))
    dst = _tiny(seed=3)
    head_before = dst.head.weight.clone()
    report, _ = load_videomae_checkpoint(dst, path)
    assert {"head.weight", "head.bias"} <= set(report.unexpected) and "head.weight" in report.missing
    assert torch.equal(dst.head.weight, head_before)


def test_bad_files_name_the_key(tmp_path: Path) -> None:
    state = _tiny().state_dict()
    torch.save({"model": {**state, "blocks.9.mystery": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="blocks.9.mystery"):
        load_videomae_checkpoint(_tiny(), tmp_path / "extra.pth")
    del state["blocks.1.mlp.fc2.weight"]
    torch.save({"model": state}, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.mlp\.fc2\.weight"):
        load_videomae_checkpoint(_tiny(), tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_videomae_checkpoint(_tiny(), tmp_path / "absent.pth")


def test_pos_embed_interpolated_per_temporal_slice(tmp_path: Path) -> None:
    # 2 temporal slices of a 2x2 grid, slice t filled with the constant t: bicubic keeps each slice constant
    table = torch.cat([torch.full((1, 4, 32), 0.0), torch.full((1, 4, 32), 1.0)], dim=1)
    out = interpolate_pos_embed(table, temporal=2, new_side=4)
    assert out.shape == (1, 32, 32)
    assert torch.allclose(out[0, :16], torch.zeros(16, 32)) and torch.allclose(out[0, 16:], torch.ones(16, 32))
    state = {**_tiny().state_dict(), "pos_embed": table}
    torch.save({"model": state}, tmp_path / "learned_pos.pth")
    dst = _tiny()
    report, _ = load_videomae_checkpoint(dst, tmp_path / "learned_pos.pth")
    assert torch.allclose(dst.pos_embed, out) and any("per temporal slice" in n for n in report.notes)
