"""Training-step throughput of a Paxion config: clips/s, ms/step and peak memory, random weights, no data.

    python benchmarks/train_step.py --config configs/train/actionbench/synthaction/kp_perceiver_vtc_dvdm.yaml
    python benchmarks/train_step.py --config configs/train/actionbench/ssv2/kp_perceiver_vtc_dvdm.yaml \
        --device cuda --precision bf16 --batch-size 32                       # InternVideo-L/14, 8 x 224^2
    python benchmarks/train_step.py --config C model.backbone=clipvip_tiny   # any config override

The step is the runner's: ``task.train_step`` under the run's autocast, backward, AdamW step over the
trainable parameters, on synthetic uint8 clips and ActionBench-style captions (antonyms, saliency flags,
MCQA candidates) already on the device.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import paxion  # noqa: F401  (fills the registry)
from paxion.config import load_config
from paxion.registry import registry

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
VERBS = ["pushing", "pulling", "opening", "closing", "lifting", "dropping", "folding", "unfolding"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a Paxion training config")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch-size", type=int, default=None, help="default: run.batch_size_train")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=c")
    return parser.parse_args()


def synthetic_batch(pre: object, size: int, device: torch.device, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    frames, image = pre.num_frames, pre.image_size  # type: ignore[attr-defined]
    words = [VERBS[int(i)] for i in torch.randint(0, len(VERBS), (size,), generator=g)]
    return {
        "video_input": torch.randint(0, 256, (size, frames, 3, image, image), generator=g, dtype=torch.uint8).to(device),
        "text_input": [f"{w} a red box onto a table {i}" for i, w in enumerate(words)],
        "action_antonym_text_input": [f"un{w} a red box onto a table {i}" for i, w in enumerate(words)],
        "object_shuffled_text_input": [f"{w} a blue cup onto a table {i}" for i, w in enumerate(words)],
        "state_change_saliency_flag": (torch.rand(size, generator=g) < 0.6).to(device),
        "candidates": [[f"what happens {i}? {VERBS[k]} it" for k in range(5)] for i in range(size)],
        "action_antonym_candidates": [[f"what happens {i}? un{VERBS[k]} it" for k in range(i % 4)] for i in range(size)],
        "answer": (torch.arange(size) % 5).to(device),
        "idx": torch.arange(size, device=device),
    }


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB (process high-water mark)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    cfg = load_config(args.config, ["model.pretrained=null", "model.backbone_ckpt=null", *args.overrides])
    task = registry.get("task", cfg.task.name)(cfg)
    torch.manual_seed(0)
    model = task.build_model().to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.05)
    size = args.batch_size or cfg.run.batch_size_train
    batches = [synthetic_batch(model.backbone.preprocess, size, device, seed) for seed in range(2)]
    dtype = DTYPES[args.precision]
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def step(i: int) -> torch.Tensor:
        with autocast:
            loss, _ = task.train_step(model, batches[i % 2])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(args.iters):
        loss = step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / args.iters
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    pre = model.backbone.preprocess
    print(f"config     {args.config} {' '.join(args.overrides)}")
    print(f"device     {name} | {args.precision} | torch {torch.__version__}")
    print(f"model      {cfg.model.backbone} + {cfg.model.patcher.name} + {cfg.model.fuser.name or 'no fuser'}; "
          f"objectives {list(cfg.model.objectives)}; {pre.num_frames} x {pre.image_size}^2; batch {size}")
    print(f"trainable  {sum(p.numel() for p in params) / 1e6:.3f} M of {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M")
    print(f"step       {1000 * seconds:.1f} ms/step  ({args.iters} iters after {args.warmup} warm-up; loss {loss.item():.4f})")
    print(f"throughput {size / seconds:.1f} clips/s")
    print(f"peak mem   {peak_memory_gib(device):.2f} GiB ({'allocated' if device.type == 'cuda' else 'process RSS'})")


if __name__ == "__main__":
    main()
