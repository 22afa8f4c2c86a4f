"""Training-step throughput of a Paxion config: random weights, no data, the runner's step.

    python benchmarks/train_step.py --config configs/train/actionbench/synthaction/kp_perceiver_vtc_dvdm.yaml
    python benchmarks/train_step.py --config configs/train/actionbench/ssv2/kp_perceiver_vtc_dvdm.yaml \\
        --device cuda --precision bf16 --batch-size 32                       # InternVideo-L/14, 8 x 224^2
    python benchmarks/train_step.py --config C model.backbone=clipvip_tiny   # any config override

The step is the runner's: ``task.train_step`` under the run's autocast, backward, AdamW step over the
trainable parameters, on synthetic uint8 clips and ActionBench-style captions (antonyms, saliency flags,
MCQA candidates) already on the device. Prints clips/s, ms/step, peak memory, achieved TFLOP/s (backbone
FLOPs counted on fake tensors, and the whole step's FLOPs as executed), the same-run bare ViT reference
(ViT-L/14 bf16 on a GPU) and the ratio to it.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from common import (
    GIB,
    PeakMemory,
    add_common_args,
    backbone_flops,
    build_task,
    count_flops,
    make_bench,
    make_train_step,
    pick_reference,
    print_report,
    reference_rate,
    reference_rows,
    synthetic_batch,
    time_call,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a Paxion training config")
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=c")
    add_common_args(parser)
    parser.set_defaults(batch_size=None)  # None: the config's run.batch_size_train
    return parser.parse_args()


def config_overrides(args: argparse.Namespace) -> list[str]:
    """Random weights, no files. The text cache is off unless overridden: the two cycled batches would
    hit it on every call, which a real epoch over many distinct captions does not."""
    return ["model.pretrained=null", "model.backbone_ckpt=null", f"run.precision={args.precision}",
            "model.text_cache_size=0", *args.overrides]


def train_batch(model: Any, size: int, seed: int, device: torch.device) -> dict[str, Any]:
    """``common.synthetic_batch`` plus the MCQA keys, collated on the host then moved as the runner does."""
    batch = synthetic_batch(model, size, seed)
    verbs = [caption.split(" a ")[0] for caption in batch["text_input"]]
    batch["candidates"] = [[f"what happens {i}? {verbs[(i + k) % size]} it" for k in range(5)] for i in range(size)]
    batch["action_antonym_candidates"] = [[f"what happens {i}? not {v} it" for _ in range(i % 4)]
                                          for i, v in enumerate(verbs)]
    batch["answer_list"] = [i % 5 for i in range(size)]  # collate's host copy of `answer`
    batch["answer"] = torch.tensor(batch["answer_list"])
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def main() -> None:
    args = parse_args()
    bench = make_bench(args.device, args.precision)
    torch.manual_seed(0)
    task, model = build_task(args.config, config_overrides(args))
    cfg = task.cfg
    model.to(bench.device)
    size = args.batch_size or cfg.run.batch_size_train
    batches = [train_batch(model, size, seed, bench.device) for seed in range(2)]
    step = make_train_step(task, model, bench, batches)

    executed = count_flops(step)  # one untimed step (forward + backward + optimiser), exactly as timed
    with PeakMemory(bench) as mem:
        timing = time_call(step, bench, args.warmup, args.iters)
    loss = step().item()  # read after timing: no host sync inside the timed steps
    clips_per_s = size / timing.headline

    pre = model.backbone.preprocess
    objectives = list(cfg.model.objectives)
    reversed_clip = "atm" in objectives and model.fuser is None  # the model drops ATM when a fuser trains
    f = backbone_flops(cfg.model.backbone, pre.num_frames)
    reuse = f.reuse and model.cfg.reuse_frame_features
    reversal_flops = (f.aggregate if reuse else f.video) if reversed_clip else 0
    per_clip = f.video + reversal_flops
    ref_kind = pick_reference(args.reference, bench)
    reference = reference_rate(ref_kind, bench, size, args.warmup, args.iters) if ref_kind else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cache = model.text_cache

    print_report(
        f"train step | {' '.join([args.config, *args.overrides])} | {bench.describe()}",
        [
            ("model", f"{cfg.model.backbone} + {cfg.model.patcher.name} + {cfg.model.fuser.name or 'no fuser'}; "
             f"objectives {objectives}"),
            ("batch", f"{size} x {pre.num_frames} frames x {pre.image_size}px"),
            ("trainable", f"{trainable / 1e6:.3f} M of {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M"),
            ("reversal", "none (no ATM)" if not reversed_clip else
             "frame features reused (one frame-encoder pass per clip)" if reuse else "re-encoded (second full pass)"),
            ("throughput", f"{clips_per_s:.2f} clips/s | {timing.headline * 1e3:.1f} ms/step | loss {loss:.4f}"),
            ("timing", timing.describe(args.warmup)),
            ("peak memory", f"{mem.bytes / GIB:.3f} GiB ({mem.kind})"),
            ("backbone FLOPs", f"{per_clip / 1e9:.3f} GFLOP/clip = video {f.video / 1e9:.3f} + reversed clip "
             f"{reversal_flops / 1e9:.3f} (analytic, fake tensors); caption {f.text / 1e9:.3f} GFLOP"),
            ("achieved (backbone)", f"{per_clip * clips_per_s / 1e12:.4g} TFLOP/s"),
            ("executed FLOPs", f"{executed / size / 1e9:.3f} GFLOP/clip -> "
             f"{executed / timing.headline / 1e12:.4g} TFLOP/s (whole step incl. backward, counted)"),
            ("text cache", f"size {cache.capacity}, {cache.hits} hits / {cache.misses} misses"
             + (" (unused while the backbone trains)" if model.backbone.training else "")),
            *reference_rows(clips_per_s, reference),
        ],
    )


if __name__ == "__main__":
    main()
