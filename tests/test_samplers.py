"""Samplers: deterministic seeded shards for training, an unpadded partition for evaluation."""

from __future__ import annotations

import pytest

from paxion.engine.samplers import SeededSampler, ShardSampler


def _epoch(n: int, world: int, epoch: int, drop_last: bool, seed: int = 5) -> list[list[tuple[int, int]]]:
    shards = []
    for rank in range(world):
        sampler = SeededSampler(n, seed=seed, drop_last=drop_last, num_replicas=world, rank=rank)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    return shards


def test_shards_are_disjoint_and_cover_the_dataset() -> None:
    shards = _epoch(10, world=3, epoch=0, drop_last=True)
    indices = [i for shard in shards for i, _ in shard]
    assert all(len(s) == 3 for s in shards)
    assert len(set(indices)) == 9  # one sample dropped, none repeated
    padded = _epoch(10, world=3, epoch=0, drop_last=False)
    assert all(len(s) == 4 for s in padded)
    assert {i for s in padded for i, _ in s} == set(range(10))  # padding wraps around


def test_order_is_a_function_of_seed_and_epoch() -> None:
    assert _epoch(20, 2, epoch=1, drop_last=True) == _epoch(20, 2, epoch=1, drop_last=True)
    assert _epoch(20, 2, epoch=1, drop_last=True) != _epoch(20, 2, epoch=2, drop_last=True)
    assert _epoch(20, 2, epoch=1, drop_last=True, seed=6) != _epoch(20, 2, epoch=1, drop_last=True)
    seeds = [s for shard in _epoch(20, 1, 0, True) for _, s in shard]
    assert len(set(seeds)) == 20  # every sample gets its own seed


def test_start_skips_a_prefix_of_the_same_order() -> None:
    sampler = SeededSampler(16, seed=0, num_replicas=2, rank=1)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=5)
    assert list(sampler) == full[5:]
    assert len(sampler) == len(full) - 5
    with pytest.raises(ValueError, match="outside"):
        sampler.set_epoch(3, start=9)


def test_shard_sampler_partitions_without_padding() -> None:
    shards = [list(ShardSampler(7, num_replicas=2, rank=r)) for r in range(2)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5]]
    assert [len(ShardSampler(7, num_replicas=2, rank=r)) for r in range(2)] == [4, 3]
    assert list(ShardSampler(1, num_replicas=3, rank=2)) == []
