"""Regenerate ``tests/golden/vit_llama/`` by running the original ViT + frozen LLaMA block code.

Original: https://github.com/ziqipang/LM4VisualEncoding at commit e34e919, video part
(``video_understanding/``); the commit is recorded in every file written.

Environment (a venv of its own, never the project's)::

    python3 -m venv venv-lm4ve
    venv-lm4ve/bin/pip install torch==2.14.1 torchvision==0.29.1 timm numpy

Command (from the project root)::

    venv-lm4ve/bin/python tools/golden/vit_llama.py --lm4ve /path/to/LM4VisualEncoding \
        --out tests/golden/vit_llama

What runs unchanged: ``ViTLLaMA`` of ``video_understanding/modeling_finetune_llama.py`` (VideoMAE ViT,
``llama_dim_mapper1`` -> ``LLaMATransformer`` -> ``llama_dim_mapper2``, mean pooling, head), the
LLaMA block of ``video_understanding/llama.py`` with its ``custom_load_state_dict(tail=True)`` (how
``run_class_finetuning.py`` reads Meta's ``consolidated.*.pth``), and the evaluation transforms of
``ssv2.py`` (``ClipToTensor`` then ``Normalize`` with the ImageNet mean / std). ``utils.py`` (which needs
the removed ``torch._six``) is not imported.

Stand-ins defined here (no original code is copied):

* ``cv2`` (imported by ``functional.py``; not used by the transforms that run);
* size: the original hard-codes the 4096-wide LLaMA-7B mappers; a small model of the same architecture
  is a ViT of width 32, 2 blocks, 2 heads, 8x8 patches, tubelet 2, 4 frames of 32x32, 5 classes, and a
  LLaMA config of width 32, 4 heads, ``multiple_of`` 16 (FFN 96), ``n_layers`` 2 with ``first_layer`` 1
  (one block, read from layer 1 of the Meta file), with the mappers re-made as Linear(32, 32).

Weights: the original's initialisation plus N(0, 0.2) noise on every parameter except the LLaMA
wrapper's final RMSNorm (the original never loads it and keeps it frozen at ones); the LLaMA layers are
then loaded from a small Meta-layout ``consolidated.00.pth`` (random layers 0 and 1, final ``norm``,
``tok_embeddings``, ``output``, ``rope.freqs``) by the original's own loader. The fine-tuned file is saved
as ``run_class_finetuning.py`` saves one (``model``, ``epoch``, ``args``; the optimizer state is left
out). Everything runs in ``eval()``.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import subprocess
import sys
import types
from functools import partial
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
E, DEPTH, HEADS, PATCH, TUBELET, FRAMES, IMAGE, CLASSES = 32, 2, 2, 8, 2, 4, 32, 5
LLAMA = {"dim": 32, "multiple_of": 16, "n_heads": 4, "n_layers": 2, "norm_eps": 1.0e-6, "vocab_size": -1,
         "first_layer": 1}
NOISE = 0.2
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def install_stand_ins() -> None:
    cv2 = types.ModuleType("cv2")
    cv2.__spec__ = importlib.machinery.ModuleSpec("cv2", None)
    sys.modules["cv2"] = cv2


def meta_consolidated(seed: int) -> dict[str, torch.Tensor]:
    """A small LLaMA checkpoint in Meta's layout: layers 0 .. n_layers-1 and the non-layer tensors."""
    gen = torch.Generator().manual_seed(seed)
    d, hidden, vocab = LLAMA["dim"], 96, 11

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    state = {"tok_embeddings.weight": rnd(vocab, d), "norm.weight": 1 + rnd(d), "output.weight": rnd(vocab, d),
             "rope.freqs": torch.rand(d // LLAMA["n_heads"] // 2, generator=gen)}
    for i in range(LLAMA["n_layers"]):
        for name in ("wq", "wk", "wv", "wo"):
            state[f"layers.{i}.attention.{name}.weight"] = rnd(d, d)
        state[f"layers.{i}.feed_forward.w1.weight"] = rnd(hidden, d)
        state[f"layers.{i}.feed_forward.w2.weight"] = rnd(d, hidden)
        state[f"layers.{i}.feed_forward.w3.weight"] = rnd(hidden, d)
        state[f"layers.{i}.attention_norm.weight"] = 1 + rnd(d)
        state[f"layers.{i}.ffn_norm.weight"] = 1 + rnd(d)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lm4ve", required=True, help="checkout of ziqipang/LM4VisualEncoding")
    parser.add_argument("--out", default=str(ROOT / "tests/golden/vit_llama"))
    args = parser.parse_args()
    repo = Path(args.lm4ve).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(repo / "video_understanding"))
    install_stand_ins()
    import modeling_finetune_llama as original
    import video_transforms
    import volume_transforms

    commit = subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()
    torch.manual_seed(0)
    model = original.ViTLLaMA(
        img_size=IMAGE, patch_size=PATCH, num_classes=CLASSES, embed_dim=E, depth=DEPTH, num_heads=HEADS,
        mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), all_frames=FRAMES,
        tubelet_size=TUBELET, drop_path_rate=0.1, init_scale=0.001, use_mean_pooling=True, llama_config=dict(LLAMA),
    )
    model.llama_dim_mapper1 = nn.Linear(E, LLAMA["dim"], bias=False)  # the original hard-codes 4096
    model.llama_dim_mapper2 = nn.Linear(LLAMA["dim"], E, bias=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "llama.norm.weight":
                p.add_(torch.randn(p.shape, generator=gen) * NOISE)
    consolidated = meta_consolidated(seed=2)
    model.llama.custom_load_state_dict(consolidated, tail=True, strict=False)  # as run_class_finetuning.py
    model.eval()

    video_u8 = torch.randint(0, 256, (2, FRAMES, 3, IMAGE, IMAGE), dtype=torch.uint8,
                             generator=torch.Generator().manual_seed(3))  # (B, T, C, H, W)
    transform = video_transforms.Compose([volume_transforms.ClipToTensor(),
                                          video_transforms.Normalize(mean=MEAN, std=STD)])
    clips = torch.stack([transform([frame.permute(1, 2, 0).numpy() for frame in clip]) for clip in video_u8])
    labels = torch.tensor([3, 1])
    tokens_in = torch.randn(2, 6, LLAMA["dim"], generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model(clips)  # (B, C, T, H, W) in, as the original's data loader gives it
        loss = torch.nn.CrossEntropyLoss()(logits, labels)  # the original's validation criterion
        llama_out = model.llama(tokens_in)
        features = model.forward_features(clips)
    golden = {"commit": commit, "video_u8": video_u8, "labels": labels, "logits": logits, "loss": loss,
              "llama_input": tokens_in, "llama_output": llama_out, "pooled_features": features}
    torch.save(golden, out / "outputs.pt")
    finetuned = {"model": model.state_dict(), "epoch": 0,
                 "args": argparse.Namespace(model="vit_llama_small_patch16_224", nb_classes=CLASSES,
                                            num_frames=FRAMES, input_size=IMAGE)}
    torch.save(finetuned, out / "vit_llama_small_finetuned.pth")
    torch.save(consolidated, out / "llama_small_consolidated.00.pth")
    for key, value in golden.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            print(f"{key:18s} {tuple(value.shape)} |max| {value.abs().max():.4g}")
    print("keys of the fine-tuned file:", sorted(k for k in model.state_dict() if not k.startswith("blocks.")))


if __name__ == "__main__":
    main()
