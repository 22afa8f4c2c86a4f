"""Write SynthAction: real mp4 clips plus annotations in the ActionBench-SSv2 and SSv2-retrieval formats.

The output folder is laid out like ``paths.data_root``, so ``paths.data_root=<out>`` makes the real
``actionbench_ssv2``, ``ssv2_label_retrieval`` and ``ssv2_template_retrieval`` configs work unchanged:

    <out>/ActionBench/ssv2/shuffled_object_and_action_antonyms/   train.json, validation.json, ...
    <out>/SSv2/video_clips/clips_downsampled_5fps_downsized_224x224/<id>.mp4   (name kept; clips are small)
    <out>/SSv2/ssv2_label_ssv2_template/ssv2_ret_{label,template}_{train,val_small}.json
    <out>/synthaction.json   generation settings and the action table; also the marker that lets a
                             later run rewrite the folder (files it did not write are never overwritten)

``preset="hard"`` (``--preset hard``) writes the cluttered, variable-length clips of
:mod:`paxion.data.synthetic.hard` in the same layout and formats.

Everything is a function of the seed: clip specs are drawn in the parent process, each clip's pixels
from a generator seeded with (seed, clip id), so the worker count never changes the output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from paxion.data.synthetic import annotations as ann
from paxion.data.synthetic.annotations import SSV2_VIDEOS
from paxion.data.synthetic.hard import HardConfig, make_hard_specs, render_hard
from paxion.data.synthetic.scenes import (
    ACTIONS, COLORS, SHAPES, Scene, background, balanced_specs, render, scene_states,
)

logger = logging.getLogger(__name__)

MARKER = "synthaction.json"  # written first (complete: false) and last (complete: true)
GENERATOR = "paxion.data.synthetic"


class OverwriteError(ValueError):
    """The output folder holds files this generator did not write."""


@dataclass
class SynthConfig:
    seed: int = 0
    num_train: int = 2000
    num_val: int = 250
    num_test: int = 250
    frames: int = 8  # 8 frames of 32x32: the embedded default's data, what the shipped models were trained on
    size: int = 32
    fps: int = 5
    textured_background: bool = True
    noise_std: float = 3.0
    distractor_prob: float = 0.25
    crf: int = 17  # x264 quality; lower = closer to the rendered pixels, larger files
    workers: int = 0  # 0: os.cpu_count()


PRESETS = {"default": SynthConfig, "hard": HardConfig}  # --preset: the embedded default's clips, or cluttered ones


def clip_spec(clip_id: int, split: str, action: str, rng: np.random.Generator, cfg: SynthConfig) -> dict[str, Any]:
    """Everything random about one clip except its pixel noise and background."""
    pair, _ = ACTIONS[action]
    combos = [(s, c) for s in SHAPES for c in COLORS]
    picks = rng.choice(len(combos), size=3, replace=False)  # action objects + a distinct distractor
    objects = [combos[i] for i in picks[: pair.num_objects]]
    distractor = None
    if pair.num_objects == 1 and rng.random() < cfg.distractor_prob:
        shape, colour = combos[picks[2]]
        corner = rng.integers(4)  # a corner keeps it mostly clear of the action's path
        distractor = (shape, colour, (0.12, 0.88)[corner % 2], (0.12, 0.88)[corner // 2])
    params = {"x": float(rng.uniform(0.38, 0.62)), "y": float(rng.uniform(0.38, 0.62)),
              "r": float(rng.uniform(0.13, 0.17)), "dx": float(rng.uniform(-0.04, 0.04))}
    return {"id": clip_id, "split": split, "action": action, "objects": objects, "params": params,
            "distractor": distractor}


def make_specs(cfg: SynthConfig) -> list[dict[str, Any]]:
    """Balanced over actions within each split, shuffled, ids 1..N in split order."""
    return balanced_specs(cfg, np.random.default_rng(cfg.seed), clip_spec)


def render_spec(spec: dict[str, Any], cfg: SynthConfig, with_noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """-> (frames uint8 (T, H, W, 3), visible coverage (T, H, W)) of one clip."""
    rng = np.random.default_rng([cfg.seed, spec["id"]])
    states, occluder = scene_states(spec["action"], cfg.frames, spec["params"])
    scene = Scene([tuple(o) for o in spec["objects"]], states, occluder,
                  tuple(spec["distractor"]) if spec["distractor"] else None)
    bg = background(cfg.size, rng, cfg.textured_background)
    noise = None
    if with_noise and cfg.noise_std > 0:
        noise = rng.standard_normal((cfg.frames, cfg.size, cfg.size, 1), dtype=np.float32)  # luma noise
        noise *= np.float32(cfg.noise_std)
    return render(scene, cfg.frames, cfg.size, bg, noise)


def encode_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = 17) -> None:
    """H.264 mp4 via PyAV; written to a temporary name and renamed so an interrupted run leaves no stub."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": str(crf), "threads": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


