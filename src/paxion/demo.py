"""Score a clip against candidate captions with the frozen backbone and with the Knowledge Patcher.

Shared by ``src/demo.py`` (the original demo's printout) and ``paxion.inference`` (many samples).
Without a config, the model is the embedded default: the shipped foundation model and patcher.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import torch

import paxion  # noqa: F401  (fills the registry)
from paxion.config import load_config, section
from paxion.data.transforms import video_transform
from paxion.data.video import load_clip
from paxion.model import PaxionConfig, PaxionModel
from paxion.patcher import PatcherConfig

logger = logging.getLogger(__name__)

DEMO_CLIP = "demo_clip.mp4"
DEMO_TEXTS = "demo_clip.json"  # {"caption", "action_antonym", ...}
SHIPPED_PATCHER = "kp_synth.safetensors"
# must match configs/train/actionbench/synthaction/embedded_default.yaml, whose KP is shipped
EMBEDDED_PATCHER = PatcherConfig(heads=8, dim_head=16, num_latents=8)


def asset(name: str) -> Path:
    return Path(str(resources.files("paxion.assets").joinpath(name)))


def demo_texts() -> dict[str, str]:
    return json.loads(asset(DEMO_TEXTS).read_text())


def load_model(
    config: Optional[str] = None, checkpoint: Optional[str] = None, overrides: Sequence[str] = ()
) -> PaxionModel:
    """A PaxionModel from an experiment config (+ Paxion checkpoint), or the embedded default."""
    if config is None:
        cfg = PaxionConfig(backbone="internvideo_synth_pretrained", patcher=EMBEDDED_PATCHER,
                           pretrained=checkpoint or str(asset(SHIPPED_PATCHER)))
    else:
        cfg = section(load_config(config, list(overrides)), "model")
        if checkpoint:
            cfg.pretrained = checkpoint
    model = PaxionModel(cfg)
    return model.eval()


def read_video(model: PaxionModel, path: str | Path) -> torch.Tensor:
    """A video file -> uint8 (1, T, C, S, S) sampled and resized as the model's backbone expects."""
    pre = model.backbone.preprocess
    video, _ = load_clip(Path(path), pre.num_frames, size=(pre.image_size, pre.image_size))
    return video_transform(video, pre.image_size, training=False)[None]


@dataclass
class Scores:
    """Probabilities over the candidates (softmax of the logits), one row per scorer."""

    texts: list[str]
    backbone: list[float]
    patcher: list[float]


@torch.no_grad()
def score_texts(model: PaxionModel, video: torch.Tensor, texts: Sequence[str]) -> Scores:
    """video uint8 (1, T, C, H, W), K captions -> backbone and patcher probabilities over the K captions."""
    enc = model.encode_video(video, use_patcher=True)
    text = model.encode_text(list(texts))[None]  # (1, K, E)
    out = {}
    for module in ("backbone", "patcher"):
        logits = model.paired_logits(enc.features(module), text, module)  # (1, K)
        out[module] = logits.float().softmax(dim=-1)[0].tolist()
    return Scores(list(texts), out["backbone"], out["patcher"])


@torch.no_grad()
def score_reversal(model: PaxionModel, video: torch.Tensor, text: str) -> Scores:
    """Video Reversal: one caption against [clip, time-reversed clip] -> probabilities over the two clips."""
    enc = model.encode_video(video, with_reversed=True, use_patcher=True)
    t = model.encode_text([text])  # (1, E)
    out = {}
    for module in ("backbone", "patcher"):
        logits = model.paired_logits(enc.split_views(enc.features(module)), t, module)  # (1, 2)
        out[module] = logits.float().softmax(dim=-1)[0].tolist()
    return Scores(["clip", "reversed clip"], out["backbone"], out["patcher"])


def format_scores(scores: Scores) -> str:
    width = max(len(t) for t in scores.texts) + 2
    lines = [f"{'candidate':<{width}}{'backbone':>10}{'patched':>10}"]
    for text, b, p in zip(scores.texts, scores.backbone, scores.patcher):
        lines.append(f"{text:<{width}}{b:>10.3f}{p:>10.3f}")
    return "\n".join(lines)
