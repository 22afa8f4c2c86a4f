"""Shared test setup: importable package, GPU/weights markers, tiny toy-run helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
CONFIGS = REPO / "configs"

try:
    import paxion  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(SRC))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    has_cuda = torch.cuda.is_available()
    ckpt_root = os.environ.get("PAXION_CKPT_ROOT")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "weights" in item.keywords and not (ckpt_root and Path(ckpt_root).is_dir()):
            item.add_marker(pytest.mark.skip(reason="needs pretrained weights under PAXION_CKPT_ROOT"))


TOY_TRAIN = CONFIGS / "toy" / "train.yaml"


def toy_argv(output_dir: Path, *extra: str, **run: object) -> list[str]:
    """Command line for a seconds-long toy run in ``output_dir`` (no workers, TensorBoard or bar).

    ``run`` keywords override ``run.*`` keys; ``extra`` are further raw ``a.b=c`` overrides.
    """
    values: dict[str, object] = {
        "output_dir": str(output_dir),
        "num_workers": 0,
        "tensorboard": False,
        "progress_bar": False,
        "max_epoch": 2,
        "batch_size_train": 8,
        "save_every_n_steps": 3,
        "log_freq": 4,
        **run,
    }
    overrides = [f"run.{k}={_yaml(v)}" for k, v in values.items()]
    overrides += [
        "datasets.toy_regression.num_train=48",
        "datasets.toy_regression.num_val=7",
        "datasets.toy_regression.num_test=5",
    ]
    return ["--cfg-path", str(TOY_TRAIN), *overrides, *extra]


def _yaml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return str(value)


@pytest.fixture
def toy_run_argv():
    """``toy_argv`` as a fixture, for tests that prefer not to import conftest."""
    return toy_argv


@pytest.fixture(scope="session")
def toy_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of one uninterrupted default toy run (2 epochs, no workers), shared by tests."""
    from paxion.cli.train import main

    out = tmp_path_factory.mktemp("toy_baseline")
    main(toy_argv(out))
    return out
