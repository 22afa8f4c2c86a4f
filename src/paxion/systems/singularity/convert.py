"""Singularity checkpoints -> the retrieval / QA models, with every key accounted for.

Three containers load unchanged (``torch.load`` weights-only, plus the OmegaConf classes the
official ``config`` needs):

* the official pre-trained releases (``singularity_17m.pth``, ``singularity_temporal_17m.pth``, 5M
  too): the pre-training model, text encoder nested as ``text_encoder.bert.*`` with the MLM head
  ``text_encoder.cls.predictions.*``;
* the official fine-tuned ``ckpt_best.pth`` (retrieval or QA): keys already in the model's layout;
* our own runner checkpoints (``config`` is the resolved YAML text).

Transforms, as the original's downstream loader: ``relative_position_index`` / ``position_ids``
buffers dropped (derived here); BEiT relative-position tables resampled when the image size
differs; ``temporal_embeddings`` cut or zero-extended to the model's ``num_frames``;
``text_encoder.bert.`` -> ``text_encoder.``; for the QA model, the answer decoder is initialised
from the encoder (layers >= ``fusion_layer`` -> decoder layers 0.., plus the embeddings and the
MLM head). Keys the model has no place for must be exactly the documented ones (MLM head without
MLM; projections, temperature, ITM head and BEiT pooler for QA); anything else is an error.

Temporal flags: a checkpoint of a temporal model (``temporal_vision_encoder.*`` keys, or temporal
flags in its stored config) is refused by a model built without them, instead of silently losing
the temporal parts as the original's ``strict=False`` load does.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.safe_load import load_safetensors, safetensors_metadata, torch_load
from paxion.backbones.singularity.convert import MLM_HEAD_KEYS, OMEGACONF_SAFE_GLOBALS, fit_tensor

logger = logging.getLogger(__name__)

PRETRAIN_TEXT = "text_encoder.bert."
PRETRAIN_MLM = "text_encoder.cls."
QA_DROPPED = (  # in a retrieval / pre-training file, not in the QA model (the original deletes them)
    "vision_proj.weight",
    "vision_proj.bias",
    "text_proj.weight",
    "text_proj.bias",
    "temp",
    "itm_head.weight",
    "itm_head.bias",
    "vision_encoder.pooler.layernorm.weight",
    "vision_encoder.pooler.layernorm.bias",
)
_LAYER = re.compile(r"^text_encoder\.encoder\.layer\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class TemporalFlags:
    add_temporal_embed: Optional[bool]  # None: not recorded in the file
    temporal_encoder: Optional[bool]


@dataclass
class Container:
    path: str
    state: dict[str, torch.Tensor]
    kind: str  # pretrain | finetuned | ours
    flags: TemporalFlags
    notes: list[str] = field(default_factory=list)


def _read_safetensors(path: str) -> Container:
    """Our export (``python -m paxion.assets system``): the model's tensors, the run's YAML in the metadata."""
    state = load_safetensors(path)
    config = safetensors_metadata(path).get("config", "")
    model_cfg = (OmegaConf.create(config).get("model") if config else None) or {}
    flags = TemporalFlags(model_cfg.get("add_temporal_embed"), model_cfg.get("temporal_encoder"))
    return Container(path=str(path), state=state, kind="ours", flags=flags)


def read_container(path: str) -> Container:
    """Open any of the three containers (or our safetensors export); classify it and read its temporal flags."""
    if str(path).endswith(".safetensors"):
        return _read_safetensors(path)
    raw = torch_load(path, safe_globals=OMEGACONF_SAFE_GLOBALS)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
        found = sorted(raw)[:8] if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(f"{path}: key 'model' (a state dict) not found (top level: {found})")
    state = dict(raw["model"])
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: '{key}' holds a {type(value).__name__}, not a tensor")
    config = raw.get("config")
    if isinstance(config, str):  # ours: the resolved YAML
        model_cfg = OmegaConf.create(config).get("model") or {}
        flags = TemporalFlags(model_cfg.get("add_temporal_embed"), model_cfg.get("temporal_encoder"))
        kind = "ours"
    else:
        flags = _official_flags(config)
        kind = "pretrain" if any(k.startswith(PRETRAIN_TEXT) for k in state) else "finetuned"
    return Container(path=str(path), state=state, kind=kind, flags=flags)


def _official_flags(config: Any) -> TemporalFlags:
    if not isinstance(config, DictConfig):
        return TemporalFlags(None, None)
    encoder = OmegaConf.select(config, "temporal_vision_encoder.enable", default=None)
    return TemporalFlags(OmegaConf.select(config, "add_temporal_embed", default=None), encoder)


def check_temporal_flags(container: Container, model: nn.Module) -> None:
    """Refuse a temporal checkpoint in a model built without the temporal parts (a clear error, not a silent drop)."""
    cfg = model.cfg
    has_encoder = any(k.startswith("temporal_vision_encoder.") for k in container.state)
    wanted: list[str] = []
    if (has_encoder or container.flags.temporal_encoder) and not cfg.temporal_encoder:
        wanted.append("model.temporal_encoder=true")
    if container.flags.add_temporal_embed and not cfg.add_temporal_embed:
        wanted.append("model.add_temporal_embed=true")
    if wanted:
        raise CheckpointError(
            f"{container.path}: this is a temporal Singularity checkpoint, but the model was built as a "
            f"1-frame model; loading it would drop its temporal parts. Set {' '.join(wanted)}"
        )


def map_keys(container: Container, model: nn.Module) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Official / our keys -> this model's keys; returns (mapped state, keys expected to be ignored)."""
    is_qa = hasattr(model, "text_decoder")
    fusion = model.widths.fusion_layer
    mapped: dict[str, torch.Tensor] = {}
    ignorable: set[str] = set()
    for key, value in container.state.items():
        if key.endswith(".relative_position_index") or key.endswith("embeddings.position_ids"):
            continue  # derived buffers
        if key.startswith(PRETRAIN_TEXT):
            key = "text_encoder." + key[len(PRETRAIN_TEXT):]
        if is_qa and container.kind == "pretrain":
            _map_decoder_from_encoder(key, value, fusion, mapped)
            ignorable.update(QA_DROPPED)
            continue
        if key.startswith(PRETRAIN_MLM):
            ignorable.update(MLM_HEAD_KEYS)
            key = "mlm_head." + key[len(PRETRAIN_MLM):]
        mapped[key] = value
    if not is_qa:
        ignorable |= {"mlm_head." + k[len(PRETRAIN_MLM):] for k in MLM_HEAD_KEYS}  # the head without MLM
    return mapped, ignorable


