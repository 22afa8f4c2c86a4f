"""Open-VCLIP temporal CLIP backbone: temporal attention variants, CLIP state dict, checkpoint files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paxion.backbones.base import CheckpointError
from paxion.backbones.openvclip import SIZES, build_openvclip_backbone
from paxion.backbones.openvclip.convert import fp16_cast_keys, read_clip_state
from paxion.backbones.openvclip.jit_archive import read_torchscript_tensors
from paxion.backbones.openvclip.temporal import NEIGHBOUR_OFFSETS, clip_end_mask, expand_keys

VARIANTS = ["none", "expand_temporal_view", "expand_temporal_view_step2", "expand_temporal_view_step3", "channel_shift"]


def tiny(**overrides):
    torch.manual_seed(0)
    return build_openvclip_backbone("tiny", **overrides).eval()


def test_full_sizes_have_openai_clip_parameter_counts():
    expected = {"b32": 151_277_313, "b16": 149_620_737, "l14": 427_616_513}  # OpenAI CLIP ViT-B/32, B/16, L/14
    with torch.device("meta"):
        for size, count in expected.items():
            assert sum(p.numel() for p in build_openvclip_backbone(size).parameters()) == count


@pytest.mark.parametrize("kind", VARIANTS)
def test_parameter_free_variants_keep_the_image_clip_state_dict(kind):
    plain = {k: v.shape for k, v in tiny(temporal_modeling="none").state_dict().items()}
    temporal = {k: v.shape for k, v in tiny(temporal_modeling=kind).state_dict().items()}
    assert temporal == plain


EXPANSIONS = [("expand_temporal_view", 3), ("expand_temporal_view_step2", 5), ("expand_temporal_view_step3", 7)]


@pytest.mark.parametrize("kind,count", EXPANSIONS)
def test_keys_grow_to_k_times_tokens(kind, count):
    x = torch.randn(2, 5, 3, 7, 4)  # (B, T, h, N, d)
    out = expand_keys(x, NEIGHBOUR_OFFSETS[kind])
    assert out.shape == (2, 5, 3, 7 * count, 4)
    # the last block is the frame itself; the first is frame t+1, zero past the end
    assert torch.equal(out[..., -7:, :], x)
    assert torch.equal(out[:, :-1, :, :7], x[:, 1:])
    assert not out[:, -1, :, :7].any()


def test_clip_end_mask_hides_missing_neighbours_only():
    mask = clip_end_mask(4, 2, NEIGHBOUR_OFFSETS["expand_temporal_view"], torch.device("cpu"))  # (T, 1, 1, 3N)
    assert mask.shape == (4, 1, 1, 6)
    assert mask[0, 0, 0].tolist() == [True, True, False, False, True, True]  # no t-1 for the first frame
    assert mask[3, 0, 0].tolist() == [False, False, True, True, True, True]  # no t+1 for the last frame
    assert mask[1:3].all()


@pytest.mark.parametrize("kind", ["expand_temporal_view", "expand_temporal_view_step2"])
def test_identical_frames_middle_equals_clip_ends_differ(kind):
    # end effects travel `reach` frames per layer: frames further than layers*reach from both ends stay clean
    reach, layers = max(NEIGHBOUR_OFFSETS[kind]), SIZES["tiny"].vision_layers
    frames = 2 * layers * reach + 2
    video = torch.randn(1, 1, 3, 32, 32).expand(1, frames, 3, 32, 32)
    with torch.no_grad():
        plain, _ = tiny(temporal_modeling="none").frame_embeddings(video)
        zero_filled, _ = tiny(temporal_modeling=kind).frame_embeddings(video)
        masked, _ = tiny(temporal_modeling=kind, mask_clip_ends=True).frame_embeddings(video)
    middle = slice(layers * reach, frames - layers * reach)
    torch.testing.assert_close(zero_filled[:, middle], plain[:, middle], atol=1e-5, rtol=1e-5)
    assert (zero_filled[:, 0] - plain[:, 0]).abs().max() > 1e-4  # zero keys take softmax mass
    assert (zero_filled[:, -1] - plain[:, -1]).abs().max() > 1e-4
    torch.testing.assert_close(masked, plain, atol=1e-5, rtol=1e-5)  # masked: every frame sees only copies


def test_frames_interact_only_with_temporal_attention():
    video = torch.randn(1, 4, 3, 32, 32)
    changed = video.clone()
    changed[:, 3] = torch.randn(3, 32, 32)
    for kind, expect_change in [("none", False), ("expand_temporal_view", True), ("channel_shift", True)]:
        model = tiny(temporal_modeling=kind)
        with torch.no_grad():
            before, after = model.frame_embeddings(video)[0], model.frame_embeddings(changed)[0]
        assert bool((before[:, 2] - after[:, 2]).abs().max() > 1e-6) == expect_change, kind
        torch.testing.assert_close(before[:, 0], after[:, 0])  # frame 0 is 3 frames away: out of reach


def test_channel_shift_layout_switch_changes_the_result():
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        original = tiny(temporal_modeling="channel_shift").frame_embeddings(video)[0]
        fixed = tiny(temporal_modeling="channel_shift", fixed_channel_shift=True).frame_embeddings(video)[0]
    assert (original - fixed).abs().max() > 1e-5


def test_text_tower_is_causal_and_pools_at_eot():
    model = tiny()
    tokens = model.tokenize(["a video of a person doing push ups.", "a photo of x."])
    assert tokens["input_ids"].shape == (2, SIZES["tiny"].context_length)
    with torch.no_grad():
        pooled, hidden = model.encode_text(tokens)
        changed = dict(tokens)
        ids = tokens["input_ids"].clone()
        ids[:, -1] = 5  # after the EOT: must not change the pooled output
        changed["input_ids"] = ids
        pooled_changed, _ = model.encode_text(changed)
    assert pooled.shape == (2, SIZES["tiny"].embed_dim)
    torch.testing.assert_close(pooled, pooled_changed)


# ----------------------------------------------------------------------------- checkpoint files


class Holder(nn.Module):
    """A scripted stand-in for OpenAI's JIT CLIP: the same tensor names, attributes and metadata."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _holder_tree(state: dict[str, torch.Tensor], text_layers: int) -> nn.Module:
    root = Holder()
    for key, value in state.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, Holder())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(value.half(), requires_grad=False))
    for name, value in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 64)):
        root.register_buffer(name, torch.tensor(value))
    for i in range(text_layers):  # OpenAI's text blocks keep their causal mask as a plain attribute
        getattr(root.transformer.resblocks, str(i)).attn_mask = torch.full((16, 16), float("-inf")).triu(1)
    return root


