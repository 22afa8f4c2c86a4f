"""Reading selected decoder layers of a LLaMA checkpoint without loading the whole file.

Layouts (names of layer N):

=====================  ===========================================  ===========================================
ours (= Meta)          Meta ``consolidated.XX.pth``                 Hugging Face (``model.safetensors`` etc.)
=====================  ===========================================  ===========================================
attention.wq           layers.N.attention.wq.weight                 model.layers.N.self_attn.q_proj.weight (*)
attention.wk           layers.N.attention.wk.weight                 model.layers.N.self_attn.k_proj.weight (*)
attention.wv           layers.N.attention.wv.weight                 model.layers.N.self_attn.v_proj.weight
attention.wo           layers.N.attention.wo.weight                 model.layers.N.self_attn.o_proj.weight
feed_forward.w1        layers.N.feed_forward.w1.weight              model.layers.N.mlp.gate_proj.weight
feed_forward.w2        layers.N.feed_forward.w2.weight              model.layers.N.mlp.down_proj.weight
feed_forward.w3        layers.N.feed_forward.w3.weight              model.layers.N.mlp.up_proj.weight
attention_norm         layers.N.attention_norm.weight               model.layers.N.input_layernorm.weight
ffn_norm               layers.N.ffn_norm.weight                     model.layers.N.post_attention_layernorm.weight
norm (final)           norm.weight                                  model.norm.weight
=====================  ===========================================  ===========================================

(*) Hugging Face's conversion reorders the rows of q/k inside every head (interleaved rotary halves
-> split halves); they are put back in Meta's order here, so both layouts give identical tensors.
(Without rotary the reorder would cancel in q.k anyway, but identical tensors are easier to check.)

Only the selected tensors are read: safetensors through ``safe_open`` one tensor at a time (single
file or sharded with ``model.safetensors.index.json``), torch files through
``torch.load(mmap=True, weights_only=True)`` and a copy of the selected entries. Meta's
model-parallel shards (``consolidated.00.pth``, ``consolidated.01.pth``, ...) are concatenated along
the split dimension (rows of wq/wk/wv/w1/w3, columns of wo/w2; norms replicated).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import torch

from paxion.backbones.safe_load import describe_refusal

META_SUFFIXES = (
    "attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
    "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight",
    "attention_norm.weight", "ffn_norm.weight",
)
HF_SUFFIXES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
# Meta model-parallel shards: dimension each weight is split along (None: replicated)
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1}


class LLaMAWeightsError(ValueError):
    """A LLaMA checkpoint that cannot provide the requested layers; names the file and key."""


def meta_name(layer: int, suffix: str) -> str:
    return f"layers.{layer}.{suffix}"


def hf_name(layer: int, suffix: str, prefix: str = "model.") -> str:
    return f"{prefix}layers.{layer}.{HF_SUFFIXES[suffix]}"


def hf_to_meta_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo Hugging Face's per-head row order of q/k: (H*d_h, D) with halves -> interleaved pairs."""
    rows, cols = weight.shape
    return weight.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def meta_to_hf_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Hugging Face's conversion of q/k rows (for writing test files in its layout)."""
    rows, cols = weight.shape
    return weight.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


# --------------------------------------------------------------------------- finding files and keys


def checkpoint_files(path: str | Path) -> tuple[list[Path], Optional[dict[str, str]]]:
    """(files, weight_map or None) for a file or a folder holding a LLaMA checkpoint."""
    path = Path(path)
    if path.is_file():
        if path.name.endswith(".index.json"):
            return _indexed(path)
        return [path], None
    if not path.is_dir():
        raise LLaMAWeightsError(f"LLaMA checkpoint not found: {path}")
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            return _indexed(path / index)
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).is_file():
            return [path / single], None
    shards = sorted(path.glob("consolidated.*.pth")) or sorted(path.glob("*.pth")) or sorted(path.glob("*.safetensors"))
    if not shards:
        raise LLaMAWeightsError(f"{path}: no LLaMA checkpoint (consolidated.*.pth, *.safetensors, index json)")
    return shards, None


def _indexed(index: Path) -> tuple[list[Path], dict[str, str]]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise LLaMAWeightsError(f"{index}: not a sharded-checkpoint index (no 'weight_map'): {exc}") from None
    files = sorted({index.parent / f for f in weight_map.values()})
    return files, {k: str(index.parent / f) for k, f in weight_map.items()}


