"""What stops a training run cleanly: a diverged loss, or a stop signal from the user or the cluster.

* :class:`NonFiniteLossError`: a NaN/inf training loss (after ``run.max_nonfinite_steps`` skipped steps).
* :class:`StopSignals`: SIGINT/SIGTERM set a flag instead of killing the process, so that the runner
  saves ``latest.pth`` at the next step boundary and raises :class:`TrainingInterrupted`. A second
  SIGINT (Ctrl-C twice) stops at once; repeated SIGTERMs are only logged (a cluster and torchrun may
  both deliver one).
* :class:`TrainGuard`: both, agreed by every rank at each optimizer update, so all ranks skip or stop together.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from types import FrameType
from typing import Any, Callable, Optional

import torch

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the message names the epoch, iteration, step and every loss term."""


class NonFiniteScoresError(RuntimeError):
    """An evaluation with nothing finite to report: every sample scored NaN/inf, or no validation epoch of a
    training run had a finite ``run.agg_metric``. Raised after the results are written, so they can be read."""


def check_scores(results: dict[str, dict[str, Any]], result_dir: Any) -> None:
    """Raise :class:`NonFiniteScoresError` when every sample of a split scored non-finite values."""
    dead = [
        f"{split} ({m['nonfinite_scores']} of {m['num_samples']})"
        for split, m in results.items()
        if m.get("num_samples") and m.get("nonfinite_scores", 0) >= m["num_samples"]
    ]
    if dead:
        raise NonFiniteScoresError(
            f"every sample scored non-finite values (NaN/inf) in {', '.join(dead)}: the numbers in {result_dir} "
            "are meaningless; look for NaN in the weights (model.pretrained, run.load_ckpt_path) or the inputs"
        )


class TrainingInterrupted(Exception):
    """A stop signal arrived; ``latest.pth`` was saved. ``exit_code`` is 128 + the signal number (shell style)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def format_terms(loss: torch.Tensor, logs: dict[str, Any]) -> str:
    """``loss=nan vtc=0.693 atm=inf``: the total and every tensor term of ``logs`` (host values)."""
    terms = {"loss": loss, **{k: v for k, v in logs.items() if torch.is_tensor(v) and k != "loss"}}
    return " ".join(f"{k}={v.detach().float().mean().item():.6g}" for k, v in terms.items())


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signum` (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C twice: stop now
                raise KeyboardInterrupt
            # a repeated SIGTERM is common (the cluster signals every process, torchrun forwards it again):
            # keep going to the checkpoint; SIGKILL remains for stopping at once
            logger.warning("received %s again: still saving latest.pth first", signal.Signals(signum).name)
            return
        self.signum = signum
        logger.warning(
            "received %s: saving latest.pth at the next step boundary, then stopping (Ctrl-C twice: stop now)",
            signal.Signals(signum).name,
        )


def ignore_stop_signals(worker_init: Optional[Callable[[int], None]]) -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn`` that makes workers ignore SIGINT/SIGTERM, then runs ``worker_init``.

    A cluster sends SIGTERM to every process of the job; workers that died of it would fail the loader
    before the main process reaches the step boundary where it saves. The main process ends them.
    """
    return _WorkerInit(worker_init)


class _WorkerInit:
    def __init__(self, inner: Optional[Callable[[int], None]]) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if self.inner is not None:
            self.inner(worker_id)


class TrainGuard:
    """Per optimizer update: do all ranks agree to skip it (non-finite loss) or to stop (a signal)?

    Enter it around training to catch SIGINT/SIGTERM. :meth:`agree` costs one host sync per update.
    """

    def __init__(self, max_nonfinite_steps: int, device: torch.device) -> None:
        self.max_nonfinite_steps = max_nonfinite_steps
        self.device = device
        self.signals = StopSignals()

    def __enter__(self) -> "TrainGuard":
        self.signals.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.signals.__exit__(*exc)

    def agree(self, losses: list[torch.Tensor], grad_norm: Optional[torch.Tensor]) -> tuple[bool, bool]:
        """-> (skip: some rank has a non-finite loss or ``grad_norm``, stop: some rank got a stop signal)."""
        bad = ~torch.isfinite(torch.stack(losses)).all()
        if grad_norm is not None:
            bad = bad | ~torch.isfinite(grad_norm)
        stop = torch.tensor(float(self.signals.signum is not None), device=self.device)
        flags = _max_over_ranks(torch.stack([bad.float(), stop]))
        skip, stop_any = (bool(f) for f in flags.tolist())
        return skip, stop_any

    def stop_requested(self) -> bool:
        """Whether any rank got a stop signal (a collective: every rank must call it)."""
        return bool(_max_over_ranks(torch.tensor([float(self.signals.signum is not None)], device=self.device)).item())

    def check_budget(self, count: int, where: str, micro: list[tuple[torch.Tensor, dict]], grad_norm: Any) -> None:
        """The ``count``-th skipped update: warn, or raise :class:`NonFiniteLossError` past the budget."""
        from paxion.engine import dist

        bad = [(loss, logs) for loss, logs in micro if not torch.isfinite(loss)]
        terms = format_terms(*bad[0]) if bad else f"loss terms finite on rank {dist.get_rank()}"
        if grad_norm is not None:
            terms += f" grad_norm={float(grad_norm):.6g}"
        message = f"non-finite training loss at {where}: {terms}"
        allowed = self.max_nonfinite_steps
        if count > allowed:
            raise NonFiniteLossError(
                f"{message}. Stopped: {count} non-finite step(s), run.max_nonfinite_steps={allowed} "
                "(lower run.init_lr, set run.grad_clip_norm, or allow skipping with run.max_nonfinite_steps=N)"
            )
        logger.warning("%s: update skipped (%d of at most %d)", message, count, allowed)

    def interrupted(self, where: str, latest: Any) -> TrainingInterrupted:
        signum = self.signals.signum or signal.SIGTERM  # another rank may have been the one signalled
        return TrainingInterrupted(
            signum,
            f"stopped by {signal.Signals(signum).name} at {where}; {latest} saved: continue with "
            "run.resume=auto and the same run.output_dir",
        )


def _max_over_ranks(flags: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
    return flags


def may_become_best(value: float, model: torch.nn.Module, metric: str, epoch: int) -> bool:
    """A NaN/inf metric, or non-finite trainable weights, never make a "best" checkpoint (logged as errors)."""
    if not math.isfinite(value):
        logger.error("epoch %d: %s=%s is not finite: not a candidate for best.pth", epoch, metric, value)
        return False
    finite = [torch.isfinite(p).all() for p in model.parameters() if p.requires_grad]
    if finite and not bool(torch.stack(finite).all()):
        logger.error("epoch %d: trainable weights hold NaN/inf: not a candidate for best.pth", epoch)
        return False
    return True
