"""Official Paxion KP / Patch-and-Fuse files (tiny, official key layout) and our own files: exact key accounting."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paxion.backbones.base import CheckpointError
from paxion.systems.paxion.fuser import FuserConfig
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion_fakes import FAKE

SMALL = PatcherConfig(heads=2, dim_head=8, num_latents=3)

# the release's names, written out (spec: "Checkpoints / Keys"), for depth 1
OFFICIAL_KP = [
    "temp", "temporal_embedding", "vision_perceiver.latents",
    *[f"vision_perceiver.layers.0.0.{n}" for n in ("norm_media.weight", "norm_media.bias", "norm_latents.weight",
                                                   "norm_latents.bias", "to_q.weight", "to_kv.weight", "to_out.weight")],
    "vision_perceiver.layers.0.1.0.weight", "vision_perceiver.layers.0.1.0.bias",
    "vision_perceiver.layers.0.1.1.weight", "vision_perceiver.layers.0.1.3.weight",
    "vision_perceiver.norm.weight", "vision_perceiver.norm.bias",
]
OFFICIAL_FUSER = [
    *[f"knowledge_fuser.attn.{n}" for n in ("norm_q.weight", "norm_q.bias", "norm_kv.weight", "norm_kv.bias",
                                            "to_q.weight", "to_kv.weight", "to_out.weight")],
    "knowledge_fuser.ff.0.weight", "knowledge_fuser.ff.0.bias", "knowledge_fuser.ff.1.weight",
    "knowledge_fuser.ff.3.weight",
]
OFFICIAL_BASELINE = [
    "temp",
    *[f"vision_adaptor.transformer_encoder.layers.0.{n}" for n in (
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")],
]


def _model(seed: int, **kw: object) -> PaxionModel:
    torch.manual_seed(seed)
    return PaxionModel(PaxionConfig(backbone=FAKE, patcher=kw.pop("patcher", SMALL), **kw))


def _official_state(model: PaxionModel, keys: list[str]) -> dict[str, torch.Tensor]:
    """The model's own tensors under the release's names (by explicit suffix, not the module's map)."""
    ours = model.state_dict()
    out = {}
    for key in keys:
        if key.startswith("knowledge_fuser."):
            src = "fuser." + key[len("knowledge_fuser."):]
        elif key == "alpha":
            src = "fuser.alpha"
        elif key == "temp":
            src = "temp"
        else:
            src = "patcher." + key
        out[key] = ours[src].clone()
    return out


def _save_official(path: Path, state: dict[str, torch.Tensor], with_backbone: bool = True) -> Path:
    if with_backbone:
        state = {**state, "vl_backbone.visual_proj": torch.zeros(2, 2), "vl_backbone.logit_scale": torch.zeros(())}
    torch.save({"model": state, "optimizer": {}, "config": {"arch": "patch_and_fuse_internvideo"}, "epoch": 0}, path)
    return path


def _same_trainable(a: PaxionModel, b: PaxionModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("backbone."))


def test_official_kp_file_loads_exactly(tmp_path: Path) -> None:
    source = _model(1)
    path = _save_official(tmp_path / "kp.pth", _official_state(source, OFFICIAL_KP))
    target = _model(2)
    assert not _same_trainable(source, target)
    report = target.load_pretrained(str(path))
    assert _same_trainable(source, target)
    assert sorted(report.unexpected) == ["vl_backbone.logit_scale", "vl_backbone.visual_proj"]
    assert report.missing == []


def test_knowledge_perceiver_rename_and_no_backbone(tmp_path: Path) -> None:
    source = _model(1)
    state = {k.replace("vision_perceiver", "knowledge_perceiver"): v for k, v in _official_state(source, OFFICIAL_KP).items()}
    target = _model(2)
    report = target.load_pretrained(str(_save_official(tmp_path / "old.pth", state, with_backbone=False)))
    assert _same_trainable(source, target)
    assert any("knowledge_perceiver" in note for note in report.notes)


def test_missing_unexpected_and_misshaped_keys_name_file_and_key(tmp_path: Path) -> None:
    state = _official_state(_model(1), OFFICIAL_KP)
    missing = {k: v for k, v in state.items() if k != "vision_perceiver.layers.0.0.to_q.weight"}
    with pytest.raises(CheckpointError, match=r"missing.pth.*patcher\.vision_perceiver\.layers\.0\.0\.to_q\.weight"):
        _model(2).load_pretrained(str(_save_official(tmp_path / "missing.pth", missing)))
    with pytest.raises(CheckpointError, match=r"extra.pth.*text_perceiver\.latents"):
        _model(2).load_pretrained(str(_save_official(tmp_path / "extra.pth", {**state, "text_perceiver.latents": torch.zeros(1)})))
    bad = {**state, "vision_perceiver.latents": torch.zeros(5, 8)}
    with pytest.raises(CheckpointError, match=r"shape.pth.*latents.*shape"):
        _model(2).load_pretrained(str(_save_official(tmp_path / "shape.pth", bad)))


def test_patch_and_fuse_file_and_kp_file_into_a_fuser_model(tmp_path: Path) -> None:
    fuser = FuserConfig(name="xattn", heads=2, dim_head=8)
    source = _model(1, fuser=fuser, objectives=["vtc"])
    path = _save_official(tmp_path / "pnf.pth", _official_state(source, OFFICIAL_KP + OFFICIAL_FUSER))
    target = _model(2, fuser=fuser, objectives=["vtc"])
    target.load_pretrained(str(path))
    assert _same_trainable(source, target)
    kp_only = _save_official(tmp_path / "kp.pth", _official_state(source, OFFICIAL_KP))
    fresh = _model(3, fuser=fuser, objectives=["vtc"])
    fuser_before = {k: v.clone() for k, v in fresh.fuser.state_dict().items()}
    report = fresh.load_pretrained(str(kp_only))
    assert all(torch.equal(v, fresh.fuser.state_dict()[k]) for k, v in fuser_before.items())
    assert sorted(report.missing) == sorted("fuser." + k for k in fuser_before)
    partial = _official_state(source, OFFICIAL_KP + OFFICIAL_FUSER[:-1])
    with pytest.raises(CheckpointError, match="fuser.ff.3.weight"):
        _model(2, fuser=fuser, objectives=["vtc"]).load_pretrained(str(_save_official(tmp_path / "p.pth", partial)))


def test_gated_side_tuning_and_baseline_layouts(tmp_path: Path) -> None:
    gated = FuserConfig(name="gated_xattn", heads=2, dim_head=8)
    src = _model(1, fuser=gated, objectives=["vtc"])
    with torch.no_grad():
        src.fuser.attn_gate.fill_(0.3)
    keys = OFFICIAL_KP + OFFICIAL_FUSER + ["knowledge_fuser.attn_gate", "knowledge_fuser.ff_gate"]
    dst = _model(2, fuser=gated, objectives=["vtc"])
    dst.load_pretrained(str(_save_official(tmp_path / "g.pth", _official_state(src, keys))))
    assert _same_trainable(src, dst)
    side = FuserConfig(name="side_tuning")
    src = _model(1, fuser=side, objectives=["vtc"])
    with torch.no_grad():
        src.fuser.alpha.fill_(-0.7)
    dst = _model(2, fuser=side, objectives=["vtc"])
    dst.load_pretrained(str(_save_official(tmp_path / "s.pth", _official_state(src, OFFICIAL_KP + ["alpha"]))))
    assert dst.fuser.alpha.item() == pytest.approx(-0.7)
    base_cfg = dict(patcher=PatcherConfig(name="transformer", heads=2), use_temporal_embedding=False, objectives=["vtc"])
    src, dst = _model(1, **base_cfg), _model(2, **base_cfg)
    report = dst.load_pretrained(str(_save_official(tmp_path / "b.pth", _official_state(src, OFFICIAL_BASELINE))))
    assert report.missing == []
    sa, sb = src.state_dict(), dst.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("patcher.vision_adaptor.") or k == "temp")
    assert torch.equal(dst.patcher.proj.weight, dst.backbone.visual_projection_weight())  # from the backbone


