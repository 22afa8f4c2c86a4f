"""The runner, single process, on the toy task: outputs, selection, precision, accumulation, workers."""

from __future__ import annotations

import json
import runpy
import sys
import types
from pathlib import Path

import pytest
import torch

from paxion.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint
from paxion.cli.evaluate import main as evaluate_main
from paxion.cli.train import build_runner, main

from conftest import REPO, toy_argv


def _records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_train_writes_outputs_and_trains_only_trainable(tmp_path: Path) -> None:
    runner = build_runner(toy_argv(tmp_path, tensorboard=True), "test")
    frozen = runner.model.encoder.weight.clone()
    head = runner.model.head[0].weight.clone()
    results = runner.train()
    runner.close()
    assert torch.equal(runner.model.encoder.weight, frozen)
    assert not torch.equal(runner.model.head[0].weight, head)
    assert set(results) == {"test", "val"}
    for name in [
        "config.yaml",
        "log.txt",
        "latest.pth",
        "best.pth",
        "result/test_output.json",
        "result/val_output.json",
    ]:
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert "trainable: head.0.weight" in (tmp_path / "log.txt").read_text()
    latest = load_checkpoint(tmp_path / "latest.pth")
    assert sorted(latest["model"]) == ["head.0.bias", "head.0.weight", "head.3.bias", "head.3.weight"]
    assert (latest["epoch"], latest["iter_in_epoch"], latest["global_step"]) == (2, 0, 12)  # 48 / 8 = 6 per epoch
    result = json.loads((tmp_path / "result" / "test_output.json").read_text())
    assert result["split"] == "test" and result["task"] == "toy" and result["num_samples"] == 5
    assert result["epoch"] == latest["best_epoch"]


def test_best_checkpoint_follows_metric_mode(toy_baseline: Path) -> None:
    val_losses = {r["epoch"]: r["val_loss"] for r in _records(toy_baseline, "val") if isinstance(r["epoch"], int)}
    best = load_checkpoint(toy_baseline / "best.pth")
    assert best["best_metric"] == pytest.approx(min(val_losses.values()))  # agg_metric val_loss, mode min
    assert val_losses[best["best_epoch"]] == pytest.approx(best["best_metric"])
    assert len(_records(toy_baseline, "train")) >= 2


def test_bf16_autocast_on_cpu(tmp_path: Path, toy_baseline: Path) -> None:
    results = main(toy_argv(tmp_path, precision="bf16"))
    fp32 = json.loads((toy_baseline / "result" / "val_output.json").read_text())
    assert torch.isfinite(torch.tensor(results["val"]["mse"]))
    assert results["val"]["mse"] != fp32["mse"]  # bf16 matmuls really ran


def test_fp16_grad_scaler_steps(tmp_path: Path) -> None:
    main(toy_argv(tmp_path, precision="fp16", max_epoch=1))
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert ckpt["scaler"]["scale"] > 0  # an enabled scaler (a disabled one saves {})
    assert ckpt["scaler"]["_growth_tracker"] == ckpt["global_step"] == 6  # every update passed its inf check
    steps = [float(s["step"]) for s in ckpt["optimizer"]["state"].values()]
    assert steps == [6.0] * 4  # scaler.step() really ran optimizer.step()


def test_accumulation_steps_every_k_iterations_and_at_epoch_end(tmp_path: Path) -> None:
    main(toy_argv(tmp_path, max_epoch=1, accum_grad_iters=2, grad_clip_norm=0.5, max_iters_per_epoch=5))
    ckpt = load_checkpoint(tmp_path / "latest.pth")
    assert ckpt["global_step"] == 3  # after iterations 2, 4 and the last one (5)
    assert all(float(s["step"]) == 3 for s in ckpt["optimizer"]["state"].values())


def test_skipped_videos_are_counted_and_written(tmp_path: Path) -> None:
    results = main(toy_argv(tmp_path, "datasets.toy_regression.fake_skip_every=3", max_epoch=1))
    assert results["val"]["skipped_videos"] == 3  # idx 0, 3, 6 of 7
    assert results["test"]["skipped_videos"] == 2  # idx 0, 3 of 5
    entries = json.loads((tmp_path / "skipped_videos.json").read_text())
    assert {"path", "error", "replaced_by", "split", "phases"} <= set(entries[0])
    assert [sum(e["split"] == s for e in entries) for s in ("val", "test")] == [3, 2]  # each file once per split


def test_worker_processes_do_not_change_the_result(tmp_path: Path, toy_baseline: Path) -> None:
    main(toy_argv(tmp_path, num_workers=2, persistent_workers=True, progress_bar=True))
    ours, base = _params(tmp_path / "latest.pth"), _params(toy_baseline / "latest.pth")
    assert all(torch.equal(ours[k], base[k]) for k in base)


def test_evaluate_loads_checkpoint_and_matches_training_result(tmp_path: Path, toy_baseline: Path) -> None:
    results = evaluate_main(toy_argv(tmp_path, load_ckpt_path=toy_baseline / "best.pth"))
    trained = json.loads((toy_baseline / "result" / "val_output.json").read_text())
    assert results["val"]["mse"] == trained["mse"]
    bad = load_checkpoint(toy_baseline / "best.pth")
    bad["model"]["head.9.weight"] = torch.ones(1)
    atomic_save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="head.9.weight"):
        evaluate_main(toy_argv(tmp_path, load_ckpt_path=tmp_path / "bad.pth"))


def test_thin_script_runs_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", *toy_argv(tmp_path / "out", max_epoch=1, evaluate=True)])
    runpy.run_path(str(REPO / "src" / "train.py"), run_name="__main__")
    assert json.loads((tmp_path / "out" / "result" / "val_output.json").read_text())["num_samples"] == 7


def test_wandb_runs_offline_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, list] = {"init": [], "log": [], "finish": []}
    fake = types.SimpleNamespace(
        init=lambda **kw: calls["init"].append(kw) or fake,
        log=lambda data, step: calls["log"].append((step, data)),
        finish=lambda: calls["finish"].append(True),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    main(toy_argv(tmp_path, "run.wandb.enable=true", max_epoch=1))
    assert calls["init"][0]["mode"] == "offline" and calls["init"][0]["dir"] == str(tmp_path)
    assert calls["init"][0]["config"]["run"]["max_epoch"] == 1
    assert any("val/mse" in data for _, data in calls["log"])
    assert calls["finish"] == [True]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision(tmp_path: Path, precision: str) -> None:
    results = main(toy_argv(tmp_path, precision=precision, device="cuda", pin_memory=True, max_epoch=1))
    assert torch.isfinite(torch.tensor(results["val"]["mse"]))
    assert load_checkpoint(tmp_path / "latest.pth")["global_step"] == 6
