"""Where the time goes: a torch.profiler table (top ops by self time) of one training and one eval step.

    python benchmarks/profile_step.py --backbone internvideo_tiny --batch-size 4                 # CPU, tiny
    python benchmarks/profile_step.py --device cuda --precision bf16 --batch-size 32 --trace-dir prof

Training: the KP-Perceiver VTC + VAC + ATM step of ``--train-config`` (forward, backward, AdamW step).
Evaluation: ``task.eval_step`` of ``--eval-config`` with all three ActionBench probes. Both run on
synthetic batches after warm-up; the table lists the ops with the largest self time on the device that
did the work (CUDA kernels on a GPU, CPU ops otherwise), plus the share of the step in text encoding.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from common import Bench, build_task, make_bench, make_train_step, synthetic_batch

TRAIN_CONFIG = "configs/train/actionbench/ssv2/kp_perceiver_vtc_dvdm.yaml"
EVAL_CONFIG = "configs/eval/actionbench/ssv2/patcher.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-config", default=TRAIN_CONFIG)
    parser.add_argument("--eval-config", default=EVAL_CONFIG)
    parser.add_argument("--backbone", default=None, help="override model.backbone")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=15, help="ops listed per table")
    parser.add_argument("--steps", choices=["train", "eval", "both"], default="both")
    parser.add_argument("--trace-dir", default=None, help="also write Chrome traces here")
    return parser.parse_args()


def overrides(args: argparse.Namespace, extra: list[str]) -> list[str]:
    out = ["model.pretrained=null", "model.backbone_ckpt=null", f"run.precision={args.precision}", *extra]
    return out + ([f"model.backbone={args.backbone}"] if args.backbone else [])


def train_step(args: argparse.Namespace, bench: Bench) -> Callable[[], Any]:
    task, model = build_task(args.train_config, overrides(args, []))
    model.to(bench.device)
    batches = [synthetic_batch(model, args.batch_size, seed, bench.device) for seed in range(2)]
    return make_train_step(task, model, bench, batches)


def eval_step(args: argparse.Namespace, bench: Bench) -> Callable[[], Any]:
    task, model = build_task(args.eval_config, overrides(args, ["task.probes=[action_antonym,video_reversal,object_shuffle]"]))
    model.to(bench.device).eval()
    batch = synthetic_batch(model, args.batch_size, 0, bench.device)

    def step() -> Any:
        with torch.no_grad(), bench.autocast():
            return task.eval_step(model, batch)

    return step


def text_share(prof: profile, device_time: bool) -> float:
    """Fraction of the step's time spent inside ``PaxionModel.encode_text`` (tokenise + text tower)."""
    events = {e.key: e for e in prof.key_averages()}
    total = events.get("step")
    text = events.get("encode_text")
    if total is None or text is None:
        return float("nan")
    attr = "device_time_total" if device_time else "cpu_time_total"
    return getattr(text, attr) / max(getattr(total, attr), 1e-9)


def profile_one(name: str, step: Callable[[], Any], args: argparse.Namespace, bench: Bench) -> None:
    for _ in range(args.warmup):
        step()
    bench.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.device.type == "cuda" else [])
    model_encode_text = _wrap_encode_text()
    try:
        with profile(activities=activities, record_shapes=False) as prof:
            with record_function("step"):
                step()
            bench.synchronize()
    finally:
        model_encode_text()
    on_gpu = bench.device.type == "cuda"
    sort = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    print(f"\n=== {name} step | batch {args.batch_size} | {bench.describe()} | sorted by {sort} ===")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    print(f"text encoding share of the step: {100 * text_share(prof, on_gpu):.1f} %")
    if args.trace_dir:
        path = Path(args.trace_dir) / f"{name}_trace.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(path))
        print(f"trace: {path}")


def _wrap_encode_text() -> Callable[[], None]:
    """Label ``PaxionModel.encode_text`` in the profile; returns the function that removes the label."""
    from paxion.systems.paxion.model import PaxionModel

    original = PaxionModel.encode_text

    def labelled(self: PaxionModel, texts: list[str]) -> torch.Tensor:
        with record_function("encode_text"):
            return original(self, texts)

    PaxionModel.encode_text = labelled

    def restore() -> None:
        PaxionModel.encode_text = original

    return restore


def main() -> None:
    args = parse_args()
    bench = make_bench(args.device, args.precision)
    if args.steps in ("train", "both"):
        profile_one("train", train_step(args, bench), args, bench)
    if args.steps in ("eval", "both"):
        profile_one("eval", eval_step(args, bench), args, bench)


if __name__ == "__main__":
    main()
