"""The shared video dataset and the builder contract every registered dataset follows.

A builder is constructed with its ``Config`` dataclass and turns one split into a dataset:

    builder = registry.get("dataset", "actionbench_ssv2")(cfg)
    ds = builder.build("val", num_frames=8, image_size=224, training=False)
    ds[0]            # sample dict (docs/DESIGN.md "Data")
    ds[(0, 1234)]    # same sample, every random choice drawn from a generator seeded with 1234

A builder's ``load(split)`` parses annotations into *records*: plain dicts holding ``video_path``,
an optional ``segment`` (start_s, end_s) and ``fps``, and the sample's text fields. The dataset adds
the decoded clip, ``idx`` and ``skipped_videos``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from paxion.data.transforms import video_transform
from paxion.data.video import BACKENDS, SAMPLING_STRATEGIES, VideoDecodeError, load_clip

logger = logging.getLogger(__name__)

SampleKey = Union[int, tuple[int, int]]
_RECORD_ONLY = ("video_path", "segment", "fps")


@dataclass
class VideoDataConfig:
    """Options shared by every video dataset builder (the one home of their defaults)."""

    decoder: str = "pyav"  # pyav | decord | torchcodec
    resize_on_decode: bool = True  # original: decord decodes straight to image_size x image_size
    fps: Optional[float] = None  # frame rate of the clips, to turn segment seconds into frames
    frame_sampling: str = "uniform"  # uniform (original) | random | jitter | single
    color_jitter: bool = True  # training only, as the original video_train processor
    fix_color_jitter: bool = False  # False = original quirk: only the last of the 4 shuffled ops
    strict: bool = False  # True: an unreadable or missing video raises, naming the file
    max_replacements: int = 10  # consecutive unreadable videos tolerated before giving up
    max_samples: Optional[int] = None  # keep the first N records (the original train_k / eval_k)
    text_processor: str = "minimum_text"  # registered processor: minimum_text | ego4d_text
    text_prompt: str = ""
    max_words: int = 50

    def __post_init__(self) -> None:
        if self.decoder not in BACKENDS:
            raise ValueError(f"decoder: '{self.decoder}' is not one of {list(BACKENDS)}")
        if self.frame_sampling not in SAMPLING_STRATEGIES:
            raise ValueError(f"frame_sampling: '{self.frame_sampling}' is not one of {list(SAMPLING_STRATEGIES)}")


@dataclass
class LoadedSplit:
    records: list[dict[str, Any]]
    texts: Optional[list[str]] = None  # retrieval: unique captions, indexed by each record's text_idx
    missing_videos: list[str] = dataclasses.field(default_factory=list)


class VideoDataset(Dataset):
    """Decodes, samples and transforms one record per item; unreadable videos are replaced and recorded."""

    def __init__(
        self,
        loaded: LoadedSplit,
        *,
        name: str,
        split: str,
        num_frames: int,
        image_size: int,
        training: bool,
        cfg: VideoDataConfig,
        fps: Optional[float] = None,
    ) -> None:
        self.records = loaded.records
        self.texts = loaded.texts
        self.missing_videos = loaded.missing_videos
        self.name, self.split = name, split
        self.num_frames, self.image_size, self.training = num_frames, image_size, training
        self.cfg, self.fps = cfg, fps
        self.num_bad_videos = 0  # per process; the sample's skipped_videos list is the reliable record

    def __len__(self) -> int:
        return len(self.records)

    @property
    def text_indices(self) -> list[int]:
        """Retrieval: ground-truth caption index of every sample (into :attr:`texts`)."""
        return [int(r["text_idx"]) for r in self.records]

    def _clip(self, record: dict[str, Any], generator: Optional[torch.Generator]) -> torch.Tensor:
        size = (self.image_size, self.image_size) if self.cfg.resize_on_decode else None
        video, _ = load_clip(
            record["video_path"],
            self.num_frames,
            backend=self.cfg.decoder,
            size=size,
            segment=record.get("segment"),
            fps=record.get("fps", self.fps),
            strategy=self.cfg.frame_sampling,
            training=self.training,
            generator=generator,
        )
        return video_transform(
            video,
            self.image_size,
            self.training,
            use_color_jitter=self.cfg.color_jitter,
            fix_color_jitter=self.cfg.fix_color_jitter,
            generator=generator,
        )  # (T, C, S, S) uint8

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        index, seed = (key if isinstance(key, tuple) else (key, None))
        if not 0 <= int(index) < len(self):
            raise IndexError(f"{self.name}/{self.split}: index {index} out of range (size {len(self)})")
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        skipped: list[dict[str, Any]] = []
        i = int(index)
        for _ in range(self.cfg.max_replacements + 1):
            record = self.records[i]
            try:
                video = self._clip(record, generator)
            except VideoDecodeError as exc:
                if self.cfg.strict:
                    raise
                self.num_bad_videos += 1
                nxt = (i + 1) % len(self)  # the original's choice: the next item
                logger.warning("%s/%s: unreadable video #%d (%s); using item %d", self.name, self.split,
                               self.num_bad_videos, exc, nxt)
                skipped.append({"path": str(record["video_path"]), "error": str(exc), "replaced_by": nxt})
                i = nxt
                continue
            sample = {k: v for k, v in record.items() if k not in _RECORD_ONLY}
            sample.update(video=video, idx=i, skipped_videos=skipped)
            return sample
        raise VideoDecodeError(
            f"{self.name}/{self.split}: {len(skipped)} consecutive unreadable videos from item {index}: "
            f"{[s['path'] for s in skipped]}"
        )


def drop_missing(records: list[dict[str, Any]], strict: bool, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop records whose video file does not exist, as the original loaders do; strict mode raises."""
    kept, missing = [], []
    for r in records:
        (kept if Path(r["video_path"]).is_file() else missing).append(r)
    paths = [str(r["video_path"]) for r in missing]
    if paths:
        if strict:
            raise VideoDecodeError(f"{where}: {len(paths)} videos not found, first: {paths[0]}")
        logger.warning("%s: %d of %d videos not found and skipped (first: %s)", where, len(paths),
                       len(records), paths[0])
    return kept, paths


class DatasetBuilder:
    """Base of every registered builder: ``Config`` dataclass in, one dataset per split out."""

    Config = VideoDataConfig
    name = "video"
    splits: tuple[str, ...] = ("train", "val", "test")

    def __init__(self, cfg: Any = None) -> None:
        if cfg is None:
            cfg = self.Config()
        elif isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_object(cfg)
        elif isinstance(cfg, dict):
            cfg = self.Config(**cfg)
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__qualname__}, got {type(cfg).__name__}")
        self.cfg = cfg

    def load(self, split: str) -> LoadedSplit:
        raise NotImplementedError

    def build(self, split: str, *, num_frames: int, image_size: int, training: bool) -> VideoDataset:
        if split not in self.splits:
            raise ValueError(f"dataset '{self.name}' has no split '{split}'; valid: {list(self.splits)}")
        loaded = self.load(split)
        if self.cfg.max_samples is not None:
            loaded.records = loaded.records[: self.cfg.max_samples]
        logger.info("%s/%s: %d samples", self.name, split, len(loaded.records))
        return VideoDataset(
            loaded,
            name=self.name,
            split=split,
            num_frames=num_frames,
            image_size=image_size,
            training=training,
            cfg=self.cfg,
            fps=self.cfg.fps,
        )
