"""Samplers and data loaders.

Training: :class:`SeededSampler` gives every rank a deterministic shard of a per-(seed, epoch)
permutation (``DistributedSampler`` semantics) and pairs each index with a per-sample seed, so a
dataset draws all of a sample's randomness from ``(index, seed)``. Together with a loader that owns
its ``torch.Generator`` this makes an epoch's data independent of worker count and of the global
RNG, and a resumed run can start mid-epoch without loading the skipped samples.

Evaluation: :class:`ShardSampler` gives rank ``r`` the indices ``r::W`` without padding, so every
sample is scored exactly once after gathering.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from paxion.engine import dist
from paxion.config import RunConfig

_SEED_MIX = 1_000_003  # keeps (seed, epoch) pairs from colliding as seed + epoch would


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample_seed)`` for this rank's share of the epoch.

    ``set_epoch(epoch, start=k)`` skips the first ``k`` of this rank's samples of that epoch
    (resume mid-epoch); the sequence that follows is exactly what an uninterrupted run would see.
    """

    def __init__(
        self,
        dataset_len: int,
        seed: int,
        shuffle: bool = True,
        drop_last: bool = True,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ) -> None:
        self.dataset_len = dataset_len
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        self.rank = dist.get_rank() if rank is None else rank
        if drop_last:
            self.num_samples = dataset_len // self.num_replicas
        else:
            self.num_samples = math.ceil(dataset_len / self.num_replicas)
        if self.num_samples == 0:
            raise ValueError(f"dataset of {dataset_len} samples is too small for {self.num_replicas} ranks")
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside this rank's {self.num_samples} samples")
        self.epoch, self.start = epoch, start

    def epoch_order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's full epoch: indices (num_samples,) and sample seeds (num_samples,), int64."""
        gen = torch.Generator().manual_seed(self.seed * _SEED_MIX + self.epoch)
        n = self.dataset_len
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=gen)
        total = self.num_samples * self.num_replicas
        if total > n:  # pad by wrapping around, as DistributedSampler does
            reps = math.ceil(total / n)
            order, seeds = order.repeat(reps), seeds.repeat(reps)
        order, seeds = order[:total], seeds[:total]
        return order[self.rank :: self.num_replicas], seeds[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, seeds = self.epoch_order()
        return zip(order[self.start :].tolist(), seeds[self.start :].tolist())

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + W, ...`` of an evaluation set: no shuffling, no padding."""

    def __init__(self, dataset_len: int, num_replicas: Optional[int] = None, rank: Optional[int] = None) -> None:
        self.dataset_len = dataset_len
        self.num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
        self.rank = dist.get_rank() if rank is None else rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_len, self.num_replicas))


def _loader_kwargs(run: RunConfig, device: torch.device, seed: int) -> dict[str, Any]:
    # a private generator: creating an iterator must not draw from the global RNG (bit-identical resume)
    kwargs: dict[str, Any] = {
        "num_workers": run.num_workers,
        "pin_memory": run.pin_memory and device.type == "cuda",
        "generator": torch.Generator().manual_seed(seed),
    }
    if run.num_workers > 0:  # DataLoader refuses these without workers
        kwargs["persistent_workers"] = run.persistent_workers
        kwargs["prefetch_factor"] = run.prefetch_factor
    return kwargs


def build_train_loader(
    dataset: Dataset, run: RunConfig, collate_fn: Optional[Callable], device: torch.device
) -> tuple[DataLoader, SeededSampler]:
    """Loader over ``(index, seed)`` keys; batches of ``run.batch_size_train``, last partial batch dropped."""
    sampler = SeededSampler(len(dataset), seed=run.seed, shuffle=True, drop_last=True)
    if sampler.num_samples < run.batch_size_train:
        raise ValueError(
            f"training set has {sampler.num_samples} samples per rank, fewer than run.batch_size_train="
            f"{run.batch_size_train}: not one full batch"
        )
    loader = DataLoader(
        dataset,
        batch_size=run.batch_size_train,
        sampler=sampler,
        drop_last=True,
        collate_fn=collate_fn,
        **_loader_kwargs(run, device, run.seed + dist.get_rank()),
    )
    return loader, sampler


def build_eval_loader(
    dataset: Dataset, run: RunConfig, collate_fn: Optional[Callable], device: torch.device
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=run.batch_size_eval,
        sampler=ShardSampler(len(dataset)),
        drop_last=False,
        collate_fn=collate_fn,
        **_loader_kwargs(run, device, run.seed),
    )
