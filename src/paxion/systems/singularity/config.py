"""Singularity's knobs: one dataclass per registered model, widths from a named size preset.

Widths and depths come from :class:`paxion.backbones.singularity.SingularityConfig` (one home for
them): ``size`` names a preset and ``size_overrides`` replaces single fields of it, e.g.
``model.size_overrides.image_size=336``. The rows of the temporal embedding are ``num_frames``
(training frames), as in the original, whatever the preset says.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from paxion.backbones.singularity.model import SINGULARITY_TINY, SingularityConfig

SIZES: dict[str, SingularityConfig] = {
    "base": SingularityConfig(),  # BEiT-B/16 + BERT-base, fusion layers 9..11
    # test-sized: 2 text-only layers + 2 fusion layers (so the QA decoder has 2 layers)
    "tiny": dataclasses.replace(SINGULARITY_TINY, text_layers=4, fusion_layer=2),
}
FRAME_ENSEMBLES = ("concat", "mean", "max", "lse")
RETRIEVAL_OBJECTIVES = ("itc", "itm", "mlm")


@dataclass
class LossWeights:
    itc: float = 1.0
    itm: float = 1.0
    mlm: float = 1.0


@dataclass
class SingularityVideoConfig:
    """What both Singularity models share: the video side and the text encoder."""

    size: str = "base"  # width preset: base | tiny
    size_overrides: dict[str, Any] = field(default_factory=dict)
    num_frames: int = 1  # training frames; rows of temporal_embeddings
    num_frames_test: int = 4  # frames of evaluation clips
    add_temporal_embed: bool = False  # the temporal (4-frame) release: true
    temporal_encoder: bool = False  # 2-layer temporal BERT over frames; the temporal release: true
    update_pooler_embed: bool = False  # pooled frame vector from the temporal encoder's CLS token
    frame_ensemble: str = "concat"  # test time: concat (early fusion) | mean | max | lse over frames (late)
    pretrained: Optional[str] = None  # official .pth (pre-trained or ckpt_best) or our own checkpoint

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"model.size: '{self.size}' is not one of {sorted(SIZES)}")
        if self.frame_ensemble not in FRAME_ENSEMBLES:
            raise ValueError(f"model.frame_ensemble: '{self.frame_ensemble}' is not one of {list(FRAME_ENSEMBLES)}")
        if self.frame_ensemble != "concat" and self.num_frames != 1:
            raise ValueError(
                f"model.frame_ensemble: '{self.frame_ensemble}' (late fusion) needs a 1-frame model "
                f"(model.num_frames=1), got num_frames={self.num_frames}"
            )
        if self.num_frames < 1 or self.num_frames_test < 1:
            raise ValueError("model.num_frames and model.num_frames_test must be >= 1")
        self.widths()  # unknown override keys fail here, at config time

    def widths(self) -> SingularityConfig:
        """The preset with the overrides and ``num_frames`` applied."""
        fields = {f.name for f in dataclasses.fields(SingularityConfig)}
        unknown = sorted(set(self.size_overrides) - fields)
        if unknown:
            raise ValueError(f"model.size_overrides: unknown {unknown}; valid: {sorted(fields)}")
        return dataclasses.replace(SIZES[self.size], **dict(self.size_overrides), num_frames=self.num_frames)


@dataclass
class SingularityRetrievalConfig(SingularityVideoConfig):
    """Defaults = the original's downstream retrieval fine-tuning (ret_msrvtt.yaml)."""

    arch: str = "singularity_retrieval"
    objectives: list[str] = field(default_factory=lambda: ["itc", "itm"])  # pre-training adds "mlm"
    loss_weights: LossWeights = field(default_factory=LossWeights)
    itm_hard_neg: bool = True  # ITM negatives drawn from the similarity softmax (else uniformly)
    mlm_prob: float = 0.5
    max_txt_l: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [o for o in self.objectives if o not in RETRIEVAL_OBJECTIVES]
        if unknown or not self.objectives:
            raise ValueError(f"model.objectives: {list(self.objectives)}; choose from {list(RETRIEVAL_OBJECTIVES)}")


@dataclass
class SingularityQAConfig(SingularityVideoConfig):
    """Defaults = the original's MSRVTT-QA fine-tuning (qa_msrvtt.yaml)."""

    arch: str = "singularity_qa"
    max_q_len: int = 25
    max_a_len: int = 5
    eos: str = "[SEP]"  # appended to every answer
