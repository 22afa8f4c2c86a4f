"""Shared benchmark pieces: device/precision, synchronised timing, peak memory, FLOPs, the bare-ViT reference.

The benchmarks here run as scripts (``python benchmarks/<name>.py``), so they import this module as
``common``. Backbone FLOPs are counted on fake tensors (any size, no memory, no compute); the reference
is the same-run bare ViT-L/14 forward (CLIP layout, open_clip, SDPA), the practical limit of a
frozen-backbone step, or on CPU a tiny stand-in of the same layout, flagged as such.
"""

from __future__ import annotations

import functools
import resource
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import paxion  # noqa: F401  (fills the registry)
from paxion.config import load_config
from paxion.registry import registry

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 1024**3


# --------------------------------------------------------------------------- device and precision
@dataclass
class Bench:
    """Device + precision of one benchmark run; ``autocast()`` is the runner's (``run.precision``)."""

    device: torch.device
    precision: str = "fp32"

    def autocast(self) -> AbstractContextManager:
        dtype = DTYPES[self.precision]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        on_gpu = self.device.type == "cuda"
        name = torch.cuda.get_device_name(self.device) if on_gpu else f"cpu ({torch.get_num_threads()} threads)"
        return f"{name} | {self.precision} | torch {torch.__version__}"


def make_bench(device: str, precision: str) -> Bench:
    if precision not in DTYPES:
        raise ValueError(f"precision '{precision}' is not one of {sorted(DTYPES)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return Bench(dev, precision)


def add_common_args(parser: Any) -> None:
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--reference", choices=["auto", "full", "tiny", "none"], default="auto",
                        help="bare ViT reference: full ViT-L/14 (auto on GPU), tiny stand-in (auto on CPU)")


# --------------------------------------------------------------------------- timing and memory
@dataclass
class Timing:
    seconds: list[float]  # per call: host clock (CPU) or CUDA-event stream time (GPU)
    wall: float  # mean seconds per call over the whole timed loop, device synchronised at both ends only
    on_gpu: bool

    @property
    def median(self) -> float:
        ordered = sorted(self.seconds)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    @property
    def headline(self) -> float:
        """GPU: the pipelined loop rate (host work overlaps the device, as in training). CPU: the median
        call, robust to calls slowed down by other processes on a shared machine."""
        return self.wall if self.on_gpu else self.median

    def describe(self, warmup: int) -> str:
        kind = "loop wall / call" if self.on_gpu else "median call"
        return (f"{kind} {self.headline * 1e3:.1f} ms; per call median {self.median * 1e3:.1f}, best "
                f"{min(self.seconds) * 1e3:.1f}, loop {self.wall * 1e3:.1f} ({len(self.seconds)} after {warmup} warm-up)")


def time_call(fn: Callable[[], Any], bench: Bench, warmup: int = 2, iters: int = 5) -> Timing:
    """Time ``fn`` after ``warmup`` untimed calls; the GPU is synchronised only around the whole loop."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        fn()
    on_gpu = bench.device.type == "cuda"
    marks: list[Any] = []
    bench.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        if on_gpu:
            pair = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            pair[0].record()
            fn()
            pair[1].record()
            marks.append(pair)
        else:
            tic = time.perf_counter()
            fn()
            marks.append(time.perf_counter() - tic)
    bench.synchronize()
    wall = (time.perf_counter() - start) / iters
    seconds = [a.elapsed_time(b) / 1e3 for a, b in marks] if on_gpu else marks
    return Timing(seconds, wall, on_gpu)


def _read_hwm_bytes() -> Optional[int]:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")), None)


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (Linux >= 4.0)
    except OSError:
        return False
    return _read_hwm_bytes() is not None


class PeakMemory:
    """``with PeakMemory(bench) as mem: ...`` then ``mem.bytes`` and ``mem.kind``."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.bytes = 0
        self.kind = ""

    def __enter__(self) -> "PeakMemory":
        if self.bench.device.type == "cuda":
            self.bench.synchronize()
            torch.cuda.reset_peak_memory_stats(self.bench.device)
            self.kind = "CUDA max_memory_allocated"
        elif _reset_hwm():
            self.kind = "CPU peak RSS of the block (VmHWM after reset)"
        else:
            self.kind = "CPU peak RSS since process start (ru_maxrss)"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bench.device.type == "cuda":
            self.bench.synchronize()
            self.bytes = torch.cuda.max_memory_allocated(self.bench.device)
        else:
            hwm = _read_hwm_bytes()
            self.bytes = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- FLOPs
# torch counts the CUDA attention kernels but not the fused CPU one, which would drop attention from CPU counts
CPU_SDPA_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda grad, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad, q, k, v),
}


def flop_counter() -> FlopCounterMode:
    """FlopCounterMode (matmul/conv/attention, 2 per multiply-add) that also counts CPU fused attention."""
    return FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS)


