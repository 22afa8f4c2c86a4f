"""VideoMAE fine-tuning for action recognition, optionally with a frozen LLM block (LM4VisualEncoding).

    uint8 clip (B, T, C, H, W) -> /255, ImageNet normalisation
      [train] random erasing per frame, mixup / cutmix of the batch with its reverse
    -> VideoMAE ViT blocks; after block ``llm_block.insert_after`` (default: the last):
       x <- M2(LLaMA-block(M1(x)))         (frozen LLaMA weights, trainable M1 / M2)
    -> fc_norm(mean over tokens) -> dropout -> head (B, num_classes)
    loss: soft-target cross entropy against label-smoothed (and mixed) targets.

Parameter names: ``encoder.*`` is VideoMAE's layout, ``llm_block.m1`` / ``llm_block.m2`` the original's
``llama_dim_mapper1`` / ``llama_dim_mapper2`` and ``llm_block.llm.*`` its ``llama.*``, so release files
of both load through :meth:`load_pretrained`. :meth:`optimizer_param_groups` gives the layer-wise lr
decay groups of VideoMAE's optimizer factory (the runner's optimizer uses it when present).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from paxion.backbones.base import CheckpointError, LoadReport, Preprocess
from paxion.backbones.videomae import IMAGENET_MEAN, IMAGENET_STD, build_videomae, load_videomae_checkpoint
from paxion.modules.frozen_llm_block import FrozenLLMBlockConfig, build_frozen_llm_block
from paxion.registry import registry
from paxion.systems.videomae import objectives
from paxion.systems.videomae.objectives import MixupConfig

logger = logging.getLogger(__name__)

# the original's names of the LLM-block parts in its fine-tuned checkpoints -> ours
ORIGINAL_LLM_PREFIXES = (("llama_dim_mapper1.", "llm_block.m1."), ("llama_dim_mapper2.", "llm_block.m2."),
                         ("llama.", "llm_block.llm."))


@dataclass
class VideoMAEClassifierConfig:
    """Defaults: ViT-B on SSv2 (174 classes, 16 x 224^2), the original's fine-tuning recipe."""

    arch: str = "videomae_classifier"
    encoder: str = "videomae_vit_b"  # videomae_vit_s | videomae_vit_b | videomae_vit_tiny
    num_classes: int = 174
    num_frames: int = 16
    image_size: int = 224
    drop_path_rate: float = 0.1
    fc_drop_rate: float = 0.0
    init_scale: float = 0.001  # head init scale (--init_scale)
    pretrained: Optional[str] = None  # VideoMAE pre-trained or fine-tuned file (--finetune)
    llm_block: FrozenLLMBlockConfig = field(default_factory=FrozenLLMBlockConfig)
    layer_decay: float = 0.75  # lr scale decay ** (depth + 1 - layer); 1.0: one scale for all
    label_smoothing: float = 0.1
    mixup: MixupConfig = field(default_factory=MixupConfig)
    random_erasing: float = 0.25  # per-frame probability (--reprob)
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))

    def __post_init__(self) -> None:
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


