"""The model protocol: the few methods a task asks of a model, so one task serves every system.

A model is any registered ``nn.Module`` (registry kind "model", chosen by ``model.arch``) whose
``forward(batch) -> {"loss": total, ...}`` trains it and which exposes ``preprocess`` (a
:class:`paxion.backbones.base.Preprocess`), ``normalize_video`` and ``device``. Beyond that, each
task needs only its *capability*, checked by :func:`require` (duck typing, a clear error naming the
method and the model's arch when it is missing):

====================================  ===================================================================
capability                            used by
====================================  ===================================================================
``encode_video_for_retrieval``        retrieval, zero-shot classification: uint8 (B, T, C, H, W) ->
                                      state dict, key ``"embed"`` L2-normalised (B, E) | (B, Q, E)
``encode_text_for_retrieval``         same: list of M strings -> state dict, key ``"embed"`` (M, E)
``retrieval_similarity`` (optional)   (Nv, E|Q,E) x (Nt, E) -> (Nv, Nt); default :func:`dot_similarity`
``retrieval_rows`` (optional)         (video_state, text_state, direction) -> query-row scores, for
                                      models whose scores depend on the query side (a softmax over
                                      candidates, ensembles); default: the similarity (transposed for t2v)
``score_pairs`` (optional)            (video_state, text_state) indexed to P pairs -> (P,) re-ranker
``classify``                          closed-set classification: uint8 video -> logits (B, C)
``rank_answers``                      generative QA: (video_state, questions, answer_list, k) -> (B, A)
``answer_logits``                     QA as classification: (uint8 video, questions) -> (B, num_answers)
``score_candidates``                  multiple-choice QA: (video_state, candidates [B][K]) -> (B, K)
====================================  ===================================================================

State dicts hold tensors whose first dim is the sample count (B, or M for texts), so tasks can
slice, index and gather them key by key (:func:`index_state`, :func:`cat_states`). The video state
``encode_video_for_retrieval`` returns is also what ``score_pairs``, ``rank_answers`` and
``score_candidates`` receive.

Batches (``paxion.tasks.common.collate_with_extras``) that ``forward`` trains on:

* every task: ``video_input`` uint8 (B, T, C, H, W), ``idx`` (B,);
* retrieval: ``text_input`` list[str] and ``video_idx`` (B,) int64, equal ids = positives (the same
  video, or the same caption for multi-video ground truth as SSv2);
* answer-ranking QA: ``question_input`` list[str], ``answer_input`` list[list[str]] (each question's
  distinct answers, no end-of-sequence token) and ``answer_weights`` list[list[float]];
* multiple choice: ``candidates`` list[list[str]] and ``answer`` (B,) int64.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from paxion.backbones.base import Preprocess
from paxion.systems.paxion.scoring import similarity

State = dict[str, torch.Tensor]  # every tensor has the sample count as dim 0

CAPABILITIES: dict[str, str] = {
    "encode_video_for_retrieval": "uint8 video (B, T, C, H, W) -> {'embed': (B, E) | (B, Q, E), ...}",
    "encode_text_for_retrieval": "texts (M,) -> {'embed': (M, E), ...}",
    "retrieval_similarity": "video embed x text embed -> (Nv, Nt)",
    "retrieval_rows": "(video_state, text_state, direction) -> query-row scores",
    "score_pairs": "(video_state, text_state) of P pairs -> (P,) re-ranking scores",
    "classify": "uint8 video -> class logits (B, C)",
    "rank_answers": "(video_state, questions, answer_list, k) -> answer scores (B, A)",
    "answer_logits": "(uint8 video, questions) -> (B, num_answers)",
    "score_candidates": "(video_state, candidates [B][K]) -> (B, K)",
}


@runtime_checkable
class TaskModel(Protocol):
    """What every model offers a task."""

    preprocess: Preprocess

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...

    def normalize_video(self, video: torch.Tensor) -> torch.Tensor: ...

    @property
    def device(self) -> torch.device: ...


class RetrievalModel(Protocol):
    def encode_video_for_retrieval(self, video: torch.Tensor) -> State: ...

    def encode_text_for_retrieval(self, texts: list[str]) -> State: ...


class PairScorer(Protocol):
    def score_pairs(self, video_state: State, text_state: State) -> torch.Tensor: ...


class Classifier(Protocol):
    def classify(self, video: torch.Tensor) -> torch.Tensor: ...


class AnswerRanker(Protocol):
    def rank_answers(
        self, video_state: State, questions: list[str], answer_list: list[str], k: int
    ) -> torch.Tensor: ...


class AnswerClassifier(Protocol):
    def answer_logits(self, video: torch.Tensor, questions: list[str]) -> torch.Tensor: ...


class CandidateScorer(Protocol):
    def score_candidates(self, video_state: State, candidates: list[list[str]]) -> torch.Tensor: ...


class MissingCapability(TypeError):
    """A task asked a model for a method it does not provide."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def model_arch(model: Any) -> str:
    """The registry name of ``model`` (its ``cfg.arch``), else its class name."""
    cfg = getattr(model, "cfg", None)
    return str(getattr(cfg, "arch", None) or type(model).__name__)


