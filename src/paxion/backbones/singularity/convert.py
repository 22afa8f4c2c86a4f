"""Official ``singularity_temporal_17m.pth`` -> :class:`SingularityBackbone` state dict.

The release file is ``torch.save({"model", "optimizer", "scheduler", "scaler", "config", "epoch",
"global_step"})`` with ``config`` an OmegaConf object. It is read with ``weights_only=True`` plus the
few OmegaConf classes that object needs, and only ``["model"]`` is used. Transform, as Paxion does it:

1. BEiT ``relative_position_index`` buffers are dropped (this model derives the index from the grid);
   a relative-position table of another length is resampled per head (bicubic, last 3 rows kept).
2. ``text_encoder.bert.*`` -> ``text_encoder.*``; ``embeddings.position_ids`` is dropped (derived).
3. ``temporal_embeddings`` (1, F0, 1, D) -> (1, F, 1, D): copied into the first F0 rows of zeros, or truncated.
4. Every remaining key must load, with equal shape; the only keys left over must be exactly the MLM
   head (``text_encoder.cls.predictions.*``, 7 tensors) and the text layers >= ``fusion_layer`` (the
   fusion layers with cross-attention, which text-only encoding never runs and this model does not build).
"""

from __future__ import annotations

import collections
import re
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from omegaconf import DictConfig, ListConfig
from omegaconf.base import ContainerMetadata, Metadata
from omegaconf.nodes import AnyNode

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import torch_load
from paxion.backbones.singularity.beit import NUM_EXTRA_DISTANCES

if TYPE_CHECKING:
    from paxion.backbones.singularity.model import SingularityBackbone

# Exactly what unpickling an OmegaConf config built from YAML + CLI (as Singularity's setup_config does)
# refers to: the containers, their metadata, untyped value nodes and the type objects stored as
# key/element types in that metadata. Anything else in a file is refused by the weights-only unpickler.
OMEGACONF_SAFE_GLOBALS: tuple[Any, ...] = (
    DictConfig,
    ListConfig,
    ContainerMetadata,
    Metadata,
    AnyNode,
    typing.Any,
    collections.defaultdict,
    dict,
    list,
    int,
)

TEXT_PREFIX_OFFICIAL = "text_encoder.bert."
TEXT_PREFIX = "text_encoder."
MLM_HEAD_KEYS = tuple(
    f"text_encoder.cls.predictions.{name}"
    for name in (
        "bias",
        "transform.dense.weight",
        "transform.dense.bias",
        "transform.LayerNorm.weight",
        "transform.LayerNorm.bias",
        "decoder.weight",
        "decoder.bias",
    )
)
_TEXT_LAYER = re.compile(r"^text_encoder\.encoder\.layer\.(\d+)\.(.+)$")


@dataclass
class ConvertedStateDict:
    state_dict: dict[str, torch.Tensor]
    ignored: list[str] = field(default_factory=list)  # official keys this model has no place for, by design
    dropped_buffers: list[str] = field(default_factory=list)  # derived buffers recomputed by the model
    notes: list[str] = field(default_factory=list)


def map_official_key(key: str) -> str:
    """Official key -> this model's key (only the text encoder moves: ``text_encoder.bert.`` -> ``text_encoder.``)."""
    if key.startswith(TEXT_PREFIX_OFFICIAL):
        return TEXT_PREFIX + key[len(TEXT_PREFIX_OFFICIAL) :]
    return key


def is_derived_buffer(key: str) -> bool:
    return key.endswith(".relative_position_index") or key == "text_encoder.embeddings.position_ids"


def expected_ignored_keys(target_keys: typing.Iterable[str], fusion_layer: int, text_layers: int) -> set[str]:
    """The MLM head plus every key of the unbuilt text layers ``fusion_layer .. text_layers-1``.

    A fusion layer holds the same self-attention layer keys as layer 0 plus a ``crossattention`` copy of
    its ``attention`` sub-block, so the expected names are derived from layer 0 of the built model.
    """
    layer_suffixes = [m.group(2) for key in target_keys if (m := _TEXT_LAYER.match(key)) and m.group(1) == "0"]
    cross_suffixes = ["cross" + s for s in layer_suffixes if s.startswith("attention.")]
    unbuilt = {
        f"text_encoder.encoder.layer.{i}.{suffix}"
        for i in range(fusion_layer, text_layers)
        for suffix in layer_suffixes + cross_suffixes
    }
    return unbuilt | set(MLM_HEAD_KEYS)


def resample_relative_position_table(table: torch.Tensor, rows: int) -> torch.Tensor:
    """table (R0, H) -> (rows, H): bicubic on the (2w-1)^2 distance grid; the 3 CLS rows are kept."""
    if table.shape[0] == rows:
        return table
    src = round((table.shape[0] - NUM_EXTRA_DISTANCES) ** 0.5)
    dst = round((rows - NUM_EXTRA_DISTANCES) ** 0.5)
    if src * src + NUM_EXTRA_DISTANCES != table.shape[0] or dst * dst + NUM_EXTRA_DISTANCES != rows:
        raise ValueError(f"relative position tables of {table.shape[0]} -> {rows} rows are not square grids + 3")
    grid = rearrange(table[:-NUM_EXTRA_DISTANCES].float(), "(y x) h -> 1 h y x", y=src)
    grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=True)
    resampled = rearrange(grid, "1 h y x -> (y x) h").to(table.dtype)
    return torch.cat([resampled, table[-NUM_EXTRA_DISTANCES:]], dim=0)


