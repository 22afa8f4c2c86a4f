"""Open-VCLIP's label databases: SlowFast-style CSV lists plus an index -> class-name JSON.

List files (``{ann_root}/train.csv``, ``val.csv``, ``test.csv``): one clip per line, no header,
``<path relative to videos><separator><integer label>`` with ``separator`` the original's
``DATA.PATH_LABEL_SEPARATOR`` (``,`` in every released script), e.g. ``val/abseiling/0wR5jVB-WPk.mp4,0``.
Class names: ``index_to_class`` (``DATA.INDEX_LABEL_MAPPING_FILE``), ``{"0": "abseiling", ...}``; the
zero-shot classifier is built from these names, so a split file may use any label space (UCF-101's
101 classes, a 50-class half, K600's 220 new classes, ...).

Frames follow SlowFast's Kinetics loader: a clip spans ``num_frames x sampling_rate`` frames at
``target_fps`` (scaled to the video's own frame rate); training starts it at a random offset, test
view ``i`` of ``N`` at ``i / (N - 1)`` of the free range (one view: the middle), and the frames are
spread evenly over it. Space: training resizes the short side to a random size in
``train_jitter_scales`` (scaled by image_size / 224), takes a random crop and flips half the clips;
evaluation resizes the short side to the image size and takes the test crop(s) (1 crop: the centre).
Unreadable videos are replaced by the next clip and reported, as for every list dataset.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from paxion.data import action_clips as clips
from paxion.data.annotations import AnnotationError
from paxion.data.base import DatasetBuilder
from paxion.data.datasets.ssv2_list import SPLIT_FILES, ActionClipDataset, ActionListConfig
from paxion.data.video import open_video
from paxion.registry import registry

logger = logging.getLogger(__name__)


def read_index_to_class(path: Path) -> list[str]:
    """``{"0": name, ...}`` -> names in index order; the indices must be exactly 0..C-1."""
    if not path.is_file():
        raise AnnotationError(f"{path}: index -> class JSON not found")
    try:
        raw = json.loads(path.read_text())
        table = {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError) as exc:
        raise AnnotationError(f"{path}: expected a JSON object {{\"0\": \"class name\", ...}} ({exc})") from None
    if sorted(table) != list(range(len(table))):
        raise AnnotationError(f"{path}: class indices must be 0..{len(table) - 1} without gaps")
    return [table[i] for i in range(len(table))]


def read_label_list(path: Path, separator: str, num_classes: int) -> list[tuple[str, int]]:
    """``path<sep>label`` lines -> [(path, label)]; a malformed line raises naming ``file:line``."""
    if not path.is_file():
        raise AnnotationError(f"{path}: list file not found")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, label = line.rpartition(separator)
        if not sep or not name or not label.strip().isdigit():
            raise AnnotationError(f"{path}:{line_no}: expected '<video path>{separator}<label>', got {line!r}")
        if not int(label) < num_classes:
            raise AnnotationError(f"{path}:{line_no}: label {label} outside the {num_classes} classes")
        rows.append((name, int(label)))
    return rows


def clip_indices(num_video_frames: int, clip_span: float, num_frames: int, start: float) -> torch.Tensor:
    """``num_frames`` frames spread evenly over [start, start + span - 1], rounded and clamped. -> (T,)."""
    end = start + clip_span - 1
    idx = torch.linspace(start, end, num_frames).round().long()
    return idx.clamp(0, max(num_video_frames - 1, 0))


@dataclass
class OpenVCLIPListConfig(ActionListConfig):
    ann_root: str = "${paths.data_root}/openvclip_label_db/k400"  # train.csv / val.csv / test.csv
    videos: str = "${paths.data_root}/kinetics400"  # DATA.PATH_PREFIX
    index_to_class: str = "${paths.data_root}/openvclip_label_db/k400-index2cls.json"
    separator: str = ","  # DATA.PATH_LABEL_SEPARATOR
    num_classes: int = 0  # taken from index_to_class
    sampling_rate: int = 16  # DATA.SAMPLING_RATE: frames between sampled frames at target_fps
    target_fps: float = 30.0
    train_jitter_scales: list[int] = field(default_factory=lambda: [224, 256])  # DATA.TRAIN_JITTER_SCALES at 224 px
    flip: bool = True
    num_sample: int = 1
    rand_augment: Optional[str] = None
    test_num_segment: int = 3  # TEST.NUM_ENSEMBLE_VIEWS
    test_num_crop: int = 1  # TEST.NUM_SPATIAL_CROPS


class OpenVCLIPClipDataset(ActionClipDataset):
    """SlowFast-style frame span and crops on top of the list dataset's decoding, views and replacement."""

    cfg: OpenVCLIPListConfig

    def __init__(self, *args, class_names: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.class_names = class_names

    def _frames(self, path: Path, view: tuple[int, int], generator: Optional[torch.Generator]) -> torch.Tensor:
        reader = open_video(path, self.cfg.decoder)
        try:
            n, fps = reader.num_frames, float(reader.fps or self.cfg.target_fps)
            span = self.num_frames * self.cfg.sampling_rate * fps / self.cfg.target_fps
            free = max(n - span, 0.0)
            if self.training:
                start = float(torch.rand((), generator=generator)) * free
            else:
                views = self.cfg.test_num_segment if self.split == "test" else 1
                start = free * view[0] / (views - 1) if views > 1 else free / 2
            return reader.get_frames(clip_indices(n, span, self.num_frames, start))
        finally:
            reader.close()

    def _clip(self, frames: torch.Tensor, view: tuple[int, int], generator: Optional[torch.Generator]) -> torch.Tensor:
        size = self.image_size
        if not self.training:
            crops = self.cfg.test_num_crop if self.split == "test" else 1
            if crops == 1:
                return clips.center_crop(clips.resize_short(frames, size), size)
            return clips.spatial_view(frames, size, view[1], crops)
        low, high = (round(s * size / 224) for s in self.cfg.train_jitter_scales)
        short = int(torch.randint(low, high + 1, (), generator=generator))
        frames = clips.resize_short(frames, short)
        h, w = frames.shape[-2:]
        top = int(torch.randint(0, h - size + 1, (), generator=generator))
        left = int(torch.randint(0, w - size + 1, (), generator=generator))
        frames = frames[..., top : top + size, left : left + size]
        if self.cfg.flip and float(torch.rand((), generator=generator)) < 0.5:
            frames = frames.flip(-1)
        return frames.contiguous()


@registry.register("dataset", "openvclip_label_db")
class OpenVCLIPLabelDB(DatasetBuilder):
    """Open-VCLIP's label databases for Kinetics-400/600, UCF-101 and HMDB-51 (and SynthAction)."""

    Config = OpenVCLIPListConfig
    name = "openvclip_label_db"

    def class_names(self) -> list[str]:
        return read_index_to_class(Path(self.cfg.index_to_class))

    def rows(self, split: str, num_classes: int) -> list[tuple[Path, int]]:
        path = Path(self.cfg.ann_root) / SPLIT_FILES[split]
        listed = read_label_list(path, self.cfg.separator, num_classes)
        rows = [(Path(self.cfg.videos) / rel, label) for rel, label in listed]
        if self.cfg.max_samples is not None:
            rows = rows[: self.cfg.max_samples]
        logger.info("%s/%s: %d clips, %d classes", self.name, split, len(rows), num_classes)
        return rows

    def build(self, split: str, *, num_frames: int, image_size: int, training: bool) -> OpenVCLIPClipDataset:
        if split not in SPLIT_FILES:
            raise ValueError(f"dataset '{self.name}' has no split '{split}'; valid: {list(SPLIT_FILES)}")
        names = self.class_names()
        return OpenVCLIPClipDataset(
            self.rows(split, len(names)), split=split, num_frames=num_frames, image_size=image_size,
            training=training, cfg=self.cfg, class_names=names,
        )