def _clip_state(model) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v.clone() for k, v in model.state_dict().items()}


def test_jit_archive_read_without_running_and_loaded(tmp_path):
    source = tiny()
    state = _clip_state(source)
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.script(_holder_tree(state, SIZES["tiny"].text_layers)).save(str(path))
    tensors = read_torchscript_tensors(path)
    assert {"input_resolution", "transformer.resblocks.0.attn_mask"} <= set(tensors)
    target = tiny(temporal_modeling="expand_temporal_view")
    torch.manual_seed(1)
    for p in target.parameters():
        nn.init.normal_(p)
    report = target.load_official_checkpoint(str(path))
    assert sorted(report.unexpected) == sorted(
        ["input_resolution", "context_length", "vocab_size"]
        + [f"transformer.resblocks.{i}.attn_mask" for i in range(2)]
    )
    assert len(report.loaded) == len(state)
    for key, value in target.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, state[key[len("model.") :]].half().float(), rtol=0, atol=0)


class FakeCfgNode(dict):
    """Like yacs' CfgNode: a dict subclass that SlowFast pickles into its checkpoints."""


def test_release_and_slowfast_checkpoints_load_every_key(tmp_path):
    source = tiny()
    release = {"model." + k: v for k, v in _clip_state(source).items()}
    swa = tmp_path / "swa_2_22.pth"
    torch.save({"model_state": release}, swa)
    pyth = tmp_path / "checkpoint_epoch_00003.pyth"
    cfg = FakeCfgNode(TRAIN=FakeCfgNode(ENABLE=True))
    torch.save({"epoch": 3, "model_state": release, "optimizer_state": {"state": {}}, "cfg": cfg}, pyth)
    plain = tmp_path / "clip_state.pt"
    torch.save(_clip_state(source), plain)
    cast = {"model." + k for k in fp16_cast_keys(list(_clip_state(source)), "expand_temporal_view")}
    assert cast and len(cast) < len(release)
    for path, fp16_cast in ((swa, True), (pyth, True), (plain, True), (plain, False)):
        target = tiny(clip_fp16_cast=fp16_cast)
        for p in target.parameters():
            nn.init.zeros_(p)
        report = target.load_official_checkpoint(str(path))
        assert len(report.loaded) == len(release)
        # a CLIP file goes through the original's fp16 round trip; release/SlowFast files are read as stored
        rounded = cast if path is plain and fp16_cast else set()
        for key, value in target.state_dict().items():
            stored = source.state_dict()[key]
            expected = stored.half().float() if key in rounded else stored
            assert torch.equal(value, expected), (path.name, fp16_cast, key)
            if key in rounded and stored.abs().sum() > 0:  # zero-initialised biases are exact in fp16
                assert not torch.equal(value, stored), key


