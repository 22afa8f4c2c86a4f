"""kill -9 mid-epoch, resume, and end bit-identical to a run that was never interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from paxion.engine.checkpoint import load_checkpoint
from paxion.cli.train import main

from conftest import toy_argv

STALL_AT = 10  # iteration 4 of epoch 1 (6 per epoch); latest.pth was written after iteration 9


def _kill_mid_epoch(out: Path) -> None:
    """Run the toy training in a subprocess and SIGKILL it while it sits in iteration STALL_AT."""
    cmd = [sys.executable, "-m", "paxion.cli.train", *toy_argv(out, f"task.stall_at_step={STALL_AT}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("stalled.*")):
            if proc.poll() is not None:
                raise AssertionError(
                    f"training exited (rc {proc.returncode}) before the kill point:\n{proc.stderr.read()}"
                )
            assert time.monotonic() < deadline, "training never reached the kill point"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def _assert_same_run(ours: Path, reference: Path) -> None:
    a, b = load_checkpoint(ours / "latest.pth"), load_checkpoint(reference / "latest.pth")
    assert a["global_step"] == b["global_step"] == 12
    assert sorted(a["model"]) == sorted(b["model"])
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), f"parameter {key} differs after resume"
    for i, state in b["optimizer"]["state"].items():
        assert torch.equal(a["optimizer"]["state"][i]["exp_avg_sq"], state["exp_avg_sq"])
    for split in ("val", "test"):
        ours_result = json.loads((ours / "result" / f"{split}_output.json").read_text())
        assert ours_result == json.loads((reference / "result" / f"{split}_output.json").read_text())
    # the logged training records too: the interrupted epoch's running mean_loss goes on from the saved sums
    ours_train, reference_train = _train_records(ours), _train_records(reference)
    assert [(r["epoch"], r["iter"]) for r in ours_train][-2:] == [(1, 4), (1, 6)]  # 4: the first after the resume
    assert ours_train == reference_train[-len(ours_train):]


def _train_records(out: Path) -> list[dict]:
    """The ``train`` records of metrics.jsonl without their timing."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "it_per_s"} for r in records if r.get("kind") == "train"]


def test_sigkill_then_resume_is_bit_identical(tmp_path: Path, toy_baseline: Path) -> None:
    out = tmp_path / "killed"
    _kill_mid_epoch(out)
    mid = load_checkpoint(out / "latest.pth")
    assert (mid["epoch"], mid["iter_in_epoch"], mid["global_step"]) == (1, 3, 9)  # mid-epoch
    shutil.copy(out / "latest.pth", tmp_path / "mid.pth")

    main(toy_argv(out, resume="auto"))
    _assert_same_run(out, toy_baseline)
    assert "resumed from" in (out / "log.txt").read_text()

    # the same checkpoint named explicitly, resumed into a fresh folder
    other = tmp_path / "explicit"
    main(toy_argv(other, resume_ckpt_path=tmp_path / "mid.pth"))
    _assert_same_run(other, toy_baseline)


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path: Path, toy_baseline: Path) -> None:
    main(toy_argv(tmp_path, resume="auto"))
    _assert_same_run(tmp_path, toy_baseline)
