"""Checkpoints: atomic writes, safe loading, RNG capture and checked weight loading.

A checkpoint is one ``torch.save`` file holding plain containers and tensors only, so it loads with
``torch.load(weights_only=True)`` (no arbitrary unpickling)::

    model          name -> tensor; trainable parameters, or every entry when run.save_full_model
    full_model     bool
    optimizer, scaler, scheduler   their state_dicts
    epoch          epoch to continue in
    iter_in_epoch  iterations of that epoch already done (0 at an epoch boundary)
    global_step    optimizer updates so far
    best_metric, best_epoch        selection state
    rng            one dict per rank: python, numpy, torch, cuda
    world_size     ranks that wrote the RNG states
    config         the resolved config as YAML text
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from paxion.backbones.base import CheckpointError  # the one checkpoint error, re-exported from here
from paxion.backbones.safe_load import torch_load

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TMP_PREFIX, TMP_INFIX = ".", ".tmp-"  # temporary file of an atomic save: ".latest.pth.tmp-<pid>"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the previous file or the new one, never a torn file (a crash
    may leave the temporary file, which :func:`remove_stale_temp_files` clears at the next start).
    A failed write (disk full, quota, permissions) raises :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}{TMP_INFIX}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:  # OSError, or torch's RuntimeError "file write failed" on a full disk
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        kept = "the previous file is unchanged" if path.is_file() else "nothing was written"
        raise CheckpointError(f"{path}: cannot write checkpoint ({type(exc).__name__}: {exc}); {kept}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    # the rename itself is durable only once the directory entry is flushed
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    ckpt = torch_load(path)  # says what a refused file is; refuses NaN/inf tensors
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a paxion checkpoint (no 'model' entry)")
    return ckpt


def model_state(model: nn.Module, full: bool) -> dict[str, torch.Tensor]:
    """Trainable parameters (``requires_grad``), or the whole ``state_dict`` when ``full``; CPU copies."""
    if full:
        items = model.state_dict().items()
    else:
        items = ((n, t) for n, t in model.state_dict(keep_vars=True).items() if n in trainable_keys(model))
    return {name: t.detach().to("cpu", copy=True) for name, t in items}


def trainable_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the trainable parameters.

    Taken from the state dict rather than ``named_parameters`` because a module may save a parameter
    under another name (InternVideo stores ``logit_scale_param`` under the official ``logit_scale``).
    """
    return {n for n, t in model.state_dict(keep_vars=True).items() if isinstance(t, nn.Parameter) and t.requires_grad}


def load_model_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``: unknown keys and missing *trainable* keys are errors.

    Missing frozen entries are expected (they come from the backbone's own weights) and listed at
    debug level; a shape mismatch is an error naming the key.
    """
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise CheckpointError(f"{source}: keys not in the model: {unknown[:20]}{' ...' if len(unknown) > 20 else ''}")
    missing = sorted(trainable_keys(model) - set(state))
    if missing:
        raise CheckpointError(f"{source}: trainable parameters missing from the checkpoint: {missing[:20]}")
    bad_shapes = [
        f"{k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if bad_shapes:
        raise CheckpointError(f"{source}: shape mismatch: {bad_shapes[:20]}")
    model.load_state_dict(state, strict=False)
    frozen_missing = sorted(set(own) - set(state))
    if frozen_missing:
        logger.debug("%s: %d frozen entries kept from the model: %s", source, len(frozen_missing), frozen_missing)


def load_for_resume(path: str | Path, model: Optional[nn.Module] = None, how: str = "") -> dict[str, Any]:
    """:func:`load_checkpoint`; when it fails, the error also names the checkpoints next to it that would
    resume this run: they load safely and hold exactly ``model``'s saved entries (names and shapes).

    ``how``: the config keys that chose ``path`` (e.g. ``run.resume=auto``), named in the error.
    """
    path = Path(path)
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        others = resumable_checkpoints(path.parent, path, model) if path.parent.is_dir() else []
        hint = (
            f"; checkpoints of this run there: {', '.join(p.name for p in others)} "
            f"(resume from one with run.resume_ckpt_path={others[0]})"
            if others
            else "; no other checkpoint of this run there loads"
        )
        raise CheckpointError(f"cannot resume{f' ({how})' if how else ''}: {exc}{hint}") from exc


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain containers (``weights_only``-loadable)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(obj: Any) -> Any:
    """``random.setstate`` insists on tuples; be lenient if a container came back as a list."""
    if isinstance(obj, (list, tuple)):
        return tuple(_as_tuples(x) for x in obj)
    return obj


def find_latest(output_dir: str | Path) -> Optional[Path]:
    path = Path(output_dir) / "latest.pth"
    return path if path.is_file() else None


def remove_stale_temp_files(output_dir: str | Path) -> list[Path]:
    """Delete the temporary files that a crash during :func:`atomic_save` left in ``output_dir``."""
    stale = sorted(Path(output_dir).glob(f"{TMP_PREFIX}*.pth{TMP_INFIX}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def resumable_checkpoints(output_dir: str | Path, exclude: Path, model: Optional[nn.Module]) -> list[Path]:
    """Other ``*.pth`` in ``output_dir`` that load safely and match ``model``'s trainable (or, for a full
    save, all) entries by name and shape, newest first. Files that fail either check are left out."""
    found = [p for p in Path(output_dir).glob("*.pth") if p.resolve() != Path(exclude).resolve()]
    usable = []
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError:
            continue
        if model is not None and "config" not in ckpt:
            continue  # not written by the runner
        if model is not None and not _same_entries(ckpt["model"], model, bool(ckpt.get("full_model"))):
            continue
        usable.append(path)
    return usable


def _same_entries(state: dict[str, Any], model: nn.Module, full: bool) -> bool:
    own = model.state_dict()
    keys = set(own) if full else trainable_keys(model)
    return set(state) == keys and all(
        torch.is_tensor(state[k]) and tuple(state[k].shape) == tuple(own[k].shape) for k in keys
    )
