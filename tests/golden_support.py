"""Golden-file suite helpers: read a file written by ``tools/golden/<original>.py`` and compare with it.

Each ``tests/golden/<original>/golden.pt`` holds ``meta`` (the original's repository and commit, the
command and packages that produced it), ``outputs`` (name -> tensor computed by the original code)
and the inputs (texts, uint8 clips, small configs). Files next to it are checkpoints in the release
layout of that original, loaded through the project's public converters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

GOLDEN_ROOT = Path(__file__).resolve().parent / "golden"


def golden_dir(original: str) -> Path:
    return GOLDEN_ROOT / original


def load_golden(original: str) -> dict[str, Any]:
    """The golden record of ``original`` (plain types and tensors only: ``weights_only`` loading)."""
    return torch.load(golden_dir(original) / "golden.pt", map_location="cpu", weights_only=True)


def max_abs_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest |actual - expected| in float64; shapes must match exactly."""
    actual = torch.as_tensor(actual).detach().cpu()
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"shape {tuple(actual.shape)} != golden {tuple(expected.shape)}")
    if actual.numel() == 0:
        return 0.0
    return float((actual.double() - expected.double()).abs().max())


def compare(
    actual: Mapping[str, torch.Tensor], golden: Mapping[str, torch.Tensor], tolerances: Mapping[str, float]
) -> dict[str, float]:
    """Assert every output named in ``tolerances`` is within its absolute tolerance; -> measured max-abs diffs.

    All outputs are checked before failing, so one message lists every output out of tolerance.
    """
    missing = sorted(set(tolerances) - set(actual))
    if missing:
        raise AssertionError(f"outputs not computed: {missing}")
    diffs: dict[str, float] = {}
    failures: list[str] = []
    for name, tol in tolerances.items():
        try:
            diffs[name] = max_abs_diff(actual[name], golden[name])
        except AssertionError as err:
            failures.append(f"{name}: {err}")
            continue
        if not diffs[name] <= tol:  # also catches NaN
            failures.append(f"{name}: max |diff| {diffs[name]:.3g} > tolerance {tol:.1g}")
    for name, diff in diffs.items():
        print(f"golden {name:32s} max|diff| {diff:.2e} (tolerance {tolerances[name]:.0e})")
    if failures:
        raise AssertionError("outputs differ from the original's:\n  " + "\n  ".join(failures))
    return diffs
