"""Config layering and errors: every refusal names the key and the file that set it."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import paxion  # noqa: F401  (fills the registry)
from paxion.config import ConfigError, RunConfig, load_config, parse_cli, save_config, section

from conftest import CONFIGS, TOY_TRAIN


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    """base.yaml <- exp.yaml, both setting paths.data_root and run.seed."""
    _write(tmp_path / "configs" / "base.yaml", "paths:\n  data_root: from_base\nrun:\n  seed: 1\n  max_epoch: 7\n")
    return _write(
        tmp_path / "configs" / "exp" / "exp.yaml",
        "bases: [base.yaml]\npaths:\n  data_root: from_yaml\nrun:\n  seed: 2\n",
    )


def test_layer_precedence_base_yaml_env_cli(layered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAXION_DATA_ROOT", raising=False)
    cfg = load_config(layered)
    assert cfg.paths.data_root == "from_yaml"  # yaml beats base
    assert cfg.run.max_epoch == 7  # base beats the dataclass default
    assert cfg.run.seed == 2
    monkeypatch.setenv("PAXION_DATA_ROOT", "from_env")
    assert load_config(layered).paths.data_root == "from_env"  # env beats yaml
    cfg = load_config(layered, ["paths.data_root=from_cli", "run.seed=3"])
    assert cfg.paths.data_root == "from_cli"  # command line beats env
    assert cfg.run.seed == 3


def test_unknown_key_names_key_file_and_valid_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "run:\n  max_epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "run.max_epochs" in message
    assert "max_epoch" in message.split("valid keys", 1)[1]


def test_unknown_key_in_base_names_the_base_file(layered: Path) -> None:
    base = layered.parents[1] / "base.yaml"
    base.write_text("run:\n  sead: 1\n")
    with pytest.raises(ConfigError, match=f"{base}: unknown key 'run.sead'"):
        load_config(layered)


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "run:\n  max_epoch: three\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "run.max_epoch" in str(info.value)


def test_command_line_unknown_key_names_the_command_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.yaml", "run:\n  seed: 1\n")
    with pytest.raises(ConfigError, match="command line: unknown key 'run.sed'"):
        load_config(path, ["run.sed=3"])
    with pytest.raises(ConfigError, match="overrides must look like a.b=c"):
        load_config(path, ["run.seed"])


def test_post_init_error_names_the_file_that_set_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "run:\n  precision: fp8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "run.precision" in message and "fp8" in message and f"set in {path}" in message
    good = _write(tmp_path / "good.yaml", "run:\n  precision: bf16\n")
    with pytest.raises(ConfigError, match="set in command line"):
        load_config(good, ["run.metric_mode=maximum"])


def test_component_schema_validates_model_section(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.yaml", "model:\n  arch: toy_regressor\n  dropout: 1.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "model.dropout" in str(info.value) and f"set in {path}" in str(info.value)
    path = _write(tmp_path / "m2.yaml", "model:\n  arch: toy_regresor\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "toy_regressor" in str(info.value)  # valid names listed
    path = _write(tmp_path / "m3.yaml", "model:\n  arch: toy_regressor\n  hiden: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'model.hiden'") as info:
        load_config(path)
    assert "hidden" in str(info.value)


def test_missing_base_and_cycles_are_reported(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.yaml", "bases: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match="base config 'nowhere.yaml' not found"):
        load_config(path)
    _write(tmp_path / "b.yaml", "bases: [c.yaml]\n")
    _write(tmp_path / "c.yaml", "bases: [b.yaml]\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "b.yaml")


def test_section_and_saved_config_are_resolved(tmp_path: Path) -> None:
    cfg = load_config(TOY_TRAIN, [f"paths.output_root={tmp_path}"])
    run = section(cfg, "run")
    assert isinstance(run, RunConfig)
    assert run.output_dir == f"{tmp_path}/toy/train"
    saved = save_config(cfg, tmp_path / "out")
    text = saved.read_text()
    assert "${" not in text
    assert OmegaConf.load(saved).run.output_dir == f"{tmp_path}/toy/train"


def test_parse_cli_accepts_options_and_bare_overrides() -> None:
    path, overrides = parse_cli(["--cfg-path", "x.yaml", "--options", "a.b=1", "c.d=2", "--", "e.f=3"], "t")
    assert path == "x.yaml"
    assert overrides == ["a.b=1", "c.d=2", "e.f=3"]
    path, overrides = parse_cli(["--cfg-path", "y.yaml", "run.seed=4"], "t")
    assert (path, overrides) == ("y.yaml", ["run.seed=4"])


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(section(cfg, "run"), RunConfig)


def test_paxion_asset_resolver_points_into_the_package(tmp_path: Path) -> None:
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("task: {name: toy}\nmodel: {arch: toy_regressor}\nrun: {load_ckpt_path: '${paxion_asset:__init__.py}'}\n")
    cfg = load_config(cfg_file)
    assert Path(cfg.run.load_ckpt_path).is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: {name: toy}\nmodel: {arch: toy_regressor}\nrun: {load_ckpt_path: '${paxion_asset:nope.bin}'}\n")
    with pytest.raises(ConfigError, match="nope.bin"):
        load_config(bad)


def test_free_mapping_fields_take_new_keys_from_yaml_and_the_command_line(tmp_path):
    """``dict``-typed fields (``model.size_overrides``) accept any key; misspelt fields are still refused."""
    base = CONFIGS / "train/synthaction/singularity_ret.yaml"
    layer = tmp_path / "wide.yaml"
    layer.write_text(f"bases: [{base}]\nmodel:\n  size_overrides: {{text_width: 48}}\n")
    cfg = load_config(layer, ["model.size_overrides.image_size=64"])
    assert dict(cfg.model.size_overrides) == {"text_width": 48, "image_size": 64}
    assert section(cfg, "model").size_overrides == {"text_width": 48, "image_size": 64}
    with pytest.raises(ConfigError, match="size_overides"):
        load_config(base, ["model.size_overides.image_size=64"])


def test_config_copied_out_of_configs_keeps_its_bases(tmp_path: Path) -> None:
    """Bases resolve relative to the naming file first, then in configs/ (here: the repository's)."""
    original = CONFIGS / "eval" / "actionbench" / "synthaction" / "embedded_backbone.yaml"
    copy = _write(tmp_path / "mine" / "backbone.yaml", original.read_text())
    assert OmegaConf.to_yaml(load_config(copy)) == OmegaConf.to_yaml(load_config(original))
    _write(tmp_path / "mine" / "base.yaml", "run:\n  seed: 123\n")  # next to the file: wins over configs/base.yaml
    mine = _write(tmp_path / "mine" / "toy.yaml", (CONFIGS / "toy" / "train.yaml").read_text())
    assert "bases: [base.yaml]" in mine.read_text() and load_config(mine).run.seed == 123


def test_missing_base_error_says_where_bases_are_looked_for(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.yaml", "bases: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match="relative to the file that names it, then in configs/") as info:
        load_config(path)
    assert str(tmp_path / "nowhere.yaml") in str(info.value) and str(CONFIGS / "nowhere.yaml") in str(info.value)
