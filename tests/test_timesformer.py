"""TimeSformer divided space-time attention, embedding resizing, full-size counts and the ALPRO backbone."""

from __future__ import annotations

import dataclasses

import torch

from paxion.backbones.timesformer.vit import (
    TIMESFORMER_BASE, TIMESFORMER_TINY, TimeSformer, frame_tokens, resize_pos_embed, resize_time_embed, temporal_pool,
)
from paxion.systems.paxion.model import PaxionConfig, PaxionModel
from paxion.systems.paxion.patcher import PatcherConfig
from paxion.registry import registry
from paxion_fakes import fake_batch

TINY = dataclasses.replace(TIMESFORMER_TINY, drop_path_rate=0.0)


def _model(cfg=TINY, seed: int = 0) -> TimeSformer:
    torch.manual_seed(seed)
    model = TimeSformer(cfg).eval()
    with torch.no_grad():  # the init zeroes temporal_fc after block 0; make every block mix frames
        for block in model.blocks:
            block.temporal_fc.weight.normal_(0, 0.2)
        model.time_embed.normal_(0, 0.5)  # zeros would make the clip's frame order invisible
    return model


def _attend(attn, x: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention of one sequence (L, D) with the module's weights."""
    heads, (length, width) = attn.heads, x.shape
    q, k, v = attn.qkv(x).view(length, 3, heads, width // heads).permute(1, 2, 0, 3)
    weights = (q @ k.transpose(-1, -2) / (width // heads) ** 0.5).softmax(-1)
    return attn.proj((weights @ v).transpose(0, 1).reshape(length, width))


def _reference_block(block, x: torch.Tensor, t: int) -> torch.Tensor:
    """Divided space-time block written with explicit loops over patches and frames; x (1 + N*T, D), (n t) order."""
    cls, patches = x[0], x[1:].view(-1, t, x.shape[-1])  # (D,), (N, T, D)
    mixed = torch.stack([_attend(block.temporal_attn, block.temporal_norm1(p)) for p in patches])  # (N, T, D)
    patches = patches + block.temporal_fc(mixed)
    cls_out, frame_out = [], []
    for f in range(t):
        seq = torch.cat([cls[None], patches[:, f]])  # (1 + N, D)
        out = _attend(block.attn, block.norm1(seq))
        cls_out.append(out[0])
        frame_out.append(out[1:])
    new_cls = cls + torch.stack(cls_out).mean(0)
    new_patches = patches + torch.stack(frame_out, dim=1)  # (N, T, D)
    y = torch.cat([new_cls[None], new_patches.reshape(-1, x.shape[-1])])
    return y + block.mlp(block.norm2(y))


def test_block_matches_loop_reference() -> None:
    model = _model()
    x = torch.randn(2, 1 + 4 * 3, 64)
    with torch.no_grad():
        ours = model.blocks[0](x, 3)
        for i in range(2):
            torch.testing.assert_close(ours[i], _reference_block(model.blocks[0], x[i], 3), atol=1e-5, rtol=1e-5)


def test_output_shapes_and_temporal_pool() -> None:
    model = _model()
    video = torch.randn(2, 4, 3, 32, 32)
    tokens = model(video)
    assert tokens.shape == (2, 1 + 4 * 4, 64)
    pooled = temporal_pool(tokens, 4)
    assert pooled.shape == (2, 5, 64)
    torch.testing.assert_close(pooled[:, 1], tokens[:, 1:5].mean(1))  # patch 0 over its 4 frames
    per_frame = frame_tokens(tokens, 4)
    assert per_frame.shape == (2, 4, 5, 64)
    torch.testing.assert_close(per_frame[:, 2, 3], tokens[:, 1 + 2 * 4 + 2])  # frame 2, patch 2
    torch.testing.assert_close(per_frame[:, 1, 0], tokens[:, 0])


def test_temporal_attention_mixes_frames() -> None:
    model = _model()
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        a, b = model(video), model(video.flip(1))
    assert not torch.allclose(temporal_pool(a, 4)[:, 0], temporal_pool(b, 4)[:, 0], atol=1e-4)


def test_time_embed_resized_nearest_when_frame_count_changes() -> None:
    table = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 3)
    assert resize_time_embed(table, 8)[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert resize_time_embed(table, 2)[0, :, 0].tolist() == [0, 2]
    model = _model()
    with torch.no_grad():
        two = model.embed(torch.zeros(1, 2, 3, 32, 32))
        four = model.embed(torch.zeros(1, 4, 3, 32, 32))
    # with identical frames, frame 1 of the 2-frame clip carries time row 2 of the 4-frame one
    torch.testing.assert_close(two[0, 1:].view(4, 2, -1)[:, 1], four[0, 1:].view(4, 4, -1)[:, 2])


def test_pos_embed_resized_nearest_and_cls_kept() -> None:
    pos = torch.randn(1, 1 + 4, 5)
    big = resize_pos_embed(pos, (4, 4))
    assert big.shape == (1, 17, 5)
    torch.testing.assert_close(big[:, 0], pos[:, 0])
    grid = pos[0, 1:].view(2, 2, 5)
    torch.testing.assert_close(big[0, 1:].view(4, 4, 5), grid.repeat_interleave(2, 0).repeat_interleave(2, 1))
    model = _model()
    assert model(torch.randn(1, 4, 3, 64, 64)).shape == (1, 1 + 16 * 4, 64)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    plain = _model().train()
    ckpt = TimeSformer(dataclasses.replace(TINY, gradient_checkpointing=True)).train()
    ckpt.load_state_dict(plain.state_dict())
    video = torch.randn(2, 4, 3, 32, 32)
    for m in (plain, ckpt):
        m(video).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_full_size_parameter_count_on_meta() -> None:
    with torch.device("meta"):
        vit = TimeSformer(TIMESFORMER_BASE)
        backbone = registry.get("backbone", "alpro_base")()
    d = 768
    linear = lambda i, o: i * o + o  # noqa: E731
    block = 3 * 2 * d + 2 * (linear(d, 3 * d) + linear(d, d)) + linear(d, d) + linear(d, 4 * d) + linear(4 * d, d)
    embeds = (3 * 16 * 16 * d + d) + d + 197 * d + 8 * d  # patch conv, cls, pos, time
    assert sum(p.numel() for p in vit.parameters()) == embeds + 12 * block + 2 * d == 121_258_752
    text = sum(p.numel() for p in backbone.text_encoder.parameters())
    bert_layer = 4 * linear(d, d) + 2 * 2 * d + linear(d, 3072) + linear(3072, d)
    assert text == (30522 + 512 + 2) * d + 2 * d + 6 * bert_layer
    assert backbone.tokens_per_frame == 197 and backbone.embed_dim == 256


def test_knowledge_patcher_trains_on_the_alpro_backbone() -> None:
    torch.manual_seed(0)
    model = PaxionModel(PaxionConfig(backbone="alpro_tiny", patcher=PatcherConfig(heads=2, dim_head=8, num_latents=3)))
    model.train()
    pre = model.backbone.preprocess
    batch = fake_batch(3, pre.num_frames, pre.image_size)
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.patcher.vision_perceiver.latents.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.backbone.frame_order_invariant_frames is False
