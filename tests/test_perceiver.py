"""Perceiver / cross-attention blocks, patchers and fusers: math against hand-written references, key names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from paxion.systems.paxion.fuser import FuserConfig, SideTuningFuser, build_fuser
from paxion.modules.perceiver import CrossAttention, CrossAttentionBlock, PerceiverAttention, PerceiverResampler
from paxion.systems.paxion.patcher import PatcherConfig, PerceiverPatcher, build_patcher


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """The original's computation: scale q, logits minus their (detached) row max, softmax, weighted sum."""
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
    sim = torch.einsum("bhid,bhjd->bhij", q * q.shape[-1] ** -0.5, k)
    sim = sim - sim.amax(dim=-1, keepdim=True).detach()
    return rearrange(torch.einsum("bhij,bhjd->bhid", sim.softmax(-1), v), "b h n d -> b n (h d)")


def test_perceiver_attention_equals_max_subtracted_softmax() -> None:
    torch.manual_seed(0)
    attn = PerceiverAttention(dim=12, k_v_dim=20, dim_head=4, heads=3)
    media, latents = torch.randn(2, 30, 20) * 3, torch.randn(2, 5, 12)
    m = attn.norm_media(media)
    k, v = attn.to_kv(m).chunk(2, dim=-1)
    expected = attn.to_out(_reference_attention(attn.to_q(attn.norm_latents(latents)), k, v, 3))
    torch.testing.assert_close(attn(media, latents), expected, rtol=1e-5, atol=1e-6)


def test_cross_attention_equals_reference() -> None:
    torch.manual_seed(1)
    attn = CrossAttention(dim=8, k_v_dim=6, dim_head=4, heads=2)
    x, kv = torch.randn(3, 1, 8), torch.randn(3, 7, 6)
    k, v = attn.to_kv(attn.norm_kv(kv)).chunk(2, dim=-1)
    expected = attn.to_out(_reference_attention(attn.to_q(attn.norm_q(x)), k, v, 2))
    torch.testing.assert_close(attn(x, kv), expected, rtol=1e-5, atol=1e-6)


def test_resampler_layout_matches_official_keys() -> None:
    model = PerceiverResampler(dim=768, k_v_dim=1024, depth=1, dim_head=64, heads=8, num_latents=16, ff_mult=2)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "latents": (16, 768),
        "layers.0.0.norm_media.weight": (1024,), "layers.0.0.norm_media.bias": (1024,),
        "layers.0.0.norm_latents.weight": (768,), "layers.0.0.norm_latents.bias": (768,),
        "layers.0.0.to_q.weight": (512, 768), "layers.0.0.to_kv.weight": (1024, 1024),
        "layers.0.0.to_out.weight": (768, 512),
        "layers.0.1.0.weight": (768,), "layers.0.1.0.bias": (768,),
        "layers.0.1.1.weight": (1536, 768), "layers.0.1.3.weight": (768, 1536),
        "norm.weight": (768,), "norm.bias": (768,),
    }


def test_resampler_residual_structure() -> None:
    torch.manual_seed(2)
    model = PerceiverResampler(dim=8, k_v_dim=6, depth=2, dim_head=4, heads=2, num_latents=3, ff_mult=2)
    media = torch.randn(2, 11, 6)
    lat = model.latents.expand(2, -1, -1)
    for attn, ff in model.layers:
        lat = attn(media, lat) + lat
        lat = ff(lat) + lat
    torch.testing.assert_close(model(media), F.layer_norm(lat, (8,), model.norm.weight, model.norm.bias))


def test_gated_block_starts_as_identity_and_ungated_does_not() -> None:
    torch.manual_seed(3)
    x, kv = torch.randn(2, 1, 8), torch.randn(2, 4, 6)
    gated = CrossAttentionBlock(8, 6, dim_head=4, heads=2, gated=True)
    assert torch.equal(gated(x, kv), x)
    assert {k for k in gated.state_dict() if "gate" in k} == {"attn_gate", "ff_gate"}
    ungated = CrossAttentionBlock(8, 6, dim_head=4, heads=2)
    assert not torch.allclose(ungated(x, kv), x)