@registry.register("model", "videomae_classifier")
class VideoMAEClassifier(nn.Module):
    Config = VideoMAEClassifierConfig

    def __init__(self, cfg: VideoMAEClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_videomae(
            cfg.encoder, num_classes=cfg.num_classes, num_frames=cfg.num_frames, image_size=cfg.image_size,
            drop_path_rate=cfg.drop_path_rate, fc_drop_rate=cfg.fc_drop_rate, init_scale=cfg.init_scale,
        )
        depth = self.encoder.num_layers()
        self.insert_after = cfg.llm_block.insert_after % depth if cfg.llm_block.enable else None
        if cfg.llm_block.enable and not -depth <= cfg.llm_block.insert_after < depth:
            raise ValueError(f"llm_block.insert_after {cfg.llm_block.insert_after}: the encoder has {depth} blocks")
        self.llm_block = build_frozen_llm_block(self.encoder.embed_dim, cfg.llm_block)
        self.preprocess = Preprocess(cfg.num_frames, cfg.image_size, tuple(cfg.mean), tuple(cfg.std))
        if cfg.pretrained:
            self.load_pretrained(cfg.pretrained)

    @property
    def device(self) -> torch.device:
        return self.encoder.patch_embed.proj.weight.device

    # ------------------------------------------------------------------ weights

    def load_pretrained(self, path: str) -> LoadReport:
        """A VideoMAE release file, or an LM4VisualEncoding fine-tuned one (with its LLM-block keys)."""
        report, llm = load_videomae_checkpoint(self.encoder, path)
        if llm:
            if self.llm_block is None:
                raise CheckpointError(f"{path}: holds a frozen LLM block ({sorted(llm)[:3]} ...); set llm_block.enable")
            state = {_rename(k): v for k, v in llm.items()}
            own = self.state_dict()
            unknown = sorted(set(state) - set(own))
            if unknown:
                raise CheckpointError(f"{path}: LLM-block keys that do not fit: {unknown[:5]}")
            self.load_state_dict(state, strict=False)
            report.loaded += sorted(state)
        logger.info("%s: %d tensors loaded; ignored %s; fresh %s", path, len(report.loaded), report.unexpected,
                    report.missing)
        return report

    # ------------------------------------------------------------------ forward

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> float, /255 then per-channel normalisation, on the model's device."""
        video = video.to(self.device, non_blocking=True)
        mean = torch.tensor(self.cfg.mean, device=video.device).view(-1, 1, 1)
        std = torch.tensor(self.cfg.std, device=video.device).view(-1, 1, 1)
        return (video.float() / 255.0 - mean) / std

    def logits(self, video: torch.Tensor) -> torch.Tensor:
        """normalised (B, T, C, H, W) -> (B, num_classes)."""
        after = {self.insert_after: self.llm_block} if self.llm_block is not None else None
        tokens = self.encoder.forward_tokens(video.permute(0, 2, 1, 3, 4), after)  # (B, N, D)
        return self.encoder.classify_tokens(tokens)

    def classify(self, video: torch.Tensor) -> torch.Tensor:
        """Protocol: uint8 (B, T, C, H, W) -> logits (B, num_classes)."""
        return self.logits(self.normalize_video(video))

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Soft-target CE; in training mode with random erasing, label smoothing and mixup / cutmix as configured."""
        cfg = self.cfg
        video = self.normalize_video(batch["video_input"])
        labels = batch["label"].to(video.device)
        if self.training:
            video = objectives.random_erasing(video, cfg.random_erasing)
            if cfg.mixup.enabled:
                video, targets, _ = objectives.mix_batch(video, labels, cfg.num_classes, cfg.label_smoothing, cfg.mixup)
            else:
                targets = objectives.smooth_one_hot(labels, cfg.num_classes, cfg.label_smoothing)
        else:  # validation loss: plain cross entropy, as the original's validation criterion
            targets = objectives.smooth_one_hot(labels, cfg.num_classes, 0.0)
        logits = self.logits(video)
        loss = objectives.soft_target_cross_entropy(logits, targets)
        return {"loss": loss, "ce": loss.detach()}

    # ------------------------------------------------------------------ optimisation

    def layer_id(self, name: str) -> int:
        """VideoMAE's layer of a parameter: patch embedding 0, block i -> i + 1, everything else depth + 1."""
        depth = self.encoder.num_layers()
        if name.startswith("encoder.patch_embed") or name == "encoder.pos_embed":
            return 0
        if name.startswith("encoder.blocks."):
            return int(name.split(".")[2]) + 1
        return depth + 1

    def optimizer_param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Trainable parameters in (layer, decay | no_decay) groups with ``lr_scale``; biases and 1-d
        parameters get no weight decay, as VideoMAE's ``get_parameter_groups``."""
        depth = self.encoder.num_layers()
        groups: dict[str, dict[str, Any]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            decay = not (param.ndim == 1 or name.endswith(".bias"))
            layer = self.layer_id(name) if self.cfg.layer_decay < 1 else depth + 1
            key = f"layer_{layer}_{'decay' if decay else 'no_decay'}"
            group = groups.setdefault(key, {
                "params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": self.cfg.layer_decay ** (depth + 1 - layer),
            })
            group["params"].append(param)
            group["names"].append(name)
        return list(groups.values())

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"trainable": trainable, "frozen": sum(p.numel() for p in self.parameters()) - trainable}


def _rename(key: str) -> str:
    for old, new in ORIGINAL_LLM_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return key
