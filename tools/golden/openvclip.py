"""Regenerate ``tests/golden/openvclip/*.json`` by running the original Open-VCLIP code.

Original: https://github.com/wengzejia1/Open-VCLIP at commit 047a817 (recorded in every file). Its
code is imported from the checkout given on the command line and run unchanged; nothing of it is
copied here. Stand-ins: ``slowfast.models``' package ``__init__`` is bypassed (it imports the whole
SlowFast zoo, pytorchvideo included), ``slowfast.models.build`` is replaced by its model registry
alone (an fvcore ``Registry``), and ``Tensor.cuda`` is the identity in this process (the original's
classifier code calls ``.cuda()``).

Environment (Python 3.11, CPU, its own venv, never the project's)::

    python3 -m venv venv-ovc
    venv-ovc/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==0.4.12 fvcore iopath simplejson \\
        ftfy regex opencv-python-headless "setuptools<81"

Command (from the project root)::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 venv-ovc/bin/python tools/golden/openvclip.py \\
        --original /path/to/Open-VCLIP --out tests/golden/openvclip

What it writes (inputs are described by seeds, so the files stay small; the weight file itself,
~26 MB with CLIP's 49,408-token embedding, is rebuilt by the test from the same seeds):

* ``tokens.json``: ``clip.tokenize`` ids of awkward texts (or the error it raises);
* ``model_<variant>.json``: a small random-weight CLIP (ViT, widths 128, 2+2 layers, 64 px, 4 frames)
  written as an OpenAI-CLIP-layout state dict in fp32, loaded by the original's ``load`` (with its
  fp16 cast); per-frame video embeddings, text embeddings, classification logits of its
  ``TemporalClipVideo.forward`` for ``expand_temporal_view`` and ``none``;
* ``swa.json``: its ``weight_average_tool.average_checkpoint`` over tiny checkpoints.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

COMMIT = "047a817"
TEXTS = [
    "a video of a person doing push ups.",
    "Crème brûlée, naïve café — déjà vu!",
    "ÉCOLE   Straße\tTAB\nnewline",
    "日本語のテキストと中文字符",
    "emoji 🎉🔥 and 👍🏽 skin tone",
    "",
    "   ",
    "it&amp;s &lt;b&gt;html&lt;/b&gt; escaped",
    "mojibake: cafÃ©",
    "numbers 12345 and punctuation?!... (yes) [no] {maybe}",
    "one two three " * 30,  # over-long: 77 positions are not enough
]
CONFIG = {  # OpenAI CLIP ViT layout; heads = width // 64 as the original derives them
    "image_size": 64, "patch_size": 16, "vision_width": 128, "vision_layers": 2, "embed_dim": 64,
    "context_length": 77, "vocab_size": 49408, "text_width": 128, "text_layers": 2, "num_frames": 4,
}
VIDEO = {"seed": 7, "shape": [2, 4, 3, 64, 64]}  # (B, T, C, H, W), standard-normal "normalised" pixels
PROMPT_TEXTS = TEXTS[:5]
CLASS_NAMES = ["push up", "riding a bike", "crème brûlée tasting", "跳舞", "juggling 3 balls"]
VARIANTS = {"expand_temporal_view": "expand_temporal_view", "none": None}  # project name -> original's


def weight_spec(shapes: dict[str, list[int]]) -> list[dict]:
    """Seeded normal tensors per key; LayerNorm weights around 1, logit_scale log(1/0.07)."""
    spec = []
    for index, (key, shape) in enumerate(sorted(shapes.items())):
        scale, offset = 0.05, 0.0
        if ".ln_" in f".{key}" and key.endswith(".weight"):
            scale, offset = 0.1, 1.0
        if "embedding" in key:
            scale = 0.1
        if key == "logit_scale":
            scale, offset = 0.0, 2.659260036932778
        spec.append({"key": key, "shape": shape, "seed": 1000 + index, "scale": scale, "offset": offset})
    return spec


def build_weights(spec: list[dict]) -> dict[str, torch.Tensor]:
    out = {}
    for item in spec:
        gen = torch.Generator().manual_seed(item["seed"])
        out[item["key"]] = torch.randn(item["shape"], generator=gen) * item["scale"] + item["offset"]
    return out


def checksums(tensors: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    return {k: [float(v.double().sum()), float(v.double().abs().sum())] for k, v in tensors.items()}


def import_original(root: Path) -> types.SimpleNamespace:
    sys.path.insert(0, str(root))
    for name, folder in (("slowfast", root / "slowfast"), ("slowfast.models", root / "slowfast" / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    from fvcore.common.registry import Registry

    build = types.ModuleType("slowfast.models.build")  # its model registry only (the real module pulls in
    build.MODEL_REGISTRY = Registry("MODEL")  # SlowFast's distributed utilities and pytorchvideo)
    sys.modules["slowfast.models.build"] = build
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU stand-in for its .cuda() calls
    import slowfast.models.temporalclip_video_model as tcv
    from slowfast.models import clip

    return types.SimpleNamespace(clip=clip, tcv=tcv)


def tokens_golden(orig: types.SimpleNamespace) -> dict:
    rows = []
    for text in TEXTS:
        try:
            ids = orig.clip.tokenize(text)[0]
            length = int((ids != 0).sum())
            rows.append({"text": text, "ids": ids[:length].tolist(), "padded_to": int(ids.shape[0])})
        except RuntimeError as exc:
            rows.append({"text": text, "error": str(exc)[:80]})
    return {"rows": rows}


def clip_shapes(orig: types.SimpleNamespace) -> dict[str, list[int]]:
    c = CONFIG
    model = orig.tcv.WCLIP(
        c["embed_dim"], c["image_size"], c["vision_layers"], c["vision_width"], c["patch_size"],
        c["context_length"], c["vocab_size"], c["text_width"], c["text_width"] // 64, c["text_layers"],
        T=c["num_frames"], temporal_modeling_type="expand_temporal_view",
    )
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def model_golden(orig: types.SimpleNamespace, spec: list[dict], variant: str, folder: Path) -> dict:
    weights = build_weights(spec)
    state = {**weights, "input_resolution": torch.tensor(CONFIG["image_size"]),
             "context_length": torch.tensor(CONFIG["context_length"]), "vocab_size": torch.tensor(CONFIG["vocab_size"])}
    path = folder / "clip_fp32.pt"
    torch.save(state, path)
    model, _ = orig.tcv.load(str(path), device="cpu", jit=False, T=CONFIG["num_frames"],
                             temporal_modeling_type=VARIANTS[variant], context_length=CONFIG["context_length"])
    model.eval()
    loaded = model.state_dict()
    rounded = sorted(k for k in weights if not torch.equal(loaded[k], weights[k]))
    video = torch.randn(VIDEO["shape"], generator=torch.Generator().manual_seed(VIDEO["seed"]))
    b, t = video.shape[:2]
    with torch.no_grad():
        frames = model.encode_image(video.flatten(0, 1)).reshape(b, t, -1)
        text = model.encode_text(orig.clip.tokenize(PROMPT_TEXTS))
        # its classifier and eval forward, unchanged, on an instance holding only what they read
        mapping = folder / "classes.json"
        mapping.write_text(json.dumps({str(i): name for i, name in enumerate(CLASS_NAMES)}), encoding="utf-8")
        head = orig.tcv.TemporalClipVideo.__new__(orig.tcv.TemporalClipVideo)
        torch.nn.Module.__init__(head)
        head.model, head.num_pathways = model, 1
        head.keep_raw_model = head.record_routing = head.tune_head = head.text_prompting = False
        head.ensemble_pred = head.distillation = False
        head.dynamic_classifier = head.achieve_csf_matrix(head.text_prompt(str(mapping)), model)
        head.eval()
        logits = head([video.permute(0, 2, 1, 3, 4)])
    return {
        "variant": variant, "rounded_keys": rounded, "num_keys": len(weights),
        "frame_embeddings": frames.tolist(), "text_embeddings": text.tolist(), "logits": logits.tolist(),
        "video_checksum": [float(video.double().sum()), float(video.double().abs().sum())],
    }


SWA_KEYS = {"visual.proj": [4, 3], "text_projection": [3, 2], "ln_final.weight": [3]}


class TinyClip(torch.nn.Module):
    """A scripted module with CLIP key names and metadata, standing in for the JIT ViT-B-16.pt."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = torch.nn.Module()
        self.visual.proj = torch.nn.Parameter(torch.randn(4, 3, generator=torch.Generator().manual_seed(50)))
        self.text_projection = torch.nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(51)))
        self.ln_final = torch.nn.Module()
        self.ln_final.weight = torch.nn.Parameter(torch.randn(3, generator=torch.Generator().manual_seed(52)))
        self.register_buffer("input_resolution", torch.tensor(224))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.visual.proj


