"""Load OpenAI CLIP files and Open-VCLIP release files unchanged, every key accounted for.

Accepted files (detected from their content, not their names):

* OpenAI CLIP JIT archive (``ViT-B-16.pt``): tensors read without running TorchScript
  (:mod:`.jit_archive`); the three metadata entries ``input_resolution``, ``context_length`` and
  ``vocab_size`` are dropped as the original does, and the text blocks' ``attn_mask`` attributes
  (a causal mask the model builds itself) are checked to be causal and dropped;
* a plain CLIP state dict (``torch.save(model.state_dict())``), same keys;
* the Open-VCLIP release ``swa_2_22.pth`` = ``{"model_state": {"model.<CLIP key>": ...}}`` and SlowFast
  training checkpoints ``checkpoint_epoch_XXXXX.pyth`` = ``{"epoch", "model_state", "optimizer_state",
  "cfg", ...}``; only ``model_state`` is read, a ``module.`` (DDP) prefix is stripped.

Every tensor ends up fp32 (the original calls ``model.float()``). On the way, a CLIP file (not a
release/SlowFast file) goes through the original's fp16 step: it builds CLIP, casts the weights of
its ``Conv2d``/``Linear`` modules, of ``nn.MultiheadAttention``'s packed projection and the
``proj``/``text_projection`` matrices to fp16 (``clip/model.py: convert_weights``), loads the file
into that model and only then calls ``model.float()``. So those tensors of an fp32 file are rounded
to fp16 values (:func:`fp16_cast_keys` lists which; 171 of the 302 tensors of ViT-B/16 with
``expand_temporal_view``). OpenAI's files hold fp16 values there already, so for them the round
trip changes nothing; ``fp16_cast=False`` keeps an fp32 file's values as they are.
"""

from __future__ import annotations

import logging
import pickle
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paxion.backbones.base import CheckpointError, LoadReport
from paxion.backbones.openvclip.jit_archive import is_torchscript_archive, read_torchscript_tensors
from paxion.backbones.openvclip.temporal import is_added_key

logger = logging.getLogger(__name__)

CLIP_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
RELEASE_PREFIX = "model."  # TemporalClipVideo keeps CLIP under ``self.model``


class _Opaque(dict):
    """Stand-in for classes a checkpoint pickles besides tensors (yacs ``CfgNode`` in SlowFast files)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _LenientUnpickler(pickle.Unpickler):
    """Real classes for torch and containers; an inert stand-in for anything else (never imported or run)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return super().find_class(module, name)
        if module == "torch" or module.startswith(("torch.", "torch._utils")):
            return super().find_class(module, name)
        if module == "builtins" and name in ("set", "frozenset", "slice", "complex"):
            return super().find_class(module, name)
        return _Opaque


_LENIENT_PICKLE = types.SimpleNamespace(Unpickler=_LenientUnpickler, load=pickle.load, __name__="lenient_pickle")


def read_pickled_checkpoint(path: str | Path) -> Any:
    """``torch.load`` whose unpickler builds no foreign objects (SlowFast files pickle their yacs config)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_LENIENT_PICKLE)
    except Exception as exc:  # missing, truncated or foreign files raise several types
        raise CheckpointError(f"cannot read checkpoint '{path}': {type(exc).__name__}: {exc}") from exc


def _drop_clip_extras(tensors: dict[str, torch.Tensor], path: str, report: LoadReport) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key in CLIP_METADATA_KEYS:
            report.unexpected.append(key)
        elif key.endswith(".attn_mask"):
            length = value.shape[-1]
            causal = torch.full((length, length), float("-inf")).triu(1)
            if value.shape != (length, length) or not torch.equal(value.float(), causal):
                raise CheckpointError(f"'{path}': '{key}' is not the causal mask the text model builds")
            report.unexpected.append(key)
        else:
            out[key] = value
    if report.unexpected:
        report.notes.append(f"dropped {len(report.unexpected)} metadata entries / rebuilt causal masks")
    return out


def is_release_file(report: LoadReport) -> bool:
    """Whether :func:`read_clip_state` read a release/SlowFast ``model_state`` (said by its note)."""
    return any(note.startswith("read 'model_state'") for note in report.notes)


def read_clip_state(path: str | Path, report: LoadReport | None = None) -> dict[str, torch.Tensor]:
    """CLIP's tensors in CLIP key space (``visual.conv1.weight``, ...), fp32 as stored, from any accepted file."""
    path = str(path)
    report = report if report is not None else LoadReport(path=path)
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint '{path}' not found")
    if is_torchscript_archive(path):
        tensors = read_torchscript_tensors(path)
        report.notes.append("read TorchScript archive tensors (code not executed)")
    else:
        raw = read_pickled_checkpoint(path)
        if not isinstance(raw, dict):
            raise CheckpointError(f"'{path}' holds a {type(raw).__name__}, not a state dict")
        if "model_state" in raw:
            tensors = _strip_release_prefix(raw["model_state"], path, report)
        elif "state_dict" in raw and isinstance(raw["state_dict"], dict):
            tensors = dict(raw["state_dict"])
        else:
            tensors = dict(raw)
    tensors = _drop_clip_extras(tensors, path, report)
    cast = 0
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"'{path}': key '{key}' holds {type(value).__name__}, not a tensor")
        if value.is_floating_point() and value.dtype != torch.float32:
            tensors[key], cast = value.float(), cast + 1
    if cast:
        report.notes.append(f"cast {cast} tensors to torch.float32")
    return tensors


