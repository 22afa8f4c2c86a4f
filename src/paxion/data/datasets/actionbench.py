"""ActionBench on SSv2 and on Ego4D: captions with action-antonym and object-shuffled variants.

Layout under ``paths.data_root`` (see ``dataset_cards/actionbench_*.md``):

    ActionBench/ssv2/shuffled_object_and_action_antonyms/{train,validation}.json, train_antonym.json,
        test-answers.csv, labels.json, state_change_heavy_instance_filtering_{train,val}.json
    ActionBench/ego4d/egoclip_subset_action_antonyms[_object_shuffled]_train_val_test_split/{split}.jsonl
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from paxion.data.annotations import AnnotationError, field, read_csv, read_json, read_json_list, read_jsonl
from paxion.data.base import DatasetBuilder, LoadedSplit, VideoDataConfig, drop_missing
from paxion.data.text import build_text_processor
from paxion.registry import registry

SALIENCY_FILE = "state_change_heavy_instance_filtering_{split}.json"


def load_saliency(path: Path) -> Optional[dict[str, bool]]:
    """``{key: if_keep}`` from a state-change saliency file, or None when the file does not exist."""
    if not path.is_file():
        return None
    table = read_json(path)
    try:
        return {str(k): bool(v["if_keep"]) for k, v in table.items()}
    except (AttributeError, KeyError, TypeError):
        raise AnnotationError(f"{path}: every value must be an object with 'if_keep'") from None


def _saliency_flag(table: Optional[dict[str, bool]], key: str, path: Path) -> bool:
    if table is None:
        return True  # the original's default: every sample may train ATM
    if key not in table:
        raise AnnotationError(f"{path}: no entry for sample '{key}'")
    return table[key]


def _process_texts(record: dict[str, Any], proc: Callable[[str], str]) -> dict[str, Any]:
    for key in ("text", "action_antonym_text", "object_shuffled_text"):
        if record.get(key) is not None:
            record[key] = proc(record[key])
        else:
            record.pop(key, None)
    return record


@registry.register("dataset", "actionbench_ssv2")
class ActionBenchSSv2(DatasetBuilder):
    """ActionBench-SSv2: train/val with labels, antonyms and (val) object shuffles; test has templates only."""

    @dataclass
    class Config(VideoDataConfig):
        ann_root: str = "${paths.data_root}/ActionBench/ssv2/shuffled_object_and_action_antonyms"
        videos: str = "${paths.data_root}/SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"
        fps: Optional[float] = 5.0
        use_templates_as_labels: bool = False  # forced on for test, which has templates only
        state_change_filtering: bool = False  # True: drop non-salient clips (original option, off)
        antonym_fill_seed: int = 42  # train items without antonym get a random train_antonym label

    name = "actionbench_ssv2"

    def load(self, split: str) -> LoadedSplit:
        cfg = self.cfg
        root = Path(cfg.ann_root)
        labels = read_json(root / "labels.json")  # must exist, as in the original
        if not isinstance(labels, dict):
            raise AnnotationError(f"{root / 'labels.json'}: expected an object template -> index")
        records = self._load_test(root) if split == "test" else self._load_train_val(root, split)
        proc = build_text_processor(cfg.text_processor, cfg.text_prompt, cfg.max_words)
        records = [_process_texts(r, proc) for r in records]
        records, missing = drop_missing(records, cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)

    def _train_antonyms(self, root: Path) -> dict[int, dict[str, Any]]:
        path = root / "train_antonym.json"
        if not path.is_file():
            return {}
        return {int(field(d, "id", f"{path}[{i}]")): d for i, d in enumerate(read_json_list(path))}

    def _load_train_val(self, root: Path, split: str) -> list[dict[str, Any]]:
        cfg = self.cfg
        path = root / ("validation.json" if split == "val" else "train.json")
        saliency_path = root / SALIENCY_FILE.format(split=split)
        saliency = load_saliency(saliency_path)
        antonyms = self._train_antonyms(root) if split == "train" else {}
        fill_rng, fill_ids = random.Random(cfg.antonym_fill_seed), sorted(antonyms)
        use_tpl = cfg.use_templates_as_labels
        records = []
        for i, d in enumerate(read_json_list(path)):
            where = f"{path}[item {i}]"
            vid = field(d, "id", where, int)
            flag = _saliency_flag(saliency, str(vid), saliency_path)
            if cfg.state_change_filtering and not flag:
                continue
            template = field(d, "template", where).replace("[something]", "something")
            label = field(d, "label", where).capitalize()
            src = d
            if split == "train" and antonyms:
                if vid in antonyms:
                    src = antonyms[vid]
                else:  # original quirk: a random train_antonym item's *original* caption as the negative
                    other = antonyms[fill_rng.choice(fill_ids)]
                    src = {"label_action_antonym_clip_text": other["label"],
                           "template_action_antonym_clip_text": other["template"]}
            antonym_key = "template_action_antonym_clip_text" if use_tpl else "label_action_antonym_clip_text"
            records.append({
                "video_path": Path(cfg.videos) / f"{vid}.mp4",
                "video_id": str(vid),
                "text": template if use_tpl else label,
                "template": template,
                "action_antonym_text": src.get(antonym_key),
                "object_shuffled_text": None if use_tpl else d.get("label_object_shuffled_clip_text"),
                "state_change_saliency_flag": flag,
            })
        return records

    def _load_test(self, root: Path) -> list[dict[str, Any]]:
        path = root / "test-answers.csv"
        records = []
        for line, row in read_csv(path, required=("id", "template"), delimiter=";"):
            where = f"{path}:{line}"
            vid = field(row, "id", where, int)
            template = field(row, "template", where).replace("[something]", "something")
            records.append({
                "video_path": Path(self.cfg.videos) / f"{vid}.mp4",
                "video_id": str(vid),
                "text": template,
                "template": template,
                "action_antonym_text": row.get("template_action_antonym_clip_text") or None,
                "state_change_saliency_flag": True,  # the original never loads saliency for test
            })
        return records


@registry.register("dataset", "actionbench_ego4d")
class ActionBenchEgo4D(DatasetBuilder):
    """ActionBench-Ego4D: EgoClip narrations on clip-relative segments of ``<clip_uid>.mp4``."""

    @dataclass
    class Config(VideoDataConfig):
        ann_dir: str = "${paths.data_root}/ActionBench/ego4d/egoclip_subset_action_antonyms_train_val_test_split"
        object_shuffled_ann_dir: str = (
            "${paths.data_root}/ActionBench/ego4d/egoclip_subset_action_antonyms_object_shuffled_train_val_test_split"
        )
        use_object_shuffled_split: bool = False  # the subset with object_shuffled_clip_text (val/test)
        videos: str = "${paths.data_root}/Ego4D/video_clips/clips_downsampled_5fps_downsized_224x224"
        fps: Optional[float] = 5.0  # None: each row's clip_fps
        state_change_filtering: bool = False
        text_processor: str = "ego4d_text"

    name = "actionbench_ego4d"

    def load(self, split: str) -> LoadedSplit:
        cfg = self.cfg
        if cfg.use_object_shuffled_split and split == "train":
            raise ValueError(f"{self.name}: the object-shuffled split has no train part (val/test only)")
        ann_dir = Path(cfg.object_shuffled_ann_dir if cfg.use_object_shuffled_split else cfg.ann_dir)
        saliency_path = Path(cfg.ann_dir) / SALIENCY_FILE.format(split=split)
        saliency = load_saliency(saliency_path)
        path = ann_dir / f"{split}.jsonl"
        records = []
        for line, row in read_jsonl(path):
            where = f"{path}:{line}"
            uid = field(row, "clip_uid", where)
            start = field(row, "clip_relative_start", where, float)
            end = field(row, "clip_relative_end", where, float)
            # the original's key: Python str() of the float times
            flag = _saliency_flag(saliency, f"{uid}__{row['clip_relative_start']}__{row['clip_relative_end']}",
                                  saliency_path)
            if cfg.state_change_filtering and not flag:
                continue
            record = {
                "video_path": Path(cfg.videos) / f"{uid}.mp4",
                "segment": (start, end),
                "video_id": uid,
                "text": field(row, "clip_text", where),
                "action_antonym_text": row.get("action_antonym_clip_text"),
                "object_shuffled_text": row.get("object_shuffled_clip_text"),
                "state_change_saliency_flag": flag,
            }
            if cfg.fps is None:
                record["fps"] = field(row, "clip_fps", where, float)
            records.append(record)
        proc = build_text_processor(cfg.text_processor, cfg.text_prompt, cfg.max_words)
        records = [_process_texts(r, proc) for r in records]
        records, missing = drop_missing(records, cfg.strict, f"{self.name}/{split}")
        return LoadedSplit(records, missing_videos=missing)
