"""Experiment config schema: the dataclasses for the top level, ``paths`` and ``run``, with their value checks.

These are the defaults of every non-component key; :mod:`paxion.config` layers YAML files, the
environment and the command line on top of them. ``model``, ``task``, ``datasets`` and ``techniques``
take their schema from the registered component's ``Config`` dataclass at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

PATH_ENV_VARS = {
    "data_root": "PAXION_DATA_ROOT",
    "ckpt_root": "PAXION_CKPT_ROOT",
    "output_root": "PAXION_OUTPUT_ROOT",
    "cache_root": "PAXION_CACHE_ROOT",
}

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class PathsConfig:
    """Roots that every other path in a config is built from (``${paths.data_root}/...``).

    Relative roots resolve against the working directory; each can be set by the environment
    variable in :data:`PATH_ENV_VARS`, which beats the YAML files but not the command line.
    """

    data_root: str = "data"
    ckpt_root: str = "checkpoints"
    output_root: str = "output"
    cache_root: str = "~/.cache/paxion"


@dataclass
class WandbConfig:
    enable: bool = False
    project: str = "paxion"
    entity: Optional[str] = None
    name: Optional[str] = None


@dataclass
class RunConfig:
    """Everything the runner needs: optimisation, precision, checkpoints, logging, data loading."""

    output_dir: str = "${paths.output_root}/run"
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16
    evaluate: bool = False  # evaluation only: no training
    # optimisation
    max_epoch: int = 1
    max_iters_per_epoch: Optional[int] = None  # cap on iterations per epoch (smoke runs)
    lr_sched: str = "epoch_cosine"  # registered lr_schedule name
    init_lr: float = 1e-5
    min_lr: float = 0.0
    warmup_lr: float = -1.0
    warmup_steps: int = 0
    weight_decay: float = 0.05
    no_decay_bias_and_norm: bool = False  # original: one group, everything decayed
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    accum_grad_iters: int = 1
    grad_clip_norm: Optional[float] = None
    # data loading
    batch_size_train: int = 32
    batch_size_eval: int = 4
    num_workers: int = 4
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_factor: int = 2
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    valid_splits: list[str] = field(default_factory=lambda: ["val"])
    test_splits: list[str] = field(default_factory=list)
    # selection and checkpoints
    agg_metric: str = "agg_metrics"  # key of the validation metrics used to pick "best"
    metric_mode: str = "max"  # max | min
    save_full_model: bool = False  # default: trainable parameters only
    save_every_n_steps: int = 0  # 0: "latest" only at epoch ends
    save_after_every_epoch: bool = False
    resume: str = "none"  # none | auto (latest checkpoint in output_dir)
    resume_ckpt_path: Optional[str] = None
    load_ckpt_path: Optional[str] = None  # weights to start from / to evaluate
    # logging and distributed
    log_freq: int = 50
    tensorboard: bool = True
    progress_bar: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)
    dist_timeout_s: int = 1800
    ddp_find_unused_parameters: bool = False  # only for models whose trainable parts may sit out a step
    # a non-finite training loss stops the run; up to this many such steps are skipped first (no update)
    max_nonfinite_steps: int = 0

    def __post_init__(self) -> None:
        _check_choice("run.precision", self.precision, PRECISIONS)
        _check_choice("run.metric_mode", self.metric_mode, ("max", "min"))
        _check_choice("run.resume", self.resume, ("none", "auto"))
        _check_choice("run.device", self.device, ("auto", "cpu", "cuda"))
        for key, low in _RUN_MINIMA.items():
            _check_at_least(f"run.{key}", getattr(self, key), low)
        if not self.output_dir:
            raise ValueError("run.output_dir must not be empty")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"run.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"run.grad_clip_norm must be > 0 or null, got {self.grad_clip_norm}")


# smallest valid value of each numeric run.* key (None values mean "unset" and are not checked)
_RUN_MINIMA: dict[str, float] = {
    "batch_size_train": 1,
    "batch_size_eval": 1,
    "max_epoch": 0,
    "max_iters_per_epoch": 1,
    "init_lr": 0.0,
    "min_lr": 0.0,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "accum_grad_iters": 1,
    "num_workers": 0,
    "prefetch_factor": 1,
    "save_every_n_steps": 0,
    "log_freq": 1,
    "dist_timeout_s": 1,
    "max_nonfinite_steps": 0,
}


def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{key}: '{value}' is not one of {list(choices)}")


def _check_at_least(key: str, value: Optional[float], low: float) -> None:
    if value is not None and not value >= low:  # "not >=" also refuses NaN
        raise ValueError(f"{key} must be >= {low:g}, got {value}")


@dataclass
class ExperimentConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    model: Any = None  # schema: registry "model" entry named by model.arch
    task: Any = None  # schema: registry "task" entry named by task.name
    datasets: Any = None  # schema: one registry "dataset" builder per key
    techniques: Any = None  # schema: one registry "technique" per key (applied in order)
