"""PaxionModel: a frozen video-language backbone + Knowledge Patcher + optional Knowledge Fuser.

One class for every backbone and variant: widths come from the backbone contract, the patcher and
fuser are registered components picked by name, and the objectives are a config list. So switching
backbone is ``model.backbone=clipvip_b32`` and Patch & Fuse is ``model.fuser.name=xattn``.

The clip and its time reversal (ATM, the Video-Reversal probe) share one frame-encoder pass when the
backbone's frame features are frame-order independent: ``aggregate`` and the patcher run on the
time-flipped features, which equals re-encoding the reversed clip (tested).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from einops import rearrange
from torch import nn

from paxion.systems.paxion import losses
from paxion.backbones.base import LoadReport, Preprocess, VideoTextBackbone, flip_time
from paxion.systems.paxion.feature_cache import FrozenFeatureCache
from paxion.systems.paxion.fuser import FuserConfig, build_fuser
from paxion.systems.paxion.patcher import PatcherConfig, TransformerPatcher, build_patcher
from paxion.registry import registry
from paxion.systems.paxion.scoring import normalize, paired_similarity, similarity
from paxion.systems.paxion.text_cache import TextFeatureCache
from paxion.systems.paxion.weights import load_backbone_weights, load_trainable_state

logger = logging.getLogger(__name__)

OBJECTIVES = ("vtc", "vac", "atm", "mcqa")
EVAL_MODULES = ("backbone", "patcher", "fused")
Batch = dict[str, Any]


@dataclass
class LossWeights:
    vtc: float = 1.0  # VAC has no weight of its own: it adds negatives to VTC
    atm: float = 0.4
    mcqa: float = 1.0


@dataclass
class PaxionConfig:
    """Defaults = the main method (KP-Perceiver trained with VTC + DVDM on ActionBench)."""

    arch: str = "paxion"
    backbone: str = "internvideo_mm_l14"  # registered backbone name
    backbone_ckpt: Optional[str] = None  # official backbone file, or a plain state dict (.safetensors/.pth)
    backbone_mode: str = "train"  # train: follows model.train() like the original (dropout on) | eval: always eval
    patcher: PatcherConfig = field(default_factory=PatcherConfig)
    fuser: FuserConfig = field(default_factory=FuserConfig)
    objectives: list[str] = field(default_factory=lambda: ["vtc", "vac", "atm"])
    loss_weights: LossWeights = field(default_factory=LossWeights)
    label_smoothing: float = 0.1  # VTC, ATM and MCQA (the original's KP-Transformer MCQA baseline: 0)
    use_temporal_embedding: bool = True
    temporal_dropout: float = 0.1
    state_change_filtering_for_atm: bool = True
    gather_with_grad: bool = False  # False: gathered features detached, as the original
    temp_init: float = 0.07
    train_patcher: bool = True  # False: freeze the patcher while a fuser trains (never used by the original)
    reuse_frame_features: bool = True  # one frame-encoder pass for clip + reversal when the backbone allows it
    pretrained: Optional[str] = None  # official Paxion KP / P&F .pth, or our own trainable-state file
    load_backbone_from_checkpoint: bool = False  # also load the pretrained file's vl_backbone.* (the original does)
    eval_method: str = "default"  # default | ensemble_with_backbone | two_step_independent
    two_step_top_k: int = 50
    text_cache_size: int = 4096  # frozen text features kept while the backbone is in eval mode; 0: off
    # frozen video features kept per clip (keyed by its pixels) while the backbone is in eval mode; 0: off.
    # Pays off with backbone_mode: eval and clips that repeat across epochs (no colour jitter, uniform
    # sampling; datasets' cache_clips then also skips their decoding); identical results either way
    feature_cache_size: int = 0

    def __post_init__(self) -> None:
        if self.backbone_mode not in ("train", "eval"):
            raise ValueError(f"model.backbone_mode: '{self.backbone_mode}' is not one of ['train', 'eval']")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown:
            raise ValueError(f"model.objectives: unknown {unknown}; valid: {list(OBJECTIVES)}")
        if "mcqa" in self.objectives and ("vtc" in self.objectives or "atm" in self.objectives):
            raise ValueError("model.objectives: 'mcqa' combines only with 'vac' (antonym answers)")
        if self.fuser.name is not None and ("atm" in self.objectives or "vac" in self.objectives):
            if "mcqa" not in self.objectives:
                raise ValueError("model.objectives: a fuser trains with VTC only (as the original); drop vac/atm")


@dataclass
class VideoEncoding:
    """Video features of ``views`` stacked groups of B clips (view 0: the clip, view 1: its reversal)."""

    pooled: torch.Tensor  # (V*B, E) backbone vector, unnormalised
    latents: Optional[torch.Tensor]  # (V*B, Q, D) patcher output, unnormalised
    fused: Optional[torch.Tensor]  # (V*B, E) fuser output, unnormalised
    views: int = 1

    def features(self, module: str) -> torch.Tensor:
        """Normalised features scored by ``module`` (backbone | patcher | fused): (V*B, Q, D) or (V*B, E)."""
        chosen = {"backbone": self.pooled, "patcher": self.latents, "fused": self.fused}[module]
        if chosen is None:
            raise ValueError(f"eval module '{module}' is not available in this model (no {module} output)")
        return normalize(chosen)

    def split_views(self, features: torch.Tensor) -> torch.Tensor:
        """(V*B, ...) -> (B, V, ...)."""
        return rearrange(features, "(v b) ... -> b v ...", v=self.views)


@registry.register("model", "paxion")
class PaxionModel(nn.Module):
    Config = PaxionConfig

    def __init__(self, cfg: PaxionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.text_cache = TextFeatureCache(cfg.text_cache_size)
        self.feature_cache = FrozenFeatureCache(cfg.feature_cache_size)
        # new weights (a checkpoint, best.pth after training) make every cached feature stale
        self.register_load_state_dict_post_hook(_clear_caches)
        self.backbone: VideoTextBackbone = registry.get("backbone", cfg.backbone)()
        if cfg.backbone_ckpt:
            report = load_backbone_weights(self.backbone, cfg.backbone_ckpt)
            logger.info("backbone weights: %s (%d tensors; %s)", report.path, len(report.loaded), report.notes)
        pre = self.backbone.preprocess
        self.patcher = build_patcher(
            cfg.patcher,
            self.backbone.vision_width,
            self.backbone.embed_dim,
            pre.num_frames,
            cfg.use_temporal_embedding,
            cfg.temporal_dropout,
            self.backbone.tokens_per_frame,
        )
        self.fuser = build_fuser(cfg.fuser, self.backbone.embed_dim, self.patcher.out_dim)
        self.temp = nn.Parameter(torch.tensor(cfg.temp_init))
        std = torch.tensor(pre.std).view(1, 1, 3, 1, 1)
        mean = torch.tensor(pre.mean).view(1, 1, 3, 1, 1)
        # normalised = uint8 * scale + shift = (x / 255 - mean) / std, one fused op on the device
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)
        self.derived_keys = self._init_projection_from_backbone()
        self.freeze()
        if cfg.pretrained:
            self.load_pretrained(cfg.pretrained)

    @classmethod
    def from_config(cls, cfg: PaxionConfig) -> "PaxionModel":
        return cls(cfg)

    # ------------------------------------------------------------------ setup

    def _init_projection_from_backbone(self) -> list[str]:
        """The KP-Transformer baseline projects with the backbone's frozen visual projection."""
        if not isinstance(self.patcher, TransformerPatcher):
            return []
        try:
            weight = self.backbone.visual_projection_weight()  # (E, Dv)
        except NotImplementedError:  # a backbone without one keeps a trainable projection
            return []
        with torch.no_grad():
            self.patcher.proj.weight.copy_(weight)
        return ["patcher.proj.weight"]

    def freeze(self) -> None:
        """The one place that decides what trains: patcher (unless train_patcher=False), fuser, temp."""
        self.backbone.requires_grad_(False)
        self.patcher.requires_grad_(self.cfg.train_patcher)
        for key in self.derived_keys:
            self.get_parameter(key).requires_grad_(False)

    def train(self, mode: bool = True) -> "PaxionModel":
        super().train(mode)
        if self.cfg.backbone_mode == "eval":
            self.backbone.eval()
        self.text_cache.clear()  # weights may have changed since (training steps, a loaded checkpoint)
        return self

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "PaxionModel":
        self.text_cache.clear()  # .to(device) / .half(): cached rows would keep the old device or dtype
        self.feature_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def load_pretrained(self, path: str) -> LoadReport:
        report = load_trainable_state(self, path, self.derived_keys, self.cfg.load_backbone_from_checkpoint)
        logger.info("Paxion weights: %s: %d tensors; %s", path, len(report.loaded), "; ".join(report.notes))
        return report

    @property
    def device(self) -> torch.device:
        return self.temp.device

    @property
    def preprocess(self) -> Preprocess:
        """What clips must look like (task protocol): the backbone's frames, size and normalisation."""
        return self.backbone.preprocess

    # ------------------------------------------------------------------ encoders

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, C, H, W) -> normalised float32 on the model's device."""
        if video.dtype != torch.uint8:
            raise TypeError(f"video_input must be uint8 (B, T, C, H, W), got {video.dtype}")
        video = video.to(self.device, non_blocking=True)
        return video.float() * self.pixel_scale + self.pixel_shift

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Frozen pooled text, normalised: N strings -> (N, E).

        With the backbone in eval mode the features come from ``text_cache`` (keys read from the CPU
        tokens, so no device sync); in train mode the text tower may apply dropout, so they are computed.
        """
        if len(texts) == 0:
            raise ValueError("encode_text got an empty list of captions")
        tokens = self.backbone.tokenize(list(texts))  # CPU tensors
        device_type = self.device.type
        if self.backbone.training or device_type == "meta":  # meta: no autocast state to key on
            return self._text_features(tokens)
        return self.text_cache.encode(tokens, self._text_features, device_type)

    def _text_features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tokenised captions (N, L) -> normalised pooled text features (N, E) on the model's device."""
        tokens = {k: v.to(self.device, non_blocking=True) for k, v in tokens.items()}
        with torch.no_grad():
            pooled, _ = self.backbone.encode_text(tokens)  # (N, E)
        return normalize(pooled)

    def _frame_features(self, video: torch.Tensor, with_reversed: bool) -> dict[str, torch.Tensor]:
        """Frame features of the clips, then (with_reversed) of their reversals, stacked on dim 0."""
        feats = self.backbone.encode_frames(video)
        if not with_reversed:
            return feats
        if self.backbone.frame_order_invariant_frames and self.cfg.reuse_frame_features:
            reversed_feats = flip_time(feats)
        else:  # frames see each other (CLIP-ViP): the reversed clip needs its own pass
            reversed_feats = self.backbone.encode_frames(video.flip(1))
        return {k: torch.cat([feats[k], reversed_feats[k]], dim=0) for k in feats}

    def _backbone_fixed(self) -> bool:
        """Whether the feature cache may serve: eval mode (no dropout), nothing trainable, no hook inside."""
        if self.feature_cache.capacity == 0 or self.backbone.training:
            return False
        if any(p.requires_grad for p in self.backbone.parameters()):
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in self.backbone.modules())

    def _backbone_features(self, video: torch.Tensor, with_reversed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, T, C, H, W) -> frozen pooled (V*B, E) and tokens (V*B, T, P, Dv), views stacked on dim 0."""
        return self.backbone.aggregate(self._frame_features(self.normalize_video(video), with_reversed))

    def encode_video(
        self, video: torch.Tensor, *, with_reversed: bool = False, use_patcher: bool = True
    ) -> VideoEncoding:
        """uint8 (B, T, C, H, W) -> :class:`VideoEncoding` of 1 or 2 views (clip, reversed clip)."""
        views = 2 if with_reversed else 1
        with torch.no_grad():
            if not self._backbone_fixed():
                pooled, tokens = self._backbone_features(video, with_reversed)
            else:
                pooled, tokens = self.feature_cache.encode(
                    video, views, lambda clips: self._backbone_features(clips, with_reversed)
                )  # (V*B, E), (V*B, T, P, Dv)
        latents = fused = None
        if use_patcher:
            latents = self.patcher(tokens, views=views)  # (V*B, Q, D)
            if self.fuser is not None:
                fused = self.fuser(pooled, latents)  # (V*B, E)
        return VideoEncoding(pooled=pooled, latents=latents, fused=fused, views=views)

    # ------------------------------------------------------------------ scoring

    def logit_scale(self, module: str) -> torch.Tensor:
        """Multiplier turning cosine similarities into logits for ``module``."""
        if module == "backbone":
            return self.backbone.logit_scale()
        return 1.0 / self.temp

    def logits(self, video: torch.Tensor, text: torch.Tensor, module: str) -> torch.Tensor:
        """Normalised video (N, Q, D) | (N, D) x text (M, D) -> (N, M)."""
        return similarity(video, text) * self.logit_scale(module)

    def paired_logits(self, video: torch.Tensor, text: torch.Tensor, module: str) -> torch.Tensor:
        """Per-sample candidates (see :func:`paxion.systems.paxion.scoring.paired_similarity`) -> (B, K)."""
        return paired_similarity(video, text) * self.logit_scale(module)

    def candidate_logits(self, enc: VideoEncoding, candidates: list[list[str]], module: str) -> torch.Tensor:
        """B clips x their own K candidate texts -> (B, K)."""
        count = len(candidates[0])
        if any(len(c) != count for c in candidates):
            raise ValueError(f"every sample needs the same number of candidates, got {[len(c) for c in candidates]}")
        text = self.encode_text([t for cands in candidates for t in cands])
        text = rearrange(text, "(b k) d -> b k d", k=count)
        return self.paired_logits(enc.features(module), text, module)

    @property
    def train_module(self) -> str:
        return "patcher" if self.fuser is None else "fused"

    # ------------------------------------------------------------------ objectives

    def forward(self, batch: Batch, gather: bool = True) -> dict[str, torch.Tensor]:
        """Weighted losses of the configured objectives and their sum under ``"loss"``.

        ``gather=False`` computes the contrastive loss over this process's batch only (evaluation).
        """
        if "mcqa" in self.cfg.objectives:
            parts = self._mcqa_losses(batch)
        else:
            parts = self._contrastive_losses(batch, gather)
        parts["loss"] = torch.stack(list(parts.values())).sum()
        return parts

    def _contrastive_losses(self, batch: Batch, gather: bool) -> dict[str, torch.Tensor]:
        cfg, objectives = self.cfg, self.cfg.objectives
        use_atm = "atm" in objectives and self.fuser is None
        use_vac = "vac" in objectives and self.fuser is None
        captions = list(batch["text_input"])
        batch_size = len(captions)
        if use_vac:
            captions += _require(batch, "action_antonym_text_input", "objective 'vac'")
        enc = self.encode_video(batch["video_input"], with_reversed=use_atm)
        text = self.encode_text(captions)  # (B or 2B, E)
        video = enc.features(self.train_module)  # (V*B, Q, D) | (V*B, E)
        out = {}
        if "vtc" in objectives:
            out["vtc"] = cfg.loss_weights.vtc * losses.video_text_contrastive(
                video[:batch_size],
                text[:batch_size],
                self.temp,
                negative_text=text[batch_size:] if use_vac else None,
                label_smoothing=cfg.label_smoothing,
                gather_with_grad=cfg.gather_with_grad,
                gather=gather,
            )
        if use_atm:
            salient = None
            if cfg.state_change_filtering_for_atm:
                flags = _require(batch, "state_change_saliency_flag", "state_change_filtering_for_atm")
                salient = torch.as_tensor(flags, dtype=torch.bool).to(self.device, non_blocking=True)
            out["atm"] = cfg.loss_weights.atm * losses.action_temporal_matching(
                video[:batch_size],
                video[batch_size:],
                text[:batch_size],
                self.temp,
                salient=salient,
                label_smoothing=cfg.label_smoothing,
            )
        if not out:
            raise ValueError(f"model.objectives {objectives} produce no loss for this model")
        return out

    def _mcqa_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        candidates = [list(c) for c in _require(batch, "candidates", "objective 'mcqa'")]
        answer = torch.as_tensor(_require(batch, "answer", "objective 'mcqa'"))
        if "vac" in self.cfg.objectives and self.fuser is None:
            antonyms = _require(batch, "action_antonym_candidates", "objective 'vac' with 'mcqa'")
            answers = _host_answers(batch, answer)
            candidates = [
                cands + losses.pad_antonym_choices(list(ants), cands, ans)
                for cands, ants, ans in zip(candidates, antonyms, answers)
            ]
        enc = self.encode_video(batch["video_input"])
        logits = self.candidate_logits(enc, candidates, self.train_module)  # (B, 5) | (B, 10)
        answer = answer.to(self.device, non_blocking=True)
        loss = losses.multiple_choice(logits, answer, label_smoothing=self.cfg.label_smoothing)
        return {"mcqa": self.cfg.loss_weights.mcqa * loss}


def _host_answers(batch: Batch, answer: torch.Tensor) -> list[int]:
    """MCQA targets as Python ints for assembling candidate strings, without waiting for the device.

    ``collate`` keeps a host copy (``answer_list``) because the runner moves ``answer`` to the device
    before the step, where ``tolist()`` would be a device-to-host sync every step.
    """
    answers = batch.get("answer_list")
    if answers is None:  # a hand-built batch: free if ``answer`` is still on the CPU
        return answer.tolist()
    if len(answers) != len(answer):
        raise ValueError(f"batch 'answer_list' has {len(answers)} entries, 'answer' has {len(answer)}")
    return [int(a) for a in answers]


def _clear_caches(model: nn.Module, incompatible_keys: Any) -> None:
    model.text_cache.clear()
    model.feature_cache.clear()


def _require(batch: Batch, key: str, why: str) -> Any:
    if key not in batch or batch[key] is None:
        raise KeyError(f"batch has no '{key}', needed by {why}; batch keys: {sorted(batch)}")
    return batch[key]
