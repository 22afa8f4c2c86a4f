"""``classify``, ``answer``, ``retrieve``: one helper per capability, each through the task protocol's method
(the one its task calls), each failing with one line when the model lacks the capability."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from paxion.api.preprocess import Video, as_clips
from paxion.api.scoring import _model, clips_of, model_preprocess
from paxion.systems.paxion.model import PaxionModel
from paxion.tasks import alpro_metrics, protocol
from paxion.tasks.paxion_view import PaxionView
from paxion.tasks.qa import AnswerRankingQAConfig
from paxion.tasks.retrieval import RetrievalConfig, rerank_top_k

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".gif")
PROGRESS_FROM = 64  # videos: a progress bar from this many on


@dataclass
class Ranked:
    """Best first: ``names`` (label, answer or text), ``scores`` (probabilities), ``indices`` (in the list scored)."""

    names: list[str]
    scores: list[float]
    indices: list[int]

    @property
    def top(self) -> str:
        return self.names[0]


def _ranked(probs: torch.Tensor, names: Sequence[str], k: Optional[int]) -> Ranked:
    top = probs.float().topk(min(k or probs.numel(), probs.numel()))
    index = top.indices.tolist()
    return Ranked([str(names[i]) for i in index], top.values.tolist(), index)


def _view(model: nn.Module) -> Any:
    """The object protocol methods are called on (a Paxion model: its patcher, or fuser, scores)."""
    return PaxionView(model, model.train_module) if isinstance(model, PaxionModel) else model


def _require(model: Any, method: str, helper: str) -> Any:
    try:
        return protocol.require(model, method, helper)
    except protocol.MissingCapability:
        raise protocol.MissingCapability(f"{helper}: model.arch '{protocol.model_arch(model)}' cannot do this "
                                         f"(it has no '{method}')") from None


# --------------------------------------------------------------------------- classify


@torch.no_grad()
def classify(model: Any, video: Video, class_names: Optional[Sequence[str]] = None, k: int = 5) -> Ranked:
    """One clip -> the top-``k`` classes with probabilities (softmax of the model's logits).

    Open-VCLIP: zero-shot over ``class_names`` (each with its 28 prompt templates; kept for later calls) or
    the classes it holds. A closed-set classifier (VideoMAE): its outputs, named by ``class_names`` (one
    per output) or ``model.class_names``, else by index.
    """
    model = _model(model)
    logits_of = _require(model, "classify", "classify")
    if callable(getattr(model, "set_class_names", None)):  # open vocabulary
        if class_names is not None and list(class_names) != list(model.class_names):
            model.set_class_names(list(class_names))
        if not model.class_names:
            raise ValueError("classify: Open-VCLIP is open-vocabulary: pass class_names=[...]")
        class_names = model.class_names
    logits = logits_of(clips_of(model, video))[0]  # (C,)
    names = list(class_names or getattr(model, "class_names", None) or range(logits.numel()))
    if len(names) != logits.numel():
        raise ValueError(f"classify: {len(names)} class names for a model with {logits.numel()} outputs")
    return _ranked(logits.float().softmax(dim=-1), names, k)


# --------------------------------------------------------------------------- answer


@torch.no_grad()
def answer(model: Any, video: Video, question: str, candidates: Optional[Sequence[str]] = None,
           k: int = 5) -> Ranked:
    """One clip and a question -> the top-``k`` answers with probabilities.

    Singularity QA ranks ``candidates`` or its answer list (first-token top ``k_test``, then the whole answer's
    likelihood); ALPRO QA classifies over ``ans2label`` (``candidates`` restricts the choice to those
    answers); a model with ``score_candidates`` (Singularity retrieval's ITM, Paxion) picks among
    ``candidates`` (multiple choice).
    """
    model = _model(model)
    view, clip = _view(model), clips_of(model, video)
    if protocol.provides(view, "rank_answers"):
        answers = list(candidates or getattr(model, "answer_list", None) or [])
        if not answers:
            raise ValueError("answer: pass candidates=[...] (or load a config whose answer_list file exists)")
        state = view.encode_video_for_retrieval(clip)
        k_test = min(AnswerRankingQAConfig.k_test, len(answers))
        return _ranked(view.rank_answers(state, [question], answers, k_test)[0], answers, k)
    if protocol.provides(view, "answer_logits") and getattr(view, "classifier", True) is not None:
        probs = view.answer_logits(clip, [question])[0].float().softmax(dim=-1)
        names = list(getattr(model, "answer_names", None) or map(str, range(probs.numel())))
        if candidates is not None:
            unknown = [c for c in candidates if c not in names]
            if unknown:
                raise ValueError(f"answer: {unknown} are not in the model's answer vocabulary (ans2label)")
            keep = torch.tensor([names.index(c) for c in candidates])
            probs, names = probs[keep] / probs[keep].sum(), list(candidates)
        return _ranked(probs, names, k)
    if protocol.provides(view, "score_candidates"):
        if not candidates or len(candidates) < 2:
            raise ValueError(f"answer: model.arch '{protocol.model_arch(view)}' answers multiple choice: "
                             "pass candidates=[at least 2 answers]")
        state = view.encode_video_for_retrieval(clip)
        logits = view.score_candidates(state, [[f"{c}" for c in candidates]])[0]
        return _ranked(logits.float().softmax(dim=-1), list(candidates), k)
    raise protocol.MissingCapability(f"answer: model.arch '{protocol.model_arch(view)}' cannot answer questions "
                                     "(no rank_answers, answer_logits or score_candidates)")


# --------------------------------------------------------------------------- retrieve


@dataclass
class Retrieval:
    """Scores of every video against every text, both directions, as the retrieval task ranks them.

    ``v2t`` (Nv, Nt): each video's scores of the texts; ``t2v`` (Nt, Nv): each text's scores of the
    videos (re-ranked models: re-scored top ``k_test``, every other entry -100, as the task).
    """

    videos: list[str]
    texts: list[str]
    v2t: torch.Tensor
    t2v: torch.Tensor
    k: int = 5

    def texts_for(self, video: int) -> Ranked:
        """The top-k texts of video ``video`` (scores: the model's, not probabilities)."""
        return _ranked(self.v2t[video], self.texts, self.k)

    def videos_for(self, text: int) -> Ranked:
        return _ranked(self.t2v[text], self.videos, self.k)


def _video_list(videos: Union[str, Path, Sequence[Video], torch.Tensor]) -> list[Video]:
    if isinstance(videos, (str, Path)):
        folder = Path(videos)
        if not folder.is_dir():
            raise ValueError(f"retrieve: '{folder}' is not a folder (pass a folder or a list of videos)")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise ValueError(f"retrieve: no video files ({', '.join(VIDEO_SUFFIXES)}) in '{folder}'")
        return list(found)
    if isinstance(videos, torch.Tensor) and videos.dim() == 5:
        return list(videos.split(1))
    return list(videos)


def _progress(items: list, label: str) -> Any:
    if len(items) < PROGRESS_FROM:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="batch")


@torch.no_grad()
def retrieve(model: Any, videos: Union[str, Path, Sequence[Video], torch.Tensor], texts: Sequence[str],
             k: int = 5, batch_size: int = 16, rerank: bool = True, k_test: int = RetrievalConfig.k_test) -> Retrieval:
    """Videos (a folder, a list of files / frames / clips, or clips (N, T, C, S, S)) against texts, both ways.

    Scores are the retrieval task's: the model's similarity rows (``retrieval_rows``) and, with ``rerank``
    and a re-ranker (``score_pairs``), Singularity's top-``k_test`` ITM re-ranking (the rest -100) or ALPRO's
    VTM on every pair. Videos go through ``preprocess`` and the model ``batch_size`` at a time, with a progress bar on
    long lists.
    """
    model = _model(model)
    view, texts = _view(model), list(texts)
    if not texts:
        raise ValueError("retrieve: no texts")
    encode = _require(view, "encode_video_for_retrieval", "retrieve")
    _require(view, "encode_text_for_retrieval", "retrieve")
    items = _video_list(videos)
    preprocess = model_preprocess(model)
    batches = [items[i: i + batch_size] for i in range(0, len(items), batch_size)]
    states = [encode(torch.cat([as_clips(preprocess, v) for v in batch])) for batch in _progress(batches, "videos")]
    video = {key: value.cpu() for key, value in protocol.cat_states(states).items()}
    text = protocol.encode_texts(view, texts, RetrievalConfig.text_batch_size, "retrieve")
    text = {key: value.cpu() for key, value in text.items()}
    v2t = protocol.retrieval_rows(view, video, text, "v2t").float().cpu()
    t2v = protocol.retrieval_rows(view, video, text, "t2v").float().cpu()
    if rerank and protocol.provides(view, "score_pairs"):
        if getattr(getattr(view, "cfg", None), "retrieval_protocol", None) == "alpro":  # ALPRO: every pair
            v2t = alpro_metrics.all_pair_scores(view.score_pairs, video, text, RetrievalConfig.pair_batch_size,
                                                view.device)
            t2v = v2t.t().contiguous()
        else:
            pairs = RetrievalConfig.pair_batch_size
            v2t = rerank_top_k(view, v2t, video, text, "v2t", k_test, pairs, "retrieve")
            t2v = rerank_top_k(view, t2v.contiguous(), text, video, "t2v", k_test, pairs, "retrieve")
    names = [str(v) if isinstance(v, (str, Path)) else f"video {i}" for i, v in enumerate(items)]
    return Retrieval(names, texts, v2t, t2v, k)
