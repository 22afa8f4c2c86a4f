"""Loading Paxion weights with every key accounted for.

* Official release files (``actionbench_*_patch_and_fuse.pth``, ``*_patch_and_fuse.pth`` downstream):
  ``torch.save({"model": state_dict, ...})`` with top-level names ``temp``, ``temporal_embedding``,
  ``vision_perceiver.*`` (older files: ``knowledge_perceiver.*``), ``knowledge_fuser.*``, ``alpha``,
  ``vision_adaptor.*`` and possibly the frozen ``vl_backbone.*``. :data:`OFFICIAL_PREFIXES` maps them
  onto our module names; backbone keys are ignored (the backbone is loaded separately) and listed.
* Our own files: a state dict of the trainable part (``patcher.*``, ``fuser.*``, ``temp``), as
  ``.safetensors`` or ``.pth`` (optionally under ``["model"]``).
* Backbone files: the backbone's official checkpoint, or a plain state dict of our backbone module.

A missing patcher key, an unexpected key or a shape mismatch raises :class:`CheckpointError` naming
the file and the key. A checkpoint without any fuser key (a Knowledge-Patcher checkpoint loaded to
start Patch & Fuse training) leaves the fuser freshly initialised, which is reported; a checkpoint
with *some* fuser keys must have all of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import read_state_dict

logger = logging.getLogger(__name__)

# official name prefix -> our name prefix (longest match first); exact names end without "."
OFFICIAL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("knowledge_perceiver.", "patcher.vision_perceiver."),
    ("vision_perceiver.", "patcher.vision_perceiver."),
    ("vision_adaptor.", "patcher.vision_adaptor."),
    ("temporal_embedding", "patcher.temporal_embedding"),
    ("knowledge_fuser.", "fuser."),
    ("alpha", "fuser.alpha"),
    ("temp", "temp"),
)
BACKBONE_PREFIX = "vl_backbone."
# checkpoint keys a model may lack on purpose: the NExT-QA configs load a KP trained with a temporal
# embedding into a model without one (the original drops it silently; we report it)
OPTIONAL_KEYS = ("patcher.temporal_embedding",)
OWN_PREFIXES = ("patcher.", "fuser.")  # our layout; "temp" is shared by both layouts


def _map_official_key(key: str) -> str | None:
    for old, new in OFFICIAL_PREFIXES:
        if key == old.rstrip(".") or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old):] if old.endswith(".") else new
    return None


def to_own_keys(state: dict[str, torch.Tensor], path: str) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Official or own layout -> (our keys, ignored backbone keys, notes)."""
    if any(k.startswith(OWN_PREFIXES) for k in state):
        ignored = [k for k in state if k.startswith("backbone.")]  # a full-model save of our own
        return {k: v for k, v in state.items() if not k.startswith("backbone.")}, ignored, ["own key layout"]
    mapped: dict[str, torch.Tensor] = {}
    ignored, notes = [], ["official key layout"]
    for key, value in state.items():
        if key.startswith(BACKBONE_PREFIX):
            ignored.append(key)
            continue
        new = _map_official_key(key)
        if new is None:
            raise CheckpointError(f"{path}: unexpected key '{key}' (not a Paxion patcher/fuser/temp key)")
        if "knowledge_perceiver" in key:
            notes.append(f"renamed {key} -> {new}")
        mapped[new] = value
    return mapped, ignored, notes


