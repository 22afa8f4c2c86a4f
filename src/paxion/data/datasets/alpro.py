"""ALPRO's annotation files: ``txt/*.jsonl`` of the downstream tasks and the WebVid pre-training list.

Formats (one JSON object per line, videos ``<videos>/<id>.mp4``):

* retrieval (MSRVTT-ret, DiDeMo; DiDeMo's paragraph is already one caption)
  ``{"caption": str, "clip_name": str}``. Training: one sample per line, ``video_idx`` groups a
  clip's captions (ITC positives); evaluation: one sample per clip with ``text_ids`` of all its
  captions in the split's gallery ``texts``.
* QA (MSRVTT-QA, MSVD-QA) ``{"question", "answer", "video_id", "answer_type"}`` (+ ``question_id``
  when present) and the training answers' ``train_ans2label.json`` ``{answer: label}``; samples carry
  ``label`` (-100 for an answer outside ``ans2label``: ignored in training, wrong in evaluation).
* WebVid pre-training ``train.pkl`` / ``val.pkl``: a pandas DataFrame with columns ``video_id``,
  ``text``, ``txt_len`` (kept when ``txt_len < max_txt_len``, as the original); a ``.csv`` with the
  same columns is read too. Pickles run code when read: only open files you trust.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from paxion.data.annotations import AnnotationError, field, read_json, read_jsonl
from paxion.data.base import DatasetBuilder, LoadedSplit, VideoDataConfig, VideoDataset, drop_missing
from paxion.data.randaugment import AugmentedClips, TemporalConsistentRandomAugment
from paxion.registry import registry

QA_TYPES = ("what", "who", "how", "where", "when")


@dataclass
class AlproDataConfig(VideoDataConfig):
    txt_dir: str = "???"  # the dataset's txt/ folder
    videos: str = "???"
    train_file: Optional[str] = "train.jsonl"
    val_file: Optional[str] = "val.jsonl"
    test_file: Optional[str] = "test.jsonl"
    video_ext: str = ".mp4"
    frame_sampling: str = "uniform"  # evaluation: uniform; training: "random" (the original's "rand")
    color_jitter: bool = False

    def files(self) -> dict[str, str]:
        named = {"train": self.train_file, "val": self.val_file, "test": self.test_file}
        return {split: name for split, name in named.items() if name}


class AlproBuilder(DatasetBuilder):
    Config = AlproDataConfig

    @property
    def splits(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.cfg.files())

    def lines(self, split: str) -> list[tuple[str, dict[str, Any]]]:
        path = Path(self.cfg.txt_dir) / self.cfg.files()[split]
        return [(f"{path}:{line}", row) for line, row in read_jsonl(path)]

    def video_path(self, name: str) -> Path:
        name = str(name)
        return Path(self.cfg.videos) / (name if name.endswith(self.cfg.video_ext) else name + self.cfg.video_ext)


@registry.register("dataset", "alpro_retrieval")
class AlproRetrievalData(AlproBuilder):
    name = "alpro_retrieval"

    def load(self, split: str) -> LoadedSplit:
        training = split == "train"
        records: list[dict[str, Any]] = []
        texts: list[str] = []
        clips: dict[str, int] = {}
        for where, row in self.lines(split):
            caption, clip = field(row, "caption", where), field(row, "clip_name", where)
            if training:
                vid = clips.setdefault(clip, len(clips))
                records.append({"video_path": self.video_path(clip), "video_id": clip, "text": caption,
                                "video_idx": vid})
                continue
            if clip not in clips:
                clips[clip] = len(records)
                records.append({"video_path": self.video_path(clip), "video_id": clip, "text_ids": []})
            records[clips[clip]]["text_ids"].append(len(texts))
            texts.append(caption)
        for record in records:
            if not training:
                record["text_idx"] = record["text_ids"][0]
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, texts=None if training else texts, missing_videos=missing)


@dataclass
class AlproQADataConfig(AlproDataConfig):
    ans2label: str = "train_ans2label.json"  # under txt_dir
    randaug: bool = True  # training clips: TemporalConsistentRandomAugment(N=2, M=5), as the original


@registry.register("dataset", "alpro_qa")
class AlproQAData(AlproBuilder):
    Config = AlproQADataConfig
    name = "alpro_qa"

    def read_ans2label(self) -> dict[str, int]:
        path = Path(self.cfg.txt_dir) / self.cfg.ans2label
        table = read_json(path)
        if not isinstance(table, dict) or not table or sorted(table.values()) != list(range(len(table))):
            raise AnnotationError(f"{path}: expected {{answer: label}} with labels 0..N-1")
        return {str(k): int(v) for k, v in table.items()}

    def load(self, split: str) -> LoadedSplit:
        ans2label = self.read_ans2label()
        records = []
        for i, (where, row) in enumerate(self.lines(split)):
            answer, answer_type = str(field(row, "answer", where)), field(row, "answer_type", where)
            if answer_type not in QA_TYPES:
                raise AnnotationError(f"{where}: answer_type '{answer_type}' is not one of {list(QA_TYPES)}")
            records.append({
                "video_path": self.video_path(field(row, "video_id", where)),
                "question": field(row, "question", where), "answer_text": answer, "answer_type": answer_type,
                "label": ans2label.get(answer, -100), "question_id": str(row.get("question_id", f"{split}_{i}")),
            })
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)

    def build(self, split: str, *, num_frames: int, image_size: int, training: bool) -> VideoDataset:
        dataset = super().build(split, num_frames=num_frames, image_size=image_size, training=training)
        dataset.ans2label = self.read_ans2label()  # type: ignore[attr-defined]
        if training and self.cfg.randaug:
            return AugmentedClips(dataset, TemporalConsistentRandomAugment(n=2, m=5))  # type: ignore[return-value]
        return dataset


@dataclass
class WebVidDataConfig(AlproDataConfig):
    train_file: Optional[str] = "train.pkl"
    val_file: Optional[str] = "val.pkl"
    test_file: Optional[str] = None
    max_txt_len: int = 80  # keep rows with txt_len below this (the original's loader default)


@registry.register("dataset", "alpro_webvid")
class AlproWebVidData(AlproBuilder):
    """WebVid2M pre-training pairs (captions as ``text``; each clip its own positive)."""

    Config = WebVidDataConfig
    name = "alpro_webvid"

    def rows(self, split: str) -> list[dict[str, Any]]:
        path = Path(self.cfg.txt_dir) / self.cfg.files()[split]
        if not path.is_file():
            raise AnnotationError(f"{path}: annotation file not found")
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        else:
            try:
                import pandas as pd
            except ImportError:
                raise AnnotationError(f"{path}: reading a .pkl list needs pandas (pip install pandas), "
                                      "or give the same columns as .csv") from None
            rows = pd.read_pickle(path).to_dict("records")
        missing = {"video_id", "text", "txt_len"} - set(rows[0] if rows else {})
        if missing:
            raise AnnotationError(f"{path}: missing columns {sorted(missing)}")
        return [r for r in rows if int(r["txt_len"]) < self.cfg.max_txt_len]

    def load(self, split: str) -> LoadedSplit:
        records = [{"video_path": self.video_path(str(r["video_id"])), "video_id": str(r["video_id"]),
                    "text": str(r["text"]).strip(), "video_idx": i} for i, r in enumerate(self.rows(split))]
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)
