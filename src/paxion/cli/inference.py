"""Look at individual ActionBench samples: frame strips (PNG) and per-candidate scores (JSON).

    python src/inference.py --cfg-path configs/eval/actionbench/synthaction/embedded_patcher.yaml \
        [--ids 12 40 | --num-samples 10 --seed 42] [--split val] [--output DIR] [a.b=c ...]

For every chosen sample ``<output>/<video_id>/`` gets ``frames.png`` (the clip as the model sees it,
left to right) and ``scores.json``: the backbone's and the Knowledge Patcher's probabilities for
Action Antonym [caption, antonym caption], Object Shuffle [caption, shuffled caption] and Video
Reversal [clip, reversed clip].
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from einops import rearrange
from PIL import Image

import paxion  # noqa: F401  (fills the registry)
from paxion.config import load_config
from paxion.api import score_captions, score_reversal
from paxion.registry import registry

logger = logging.getLogger(__name__)


def frame_strip(video: torch.Tensor, scale: int = 1, gap: int = 2) -> Image.Image:
    """uint8 (T, C, H, W) -> one RGB image with the frames side by side, ``gap`` px apart."""
    t, _, h, w = video.shape
    padded = torch.full((t, 3, h, w + gap), 255, dtype=torch.uint8)
    padded[..., :w] = video[:, :3]
    strip = rearrange(padded, "t c h w -> h (t w) c")[:, : t * (w + gap) - gap]
    image = Image.fromarray(np.ascontiguousarray(strip.numpy()))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST) if scale > 1 else image


def sample_scores(model: Any, sample: dict[str, Any]) -> dict[str, Any]:
    """All probes of one dataset sample, both scorers."""
    video = sample["video"][None]  # (1, T, C, H, W)
    caption = sample["text"]
    out: dict[str, Any] = {"video_id": sample.get("video_id"), "caption": caption, "template": sample.get("template")}
    pairs = {"action_antonym": sample.get("action_antonym_text"), "object_shuffle": sample.get("object_shuffled_text")}
    for probe, negative in pairs.items():
        if negative is not None:
            out[probe] = score_captions(model, video, [caption, negative]).as_dict()
    out["video_reversal"] = score_reversal(model, video, caption).as_dict()
    return out


def choose(
    count: int, ids: Optional[Sequence[str]], num_samples: int, seed: int, video_ids: Sequence[str]
) -> list[int]:
    """Dataset indices: the given video ids, else ``num_samples`` drawn with ``seed``."""
    if ids:
        where = {vid: i for i, vid in enumerate(video_ids)}
        unknown = [v for v in ids if v not in where]
        if unknown:
            raise KeyError(f"video ids not in this split: {unknown}")
        return [where[v] for v in ids]
    return sorted(random.Random(seed).sample(range(count), min(num_samples, count)))


def run(cfg_path: str, overrides: Sequence[str], output: Path, split: str, ids: Optional[Sequence[str]],
        num_samples: int, seed: int, scale: int = 4) -> list[dict[str, Any]]:
    cfg = load_config(cfg_path, list(overrides))
    task = registry.get("task", cfg.task.name)(cfg)
    model = task.build_model().eval()
    if cfg.run.load_ckpt_path:
        from paxion.engine.checkpoint import load_checkpoint, load_model_weights

        load_model_weights(model, load_checkpoint(cfg.run.load_ckpt_path)["model"], cfg.run.load_ckpt_path)
    dataset = task.build_datasets(model, [split])[split]
    video_ids = [str(r.get("video_id")) for r in dataset.records]
    results = []
    for index in choose(len(dataset), ids, num_samples, seed, video_ids):
        sample = dataset[index]
        folder = output / str(sample.get("video_id", index))
        folder.mkdir(parents=True, exist_ok=True)
        frame_strip(sample["video"], scale).save(folder / "frames.png")
        scores = sample_scores(model, sample)
        (folder / "scores.json").write_text(json.dumps(scores, indent=2))
        results.append(scores)
    logger.info("wrote %d samples to %s", len(results), output)
    return results


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description="Frame strips and per-candidate scores for ActionBench samples.")
    parser.add_argument("--cfg-path", "--config", dest="cfg_path", required=True, help="an ActionBench eval config")
    parser.add_argument("--ids", nargs="+", default=None, help="video ids (default: random samples)")
    parser.add_argument("--num-samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", default="val")
    parser.add_argument("--output", type=Path, default=Path("output/inference"))
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=c")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = run(args.cfg_path, args.overrides, args.output, args.split, args.ids, args.num_samples, args.seed)
    for r in results:
        aa = r.get("action_antonym", {})
        print(f"{r['video_id']}: {r['caption']!r}  AA patched p(caption)={aa.get('patcher', [float('nan')])[0]:.3f}")
    print(f"output: {args.output}")
    return results


if __name__ == "__main__":
    main()
