"""Frozen backbone forward throughput: clips/s and achieved TFLOP/s for any registered backbone.

    python benchmarks/backbone_forward.py --backbone internvideo_tiny --precision fp32 --batch-size 4
    python benchmarks/backbone_forward.py --backbone internvideo_mm_l14 --precision bf16 --batch-size 32

FLOPs are counted once with ``torch.utils.flop_counter.FlopCounterMode`` (matmul/conv/attention,
2 per multiply-add) on the same forward that is timed. Also reports what a time-reversed clip costs
when it reuses the frame features (``aggregate(flip_time(features))``) instead of a second full
forward, for backbones whose frame encoder is order-independent.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

import paxion  # noqa: F401  (fills the registry)
from paxion.backbones.base import VideoTextBackbone, flip_time
from paxion.registry import registry

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, help=f"one of {registry.names('backbone')}")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frames", type=int, default=None, help="default: the backbone's preprocess.num_frames")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    return parser.parse_args()


def timed(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Mean seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    with torch.device(device):
        backbone: VideoTextBackbone = registry.get("backbone", args.backbone)()
    backbone.eval().requires_grad_(False)
    prep = backbone.preprocess
    frames = args.frames or prep.num_frames
    video = torch.randn(args.batch_size, frames, 3, prep.image_size, prep.image_size, device=device)
    captions = ["a person moves a cup from left to right"] * args.batch_size
    text = {k: v.to(device) for k, v in backbone.tokenize(captions).items()}
    dtype = DTYPES[args.precision]
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    with torch.inference_mode(), autocast:
        features = backbone.encode_frames(video)
        runs = {
            "video": lambda: backbone.encode_video(video),
            "text": lambda: backbone.encode_text(text),
            "reversed (reuse)": lambda: backbone.aggregate(flip_time(features)),
        }
        if not backbone.frame_order_invariant_frames:
            runs.pop("reversed (reuse)")
        results = {name: (count_flops(fn), timed(fn, device, args.warmup, args.iters)) for name, fn in runs.items()}

    params = sum(p.numel() for p in backbone.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.backbone}: {params / 1e6:.2f} M params | {name} | {args.precision} | "
          f"batch {args.batch_size} x {frames} frames x {prep.image_size}px")
    for part, (flops, seconds) in results.items():
        print(f"  {part:<17} {args.batch_size / seconds:10.2f} clips/s  {seconds * 1e3:9.2f} ms/batch  "
              f"{flops / args.batch_size / 1e9:9.3f} GFLOP/clip  {flops / seconds / 1e12:10.4g} TFLOP/s")


if __name__ == "__main__":
    main()