def count_flops(fn: Callable[[], Any], no_grad_model: Optional[torch.nn.Module] = None) -> int:
    """FLOPs of one call of ``fn`` (forward and, if ``fn`` runs it, backward).

    For a ``fn`` that runs ``no_grad_model`` under ``torch.no_grad`` pass the model: its parameters are
    frozen while counting, because the counter's module tracker rejects views of trainable parameters
    taken under no_grad (they require grad but have no grad_fn).
    """
    frozen = [p for p in no_grad_model.parameters() if p.requires_grad] if no_grad_model is not None else []
    for param in frozen:
        param.requires_grad_(False)
    try:
        counter = flop_counter()
        with counter:
            fn()
    finally:
        for param in frozen:
            param.requires_grad_(True)
    return counter.get_total_flops()


@dataclass(frozen=True)
class BackboneFlops:
    """FLOPs of one clip / one caption through a frozen backbone."""

    frames: int  # encode_frames: the frame encoder (the ViT), order-independent where the backbone allows
    aggregate: int  # aggregate: the order-dependent part, re-run for a reversed clip
    text: int  # encode_text of one caption at the benchmarked length
    reuse: bool  # True: a reversed clip costs `aggregate` only; False: a full `video` pass

    @property
    def video(self) -> int:
        return self.frames + self.aggregate

    @property
    def reversed_clip(self) -> int:
        return self.aggregate if self.reuse else self.video


