"""SynthAction annotations in the formats of ActionBench-SSv2 and the SSv2 retrieval tasks.

Besides the original fields, each item carries ``action``, ``antonym_action``, ``objects``,
``object_caption`` ("a red circle"), the caption used to pre-train a model that knows objects but
not actions, and ``object_positions``: per frame of the video file, the centre ``[x, y]`` (fractions of
the frame width and height) of each of the action's objects, the kind of track Something-Else's boxes
give for SSv2 (``synthaction_objects`` turns it into position words, see :func:`position_words`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from paxion.data.synthetic.hard import HardConfig, hard_object_centres
from paxion.data.synthetic.scenes import (
    ACTIONS, COLORS, SHAPES, antonym_of, object_phrase, scene_states, template_of,
)

SSV2_ANN = Path("ActionBench/ssv2/shuffled_object_and_action_antonyms")
SSV2_VIDEOS = Path("SSv2/video_clips/clips_downsampled_5fps_downsized_224x224")
RETRIEVAL_ANN = Path("SSv2/ssv2_label_ssv2_template")
SALIENT_IOU = 0.5  # start/end object masks overlapping less than this count as a visible state change


def fill(template: str, phrases: list[str]) -> str:
    for phrase in phrases:
        template = template.replace("[something]", phrase, 1)
    return template


def template_entry(action: str) -> dict[str, str]:
    return {"template": template_of(action), "antonym": antonym_of(action),
            "antonym_template": template_of(antonym_of(action))}


def label_index() -> dict[str, str]:
    """labels.json: bracket-free template -> index (a string, as SSv2's file)."""
    templates = sorted(template_of(a).replace("[something]", "something") for a in ACTIONS)
    return {t: str(i) for i, t in enumerate(templates)}


def object_centres(spec: dict[str, Any], cfg: Any) -> np.ndarray:
    """(T, K, 2) centre (x, y) of each of the action's K objects in every frame of the clip, frame units."""
    if isinstance(cfg, HardConfig):
        return hard_object_centres(spec, cfg)
    states, _ = scene_states(spec["action"], cfg.frames, spec["params"])
    return np.stack([np.stack([st.cx, st.cy], 1) for st in states], 1)


def position_words(x: float, y: float) -> str:
    """Where a centre lies on a 3 x 3 grid of the frame: "top left", "middle centre", "bottom right"."""
    rows, cols = ("top", "middle", "bottom"), ("left", "centre", "right")
    cell = lambda v: min(max(int(v * 3), 0), 2)  # noqa: E731  (outside the frame counts as its edge)
    return f"{rows[cell(y)]} {cols[cell(x)]}"


def item_for(spec: dict[str, Any], rng: np.random.Generator, cfg: Any) -> dict[str, Any]:
    action, antonym = spec["action"], antonym_of(spec["action"])
    phrases = [object_phrase(s, c) for s, c in spec["objects"]]
    others = [object_phrase(s, c) for s in SHAPES for c in COLORS]
    shuffled = [str(rng.choice([o for o in others if o not in phrases])) for _ in phrases]
    template = template_of(action)
    return {
        "id": spec["id"],
        "label": fill(template, phrases),
        "template": template,
        "placeholders": phrases,
        "template_action_antonym_clip_text": template_of(antonym).replace("[something]", "something"),
        "label_action_antonym_clip_text": fill(template_of(antonym), phrases),
        "label_object_shuffled_clip_text": fill(template, shuffled).lower(),
        "action": action,
        "antonym_action": antonym,
        "objects": [list(o) for o in spec["objects"]],
        "object_caption": " and ".join(f"a {p}" for p in phrases),
        "object_positions": np.round(object_centres(spec, cfg).astype(np.float64), 3).tolist(),
    }


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def annotation_files(out: Path) -> list[Path]:
    """Every annotation file :func:`write_all` writes under ``out``."""
    root = out / SSV2_ANN
    names = ["train.json", "validation.json", "train_antonym.json", "labels.json", "test-answers.csv",
             *(f"state_change_heavy_instance_filtering_{split}.json" for split in ("train", "val"))]
    retrieval = [f"ssv2_ret_{kind}_{name}.json" for kind in ("label", "template") for name in ("train", "val_small")]
    return [*(root / n for n in names), *(out / RETRIEVAL_ANN / n for n in retrieval), out / "synthaction_specs.json"]


def write_all(out: Path, specs: list[dict[str, Any]], iou: dict[int, float], cfg: Any,
              splits: Sequence[str] = ("train", "val", "test")) -> None:
    """Annotations of the clips of ``splits`` (items are drawn for every clip: the same text whatever is written)."""
    rng = np.random.default_rng([cfg.seed, 7])
    items = {s["id"]: item_for(s, rng, cfg) for s in specs}
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for s in specs:
        if s["split"] in splits:
            by_split[s["split"]].append(items[s["id"]])
    frames = {s["id"]: s.get("frames", cfg.frames) for s in specs}  # the hard preset's clips vary in length
    root = out / SSV2_ANN
    _dump(root / "train.json", by_split["train"])
    _dump(root / "validation.json", by_split["val"])
    _dump(root / "train_antonym.json", by_split["train"])
    _dump(root / "labels.json", label_index())
    for split in ("train", "val"):
        _dump(root / f"state_change_heavy_instance_filtering_{split}.json",
              {str(it["id"]): _saliency(it["id"], iou[it["id"]], frames[it["id"]] / cfg.fps)
               for it in by_split[split]})
    with (root / "test-answers.csv").open("w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["id", "template", "template_action_antonym_clip_text"])
        for it in by_split["test"]:
            writer.writerow([it["id"], it["template"].replace("[something]", "something"),
                             it["template_action_antonym_clip_text"]])
    for split, name in (("train", "train"), ("val", "val_small")):
        rows = by_split[split]
        _dump(out / RETRIEVAL_ANN / f"ssv2_ret_label_{name}.json",
              [{"video": f"{it['id']}.webm", "caption": it["label"]} for it in rows])
        groups: dict[str, list[str]] = {}
        for it in rows:
            groups.setdefault(it["template"], []).append(f"{it['id']}.webm")
        _dump(out / RETRIEVAL_ANN / f"ssv2_ret_template_{name}.json",
              [{"video": v, "caption": t} for t, v in sorted(groups.items())])
    _dump(out / "synthaction_specs.json", [s for s in specs if s["split"] in splits])


def _saliency(clip_id: int, iou: float, seconds: float) -> dict[str, Any]:
    """Same keys as the original file; the similarity is the start/end mask IoU, not BLIP cosines."""
    return {"clip_uid": clip_id, "clip_relative_start_end": [0.0, seconds],
            "start_state_2_t": None, "end_state_2_t": None, "state_2_t_sim_diff": None,
            "v_2_v_sim": iou, "if_keep": bool(iou < SALIENT_IOU)}
