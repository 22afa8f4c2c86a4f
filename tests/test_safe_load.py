"""Refused checkpoint files say what they are; NaN weights are refused; a trusted pickle converts once."""

from __future__ import annotations

import argparse
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paxion.backbones.base import CheckpointError
from paxion.backbones.safe_load import ALLOW_NONFINITE_ENV, torch_load
from paxion.engine.checkpoint import load_checkpoint
from paxion.tools.convert_checkpoint import main as convert_main
from paxion.systems.paxion.weights import read_state_dict


class Legacy:  # a class of the training code that once saved the file
    def __init__(self) -> None:
        self.note = "kept nowhere"


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.pth", b"", r"empty file \(0 bytes\)"),
        ("lfs.pth", b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n", "Git LFS pointer"),
        ("page.pth", b"<!DOCTYPE html><html>Not Found</html>", "HTML/XML text file"),
    ],
)
def test_foreign_files_say_what_they_are(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as info:
        torch_load(tmp_path / name)
    assert "weights_only" not in str(info.value)


def test_safetensors_under_a_pth_name_is_recognised(tmp_path: Path) -> None:
    save_file({"temp": torch.ones(2)}, str(tmp_path / "kp.pth"))
    with pytest.raises(CheckpointError, match="a safetensors file under another suffix: rename it"):
        read_state_dict(tmp_path / "kp.pth")


def test_nonfinite_tensors_refused_unless_switched_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state = {"patcher.w": torch.tensor([1.0, float("inf"), float("nan")]), "temp": torch.ones(())}
    torch.save(state, tmp_path / "kp.pth")
    save_file(state, str(tmp_path / "kp.safetensors"))
    for path in (tmp_path / "kp.pth", tmp_path / "kp.safetensors"):
        with pytest.raises(CheckpointError, match=r"'patcher.w', 2 of 3 values.*PAXION_ALLOW_NONFINITE_WEIGHTS=1"):
            read_state_dict(path)
    monkeypatch.setenv(ALLOW_NONFINITE_ENV, "1")
    with caplog.at_level(logging.WARNING):
        loaded = read_state_dict(tmp_path / "kp.pth")
    assert torch.isnan(loaded["patcher.w"][2])
    assert "loaded anyway because PAXION_ALLOW_NONFINITE_WEIGHTS is set" in caplog.text


def test_trusted_pickle_converts_into_a_safely_loadable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old = tmp_path / "old.pth"
    weights = {"patcher.w": torch.arange(4.0), "temp": torch.tensor(0.07)}
    torch.save({"model": weights, "args": argparse.Namespace(lr=1e-4, frames=8), "mean": np.float32(0.5),
                "table": np.arange(3), "legacy": Legacy()}, old)
    with pytest.raises(CheckpointError, match="convert_checkpoint"):
        load_checkpoint(old)
    new = tmp_path / "new.pth"
    convert_main([str(old), str(new)])
    dropped = capsys.readouterr().err
    assert "dropped: legacy (" in dropped and "Legacy)" in dropped
    ckpt = load_checkpoint(new)
    assert all(torch.equal(ckpt["model"][k], v) for k, v in weights.items())
    assert ckpt["args"] == {"lr": 1e-4, "frames": 8} and ckpt["mean"] == 0.5
    assert torch.equal(ckpt["table"], torch.arange(3)) and "legacy" not in ckpt


def test_plain_pickle_converts_to_safetensors(tmp_path: Path) -> None:
    old = tmp_path / "old.pkl"
    old.write_bytes(pickle.dumps({"state_dict": {"w": np.ones((2, 2), dtype=np.float32)}}))
    with pytest.raises(CheckpointError, match="is a plain Python pickle.*convert_checkpoint"):
        torch_load(old)
    proc = subprocess.run([sys.executable, "-m", "paxion.tools.convert_checkpoint", str(old),
                           str(tmp_path / "new.safetensors")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(read_state_dict(tmp_path / "new.safetensors")["w"], torch.ones(2, 2))
