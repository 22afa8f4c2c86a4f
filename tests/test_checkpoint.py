"""Checkpoints: safe round trip, RNG capture, atomic replacement, checked weight loading."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from paxion.engine import checkpoint as ckpt_lib
from paxion.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint, load_model_weights, model_state


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)  # frozen, like a backbone
    return model


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    model = _model()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    payload = {"model": model_state(model, full=False), "optimizer": opt.state_dict(), "rng": [ckpt_lib.rng_state()]}
    atomic_save(payload, tmp_path / "c.pth")
    loaded = load_checkpoint(tmp_path / "c.pth")  # torch.load(weights_only=True) inside
    assert sorted(loaded["model"]) == ["1.bias", "1.weight"]  # trainable only
    assert torch.equal(loaded["model"]["1.weight"], model[1].weight)
    assert sorted(model_state(model, full=True)) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    fresh = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    fresh.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_rng_state_restores_every_stream(tmp_path: Path) -> None:
    state = ckpt_lib.rng_state()
    atomic_save({"model": {}, "rng": state}, tmp_path / "r.pth")
    first = (random.random(), np.random.rand(), torch.rand(3))
    ckpt_lib.set_rng_state(load_checkpoint(tmp_path / "r.pth")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_failed_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "latest.pth"
    atomic_save({"model": {"w": torch.ones(3)}}, path)

    def torn_save(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_lib.torch, "save", torn_save)
    with pytest.raises(CheckpointError, match=r"latest.pth: cannot write checkpoint \(OSError: disk full\); the previous"):
        atomic_save({"model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth"]  # temp file cleaned up


# a real write failure: a file-size limit (RLIMIT_FSIZE) makes the kernel refuse the bytes past it,
# as a full disk would (EFBIG instead of ENOSPC)
_LIMITED_WRITER = """
import resource, signal, sys, torch
from paxion.engine import checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process dies instead of seeing the error
checkpoint.atomic_save({"model": {"w": torch.ones(1000)}}, sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    checkpoint.atomic_save({"model": {"w": torch.zeros(100_000)}}, sys.argv[1])
except checkpoint.CheckpointError as exc:
    print(exc)
"""


def test_write_failure_names_the_file_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "latest.pth"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_LIMITED_WRITER), str(path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: cannot write checkpoint" in proc.stdout and "the previous file is unchanged" in proc.stdout
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(1000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth"]  # no temporary file left


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    atomic_save({"model": {"w": torch.ones(3)}}, tmp_path / "latest.pth")
    (tmp_path / ".latest.pth.tmp-4242").write_bytes(b"PK torn")
    (tmp_path / ".best.pth.tmp-17").write_bytes(b"")
    (tmp_path / "notes.tmp-1").write_text("not ours")
    removed = ckpt_lib.remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".best.pth.tmp-17", ".latest.pth.tmp-4242"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pth", "notes.tmp-1"]


def test_one_checkpoint_error_class() -> None:
    from paxion.backbones import base

    assert ckpt_lib.CheckpointError is base.CheckpointError


# loads checkpoint.py by path (it imports paxion.backbones.base for its error class)
_KILLED_WRITER = """
import importlib.util, sys, time, torch
spec = importlib.util.spec_from_file_location("ckpt_under_test", sys.argv[3])
checkpoint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checkpoint)
real_save = torch.save
def slow_save(obj, f):
    real_save(obj, f)
    f.flush()
    f.truncate(f.tell() // 2)  # half of the new checkpoint is on disk ...
    open(sys.argv[2], "w").close()
    time.sleep(600)  # ... when the process is killed
torch.save = slow_save
checkpoint.atomic_save({"model": {"w": torch.zeros(1000)}}, sys.argv[1])
"""


def test_sigkill_during_save_leaves_previous_checkpoint_loadable(tmp_path: Path) -> None:
    path, ready = tmp_path / "latest.pth", tmp_path / "ready"
    atomic_save({"model": {"w": torch.ones(1000)}}, path)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(path), str(ready), ckpt_lib.__file__],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "writer exited before reaching the kill point"
            assert time.monotonic() < deadline, "writer never reached the kill point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert any(p.name.startswith(".latest.pth.tmp") for p in tmp_path.iterdir())  # the torn temp file
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(1000))


def test_load_model_weights_checks_keys_and_shapes() -> None:
    model = _model()
    good = model_state(_model(), full=False)
    load_model_weights(model, good, source="good.pth")
    assert torch.equal(model[1].weight, good["1.weight"])
    with pytest.raises(CheckpointError, match=r"bad.pth: keys not in the model: \['extra'\]"):
        load_model_weights(model, {**good, "extra": torch.ones(1)}, source="bad.pth")
    with pytest.raises(CheckpointError, match=r"trainable parameters missing .*1.bias"):
        load_model_weights(model, {"1.weight": good["1.weight"]}, source="bad.pth")
    with pytest.raises(CheckpointError, match="shape mismatch: .*1.bias"):
        load_model_weights(model, {**good, "1.bias": torch.ones(5)}, source="bad.pth")


def test_unsafe_or_foreign_files_are_refused(tmp_path: Path) -> None:
    torch.save({"model": {}, "obj": Path("x")}, tmp_path / "pickled.pth")  # arbitrary object: not weights-only
    with pytest.raises(CheckpointError, match="pickles the Python object 'pathlib.*convert_checkpoint"):
        load_checkpoint(tmp_path / "pickled.pth")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        load_checkpoint(tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "notes.pth").write_text("these are my notes, not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"notes.pth: a text file, not a checkpoint"):
        load_checkpoint(tmp_path / "notes.pth")


def test_trainable_parameter_saved_under_another_name_round_trips() -> None:
    """InternVideo stores ``logit_scale_param`` under the official key ``logit_scale``."""
    from paxion.engine.checkpoint import load_model_weights, model_state
    from paxion.registry import registry

    backbone = registry.get("backbone", "internvideo_tiny")()
    backbone.requires_grad_(False)
    backbone.logit_scale_param.requires_grad_(True)
    state = model_state(backbone, full=False)
    assert list(state) == ["logit_scale"]
    with torch.no_grad():
        backbone.logit_scale_param.add_(1.0)
    load_model_weights(backbone, state, "round trip")
    assert torch.equal(backbone.logit_scale_param.detach(), state["logit_scale"])
