"""Real release files, when present under PAXION_CKPT_ROOT (skipped otherwise; CI has none).

Layout as in configs/backbones/*.yaml and the README:
    $PAXION_CKPT_ROOT/InternVideo/InternVideo-MM-L-14.ckpt
    $PAXION_CKPT_ROOT/ClipViP/pretrain_clipvip_base_32.pt
    $PAXION_CKPT_ROOT/Singularity/singularity_temporal_17m.pth
    $PAXION_CKPT_ROOT/PatchAndFuse/ActionBench/actionbench_{ssv2,ego4d}_patch_and_fuse.pth
    $PAXION_CKPT_ROOT/PatchAndFuse/downstream_tasks/{ssv2_label,ssv2_template,nextqa}_patch_and_fuse.pth
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from paxion.systems.paxion.model import PaxionModel
from paxion.registry import registry

BACKBONE_FILES = {
    "internvideo_mm_l14": "InternVideo/InternVideo-MM-L-14.ckpt",
    "clipvip_b32": "ClipViP/pretrain_clipvip_base_32.pt",
    "singularity_temporal_17m": "Singularity/singularity_temporal_17m.pth",
}
PAXION_FILES = [
    "PatchAndFuse/ActionBench/actionbench_ssv2_patch_and_fuse.pth",
    "PatchAndFuse/ActionBench/actionbench_ego4d_patch_and_fuse.pth",
    "PatchAndFuse/downstream_tasks/ssv2_label_patch_and_fuse.pth",
    "PatchAndFuse/downstream_tasks/ssv2_template_patch_and_fuse.pth",
]


def _file(relative: str) -> Path:
    path = Path(os.environ.get("PAXION_CKPT_ROOT", "")) / relative
    if not path.is_file():
        pytest.skip(f"{relative} not under PAXION_CKPT_ROOT")
    return path


@pytest.mark.weights
@pytest.mark.parametrize("name", sorted(BACKBONE_FILES))
def test_official_backbone_file_loads_and_runs(name: str) -> None:
    backbone = registry.get("backbone", name)()
    report = backbone.load_official_checkpoint(str(_file(BACKBONE_FILES[name])))
    assert report.loaded and all(p.dtype == torch.float32 for p in backbone.parameters())
    backbone.eval()
    pre = backbone.preprocess
    video = torch.randn(1, pre.num_frames, 3, pre.image_size, pre.image_size)
    with torch.inference_mode():
        pooled, tokens = backbone.encode_video(video)
        text, _ = backbone.encode_text(backbone.tokenize(["a person is opening a door"]))
    assert pooled.shape == (1, backbone.embed_dim) and text.shape == (1, backbone.embed_dim)
    assert tokens.shape[:2] == (1, pre.num_frames) and torch.isfinite(pooled).all() and torch.isfinite(text).all()


@pytest.mark.weights
@pytest.mark.parametrize("relative", PAXION_FILES)
def test_official_paxion_file_loads_with_exact_keys(relative: str) -> None:
    path = _file(relative)
    fuser = "xattn" if "downstream" in relative else None
    cfg = PaxionModel.Config(backbone="internvideo_mm_l14", pretrained=str(path))
    cfg.fuser.name = fuser
    if fuser:
        cfg.objectives = ["vtc"]
    with torch.device("meta"):  # the backbone's weights are not needed to check the patcher/fuser keys
        cfg.pretrained = None
        model = PaxionModel(cfg)
    model.to_empty(device="cpu")
    report = model.load_pretrained(str(path))
    assert any(k.startswith("patcher.") for k in report.loaded)
