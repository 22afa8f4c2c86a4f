"""Experiment configuration: YAML layers + command-line overrides over the dataclass schemas.

Merge order (later wins):
  1. component defaults: the dataclass ``Config`` of the chosen model (``model.arch``), task
     (``task.name``) and dataset builders (keys of ``datasets:``), plus :class:`RunConfig` and
     :class:`PathsConfig` (:mod:`paxion.config_schema`): the one home of every default;
  2. the files listed under ``bases:`` (recursively, depth first, in order), each looked for relative
     to the file that names it, then in ``configs/`` (the folder holding that file, else the repository's);
  3. the experiment YAML itself;
  4. ``PAXION_*_ROOT`` environment variables for ``paths.*``;
  5. command-line overrides (``--options a.b=c`` or bare ``a.b=c``).

Every layer is merged in OmegaConf struct mode, so an unknown key or a wrong type stops with a
:class:`ConfigError` that names the key, the file it came from and the valid keys at that level.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from paxion.config_schema import (  # noqa: F401  (re-exported: the schema is importable from paxion.config)
    PATH_ENV_VARS,
    PRECISIONS,
    ExperimentConfig,
    PathsConfig,
    RunConfig,
    WandbConfig,
)
from paxion.registry import RegistryError, registry


def _asset_path(name: str) -> str:
    """``${paxion_asset:NAME}``: a file shipped inside the package (``paxion/assets``), from any working directory."""
    from importlib import resources

    path = resources.files("paxion.assets").joinpath(name)
    if not path.is_file():
        raise ValueError(f"no shipped asset '{name}' in paxion/assets")
    return str(path)


OmegaConf.register_resolver("paxion_asset", _asset_path, replace=True)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and where it came from."""


# --------------------------------------------------------------------------- reading YAML layers


# the repository's configs/ folder (next to src/): where bases are looked for after the naming file's folder
CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"


def _configs_root(path: Path) -> Optional[Path]:
    for parent in path.resolve().parents:
        if parent.name == "configs":
            return parent
    return None


def _resolve_base(base: str, including: Path) -> Path:
    """A ``bases:`` entry: relative to the file that names it first, then to ``configs/`` (the one holding
    that file, else the repository's), so that a config copied out of ``configs/`` keeps its bases."""
    candidates = [including.parent / base]
    root = _configs_root(including)
    for folder in ([root, root.parent] if root is not None else []) + [CONFIG_ROOT]:
        if folder / base not in candidates:
            candidates.append(folder / base)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{including}: base config '{base}' not found; a base is looked for relative to the file that names it, "
        f"then in configs/: {[str(c) for c in candidates]}"
    )


