"""Every user error at the command line: one line naming the file or key, exit status 1, no traceback."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    assert f"{path}: not a checkpoint: neither a torch.save archive, a pickle nor a safetensors file" in line
    assert line.endswith("(set by model.pretrained)")
    assert "weights_only" not in line  # never the advice to turn safe loading off


def test_random_bytes_as_in_the_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "g.pth"
    path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: " in line and "model.pretrained" in line
    assert "weights_only" not in line and "Re-running" not in line and not line.endswith("False)")


def test_pickle_that_needs_code_points_to_the_converter(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "old.pth"
    torch.save({"model": {"temp": torch.ones(())}, "args": argparse.Namespace(lr=1.0)}, path)
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert "pickles the Python object 'argparse.Namespace'" in line and "loads tensors and plain containers only" in line
    assert f"python -m paxion.tools.convert_checkpoint {path} " in line and "(set by model.pretrained)" in line
    assert "weights_only" not in line


def test_truncated_archive(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "kp.pth"
    torch.save({"temp": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: truncated torch.save archive" in line and "model.pretrained" in line


def test_missing_file_names_the_key_and_its_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = [*_paxion_argv(tmp_path, Path("unused")), f"paths.ckpt_root={tmp_path / 'ckpts'}",
            "model.pretrained=${paths.ckpt_root}/kp.pth"]
    line = _cli_error(capsys, argv)
    assert f"{tmp_path / 'ckpts' / 'kp.pth'}: checkpoint file not found" in line
    assert "set by model.pretrained = ${paths.ckpt_root}/kp.pth" in line
    assert f"paths.ckpt_root={tmp_path / 'ckpts'}" in line and "PAXION_CKPT_ROOT" in line


def test_nan_weights_are_refused_with_the_switch_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "kp.pth"
    torch.save({"temp": torch.tensor(float("nan"))}, path)
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: 1 tensor(s) hold NaN/inf (first: 'temp'" in line
    assert "PAXION_ALLOW_NONFINITE_WEIGHTS=1" in line and "model.pretrained" in line


def test_text_file_named_pth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("download the weights from the project page\n")
    line = _cli_error(capsys, _paxion_argv(tmp_path, path))
    assert f"{path}: a text file, not a checkpoint" in line
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


def test_corrupt_latest_on_resume_names_only_checkpoints_that_would_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture, toy_baseline: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(toy_baseline, out)
    latest = out / "latest.pth"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # torn outside atomic_save
    # newer than best.pth, intact zip archives, but not resumable: an unsafe pickle, another model's weights
    best = torch.load(out / "best.pth", weights_only=True)
    torch.save({**best, "evil": argparse.Namespace()}, out / "evil_torchsave.pth")
    torch.save({**best, "model": {"other.weight": torch.ones(3)}}, out / "other_model.pth")
    line = _cli_error(capsys, toy_argv(out, resume="auto"))
    assert f"{latest}: truncated torch.save archive" in line and "run.resume=auto" in line
    assert "checkpoints of this run there: best.pth (" in line and f"run.resume_ckpt_path={out / 'best.pth'}" in line
    assert "evil_torchsave" not in line and "other_model" not in line


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



@pytest.mark.parametrize("name", ["singularity_ret", "singularity_qa", "singularity_temporal_ret"])
def test_missing_synthetic_data_prints_the_command_that_makes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture, name: str
) -> None:
    config = CONFIGS / "train" / "synthaction" / f"{name}.yaml"
    line = _cli_error(capsys, ["--cfg-path", str(config), f"run.output_dir={tmp_path / 'out'}",
                               f"paths.cache_root={tmp_path / 'empty'}"])
    assert "does not exist" in line
    assert "This config's data is made by: python -m paxion.data.synthetic.singularity_formats --out " in line
    assert f"paths.data_root={tmp_path / 'empty' / 'synthaction_singularity'}" in line


def test_error_line_is_handed_to_the_launcher(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    error_file = tmp_path / "error.txt"
    monkeypatch.setenv("PAXION_ERROR_FILE", str(error_file))
    line = _cli_error(capsys, _paxion_argv(tmp_path, tmp_path / "nowhere.pth"))
    assert error_file.read_text().splitlines() == [line[line.index("error:"):]]


@pytest.mark.slow
def test_launch_script_ends_with_the_one_line(tmp_path: Path) -> None:
    """run_scripts/train.sh through torchrun: the last line is the error, not torchrun's traceback."""
    from conftest import REPO

    proc = subprocess.run(
        ["bash", str(REPO / "run_scripts" / "train.sh"), *toy_argv(tmp_path / "out")[1:],
         f"run.load_ckpt_path={tmp_path / 'none.pth'}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NGPU": "1", "OMP_NUM_THREADS": "1", "PAXION_DEBUG": ""},
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"error: {tmp_path / 'none.pth'}: checkpoint file not found (set by run.load_ckpt_path)"
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
