"""Shared by the Singularity test files: a tiny model and single-threaded tiny tensors."""

from __future__ import annotations

import pytest
import torch

from paxion.backbones.singularity.model import SINGULARITY_TINY, SingularityBackbone


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0) -> SingularityBackbone:
    torch.manual_seed(seed)
    return SingularityBackbone(SINGULARITY_TINY)
