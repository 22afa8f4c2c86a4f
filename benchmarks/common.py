"""Shared benchmark pieces: device and precision, synchronised timing, peak memory, FLOPs, the ViT reference.

The benchmarks in this folder run as scripts (``python benchmarks/<name>.py``), so the script's folder is
on ``sys.path`` and they import this module as ``common``.

* :class:`Bench` holds the device and precision and opens the same autocast as the runner.
* :func:`time_call` times a callable after warm-up, synchronising the device around every call.
* :class:`PeakMemory` measures the peak of a code block: CUDA ``max_memory_allocated``, or on CPU the
  resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` where allowed).
* :func:`backbone_flops` counts a registered backbone's FLOPs per clip on fake tensors (no memory, no
  compute), split into the frame encoder, the order-dependent aggregation and one caption.
* :func:`reference_rate` is the same-run bare ViT-L/14 (CLIP layout, open_clip, SDPA) forward rate, the
  practical limit for a frozen-backbone step; on CPU a tiny stand-in of the same layout, flagged as such.
"""

from __future__ import annotations

import functools
import resource
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
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

    @property
    def dtype(self) -> Optional[torch.dtype]:
        return DTYPES[self.precision]

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        else:
            name = f"cpu ({torch.get_num_threads()} threads)"
        return f"{name} | {self.precision} | torch {torch.__version__}"


def make_bench(device: str, precision: str) -> Bench:
    if precision not in DTYPES:
        raise ValueError(f"precision '{precision}' is not one of {sorted(DTYPES)}")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device visible")
        torch.cuda.set_device(dev)
    return Bench(dev, precision)


def add_common_args(parser: Any) -> None:
    """Arguments every benchmark shares."""
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
    seconds: list[float]  # one entry per timed call

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        """The figure the benchmarks report: robust to a few calls slowed by other processes."""
        ordered = sorted(self.seconds)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def describe(self, warmup: int) -> str:
        return (f"median {self.median * 1e3:.1f} ms (mean {self.mean * 1e3:.1f}, best {self.best * 1e3:.1f}; "
                f"{len(self.seconds)} iters after {warmup} warm-up)")


def time_call(fn: Callable[[], Any], bench: Bench, warmup: int = 2, iters: int = 5) -> Timing:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls, the device synchronised around each call."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(iters):
        bench.synchronize()
        start = time.perf_counter()
        fn()
        bench.synchronize()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds)


def _read_hwm_bytes() -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


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
        elif _reset_hwm() and _read_hwm_bytes() is not None:
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


