"""Train a registered task: ``python -m paxion.train --cfg-path CFG [--options a.b=c ...] [a.b=c ...]``.

Runs as one plain process, or under ``torchrun`` (DDP, one process per GPU).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Optional, Sequence

import paxion  # noqa: F401  (fills the registry)
from paxion import dist
from paxion.checkpoint import CheckpointError
from paxion.config import ConfigError, load_config, parse_cli
from paxion.logger import setup_logging
from paxion.registry import registry
from paxion.runner import Runner, log_trainable_parameters

logger = logging.getLogger(__name__)


def build_runner(argv: Optional[Sequence[str]], description: str) -> Runner:
    """Parse the command line, load the config, start distributed and logging, build task and runner."""
    cfg_path, overrides = parse_cli(argv, description)
    cfg = load_config(cfg_path, overrides)
    if cfg.task is None:
        raise SystemExit(f"{cfg_path}: no 'task:' section (need task.name, one of {registry.names('task')})")
    device = dist.init_distributed(cfg.run.device, cfg.run.dist_timeout_s)
    setup_logging(cfg.run.output_dir, dist.get_rank())
    logger.info(
        "config %s with overrides %s; device %s, world size %d", cfg_path, overrides, device, dist.get_world_size()
    )
    task = registry.get("task", cfg.task.name)(cfg)
    runner = Runner(cfg, task, device)
    log_trainable_parameters(runner.model)
    return runner


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    runner = build_runner(argv, "Train a Paxion model (LAVIS-style config).")
    try:
        return runner.evaluate() if runner.run.evaluate else runner.train()
    finally:
        runner.close()
        dist.destroy()


def run_cli(entry: Callable[[Sequence[str]], Any]) -> None:
    """Command-line entry: user errors (config, checkpoint) end with their message, not a traceback."""
    try:
        entry(sys.argv[1:])
    except (ConfigError, CheckpointError) as exc:
        raise SystemExit(f"error: {exc}") from None


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
