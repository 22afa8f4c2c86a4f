"""Evaluate a registered task: ``python -m paxion.evaluate --cfg-path CFG [run.load_ckpt_path=CKPT] [a.b=c ...]``.

Scores the test splits, then the valid splits, and writes ``<output_dir>/result/{split}_output.json``.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

from paxion import dist
from paxion.checkpoint import CheckpointError
from paxion.config import ConfigError
from paxion.train import build_runner


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    runner = build_runner(argv, "Evaluate a Paxion model (LAVIS-style config).")
    try:
        return runner.evaluate()
    finally:
        runner.close()
        dist.destroy()


def cli() -> None:
    """Command-line entry: user errors (config, checkpoint) end with their message, not a traceback."""
    try:
        main(sys.argv[1:])
    except (ConfigError, CheckpointError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    cli()
