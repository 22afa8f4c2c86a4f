"""ALPRO release files -> our parameter names, every key accounted for.

Release layouts (raw state dicts, or ``{"model": state_dict}`` as LAVIS saves them):

* pre-trained ``alpro_pretrained_ckpt.pt``: ``visual_encoder.model.*`` (TimeSformer, with its unused
  Kinetics ``head``), ``text_encoder.bert.*`` + ``text_encoder.cls.*`` (BERT MLM head),
  ``vision_proj``, ``text_proj``, ``temp``, ``itm_head``, ``mpm_head`` and the whole teacher under
  ``prompter.*`` (incl. its ``video_prompt_feat`` / ``image_prompt_feat`` banks);
* fine-tuned retrieval: the same without MLM/PEM parts; fine-tuned QA: ``text_encoder.*`` without
  ``bert.`` (a plain BertModel) and ``classifier.*``; the Prompter: a VTC-only model.

Renames: ``visual_encoder.model.`` -> ``visual_encoder.``, ``text_encoder.bert.`` ->
``text_encoder.``, ``text_encoder.cls.`` -> ``mlm_head.``, at any depth (``prompter.`` included).
``pos_embed`` (patch part) and ``time_embed`` are nearest-resized to the model's grid and frame count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import read_state_dict
from paxion.backbones.timesformer.vit import resize_pos_embed, resize_time_embed

RENAMES = (
    (re.compile(r"(^|\.)visual_encoder\.model\."), r"\1visual_encoder."),
    (re.compile(r"(^|\.)text_encoder\.bert\."), r"\1text_encoder."),
    (re.compile(r"(^|\.)text_encoder\.cls\."), r"\1mlm_head."),
)
# release keys a model may lack by design (heads of other stages, derived buffers, the K400 classifier)
IGNORABLE = re.compile(
    r"(^|\.)(position_ids|visual_encoder\.head\.\w+|mlm_head\..+|itm_head\.\w+|mpm_head\..+|classifier\..+"
    r"|video_prompt_feat|image_prompt_feat|text_encoder\.pooler\..+)$|^prompter\."
)
LAYER = re.compile(r"(^|\.)text_encoder\.encoder\.layer\.(\d+)\.")


def map_key(key: str) -> str:
    for pattern, repl in RENAMES:
        key = pattern.sub(repl, key)
    return key


@dataclass
class Converted:
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _ignorable(mapped: str, target: Mapping[str, torch.Tensor]) -> bool:
    if IGNORABLE.search(mapped):
        return True
    layer = LAYER.search(mapped)  # text layers the target does not build (a text-only backbone)
    return layer is not None and mapped not in target


def fit(key: str, value: torch.Tensor, target: torch.Tensor, source: str, notes: list[str]) -> torch.Tensor:
    """Resize position / time embeddings; any other shape mismatch is an error naming the key."""
    if value.shape == target.shape:
        return value.to(target.dtype)
    if key.endswith("pos_embed") and value.ndim == 3:
        grid = int(round((target.shape[1] - 1) ** 0.5))
        notes.append(f"{key}: resized {tuple(value.shape)} -> {tuple(target.shape)} (nearest)")
        return resize_pos_embed(value.float(), (grid, grid)).to(target.dtype)
    if key.endswith("time_embed") and value.ndim == 3:
        notes.append(f"{key}: resized {tuple(value.shape)} -> {tuple(target.shape)} (nearest)")
        return resize_time_embed(value.float(), target.shape[1]).to(target.dtype)
    raise CheckpointError(f"{source}: '{key}' has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}")


def convert_state_dict(
    official: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    source: str,
    may_miss: Callable[[str], bool] = lambda key: False,
) -> Converted:
    """Map, resize and account for every key; unknown release keys and unexpected gaps are errors."""
    out = Converted()
    for key, value in official.items():
        mapped = map_key(key)
        if mapped in target:
            out.state_dict[mapped] = fit(mapped, value, target[mapped], source, out.notes)
        elif _ignorable(mapped, target):
            out.ignored.append(key)
        else:
            raise CheckpointError(f"{source}: key '{key}' (as '{mapped}') matches no model parameter")
    for key in sorted(set(target) - set(out.state_dict)):
        if not may_miss(key):
            raise CheckpointError(f"{source}: model key '{key}' is not in the file")
        out.missing.append(key)
    return out


def load_into(model: torch.nn.Module, path: str, may_miss: Callable[[str], bool] = lambda key: False) -> LoadReport:
    """Load a release file into ``model`` (meta-built models too); keys left out keep their values."""
    target = model.state_dict()
    converted = convert_state_dict(read_state_dict(path), target, str(path), may_miss)
    on_meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(converted.state_dict, strict=False, assign=on_meta)
    return LoadReport(path=str(path), loaded=sorted(converted.state_dict), missing=converted.missing,
                      unexpected=sorted(converted.ignored), notes=converted.notes)


def load_alpro_checkpoint(model: torch.nn.Module, path: str) -> LoadReport:
    """The frozen backbone: every parameter must come from the file."""
    return load_into(model, path)


def official_key_names(keys: Iterable[str]) -> list[str]:
    """Our names -> the release layout of a pre-trained file (for writing test files)."""
    out = []
    for key in keys:
        key = re.sub(r"(^|\.)visual_encoder\.", r"\1visual_encoder.model.", key)
        key = re.sub(r"(^|\.)text_encoder\.", r"\1text_encoder.bert.", key)
        out.append(re.sub(r"(^|\.)mlm_head\.", r"\1text_encoder.cls.", key))
    return out


__all__ = ["convert_state_dict", "load_alpro_checkpoint", "load_into", "map_key", "official_key_names",
           "read_state_dict", "rearrange"]