def read_layers(path: Path, _seen: tuple[Path, ...] = ()) -> list[tuple[str, DictConfig]]:
    """The YAML file and its ``bases:`` as ``(source, layer)`` pairs, lowest precedence first."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: circular 'bases:' chain {[str(p) for p in _seen]}")
    try:
        layer = OmegaConf.load(path)
    except Exception as exc:  # yaml syntax errors carry the line number
        raise ConfigError(f"{path}: cannot parse YAML: {exc}") from exc
    if not isinstance(layer, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping")
    layers: list[tuple[str, DictConfig]] = []
    bases = layer.pop("bases", None) or []
    if isinstance(bases, str):
        bases = [bases]
    for base in bases:
        layers += read_layers(_resolve_base(str(base), path), _seen + (path.resolve(),))
    layers.append((str(path), layer))
    return layers


# --------------------------------------------------------------------------- schema and merging


def _selector(layers: list[tuple[str, DictConfig]], dotted: str) -> tuple[Optional[str], str]:
    """Last value of ``dotted`` across the layers and the source that set it."""
    value, source = None, "defaults"
    for src, layer in layers:
        found = OmegaConf.select(layer, dotted, default=None, throw_on_missing=False, throw_on_resolution_failure=False)
        if found is not None:
            value, source = str(found), src
    return value, source


def _component_schema(kind: str, name: str, source: str, key: str) -> DictConfig:
    try:
        component = registry.get(kind, name)
    except RegistryError as exc:
        raise ConfigError(f"{source}: {key}: {exc}") from None
    config_cls = getattr(component, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        raise ConfigError(f"{kind} '{name}' has no Config dataclass to validate '{key}' against")
    return OmegaConf.structured(config_cls)


def build_schema(layers: list[tuple[str, DictConfig]]) -> DictConfig:
    schema = OmegaConf.structured(ExperimentConfig)
    OmegaConf.set_struct(schema, False)
    arch, src = _selector(layers, "model.arch")
    if arch is not None:
        schema.model = _component_schema("model", arch, src, "model.arch")
    name, src = _selector(layers, "task.name")
    if name is not None:
        schema.task = _component_schema("task", name, src, "task.name")
    datasets: dict[str, Any] = {}
    for src, layer in layers:
        for ds_name in (layer.get("datasets") or {}).keys():
            if ds_name not in datasets:
                datasets[ds_name] = _component_schema("dataset", str(ds_name), src, f"datasets.{ds_name}")
    schema.datasets = datasets
    techniques: dict[str, Any] = {}
    for src, layer in layers:
        for name in (layer.get("techniques") or {}).keys():
            if name not in techniques:
                techniques[name] = _component_schema("technique", str(name), src, f"techniques.{name}")
    schema.techniques = techniques
    OmegaConf.set_struct(schema, True)
    _open_free_mappings(schema)
    return schema


def _open_free_mappings(node: DictConfig) -> None:
    """Fields typed ``dict[...]`` (e.g. ``model.size_overrides``) take any key; every other key stays checked."""
    config_cls = OmegaConf.get_type(node)
    hints = typing.get_type_hints(config_cls) if dataclasses.is_dataclass(config_cls) else {}
    for key in node.keys():
        child = node._get_node(key)
        if not isinstance(child, DictConfig) or child._is_none() or child._is_missing():
            continue
        if typing.get_origin(hints.get(str(key))) is dict:
            OmegaConf.set_struct(child, False)
        else:
            _open_free_mappings(child)


def _valid_keys(schema: DictConfig, parent: str) -> list[str]:
    node = OmegaConf.select(schema, parent) if parent else schema
    return sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []


def _merge_layer(cfg: DictConfig, layer: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as exc:
        full_key = str(getattr(exc, "full_key", "") or "")
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        kind = type(exc).__name__
        reason = "unknown key" if "Key" in kind else "invalid value for"
        detail = str(getattr(exc, "msg", exc)).splitlines()[0]  # later lines repeat the key and types
        msg = f"{source}: {reason} '{full_key}': {detail}"
        if reason == "unknown key":
            where = f"'{parent}'" if parent else "the top level"
            msg += f"\n  valid keys under {where}: {_valid_keys(cfg, parent)}"
        raise ConfigError(msg) from None


def _env_layer() -> Optional[DictConfig]:
    paths = {key: os.environ[var] for key, var in PATH_ENV_VARS.items() if os.environ.get(var)}
    return OmegaConf.create({"paths": paths}) if paths else None


def _blame(layers: list[tuple[str, DictConfig]], section: str, node: DictConfig, message: str) -> str:
    """Which layer set the key that a section's ``__post_init__`` complained about (cheap guess).

    The offending key is taken to be a key of the section named in the message, longest name first
    (``run.precision: ...`` or ``dropout must be ...``).
    """
    for key in sorted((str(k) for k in node.keys()), key=len, reverse=True):
        if re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)|{re.escape(section)}\.{re.escape(key)}\b", message):
            value, source = _selector(layers, f"{section}.{key}")
            if value is not None:
                return f" ('{section}.{key}' set in {source})"
            return f" ('{section}.{key}' left at its default)"
    return ""


def _check_sections(cfg: DictConfig, layers: list[tuple[str, DictConfig]]) -> None:
    """Instantiate every dataclass section so that ``__post_init__`` checks run and interpolations resolve."""
    sections = ["paths", "run", "model", "task"] + [f"datasets.{k}" for k in (cfg.datasets or {}).keys()]
    sections += [f"techniques.{k}" for k in (cfg.techniques or {}).keys()]
    for section in sections:
        node = OmegaConf.select(cfg, section)
        if node is None:
            continue
        try:
            OmegaConf.to_object(node)
        except (ValueError, TypeError, OmegaConfBaseException) as exc:
            where = _blame(layers, section, node, str(exc)) if isinstance(node, DictConfig) else ""
            raise ConfigError(f"config section '{section}'{where}: {exc}") from None


def load_config(cfg_path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Read, layer and validate an experiment config. Returns a struct-mode DictConfig."""
    layers = read_layers(Path(cfg_path))
    env = _env_layer()
    if env is not None:
        layers.append(("environment (PAXION_*_ROOT)", env))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"command line: overrides must look like a.b=c, got {bad}")
        layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    cfg = build_schema(layers)
    for source, layer in layers:
        cfg = _merge_layer(cfg, layer, source)
    _expand_user_paths(cfg)
    _check_sections(cfg, layers)
    return cfg