def swa_checkpoint(epoch: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + epoch)
    return {"model." + k: torch.randn(shape, generator=gen) for k, shape in SWA_KEYS.items()}


def swa_golden(root: Path, folder: Path) -> dict:
    torch.jit.script(TinyClip()).save(str(folder / "tiny_clip.pt"))
    for epoch in range(1, 5):
        torch.save({"model_state": swa_checkpoint(epoch)}, folder / f"checkpoint_epoch_{epoch:05d}.pyth")
    source = (root / "weight_average_tool.py").read_text()
    tree = ast.parse(source)
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "average_checkpoint")
    checkpoints = sorted((str(p), int(p.stem.split("_")[-1])) for p in folder.glob("checkpoint_epoch_*.pyth"))
    out = {}
    for start, end in ((2, 3), (0, 4)):
        scope = {"torch": torch, "raw_clip": str(folder / "tiny_clip.pt"), "wa_start": start, "wa_end": end}
        exec(compile(ast.Module([function], []), str(root / "weight_average_tool.py"), "exec"), scope)  # noqa: S102
        averaged = scope["average_checkpoint"](checkpoints)
        out[f"{start}_{end}"] = {k: v.tolist() for k, v in averaged.items()}
    return {"keys": SWA_KEYS, "averages": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="checkout of wengzejia1/Open-VCLIP")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        head = subprocess.run(["git", "-C", str(args.original), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = COMMIT  # a plain export of the commit has no .git
    if not COMMIT.startswith(head[:7]):
        raise SystemExit(f"checkout is at {head}, the golden files are for {COMMIT}")
    orig = import_original(args.original.resolve())
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"original": "wengzejia1/Open-VCLIP", "commit": COMMIT, "torch": torch.__version__,
            "generator": "tools/golden/openvclip.py"}
    spec = weight_spec(clip_shapes(orig))
    with tempfile.TemporaryDirectory() as tmp:
        files = {"tokens.json": tokens_golden(orig), "swa.json": swa_golden(args.original, Path(tmp))}
        for variant in VARIANTS:
            files[f"model_{variant}.json"] = {
                "config": CONFIG, "weights": spec, "weight_checksums": checksums(build_weights(spec)),
                "video": VIDEO, "prompt_texts": PROMPT_TEXTS, "class_names": CLASS_NAMES,
                **model_golden(orig, spec, variant, Path(tmp)),
            }
    for name, body in files.items():
        (args.out / name).write_text(json.dumps({**meta, **body}, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out / name}")


if __name__ == "__main__":
    main()