def test_temporal_embedding_ignored_when_the_model_has_none(tmp_path: Path) -> None:
    path = _save_official(tmp_path / "kp.pth", _official_state(_model(1), OFFICIAL_KP))
    report = _model(2, use_temporal_embedding=False).load_pretrained(str(path))
    assert "patcher.temporal_embedding" in report.unexpected


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_own_trainable_state_round_trip(tmp_path: Path, suffix: str) -> None:
    source = _model(1, fuser=FuserConfig(name="xattn", heads=2, dim_head=8), objectives=["vtc"])
    state = {k: v.contiguous() for k, v in source.state_dict().items() if not k.startswith("backbone.")}
    path = tmp_path / f"own{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"model": state}, path)
    target = PaxionModel(PaxionConfig(backbone=FAKE, patcher=SMALL, fuser=FuserConfig(name="xattn", heads=2, dim_head=8),
                                      objectives=["vtc"], pretrained=str(path)))
    assert _same_trainable(source, target)


def test_backbone_plain_state_dict_with_exact_keys(tmp_path: Path) -> None:
    source = _model(1)
    path = tmp_path / "bb.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    target = PaxionModel(PaxionConfig(backbone=FAKE, patcher=SMALL, backbone_ckpt=str(path)))
    assert all(torch.equal(v, target.backbone.state_dict()[k]) for k, v in source.backbone.state_dict().items())
    state = {k: v.contiguous() for k, v in source.backbone.state_dict().items() if k != "cls"}
    save_file(state, str(tmp_path / "short.safetensors"))
    with pytest.raises(CheckpointError, match=r"short.safetensors.*'cls'"):
        PaxionModel(PaxionConfig(backbone=FAKE, patcher=SMALL, backbone_ckpt=str(tmp_path / "short.safetensors")))
