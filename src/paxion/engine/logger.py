"""Run logging: a human log (console + ``log.txt``), JSONL metrics, TensorBoard, optional wandb,
and a progress bar. Only rank 0 writes files; other ranks log warnings and errors to the console.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from paxion.config import RunConfig

logger = logging.getLogger(__name__)

_FORMAT = "%(asctime)s %(levelname)s [rank%(rank)s] %(name)s: %(message)s"
_OWN_HANDLER = "_paxion_handler"  # marks handlers added here so repeated setups replace them


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; the property wins
        pass


def setup_logging(output_dir: Optional[str | Path], rank: int, level: int = logging.INFO) -> None:
    """Console logging for every rank (INFO on rank 0, WARNING elsewhere) plus ``log.txt`` on rank 0."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWN_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [_StderrHandler()]
    if output_dir is not None and rank == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / "log.txt"))
    for handler in handlers:
        setattr(handler, _OWN_HANDLER, True)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(_RankFilter(rank))
        handler.setLevel(level if rank == 0 else logging.WARNING)
        root.addHandler(handler)
    root.setLevel(min(root.level or level, level))


def logging_configured() -> bool:
    """Whether :func:`setup_logging` installed its handlers (console, and ``log.txt`` on rank 0)."""
    return any(getattr(h, _OWN_HANDLER, False) for h in logging.getLogger().handlers)


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class MetricLogger:
    """Writes metric records to ``metrics.jsonl``, TensorBoard and wandb (rank 0 only)."""

    def __init__(self, output_dir: str | Path, run: RunConfig, cfg: DictConfig, enabled: bool) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._jsonl_path = out / "metrics.jsonl"
        self._jsonl = open(self._jsonl_path, "a", buffering=1)
        if run.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import

            self._tb = SummaryWriter(str(out / "tensorboard"))
        if run.wandb.enable:
            self._wandb = _init_wandb(run, cfg, out)

    def log(self, record: dict[str, Any], step: int, prefix: str) -> None:
        """``record`` (JSON-serialisable) goes to JSONL whole; its numbers go to TB/wandb as ``prefix/key``."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"kind": prefix, "step": step, **record}, default=str) + "\n")
        numbers = {f"{prefix}/{k}": v for k, v in _scalars(record).items() if math.isfinite(v)}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def offset(self) -> int:
        """Bytes in ``metrics.jsonl`` so far (0 when disabled); a checkpoint stores it."""
        if self._jsonl is None:
            return 0
        self._jsonl.flush()
        return os.fstat(self._jsonl.fileno()).st_size

    def truncate(self, offset: int) -> int:
        """Cut ``metrics.jsonl`` back to ``offset`` bytes (records of steps a resume repeats); -> records removed."""
        size = self.offset()
        if self._jsonl is None or size <= offset:
            return 0
        with open(self._jsonl_path, "rb") as f:
            f.seek(offset)
            dropped = f.read().count(b"\n")
        os.truncate(self._jsonl_path, offset)  # the file is open in append mode: the next record follows
        return dropped

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _init_wandb(run: RunConfig, cfg: DictConfig, out: Path) -> Any:
    try:
        import wandb
    except ImportError:
        logger.warning("run.wandb.enable is set but wandb is not installed (pip install wandb); continuing without it")
        return None
    # never block on a login prompt: without credentials the run is recorded offline for a later `wandb sync`
    mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return wandb.init(
        project=run.wandb.project,
        entity=run.wandb.entity,
        name=run.wandb.name,
        dir=str(out),
        mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True),
        resume="allow",
    )


def progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool, initial: int = 0) -> Iterator[Any]:
    """A tqdm bar with rate and ETA when ``enabled`` (rank 0 and ``run.progress_bar``), else the iterable."""
    if not enabled:
        return iter(iterable)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=1.0))
