"""Evaluate a registered task: ``python -m paxion.evaluate --cfg-path CFG [run.load_ckpt_path=CKPT] [a.b=c ...]``.

Scores the test splits, then the valid splits, and writes ``<output_dir>/result/{split}_output.json``.
Exit status as for ``paxion.cli.train``: 1 with a one-line message for a user error.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from paxion.engine import dist
from paxion.cli.train import build_runner, config_keys_in_errors, report_results, run_cli


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    runner = build_runner(argv, "Evaluate a Paxion model (LAVIS-style config).", evaluate_only=True)
    try:
        with config_keys_in_errors(runner.cfg, runner.cfg_path):
            results = runner.evaluate()
        report_results(results, runner.output_dir)
        return results
    finally:
        runner.close()
        dist.destroy()


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