def _map_decoder_from_encoder(key: str, value: torch.Tensor, fusion: int, mapped: dict[str, torch.Tensor]) -> None:
    """Pre-trained key -> QA keys: text keys also seed the decoder (layers >= fusion, embeddings, LM head)."""
    if key.startswith(PRETRAIN_MLM):
        mapped["text_decoder.cls." + key[len(PRETRAIN_MLM):]] = value
        return
    mapped[key] = value
    layer = _LAYER.match(key)
    if layer is not None and int(layer.group(1)) >= fusion:
        mapped[f"text_decoder.bert.encoder.layer.{int(layer.group(1)) - fusion}.{layer.group(2)}"] = value
    elif key.startswith("text_encoder.embeddings."):
        mapped["text_decoder.bert." + key[len("text_encoder."):]] = value


def load_checkpoint(model: nn.Module, path: str) -> LoadReport:
    """Load any Singularity container into a :class:`SingularityRetrieval` / :class:`SingularityQA` model."""
    container = read_container(path)
    check_temporal_flags(container, model)
    mapped, ignorable = map_keys(container, model)
    target = model.state_dict()
    notes: list[str] = [f"{container.kind} checkpoint"]
    state: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in mapped.items():
        if key not in target:
            if key not in ignorable:
                raise CheckpointError(f"{path}: unexpected key '{key}' (no such parameter in the model)")
            ignored.append(key)
            continue
        state[key] = fit_tensor(key, value, target[key], str(path), key, notes)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # our checkpoints hold the trainable parameters only; the frozen ones keep the model's values
    missing = [k for k in target if k not in state and not (container.kind == "ours" and k in frozen)]
    fresh = [k for k in missing if k.startswith("temporal_vision_encoder.") and container.kind != "ours"]
    if len(fresh) != len(missing):
        first = next(k for k in missing if k not in fresh)
        count = len(missing) - len(fresh)
        raise CheckpointError(f"{path}: missing key '{first}' ({count} model tensors not in the file)")
    if fresh:  # a 1-frame checkpoint starting a temporal model: the temporal encoder keeps its random init
        notes.append(f"temporal encoder not in the file: {len(fresh)} tensors keep their initialisation")
        logger.warning("%s: 1-frame checkpoint, the temporal encoder starts from its random initialisation", path)
    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta and len(state) != len(target):
        raise CheckpointError(f"{path}: a model built on the meta device needs every tensor from the file; "
                              f"{len(target) - len(state)} are not in it")
    model.load_state_dict(state, strict=len(state) == len(target), assign=on_meta)
    if on_meta:  # assign=True replaced the tied tensors one by one: tie them again; rebuild derived buffers
        _retie(model)
        model.reset_pixel_buffers()
    return LoadReport(
        path=str(path), loaded=sorted(state), missing=sorted(fresh), unexpected=sorted(ignored), notes=notes
    )


def _retie(model: nn.Module) -> None:
    for head, embeddings in _tied_heads(model):
        head.predictions.decoder.weight = embeddings.weight
        head.predictions.bias = head.predictions.decoder.bias


def _tied_heads(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    pairs = []
    if getattr(model, "mlm_head", None) is not None:
        pairs.append((model.mlm_head, model.text_encoder.embeddings.word_embeddings))
    if hasattr(model, "text_decoder"):
        pairs.append((model.text_decoder.cls, model.text_decoder.bert.embeddings.word_embeddings))
    return pairs