def _work(job: tuple[list[dict[str, Any]], SynthConfig, str]) -> list[tuple[int, float]]:
    """Render and encode a chunk of clips -> [(id, start/end IoU of the objects' visible masks)]."""
    specs, cfg, video_dir = job
    out = []
    for spec in specs:
        frames, coverage = render_hard(spec, cfg) if isinstance(cfg, HardConfig) else render_spec(spec, cfg)
        encode_mp4(Path(video_dir) / f"{spec['id']}.mp4", frames, cfg.fps, cfg.crf)
        out.append((spec["id"], mask_iou(coverage[0] > 0.5, coverage[-1] > 0.5)))
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def read_marker(folder: str | Path) -> Optional[dict[str, Any]]:
    """The generator's ``synthaction.json`` in ``folder`` (None when absent or not written by it)."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == GENERATOR else None


def find_generation(video_path: str | Path, levels: int = 5) -> Optional[dict[str, Any]]:
    """Generator settings of the SynthAction folder holding ``video_path``: ``{"path", "config"}`` or None."""
    for folder in list(Path(video_path).parents)[:levels]:
        meta = read_marker(folder)
        if meta is not None and isinstance(meta.get("config"), dict):
            return {"path": str(folder / MARKER), "config": meta["config"]}
    return None


def check_overwrite(out: Path, specs: list[dict[str, Any]]) -> None:
    """Refuse to write where files exist that this generator did not write (no marker of its own)."""
    if read_marker(out) is not None:
        return
    video_dir = out / SSV2_VIDEOS
    targets = [out / MARKER, *ann.annotation_files(out), *(video_dir / f"{s['id']}.mp4" for s in specs)]
    clash = [p for p in targets if p.exists()]
    if clash:
        raise OverwriteError(
            f"{clash[0]}: already exists and was not written by the SynthAction generator ({len(clash)} of the "
            f"files it would write exist; no {MARKER} of its own in {out}); refusing to overwrite: choose an "
            "empty or new output folder"
        )


def _write_marker(out: Path, cfg: SynthConfig, complete: bool, splits: Optional[Sequence[str]] = None) -> None:
    meta = {"generator": GENERATOR, "complete": complete, "config": dataclasses.asdict(cfg),
            "actions": {a: ann.template_entry(a) for a in sorted(ACTIONS)}}
    if splits is not None:  # only these splits' clips and annotations were written
        meta["splits"] = list(splits)
    (out / MARKER).write_text(json.dumps(meta, indent=1))


def generate(out_dir: str | Path, seed: int = 0, preset: str = "default", splits: Optional[Sequence[str]] = None,
             **overrides: Any) -> Path:
    """Write SynthAction under ``out_dir`` (see module doc); ``overrides`` are fields of the preset's config
    (:class:`SynthConfig`, or :class:`~paxion.data.synthetic.hard.HardConfig` for ``preset="hard"``).

    ``splits`` (default: all) writes only those splits' clips and annotations, identical to the same clips
    of a full generation (every clip is still drawn); the marker records them, so a later full call adds
    the rest.

    Raises :class:`OverwriteError` when ``out_dir`` holds a file it would write and is not a folder the
    generator wrote before.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown SynthAction preset '{preset}' (known: {', '.join(PRESETS)})")
    cfg = PRESETS[preset](seed=seed, **overrides)
    if cfg.frames < 2 or cfg.size < 16:
        raise ValueError(f"SynthAction needs frames >= 2 and size >= 16, got {cfg.frames}, {cfg.size}")
    if isinstance(cfg, HardConfig) and not 2 <= cfg.min_frames <= cfg.frames:
        raise ValueError(f"the hard preset needs 2 <= min_frames <= frames, got {cfg.min_frames}, {cfg.frames}")
    out = Path(out_dir)
    specs = make_hard_specs(cfg) if isinstance(cfg, HardConfig) else make_specs(cfg)
    written = [s for s in specs if splits is None or s["split"] in splits]
    check_overwrite(out, written)
    video_dir = out / SSV2_VIDEOS
    video_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(out, cfg, complete=False)  # from here on the folder is ours, even if interrupted
    workers = cfg.workers or os.cpu_count() or 1
    chunk = max(1, min(64, len(written) // (4 * workers) + 1))
    jobs = [(written[i : i + chunk], cfg, str(video_dir)) for i in range(0, len(written), chunk)]
    if workers == 1:
        results = [r for job in jobs for r in _work(job)]
    else:
        with mp.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            results = [r for part in pool.imap(_work, jobs) for r in part]
    iou = dict(results)
    ann.write_all(out, specs, iou, cfg, *([] if splits is None else [tuple(splits)]))
    _write_marker(out, cfg, complete=True, splits=splits)
    logger.info("SynthAction: %d clips written under %s", len(written), out)
    return out


def load_specs(out_dir: str | Path) -> Optional[list[dict[str, Any]]]:
    """Clip specs as recorded in the annotations (for tests and analysis)."""
    path = Path(out_dir) / "synthaction_specs.json"
    return json.loads(path.read_text()) if path.is_file() else None
