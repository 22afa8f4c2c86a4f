"""Average epoch checkpoints into ``swa_{start}_{end}.pth`` (Open-VCLIP's weight averaging script).

    python -m paxion.tools.swa CHECKPOINT_DIR --start 2 --end 22 [--reference ViT-B-16.pt] [--output DIR]

Reads every ``*_<epoch>.pyth`` / ``*_<epoch>.pth`` file in the folder (SlowFast files keep weights
under ``model_state``; this framework's runner checkpoints under ``model``), keeps those with
start <= epoch <= end, adds the reference CLIP as epoch 0 when given, and writes the uniform mean
as ``{"model_state": ...}`` (keys of the checkpoints: ``model.<CLIP key>`` for Open-VCLIP files).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from paxion.backbones.base import CheckpointError
from paxion.backbones.openvclip.convert import RELEASE_PREFIX, read_clip_state, read_pickled_checkpoint
from paxion.techniques.base import State
from paxion.techniques.swa import average_states, epoch_from_name, in_window

logger = logging.getLogger("paxion.tools.swa")


def checkpoint_weights(path: Path) -> State:
    """The weights of a SlowFast (``model_state``) or runner (``model``) checkpoint."""
    raw = read_pickled_checkpoint(path)
    for key in ("model_state", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            return raw[key]
    raise CheckpointError(f"'{path}' has neither 'model_state' nor 'model' weights")


def select_checkpoints(folder: Path, start: int, end: int) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".pyth", ".pth") or path.name.startswith("swa_"):
            continue
        try:
            epoch = epoch_from_name(path)
        except ValueError:
            logger.info("skipping %s: no epoch suffix", path.name)
            continue
        if in_window(epoch, start, end):
            found.append((epoch, path))
        else:
            logger.info("skipping %s: epoch %d outside [%d, %d]", path.name, epoch, start, end)
    return sorted(found)


def average_folder(folder: Path, start: int, end: int, reference: Optional[Path] = None) -> tuple[State, list[int]]:
    """(averaged weights, epochs used); the reference CLIP counts as epoch 0."""
    chosen = select_checkpoints(folder, start, end)
    states = [checkpoint_weights(path) for _, path in chosen]
    epochs = [epoch for epoch, _ in chosen]
    if reference is not None and in_window(0, start, end):
        clip = read_clip_state(reference)
        states.insert(0, {RELEASE_PREFIX + key: value for key, value in clip.items()})
        epochs.insert(0, 0)
    if not states:
        raise FileNotFoundError(f"{folder}: no checkpoint with an epoch in [{start}, {end}]")
    return average_states(states), epochs


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Average epoch checkpoints (SWA) into swa_{start}_{end}.pth")
    parser.add_argument("checkpoints", type=Path, help="folder of *_<epoch>.pyth / *_<epoch>.pth files")
    parser.add_argument("--start", type=int, default=2)
    parser.add_argument("--end", type=int, default=22)
    parser.add_argument("--reference", type=Path, default=None, help="original CLIP file: epoch 0")
    parser.add_argument("--output", type=Path, default=None, help="folder for the result (default: the input)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        state, epochs = average_folder(args.checkpoints, args.start, args.end, args.reference)
    except (CheckpointError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out_dir = args.output or args.checkpoints
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"swa_{args.start}_{args.end}.pth"
    torch.save({"model_state": state}, path)
    print(f"averaged epochs {epochs} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
