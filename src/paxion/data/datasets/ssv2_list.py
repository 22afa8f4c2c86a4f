"""Action recognition from VideoMAE's list files (SSv2: 174 classes; SynthAction: its templates).

List format (``{ann_root}/train.csv``, ``val.csv``, ``test.csv``): one clip per line, no header,
space separated ``<path relative to videos> <integer label>``, e.g. ``123.webm 47``.

Samples:
* ``train``: ``video`` uint8 (S, T, C, H, W), S = ``num_sample`` augmented copies of the same clip
  (repeated augmentation), ``label``, ``idx``;
* ``val``: one centre view, ``video`` (T, C, H, W);
* ``test``: ``test_num_segment x test_num_crop`` views per clip, one item each, ordered as the original
  (temporal view, then crop, then clip); ``video_index`` names the clip, ``view`` the (temporal, crop) pair.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from paxion.data import action_clips as clips
from paxion.data.annotations import AnnotationError
from paxion.data.base import DatasetBuilder, VideoDataConfig
from paxion.data.video import VideoDecodeError, open_video
from paxion.registry import registry

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}


def read_list(path: Path, num_classes: int) -> list[tuple[str, int]]:
    """``path label`` lines -> [(path, label)]; a malformed line raises naming ``file:line``."""
    if not path.is_file():
        raise AnnotationError(f"{path}: list file not found")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[1].strip().lstrip("-").isdigit():
            raise AnnotationError(f"{path}:{line_no}: expected '<video path> <label>', got {line!r}")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise AnnotationError(f"{path}:{line_no}: label {label} outside 0..{num_classes - 1}")
        rows.append((parts[0], label))
    return rows


@dataclass
class ActionListConfig(VideoDataConfig):
    """Of the shared video options only ``decoder``, ``strict``, ``max_replacements`` and ``max_samples``
    apply here; frames and crops follow the rules of :mod:`paxion.data.action_clips`."""

    ann_root: str = "${paths.data_root}/SSv2/videomae_lists"  # train.csv / val.csv / test.csv
    videos: str = "${paths.data_root}/SSv2/videos"  # the list paths are relative to this folder
    num_classes: int = 174
    num_sample: int = 2  # repeated augmentation: augmented copies of each training clip
    rand_augment: Optional[str] = "rand-m7-n4-mstd0.5-inc1"  # None: off
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random resized crop area
    flip: bool = False  # SSv2: never (left/right are in the labels)
    short_side_size: int = 224
    test_num_segment: int = 2
    test_num_crop: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_sample < 1 or self.test_num_segment < 1 or self.test_num_crop < 1:
            raise ValueError("num_sample, test_num_segment and test_num_crop must be >= 1")


class ActionClipDataset(Dataset):
    """Decodes and augments one clip (or one test view) per item; unreadable videos raise or are replaced."""

    def __init__(self, rows: list[tuple[Path, int]], *, split: str, num_frames: int, image_size: int,
                 training: bool, cfg: ActionListConfig) -> None:
        self.rows, self.split, self.cfg = rows, split, cfg
        self.num_frames, self.image_size, self.training = num_frames, image_size, training
        grid = [(c, k) for c in range(cfg.test_num_segment) for k in range(cfg.test_num_crop)]
        self.views = grid if split == "test" else [(0, 0)]  # (temporal view, crop) per item block

    def __len__(self) -> int:
        return len(self.rows) * len(self.views)

    def _frames(self, path: Path, view: tuple[int, int], generator: Optional[torch.Generator]) -> torch.Tensor:
        reader = open_video(path, self.cfg.decoder)
        try:
            n = reader.num_frames
            if self.training:
                idx = clips.train_indices(n, self.num_frames, generator)
            elif self.split == "test":
                idx = clips.view_indices(n, self.num_frames, view[0], self.cfg.test_num_segment)
            else:
                idx = clips.val_indices(n, self.num_frames)
            return reader.get_frames(idx.clamp(0, n - 1))  # (T, C, H, W) native size
        finally:
            with suppress(Exception):
                reader.close()

    def _clip(self, frames: torch.Tensor, view: tuple[int, int], generator: Optional[torch.Generator]) -> torch.Tensor:
        cfg, size = self.cfg, self.image_size
        if self.training:
            return torch.stack([
                clips.train_augment(frames, size, generator, cfg.rand_augment, tuple(cfg.crop_scale), flip=cfg.flip)
                for _ in range(cfg.num_sample)
            ])  # (S, T, C, size, size)
        if self.split == "test":
            return clips.spatial_view(frames, size, view[1], cfg.test_num_crop)
        return clips.center_crop(clips.resize_short(frames, cfg.short_side_size), size)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if not 0 <= int(index) < len(self):
            raise IndexError(f"{self.split}: index {index} out of range (size {len(self)})")
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        view_no, video_index = divmod(int(index), len(self.rows))  # original order: views outermost
        view = self.views[view_no]
        skipped: list[dict[str, Any]] = []
        i = video_index
        for _ in range(self.cfg.max_replacements + 1):
            path, label = self.rows[i]
            try:
                frames = self._frames(path, view, generator)
            except VideoDecodeError as exc:
                if self.cfg.strict:
                    raise
                nxt = (i + 1) % len(self.rows)
                logger.warning("%s: unreadable video %s (%s); using clip %d", self.split, path, exc, nxt)
                skipped.append({"path": str(path), "error": str(exc), "replaced_by": nxt})
                i = nxt
                continue
            return {"video": self._clip(frames, view, generator), "label": label, "idx": int(index),
                    "video_index": video_index, "view": view, "skipped_videos": skipped}
        raise VideoDecodeError(f"{self.split}: {len(skipped)} consecutive unreadable videos from clip {video_index}")


@registry.register("dataset", "action_list")
class ActionList(DatasetBuilder):
    """VideoMAE list files; the SSv2 defaults (174 classes, 2 x 3 test views)."""

    Config = ActionListConfig
    name = "action_list"

    def rows(self, split: str) -> list[tuple[Path, int]]:
        path = Path(self.cfg.ann_root) / SPLIT_FILES[split]
        rows = [(Path(self.cfg.videos) / rel, label) for rel, label in read_list(path, self.cfg.num_classes)]
        if self.cfg.max_samples is not None:
            rows = rows[: self.cfg.max_samples]
        logger.info("%s/%s: %d clips", self.name, split, len(rows))
        return rows

    def build(self, split: str, *, num_frames: int, image_size: int, training: bool) -> ActionClipDataset:
        if split not in SPLIT_FILES:
            raise ValueError(f"dataset '{self.name}' has no split '{split}'; valid: {list(SPLIT_FILES)}")
        return ActionClipDataset(self.rows(split), split=split, num_frames=num_frames, image_size=image_size,
                                 training=training, cfg=self.cfg)


def collate_actions(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """-> ``video_input`` uint8 (B*S, T, C, H, W) (S copies of a training clip side by side), ``label``,
    ``idx``, ``video_index`` (B*S,) int64, ``view`` (B*S, 2) int64, ``skipped_videos``."""
    if not samples:
        raise ValueError("collate_actions: empty list of samples")
    videos = [s["video"] if s["video"].ndim == 5 else s["video"][None] for s in samples]  # (S, T, C, H, W)
    copies = videos[0].shape[0]
    batch: dict[str, Any] = {"video_input": torch.cat(videos)}
    for key in ("label", "idx", "video_index"):
        batch[key] = torch.tensor([s[key] for s in samples], dtype=torch.int64).repeat_interleave(copies)
    batch["view"] = torch.tensor([list(s["view"]) for s in samples], dtype=torch.int64).repeat_interleave(copies, 0)
    batch["skipped_videos"] = [e for s in samples for e in s["skipped_videos"]]
    return batch