def _expand_user_paths(cfg: DictConfig) -> None:
    """``~/...`` roots become absolute, so every path interpolated from them works with open()."""
    for key in PATH_ENV_VARS:
        value = OmegaConf.select(cfg, f"paths.{key}")
        if isinstance(value, str) and value.startswith("~"):
            cfg.paths[key] = os.path.expanduser(value)


def section(cfg: DictConfig, key: str) -> Any:
    """A config section as its dataclass instance (``section(cfg, "run") -> RunConfig``)."""
    return OmegaConf.to_object(OmegaConf.select(cfg, key))


def prepare_output_dir(output_dir: str | Path) -> Path:
    """Create ``run.output_dir`` and make sure files can be written in it; a :class:`ConfigError` if not."""
    path = Path(output_dir)
    probe = path / f".write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run.output_dir={output_dir}: cannot write there ({exc.strerror or exc})") from None
    return path


def save_config(cfg: DictConfig, output_dir: str | Path) -> Path:
    """Write the fully resolved config, and the environment it runs in, next to the run's outputs."""
    out = Path(output_dir) / "config.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (out.parent / "environment.json").write_text(json.dumps(environment(), indent=2))
    return out


def environment() -> dict[str, Any]:
    """Versions, device and machine of this process (``environment.json``, read by ``paxion.cli.report``)."""
    import platform
    from datetime import datetime, timezone
    from importlib import metadata

    import torch

    cuda = torch.cuda.is_initialized()  # the runner picked a GPU (dist.init_distributed sets it)
    try:
        version = metadata.version("paxion")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return {
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})" if cuda else "cpu",
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "paxion": version,
        "platform": platform.platform(),
        "commit": source_commit(),
    }


def source_commit() -> Optional[str]:
    """The git commit of the package's source (``+dirty`` when tracked files differ), or None outside a checkout."""
    import subprocess

    here = str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


# --------------------------------------------------------------------------- command line


def parse_cli(argv: Optional[Sequence[str]], description: str) -> tuple[str, list[str]]:
    """``--cfg-path PATH [--options a.b=c ...] [a.b=c ...]`` -> (path, overrides)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg-path", "--config", dest="cfg_path", required=True, help="experiment YAML")
    parser.add_argument("--options", nargs="+", default=[], help="overrides a.b=c (LAVIS style)")
    parser.add_argument("overrides", nargs="*", help="overrides a.b=c")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a config/checkpoint/data error (or PAXION_DEBUG=1)"
    )
    args = parser.parse_args(argv)
    return args.cfg_path, list(args.options) + list(args.overrides)
