"""``load_model``: any registered model, by zoo name, config name, YAML path or ``Config`` object."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from paxion.api.frozen import FrozenBackbone
from paxion.api.preprocess import Tokenizer, VideoPreprocess, asset
from paxion.api.zoo import BACKBONE_PREFIX, CONFIG_ROOT, PRESETS, list_models, zoo_config
from paxion.config import ConfigError, load_config, section
from paxion.data.base import VideoDataConfig
from paxion.registry import registry
from paxion.systems.paxion.model import PaxionConfig
from paxion.systems.paxion.patcher import PatcherConfig
from paxion.tasks.protocol import eval_num_frames, unwrap_model
from paxion.techniques import build_techniques

logger = logging.getLogger(__name__)

SHIPPED_BACKBONE = "internvideo_synth_pretrained"
SHIPPED_PATCHER = "kp_synth.safetensors"
# must match configs/train/actionbench/synthaction/embedded_default.yaml, whose KP is shipped
EMBEDDED_PATCHER = PatcherConfig(heads=8, dim_head=16, num_latents=8)
# model.arch -> the config field ``checkpoint`` sets: the file that system's converter reads
CHECKPOINT_FIELD = {"openvclip": "release_ckpt"}
# model.arch -> its datasets' evaluation frame sampling, when no config says otherwise
FRAME_SAMPLING = {"singularity_retrieval": "segments", "singularity_qa": "segments"}


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns; unpacks as ``model, preprocess, tokenizer``."""

    model: nn.Module
    preprocess: VideoPreprocess
    tokenizer: Optional[Tokenizer]  # None: the model has no text side (VideoMAE)


def load_model(
    name_or_config: Union[str, Path, Any] = "embedded_default",
    checkpoint: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device] = "cpu",
    overrides: Sequence[str] = (),
) -> LoadedModel:
    """A model in eval mode on ``device`` with its preprocessing and tokenizer.

    ``name_or_config``: a name from :func:`paxion.list_models` (preset, zoo short name, ``backbone/<name>``,
    config name), a YAML path, or a model ``Config`` dataclass (e.g. ``PaxionConfig``, ``AlproConfig``).
    ``checkpoint``: the release file the system's converter reads (``model.pretrained``; Open-VCLIP:
    ``model.release_ckpt``; a frozen backbone: its official file) or a run's ``best.pth``.
    ``overrides``: ``a.b=c`` config overrides (names and YAML paths only). An evaluation config's
    test-time techniques (Open-VCLIP's weight patching) are applied, so the model scores as it evaluates.
    """
    name = str(name_or_config) if isinstance(name_or_config, (str, Path)) else None
    if name is not None and name.startswith(BACKBONE_PREFIX):
        if overrides:
            raise ConfigError(f"load_model: '{name}' takes no overrides")
        model = FrozenBackbone(name[len(BACKBONE_PREFIX):], checkpoint).to(device).eval()
        return _loaded(model, None)
    cfg: Optional[DictConfig] = None
    data = None
    if name is None and dataclasses.is_dataclass(name_or_config) and not isinstance(name_or_config, type):
        if overrides:
            raise ConfigError("load_model: overrides apply to names and YAML files, not to a Config object")
        model_cfg = copy.deepcopy(name_or_config)  # the caller's object stays as it was
    elif name in PRESETS:
        if overrides:
            raise ConfigError(f"load_model: preset '{name}' takes no overrides; load a config instead")
        model_cfg = PaxionConfig(backbone=SHIPPED_BACKBONE, patcher=EMBEDDED_PATCHER,
                                 pretrained=str(asset(SHIPPED_PATCHER)))
    elif name is not None:
        cfg = load_config(_config_path(zoo_config(name) or name), list(overrides))
        if cfg.get("model") is None:
            raise ConfigError(f"load_model: {name} has no model: section")
        model_cfg = section(cfg, "model")
        data = _data_options(cfg)
    else:
        raise TypeError(f"load_model takes a name, a YAML path or a model Config, got {type(name_or_config).__name__}")
    if checkpoint is not None:
        slot = CHECKPOINT_FIELD.get(model_cfg.arch, "pretrained")
        if not hasattr(model_cfg, slot):
            raise ConfigError(f"load_model: model.arch '{model_cfg.arch}' takes no checkpoint (no model.{slot})")
        setattr(model_cfg, slot, str(checkpoint))
    model = registry.get("model", model_cfg.arch)(model_cfg)
    if cfg is not None:
        _attach_labels(model, cfg)
        _apply_test_techniques(model, cfg)
    return _loaded(model.to(device).eval(), data)


