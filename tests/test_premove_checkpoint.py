"""Run folders written before the package moved (systems/paxion/, engine/, cli/) still load and evaluate.

``tests/data/premove_toy_run/`` is the ``best.pth`` and ``config.yaml`` (local paths in its saved config replaced by
relative ones) of a toy run made by ``python -m paxion.train
--cfg-path configs/toy/train.yaml`` at the commit before the move. A checkpoint holds tensors and plain containers
only (no pickled class paths), so where a module lives cannot matter; this test keeps it so.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from paxion.cli.evaluate import main as evaluate
from paxion.engine.checkpoint import load_checkpoint

RUN = Path(__file__).resolve().parent / "data" / "premove_toy_run"


def test_a_best_pth_from_before_the_move_evaluates(tmp_path: Path) -> None:
    ckpt = load_checkpoint(RUN / "best.pth")
    assert ckpt["model"] and all(isinstance(v, torch.Tensor) for v in ckpt["model"].values())
    metrics = evaluate(["--cfg-path", str(RUN / "config.yaml"), f"run.load_ckpt_path={RUN / 'best.pth'}",
                        f"run.output_dir={tmp_path}", "run.tensorboard=false", "run.progress_bar=false"])
    mse = metrics["test"]["mse"] if "test" in metrics else next(iter(metrics.values()))["mse"]
    # the run's own final evaluation of these weights (its log): test mse=0.3578
    assert math.isclose(mse, 0.3578, abs_tol=5e-4)
