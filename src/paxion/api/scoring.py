"""``score_captions`` / ``score_reversal``: does a video-text model know the action? Any system, its own scoring.

* Paxion: the model's ``paired_logits`` per module (``backbone``, ``patcher``, ``fused``), as the
  ActionBench task's Paxion path;
* every other video-text model: the task protocol's probe scoring (:mod:`paxion.tasks.probe_scoring`),
  the very functions ``task: actionbench`` calls: the retrieval similarity (Singularity ``itc``, ALPRO
  ``vtc``, Open-VCLIP and a frozen backbone ``similarity``) and, where the model has a re-ranker, its pair
  scores (Singularity ``itm``: ITC + ITM re-rank, whose top k holds every candidate; ALPRO ``vtm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from paxion.api.loading import LoadedModel, _loaded
from paxion.api.preprocess import Video, VideoPreprocess, as_clips
from paxion.systems.paxion.model import PaxionModel
from paxion.tasks.probe_scoring import caption_choice_scores, encode_clips, reversal_choice_scores
from paxion.tasks.protocol import model_arch, provides, unwrap_model

# model.arch -> names of its (similarity, pair re-ranker) scorers
SCORER_NAMES = {"singularity_retrieval": ("itc", "itm"), "alpro": ("vtc", "vtm")}
DEFAULT_SCORERS = ("similarity", "pairs")
PAXION_MODULES = ("backbone", "patcher", "fused")
KNOWN_SCORERS = (*PAXION_MODULES, "itc", "itm", "vtc", "vtm", *DEFAULT_SCORERS)


@dataclass
class Scores:
    """Probabilities over the candidates (softmax of the model's scores), one list per scorer.

    ``texts``: the candidates (the captions; ``["clip", "reversed clip"]`` for a reversal). Scorers, read as
    attributes (``scores.patcher``, ``scores.itm``) or from ``scorers``: Paxion ``backbone`` (the frozen
    backbone), ``patcher`` (the Knowledge Patcher), ``fused`` (Patch & Fuse models); Singularity ``itc`` and
    ``itm``; ALPRO ``vtc`` and ``vtm``; Open-VCLIP and frozen backbones ``similarity``. A scorer the
    model lacks reads as None.
    """

    texts: list[str]
    scorers: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"texts": [...], <scorer>: [...], ...}`` (what ``inference`` writes to scores.json)."""
        return {"texts": list(self.texts), **self.scorers}

    def __getattr__(self, name: str) -> Any:
        scorers = self.__dict__.get("scorers", {})
        if name in scorers:
            return scorers[name]
        if name in KNOWN_SCORERS:
            return None
        raise AttributeError(f"Scores has no scorer '{name}'; this model's: {sorted(scorers)}")


def _model(model: Any) -> nn.Module:
    """A model or load_model's tuple -> the model."""
    return model.model if isinstance(model, LoadedModel) else unwrap_model(model)


def model_preprocess(model: nn.Module) -> VideoPreprocess:
    """The model's :class:`VideoPreprocess` (frames and size; default decoding) for raw videos given to helpers."""
    return _loaded(model, None).preprocess


def clips_of(model: nn.Module, video: Video) -> torch.Tensor:
    """One video -> uint8 (1, T, C, S, S); a batch is refused (the helpers score one clip)."""
    if not callable(getattr(model, "normalize_video", None)) or getattr(model, "preprocess", None) is None:
        raise TypeError(f"{type(model).__name__} is not a paxion model (paxion.load_model gives one)")
    clip = as_clips(model_preprocess(model), video)
    if clip.shape[0] != 1:
        raise ValueError(f"score one clip at a time: got a batch of {clip.shape[0]}")
    return clip


def _protocol_scorers(model: nn.Module) -> dict[str, bool]:
    """Scorer name -> use_pair_scorer, for a non-Paxion model; a clear error when it cannot score text."""
    arch = model_arch(model)
    if not (provides(model, "encode_text_for_retrieval") and provides(model, "encode_video_for_retrieval")):
        raise TypeError(f"model.arch '{arch}' has no video-text scoring (no encode_text_for_retrieval): "
                        "score_captions / score_reversal need a video-text model")
    objectives = set(getattr(getattr(model, "cfg", None), "objectives", None) or ())
    if arch == "alpro" and not objectives & {"vtc", "vtm"}:
        raise TypeError(f"this ALPRO model (objectives {sorted(objectives)}) has no trained VTC / VTM head: "
                        "load a retrieval or pre-trained ALPRO to score captions")
    similarity, pairs = SCORER_NAMES.get(arch, DEFAULT_SCORERS)
    out = {similarity: False}
    if provides(model, "score_pairs") and (arch != "alpro" or "vtm" in objectives):
        out[pairs] = True
    return out


def _paxion_modules(model: PaxionModel) -> tuple[str, ...]:
    return PAXION_MODULES[:2] if model.fuser is None else PAXION_MODULES


@torch.no_grad()
def score_captions(model: Any, video: Video, captions: Sequence[str]) -> Scores:
    """One clip against K captions (a caption and its action antonym, say) -> probabilities over the K.

    ``video``: a file, uint8 frames, or ``preprocess(...)``'s (1, T, C, S, S) output.
    """
    if isinstance(captions, str) or len(captions) < 2:
        raise ValueError(f"score_captions needs a list of at least 2 captions, got {captions!r}")
    model = _model(model)
    clip, captions = clips_of(model, video), list(captions)
    if isinstance(model, PaxionModel):
        enc = model.encode_video(clip, use_patcher=True)
        text = model.encode_text(captions)[None]  # (1, K, E)
        return Scores(captions, {m: model.paired_logits(enc.features(m), text, m).float().softmax(dim=-1)[0].tolist()
                                 for m in _paxion_modules(model)})
    scorers = _protocol_scorers(model)
    state = encode_clips(model, clip, with_reversed=False)
    return Scores(captions, {name: caption_choice_scores(model, state, [captions], pairs)[0].tolist()
                             for name, pairs in scorers.items()})


@torch.no_grad()
def score_reversal(model: Any, video: Video, caption: str) -> Scores:
    """Video Reversal: one caption against [clip, time-reversed clip] -> probabilities over the two clips."""
    if not isinstance(caption, str):
        raise ValueError(f"score_reversal takes one caption (a string), got {caption!r}")
    model = _model(model)
    clip = clips_of(model, video)
    views = ["clip", "reversed clip"]
    if isinstance(model, PaxionModel):
        enc = model.encode_video(clip, with_reversed=True, use_patcher=True)
        text = model.encode_text([caption])  # (1, E)
        return Scores(views, {m: model.paired_logits(enc.split_views(enc.features(m)), text, m).float()
                              .softmax(dim=-1)[0].tolist() for m in _paxion_modules(model)})
    scorers = _protocol_scorers(model)
    state = encode_clips(model, clip, with_reversed=True)
    return Scores(views, {name: reversal_choice_scores(model, state, [caption], pairs)[0].tolist()
                          for name, pairs in scorers.items()})
