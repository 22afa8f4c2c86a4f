"""Official InternVideo-MM-L-14 checkpoint -> :class:`InternVideo` state dict.

The release ``InternVideo-MM-L-14.ckpt`` is a PyTorch-Lightning-style dict. Only ``["state_dict"]``
is read; the model lives under the ``clip.`` prefix, which is stripped, and every other entry
(e.g. a caption decoder of the pretraining module) is discarded and reported. After stripping, the
keys are our module's keys one to one, so the map is the prefix alone; the loader then asserts
that no key is missing, none is left over and every shape matches, instead of relying on
``strict=False``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import torch_load

if TYPE_CHECKING:
    from paxion.backbones.internvideo.model import InternVideo

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "clip."
CONTAINER_KEY = "state_dict"
EXPECTED_MISSING: frozenset[str] = frozenset()  # the file carries every parameter; no buffers are persistent


def official_to_model_key(key: str) -> str | None:
    """Checkpoint key -> model key, or None for entries that are not part of the video-text model."""
    return key[len(CHECKPOINT_PREFIX) :] if key.startswith(CHECKPOINT_PREFIX) else None


def model_to_official_key(key: str) -> str:
    """Model key -> key in the official file (inverse of :func:`official_to_model_key`)."""
    return CHECKPOINT_PREFIX + key


def read_official_state_dict(path: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """-> (model-keyed tensors, discarded checkpoint keys). Raises CheckpointError naming the file."""
    # mmap avoids reading optimizer state or decoder weights we discard (torch.save archives only)
    container = torch_load(path, mmap=True)
    if not isinstance(container, dict) or not isinstance(container.get(CONTAINER_KEY), dict):
        found = sorted(container)[:10] if isinstance(container, dict) else type(container).__name__
        raise CheckpointError(f"{path}: expected a Lightning-style dict with a '{CONTAINER_KEY}' dict; found {found}")
    tensors: dict[str, torch.Tensor] = {}
    discarded: list[str] = []
    for key, value in container[CONTAINER_KEY].items():
        model_key = official_to_model_key(key)
        if model_key is None:
            discarded.append(key)
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = getattr(value, "dtype", type(value).__name__)
            raise CheckpointError(f"{path}: key '{key}' is {kind}, expected a float tensor")
        tensors[model_key] = value
    if not tensors:
        first = list(container[CONTAINER_KEY])[:5]
        raise CheckpointError(f"{path}: no key starts with '{CHECKPOINT_PREFIX}' in '{CONTAINER_KEY}'; first keys: {first}")
    return tensors, sorted(discarded)


def check_against_model(path: str, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> list[str]:
    """Assert exact key sets and shapes; -> missing keys (all of them expected)."""
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected key '{model_to_official_key(unexpected[0])}' "
            f"({len(unexpected)} unexpected in all); is this an InternVideo-MM checkpoint of this size?"
        )
    missing = [k for k in expected if k not in tensors]
    surprising = [k for k in missing if k not in EXPECTED_MISSING]
    if surprising:
        raise CheckpointError(
            f"{path}: missing key '{model_to_official_key(surprising[0])}' ({len(surprising)} missing in all)"
        )
    for key, value in tensors.items():
        if value.shape != expected[key]:
            raise CheckpointError(
                f"{path}: key '{model_to_official_key(key)}' has shape {tuple(value.shape)}, "
                f"the model expects {tuple(expected[key])}"
            )
    return missing


def load_official_checkpoint(model: "InternVideo", path: str) -> LoadReport:
    """Load the official file into ``model`` in fp32, every key accounted for; the model is left in eval mode."""
    tensors, discarded = read_official_state_dict(path)
    expected = {key: value.shape for key, value in model.state_dict().items()}
    missing = check_against_model(path, tensors, expected)
    cast = sorted({str(v.dtype) for v in tensors.values() if v.dtype != torch.float32})
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=not missing)
    model.float().eval()
    notes = [f"stripped prefix '{CHECKPOINT_PREFIX}' from {len(tensors)} keys of ['{CONTAINER_KEY}']"]
    if cast:
        notes.append(f"cast {', '.join(cast)} tensors to float32")
    if discarded:
        notes.append(f"discarded {len(discarded)} keys without the '{CHECKPOINT_PREFIX}' prefix")
    report = LoadReport(path=path, loaded=sorted(tensors), missing=missing, unexpected=discarded, notes=notes)
    logger.info("loaded %s: %d tensors; %s", path, len(tensors), "; ".join(notes))
    return report