# CLIP keys whose module convert_weights casts to fp16: Linear (c_fc, c_proj, nn.MultiheadAttention's
# out_proj is a Linear subclass) and Conv2d weights/biases, and the two projection matrices
_FP16_SUFFIXES = (".mlp.c_fc.weight", ".mlp.c_fc.bias", ".mlp.c_proj.weight", ".mlp.c_proj.bias",
                  ".attn.out_proj.weight", ".attn.out_proj.bias")
_FP16_KEYS = ("visual.conv1.weight", "visual.proj", "text_projection")
_IN_PROJ = (".attn.in_proj_weight", ".attn.in_proj_bias")
# vision blocks built on torch's nn.MultiheadAttention, whose packed in_proj convert_weights also casts;
# the expand_temporal_view* and channel_shift blocks use the repository's own MultiheadAttention copy,
# which it does not recognise, so their vision in_proj stays fp32
_VISION_TORCH_MHA = ("none", "cross_frame_attend", "stadapt_zeroinit")


def fp16_cast_keys(keys: list[str], temporal_modeling: str) -> list[str]:
    """The CLIP keys (CLIP key space) the original rounds through fp16 when it loads a CLIP file."""
    chosen = []
    for key in keys:
        if key in _FP16_KEYS or key.endswith(_FP16_SUFFIXES):
            chosen.append(key)
        elif key.endswith(_IN_PROJ) and (not key.startswith("visual.") or temporal_modeling in _VISION_TORCH_MHA):
            chosen.append(key)
    return chosen


def round_through_fp16(tensors: dict[str, torch.Tensor], keys: list[str], report: LoadReport) -> None:
    """In place: ``tensors[key]`` <- its nearest fp16 value, as fp32 (the original's load then ``float()``)."""
    for key in keys:
        tensors[key] = tensors[key].half().float()
    report.notes.append(f"rounded {len(keys)} tensors through fp16 as the original's convert_weights does")


def _strip_release_prefix(state: Any, path: str, report: LoadReport) -> dict[str, torch.Tensor]:
    """``model_state`` of a release/SlowFast file -> CLIP key space (``[module.]model.`` prefix removed)."""
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"'{path}': 'model_state' is not a non-empty state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("module.") :] if key.startswith("module.") else key
        if not name.startswith(RELEASE_PREFIX):
            raise CheckpointError(
                f"'{path}': model_state key '{key}' lacks the '{RELEASE_PREFIX}' prefix of Open-VCLIP checkpoints"
            )
        out[name[len(RELEASE_PREFIX) :]] = value
    report.notes.append(f"read 'model_state' ({len(out)} keys), stripped the '{RELEASE_PREFIX}' prefix")
    return out


def convert_clip_state(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Size], path: str, report: LoadReport
) -> dict[str, torch.Tensor]:
    """CLIP key space -> backbone keys (``model.<key>``), checking names and shapes in both directions."""
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        name = RELEASE_PREFIX + key
        if name not in expected:
            raise CheckpointError(f"'{path}': unexpected key '{key}' (not a parameter of this CLIP / temporal CLIP)")
        if value.shape != expected[name]:
            raise CheckpointError(
                f"'{path}': key '{key}' has shape {tuple(value.shape)}, the model expects {tuple(expected[name])}"
            )
        state[name] = value
    missing = [name[len(RELEASE_PREFIX) :] for name in expected if name not in state]
    added = [key for key in missing if is_added_key(key)]  # a variant's extra modules: not in a CLIP file
    if added:
        report.missing.extend(added)
        report.notes.append(f"{len(added)} tensors of the variant's added modules keep their initialisation")
        missing = [key for key in missing if not is_added_key(key)]
    if missing:
        first = missing[0]
        raise CheckpointError(f"'{path}': {len(missing)} parameters missing, first '{first}' (wrong or truncated?)")
    report.loaded = list(state)
    return state


def load_openvclip_checkpoint(
    backbone: nn.Module, path: str | Path, fp16_cast: bool = True, temporal_modeling: str = "expand_temporal_view"
) -> LoadReport:
    """Load a CLIP or Open-VCLIP file into an :class:`OpenVCLIPBackbone` (``assign`` on the meta device).

    ``fp16_cast``: round a CLIP file's tensors that the original casts (:func:`fp16_cast_keys` for
    ``temporal_modeling``) through fp16; release/SlowFast files are loaded as stored, as the original does.
    """
    report = LoadReport(path=str(path))
    expected = {name: tensor.shape for name, tensor in backbone.state_dict().items()}
    tensors = read_clip_state(path, report)
    if fp16_cast and not is_release_file(report):
        round_through_fp16(tensors, fp16_cast_keys(list(tensors), temporal_modeling), report)
    state = convert_clip_state(tensors, expected, str(path), report)
    on_meta = any(p.is_meta for p in backbone.parameters())
    backbone.load_state_dict(state, strict=not report.missing, assign=on_meta)  # missing: checked above
    logger.info("loaded %s: %d tensors; %s", path, len(report.loaded), "; ".join(report.notes) or "no transforms")
    return report
