"""ALPRO's width overrides reach the model from a config file and the command line (the CPU demo's recipe uses them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paxion.config import ConfigError, load_config
from paxion.registry import registry
from paxion.systems.alpro import AlproConfig

REPO = Path(__file__).resolve().parents[1]


def _model(tmp_path: Path, yaml_text: str, overrides: list[str]) -> torch.nn.Module:
    path = tmp_path / "alpro_try.yaml"
    path.write_text(f"bases: [{REPO / 'configs/train/msrvtt/alpro_ret.yaml'}]\n{yaml_text}")
    cfg = load_config(path, ["model.size=tiny", "model.num_frames=4", "model.pretrained=null", *overrides])
    return registry.get("task", cfg.task.name)(cfg).build_model()


def test_size_overrides_from_a_config_file_and_the_command_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model(tmp_path, "model:\n  size_overrides: {init_std: 0.1, text_heads: 2}\n",
                   ["model.size_overrides.init_std=0.3"])
    assert model.widths.init_std == 0.3 and model.widths.text_heads == 2
    weight = model.text_encoder.embeddings.word_embeddings.weight
    assert weight.std().item() == pytest.approx(0.3, rel=0.05)  # bert_init used the override
    model = _model(tmp_path, "", ["model.size_overrides.init_std=0.3"])  # the command line alone
    assert model.widths.init_std == 0.3


def test_bad_size_overrides_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="size_overrides"):
        _model(tmp_path, "model:\n  size_overrides: {no_such_width: 1}\n", [])
    with pytest.raises(ValueError, match="size_overrides must be a mapping"):
        AlproConfig(size="tiny", size_overrides=[1, 2])


def test_the_demo_configs_carry_their_recipe() -> None:
    for stage in ("alpro_prompter", "alpro_pretrain", "alpro_ret", "alpro_qa"):
        cfg = load_config(REPO / f"configs/train/synthaction/{stage}.yaml", ["model.prompter_checkpoint=null"])
        widths = AlproConfig(**{k: v for k, v in cfg.model.items() if k in ("size", "size_overrides")}).widths()
        assert (widths.init_std, widths.temp_init) == (0.2, 0.3), stage
