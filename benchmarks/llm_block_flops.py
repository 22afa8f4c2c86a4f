"""Cost of a full-size frozen LLM block (LLaMA-7B layer, d_llm 4096) next to the VideoMAE ViT it is added to.

    python benchmarks/llm_block_flops.py [--batch 1] [--time]

FLOPs of one forward pass per clip (16 x 224^2 -> 1568 tokens) counted with
``torch.utils.flop_counter`` on the ``meta`` device (no memory, no weights), split into the ViT
(S and B), M1 + LLaMA block + RMSNorm + M2, and the whole model; parameters likewise. With ``--time``
and a CUDA device it also times forward and forward+backward of each part in bf16 autocast.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from paxion.backbones.videomae import build_videomae
from paxion.modules.frozen_llm_block import FrozenLLMBlock, FrozenLLMBlockConfig

LLAMA_7B = FrozenLLMBlockConfig(enable=True, d_llm=4096, n_heads=32, multiple_of=256, first_layer=15)


def count_flops(fn, *inputs: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return counter.get_total_flops()


def meta_costs(name: str, batch: int) -> dict[str, tuple[int, int]]:
    """part -> (forward FLOPs per batch, parameters), counted on the meta device."""
    with torch.device("meta"):
        vit = build_videomae(name, num_classes=174).eval()
        block = FrozenLLMBlock(vit.embed_dim, LLAMA_7B).eval()
        clip = torch.empty(batch, 3, 16, 224, 224)
        tokens = torch.empty(batch, vit.cfg.num_patches, vit.embed_dim)
        vit_flops = count_flops(vit, clip)
        block_flops = count_flops(block, tokens)
        llm_only = count_flops(block.llm, torch.empty(batch, vit.cfg.num_patches, LLAMA_7B.d_llm))
    return {
        "ViT": (vit_flops, sum(p.numel() for p in vit.parameters())),
        "M1+LLaMA block+M2": (block_flops, sum(p.numel() for p in block.parameters())),
        "  of which LLaMA block": (llm_only, block.frozen_parameters()),
        "ViT + block": (vit_flops + block_flops, sum(p.numel() for p in vit.parameters()) + sum(
            p.numel() for p in block.parameters())),
    }


def cuda_times(name: str, batch: int, steps: int = 10) -> dict[str, tuple[float, float]]:
    """part -> (forward ms, forward+backward ms) in bf16 autocast on the GPU."""
    dev = torch.device("cuda")
    vit = build_videomae(name, num_classes=174).to(dev)
    block = FrozenLLMBlock(vit.embed_dim, LLAMA_7B).to(dev)
    clip = torch.randn(batch, 3, 16, 224, 224, device=dev)
    tokens = torch.randn(batch, vit.cfg.num_patches, vit.embed_dim, device=dev, requires_grad=True)

    def timed(fn, backward: bool) -> float:
        for _ in range(3):
            out = fn()
            if backward:
                out.float().sum().backward()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            out = fn()
            if backward:
                out.float().sum().backward()
        torch.cuda.synchronize()
        return 1000 * (time.perf_counter() - start) / steps

    results = {}
    for part, fn in (("ViT", lambda: vit(clip)), ("M1+LLaMA block+M2", lambda: block(tokens))):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            with torch.no_grad():
                fwd = timed(fn, backward=False)
            both = timed(fn, backward=True)
        results[part] = (fwd, both)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--time", action="store_true", help="also time on CUDA (when available)")
    args = parser.parse_args()
    for name in ("videomae_vit_s", "videomae_vit_b"):
        costs = meta_costs(name, args.batch)
        vit_flops = costs["ViT"][0]
        print(f"{name}, batch {args.batch}, 16 x 224^2 clips (1568 tokens), d_llm 4096, FFN 11008")
        print(f"  {'part':<24} {'GFLOPs':>10} {'x ViT':>7} {'params (M)':>11}")
        for part, (flops, params) in costs.items():
            print(f"  {part:<24} {flops / 1e9:>10.1f} {flops / vit_flops:>7.2f} {params / 1e6:>11.2f}")
        if args.time and torch.cuda.is_available():
            for part, (fwd, both) in cuda_times(name, args.batch).items():
                print(f"  {part:<24} bf16 forward {fwd:7.2f} ms   forward+backward {both:7.2f} ms")
        elif args.time:
            print("  (no CUDA device: timings skipped)")


if __name__ == "__main__":
    main()