def provides(model: Any, method: str) -> bool:
    """Whether ``model`` offers the capability ``method``."""
    return callable(getattr(model, method, None))


def require(model: Any, method: str, task: str) -> Callable[..., Any]:
    """The bound method ``method`` of ``model``; raises :class:`MissingCapability` naming task, method and arch."""
    if method not in CAPABILITIES:
        raise KeyError(f"'{method}' is not a protocol capability; valid: {sorted(CAPABILITIES)}")
    if not provides(model, method):
        raise MissingCapability(
            f"task '{task}' needs model method '{method}' ({CAPABILITIES[method]}), "
            f"which model.arch '{model_arch(model)}' does not provide"
        )
    return getattr(model, method)


def eval_num_frames(model: Any) -> int:
    """Frames per clip for evaluation splits: ``num_frames_test`` when the model has it."""
    frames = getattr(model, "num_frames_test", None)
    return int(frames) if frames else int(model.preprocess.num_frames)


def dot_similarity(video_embed: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
    """Default retrieval similarity: (Nv, E) | (Nv, Q, E) x (Nt, E) -> (Nv, Nt), max over Q."""
    return similarity(video_embed, text_embed)


def retrieval_similarity(model: Any, video_embed: torch.Tensor, text_embed: torch.Tensor) -> torch.Tensor:
    """The model's own ``retrieval_similarity`` when it has one, else :func:`dot_similarity`."""
    if provides(model, "retrieval_similarity"):
        return model.retrieval_similarity(video_embed, text_embed)
    return dot_similarity(video_embed, text_embed)


def retrieval_rows(model: Any, video_state: State, text_state: State, direction: str) -> torch.Tensor:
    """Scores of the query rows: ``v2t`` -> (Nv, Nt), ``t2v`` -> (Nt, Nv)."""
    if provides(model, "retrieval_rows"):
        return model.retrieval_rows(video_state, text_state, direction)
    sim = retrieval_similarity(model, video_state["embed"], text_state["embed"]).float()
    return sim if direction == "v2t" else sim.t()


def index_state(state: State, index: torch.Tensor | slice) -> State:
    """Rows ``index`` of every tensor of a state dict."""
    return {key: value[index] for key, value in state.items()}


def cat_states(states: list[State]) -> State:
    """Concatenate state dicts along dim 0, key by key."""
    if not states:
        raise ValueError("cat_states got no states")
    return {key: torch.cat([s[key] for s in states]) for key in states[0]}


def encode_texts(model: Any, texts: list[str], batch_size: int, task: str) -> State:
    """``encode_text_for_retrieval`` over a long list, in batches of ``batch_size``."""
    encode = require(model, "encode_text_for_retrieval", task)
    return cat_states([encode(texts[i: i + batch_size]) for i in range(0, len(texts), batch_size)])


def prefixed(state: State, prefix: str) -> dict[str, torch.Tensor]:
    """A state as flat eval outputs (``prefix.key``), which the runner gathers across ranks."""
    return {f"{prefix}.{key}": value for key, value in state.items()}


def unprefixed(outputs: dict[str, Any], prefix: str) -> State:
    """The state stored by :func:`prefixed`."""
    start = f"{prefix}."
    return {key[len(start):]: value for key, value in outputs.items() if key.startswith(start)}