def test_temporal_embedding_added_per_frame_and_dropout_per_view() -> None:
    torch.manual_seed(4)
    patcher = PerceiverPatcher(vision_width=6, embed_dim=8, num_frames=3, dim_head=4, heads=2, num_latents=2,
                               temporal_dropout=0.5)
    tokens = torch.randn(4, 3, 5, 6)  # (B, T, P, Dv)
    patcher.eval()
    out = patcher.add_temporal_embedding(tokens)
    torch.testing.assert_close(out, tokens + patcher.temporal_embedding[None, :, None, :])
    patcher.train()
    noisy = patcher.add_temporal_embedding(tokens, views=2) - tokens  # (B, T, P, Dv): dropped embedding
    dropped = noisy.abs() < 1e-6  # (B, T, P, Dv)
    torch.testing.assert_close(noisy[0], noisy[1])  # shared within a view
    torch.testing.assert_close(noisy[2], noisy[3])
    assert torch.equal(dropped[0], dropped[1]) and not torch.equal(dropped[0], dropped[2])  # fresh draw per view
    assert not torch.equal(dropped[0, :, 0], dropped[0, :, 1])  # drawn per token, as the original's repeat+dropout


def test_patcher_widths_come_from_the_backbone() -> None:
    patcher = build_patcher(PatcherConfig(heads=2, dim_head=4, num_latents=3), 10, 6, 2, True, 0.1)
    latents = patcher(torch.randn(2, 2, 5, 10))
    assert latents.shape == (2, 3, 6)
    baseline = build_patcher(PatcherConfig(name="transformer", heads=2), 10, 6, 2, False, 0.0)
    assert baseline(torch.randn(2, 2, 5, 10)).shape == (2, 1, 6)
    assert baseline.vision_adaptor.transformer_encoder.layers[0].linear1.out_features == 20


def test_spatial_embedding_starts_as_the_original_and_tells_token_positions_apart() -> None:
    torch.manual_seed(2)
    plain = build_patcher(PatcherConfig(heads=2, dim_head=4, num_latents=3), 10, 6, 2, True, 0.0)
    torch.manual_seed(2)
    spatial = build_patcher(PatcherConfig(heads=2, dim_head=4, num_latents=3, spatial_embedding=True),
                            10, 6, 2, True, 0.0, tokens_per_frame=5)
    assert spatial.spatial_embedding.shape == (5, 10)
    tokens = torch.randn(2, 2, 5, 10)
    plain.eval(), spatial.eval()
    torch.testing.assert_close(spatial(tokens), plain(tokens))  # zero at the start
    swapped = tokens[:, :, [1, 0, 2, 3, 4]]  # the same content at other positions
    torch.testing.assert_close(plain(swapped), plain(tokens))  # without it the patcher cannot tell
    spatial(swapped).sum().backward()
    assert spatial.spatial_embedding.grad.abs().sum() > 0
    with torch.no_grad():
        spatial.spatial_embedding.normal_()
    assert not torch.allclose(spatial(swapped), spatial(tokens))
    with pytest.raises(ValueError, match="positions"):
        spatial(torch.randn(2, 2, 4, 10))
    with pytest.raises(ValueError, match="perceiver option"):
        build_patcher(PatcherConfig(name="transformer", heads=2, spatial_embedding=True), 10, 6, 2, False, 0.0, 5)


def test_fusers_shapes_and_side_tuning_formula() -> None:
    torch.manual_seed(5)
    pooled, latents = torch.randn(3, 8), torch.randn(3, 4, 8)
    for name in ("xattn", "gated_xattn"):
        fuser = build_fuser(FuserConfig(name=name, heads=2, dim_head=4), 8, 8)
        assert fuser(pooled, latents).shape == (3, 8)
    gated = build_fuser(FuserConfig(name="gated_xattn", heads=2, dim_head=4), 8, 8)
    assert torch.equal(gated(pooled, latents), pooled)
    side = SideTuningFuser(8, 8)
    with torch.no_grad():
        side.alpha.fill_(1.0)
    w = torch.sigmoid(torch.tensor(1.0))
    expected = w * F.normalize(pooled, dim=-1) + (1 - w) * F.normalize(latents.mean(1), dim=-1)
    torch.testing.assert_close(side(pooled, latents), expected)
    assert build_fuser(FuserConfig(), 8, 8) is None
