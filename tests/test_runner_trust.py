"""Results a researcher can trust: diverged losses stop, NaN is never "best", stop signals save and resume,
stale temporary files go, a Paxion file's differing backbone weights are reported, eval-only runs summarise."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paxion.engine.checkpoint import atomic_save, load_checkpoint
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.engine.guards import NonFiniteLossError, NonFiniteScoresError, TrainingInterrupted, may_become_best
from paxion.tasks.toy import ToyTask
from paxion.cli.train import build_runner, main
from paxion_fakes import FAKE
from test_paxion_checkpoint import OFFICIAL_KP, SMALL, _official_state

from conftest import toy_argv


def _records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _nan_at_calls(monkeypatch: pytest.MonkeyPatch, calls: set[int]) -> None:
    """ToyTask.train_step returns a NaN loss (and NaN gradients) at these 1-based call numbers."""
    real = ToyTask.train_step
    counter = {"n": 0}

    def train_step(self, model, batch):
        counter["n"] += 1
        loss, logs = real(self, model, batch)
        if counter["n"] in calls:
            loss = loss * float("nan")
            logs = {**logs, "loss": loss.detach(), "extra_term": torch.tensor(0.25)}
        return loss, logs

    monkeypatch.setattr(ToyTask, "train_step", train_step)


# ---------------------------------------------------------------------------- non-finite losses


def test_diverged_run_stops_naming_epoch_step_and_loss_terms(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError) as error:
        main(toy_argv(tmp_path, "run.init_lr=1e12"))
    message = str(error.value)
    assert "non-finite training loss at epoch 0, iteration" in message and "global step" in message
    assert "loss=inf" in message or "loss=nan" in message
    assert "run.max_nonfinite_steps=0" in message
    assert not (tmp_path / "best.pth").exists()


def test_bad_steps_are_skipped_up_to_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_at_calls(monkeypatch, {2, 9})
    main(toy_argv(tmp_path, max_nonfinite_steps=2))
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert ckpt["global_step"] == 12 - 2 and ckpt["nonfinite_steps"] == 2  # two updates skipped
    assert all(float(s["step"]) == 10 for s in ckpt["optimizer"]["state"].values())
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())  # NaN gradients never applied
    log = (tmp_path / "log.txt").read_text()
    assert "iteration 2 of 6, global step 1: loss=nan extra_term=0.25: update skipped (1 of at most 2)" in log
    assert "update skipped (2 of at most 2)" in log
    assert all(torch.isfinite(torch.tensor(r["mean_loss"])) for r in _records(tmp_path, "train"))


def test_one_bad_step_too_many_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_at_calls(monkeypatch, {2, 9})
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, iteration 3 of 6, global step 7: loss=nan extra_term"):
        main(toy_argv(tmp_path, max_nonfinite_steps=1))


def test_nan_with_accumulation_skips_the_whole_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_at_calls(monkeypatch, {3})
    main(toy_argv(tmp_path, max_epoch=1, accum_grad_iters=2, max_nonfinite_steps=1))
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert ckpt["global_step"] == 2  # updates after iterations 2, 4, 6; the one holding iteration 3 skipped
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


@pytest.mark.parametrize("clip", [None, 1.0])
def test_skipped_step_keeps_the_fp16_grad_scaler_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: float | None
) -> None:
    _nan_at_calls(monkeypatch, {2})
    main(toy_argv(tmp_path, precision="fp16", max_epoch=1, max_nonfinite_steps=1, grad_clip_norm=clip))
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert ckpt["global_step"] == 5 and ckpt["nonfinite_steps"] == 1
    assert ckpt["scaler"]["scale"] < 65536.0  # it backed off on the NaN step (initial scale 2**16)
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


# ---------------------------------------------------------------------------- selection


def test_nan_metric_never_becomes_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ToyTask.compute_metrics
    calls = {"n": 0}

    def compute_metrics(self, outputs, split, output_dir):
        calls["n"] += 1
        metrics = real(self, outputs, split, output_dir)
        return {**metrics, "val_loss": float("nan")} if calls["n"] == 1 else metrics  # epoch 0 diverged

    monkeypatch.setattr(ToyTask, "compute_metrics", compute_metrics)
    main(toy_argv(tmp_path))
    best = load_checkpoint(tmp_path / "best.pth")
    assert best["best_epoch"] == 1 and best["best_metric"] == best["best_metric"]  # finite, not NaN
    assert "val_loss=nan is not finite: not a candidate for best.pth" in (tmp_path / "log.txt").read_text()


def test_all_nan_metrics_leave_no_best(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ToyTask.compute_metrics
    monkeypatch.setattr(
        ToyTask, "compute_metrics", lambda self, o, s, d: {**real(self, o, s, d), "val_loss": float("nan")}
    )
    with pytest.raises(NonFiniteScoresError, match="no epoch had a finite val_loss"):
        main(toy_argv(tmp_path))
    assert not (tmp_path / "best.pth").exists()


def test_non_finite_weights_are_not_best() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    assert may_become_best(0.5, model, "agg_metrics", 0)
    assert not may_become_best(float("nan"), model, "agg_metrics", 0)
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")  # frozen: not what is saved
    assert may_become_best(0.5, model, "agg_metrics", 0)
    with torch.no_grad():
        model[1].weight[0, 0] = float("inf")
    assert not may_become_best(0.5, model, "agg_metrics", 0)


# ---------------------------------------------------------------------------- stop signals and resume


def test_sigint_saves_latest_at_the_step_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ToyTask.train_step
    counter = {"n": 0}

    def train_step(self, model, batch):
        counter["n"] += 1
        if counter["n"] == 8:  # epoch 1, iteration 2
            signal.raise_signal(signal.SIGINT)
        return real(self, model, batch)

    monkeypatch.setattr(ToyTask, "train_step", train_step)
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stop:
        main(toy_argv(tmp_path))
    assert stop.value.exit_code == 130 and "stopped by SIGINT at epoch 1, iteration 2" in str(stop.value)
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert (ckpt["epoch"], ckpt["iter_in_epoch"], ckpt["global_step"]) == (1, 2, 8)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_repeated_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    """SIGTERM twice (cluster + torchrun) still saves first; Ctrl-C twice stops at once."""
    real = ToyTask.train_step
    counter = {"n": 0}

    def train_step(self, model, batch):
        counter["n"] += 1
        if counter["n"] == 8:
            signal.raise_signal(signum)
            signal.raise_signal(signum)
        return real(self, model, batch)

    monkeypatch.setattr(ToyTask, "train_step", train_step)
    if signum == signal.SIGINT:
        with pytest.raises(KeyboardInterrupt):
            main(toy_argv(tmp_path))
        assert load_checkpoint(tmp_path / "latest.pth")["global_step"] == 6  # the last regular save
        return
    with pytest.raises(TrainingInterrupted) as stop:
        main(toy_argv(tmp_path))
    assert stop.value.exit_code == 143
    assert load_checkpoint(tmp_path / "latest.pth")["global_step"] == 8
    assert "received SIGTERM again: still saving latest.pth first" in (tmp_path / "log.txt").read_text()


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and text in path.read_text()):
        assert proc.poll() is None, f"training ended early (rc {proc.returncode}): {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"never saw {text!r} in {path}"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_saves_exits_143_and_resume_continues_without_duplicate_records(tmp_path: Path) -> None:
    """SIGTERM goes to every process of the run, DataLoader workers included, as SLURM sends it."""
    out, epochs = tmp_path / "run", 40
    cmd = [sys.executable, "-m", "paxion.cli.train", *toy_argv(out, max_epoch=epochs, num_workers=1)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        start_new_session=True,  # its own process group: the signal reaches the workers too
    )
    try:
        _wait_for(out / "log.txt", "saved latest.pth", proc)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
        stderr = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert "stopped by SIGTERM" in stderr and "run.resume=auto" in stderr and "Traceback" not in stderr
    stopped = load_checkpoint(out / "latest.pth")
    assert stopped["global_step"] < epochs * 6
    assert stopped["global_step"] == stopped["epoch"] * 6 + stopped["iter_in_epoch"]  # a step boundary
    (out / ".latest.pth.tmp-99999").write_bytes(b"torn by a crash")

    main(toy_argv(out, max_epoch=epochs, num_workers=1, resume="auto"))
    final = load_checkpoint(out / "latest.pth")
    assert final["global_step"] == epochs * 6
    assert not (out / ".latest.pth.tmp-99999").exists()
    log = (out / "log.txt").read_text()
    assert f"resumed from {out / 'latest.pth'}" in log and "left by an interrupted checkpoint write" in log
    train_keys = [(r["epoch"], r["iter"]) for r in _records(out, "train")]
    assert len(train_keys) == len(set(train_keys))
    per_epoch = _records(out, "val")[:-1]  # the last one is the final evaluation with the best weights
    assert [r["epoch"] for r in per_epoch] == list(range(epochs))


def _record_keys(out: Path) -> list[tuple]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [(r["kind"], r["step"], r.get("epoch"), r.get("iter")) for r in map(json.loads, lines)]


@pytest.mark.slow
def test_resume_after_kill_drops_records_of_the_lost_steps(tmp_path: Path, toy_baseline: Path) -> None:
    """Killed in epoch 1 after the record of step 10 was written but latest.pth holds step 9: the resumed
    run writes step 10 again, so metrics.jsonl must lose the first copy."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "paxion.cli.train", *toy_argv(out, "task.stall_at_step=11")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("stalled.*")):
            assert proc.poll() is None, f"training ended early: {proc.stderr.read()}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert load_checkpoint(out / "latest.pth")["global_step"] == 9
    assert ("train", 10, 1, 4) in _record_keys(out)  # written after the checkpoint
    main(toy_argv(out, resume="auto"))
    assert _record_keys(out) == _record_keys(toy_baseline)
    assert "metrics.jsonl: removed 1 records written after" in (out / "log.txt").read_text()


