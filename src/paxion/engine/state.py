"""A run's resumable state: counters, seeds, and the checkpoints that save and restore them.

The runner calls these; they never call back into it. See ``docs/DESIGN.md`` (Runner).
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from paxion.engine import checkpoint as ckpt_lib
from paxion.engine import dist
from paxion.config import RunConfig
from paxion.engine.logger import MetricLogger

logger = logging.getLogger(__name__)


@dataclass
class TrainState:
    epoch: int = 0  # epoch to continue in
    iter_in_epoch: int = 0  # iterations of that epoch already done
    global_step: int = 0  # optimizer updates so far
    best_metric: Optional[float] = None
    best_epoch: int = -1
    nonfinite_steps: int = 0  # updates skipped because of a non-finite loss (run.max_nonfinite_steps)
    # this rank's (sum, count) of the finite losses of the epoch so far: the logged mean_loss of a resumed
    # epoch goes on from them; in a checkpoint, one pair per rank
    epoch_loss: tuple[float, float] = (0.0, 0.0)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    cfg: DictConfig,
    run: RunConfig,
    state: TrainState,
    parts: dict[str, Any],
    metrics: MetricLogger,
) -> None:
    """Write weights, ``parts`` (optimizer, scheduler, scaler), counters and every rank's RNG to ``path``.

    Collective: every rank must call it; rank 0 writes (atomically).
    """
    rng = dist.all_gather_object(ckpt_lib.rng_state())  # every rank's streams: resume is exact per rank
    epoch_loss = dist.all_gather_object(tuple(state.epoch_loss))
    if not dist.is_main():
        return
    payload = {
        "format_version": ckpt_lib.FORMAT_VERSION,
        "model": ckpt_lib.model_state(model, run.save_full_model),
        "full_model": run.save_full_model,
        **{key: part.state_dict() for key, part in parts.items()},
        **asdict(state),
        "epoch_loss": epoch_loss,
        "rng": rng,
        "world_size": dist.get_world_size(),
        "config": OmegaConf.to_yaml(cfg, resolve=True),
        "metrics_offset": metrics.offset(),  # metrics.jsonl bytes written so far: cut back on resume
    }
    ckpt_lib.atomic_save(payload, path)
    logger.info(
        "saved %s (epoch %d, iter %d, step %d)",
        path.name,
        state.epoch,
        state.iter_in_epoch,
        state.global_step,
    )


def resume_path(run: RunConfig, output_dir: Path) -> Optional[str | Path]:
    """``run.resume_ckpt_path``, else (``run.resume=auto``) the output dir's ``latest.pth``; None: start fresh."""
    path = run.resume_ckpt_path
    if path is None and run.resume == "auto":
        path = ckpt_lib.find_latest(output_dir)
        if path is None:
            logger.info("run.resume=auto: no latest.pth in %s, starting fresh", output_dir)
    return path


def resume_from(
    path: str | Path,
    model: nn.Module,
    parts: dict[str, Any],
    run: RunConfig,
    output_dir: Path,
    metrics: MetricLogger,
) -> tuple[TrainState, Optional[dict]]:
    """Load weights, ``parts`` and counters from ``path``; cut metrics.jsonl back to the save.

    -> (counters, this rank's saved RNG state to set once everything is built, or None when the
    world size changed: the streams are then reseeded here).
    """
    how = "run.resume_ckpt_path" if run.resume_ckpt_path else "run.resume=auto: latest.pth of run.output_dir"
    ckpt = ckpt_lib.load_for_resume(path, model, how)
    ckpt_lib.load_model_weights(model, ckpt["model"], source=str(path))
    for key, part in parts.items():
        part.load_state_dict(ckpt[key])
    state = TrainState(**{k: ckpt[k] for k in asdict(TrainState()) if k in ckpt and k != "epoch_loss"})
    state.epoch_loss = _rank_epoch_loss(ckpt.get("epoch_loss"), ckpt["world_size"])
    if Path(path).resolve().parent == output_dir.resolve() and "metrics_offset" in ckpt:
        dropped = metrics.truncate(ckpt["metrics_offset"])  # records of the lost steps
        if dropped:
            logger.info("metrics.jsonl: removed %d records written after %s was saved", dropped, path)
    logger.info(
        "resumed from %s at epoch %d, iter %d, step %d",
        path,
        state.epoch,
        state.iter_in_epoch,
        state.global_step,
    )
    if ckpt["world_size"] != dist.get_world_size():
        logger.warning(
            "checkpoint written by %d ranks, now %d: RNG streams restart from seeds",
            ckpt["world_size"],
            dist.get_world_size(),
        )
        set_seed(run.seed + dist.get_rank() + state.global_step)
        return state, None
    return state, ckpt["rng"][dist.get_rank()]


def _rank_epoch_loss(saved: Optional[list], saved_world_size: int) -> tuple[float, float]:
    """This rank's running (sum, count) of the interrupted epoch. Another world size: every rank takes the
    totals, so the logged mean (averaged over ranks) is still the mean of the losses so far. A checkpoint
    written before the sums were saved: (0, 0), and the epoch's mean restarts."""
    if not saved:
        return (0.0, 0.0)
    if saved_world_size == dist.get_world_size():
        return tuple(saved[dist.get_rank()])
    return (sum(s for s, _ in saved), sum(c for _, c in saved))
