"""The Python API, LAVIS-style: one ``load_model`` for every system, a model zoo, one helper per capability.

    import paxion

    paxion.list_models("singularity*")                     # {name: "system | backbone | task | release file"}
    model, preprocess, tokenizer = paxion.load_model("embedded_default")
    video = preprocess("clip.mp4")                         # uint8 (1, T, C, S, S), as the model's eval data
    paxion.score_captions(model, video, ["Book falling", "Book rising"])   # every video-text model
    paxion.score_reversal(model, video, "Book falling")    # [clip, time-reversed clip]
    paxion.classify(model, video, class_names)             # Open-VCLIP zero-shot, VideoMAE closed set
    paxion.answer(model, video, "what is falling?")        # Singularity / ALPRO QA, multiple choice
    paxion.retrieve(model, "videos/", texts)               # both directions, batched

Modules: :mod:`~paxion.api.zoo` (names), :mod:`~paxion.api.loading` (``load_model``),
:mod:`~paxion.api.preprocess` (video and text input), :mod:`~paxion.api.scoring` (captions, reversal),
:mod:`~paxion.api.capabilities` (classify, answer, retrieve), :mod:`~paxion.api.frozen` (bare backbones).
"""

from paxion.api.capabilities import Ranked, Retrieval, answer, classify, retrieve
from paxion.api.frozen import FrozenBackbone
from paxion.api.loading import (EMBEDDED_PATCHER, SHIPPED_BACKBONE, SHIPPED_PATCHER, LoadedModel, load_model,
                                model_tokenizer)
from paxion.api.preprocess import Tokenizer, Video, VideoPreprocess, asset
from paxion.api.scoring import Scores, model_preprocess, score_captions, score_reversal
from paxion.api.zoo import CONFIG_ROOT, PRESETS, ZOO, list_models

__all__ = [
    "CONFIG_ROOT", "EMBEDDED_PATCHER", "PRESETS", "SHIPPED_BACKBONE", "SHIPPED_PATCHER", "ZOO", "FrozenBackbone",
    "LoadedModel", "Ranked", "Retrieval", "Scores", "Tokenizer", "Video", "VideoPreprocess", "answer", "asset",
    "classify", "list_models", "load_model", "model_preprocess", "model_tokenizer", "retrieve", "score_captions",
    "score_reversal",
]