def check_backbone_tensors(model: nn.Module, raw: dict[str, torch.Tensor], path: str, load: bool) -> list[str]:
    """Compare a checkpoint's backbone tensors (``vl_backbone.*``, or ``backbone.*`` of a full save of
    ours) with ``model.backbone``: warn with the count that differ; with ``load``, copy them in.

    A checkpoint tensor is matched to the backbone tensor of the same name (our backbones keep the
    official names) and shape; the others are counted as unmatched and never loaded.
    """
    backbone = getattr(model, "backbone", None)
    tensors = {
        key[len(prefix):]: value
        for key, value in raw.items()
        for prefix in (BACKBONE_PREFIX, "backbone.")
        if key.startswith(prefix)
    }
    if backbone is None or not tensors:
        return []
    own = backbone.state_dict()
    matched = {k: v for k, v in tensors.items() if k in own and v.shape == own[k].shape}
    unmatched = sorted(set(tensors) - set(matched))
    differing = sorted(  # a backbone built on the meta device has no values to compare
        k for k, v in matched.items() if not own[k].is_meta and not torch.equal(v.to(own[k].dtype), own[k])
    )
    note = f"{len(differing)} of {len(tensors)} backbone tensors in the file differ from the loaded backbone"
    if unmatched:
        note += f", {len(unmatched)} match no backbone tensor by name and shape (first: '{unmatched[0]}')"
    if load:
        model.load_state_dict({f"backbone.{k}": v for k, v in matched.items()}, strict=False)
        note += f"; loaded the {len(matched)} matching ones (model.load_backbone_from_checkpoint)"
        logger.info("%s: %s", path, note)
    elif differing:
        logger.warning(
            "%s: %s (first: '%s'); they are NOT used (the original loads them): "
            "set model.load_backbone_from_checkpoint=true to load them",
            path,
            note,
            differing[0],
        )
    return [note]


def load_trainable_state(
    model: nn.Module, path: str | Path, derived_keys: Iterable[str] = (), load_backbone: bool = False
) -> LoadReport:
    """Load the patcher/fuser/temp weights of ``path`` into ``model`` with exact key accounting.

    ``derived_keys`` are ours but never in a checkpoint (e.g. a projection copied from the backbone).
    Backbone tensors in the file are compared with ``model.backbone`` (:func:`check_backbone_tensors`)
    and loaded only when ``load_backbone``.
    """
    path = str(path)
    raw = read_state_dict(path, mmap=True)
    state, ignored, notes = to_own_keys(raw, path)
    notes += check_backbone_tensors(model, raw, path, load_backbone)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    expected = set(own) - set(derived_keys)
    for key in OPTIONAL_KEYS:
        if key in state and key not in own:
            del state[key]
            ignored.append(key)
            notes.append(f"ignored '{key}': this model has none")
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected key '{unexpected[0]}' ({len(unexpected)} in all) for this model")
    missing = sorted(expected - set(state))
    has_fuser_keys = any(k.startswith("fuser.") for k in state)
    fresh_fuser = [k for k in missing if k.startswith("fuser.")] if not has_fuser_keys else []
    hard_missing = [k for k in missing if k not in fresh_fuser]
    if hard_missing:
        raise CheckpointError(f"{path}: missing key '{hard_missing[0]}' ({len(hard_missing)} in all)")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise CheckpointError(f"{path}: key '{key}' has shape {tuple(value.shape)}, model {tuple(own[key].shape)}")
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    if fresh_fuser:
        notes.append(f"no fuser in this checkpoint: {len(fresh_fuser)} fuser tensors keep their fresh init")
    logger.info("loaded %d tensors from %s (%d backbone keys ignored)", len(state), path, len(ignored))
    return LoadReport(path=path, loaded=sorted(state), missing=fresh_fuser, unexpected=ignored, notes=notes)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> LoadReport:
    """A plain state dict of ``backbone`` (exact key set; a ``.safetensors`` file may hold a whole model
    around it, e.g. ``python -m paxion.assets system``) or else the backbone's official checkpoint."""
    path = Path(path)
    expected = set(backbone.state_dict())
    if path.suffix == ".safetensors":
        state = read_state_dict(path, mmap=True)
    else:
        try:
            state = read_state_dict(path, mmap=True)
        except Exception:  # official containers may hold non-tensor entries: not a plain state dict
            state = {}
        if set(state) != expected:
            return backbone.load_official_checkpoint(str(path))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    notes = ["plain backbone state dict"]
    if not missing and unexpected and path.suffix == ".safetensors":  # a whole system's export: its towers
        notes = [f"the backbone's tensors of a whole model ({len(unexpected)} other tensors left out)"]
        state, unexpected = {k: state[k] for k in expected}, []
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise CheckpointError(
            f"{path}: backbone state dict does not match: {len(missing)} missing, {len(unexpected)} unexpected "
            f"(first: '{first}')"
        )
    backbone.load_state_dict(state, strict=True)
    return LoadReport(path=str(path), loaded=sorted(state), notes=notes)