# ---------------------------------------------------------------------------- Paxion files with backbone weights


def _paxion(seed: int, **kw: object) -> PaxionModel:
    torch.manual_seed(seed)
    return PaxionModel(PaxionConfig(backbone=FAKE, patcher=SMALL, **kw))


def _file_with_backbone(tmp_path: Path, changed: int) -> tuple[Path, dict[str, torch.Tensor]]:
    source = _paxion(1)
    backbone = {f"vl_backbone.{k}": v.clone() for k, v in source.backbone.state_dict().items()}
    for key in sorted(backbone)[:changed]:
        backbone[key] = backbone[key] + 1.0
    path = tmp_path / "full.pth"
    torch.save({"model": {**_official_state(source, OFFICIAL_KP), **backbone}, "epoch": 0}, path)
    return path, backbone


def test_differing_vl_backbone_weights_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, backbone = _file_with_backbone(tmp_path, changed=2)
    model = _paxion(1)  # the same random backbone as the file's source
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="paxion.systems.paxion.weights"):
        report = model.load_pretrained(str(path))
    total = len(backbone)
    assert f"2 of {total} backbone tensors in the file differ from the loaded backbone" in caplog.text
    assert "model.load_backbone_from_checkpoint=true" in caplog.text
    assert any(f"2 of {total}" in note for note in report.notes)
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.state_dict().items())  # not loaded


