"""Every user error at the command line: one line naming the file or key, exit status 1, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paxion.backbones.base import CheckpointError
from paxion.config import ConfigError
from paxion.cli.train import main, run_cli

from conftest import CONFIGS, toy_argv

PAXION_CONFIG = CONFIGS / "train" / "actionbench" / "synthaction" / "kp_perceiver_vtc_dvdm.yaml"


def _cli_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the train entry as the command line does; -> its one error line."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _paxion_argv(tmp_path: Path, pretrained: Path) -> list[str]:
    return [
        "--cfg-path",
        str(PAXION_CONFIG),
        f"run.output_dir={tmp_path / 'out'}",
        f"model.pretrained={pretrained}",
    ]


def test_missing_pretrained_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = _cli_error(capsys, _paxion_argv(tmp_path, tmp_path / "nowhere" / "kp.pth"))
    assert str(tmp_path / "nowhere" / "kp.pth") in line and "not found" in line


def test_garbage_pretrained_pth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(bytes(range(256)) * 64)
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: not a PyTorch checkpoint" in line


def test_text_file_named_pth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("download the weights from the project page\n")
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: not a PyTorch checkpoint" in line
    assert "mmap" not in line  # the misleading hint of torch.load(mmap=True) on a non-zip file


def test_garbage_safetensors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "kp.safetensors"
    path.write_bytes(b"\xff" * 4096)  # a header length far beyond the file: "header too large"
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: not a readable safetensors file" in line


@pytest.mark.parametrize("key, value", [("batch_size_train", -4), ("batch_size_train", 0), ("init_lr", -1),
                                        ("batch_size_eval", 0), ("num_workers", -1), ("accum_grad_iters", 0),
                                        ("max_epoch", -2)])
def test_invalid_run_values_name_the_key_before_the_output_folder_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture, key: str, value: int
) -> None:
    out = tmp_path / "out"
    line = _cli_error(capsys, toy_argv(out, **{key: value}))
    assert f"run.{key} must be >=" in line and f"got {value}" in line
    assert "command line" in line  # where the bad value came from
    assert not out.exists()


def test_unwritable_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = _cli_error(capsys, toy_argv(Path("/proc/x")))
    assert "run.output_dir=/proc/x: cannot write there" in line


def test_corrupt_latest_on_resume_names_an_intact_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture, toy_baseline: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(toy_baseline, out)
    latest = out / "latest.pth"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # torn outside atomic_save
    line = _cli_error(capsys, toy_argv(out, resume="auto"))
    assert f"{latest}: not a torch.save archive" in line
    assert "intact checkpoints there: best.pth" in line and f"run.resume_ckpt_path={out / 'best.pth'}" in line


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run.batch_size_train"):
        run_cli(main, [*toy_argv(tmp_path / "out", batch_size_train=0), "--debug"])
    with pytest.raises(CheckpointError, match="nowhere.pth"):
        main(_paxion_argv(tmp_path, tmp_path / "nowhere.pth"))  # library callers get the exception itself


@pytest.mark.slow
def test_real_command_line_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "paxion.cli.train", *toy_argv(out, batch_size_train=-4)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PAXION_DEBUG": ""},
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config section 'run'")
    assert "run.batch_size_train must be >= 1, got -4" in proc.stderr
    assert not out.exists()


def test_non_finite_loss_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = _cli_error(capsys, toy_argv(tmp_path, "run.init_lr=1e12"))
    assert "non-finite training loss at epoch 0" in line and "loss=" in line


def test_disk_full_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from paxion.engine import runner

    def full_disk(cfg: object, output_dir: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(output_dir) / "config.yaml"))

    monkeypatch.setattr(runner, "save_config", full_disk)
    line = _cli_error(capsys, toy_argv(tmp_path / "out"))
    assert "No space left on device" in line and str(tmp_path / "out" / "config.yaml") in line


def test_other_os_errors_keep_their_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from paxion.engine import runner

    def broken(cfg: object, output_dir: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(runner, "save_config", broken)
    with pytest.raises(OSError, match="Input/output error"):  # not a user error: a bug report needs the traceback
        run_cli(main, toy_argv(tmp_path / "out"))

