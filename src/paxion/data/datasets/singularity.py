"""Singularity's downstream annotation files: retrieval, open-ended QA and multiple-choice QA.

Formats (one JSON list per split, video names relative to ``videos``):

* retrieval  ``{"video": name | [names], "caption": str | [str], "duration"?: float}``
  (``"image"`` is accepted for ``"video"``). Paragraph retrieval (DiDeMo, ActivityNet Captions) joins
  a video's captions with spaces into one text. ``max_seconds`` reads only the start of every video
  (a ``segment`` (0, max_seconds) on each record): DiDeMo's default 30 s is the window of the release's
  ``didemo_2fps_360_trimed30`` videos, so untrimmed files are read as the trimmed ones. Multi-vision GT (SSv2-label/-template): each item is
  one caption whose ``video`` list holds all its ground-truth videos.
* QA         ``{"video", "question", "answer": str | [str], "question_id"?, "answer_type"?}`` plus the
  dataset's ``answer_list`` JSON (a list of answer strings shared by every split).
* MC         ``{"video", "caption": [5 str], "answer": int}`` (MSRVTT-MC).

Samples: retrieval training ``text`` + ``video_idx`` (equal ids = positives: the video, or the caption
for multi-vision GT); retrieval evaluation one sample per video with ``text_idx`` (first caption) and
``text_ids`` (all its captions) into the split's ``texts``; QA ``question``, ``answers`` /
``answer_weights`` (training), ``answer_text`` (evaluation), ``question_type``, ``question_id``;
MC ``candidates`` and ``answer``. Captions and questions go through ``singularity_text`` (the
original's lower-casing and punctuation removal) by default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from paxion.data.annotations import AnnotationError, field, read_json, read_json_list
from paxion.data.base import DatasetBuilder, LoadedSplit, VideoDataConfig, VideoDataset, drop_missing
from paxion.data.text import TextProcessor, build_text_processor
from paxion.registry import registry

ANN_ROOT = "${paths.data_root}/anno_downstream"
VIDEO_ROOT = "${paths.data_root}/videos_images"
QUESTION_WORDS = ("what", "who", "how", "where", "when", "which", "why")


def pre_text(text: str, max_words: Optional[int] = None) -> str:
    """Singularity's caption cleaning: lower case, drop ``,.'!?"()*#:;~``, ``-``/``/`` to spaces."""
    text = re.sub(r"([,.'!?\"()*#:;~])", "", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    words = text.split(" ")
    return " ".join(words[:max_words]) if max_words and len(words) > max_words else text


@registry.register("processor", "singularity_text")
def singularity_text(prompt: str = "", max_words: int = 50) -> TextProcessor:
    """``pre_text`` without truncation (the original truncates by tokens, ``max_txt_l``, not words)."""
    del max_words
    return lambda caption: prompt + pre_text(caption)


@dataclass
class SingularityDataConfig(VideoDataConfig):
    ann_root: str = ANN_ROOT
    videos: str = "???"
    train_file: Optional[str] = None  # annotation file of each split under ann_root; None: no such split
    val_file: Optional[str] = None
    test_file: Optional[str] = None
    frame_sampling: str = "segments"  # Singularity's "rand" (training) / "middle" (evaluation), padded
    text_processor: str = "singularity_text"
    color_jitter: bool = False  # the original's video transforms have no colour jitter

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.files():
            raise ValueError("give the annotation file of at least one split (train_file, val_file, test_file)")

    def files(self) -> dict[str, str]:
        """split -> annotation file name."""
        named = {"train": self.train_file, "val": self.val_file, "test": self.test_file}
        return {split: name for split, name in named.items() if name}


class SingularityBuilder(DatasetBuilder):
    """Shared by the three formats: file per split, video paths, text processing."""

    Config = SingularityDataConfig

    @property
    def splits(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.cfg.files())

    def items(self, split: str) -> tuple[Path, list[dict[str, Any]]]:
        path = Path(self.cfg.ann_root) / self.cfg.files()[split]
        return path, read_json_list(path)

    def text(self) -> TextProcessor:
        return build_text_processor(self.cfg.text_processor, self.cfg.text_prompt, self.cfg.max_words)

    def video_names(self, item: dict[str, Any], where: str) -> list[str]:
        key = "video" if "video" in item else "image"
        names = field(item, key, where, lambda v: [v] if isinstance(v, str) else list(v))
        if not names:
            raise AnnotationError(f"{where}: empty '{key}' list")
        return [str(n) for n in names]

    def video_path(self, name: str) -> Path:
        return Path(self.cfg.videos) / name


@dataclass
class RetrievalDataConfig(SingularityDataConfig):
    paragraph: bool = False  # DiDeMo / ActivityNet Captions: a video's captions joined into one text
    multi_vision_gt: bool = False  # SSv2-label/-template: each caption has several ground-truth videos
    max_seconds: Optional[float] = None  # read only the first N seconds of each video (DiDeMo: 30)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be a positive number of seconds or null, got {self.max_seconds}")


@registry.register("dataset", "singularity_retrieval")
class SingularityRetrievalData(SingularityBuilder):
    """Any retrieval file in Singularity's format; the named datasets below only change defaults."""

    Config = RetrievalDataConfig
    name = "singularity_retrieval"

    def captions(self, item: dict[str, Any], where: str) -> list[str]:
        raw = field(item, "caption", where, lambda v: [v] if isinstance(v, str) else list(v))
        if not raw or not all(isinstance(c, str) for c in raw):
            raise AnnotationError(f"{where}: 'caption' must be a string or a non-empty list of strings")
        return [" ".join(raw)] if self.cfg.paragraph else raw

    def load(self, split: str) -> LoadedSplit:
        path, items = self.items(split)
        proc, training = self.text(), split == "train"
        records: list[dict[str, Any]] = []
        texts: list[str] = []
        group: dict[str, int] = {}  # training positives: video name (or caption for multi-vision GT)
        for i, item in enumerate(items):
            where = f"{path}[item {i}]"
            names, captions = self.video_names(item, where), [proc(c) for c in self.captions(item, where)]
            if self.cfg.multi_vision_gt and len(captions) != 1:
                raise AnnotationError(f"{where}: multi_vision_gt items hold one caption, got {len(captions)}")
            if not self.cfg.multi_vision_gt and len(names) != 1:
                raise AnnotationError(f"{where}: one video per item expected (set multi_vision_gt for lists)")
            for name in names:
                base = {"video_path": self.video_path(name), "video_id": Path(name).stem}
                if self.cfg.max_seconds is not None:
                    base["segment"] = (0.0, float(self.cfg.max_seconds))
                if training:
                    key = captions[0] if self.cfg.multi_vision_gt else Path(name).name
                    vid = group.setdefault(key, len(group))
                    records += [{**base, "text": c, "video_idx": vid} for c in captions]
                elif self.cfg.multi_vision_gt:
                    records.append({**base, "text_idx": len(texts), "text_ids": [len(texts)]})
                else:
                    ids = list(range(len(texts), len(texts) + len(captions)))
                    records.append({**base, "text_idx": ids[0], "text_ids": ids})
            if not training:
                texts += captions
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, texts=None if training else texts, missing_videos=missing)


