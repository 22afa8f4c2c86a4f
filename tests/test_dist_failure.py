"""A rank that dies must make the others exit instead of hanging in a collective."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def _worker(marker_dir: Path) -> None:
    from paxion.engine import dist

    dist.init_distributed(device="cpu", timeout_s=20)
    rank = dist.get_rank()
    x = torch.ones(4)
    for step in range(1000):
        if rank == 1 and step == 3:
            os._exit(17)  # a crash: no cleanup, no exception the peers could see
        dist.all_reduce_mean(x)  # rank 0 blocks here once rank 1 is gone
        (marker_dir / f"rank{rank}_step").write_text(str(step))
    (marker_dir / f"rank{rank}_finished").write_text("yes")


def test_dead_rank_makes_the_others_exit(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__, str(tmp_path)]
    start = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0, "the job must fail when a rank dies"
    assert not (tmp_path / "rank0_finished").exists(), "rank 0 cannot finish its collectives without rank 1"
    assert int((tmp_path / "rank0_step").read_text()) <= 3
    assert elapsed < 200, f"the surviving rank hung for {elapsed:.0f} s"


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