def _loaded(model: nn.Module, data: Optional[VideoDataConfig]) -> LoadedModel:
    """The model with its preprocess (decoding options of ``data``, else the system's defaults) and tokenizer."""
    arch = getattr(getattr(model, "cfg", None), "arch", None)
    data = data or VideoDataConfig(frame_sampling=FRAME_SAMPLING.get(arch, VideoDataConfig.frame_sampling))
    pre = model.preprocess
    preprocess = VideoPreprocess(eval_num_frames(model), pre.image_size, data.decoder, data.resize_on_decode,
                                 data.frame_sampling)
    return LoadedModel(model, preprocess, model_tokenizer(model))


def model_tokenizer(model: nn.Module) -> Optional[Tokenizer]:
    """Texts -> token ids as ``model`` tokenizes captions (questions, for a QA model); None without a text side."""
    model = unwrap_model(model)
    cfg = getattr(model, "cfg", None)
    backbone = getattr(model, "backbone", None)
    if isinstance(model, FrozenBackbone) or callable(getattr(backbone, "tokenize", None)):
        return Tokenizer((backbone if backbone is not None else model).tokenize)
    for length in ("max_txt_l", "max_q_len", "max_txt_len"):  # Singularity retrieval / QA, ALPRO
        if hasattr(cfg, length) and callable(getattr(model, "tokenize", None)):
            limit = getattr(cfg, length)
            return Tokenizer(lambda texts: tuple(t.cpu() for t in model.tokenize(texts, limit)))
    return None


def _config_path(name: str) -> Path:
    for candidate in (Path(name), CONFIG_ROOT / f"{name}.yaml", CONFIG_ROOT / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"load_model: '{name}' is neither a model name nor a config file; "
                      f"paxion.list_models() gives the names: {list(list_models())[:6]} ...")


def _one_dataset(cfg: DictConfig) -> Optional[dict[str, Any]]:
    datasets = list(cfg.datasets.values()) if cfg.get("datasets") else []
    return OmegaConf.to_container(datasets[0], resolve=True) if len(datasets) == 1 else None


def _data_options(cfg: DictConfig) -> Optional[VideoDataConfig]:
    """The decoding options of the config's one dataset (so files read as its eval data), if it has one."""
    ds = _one_dataset(cfg)
    if ds is None or "decoder" not in ds:
        return None
    return VideoDataConfig(decoder=ds["decoder"], resize_on_decode=ds["resize_on_decode"],
                           frame_sampling=ds.get("frame_sampling", VideoDataConfig.frame_sampling))


def _attach_labels(model: nn.Module, cfg: DictConfig) -> None:
    """Label names from the config's dataset files, when they exist: Open-VCLIP's class names,
    ALPRO's ``ans2label``, Singularity's answer list (``classify`` / ``answer`` use them)."""
    ds = _one_dataset(cfg) or {}
    try:
        if model.cfg.arch == "openvclip" and ds.get("index_to_class") and Path(ds["index_to_class"]).is_file():
            from paxion.data.datasets.openvclip_lists import read_index_to_class

            model.set_class_names(read_index_to_class(Path(ds["index_to_class"])))
        elif model.cfg.arch == "alpro" and ds.get("txt_dir") and ds.get("ans2label"):
            path = Path(ds["txt_dir"]) / ds["ans2label"]
            if path.is_file():
                table = json.loads(path.read_text())
                model.answer_names = [a for a, _ in sorted(table.items(), key=lambda kv: kv[1])]
        elif model.cfg.arch == "singularity_qa" and ds.get("answer_list"):
            path = Path(ds.get("ann_root", "")) / ds["answer_list"]
            if path.is_file():
                model.answer_list = [str(a) for a in json.loads(path.read_text())]
    except (OSError, ValueError, KeyError) as exc:  # labels are a convenience: the model still loads
        logger.warning("load_model: label names not read (%s)", exc)


def _apply_test_techniques(model: nn.Module, cfg: DictConfig) -> None:
    """An evaluation config's test-time techniques (weight patching), applied for good."""
    if not cfg.get("techniques") or not cfg.run.get("evaluate"):
        return
    techniques = build_techniques(cfg, model)
    context = techniques.eval_context(model)
    context.__enter__()  # never left: the returned model is the patched one
    model._test_time_context = context  # held, so that collecting it never restores the weights
    logger.info("load_model: applied the config's test-time techniques %s", list(cfg.techniques))