def resize_temporal_embeddings(table: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, F0, 1, D) -> (1, F, 1, D): zero rows appended (F > F0) or rows cut (F < F0)."""
    stored = table.shape[1]
    if num_frames <= stored:
        return table[:, :num_frames]
    resized = torch.zeros(table.shape[0], num_frames, *table.shape[2:], dtype=table.dtype, device=table.device)
    resized[:, :stored] = table
    return resized


def convert_official_state_dict(
    official: Mapping[str, Any],
    target: Mapping[str, torch.Tensor],
    *,
    fusion_layer: int,
    text_layers: int,
    source: str = "<state dict>",
) -> ConvertedStateDict:
    """Apply the documented transform and check every key; ``target`` is the model's own state dict."""
    expected_ignored = expected_ignored_keys(target, fusion_layer, text_layers)
    out = ConvertedStateDict(state_dict={})
    cast_from: set[torch.dtype] = set()
    for official_key, value in official.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: '{official_key}' holds a {type(value).__name__}, not a tensor")
        key = map_official_key(official_key)
        if is_derived_buffer(key):
            out.dropped_buffers.append(official_key)
            continue
        if key not in target:
            if key not in expected_ignored:
                raise CheckpointError(f"{source}: unexpected key '{official_key}' (no such parameter in the model)")
            out.ignored.append(official_key)
            continue
        out.state_dict[key] = fit_tensor(key, value, target[key], source, official_key, out.notes)
        if value.dtype != target[key].dtype:
            cast_from.add(value.dtype)
    missing = [key for key in target if key not in out.state_dict]
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}' ({len(missing)} model tensors not in the file)")
    absent = sorted(expected_ignored - set(map_official_key(k) for k in out.ignored))
    if absent:
        raise CheckpointError(
            f"{source}: expected key '{absent[0]}' is absent ({len(absent)} of the MLM-head / fusion-layer keys); "
            "is this the pre-training release file?"
        )
    renamed = sum(k.startswith(TEXT_PREFIX_OFFICIAL) for k in official)
    out.notes.append(f"renamed {renamed} keys '{TEXT_PREFIX_OFFICIAL}*' -> '{TEXT_PREFIX}*'")
    out.notes.append(f"dropped {len(out.dropped_buffers)} derived buffers (relative_position_index, position_ids)")
    out.notes.append(f"ignored {len(out.ignored)} keys: MLM head and text layers {fusion_layer}..{text_layers - 1}")
    if cast_from:
        out.notes.append(f"cast {sorted(str(d) for d in cast_from)} -> model dtype")
    return out


def fit_tensor(
    key: str, value: torch.Tensor, target: torch.Tensor, source: str, official_key: str, notes: list[str]
) -> torch.Tensor:
    """Shape-adapt the two tensors the original adapts; any other shape difference is an error."""
    if key.endswith("relative_position_bias_table") and value.ndim == 2 and value.shape[1] == target.shape[1]:
        if value.shape[0] != target.shape[0]:
            notes.append(f"resampled '{official_key}' {value.shape[0]} -> {target.shape[0]} rows")
        value = resample_relative_position_table(value, target.shape[0])
    elif key == "temporal_embeddings" and value.ndim == 4 and value.shape[2:] == target.shape[2:]:
        if value.shape[1] != target.shape[1]:
            notes.append(f"temporal_embeddings {value.shape[1]} -> {target.shape[1]} frames (extra rows zero)")
        value = resize_temporal_embeddings(value, target.shape[1])
    if value.shape != target.shape:
        raise CheckpointError(
            f"{source}: '{official_key}' has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}"
        )
    return value.to(target.dtype)


def read_official_checkpoint(path: str) -> dict[str, Any]:
    """The ``["model"]`` dict of a release file, unpickled weights-only (plus the OmegaConf config classes)."""
    container = torch_load(path, safe_globals=OMEGACONF_SAFE_GLOBALS)
    if not isinstance(container, Mapping) or "model" not in container:
        found = sorted(container)[:8] if isinstance(container, Mapping) else type(container).__name__
        raise CheckpointError(f"{path}: key 'model' not found (top level: {found})")
    model = container["model"]
    if not isinstance(model, Mapping):
        raise CheckpointError(f"{path}: 'model' is a {type(model).__name__}, not a state dict")
    return dict(model)


def load_official_checkpoint(model: "SingularityBackbone", path: str) -> LoadReport:
    """Load the release file into ``model`` (any device, meta included) and account for every key."""
    official = read_official_checkpoint(path)
    cfg = model.config
    target = model.state_dict()
    converted = convert_official_state_dict(
        official, target, fusion_layer=cfg.fusion_layer, text_layers=cfg.text_layers, source=str(path)
    )
    on_meta = any(p.is_meta for p in model.parameters())
    # strict=True: the conversion already proved the key sets equal; this re-checks it
    model.load_state_dict(converted.state_dict, strict=True, assign=on_meta)
    return LoadReport(
        path=str(path),
        loaded=sorted(converted.state_dict),
        missing=[],  # nothing is rebuilt: the model holds no persistent buffers
        unexpected=sorted(converted.ignored),
        notes=converted.notes,
    )
