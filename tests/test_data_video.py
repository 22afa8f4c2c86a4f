"""Frame sampling faithful to the original, and decoders that agree frame for frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paxion.data.synthetic.generate import encode_mp4
from paxion.data.video import (
    VideoDecodeError,
    available_backends,
    load_clip,
    open_video,
    sample_indices,
    segment_bounds,
    uniform_indices,
    whole_clip_bounds,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A real 40-frame H.264 clip with a moving bright square on blocky random texture."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 120, size=(40, 6, 8, 3), dtype=np.uint8)
    frames = blocks.repeat(8, axis=1).repeat(8, axis=2)  # (40, 48, 64, 3)
    for t in range(40):
        frames[t, 10:26, t : t + 16] = (230, 40, 40)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    encode_mp4(path, frames, fps=5, crf=10)
    return str(path), frames


def test_whole_clip_indices_skip_frame_zero_and_truncate():
    start, end = whole_clip_bounds(20)
    assert (start, end) == (1, 19)
    expected = [int(x) for x in np.linspace(1, 19, 8)]  # the original: linspace cast to int
    assert uniform_indices(start, end, 8).tolist() == expected
    assert expected == [1, 3, 6, 8, 11, 13, 16, 19]


def test_short_clip_repeats_frames():
    start, end = whole_clip_bounds(4)
    assert uniform_indices(start, end, 8).tolist() == [1, 1, 1, 1, 2, 2, 2, 3]


def test_segment_bounds_follow_the_original_rounding():
    assert segment_bounds(0.35, 1.03, 5.0, 100) == (1, 5)
    assert segment_bounds(2.0, 2.1, 5.0, 100) == (10, 11)  # equal -> end = start + 1
    assert segment_bounds(3.0, 50.0, 5.0, 20) == (15, 19)  # end clipped to len - 1
    with pytest.raises(ValueError, match="fps"):
        segment_bounds(0.0, 1.0, 0.0, 10)


@pytest.mark.parametrize("strategy", ["random", "jitter", "single"])
def test_training_strategies_are_seeded_and_in_range(strategy):
    draw = lambda seed: sample_indices(3, 40, 8, strategy, True, torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = draw(1), draw(1), draw(2)
    assert torch.equal(a, b)
    assert a.min() >= 3 and a.max() <= 40
    assert len(a) == (1 if strategy == "single" else 8)
    if strategy != "single":
        assert (a[1:] >= a[:-1]).all()
    assert not torch.equal(a, c) or strategy == "single"


def test_eval_strategies_are_deterministic():
    assert sample_indices(1, 19, 8, "jitter", False).tolist() == uniform_indices(1, 19, 8).tolist()
    middles = sample_indices(0, 15, 4, "random", False).tolist()
    assert middles == [2, 6, 10, 14]  # middle of each of 4 segments of 16 frames
    with pytest.raises(ValueError, match="strategy"):
        sample_indices(0, 5, 2, "bogus")


def test_pyav_decodes_the_encoded_frames(clip):
    path, frames = clip
    with open_video(path, "pyav") as reader:
        assert reader.num_frames == 40 and reader.fps == pytest.approx(5.0)
        idx = torch.tensor([0, 5, 5, 39, 12])
        out = reader.get_frames(idx)  # (T, C, H, W)
    assert out.shape == (5, 3, 48, 64) and out.dtype == torch.uint8
    ref = torch.from_numpy(frames[idx.numpy()]).permute(0, 3, 1, 2).float()
    assert (out.float() - ref).abs().mean() < 6  # lossy codec, but clearly the same pictures
    assert torch.equal(out[1], out[2])


@pytest.mark.parametrize("other", [b for b in ("pyav_sequential", "decord", "torchcodec") if b in available_backends()])
def test_backends_agree_frame_for_frame(clip, other):
    path, _ = clip
    idx = torch.tensor([1, 2, 7, 7, 20, 33, 39])
    with open_video(path, "pyav") as ref, open_video(path, other) as alt:
        assert alt.num_frames == ref.num_frames
        assert torch.equal(ref.get_frames(idx), alt.get_frames(idx))
    # resizing is one torch resize after decoding, so they agree at any size
    for size in (None, (32, 32), (24, 40)):
        a, _ = load_clip(path, 8, backend="pyav", size=size)
        b, _ = load_clip(path, 8, backend=other, size=size)
        assert torch.equal(a, b)


@pytest.mark.skipif("decord" not in available_backends(), reason="decord is not installed")
def test_pyav_and_decord_agree_at_the_model_size_on_synthaction(tmp_path):
    """Clips written at 64 px, read at the model's 32 px through the dataset path (resize_on_decode default)."""
    from paxion.data.datasets.actionbench import ActionBenchSSv2
    from paxion.data.synthetic import generate

    root = generate(tmp_path, seed=3, num_train=0, num_val=6, num_test=0, frames=8, size=64, workers=1)
    ann = root / "ActionBench/ssv2/shuffled_object_and_action_antonyms"
    videos = root / "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"
    clips = {}
    for decoder in ("pyav", "decord"):
        cfg = ActionBenchSSv2.Config(ann_root=str(ann), videos=str(videos), decoder=decoder)
        assert cfg.resize_on_decode
        ds = ActionBenchSSv2(cfg).build("val", num_frames=8, image_size=32, training=False)
        clips[decoder] = torch.stack([ds[i]["video"] for i in range(len(ds))])  # (N, T, C, 32, 32)
    assert clips["pyav"].shape == (6, 8, 3, 32, 32)
    assert torch.equal(clips["pyav"], clips["decord"])


def test_resize_on_decode_and_segments(clip):
    path, _ = clip
    video, idx = load_clip(path, 4, size=(32, 32))
    assert video.shape == (4, 3, 32, 32)
    assert idx.tolist() == uniform_indices(1, 39, 4).tolist()
    _, seg = load_clip(path, 4, segment=(1.0, 3.0), fps=5.0)
    assert seg.tolist() == uniform_indices(5, 15, 4).tolist()


def test_unreadable_files_raise_naming_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 50)
    for path in (empty, junk, tmp_path / "missing.mp4"):
        with pytest.raises(VideoDecodeError, match=path.name):
            load_clip(path, 4)