@functools.lru_cache(maxsize=None)
def backbone_flops(name: str, frames: Optional[int] = None, caption: str = "a person is pushing a cup") -> BackboneFlops:
    """Count ``name``'s FLOPs for one clip and one caption on fake tensors: any size, no memory, no compute."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode(allow_non_fake_inputs=True)  # e.g. index tables cached by a real model built earlier
    with mode:
        backbone = registry.get("backbone", name)()
    backbone.eval().requires_grad_(False)
    pre = backbone.preprocess
    tokens = {k: mode.from_tensor(v) for k, v in backbone.tokenize([caption]).items()}  # tokenised for real
    with mode, torch.no_grad():
        video = torch.zeros(1, frames or pre.num_frames, 3, pre.image_size, pre.image_size)
        counter = flop_counter()
        with counter:
            features = backbone.encode_frames(video)
        frame_flops = counter.get_total_flops()
        agg = count_flops(lambda: backbone.aggregate(features))
        text = count_flops(lambda: backbone.encode_text(tokens))
    reuse = bool(backbone.frame_order_invariant_frames)
    return BackboneFlops(frames=frame_flops, aggregate=agg, text=text, reuse=reuse)


# --------------------------------------------------------------------------- bare ViT reference
@dataclass(frozen=True)
class ReferenceSpec:
    label: str
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    frames: int  # frames per clip: the reference runs batch x frames images


REFERENCES = {
    "full": ReferenceSpec("ViT-L/14 (CLIP layout, open_clip, SDPA), 8 x 224^2", 224, 14, 1024, 24, 16, 8),
    # the frame ViT of internvideo_tiny, so CPU figures have a same-layout limit to compare with
    "tiny": ReferenceSpec("TINY STAND-IN ViT 64w x 4L, 4 x 32^2 (not ViT-L/14)", 32, 8, 64, 4, 4, 4),
}


@dataclass
class ReferenceResult:
    spec: ReferenceSpec
    clips_per_s: float
    flops_per_clip: int
    batch_size: int
    precision: str


def pick_reference(choice: str, bench: Bench) -> Optional[str]:
    if choice == "auto":
        return "full" if bench.device.type == "cuda" else "tiny"
    return None if choice == "none" else choice


def reference_rate(kind: str, bench: Bench, batch_size: int, warmup: int = 2, iters: int = 5) -> ReferenceResult:
    """Bare CLIP-layout ViT forward (random weights, eval, inference mode, the bench's autocast) on clips."""
    from open_clip.transformer import VisionTransformer

    spec = REFERENCES[kind]
    with torch.device(bench.device):
        vit = VisionTransformer(spec.image_size, spec.patch_size, spec.width, spec.layers, spec.heads, 4.0,
                                output_dim=768 if kind == "full" else 32)
    vit.eval().requires_grad_(False)
    frames = torch.randn(batch_size * spec.frames, 3, spec.image_size, spec.image_size, device=bench.device)

    # the limit is the bf16 rate on a GPU whatever precision is benchmarked; CPU keeps the bench's
    ref = Bench(bench.device, "bf16") if bench.device.type == "cuda" else bench

    def forward() -> Any:
        with torch.inference_mode(), ref.autocast():
            return vit(frames)

    flops = count_flops(forward)
    timing = time_call(forward, ref, warmup, iters)
    del vit, frames
    return ReferenceResult(spec, batch_size / timing.headline, flops // batch_size, batch_size, ref.precision)


# --------------------------------------------------------------------------- task, model and synthetic batches
def build_task(cfg_path: str, overrides: Sequence[str]) -> tuple[Any, Any]:
    """(task, model) from an experiment config, as ``paxion.cli.train.build_runner`` builds them."""
    cfg = load_config(cfg_path, list(overrides))
    task = registry.get("task", cfg.task.name)(cfg)
    return task, task.build_model()


VERBS = [  # (verb, antonym): ActionBench-style action pairs
    ("pushing", "pulling"), ("opening", "closing"), ("lifting", "dropping"), ("folding", "unfolding"),
    ("putting", "taking"), ("turning on", "turning off"), ("plugging", "unplugging"), ("filling", "emptying"),
]
OBJECTS = ["a cup", "a book", "a phone", "a box", "a bottle", "a pen", "a towel", "a lid", "a plate", "a bag"]
PLACES = ["on the table", "into the drawer", "from left to right", "onto the shelf", "next to the sink"]


def synthetic_captions(count: int, seed: int = 0) -> dict[str, list[str]]:
    """``count`` ActionBench-like (caption, antonym caption, object-shuffled caption) triples."""
    out: dict[str, list[str]] = {"text_input": [], "action_antonym_text_input": [], "object_shuffled_text_input": []}
    for k in range(seed * count, (seed + 1) * count):
        (verb, antonym), obj = VERBS[k % len(VERBS)], OBJECTS[(k // len(VERBS)) % len(OBJECTS)]
        other, place = OBJECTS[(k // len(VERBS) + 3) % len(OBJECTS)], PLACES[k % len(PLACES)]
        out["text_input"].append(f"{verb} {obj} {place}")
        out["action_antonym_text_input"].append(f"{antonym} {obj} {place}")
        out["object_shuffled_text_input"].append(f"{verb} {other} {place}")
    return out


def synthetic_batch(model: Any, batch_size: int, seed: int = 0, device: Optional[torch.device] = None) -> dict[str, Any]:
    """A collated ActionBench batch for ``model``'s backbone (random uint8 clips + captions), its tensors on
    ``device`` as the runner's ``_to_device`` leaves them before ``train_step``/``eval_step``."""
    pre = model.backbone.preprocess
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, Any] = {
        "video_input": torch.randint(0, 256, (batch_size, pre.num_frames, 3, pre.image_size, pre.image_size),
                                     generator=g, dtype=torch.uint8),
        "state_change_saliency_flag": torch.rand(batch_size, generator=g) < 0.7,
        "idx": torch.arange(batch_size) + seed * batch_size,
        **synthetic_captions(batch_size, seed),
    }
    return {k: v.to(device) if torch.is_tensor(v) and device is not None else v for k, v in batch.items()}


def make_train_step(task: Any, model: Any, bench: Bench, batches: Sequence[dict[str, Any]]) -> Callable[[], Any]:
    """One optimiser step as the runner does it (bf16/fp32: no scaler), cycling over ``batches``.

    forward (``task.train_step`` under the run's autocast) -> backward -> AdamW step -> zero_grad.
    Returns the detached loss; reading it is left to the caller (no host sync inside the step).
    """
    if bench.precision == "fp16":
        raise ValueError("fp16 needs the runner's GradScaler; benchmark bf16 or fp32")
    from paxion.config import section
    from paxion.engine.optim import build_optimizer

    optimizer = build_optimizer(model, section(task.cfg, "run"))
    model.train()
    calls = {"n": 0}

    def step() -> torch.Tensor:
        batch = batches[calls["n"] % len(batches)]
        calls["n"] += 1
        with bench.autocast():
            loss, _ = task.train_step(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


# --------------------------------------------------------------------------- reporting
def print_report(title: str, rows: list[tuple[str, str]]) -> None:
    width = max((len(name) for name, _ in rows), default=0)
    print(title)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def reference_rows(clips_per_s: float, reference: Optional[ReferenceResult]) -> list[tuple[str, str]]:
    if reference is None:
        return [("reference", "skipped (--reference none)")]
    return [
        ("reference", f"{reference.spec.label}, {reference.precision}, batch {reference.batch_size}"),
        ("reference rate", f"{reference.clips_per_s:.2f} clips/s ({reference.flops_per_clip / 1e9:.3f} GFLOP/clip)"),
        ("ratio to reference", f"{clips_per_s / reference.clips_per_s:.3f}"),
    ]


if __name__ == "__main__":  # FLOPs table of every registered backbone (fake tensors: seconds, no memory)
    for backbone in registry.names("backbone"):
        try:
            f = backbone_flops(backbone)
        except (OSError, RuntimeError) as err:  # e.g. a backbone that needs shipped weights to build
            print(f"{backbone:<26} skipped: {type(err).__name__}: {str(err)[:80]}")
            continue
        print(f"{backbone:<26} video {f.video / 1e9:9.3f} GFLOP/clip = frames {f.frames / 1e9:9.3f} + aggregate "
              f"{f.aggregate / 1e9:7.3f} | reversed clip {f.reversed_clip / 1e9:9.3f} | caption {f.text / 1e9:6.3f}")