def _file_keys(path: Path) -> list[str]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    return list(_torch_state(path))


def _torch_state(path: Path) -> dict[str, torch.Tensor]:
    """A torch file memory-mapped (tensors are read from disk only when touched)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise LLaMAWeightsError(f"{path}: {describe_refusal(path, exc)}") from exc
    if not isinstance(obj, dict):
        raise LLaMAWeightsError(f"{path}: top level is a {type(obj).__name__}, not a state dict")
    return obj


def detect_layout(keys: Iterable[str]) -> tuple[str, str]:
    """('meta' | 'hf', HF name prefix) from the key names."""
    for key in keys:
        if ".self_attn." in key or ".mlp." in key:
            return "hf", key[: key.index("layers.")]
        if ".attention." in key or ".feed_forward." in key:
            return "meta", ""
    raise LLaMAWeightsError("no LLaMA layer keys found (neither layers.N.attention.* nor model.layers.N.self_attn.*)")


# --------------------------------------------------------------------------- reading


def _read(files: list[Path], weight_map: Optional[dict[str, str]], wanted: list[str]) -> list[dict[str, torch.Tensor]]:
    """For every file (shard), the wanted tensors it holds, copied out of the file."""
    out: list[dict[str, torch.Tensor]] = []
    for file in files:
        names = [k for k in wanted if weight_map is None or weight_map.get(k) == str(file)]
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                present = set(f.keys())
                out.append({k: f.get_tensor(k) for k in names if k in present})
        else:
            state = _torch_state(file)
            out.append({k: state[k].clone() for k in names if k in state})
            del state
    return out


def _merge_shards(parts: list[dict[str, torch.Tensor]], meta_shards: bool) -> dict[str, torch.Tensor]:
    if not meta_shards or len(parts) == 1:
        return {k: v for part in parts for k, v in part.items()}
    merged: dict[str, torch.Tensor] = {}
    for key in parts[0]:
        kind = key.split(".")[-2]
        dim = SHARD_DIM.get(kind)
        merged[key] = parts[0][key] if dim is None else torch.cat([p[key] for p in parts], dim=dim)
    return merged


def read_llama_layers(
    path: str | Path, layers: list[int], layout: str = "auto", final_norm: bool = False, n_heads: Optional[int] = None
) -> dict[str, torch.Tensor]:
    """Tensors of ``layers`` (and the final norm) under our names: ``layers.{j}.<suffix>``, j = 0.. in order.

    ``n_heads`` (needed for Hugging Face q/k rows) defaults to the value in the folder's
    ``config.json``/``params.json``, else to head size 128 (every LLaMA size).
    """
    files, weight_map = checkpoint_files(path)
    keys = list(weight_map) if weight_map is not None else _file_keys(files[0])
    found, prefix = detect_layout(keys)
    if layout != "auto" and layout != found:
        raise LLaMAWeightsError(f"{path}: weights_layout '{layout}' requested, but the keys are in the {found} layout")
    wanted: dict[str, str] = {}  # file name -> our name
    for j, layer in enumerate(layers):
        for suffix in META_SUFFIXES:
            name = meta_name(layer, suffix) if found == "meta" else hf_name(layer, suffix, prefix)
            wanted[name] = f"layers.{j}.{suffix}"
    if final_norm:
        wanted["norm.weight" if found == "meta" else f"{prefix}norm.weight"] = "norm.weight"
    parts = _read(files, weight_map, list(wanted))
    tensors = _merge_shards(parts, meta_shards=found == "meta" and len(files) > 1)
    missing = [k for k in wanted if k not in tensors]
    if missing:
        raise LLaMAWeightsError(f"{path}: missing {missing[:5]} (layers {layers} asked for; {found} layout)")
    out = {wanted[k]: v for k, v in tensors.items()}
    if found == "hf":
        heads = n_heads or _config_heads(Path(path)) or out["layers.0.attention.wq.weight"].shape[0] // 128
        for key in [k for k in out if k.endswith(("attention.wq.weight", "attention.wk.weight"))]:
            out[key] = hf_to_meta_rows(out[key], heads)
    return out


def _config_heads(path: Path) -> Optional[int]:
    folder = path if path.is_dir() else path.parent
    for name, key in (("config.json", "num_attention_heads"), ("params.json", "n_heads")):
        file = folder / name
        if file.is_file():
            value = json.loads(file.read_text()).get(key)
            if value:
                return int(value)
    return None
