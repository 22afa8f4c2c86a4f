"""Loading VideoMAE release files unchanged into :class:`VideoMAEViT`, with every key accounted for.

Files handled (facts from VideoMAE's ``run_class_finetuning.py``):

* fine-tuned: ``{"model" | "module": state_dict, "optimizer", "epoch", "args", ...}`` with our names
  (``patch_embed.proj.*``, ``blocks.N.*``, ``fc_norm.*``, ``head.*``);
* self-supervised pre-trained: the same container around ``encoder.*`` (ViT), ``decoder.*``,
  ``encoder_to_decoder.weight`` and ``mask_token``; the decoder side and the encoder's final
  ``norm`` (unused with mean pooling) are ignored and listed; ``fc_norm`` and ``head`` stay freshly
  initialised and are listed as missing;
* a bare state dict, or one whose keys start with ``backbone.``.

The first of ``model``/``module`` found is used, ``backbone.``/``encoder.`` prefixes are stripped, the
head is dropped when its class count differs, and a stored ``pos_embed`` is resampled per temporal
slice (bicubic over the spatial grid). Keys of the frozen LLM block of LM4VisualEncoding fine-tuned
files (``llama.*``, ``llama_dim_mapper{1,2}.*``) are handed back to the caller. Anything else that
does not match raises :class:`CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import torch_load
from paxion.backbones.videomae.model import VideoMAEViT

CONTAINER_KEYS = ("model", "module")
STRIP_PREFIXES = ("backbone.", "encoder.")
# pre-training parts the classifier does not use (names after prefix stripping)
IGNORED_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "norm.")
LLM_PREFIXES = ("llama.", "llama_dim_mapper1.", "llama_dim_mapper2.")
HEAD_KEYS = ("head.weight", "head.bias")


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a release file (first of ``model``/``module``, else the file itself)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VideoMAE checkpoint not found: {path}")
    obj: Any = torch_load(path, mmap=True, safe_globals=[argparse.Namespace])  # fine-tuned files carry "args"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: top level is a {type(obj).__name__}, not a dict")
    state = next((obj[k] for k in CONTAINER_KEYS if k in obj), obj)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the model entry is a {type(state).__name__}, not a state dict")
    return {str(k): v for k, v in state.items() if torch.is_tensor(v)}


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``backbone.x``/``encoder.x`` -> ``x`` (one prefix, as the original)."""
    out = {}
    for key, value in state.items():
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def interpolate_pos_embed(pos_embed: torch.Tensor, temporal: int, new_side: int) -> torch.Tensor:
    """(1, temporal * s * s, D) -> (1, temporal * new_side^2, D), bicubic per temporal slice."""
    _, n, dim = pos_embed.shape
    side = int(round((n // temporal) ** 0.5))
    if temporal * side * side != n:
        raise ValueError(f"pos_embed of {n} positions is not {temporal} temporal slices of a square grid")
    if side == new_side:
        return pos_embed
    grid = pos_embed.reshape(temporal, side, side, dim).permute(0, 3, 1, 2).float()  # (T', D, s, s)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, temporal * new_side * new_side, dim).to(pos_embed.dtype)


def _classify_keys(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor], report: LoadReport,
                   source: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split into (keys to load, LLM-block keys); ignored keys go to ``report.unexpected``."""
    load, llm = {}, {}
    for key, value in state.items():
        if key in own:
            load[key] = value
        elif key.startswith(LLM_PREFIXES):
            llm[key] = value
        elif key.startswith(IGNORED_PREFIXES) or key == "pos_embed":
            report.unexpected.append(key)
        else:
            raise CheckpointError(f"{source}: key '{key}' does not belong to a VideoMAE ViT")
    return load, llm


def load_videomae_state(
    model: VideoMAEViT, state: Mapping[str, torch.Tensor], source: str
) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Load an official state dict (any container/prefix) -> (report, LLM-block keys for the caller)."""
    report = LoadReport(path=source)
    state = strip_prefixes(state)
    own = model.state_dict()
    for key in HEAD_KEYS:
        if key in state and key in own and state[key].shape != own[key].shape:
            report.notes.append(f"dropped {key} {tuple(state.pop(key).shape)}: the model has {tuple(own[key].shape)}")
            report.unexpected.append(key)
    if "pos_embed" in state:
        temporal, side, _ = model.cfg.grid
        try:
            table = interpolate_pos_embed(state["pos_embed"], temporal, side)
        except ValueError as exc:
            raise CheckpointError(f"{source}: pos_embed: {exc}") from None
        model.pos_embed.copy_(table.to(model.pos_embed.dtype))
        report.notes.append(f"pos_embed {tuple(state['pos_embed'].shape)} -> {tuple(table.shape)} (per temporal slice)")
        report.loaded.append("pos_embed")
    load, llm = _classify_keys(state, own, report, source)
    bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in load.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{source}: shape mismatch: {bad[:10]}")
    missing = sorted(set(own) - set(load))
    unexplained = [k for k in missing if not k.startswith(("fc_norm.", "head."))]
    if unexplained:
        raise CheckpointError(f"{source}: VideoMAE keys missing from the checkpoint: {unexplained[:10]}")
    model.load_state_dict(load, strict=False)
    report.loaded += sorted(load)
    report.missing = missing  # fc_norm/head of a pre-trained file: freshly initialised
    if missing:
        report.notes.append(f"freshly initialised: {missing}")
    return report, llm


def load_videomae_checkpoint(model: VideoMAEViT, path: str | Path) -> tuple[LoadReport, dict[str, torch.Tensor]]:
    """Read a release file and load it (see :func:`load_videomae_state`)."""
    return load_videomae_state(model, read_checkpoint(path), str(path))
