"""Shared pieces of the golden-file generators (run in the ORIGINAL's environment, never imported by the package).

* :data:`AWKWARD_TEXTS`: the fixed list every tokenizer golden is computed on.
* :func:`fixed_video`: the uint8 clips fed to every small model.
* :func:`install_lavis_stand_ins`: the few LAVIS / decord names the original Paxion imports, as
  one-process stand-ins (LAVIS itself is not installed; nothing of it runs in these goldens).
* :func:`save_golden`: one ``golden.pt`` per original, readable with ``torch.load(weights_only=True)``,
  carrying the original's repository, commit, packages and command next to the tensors.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.metadata
import subprocess
import sys
import types
from pathlib import Path

import torch

AWKWARD_TEXTS: list[str] = [
    "a person picks up a cup from the table",
    "Someone is pushing a toy car from left to right.",
    "Café crème brûlée, naïve façade, Ångström",
    "人が箱を開ける and a dog 🐕 wags 🎉🙂",
    "",
    "   multiple   spaces\tand\nnewlines   ",
    "&amp; html &lt;tags&gt; don't it's U.S.A. #c C picks",
    "mojibake cafÃ© and UPPER MiXeD Case",
    "the quick brown fox jumps over the lazy dog " * 12,  # > 77 BPE tokens
]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def fixed_video(batch: int, frames: int, size: int, seed: int) -> torch.Tensor:
    """uint8 (B, T, 3, H, W): smooth moving gradients plus noise, so frames differ and order matters."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(frames).view(1, frames, 1, 1, 1).float()
    y = torch.arange(size).view(1, 1, 1, size, 1).float()
    x = torch.arange(size).view(1, 1, 1, 1, size).float()
    phase = torch.rand(batch, 1, 3, 1, 1, generator=gen) * 6.28
    base = 127 + 90 * torch.sin(phase + 0.3 * x + 0.2 * y + 0.9 * t)
    noise = torch.randint(-25, 26, (batch, frames, 3, size, size), generator=gen).float()
    return (base + noise).clamp(0, 255).round().to(torch.uint8)


def normalize_clip(video: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, 3, H, W) -> float32 as the original's processors: x / 255, then CLIP mean/std."""
    mean = torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1)
    return (video.float() / 255.0 - mean) / std


def redraw_zero_init_(module: torch.nn.Module, names: list[str], seed: int, std: float = 0.02) -> None:
    """Re-draw parameters the original initialises to zero, so that the golden exercises their paths."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name in names:
            p = params[name]
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def round_to_half_(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Round every float tensor to fp16 in place (the golden stores weights in fp16 to stay small);
    -> the fp16 state dict, which the model now equals exactly."""
    state = {}
    with torch.no_grad():
        for key, value in module.state_dict().items():
            if value.is_floating_point():
                half = value.half()
                value.copy_(half.float())
                state[key] = half
            else:
                state[key] = value.clone()
    return state


def _module(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)  # importlib.util.find_spec(name) must not raise
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


class _Registry:
    """LAVIS registry: every ``register_*`` is a no-op decorator."""

    def __getattr__(self, name: str):
        if name.startswith("register"):
            return lambda *a, **k: (lambda obj: obj)
        raise AttributeError(name)


def install_lavis_stand_ins() -> None:
    """Make ``import lavis...`` (and ``decord``, ``skimage``, ``cv2`` when absent) succeed for the original
    Paxion in one process."""
    if "lavis" in sys.modules:
        return

    class BaseModel(torch.nn.Module):
        pass

    class BaseProcessor:
        pass

    registry = _Registry()
    _module("lavis")
    _module("lavis.common")
    _module("lavis.common.registry", registry=registry)
    _module("lavis.common.dist_utils", get_rank=lambda: 0, get_world_size=lambda: 1, is_main_process=lambda: True)
    _module("lavis.models")
    _module(
        "lavis.models.base_model",
        BaseModel=BaseModel,
        concat_all_gather=lambda x: x,  # one process: LAVIS' all_gather is the identity
        MomentumDistilationMixin=type("MomentumDistilationMixin", (), {}),
        is_url=lambda s: False,
        download_cached_file=None,
    )
    _module("lavis.processors")
    _module("lavis.processors.base_processor", BaseProcessor=BaseProcessor)
    _module("lavis.processors.randaugment", RandomAugment=type("RandomAugment", (), {}))
    blip = type("BlipImageBaseProcessor", (BaseProcessor,), {})
    _module("lavis.processors.blip_processors", BlipImageBaseProcessor=blip)
    _module("decord", VideoReader=None, cpu=None, bridge=None)  # only its mp4 reader uses it
    # image libraries imported by its video transforms; only the numpy resize path (unused here) calls them
    for name in ("skimage", "skimage.transform", "cv2"):
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except ImportError:
                _module(name)


def paxion_checkout(doc: str, commit: str) -> argparse.Namespace:
    """Command line of the Paxion-checkout generators: parse it, make ``--out``, put the checkout on the path
    with the LAVIS stand-ins installed."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--original", required=True, type=Path, help="the Paxion checkout's src/ folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--commit", default=commit, help="the checkout's commit when it has no .git (an export)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.original))
    install_lavis_stand_ins()
    return args


def git_commit(src: Path) -> str:
    """The commit of the original's checkout (``unknown`` for an exported tree without .git)."""
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def checked_commit(src: Path, expected: str) -> str:
    """``expected``, after checking it against the checkout's own commit when it is a git checkout."""
    found = git_commit(src)
    if found != "unknown" and found != expected:
        raise SystemExit(f"{src} is at commit {found}, the goldens are defined for {expected}: pass --commit")
    return expected


def packages(names: list[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def save_golden(
    path: Path, meta: dict[str, object], tensors: dict[str, torch.Tensor], extra: dict[str, object]
) -> None:
    """One golden file: {"meta", "outputs" (name -> tensor), **extra (texts, configs)}; tensors contiguous, CPU."""
    outputs = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    torch.save({"meta": meta, "outputs": outputs, **extra}, path)
    torch.load(path, weights_only=True)  # the tests load it this way; fail here, not there