@dataclass
class QADataConfig(SingularityDataConfig):
    answer_list: str = "???"  # JSON list of answer strings under ann_root


@registry.register("dataset", "singularity_qa")
class SingularityQAData(SingularityBuilder):
    """Open-ended QA in Singularity's format; the dataset carries the ``answer_list``."""

    Config = QADataConfig
    name = "singularity_qa"

    def load(self, split: str) -> LoadedSplit:
        path, items = self.items(split)
        proc, training = self.text(), split == "train"
        records = []
        for i, item in enumerate(items):
            where = f"{path}[item {i}]"
            question = proc(field(item, "question", where))
            raw = field(item, "answer", where, lambda v: [v] if isinstance(v, str) else [str(a) for a in v])
            record = {"video_path": self.video_path(self.video_names(item, where)[0]), "question": question,
                      "question_type": question_type(item, question),
                      "question_id": str(item.get("question_id", f"{split}_{i}"))}
            if training:
                record["answers"], record["answer_weights"] = answers_with_weights(raw)
            else:
                record["answer_text"] = raw[0]
            records.append(record)
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)

    def read_answer_list(self) -> list[str]:
        path = Path(self.cfg.ann_root) / self.cfg.answer_list
        answers = read_json(path)
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise AnnotationError(f"{path}: expected a non-empty JSON list of answer strings")
        return answers

    def build(self, split: str, *, num_frames: int, image_size: int, training: bool) -> VideoDataset:
        dataset = super().build(split, num_frames=num_frames, image_size=image_size, training=training)
        dataset.answer_list = self.read_answer_list()  # type: ignore[attr-defined]
        return dataset


def answers_with_weights(answers: list[str]) -> tuple[list[str], list[float]]:
    """Unique answers, each weighted by its share of the annotators' answers (the original's weights)."""
    weights: dict[str, float] = {}
    for answer in answers:
        weights[answer] = weights.get(answer, 0.0) + 1.0 / len(answers)
    return list(weights), list(weights.values())


def question_type(item: dict[str, Any], question: str) -> str:
    """The annotation's type (``answer_type``, ``question_type`` or ``type``), else the question word."""
    for key in ("answer_type", "question_type", "type"):
        if item.get(key) is not None:
            return str(item[key])
    first = question.split(" ")[0] if question else ""
    return first if first in QUESTION_WORDS else "other"


