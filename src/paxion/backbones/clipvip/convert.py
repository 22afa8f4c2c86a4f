"""Load the official CLIP-ViP release file (``pretrain_clipvip_base_32.pt``) without editing it.

The file is a flat ``VidCLIP.state_dict()``: every key starts with ``clipmodel.`` and tensors may be
fp16 (the original trained with apex O2). The backbone keeps upstream's module names under the same
``clipmodel`` attribute, so the key map is the identity on that namespace; the only keys without a
home are the two ``position_ids`` buffers, which the model rebuilds as ``arange`` and which are
therefore checked rather than loaded.

Unlike the original loader, nothing is skipped silently: a key outside the expected set, a shape
mismatch or a missing parameter raises :class:`CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import torch_load

logger = logging.getLogger(__name__)

OFFICIAL_PREFIX = "clipmodel."
# persistent int64 buffers in transformers 4.x; may or may not be in the file
POSITION_ID_KEYS = (
    "clipmodel.vision_model.embeddings.position_ids",
    "clipmodel.text_model.embeddings.position_ids",
)
_POSITION_TABLES = {
    "clipmodel.vision_model.embeddings.position_ids": "clipmodel.vision_model.embeddings.position_embedding.weight",
    "clipmodel.text_model.embeddings.position_ids": "clipmodel.text_model.embeddings.position_embedding.weight",
}


def official_to_model_key(key: str) -> str:
    """Official key -> backbone state-dict key (identity: the backbone keeps the ``clipmodel.`` names)."""
    if not key.startswith(OFFICIAL_PREFIX):
        raise KeyError(f"'{key}' does not start with '{OFFICIAL_PREFIX}'")
    return key


def model_to_official_key(key: str) -> str:
    """Inverse of :func:`official_to_model_key`."""
    if not key.startswith(OFFICIAL_PREFIX):
        raise KeyError(f"'{key}' is not a CLIP-ViP backbone key")
    return key


def read_official_file(path: str) -> dict[str, Any]:
    """The raw flat dict of the release file; any read failure names the file."""
    raw = torch_load(path)
    if not isinstance(raw, dict) or not raw:
        kind = type(raw).__name__
        raise CheckpointError(f"CLIP-ViP checkpoint '{path}' is not a non-empty flat state dict (got {kind})")
    return raw


def _check_position_ids(path: str, key: str, value: Any, expected: dict[str, torch.Size]) -> None:
    length = expected[_POSITION_TABLES[key]][0]
    ok = (
        isinstance(value, torch.Tensor)
        and not value.is_floating_point()
        and tuple(value.shape) == (1, length)
        and torch.equal(value.flatten().long(), torch.arange(length))
    )
    if not ok:
        raise CheckpointError(f"'{path}': buffer '{key}' is not arange({length}) of shape (1, {length}) as assumed")


def convert_state_dict(
    raw: dict[str, Any], expected: dict[str, torch.Size], path: str
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Official flat dict -> fp32 state dict with exactly the keys of ``expected`` (name -> shape)."""
    report = LoadReport(path=str(path))
    state: dict[str, torch.Tensor] = {}
    cast: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key.startswith(OFFICIAL_PREFIX):
            raise CheckpointError(f"'{path}': key {key!r} lacks the '{OFFICIAL_PREFIX}' prefix of the CLIP-ViP release")
        if key in POSITION_ID_KEYS:
            _check_position_ids(path, key, value, expected)
            report.unexpected.append(key)
            continue
        name = official_to_model_key(key)
        if name not in expected:
            raise CheckpointError(f"'{path}': unexpected key '{key}' (not a CLIP-ViP-B/32 parameter)")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = getattr(value, "dtype", type(value).__name__)
            raise CheckpointError(f"'{path}': key '{key}' holds {kind}, not a float tensor")
        if value.shape != expected[name]:
            shapes = f"{tuple(value.shape)}, the model expects {tuple(expected[name])}"
            raise CheckpointError(f"'{path}': key '{key}' has shape {shapes}")
        if value.dtype != torch.float32:
            cast[str(value.dtype)] = cast.get(str(value.dtype), 0) + 1
            value = value.float()
        state[name] = value
    missing = [name for name in expected if name not in state]
    if missing:
        raise CheckpointError(
            f"'{path}': {len(missing)} parameters missing, first '{model_to_official_key(missing[0])}'"
            " (truncated or wrong file?)"
        )
    report.loaded = list(state)
    for dtype, count in cast.items():
        report.notes.append(f"cast {count} tensors from {dtype} to torch.float32")
    if report.unexpected:
        report.notes.append(f"checked and dropped {len(report.unexpected)} position_ids buffers (rebuilt as arange)")
    return state, report


def load_official_checkpoint(backbone: nn.Module, path: str) -> LoadReport:
    """Load ``path`` into a CLIP-ViP backbone; a backbone built on the meta device gets the file's tensors."""
    expected = {name: tensor.shape for name, tensor in backbone.state_dict().items()}
    state, report = convert_state_dict(read_official_file(path), expected, path)
    on_meta = any(p.is_meta for p in backbone.parameters())
    backbone.load_state_dict(state, strict=True, assign=on_meta)
    notes = "; ".join(report.notes) or "no transforms"
    logger.info("loaded CLIP-ViP checkpoint %s: %d tensors; %s", path, len(report.loaded), notes)
    return report
