"""TextFeatureCache: same features as the text tower, keys independent of padding, bounded LRU."""

from __future__ import annotations

import torch

import paxion  # noqa: F401  (fills the registry)
from paxion.registry import registry
from paxion.systems.paxion.scoring import normalize
from paxion.systems.paxion.text_cache import TextFeatureCache


def counting(fn):
    calls = []

    def wrapped(tokens):
        calls.append(int(tokens["input_ids"].shape[0]))
        return fn(tokens)

    return wrapped, calls


def test_cached_features_equal_the_text_tower_and_skip_it_on_hits():
    torch.manual_seed(0)
    backbone = registry.get("backbone", "singularity_tiny")().eval()  # pads to the longest caption
    tower, calls = counting(lambda tok: normalize(backbone.encode_text(tok)[0]))
    cache = TextFeatureCache(capacity=16)
    first = ["a person opens a door", "close it", "a person opens a door"]
    second = ["close it", "a person pushes a very heavy wooden box slowly", "a person opens a door"]
    with torch.no_grad():
        got_first = cache.encode(backbone.tokenize(first), tower, "cpu")
        got_second = cache.encode(backbone.tokenize(second), tower, "cpu")
        expected = tower(backbone.tokenize(first + second))
    assert calls[:2] == [2, 1]  # duplicates computed once; only the new caption on the second call
    assert (cache.hits, cache.misses) == (3, 3)
    torch.testing.assert_close(torch.cat([got_first, got_second]), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(got_second[0], got_first[1])  # "close it" padded to another length: same entry


def test_capacity_bounds_the_cache_and_evicts_least_recently_used():
    def tower(tokens):
        return tokens["input_ids"].float()[:, :1].repeat(1, 4)  # (M, 4): the first id as a feature

    tokens = {"input_ids": torch.tensor([[1], [2], [3], [1]]), "attention_mask": torch.ones(4, 1, dtype=torch.long)}
    fn, calls = counting(tower)
    cache = TextFeatureCache(capacity=2)
    out = cache.encode(tokens, fn, "cpu")
    assert out[:, 0].tolist() == [1, 2, 3, 1] and len(cache) == 2  # 2 and 3 were older than the re-used 1
    cache.encode({k: v[:1] for k, v in tokens.items()}, fn, "cpu")  # id 1: hit
    cache.encode({k: v[1:2] for k, v in tokens.items()}, fn, "cpu")  # id 2: evicted earlier, recomputed
    assert calls == [3, 1]


def test_autocast_state_and_zero_capacity_keep_entries_apart():
    tokens = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.ones(1, 2, dtype=torch.long)}
    fn, calls = counting(lambda tok: torch.ones(len(tok["input_ids"]), 3))
    cache = TextFeatureCache(capacity=4)
    cache.encode(tokens, fn, "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache.encode(tokens, fn, "cpu")
    assert calls == [1, 1] and len(cache) == 2
    off, off_calls = counting(lambda tok: torch.ones(1, 3))
    empty = TextFeatureCache(capacity=0)
    empty.encode(tokens, off, "cpu")
    empty.encode(tokens, off, "cpu")
    assert off_calls == [1, 1] and len(empty) == 0


# ---------------------------------------------------------------------------- wired into PaxionModel
CAPTIONS = ["a person opens a door", "close it", "a person pushes a box slowly", "close it"]


def _model(size: int = 64, seed: int = 0, backbone: str = "singularity_tiny"):
    from paxion.systems.paxion.model import PaxionConfig, PaxionModel
    from paxion.systems.paxion.patcher import PatcherConfig

    torch.manual_seed(seed)
    patcher = PatcherConfig(heads=2, dim_head=8, num_latents=3)
    return PaxionModel(PaxionConfig(backbone=backbone, text_cache_size=size, patcher=patcher))


def test_model_eval_features_with_cache_equal_features_without() -> None:
    cached, plain = _model(64).eval(), _model(0).eval()
    expected = plain.encode_text(CAPTIONS)
    first, again = cached.encode_text(CAPTIONS), cached.encode_text(CAPTIONS[::-1])
    torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, expected.flip(0), rtol=1e-5, atol=1e-6)
    assert (cached.text_cache.hits, cached.text_cache.misses) == (5, 3)  # 3 unique captions, then all hits
    assert len(plain.text_cache) == 0


def test_model_train_mode_bypasses_the_cache() -> None:
    model = _model(64).train()  # singularity's BERT: dropout active in train mode
    torch.manual_seed(1)
    first = model.encode_text(CAPTIONS)
    second = model.encode_text(CAPTIONS)
    assert len(model.text_cache) == 0 and model.text_cache.hits == model.text_cache.misses == 0
    assert not torch.allclose(first, second)  # fresh dropout each call: a cache would have repeated `first`
    model.eval().encode_text(CAPTIONS)
    assert len(model.text_cache) == 3
    model.train()
    assert len(model.text_cache) == 0  # cleared on every mode switch


def test_model_never_returns_stale_features_after_new_weights() -> None:
    from paxion.engine.checkpoint import load_model_weights

    model, other = _model(64, seed=0).eval(), _model(0, seed=1).eval()
    old = model.encode_text(CAPTIONS)
    expected_new = other.encode_text(CAPTIONS)
    assert not torch.allclose(old, expected_new)  # the two seeds give different text towers
    load_model_weights(model, other.state_dict(), "other seed")  # the runner's loader (load_state_dict)
    torch.testing.assert_close(model.encode_text(CAPTIONS), expected_new, rtol=1e-5, atol=1e-6)  # no mode switch
    model.load_state_dict(_model(0, seed=0).state_dict())
    torch.testing.assert_close(model.eval().encode_text(CAPTIONS), old, rtol=1e-5, atol=1e-6)
    assert len(model.text_cache) == 3
    model.to("cpu")  # .to(device) / .half(): cached rows would keep the old device or dtype
    assert len(model.text_cache) == 0