@registry.register("dataset", "singularity_mc")
class SingularityMCData(SingularityBuilder):
    """MSRVTT-MC: 5 candidate captions per video, ``answer`` the index of the right one."""

    name = "singularity_mc"

    def load(self, split: str) -> LoadedSplit:
        path, items = self.items(split)
        proc = self.text()
        records = []
        for i, item in enumerate(items):
            where = f"{path}[item {i}]"
            candidates = field(item, "caption", where, list)
            answer = field(item, "answer", where, int)
            if not 0 <= answer < len(candidates):
                raise AnnotationError(f"{where}: answer {answer} is not an index into its {len(candidates)} captions")
            records.append({"video_path": self.video_path(self.video_names(item, where)[0]),
                            "candidates": [proc(str(c)) for c in candidates], "answer": answer})
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)


@registry.register("dataset", "msrvtt_ret")
class MSRVTTRetrieval(SingularityRetrievalData):
    @dataclass
    class Config(RetrievalDataConfig):
        videos: str = f"{VIDEO_ROOT}/msrvtt_2fps_224"
        train_file: Optional[str] = "msrvtt_ret_train7k.json"
        test_file: Optional[str] = "msrvtt_ret_test1k.json"

    name = "msrvtt_ret"


@registry.register("dataset", "didemo_ret")
class DiDeMoRetrieval(SingularityRetrievalData):
    @dataclass
    class Config(RetrievalDataConfig):
        videos: str = f"{VIDEO_ROOT}/didemo_2fps_360_trimed30"
        train_file: Optional[str] = "didemo_ret_train.json"
        val_file: Optional[str] = "didemo_ret_val.json"
        test_file: Optional[str] = "didemo_ret_test.json"
        paragraph: bool = True
        max_seconds: Optional[float] = 30.0  # the release's videos are the first 30 s ("trimed30")

    name = "didemo_ret"


@registry.register("dataset", "anet_ret")
class ActivityNetRetrieval(SingularityRetrievalData):
    @dataclass
    class Config(RetrievalDataConfig):
        videos: str = f"{VIDEO_ROOT}/activity_net_2fps_360"
        train_file: Optional[str] = "anet_ret_train.json"
        val_file: Optional[str] = "anet_ret_val_1.json"
        paragraph: bool = True

    name = "anet_ret"


@registry.register("dataset", "ssv2_label_ret")
class SSv2LabelRetrieval(SingularityRetrievalData):
    @dataclass
    class Config(RetrievalDataConfig):
        videos: str = f"{VIDEO_ROOT}/ssv2"
        train_file: Optional[str] = "ssv2_ret_label_train.json"
        val_file: Optional[str] = "ssv2_ret_label_val_small.json"
        multi_vision_gt: bool = True

    name = "ssv2_label_ret"


@registry.register("dataset", "ssv2_template_ret")
class SSv2TemplateRetrieval(SingularityRetrievalData):
    @dataclass
    class Config(RetrievalDataConfig):
        videos: str = f"{VIDEO_ROOT}/ssv2"
        train_file: Optional[str] = "ssv2_ret_template_train.json"
        val_file: Optional[str] = "ssv2_ret_template_val_small.json"
        multi_vision_gt: bool = True

    name = "ssv2_template_ret"


@registry.register("dataset", "msrvtt_qa")
class MSRVTTQA(SingularityQAData):
    @dataclass
    class Config(QADataConfig):
        videos: str = f"{VIDEO_ROOT}/msrvtt_2fps_224"
        train_file: Optional[str] = "msrvtt_qa_train.json"
        val_file: Optional[str] = "msrvtt_qa_val.json"
        test_file: Optional[str] = "msrvtt_qa_test.json"
        answer_list: str = "msrvtt_qa_answer_list.json"

    name = "msrvtt_qa"


@registry.register("dataset", "anet_qa")
class ActivityNetQA(SingularityQAData):
    @dataclass
    class Config(QADataConfig):
        videos: str = f"{VIDEO_ROOT}/activity_net_2fps_360"
        train_file: Optional[str] = "anet_qa_train.json"
        val_file: Optional[str] = "anet_qa_val.json"
        test_file: Optional[str] = "anet_qa_test.json"
        answer_list: str = "anet_qa_answer_list.json"

    name = "anet_qa"


@registry.register("dataset", "msrvtt_mc")
class MSRVTTMC(SingularityMCData):
    @dataclass
    class Config(SingularityDataConfig):
        videos: str = f"{VIDEO_ROOT}/msrvtt_2fps_224"
        test_file: Optional[str] = "msrvtt_mc_test.json"

    name = "msrvtt_mc"
