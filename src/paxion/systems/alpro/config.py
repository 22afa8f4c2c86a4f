"""ALPRO's knobs: one dataclass, defaults = downstream retrieval fine-tuning (``msrvtt_ret.json``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from paxion.backbones.timesformer.alpro import ALPRO_BASE, ALPRO_TINY, AlproWidths
from paxion.systems.alpro.objectives import IGNORE_RULES

SIZES: dict[str, AlproWidths] = {"base": ALPRO_BASE, "tiny": ALPRO_TINY}
OBJECTIVES = ("vtc", "vtm", "mlm", "pem", "qa")


@dataclass
class AlproLossWeights:
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    pem: float = 1.0
    qa: float = 1.0


@dataclass
class PromptBankConfig:
    """PEM's entity-prompt bank, built once by the frozen Prompter from entities x templates."""

    entities: list[str] = field(default_factory=list)  # inline list, or
    entity_file: Optional[str] = None  # one entity per line, first word used (the original's unigrams.txt)
    num_entities: int = 1000  # first N entities of the file
    prompt_len: int = 15  # prompts padded / cut to this many tokens
    ignore_rule: str = "paper"  # paper: top probability < 0.2 ignored | code: argmax index < 0.2 (entity 0)

    def __post_init__(self) -> None:
        if self.ignore_rule not in IGNORE_RULES:
            raise ValueError(f"model.prompts.ignore_rule: '{self.ignore_rule}' is not one of {list(IGNORE_RULES)}")


@dataclass
class AlproConfig:
    arch: str = "alpro"
    size: str = "base"  # width preset: base | tiny
    # Typed Any (default None) so that a YAML layer or the command line can add keys: a dict-typed field
    # would be a closed struct under the config loader.
    size_overrides: Any = None  # dict, e.g. {text_layers: 12, init_std: 0.2}; video: video_overrides
    video_overrides: Any = None  # dict, e.g. {gradient_checkpointing: true}
    num_frames: int = 8  # training frames; rows of time_embed
    num_frames_test: int = 0  # 0: num_frames
    gradient_checkpointing: bool = False  # recompute TimeSformer blocks in backward (16-frame QA)
    objectives: list[str] = field(default_factory=lambda: ["vtc", "vtm"])  # pre-training: + mlm, pem; QA: [qa]
    loss_weights: AlproLossWeights = field(default_factory=AlproLossWeights)
    max_txt_len: int = 40  # pre-training 30; QA questions 40
    mlm_prob: float = 0.15
    num_answers: int = 0  # QA: size of ans2label (the classifier's outputs)
    prompts: PromptBankConfig = field(default_factory=PromptBankConfig)
    prompter_checkpoint: Optional[str] = None  # PEM teacher: a VTC-only model's file (release or ours)
    pretrained: Optional[str] = None  # alpro_pretrained_ckpt.pt, a fine-tuned release file, or ours
    retrieval_protocol: str = "alpro"  # alpro: every pair by softmax(VTM)[1] | lavis: VTC top-k, then VTM + VTC

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"model.size: '{self.size}' is not one of {sorted(SIZES)}")
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise ValueError(f"model.objectives: {list(self.objectives)}; choose from {list(OBJECTIVES)}")
        if "qa" in self.objectives and self.num_answers < 1:
            raise ValueError("model.objectives has 'qa': set model.num_answers (entries of ans2label)")
        if self.retrieval_protocol not in ("alpro", "lavis"):
            raise ValueError(f"model.retrieval_protocol: '{self.retrieval_protocol}' is not alpro | lavis")
        self.widths()

    def widths(self) -> AlproWidths:
        sizes = _mapping(self.size_overrides, "size_overrides")
        videos = _mapping(self.video_overrides, "video_overrides")
        fields = {f.name for f in dataclasses.fields(AlproWidths)} - {"video"}
        unknown = sorted(set(sizes) - fields)
        if unknown:
            raise ValueError(f"model.size_overrides: unknown {unknown}; valid: {sorted(fields)}")
        preset = SIZES[self.size]
        video = {"gradient_checkpointing": self.gradient_checkpointing, **videos, "num_frames": self.num_frames}
        # video first, so that size_overrides may change text_width together with video_overrides' width
        return dataclasses.replace(preset, video=dataclasses.replace(preset.video, **video), **sizes)


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"model.{key} must be a mapping of width names to values, got {value!r}")
    return {str(k): v for k, v in value.items()}
