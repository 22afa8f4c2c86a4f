"""The shipped tiny SynthAction models of the systems load through their probe configs unchanged, and the
Paxion backbone takes its towers' tensors out of a whole model's export (and nothing less)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from paxion.backbones.base import CheckpointError
from paxion.config import load_config
from paxion.registry import registry
from paxion.systems.paxion.weights import load_backbone_weights

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "eval" / "actionbench" / "synthaction"
ASSETS = Path(__file__).resolve().parents[1] / "src" / "paxion" / "assets"
SHIPPED = {  # probe config -> (shipped file, config key naming it)
    "singularity_itc.yaml": ("singularity_synth_1frame.safetensors", "pretrained"),
    "singularity_temporal_itc.yaml": ("singularity_synth.safetensors", "pretrained"),
    "alpro_vtc.yaml": ("alpro_synth.safetensors", "pretrained"),
    "openvclip.yaml": ("openvclip_synth.safetensors", "state_ckpt"),
}


def _build(config: str) -> torch.nn.Module:
    cfg = load_config(CONFIGS / config)
    return registry.get("task", cfg.task.name)(cfg).build_model()


@pytest.mark.parametrize("config", sorted(SHIPPED))
def test_shipped_model_loads_through_its_probe_config(config):
    name, key = SHIPPED[config]
    cfg = load_config(CONFIGS / config)
    assert Path(cfg.model[key]).name == name
    shipped = load_file(str(ASSETS / name))
    state = _build(config).state_dict()
    assert set(shipped) <= set(state)
    for tensor_name in list(shipped)[:: max(1, len(shipped) // 20)]:  # every 20th tensor, bit for bit
        assert torch.equal(state[tensor_name], shipped[tensor_name]), tensor_name


def test_paxion_backbone_takes_the_towers_out_of_a_whole_model(tmp_path):
    shipped = load_file(str(ASSETS / "singularity_synth.safetensors"))
    backbone = registry.get("backbone", "singularity_tiny")()
    report = load_backbone_weights(backbone, ASSETS / "singularity_synth.safetensors")
    assert len(report.loaded) == len(backbone.state_dict()) < len(shipped)
    assert all(torch.equal(v, shipped[k]) for k, v in backbone.state_dict().items())
    first = next(iter(backbone.state_dict()))
    partial = {k: v for k, v in shipped.items() if k != first}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        load_backbone_weights(registry.get("backbone", "singularity_tiny")(), tmp_path / "partial.safetensors")
