"""Data loader throughput: decoded, transformed clips per second for a dataset builder and worker count.

    python benchmarks/dataloader.py                                  # SynthAction made on the fly
    python benchmarks/dataloader.py --data-root data/synthaction --workers 0 2 --batches 20
    python benchmarks/dataloader.py --builder nextqa --data-root data --split val --num-frames 8 --image-size 224
    python benchmarks/dataloader.py --config configs/train/actionbench/ssv2/kp_perceiver_vtc_dvdm.yaml

Prints one line per worker count. Timing starts after the first batch (worker start-up excluded).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

import paxion  # noqa: F401  (registers the builders)
from paxion.config import load_config, section
from paxion.data.collate import collate
from paxion.registry import registry


def build_dataset(args: argparse.Namespace, data_root: str):
    if args.config:
        cfg = load_config(args.config, [f"paths.data_root={data_root}"] if args.data_root else [])
        name = args.builder if args.builder in cfg.datasets else next(iter(cfg.datasets))
        builder = registry.get("dataset", name)(section(cfg, f"datasets.{name}"))
    else:
        cls = registry.get("dataset", args.builder)
        node = OmegaConf.merge({"paths": {"data_root": data_root}}, {"ds": OmegaConf.structured(cls.Config)},
                               {"ds": OmegaConf.from_dotlist(args.set)})
        builder = cls(OmegaConf.to_object(node.ds))
    return builder.build(args.split, num_frames=args.num_frames, image_size=args.image_size, training=args.training)


def measure(dataset, workers: int, batch_size: int, batches: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=False, prefetch_factor=2 if workers else None, drop_last=True)
    it = iter(loader)
    next(it)  # worker start-up and first decode
    clips, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        clips += batch["video_input"].shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="experiment YAML; its first dataset is measured")
    parser.add_argument("--builder", default="actionbench_ssv2")
    parser.add_argument("--data-root", help="paths.data_root; without it SynthAction is generated in a temp dir")
    parser.add_argument("--split", default="train")
    parser.add_argument("--training", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--set", nargs="*", default=[], help="builder options a=b, e.g. decoder=decord")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data_root
        if data_root is None:
            from paxion.data.synthetic import generate

            data_root = str(generate(Path(tmp), seed=0, num_train=400, num_val=40, num_test=40))
        dataset = build_dataset(args, data_root)
        for workers in args.workers:
            rate = measure(dataset, workers, args.batch_size, args.batches)
            print(f"{args.builder}/{args.split} T={args.num_frames} S={args.image_size} "
                  f"workers={workers}: {rate:.1f} clips/s")


if __name__ == "__main__":
    main()
