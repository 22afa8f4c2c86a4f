"""Train a registered task: ``python -m paxion.train --cfg-path CFG [--options a.b=c ...] [a.b=c ...]``.

Runs as one plain process, or under ``torchrun`` (DDP, one process per GPU).

Exit status: 0 done; 1 a user error (config, checkpoint, data, a diverged loss, nothing finite to
report, a full disk or a permission problem), reported in one line naming the file or key (``--debug``
or ``PAXION_DEBUG=1`` shows the traceback); 128 + signal number (130 for SIGINT, 143 for SIGTERM) when a stop signal ended
training after saving ``latest.pth`` (or interrupted loading or evaluation, with nothing to save).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import paxion  # noqa: F401  (fills the registry)
from paxion.engine import dist
from paxion.backbones.base import CheckpointError
from paxion.cli.config_hints import data_commands, keys_naming
from paxion.config import ConfigError, load_config, parse_cli, prepare_output_dir
from paxion.data.annotations import AnnotationError
from paxion.data.synthetic.generate import OverwriteError
from paxion.data.video import VideoDecodeError
from paxion.cli.launch import ERROR_FILE_ENV
from paxion.engine.logger import logging_configured, setup_logging
from paxion.modules.llama_weights import LLaMAWeightsError
from paxion.registry import RegistryError, registry
from paxion.engine.guards import NonFiniteLossError, NonFiniteScoresError, TrainingInterrupted
from paxion.tasks.protocol import MissingCapability
from paxion.engine.runner import Runner, log_trainable_parameters

logger = logging.getLogger(__name__)

# errors caused by what the user gave (files, keys, values): one line at the command line, exit 1
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CheckpointError,
    RegistryError,
    AnnotationError,
    VideoDecodeError,
    NonFiniteLossError,
    NonFiniteScoresError,
    MissingCapability,
    LLaMAWeightsError,
    OverwriteError,
    FileNotFoundError,
)
# OSErrors reported like user errors: disk full, quota, read-only file system, permission denied
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def build_runner(argv: Optional[Sequence[str]], description: str, evaluate_only: bool = False) -> Runner:
    """Parse the command line, load the config, start distributed and logging, build task and runner."""
    cfg_path, overrides = parse_cli(argv, description)
    cfg = load_config(cfg_path, overrides)
    if cfg.task is None:
        raise ConfigError(f"{cfg_path}: no 'task:' section (need task.name, one of {registry.names('task')})")
    output_dir = Path(cfg.run.output_dir).resolve()
    prepare_output_dir(output_dir)  # before anything is written: a clear error for an unwritable folder
    device = dist.init_distributed(cfg.run.device, cfg.run.dist_timeout_s)
    setup_logging(cfg.run.output_dir, dist.get_rank())
    logger.info(
        "config %s with overrides %s; output folder %s; device %s, world size %d",
        cfg_path,
        overrides,
        output_dir,
        device,
        dist.get_world_size(),
    )
    with config_keys_in_errors(cfg, cfg_path):
        task = registry.get("task", cfg.task.name)(cfg)
        runner = Runner(cfg, task, device)
    runner.cfg_path = str(cfg_path)  # for the error hints of config_keys_in_errors while it runs
    if not (evaluate_only or runner.run.evaluate):
        log_trainable_parameters(runner.model)
    return runner


@contextlib.contextmanager
def config_keys_in_errors(cfg: Any, cfg_path: Optional[str | Path] = None) -> Iterator[None]:
    """A :class:`CheckpointError` raised inside also names the config key that set the file (and its root);
    a missing annotation file, the command that makes the data of ``cfg_path`` (from its header comments)."""
    try:
        yield
    except CheckpointError as exc:
        where = keys_naming(cfg, str(exc))
        if not where:
            raise
        raise CheckpointError(f"{exc} ({where})") from exc
    except AnnotationError as exc:
        missing = re.search(r"does not exist|not found|no such", str(exc), flags=re.I)
        commands = data_commands(cfg_path) if cfg_path and missing else []
        if not commands:
            raise
        raise AnnotationError(
            f"{exc}. This config's data is made by: {' && '.join(commands)} (this run reads "
            f"paths.data_root={cfg.paths.data_root})"
        ) from exc


def report_results(results: dict[str, dict[str, Any]], output_dir: Path) -> None:
    """The closing lines of a run: every split's numeric metrics, then the output folder (rank 0)."""
    if not dist.is_main():
        return
    for split, metrics in results.items():
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        logger.info("%s: %s", split, ", ".join(f"{k}={v:.4g}" for k, v in numbers.items()))
    logger.info("outputs in %s (config.yaml, log.txt, metrics.jsonl, result/)", Path(output_dir).resolve())


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    runner = build_runner(argv, "Train a Paxion model (LAVIS-style config).")
    try:
        with config_keys_in_errors(runner.cfg, runner.cfg_path):
            results = runner.evaluate() if runner.run.evaluate else runner.train()
        report_results(results, runner.output_dir)
        return results
    finally:
        runner.close()
        dist.destroy()


def run_cli(entry: Callable[[Sequence[str]], Any], argv: Optional[Sequence[str]] = None) -> None:
    """Command-line entry: user errors end with their message in one line and exit 1, not a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PAXION_DEBUG", "") not in ("", "0")
    try:
        entry(argv)
    except TrainingInterrupted as exc:
        logger.warning("%s", exc)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:  # outside training (loading, evaluation): nothing to save
        _report("interrupted (SIGINT)")
        raise SystemExit(128 + signal.SIGINT) from None
    except (*USER_ERRORS, OSError) as exc:
        if debug or (isinstance(exc, OSError) and not _is_user_oserror(exc)):
            raise
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)  # KeyError quotes str()
        _report("error: " + " ".join(line.strip() for line in text.splitlines()), for_launcher=True)
        raise SystemExit(1) from None


def _is_user_oserror(exc: OSError) -> bool:
    """A missing file, or a disk, quota or permission problem: the message names the file, no traceback needed."""
    return isinstance(exc, FileNotFoundError) or exc.errno in _USER_ERRNOS


def _report(message: str, for_launcher: bool = False) -> None:
    if logging_configured():  # the line also goes to log.txt
        logger.error("%s", message)
    else:
        print(message, file=sys.stderr)
    error_file = os.environ.get(ERROR_FILE_ENV)
    if for_launcher and error_file:  # paxion.cli.launch ends with this line instead of torchrun's traceback
        with contextlib.suppress(OSError), open(error_file, "a") as f:
            f.write(message + "\n")


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