def _cpu_sdpa(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                       **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch counts the CUDA attention kernels but not the fused CPU one, which would drop attention from CPU counts
CPU_SDPA_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
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

    mode = FakeTensorMode()
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
    frames: int


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


def pick_reference(choice: str, bench: Bench) -> Optional[str]:
    if choice == "none":
        return None
    if choice == "auto":
        return "full" if bench.device.type == "cuda" else "tiny"
    return choice


def reference_rate(kind: str, bench: Bench, batch_size: int, warmup: int = 2, iters: int = 5) -> ReferenceResult:
    """Bare CLIP-layout ViT forward (random weights, eval, inference mode, the bench's autocast) on clips."""
    from open_clip.transformer import VisionTransformer

    spec = REFERENCES[kind]
    with torch.device(bench.device):
        vit = VisionTransformer(spec.image_size, spec.patch_size, spec.width, spec.layers, spec.heads, 4.0,
                                output_dim=768 if kind == "full" else 32)
    vit.eval().requires_grad_(False)
    frames = torch.randn(batch_size * spec.frames, 3, spec.image_size, spec.image_size, device=bench.device)

    def forward() -> Any:
        with torch.inference_mode(), bench.autocast():
            return vit(frames)

    flops = count_flops(forward)
    timing = time_call(forward, bench, warmup, iters)
    del vit, frames
    return ReferenceResult(spec, batch_size / timing.median, flops // batch_size, batch_size)


# --------------------------------------------------------------------------- task, model and synthetic batches


def build_task(cfg_path: str, overrides: Sequence[str]) -> tuple[Any, Any]:
    """(task, model) from an experiment config, as ``paxion.train.build_runner`` builds them."""
    cfg = load_config(cfg_path, list(overrides))
    task = registry.get("task", cfg.task.name)(cfg)
    return task, task.build_model()


VERBS = [  # (verb, antonym): ActionBench-style action pairs
    ("pushing", "pulling"), ("opening", "closing"), ("lifting", "dropping"), ("folding", "unfolding"),
    ("putting", "taking"), ("turning on", "turning off"), ("plugging", "unplugging"), ("filling", "emptying"),
]
OBJECTS = ["a cup", "a book", "a phone", "a box", "a bottle", "a pen", "a towel", "a lid", "a plate", "a bag"]
PLACES = ["on the table", "into the drawer", "from left to right", "onto the shelf", "next to the sink"]


def synthetic_captions(count: int, seed: int = 0, unique: Optional[int] = None) -> dict[str, list[str]]:
    """``count`` ActionBench-like (caption, antonym, object-shuffled) triples.

    ``unique`` caps the number of distinct captions (repeats as in a real split); None: mostly distinct.
    """
    g = torch.Generator().manual_seed(seed)
    pool = unique or count
    picks = torch.randint(0, pool, (count,), generator=g).tolist() if unique else list(range(count))
    out: dict[str, list[str]] = {"text_input": [], "action_antonym_text_input": [], "object_shuffled_text_input": []}
    for k in picks:
        verb, antonym = VERBS[k % len(VERBS)]
        obj = OBJECTS[(k // len(VERBS)) % len(OBJECTS)]
        other = OBJECTS[(k // len(VERBS) + 3) % len(OBJECTS)]
        place = PLACES[(k // (len(VERBS) * len(OBJECTS))) % len(PLACES)]
        out["text_input"].append(f"{verb} {obj} {place}")
        out["action_antonym_text_input"].append(f"{antonym} {obj} {place}")
        out["object_shuffled_text_input"].append(f"{verb} {other} {place}")
    return out


def synthetic_batch(model: Any, batch_size: int, seed: int = 0, device: Optional[torch.device] = None,
                    unique_captions: Optional[int] = None) -> dict[str, Any]:
    """A collated ActionBench batch shaped for ``model``'s backbone: random uint8 clips + captions.

    Tensors are put on ``device`` as the runner's ``_to_device`` does before ``train_step``/``eval_step``.
    """
    pre = model.backbone.preprocess
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (batch_size, pre.num_frames, 3, pre.image_size, pre.image_size),
                          generator=g, dtype=torch.uint8)
    batch: dict[str, Any] = {
        "video_input": video,
        "state_change_saliency_flag": torch.rand(batch_size, generator=g) < 0.7,
        "idx": torch.arange(batch_size) + seed * batch_size,
        **synthetic_captions(batch_size, seed, unique_captions),
    }
    if device is not None:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch


def make_train_step(task: Any, model: Any, bench: Bench, batches: Sequence[dict[str, Any]]) -> Callable[[], Any]:
    """One optimiser step as the runner does it (bf16/fp32: no scaler), cycling over ``batches``.

    forward (``task.train_step`` under the run's autocast) -> backward -> AdamW step -> zero_grad.
    Returns the detached loss; reading it is left to the caller (no host sync inside the step).
    """
    if bench.precision == "fp16":
        raise ValueError("fp16 needs the runner's GradScaler; benchmark bf16 or fp32")
    from paxion.config import section
    from paxion.optim import build_optimizer

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


@dataclass
class Report:
    """Lines of ``name: value`` printed in one block."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def print(self) -> None:
        width = max((len(n) for n, _ in self.rows), default=0)
        print(self.title)
        for name, value in self.rows:
            print(f"  {name:<{width}}  {value}")


def add_reference_rows(report: Report, clips_per_s: float, reference: Optional[ReferenceResult]) -> None:
    if reference is None:
        report.add("reference", "skipped (--reference none)")
        return
    report.add("reference", f"{reference.spec.label}, batch {reference.batch_size}")
    report.add("reference rate", f"{reference.clips_per_s:.2f} clips/s "
               f"({reference.flops_per_clip / 1e9:.3f} GFLOP/clip)")
    report.add("ratio to reference", f"{clips_per_s / reference.clips_per_s:.3f}")
