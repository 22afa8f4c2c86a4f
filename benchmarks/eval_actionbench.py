"""ActionBench evaluation throughput: all three probes (AA, VR, OS) on the same clips, through ``task.eval_step``.

    python benchmarks/eval_actionbench.py --backbone internvideo_tiny --batch-size 4          # CPU, tiny
    python benchmarks/eval_actionbench.py --device cuda --precision bf16 --batch-size 32     # H100, full size

Synthetic batches (random uint8 clips + ActionBench-style captions) go through the real task and model,
exactly as the runner calls them: tensors already on the device, ``eval_step`` under the run's autocast.
Prints clips/s, ms/batch, peak memory, achieved TFLOP/s with the backbone FLOPs counted on fake tensors
(one video pass per clip), the FLOPs the step really executes, and the same-run bare ViT reference.
"""

from __future__ import annotations

import argparse

import torch

from common import (
    GIB,
    PeakMemory,
    add_common_args,
    backbone_flops,
    build_task,
    count_flops,
    make_bench,
    pick_reference,
    print_report,
    reference_rate,
    reference_rows,
    synthetic_batch,
    time_call,
)

DEFAULT_CONFIG = "configs/eval/actionbench/ssv2/patcher.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="an ActionBench eval config")
    parser.add_argument("--backbone", default=None, help="override model.backbone (e.g. internvideo_tiny)")
    parser.add_argument("--eval-module", default=None, help="override task.eval_module (backbone | patcher)")
    parser.add_argument("overrides", nargs="*", help="further config overrides a.b=c")
    add_common_args(parser)
    return parser.parse_args()


def config_overrides(args: argparse.Namespace) -> list[str]:
    """Random weights, no files: the benchmark needs no checkpoint or dataset. The text cache is off unless
    overridden: the two cycled batches would hit it on every call (``model.text_cache_size=4096`` to see it)."""
    out = ["model.pretrained=null", "model.backbone_ckpt=null", f"run.precision={args.precision}",
           "task.probes=[action_antonym,video_reversal,object_shuffle]", "model.text_cache_size=0"]
    if args.backbone:
        out.append(f"model.backbone={args.backbone}")
    if args.eval_module:
        out.append(f"task.eval_module={args.eval_module}")
    return out + list(args.overrides)


def main() -> None:
    args = parse_args()
    bench = make_bench(args.device, args.precision)
    task, model = build_task(args.config, config_overrides(args))
    model.to(bench.device).eval()
    batches = [synthetic_batch(model, args.batch_size, seed, bench.device) for seed in range(2)]
    calls = {"n": 0}

    def step() -> dict:
        batch = batches[calls["n"] % len(batches)]
        calls["n"] += 1
        with bench.autocast():
            return task.eval_step(model, batch)

    executed = count_flops(step, no_grad_model=model)  # one untimed call, the step exactly as timed
    with PeakMemory(bench) as memory:
        timing = time_call(step, bench, args.warmup, args.iters)
    clips_per_s = args.batch_size / timing.headline
    name = model.cfg.backbone
    flops = backbone_flops(name, model.backbone.preprocess.num_frames)
    ref_kind = pick_reference(args.reference, bench)
    reference = reference_rate(ref_kind, bench, args.batch_size, args.warmup, args.iters) if ref_kind else None

    pre = model.backbone.preprocess
    reuse = flops.reuse and model.cfg.reuse_frame_features
    print_report(
        f"ActionBench eval (AA + VR + OS) | {name} | eval_module {task.task_cfg.eval_module} | {bench.describe()}",
        [
            ("batch", f"{args.batch_size} x {pre.num_frames} frames x {pre.image_size}px, 3 captions per clip"),
            ("reversal", "frame features reused (one frame-encoder pass per clip)" if reuse
             else "re-encoded (second full backbone pass)"),
            ("throughput", f"{clips_per_s:.2f} clips/s | {timing.headline * 1e3:.1f} ms/batch"),
            ("timing", timing.describe(args.warmup)),
            ("peak memory", f"{memory.bytes / GIB:.3f} GiB ({memory.kind})"),
            ("backbone video FLOPs", f"{flops.video / 1e9:.3f} GFLOP/clip (frames {flops.frames / 1e9:.3f} + "
             f"aggregate {flops.aggregate / 1e9:.3f}); caption {flops.text / 1e9:.3f} GFLOP"),
            ("achieved (backbone)", f"{flops.video * clips_per_s / 1e12:.4g} TFLOP/s"),
            ("executed FLOPs", f"{executed / args.batch_size / 1e9:.3f} GFLOP/clip -> "
             f"{executed / timing.headline / 1e12:.4g} TFLOP/s (whole step, counted)"),
            ("text cache", f"size {model.text_cache.capacity}, {model.text_cache.hits} hits / "
             f"{model.text_cache.misses} misses"),
            *reference_rows(clips_per_s, reference),
        ],
    )


if __name__ == "__main__":
    with torch.no_grad():
        main()
