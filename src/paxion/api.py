"""The Python API: load a model with its preprocessing and tokenizer, score captions and reversals.

    import paxion

    paxion.list_models()                                   # ['embedded_default', 'eval/actionbench/...', ...]
    model, preprocess, tokenizer = paxion.load_model("embedded_default")
    video = preprocess("clip.mp4")                         # uint8 (1, T, C, S, S), as the model's eval data
    paxion.score_captions(model, video, ["Book falling", "Book rising"])   # backbone vs patched probabilities
    paxion.score_reversal(model, video, "Book falling")    # [clip, time-reversed clip]

``load_model`` takes a preset name (``embedded_default``: the shipped tiny foundation model with the
shipped Knowledge Patcher, no download), a config name from :func:`list_models`, a path to an experiment
YAML, or a model ``Config`` dataclass; ``checkpoint`` is a Paxion KP / Patch & Fuse file or a run's
``best.pth`` / ``latest.pth`` (what ``model.pretrained`` takes).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from paxion.backbones.base import Preprocess
from paxion.config import CONFIG_ROOT, ConfigError, load_config, read_layers, section
from paxion.data.base import VideoDataConfig
from paxion.data.transforms import video_transform
from paxion.data.video import load_clip, resize_exact, sample_indices, whole_clip_bounds
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion.registry import registry

logger = logging.getLogger(__name__)

CONFIG_STAGES = ("train", "eval", "pretrain")  # configs/<stage>/... hold complete experiments
SHIPPED_BACKBONE = "internvideo_synth_pretrained"
SHIPPED_PATCHER = "kp_synth.safetensors"
# must match configs/train/actionbench/synthaction/embedded_default.yaml, whose KP is shipped
EMBEDDED_PATCHER = PatcherConfig(heads=8, dim_head=16, num_latents=8)
PRESETS = {
    "embedded_default": "shipped tiny InternVideo-architecture model (SynthAction, 8 frames of 32 px) "
                        "+ shipped Knowledge Patcher (VTC + DVDM); no download",
}

Video = Union[str, Path, np.ndarray, torch.Tensor]


def asset(name: str) -> Path:
    """A file shipped inside the package (``paxion/assets``)."""
    return Path(str(resources.files("paxion.assets").joinpath(name)))


# --------------------------------------------------------------------------- preprocessing and tokenizer


@dataclass(frozen=True)
class VideoPreprocess:
    """A video file or uint8 frames -> the model's eval input, uint8 (1, T, C, S, S).

    Files are decoded and sampled exactly as the evaluation datasets do (``decoder``, ``resize_on_decode``,
    the original's uniform frame choice). Frames are uint8 ``(N, H, W, C)`` (numpy, as decoders return)
    or ``(N, C, H, W)`` (torch) holding the whole video at the file's size: they are sampled and resized
    like the frames of a file, so ``preprocess(frames) == preprocess(file)``. Clips already shaped
    ``(1, T, C, S, S)`` go to the scoring helpers as they are. The result goes to ``model.encode_video`` /
    the scoring helpers.
    """

    num_frames: int
    image_size: int
    decoder: str = VideoDataConfig.decoder
    resize_on_decode: bool = VideoDataConfig.resize_on_decode

    def __call__(self, video: Video) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        if isinstance(video, (str, Path)):
            frames, _ = load_clip(Path(video), self.num_frames, backend=self.decoder,
                                  size=size if self.resize_on_decode else None)
        else:
            frames = self._sample(_as_tchw(video))
            if self.resize_on_decode:
                frames = resize_exact(frames, size)
        return video_transform(frames, self.image_size, training=False)[None]  # (1, T, C, S, S)

    def _sample(self, frames: torch.Tensor) -> torch.Tensor:
        start, end = whole_clip_bounds(frames.shape[0])
        return frames[sample_indices(start, end, self.num_frames, "uniform", False, None)]


def _as_tchw(video: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """uint8 frames (N, H, W, C) numpy or (N, C, H, W) torch -> uint8 (N, C, H, W) tensor."""
    channels_last = isinstance(video, np.ndarray)
    frames = torch.from_numpy(np.ascontiguousarray(video)) if channels_last else video
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.dim() != 4:
        shape = tuple(getattr(video, "shape", ()))
        raise TypeError(f"preprocess takes a video path or uint8 frames (N, H, W, C) numpy / (N, C, H, W) torch, "
                        f"got {type(video).__name__} {getattr(video, 'dtype', '')} {shape}")
    frames = frames.permute(0, 3, 1, 2) if channels_last else frames
    if frames.shape[1] != 3:
        raise ValueError(f"preprocess: frames need 3 colour channels, got shape {tuple(frames.shape)} (N, C, H, W)")
    return frames.cpu()


class Tokenizer:
    """Captions -> the model's text input (``input_ids``, ``attention_mask``), as ``model.encode_text`` does it."""

    def __init__(self, tokenize: Any) -> None:
        self._tokenize = tokenize

    def __call__(self, texts: Union[str, Sequence[str]]) -> dict[str, torch.Tensor]:
        return self._tokenize([texts] if isinstance(texts, str) else list(texts))


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns; unpacks as ``model, preprocess, tokenizer``."""

    model: nn.Module
    preprocess: VideoPreprocess
    tokenizer: Tokenizer


# --------------------------------------------------------------------------- listing and loading


def list_models() -> list[str]:
    """Names :func:`load_model` accepts: the presets, then every experiment config of a source checkout."""
    names = list(PRESETS)
    if CONFIG_ROOT.is_dir():
        for stage in CONFIG_STAGES:
            for path in sorted((CONFIG_ROOT / stage).rglob("*.yaml")):
                if not path.name.startswith("_") and any("model" in layer for _, layer in read_layers(path)):
                    names.append(path.relative_to(CONFIG_ROOT).with_suffix("").as_posix())
    return names


def load_model(
    name_or_config: Union[str, Path, Any] = "embedded_default",
    checkpoint: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device] = "cpu",
    overrides: Sequence[str] = (),
) -> LoadedModel:
    """A model in eval mode on ``device`` with its preprocessing and tokenizer.

    ``name_or_config``: a preset or config name (:func:`list_models`), a YAML path, or a model ``Config``
    dataclass (e.g. :class:`paxion.systems.paxion.model.PaxionConfig`). ``checkpoint`` sets ``model.pretrained``;
    ``overrides`` are ``a.b=c`` config overrides (names and YAML paths only).
    """
    data = VideoDataConfig()
    if dataclasses.is_dataclass(name_or_config) and not isinstance(name_or_config, type):
        if overrides:
            raise ConfigError("load_model: overrides apply to config names and YAML files, not to a Config object")
        model_cfg = copy.deepcopy(name_or_config)  # the caller's object stays as it was
    elif str(name_or_config) in PRESETS:
        if overrides:
            raise ConfigError(f"load_model: preset '{name_or_config}' takes no overrides; load a config instead")
        model_cfg = PaxionConfig(backbone=SHIPPED_BACKBONE, patcher=EMBEDDED_PATCHER,
                                 pretrained=str(asset(SHIPPED_PATCHER)))
    else:
        cfg = load_config(_config_path(str(name_or_config)), list(overrides))
        if cfg.get("model") is None:
            raise ConfigError(f"load_model: {name_or_config} has no model: section")
        model_cfg = section(cfg, "model")
        data = _data_options(cfg) or data
    if checkpoint is not None:
        if not hasattr(model_cfg, "pretrained"):
            raise ConfigError(f"load_model: model.arch '{model_cfg.arch}' takes no checkpoint (no model.pretrained)")
        model_cfg.pretrained = str(checkpoint)
    model = registry.get("model", model_cfg.arch)(model_cfg).to(device).eval()
    pre = model_preprocess(model)
    preprocess = VideoPreprocess(pre.num_frames, pre.image_size, data.decoder, data.resize_on_decode)
    return LoadedModel(model, preprocess, Tokenizer(_backbone(model).tokenize))


def _config_path(name: str) -> Path:
    for candidate in (Path(name), CONFIG_ROOT / f"{name}.yaml", CONFIG_ROOT / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"load_model: '{name}' is neither a model name nor a config file; "
                     f"paxion.list_models() gives the names: {list_models()[:6]} ...")


def _data_options(cfg: DictConfig) -> Optional[VideoDataConfig]:
    """The decoding options of the config's one dataset (so files read as its eval data), if it has one."""
    datasets = list(cfg.datasets.values()) if cfg.get("datasets") else []
    if len(datasets) != 1 or "decoder" not in datasets[0]:
        return None
    ds = OmegaConf.to_container(datasets[0], resolve=True)
    return VideoDataConfig(decoder=ds["decoder"], resize_on_decode=ds["resize_on_decode"])


def _backbone(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise TypeError(f"{type(model).__name__} has no video-text backbone (needed for preprocessing and tokens)")
    return backbone


def model_preprocess(model: nn.Module) -> Preprocess:
    """Frames, size, mean and std the model expects (its own ``preprocess``, else its backbone's)."""
    return getattr(model, "preprocess", None) or _backbone(model).preprocess


# --------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    """Probabilities over the candidates (softmax of the logits), one list per scorer.

    ``backbone``: the frozen backbone's pooled features; ``patcher``: the Knowledge Patcher's latents;
    ``fused``: the Knowledge Fuser's output (Patch & Fuse models only, else None).
    """

    texts: list[str]
    backbone: list[float]
    patcher: list[float]
    fused: Optional[list[float]] = None


def _paxion(model: nn.Module) -> PaxionModel:
    inner = getattr(model, "module", model)
    if not isinstance(inner, PaxionModel):
        raise TypeError(f"scoring needs a Paxion model (model.arch: paxion), got {type(inner).__name__}")
    return inner


def _clip(model: PaxionModel, video: Video) -> torch.Tensor:
    """A path, raw frames, or the preprocessed (1, T, C, S, S) clip -> the model's input."""
    if isinstance(video, torch.Tensor) and video.dim() == 5:
        if video.shape[0] != 1:
            raise ValueError(f"score one clip at a time: got a batch of {video.shape[0]}")
        return video
    pre = model_preprocess(model)
    return VideoPreprocess(pre.num_frames, pre.image_size)(video)


def _modules(model: PaxionModel) -> tuple[str, ...]:
    return ("backbone", "patcher") if model.fuser is None else ("backbone", "patcher", "fused")


@torch.no_grad()
def score_captions(model: nn.Module, video: Video, captions: Sequence[str]) -> Scores:
    """One clip against K captions (a caption and its action antonym, say) -> probabilities over the K.

    ``video``: a file, uint8 frames, or ``preprocess(...)``'s (1, T, C, S, S) output.
    """
    if len(captions) < 2 or isinstance(captions, str):
        raise ValueError(f"score_captions needs a list of at least 2 captions, got {captions!r}")
    model = _paxion(model)
    enc = model.encode_video(_clip(model, video), use_patcher=True)
    text = model.encode_text(list(captions))[None]  # (1, K, E)
    probs = {m: model.paired_logits(enc.features(m), text, m).float().softmax(dim=-1)[0].tolist()  # (K,)
             for m in _modules(model)}
    return Scores(list(captions), **probs)


@torch.no_grad()
def score_reversal(model: nn.Module, video: Video, caption: str) -> Scores:
    """Video Reversal: one caption against [clip, time-reversed clip] -> probabilities over the two clips."""
    model = _paxion(model)
    enc = model.encode_video(_clip(model, video), with_reversed=True, use_patcher=True)
    text = model.encode_text([caption])  # (1, E)
    probs = {m: model.paired_logits(enc.split_views(enc.features(m)), text, m).float().softmax(dim=-1)[0].tolist()
             for m in _modules(model)}  # (2,) each
    return Scores(["clip", "reversed clip"], **probs)