def test_bad_files_name_the_key(tmp_path):
    state = _clip_state(tiny())
    missing = dict(state)
    missing.pop("visual.proj")
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="missing.pt.*visual.proj"):
        tiny().load_official_checkpoint(str(tmp_path / "missing.pt"))
    extra = {**state, "visual.stadapt_down_1.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="stadapt_down_1"):
        tiny().load_official_checkpoint(str(tmp_path / "extra.pt"))
    torch.save({"model_state": {"visual.proj": torch.zeros(1)}}, tmp_path / "noprefix.pth")
    with pytest.raises(CheckpointError, match="'model.' prefix"):
        read_clip_state(tmp_path / "noprefix.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_clip_state(tmp_path / "absent.pt")


def test_full_size_loads_on_meta(tmp_path):
    with torch.device("meta"):
        model = build_openvclip_backbone("b32")
    assert all(p.is_meta for p in model.parameters())
    assert model.tokens_per_frame == 50 and model.preprocess.num_frames == 8


@pytest.mark.parametrize("kind", ["cross_frame_attend", "stadapt_zeroinit"])
def test_parameter_adding_variants_load_clip_and_keep_their_modules(kind, tmp_path):
    source = tiny()
    path = tmp_path / "clip.pt"
    torch.save(_clip_state(source), path)
    model = tiny(temporal_modeling=kind)
    added = sorted(set(model.state_dict()) - set(source.state_dict()))
    names = ("message_fc", "message_ln", "message_attn") if kind == "cross_frame_attend" else ("stadapt_",)
    assert added and all(any(n in k for n in names) for k in added)
    report = model.load_official_checkpoint(str(path))
    assert sorted(report.missing) == sorted(k[len("model."):] for k in added)
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        out, _ = model.frame_embeddings(video)
        image_clip = tiny(temporal_modeling="none")
        image_clip.load_official_checkpoint(str(path))  # the same fp16-rounded weights
        plain, _ = image_clip.frame_embeddings(video)
    assert out.shape == (1, 4, SIZES["tiny"].embed_dim)
    if kind == "stadapt_zeroinit":  # zero-initialised adapter: exactly image CLIP until trained
        torch.testing.assert_close(out, plain)
    else:
        assert (out - plain).abs().max() > 1e-5


# ----------------------------------------------------------------------------- real files (PAXION_CKPT_ROOT)

REAL_FILES = [
    ("b32", "clip/ViT-B-32.pt"),
    ("b16", "clip/ViT-B-16.pt"),
    ("l14", "clip/ViT-L-14.pt"),
    ("b16", "openvclip/openvclip-b16/swa_2_22.pth"),
]


@pytest.mark.weights
@pytest.mark.parametrize("size,relative", REAL_FILES)
def test_real_clip_and_release_files_load_every_key(size, relative):
    import os
    from pathlib import Path

    path = Path(os.environ.get("PAXION_CKPT_ROOT", "")) / relative
    if not path.is_file():
        pytest.skip(f"{relative} not under PAXION_CKPT_ROOT")
    model = build_openvclip_backbone(size).eval()
    report = model.load_official_checkpoint(str(path))
    assert len(report.loaded) == len(model.state_dict())
    video = torch.randn(1, 8, 3, 224, 224)
    with torch.no_grad():
        frames, _ = model.frame_embeddings(video)
    assert frames.shape == (1, 8, model.embed_dim) and torch.isfinite(frames).all()
