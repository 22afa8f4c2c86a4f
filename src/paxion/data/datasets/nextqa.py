"""NExT-QA multiple choice: texts are "question? answer_k", plus the action-antonym choices."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from paxion.data.annotations import AnnotationError, field, read_csv, read_json
from paxion.data.base import DatasetBuilder, LoadedSplit, VideoDataConfig, drop_missing
from paxion.data.text import build_text_processor
from paxion.registry import registry

CHOICES = ("a0", "a1", "a2", "a3", "a4")
COLUMNS = ("video", "question", "answer", "qid", "type", *CHOICES, "action_antonym_choices")


@registry.register("dataset", "nextqa")
class NExTQA(DatasetBuilder):
    @dataclass
    class Config(VideoDataConfig):
        ann_root: str = "${paths.data_root}/NextQA/ann/nextqa_action_antonym"  # {split}.csv, map_vid_vidorID.json
        videos: str = "${paths.data_root}/NextQA/video_clips/NExTVideo_downsampled_5fps_downsized_224x224"
        fps: Optional[float] = 5.0

    name = "nextqa"

    def load(self, split: str) -> LoadedSplit:
        root = Path(self.cfg.ann_root)
        vid_map = read_json(root / "map_vid_vidorID.json")
        proc = build_text_processor(self.cfg.text_processor, self.cfg.text_prompt, self.cfg.max_words)
        path = root / f"{split}.csv"
        records: list[dict[str, Any]] = []
        for line, row in read_csv(path, required=COLUMNS):
            where = f"{path}:{line}"
            vid = field(row, "video", where)
            if vid not in vid_map:
                raise AnnotationError(f"{where}: video '{vid}' is not in {root / 'map_vid_vidorID.json'}")
            question = field(row, "question", where)
            answer = field(row, "answer", where, int)
            if not 0 <= answer < len(CHOICES):
                raise AnnotationError(f"{where}: answer {answer} is not in 0..{len(CHOICES) - 1}")
            try:  # a Python list literal in the csv; literal_eval, never eval
                antonyms = ast.literal_eval(row["action_antonym_choices"])
            except (ValueError, SyntaxError):
                raise AnnotationError(f"{where}: action_antonym_choices is not a list literal") from None
            candidates = [proc(f"{question}? {row[c]}") for c in CHOICES]
            records.append({
                "video_path": Path(self.cfg.videos) / f"{vid_map[vid]}.mp4",
                "video_id": vid,
                "text": candidates[answer],
                "candidates": candidates,
                "action_antonym_candidates": [proc(f"{question}? {a}") for a in antonyms],
                "answer": answer,
                "question_type": field(row, "type", where),
            })
        records, missing = drop_missing(records, self.cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)
