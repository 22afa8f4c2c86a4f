"""Retrieval datasets: SSv2-label/-template, Temporal-SSv2/-Kinetics, Moments-in-Time.

Each exposes ``dataset.texts`` (the caption gallery) and a per-sample ``text_idx`` into it;
text->video ground truth is every sample whose ``text_idx`` equals the caption's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from paxion.data.annotations import AnnotationError, field, read_csv, read_json_list
from paxion.data.base import DatasetBuilder, LoadedSplit, VideoDataConfig, drop_missing
from paxion.data.text import build_text_processor
from paxion.registry import registry

SSV2_VIDEOS = "${paths.data_root}/SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"


def _finish(builder: DatasetBuilder, records: list[dict[str, Any]], texts: list[str], split: str) -> LoadedSplit:
    """Process captions, drop records whose video is missing (texts stay: the gallery is fixed)."""
    proc = build_text_processor(builder.cfg.text_processor, builder.cfg.text_prompt, builder.cfg.max_words)
    texts = [proc(t) for t in texts]
    for r in records:
        r["text"] = texts[r["text_idx"]]
    records, missing = drop_missing(records, builder.cfg.strict, f"{builder.name}/{split}")
    return LoadedSplit(records, texts=texts, missing_videos=missing)


class SSv2Retrieval(DatasetBuilder):
    """``[{"video": [x.webm, ...] | x.webm, "caption": str}]``; one caption may have many videos."""

    @dataclass
    class Config(VideoDataConfig):
        ann_root: str = "${paths.data_root}/SSv2/ssv2_label_ssv2_template"
        videos: str = SSV2_VIDEOS
        fps: Optional[float] = 5.0

    kind = "label"
    splits = ("train", "val")

    def load(self, split: str) -> LoadedSplit:
        path = Path(self.cfg.ann_root) / f"ssv2_ret_{self.kind}_{'train' if split == 'train' else 'val_small'}.json"
        records: list[dict[str, Any]] = []
        texts: list[str] = []
        for i, item in enumerate(read_json_list(path)):
            where = f"{path}[item {i}]"
            names = field(item, "video", where, lambda v: [v] if isinstance(v, str) else list(v))
            caption = field(item, "caption", where).replace("[something]", "something")
            for name in names:
                vid = Path(str(name)).stem
                records.append({"video_path": Path(self.cfg.videos) / f"{vid}.mp4", "video_id": vid,
                                "text_idx": len(texts)})
            texts.append(caption)  # kept even when none of its videos exist, as the original
        return _finish(self, records, texts, split)


@registry.register("dataset", "ssv2_label_retrieval")
class SSv2LabelRetrieval(SSv2Retrieval):
    name, kind = "ssv2_label_retrieval", "label"


@registry.register("dataset", "ssv2_template_retrieval")
class SSv2TemplateRetrieval(SSv2Retrieval):
    name, kind = "ssv2_template_retrieval", "template"


class TemporalRetrieval(DatasetBuilder):
    """Temporal benchmark csv ``,index,video_id,text,dataset``; captions are the unique texts (classes)."""

    @dataclass
    class Config(VideoDataConfig):
        ann_root: str = "${paths.data_root}/Temporal/ann"
        version: str = "v1.0_2.4k"  # v1.0_2.4k -> val-v1.0-2.4k.csv | v1.0 -> val-v1.0.csv
        videos: str = SSV2_VIDEOS
        fps: Optional[float] = 5.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.version not in ("v1.0", "v1.0_2.4k"):
                raise ValueError(f"version: '{self.version}' is not one of ['v1.0', 'v1.0_2.4k']")

    subset = "ssv2"
    splits = ("val",)

    def load(self, split: str) -> LoadedSplit:
        fname = "val-v1.0-2.4k.csv" if self.cfg.version == "v1.0_2.4k" else "val-v1.0.csv"
        path = Path(self.cfg.ann_root) / fname
        records: list[dict[str, Any]] = []
        text_index: dict[str, int] = {}
        for line, row in read_csv(path, required=("video_id", "text", "dataset")):
            where = f"{path}:{line}"
            if field(row, "dataset", where).lower() != self.subset:
                continue
            vid, segment = self._parse_video_id(field(row, "video_id", where).strip(), where)
            text = field(row, "text", where).replace("[something]", "something")
            record = {"video_path": Path(self.cfg.videos) / f"{vid}.mp4", "video_id": vid,
                      "text_idx": text_index.setdefault(text, len(text_index))}
            if segment is not None:
                record["segment"] = segment
            records.append(record)
        return _finish(self, records, list(text_index), split)

    def _parse_video_id(self, video_id: str, where: str) -> tuple[str, Optional[tuple[float, float]]]:
        return video_id, None


@registry.register("dataset", "temporal_ssv2")
class TemporalSSv2(TemporalRetrieval):
    name, subset = "temporal_ssv2", "ssv2"


@registry.register("dataset", "temporal_kinetics")
class TemporalKinetics(TemporalRetrieval):
    """``class/YTID_000007_000017`` -> ``YTID.mp4``, seconds 7-17 (the id itself may contain ``_``)."""

    @dataclass
    class Config(TemporalRetrieval.Config):
        videos: str = "${paths.data_root}/Temporal/video_clips/kinetics400/clips_downsampled_5fps_downsized_224x224"

    name, subset = "temporal_kinetics", "kinetics"

    def _parse_video_id(self, video_id: str, where: str) -> tuple[str, Optional[tuple[float, float]]]:
        stem = video_id.split("/")[-1].strip()
        times = stem[-13:].split("_")
        if len(stem) < 15 or stem[-14] != "_" or len(times) != 2 or not all(t.isdigit() for t in times):
            raise AnnotationError(f"{where}: video_id '{video_id}' is not 'class/YTID_SSSSSS_EEEEEE'")
        return stem[:-14], (float(times[0]), float(times[1]))


@registry.register("dataset", "moments_in_time")
class MomentsInTime(DatasetBuilder):
    """Zero-shot action recognition as video->text retrieval over ``moments_categories.txt``."""

    @dataclass
    class Config(VideoDataConfig):
        ann_root: str = "${paths.data_root}/Moments_In_Time/ann"
        videos: str = "${paths.data_root}/Moments_In_Time/videos"  # holds training/ and validation/
        use_2k_subset: bool = True  # validationSet_2k.csv, as the paper's evaluation

    name = "moments_in_time"
    splits = ("train", "val")

    def _categories(self) -> list[str]:
        path = Path(self.cfg.ann_root) / "moments_categories.txt"
        by_index: dict[int, str] = {}
        for line, row in read_csv(path, header=False):
            if len(row) != 2:
                raise AnnotationError(f"{path}:{line}: expected 'label,index', got {row}")
            by_index[field({"i": row[1].strip()}, "i", f"{path}:{line}", int)] = row[0].strip().replace("+", " ")
        if sorted(by_index) != list(range(len(by_index))):
            raise AnnotationError(f"{path}: category indices must be 0..{len(by_index) - 1} without gaps")
        return [by_index[i] for i in range(len(by_index))]

    def load(self, split: str) -> LoadedSplit:
        texts = self._categories()
        index = {t: i for i, t in enumerate(texts)}
        if split == "train":
            sub, fname = "training", "trainingSet.csv"
        else:
            sub, fname = "validation", "validationSet_2k.csv" if self.cfg.use_2k_subset else "validationSet.csv"
        path = Path(self.cfg.ann_root) / fname
        records = []
        for line, row in read_csv(path, header=False):
            if len(row) != 4:
                raise AnnotationError(f"{path}:{line}: expected 4 fields 'video,label,_,_', got {len(row)}")
            label = row[1].strip().replace("+", " ")
            if label not in index:
                raise AnnotationError(f"{path}:{line}: label '{label}' is not in moments_categories.txt")
            records.append({"video_path": Path(self.cfg.videos) / sub / row[0], "video_id": row[0],
                            "text_idx": index[label], "answer": index[label]})
        return _finish(self, records, texts, split)
