"""Every YAML under configs/ validates; every Paxion experiment builds its task and model with a tiny backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paxion.config import load_config
from paxion.registry import registry

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.rglob("*.yaml"))
TINY = ["model.backbone=internvideo_tiny", "model.backbone_ckpt=null", "model.pretrained=null"]


def _is_paxion(path: str) -> bool:
    cfg = load_config(CONFIGS / path)
    return cfg.model is not None and cfg.model.get("arch") == "paxion" and cfg.task is not None and "name" in cfg.task


def test_configs_exist() -> None:
    assert len(ALL) > 40 and "train/actionbench/ssv2/kp_perceiver_vtc_dvdm.yaml" in ALL


@pytest.mark.parametrize("path", ALL)
def test_config_validates_and_opens_with_a_comment(path: str) -> None:
    text = (CONFIGS / path).read_text()
    assert text.startswith("#"), f"{path} must open with a comment saying what it runs"
    cfg = load_config(CONFIGS / path)
    is_layer = path.startswith(("backbones/", "datasets/")) or Path(path).name.startswith("_") or path == "base.yaml"
    if not is_layer:
        assert "python" in text.split("\n\n")[0], f"{path}: the opening comment must give the exact command"
    assert cfg.run is not None


@pytest.mark.parametrize("path", [p for p in ALL if _is_paxion(p)])
def test_paxion_config_builds_with_a_tiny_backbone(path: str) -> None:
    cfg = load_config(CONFIGS / path, TINY)
    task = registry.get("task", cfg.task.name)(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    assert model.backbone.embed_dim == model.patcher.out_dim
    assert (model.fuser is None) == (cfg.model.fuser.name is None)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= {"patcher", "fuser", "temp"} and "temp" in trainable
