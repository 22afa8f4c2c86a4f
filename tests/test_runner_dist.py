"""The runner under ``torchrun --nproc_per_node=2`` (gloo, CPU): parameters stay in sync and the
evaluation scores each sample exactly once (7 validation samples: not divisible by 2).

The test launches this file as the worker script; run by hand with
``python -m torch.distributed.run --standalone --nproc_per_node=2 tests/test_runner_dist.py OUT``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paxion.engine.checkpoint import load_checkpoint

from conftest import toy_argv

WORKER_OVERRIDES = ("datasets.toy_regression.fake_skip_every=3",)


def _worker(out: Path) -> None:
    from paxion.engine import dist
    from paxion.cli.train import build_runner

    runner = build_runner(toy_argv(out, *WORKER_OVERRIDES), "distributed runner test")
    results = runner.train()
    flat = torch.cat([p.detach().flatten() for p in runner.model.parameters()])  # frozen ones included
    everyone = dist.all_gather_object(flat)
    report = {
        "world_size": dist.get_world_size(),
        "params_equal": all(torch.equal(everyone[0], other) for other in everyone),
        "results": results,
    }
    (out / f"rank{dist.get_rank()}.json").write_text(json.dumps(report))
    runner.close()
    dist.destroy()


def test_two_process_gloo_run(tmp_path: Path) -> None:
    from paxion.cli.evaluate import main as evaluate_main

    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__, str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world_size"] == 2 and r["params_equal"] for r in reports)
    assert reports[0]["results"] == reports[1]["results"]  # every rank ends with the same metrics
    val, test = reports[0]["results"]["val"], reports[0]["results"]["test"]
    assert (val["num_samples"], test["num_samples"]) == (7, 5)  # gathered, no padding duplicates
    assert val["skipped_videos"] == 3  # idx 0 and 6 on rank 0, 3 on rank 1
    assert load_checkpoint(out / "latest.pth")["global_step"] == 6  # 48 samples / 2 ranks / batch 8 = 3 per epoch

    single = evaluate_main(toy_argv(tmp_path / "single", load_ckpt_path=out / "best.pth"))
    assert single["val"]["mse"] == pytest.approx(val["mse"], rel=1e-5)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
