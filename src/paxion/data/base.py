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
from paxion.data.annotations import AnnotationError
from paxion.data.synthetic.generate import find_generation
from paxion.data.video import BACKENDS, SAMPLING_STRATEGIES, VideoDecodeError, load_clip, open_video

logger = logging.getLogger(__name__)

SampleKey = Union[int, tuple[int, int]]
_RECORD_ONLY = ("video_path", "segment", "fps", "frame_texts")


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
    # keep each decoded clip in memory after its first read (per data-loader worker: use num_workers <= 1
    # with persistent_workers); only for clips that are the same every epoch (refused otherwise)
    cache_clips: bool = False

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
        self._warned: set[Any] = set()  # unreadable paths this process has logged
        self._clips: Optional[dict[int, tuple[torch.Tensor, torch.Tensor]]] = None  # index -> (clip, indices)
        if cfg.cache_clips:
            # in training every strategy but uniform draws frames at random, and jitter recolours
            redrawn = [k for k, on in (("color_jitter", cfg.color_jitter), ("frame_sampling", cfg.frame_sampling != "uniform"))
                       if on]
            if training and redrawn:
                raise ValueError(f"{name}/{split}: cache_clips keeps clips across epochs, but {redrawn} draw them anew "
                                 "each time; set color_jitter: false and frame_sampling: uniform, or cache_clips: false")
            self._clips = {}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def text_indices(self) -> list[int]:
        """Retrieval: ground-truth caption index of every sample (into :attr:`texts`)."""
        return [int(r["text_idx"]) for r in self.records]

    def _clip(self, record: dict[str, Any], generator: Optional[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (uint8 (T, C, S, S) transformed clip, the source frame indices it was sampled from (T,))."""
        size = (self.image_size, self.image_size) if self.cfg.resize_on_decode else None
        video, indices = load_clip(
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
        video = video_transform(
            video,
            self.image_size,
            self.training,
            use_color_jitter=self.cfg.color_jitter,
            fix_color_jitter=self.cfg.fix_color_jitter,
            generator=generator,
        )  # (T, C, S, S) uint8
        return video, indices

    def _cached_clip(
        self, i: int, record: dict[str, Any], generator: Optional[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._clips is None:
            return self._clip(record, generator)
        if i not in self._clips:
            self._clips[i] = self._clip(record, generator)
        return self._clips[i]

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
                video, indices = self._cached_clip(i, record, generator)
            except VideoDecodeError as exc:
                if self.cfg.strict:
                    raise
                nxt = (i + 1) % len(self)  # the original's choice: the next item
                # once per file and process; the runner counts each file once per split (skipped_videos.json)
                level = logging.DEBUG if record["video_path"] in self._warned else logging.WARNING
                self._warned.add(record["video_path"])
                logger.log(level, "%s/%s: unreadable video (%s); item %d used instead", self.name, self.split, exc, nxt)
                skipped.append({"split": self.split, "dataset": self.name, "path": str(record["video_path"]),
                                "error": str(exc), "replaced_by": nxt})
                i = nxt
                continue
            sample = {k: v for k, v in record.items() if k not in _RECORD_ONLY}
            if "frame_texts" in record:  # one caption per source frame
                sample["text"] = _frame_text(record, indices)
            sample.update(video=video, idx=i, skipped_videos=skipped)
            return sample
        raise VideoDecodeError(
            f"{self.name}/{self.split}: {len(skipped)} consecutive unreadable videos from item {index}: "
            f"{[s['path'] for s in skipped]}"
        )

    def missing_entries(self) -> list[dict[str, Any]]:
        """The videos the annotations list but the disk lacks, as ``skipped_videos.json`` entries."""
        return [{"split": self.split, "dataset": self.name, "path": path, "error": "video file not found",
                 "replaced_by": None} for path in self.missing_videos]


def _frame_text(record: dict[str, Any], indices: torch.Tensor) -> str:
    """The caption of the frame drawn (single-frame training), else of the middle frame of the clip."""
    texts = record["frame_texts"]
    frame = int(indices[len(indices) // 2])
    if not 0 <= frame < len(texts):
        raise ValueError(f"{record['video_path']}: frame {frame} sampled, its annotation has captions for "
                         f"{len(texts)} frames")
    return texts[frame]


def source_shape(path: str | Path, backend: str) -> Optional[tuple[int, int, int]]:
    """(frames, height, width) of a video file at native size, or None when it cannot be read."""
    try:
        reader = open_video(path, backend)
        try:
            first = reader.get_frames(torch.zeros(1, dtype=torch.long))  # (1, C, H, W)
            return reader.num_frames, int(first.shape[-2]), int(first.shape[-1])
        finally:
            reader.close()
    except (VideoDecodeError, OSError, ValueError):
        return None


def check_source_clips(dataset: VideoDataset) -> list[str]:
    """Warn (once per split) when the clips differ from what the model takes; -> the warnings.

    Looks at the first readable clip and, for generated data, at the generator's settings: fewer source
    frames than the model takes (frames repeat), frames smaller than its input (upscaled), or generated
    clips whose length or size differ from the model's input (a model trained on clips generated at its
    input shape then sees other motion per frame and detail than in training).
    """
    want_t, want_s = dataset.num_frames, dataset.image_size
    where = f"{dataset.name}/{dataset.split}"
    found = []
    for record in dataset.records[:3]:
        shape = source_shape(record["video_path"], dataset.cfg.decoder)
        if shape is not None:
            t, h, w = shape
            if t < want_t:
                found.append(f"{where}: source clips have {t} frames ({record['video_path']}), the model takes "
                             f"{want_t}: frames are repeated")
            if min(h, w) < want_s:
                found.append(f"{where}: source frames are {w}x{h} ({record['video_path']}), the model takes "
                             f"{want_s}x{want_s}: they are upscaled")
            break
    generation = find_generation(dataset.records[0]["video_path"]) if dataset.records else None
    if generation is not None:
        gen_t, gen_s = int(generation["config"]["frames"]), int(generation["config"]["size"])
        if generation["config"].get("preset", "default") != "default":  # variable-length clips (the hard preset)
            if gen_s != want_s:
                found.append(f"{where}: these clips were generated at {gen_s}x{gen_s} ({generation['path']}), "
                             f"the model takes {want_s}x{want_s}; regenerate with --size {want_s} to match")
        elif (gen_t, gen_s) != (want_t, want_s):
            found.append(
                f"{where}: these clips were generated with {gen_t} frames of {gen_s}x{gen_s} "
                f"({generation['path']}), the model takes {want_t} frames of {want_s}x{want_s}: a model trained on "
                f"clips generated at its input shape (the shipped ones: 8 frames of 32x32) sees other motion per "
                f"frame and detail here; regenerate with --frames {want_t} --size {want_s} to match"
            )
    for message in found:
        logger.warning(message)
    return found


class DataNotFoundError(AnnotationError):
    """The annotation or video folder of a split is not there: ``paths.data_root`` (or the dataset's own
    folder key) points at the wrong place. The message names the folder and the override that sets it."""


class VideosNotFoundError(DataNotFoundError):
    """None of a split's videos exist."""


def drop_missing(records: list[dict[str, Any]], strict: bool, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop records whose video file does not exist, as the original loaders do; strict mode raises.

    Every dropped path is returned (the runner lists each in ``skipped_videos.json`` and counts them in
    the metrics as ``missing_videos``).
    """
    kept, missing = [], []
    for r in records:
        (kept if Path(r["video_path"]).is_file() else missing).append(r)
    paths = [str(r["video_path"]) for r in missing]
    if paths:
        if strict:
            raise VideoDecodeError(f"{where}: {len(paths)} videos not found, first: {paths[0]}")
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        logger.warning("%s: %d of %d videos not found and left out: %s", where, len(paths), len(records), shown)
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
        self._check_annotation_folder(split)
        loaded = self.load(split)
        if loaded.missing_videos and not loaded.records:
            raise self._no_videos_error(split, loaded.missing_videos)
        if self.cfg.max_samples is not None:
            loaded.records = loaded.records[: self.cfg.max_samples]
        logger.info("%s/%s: %d samples", self.name, split, len(loaded.records))
        dataset = VideoDataset(
            loaded,
            name=self.name,
            split=split,
            num_frames=num_frames,
            image_size=image_size,
            training=training,
            cfg=self.cfg,
            fps=self.cfg.fps,
        )
        check_source_clips(dataset)
        return dataset

    def _check_annotation_folder(self, split: str) -> None:
        for key in ("ann_root", "ann_dir"):
            folder = getattr(self.cfg, key, None)
            if isinstance(folder, str) and folder and not Path(folder).is_dir():
                raise DataNotFoundError(
                    f"{self.name}/{split}: annotation folder {folder} does not exist. Point paths.data_root=<folder> "
                    f"at your data (layouts in dataset_cards/), or set datasets.{self.name}.{key}=<folder>"
                )

    def _no_videos_error(self, split: str, missing: list[str]) -> VideosNotFoundError:
        folder = getattr(self.cfg, "videos", None) or str(Path(missing[0]).parent)
        return VideosNotFoundError(
            f"{self.name}/{split}: none of the {len(missing)} videos the annotations list exists; expected them "
            f"in {folder} (e.g. {missing[0]}). Point paths.data_root=<folder> at your data, or set the video "
            f"folder itself with datasets.{self.name}.videos=<folder>"
        )