def test_load_backbone_from_checkpoint_switch(tmp_path: Path) -> None:
    path, backbone = _file_with_backbone(tmp_path, changed=2)
    model = _paxion(2, pretrained=str(path), load_backbone_from_checkpoint=True)
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k[len("vl_backbone."):]], v) for k, v in backbone.items())


def test_identical_vl_backbone_weights_give_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, _ = _file_with_backbone(tmp_path, changed=0)
    with caplog.at_level(logging.WARNING, logger="paxion.systems.paxion.weights"):
        _paxion(1).load_pretrained(str(path))
    assert "differ from the loaded backbone" not in caplog.text


# ---------------------------------------------------------------------------- eval-only runs


def test_eval_only_summarises_without_parameter_lines(tmp_path: Path, toy_baseline: Path) -> None:
    out = tmp_path / "eval"
    main(toy_argv(out, evaluate=True, load_ckpt_path=toy_baseline / "best.pth"))
    log = (out / "log.txt").read_text()
    assert "trainable" not in log
    assert f"output folder {out.resolve()}" in log  # the first lines and the last name the same folder
    assert f"outputs in {out.resolve()}" in log
    assert "val: mse=" in log and "test: mse=" in log
    assert "trainable: head.0.weight" in (toy_baseline / "log.txt").read_text()  # training runs still list them


def test_checkpoint_save_failure_is_a_checkpoint_error(tmp_path: Path) -> None:
    atomic_save({"model": {"w": torch.ones(2)}}, tmp_path / "latest.pth")
    (tmp_path / "blocked").write_text("a file where a folder should be")
    from paxion.engine.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"blocked/latest.pth: cannot write checkpoint"):
        atomic_save({"model": {"w": torch.zeros(2)}}, tmp_path / "blocked" / "latest.pth")


# ---------------------------------------------------------------------------- SLURM requeue

