"""Reusing a frozen backbone's work across epochs: the feature cache (model) and the clip cache (data).

Both must give exactly what the uncached path gives, and must refuse or step aside where reuse would be
wrong (augmented clips, a backbone in train mode, a hook that changes the backbone's output).
"""

from __future__ import annotations

import copy

import pytest
import torch

from paxion.systems.paxion.feature_cache import FrozenFeatureCache
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion_fakes import FAKE, fake_batch

SMALL = PatcherConfig(heads=2, dim_head=8, num_latents=3)


def _model(**kw: object) -> PaxionModel:
    torch.manual_seed(0)
    kw.setdefault("backbone_mode", "eval")
    return PaxionModel(PaxionConfig(backbone=FAKE, patcher=SMALL, **kw))


def _counting(model: PaxionModel) -> list[int]:
    """Record the number of clips each call of the backbone's frame encoder gets."""
    calls: list[int] = []
    encode = model.backbone.encode_frames

    def wrapped(video):
        calls.append(int(video.shape[0]))
        return encode(video)

    model.backbone.encode_frames = wrapped
    return calls


def _train(model: PaxionModel, batches: list[dict]) -> list[torch.Tensor]:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    losses = []
    for batch in batches:
        torch.manual_seed(len(losses))  # the patcher's temporal dropout draws the same in both runs
        loss = model(batch, gather=False)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
    return losses


def test_cached_training_equals_uncached_training_and_skips_the_backbone_after_the_first_epoch():
    pre = _model().backbone.preprocess
    epoch = [fake_batch(4, pre.num_frames, pre.image_size, seed=s) for s in range(3)]
    plain, cached = _model(), _model(feature_cache_size=64)
    calls = _counting(cached)
    shuffled = [epoch[2], epoch[0], epoch[1]]  # the second epoch meets the clips in another order
    assert torch.equal(torch.stack(_train(plain, epoch + shuffled)), torch.stack(_train(cached, epoch + shuffled)))
    for (name, a), b in zip(plain.named_parameters(), cached.parameters()):
        assert torch.equal(a, b), name
    assert calls == [4, 4, 4]  # first epoch only
    assert (cached.feature_cache.hits, cached.feature_cache.misses) == (12, 12)


def test_mixed_batch_computes_only_its_new_clips():
    model = _model(feature_cache_size=64).eval()
    pre = model.backbone.preprocess
    a, b = (fake_batch(4, pre.num_frames, pre.image_size, seed=s)["video_input"] for s in (0, 1))
    calls = _counting(model)
    with torch.no_grad():
        model.encode_video(a[:2], with_reversed=True)
        mixed = torch.cat([a[1:2], b[:2], a[:1]])
        got = model.encode_video(mixed, with_reversed=True)
    assert calls == [2, 2]
    plain = _model().eval()
    with torch.no_grad():
        want = plain.encode_video(mixed, with_reversed=True)
    assert torch.equal(got.latents, want.latents) and torch.equal(got.pooled, want.pooled)
    with torch.no_grad():
        model.encode_video(a[:1], with_reversed=False)  # one view is its own entry
    assert calls == [2, 2, 1]


def test_cache_steps_aside_for_train_mode_hooks_and_new_weights():
    model = _model(feature_cache_size=8, backbone_mode="train")
    video = fake_batch(2, 4, 8)["video_input"]
    model.train()
    with torch.no_grad():
        model.encode_video(video)
    assert len(model.feature_cache) == 0  # a training-mode backbone may apply dropout
    model = _model(feature_cache_size=8).eval()
    with torch.no_grad():
        model.encode_video(video)
        assert len(model.feature_cache) == 2
        model.load_state_dict(copy.deepcopy(model.state_dict()))
        assert len(model.feature_cache) == 0  # new weights: stale
        handle = model.backbone.register_forward_hook(lambda *args: None)
        model.encode_video(video)
        assert len(model.feature_cache) == 0  # a hook may change what the backbone returns
        handle.remove()


def test_lru_capacity_and_autocast_keys():
    def compute(clips):
        b = clips.shape[0]
        return clips.float().mean((1, 2, 3, 4))[:, None].repeat(2, 3), torch.zeros(2 * b, 1, 1, 1)

    cache = FrozenFeatureCache(capacity=2)
    clips = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1, 1).repeat(1, 2, 3, 2, 2)
    pooled, tokens = cache.encode(clips, 2, compute)
    assert pooled.shape == (6, 3) and tokens.shape == (6, 1, 1, 1)
    assert pooled[:, 0].tolist() == [0, 1, 2, 0, 1, 2]  # (view, clip) order kept
    assert len(cache) == 2
    cache.encode(clips[:1], 2, compute)  # clip 0 was evicted first
    assert cache.misses == 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cache.encode(clips[2:], 2, compute)
    assert cache.misses == 5
    with pytest.raises(ValueError, match="capacity"):
        FrozenFeatureCache(-1)


# --------------------------------------------------------------------------- data side


def test_clip_cache_decodes_once_and_refuses_augmented_training(tmp_path):
    from omegaconf import OmegaConf

    import paxion  # noqa: F401  (registers the builders)
    from paxion.data.synthetic import generate
    from paxion.registry import registry

    generate(tmp_path, num_train=6, num_val=2, num_test=0, workers=1)
    cls = registry.get("dataset", "actionbench_ssv2")

    def build(training, **cfg):
        node = OmegaConf.merge({"paths": {"data_root": str(tmp_path)}},
                               {"ds": OmegaConf.merge(OmegaConf.structured(cls.Config), cfg)})
        return cls(OmegaConf.to_object(node.ds)).build("train", num_frames=4, image_size=32, training=training)

    plain = build(True, color_jitter=False)
    cached = build(True, color_jitter=False, cache_clips=True)
    decoded = []
    clip = cached._clip
    cached._clip = lambda record, generator: decoded.append(record["video_id"]) or clip(record, generator)
    for _ in range(2):
        for i in range(len(cached)):
            assert torch.equal(cached[i]["video"], plain[i]["video"])
    assert len(decoded) == len(cached) == 6
    with pytest.raises(ValueError, match="color_jitter"):
        build(True, cache_clips=True)
    with pytest.raises(ValueError, match="frame_sampling"):
        build(True, color_jitter=False, frame_sampling="random", cache_clips=True)
    assert build(False, cache_clips=True)[0]["video"].shape == (4, 3, 32, 32)  # evaluation clips never vary