_FAKE_SRUN = """#!/usr/bin/env bash
echo "$@" > "$FAKE_LOG/srun_args"
trap 'echo TERM > "$FAKE_LOG/srun_term"; exit 143' TERM
sleep 60 & wait $!
"""
_FAKE_SCONTROL = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_LOG/scontrol"
[[ "$1" == show ]] && echo node1
exit 0
"""


def test_slurm_script_forwards_sigterm_and_requeues(tmp_path: Path) -> None:
    from conftest import REPO

    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in (("srun", _FAKE_SRUN), ("scontrol", _FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "SLURM_JOB_ID": "77",
           "SLURM_JOB_NODELIST": "node1", "SLURM_NNODES": "1"}
    script = REPO / "run_scripts" / "slurm_train.sh"
    proc = subprocess.Popen(["bash", str(script), "cfg.yaml", "run.max_epoch=3"], env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not (log / "srun_args").is_file():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143  # the training's status
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert (log / "srun_term").is_file()  # forwarded to the training
    assert (log / "srun_args").read_text().split()[-3:] == ["cfg.yaml", "run.max_epoch=3", "run.resume=auto"]
    assert "requeue 77" in (log / "scontrol").read_text()


# ---------------------------------------------------------------------------- two ranks agree


def _dist_worker(out: Path) -> None:
    """Rank 1 alone sees a NaN loss (call 2) and a SIGTERM (call 4); both ranks must act on each together."""
    from paxion.engine import dist

    rank, real, calls = int(os.environ["RANK"]), ToyTask.train_step, {"n": 0}

    def train_step(self, model, batch):
        calls["n"] += 1
        loss, logs = real(self, model, batch)
        if rank == 1 and calls["n"] == 2:
            loss = loss * float("nan")
        if rank == 1 and calls["n"] == 4:
            signal.raise_signal(signal.SIGTERM)
        return loss, logs

    ToyTask.train_step = train_step
    runner = build_runner(toy_argv(out, max_nonfinite_steps=1), "distributed stop test")
    report: dict = {"stopped": None}
    try:
        runner.train()
    except TrainingInterrupted as exc:
        report["stopped"] = str(exc)
    flat = torch.cat([p.detach().flatten() for p in runner.model.parameters()])
    report["params_equal"] = all(torch.equal(flat, other) for other in dist.all_gather_object(flat))
    report["nonfinite_steps"] = runner.state.nonfinite_steps
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    runner.close()
    dist.destroy()


@pytest.mark.slow
def test_ranks_skip_and_stop_at_the_same_step(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__, str(out)]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["params_equal"] and r["nonfinite_steps"] == 1 for r in reports)
    assert all("stopped by SIGTERM at epoch 1, iteration 1 (global step 3)" in r["stopped"] for r in reports)
    ckpt = load_checkpoint(out / "latest.pth")  # 3 iterations per epoch and rank; iteration 2 skipped
    assert (ckpt["epoch"], ckpt["iter_in_epoch"], ckpt["global_step"]) == (1, 1, 3)


if __name__ == "__main__":
    _dist_worker(Path(sys.argv[1]))


# ---------------------------------------------------------------------------- nothing finite to report


def _metrics_always(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    real = ToyTask.compute_metrics

    def compute_metrics(self, outputs, split, output_dir):
        metrics = real(self, outputs, split, output_dir)
        return {**metrics, **{k: (v if v != "all" else metrics["num_samples"]) for k, v in changes.items()}}

    monkeypatch.setattr(ToyTask, "compute_metrics", compute_metrics)


def test_training_without_any_finite_val_metric_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from paxion.cli.train import run_cli

    _metrics_always(monkeypatch, val_loss=float("inf"))
    with pytest.raises(SystemExit) as info:
        run_cli(main, toy_argv(tmp_path))
    assert info.value.code == 1
    error = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error) == 1 and "no epoch had a finite val_loss on 'val': training diverged" in error[0]
    assert (tmp_path / "result" / "test_output.json").is_file()  # written first, for inspection


def test_evaluation_with_every_score_nonfinite_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from paxion.cli.train import run_cli

    _metrics_always(monkeypatch, nonfinite_scores="all")
    with pytest.raises(SystemExit) as info:
        run_cli(main, toy_argv(tmp_path, evaluate=True))
    assert info.value.code == 1
    error = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error) == 1 and "every sample scored non-finite values (NaN/inf) in test (5 of 5), val (7 of 7)" in error[0]
    _metrics_always(monkeypatch, nonfinite_scores=4)  # some finite scores: counted as wrong, not an error
    main(toy_argv(tmp_path / "some", evaluate=True))
