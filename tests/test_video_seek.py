"""Seek-based PyAV decoding: the same frames as sequential decoding and decord, on long files of every kind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from paxion.data.synthetic.long_videos import LongVideoSpec, frame_times, write_long_video
from paxion.data.video import (
    VideoDecodeError,
    available_backends,
    load_clip,
    open_video,
    seek_fallbacks,
    segment_bounds,
)
from paxion.data.video.pyav import PyAVReader

SPECS = {
    "gop30": LongVideoSpec(seconds=20, width=96, height=64, gop=30, bframes=0),
    "gop250_b3": LongVideoSpec(seconds=30, width=96, height=64, gop=250, bframes=3),
    "vfr_gop90_b2": LongVideoSpec(seconds=24, width=96, height=64, gop=90, bframes=2, vfr=True),
}
OTHER_BACKENDS = [b for b in ("decord", "torchcodec") if b in available_backends()]


@pytest.fixture(scope="session")
def long_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Long H.264 files (20-30 s, 30 fps) with different GOPs, B-frames and a variable frame rate, plus mkv/ts."""
    root = tmp_path_factory.mktemp("long_videos")
    files = {name: write_long_video(root / spec.file_name(), spec) for name, spec in SPECS.items()}
    for ext, fmt in (("mkv", "matroska"), ("ts", "mpegts")):  # same packets, other containers' indexes
        out = root / f"gop250_b3.{ext}"
        with av.open(str(files["gop250_b3"])) as src, av.open(str(out), "w", format=fmt) as dst:
            stream = dst.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(src.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    dst.mux(packet)
        files[f"gop250_b3_{ext}"] = out
    return files


def index_sets(n: int) -> list[torch.Tensor]:
    """Sparse, dense, repeated, unsorted, first/last frame."""
    rng = np.random.default_rng(n)
    return [
        torch.from_numpy(np.linspace(1, n - 1, 16).astype(np.int64)),
        torch.tensor([0, n - 1]),
        torch.tensor([n - 1, 5, 5, n // 2, n // 2 + 1, 3]),
        torch.arange(n // 3, n // 3 + 40),
        torch.from_numpy(rng.integers(0, n, 12)),
    ]


def frame_number(frame: torch.Tensor) -> int:
    """Read the binary frame counter that long_videos draws on top of every frame. (C, H, W) -> int."""
    width, height = frame.shape[-1], frame.shape[-2]
    cell, rows = max(width // 16, 1), max(height // 12, 2)
    centres = torch.arange(16) * cell + cell // 2
    bits = frame[:, : rows - 1, centres].float().mean(dim=(0, 1)) > 128  # (16,)
    return int((bits.long() << torch.arange(16)).sum())


@pytest.mark.parametrize("name", [*SPECS, "gop250_b3_mkv", "gop250_b3_ts"])
def test_seek_equals_sequential_and_names_the_right_frames(long_videos, name):
    path = long_videos[name]
    with open_video(path, "pyav") as seek, open_video(path, "pyav_sequential") as seq:
        assert seek.num_frames == seq.num_frames > 500
        for indices in index_sets(seek.num_frames):
            a, b = seek.get_frames(indices), seq.get_frames(indices)
            assert a.shape[0] == len(indices) and a.dtype == torch.uint8
            assert torch.equal(a, b), f"{name}: seek and sequential differ at {indices.tolist()}"
            assert [frame_number(f) for f in a] == indices.tolist()
    assert str(path) not in seek_fallbacks()


def test_skipping_non_reference_pictures_changes_no_pixel(long_videos):
    path = long_videos["gop250_b3"]
    indices = index_sets(900)[0]
    with PyAVReader(path, skip_nonref=True) as skip, PyAVReader(path, skip_nonref=False) as full:
        assert torch.equal(skip.get_frames(indices), full.get_frames(indices))
        assert skip.frames_decoded < full.frames_decoded  # B-frames between wanted ones were skipped


@pytest.mark.parametrize("other", OTHER_BACKENDS)
@pytest.mark.parametrize("name", list(SPECS))
def test_other_backends_return_the_same_frames(long_videos, name, other):
    path = long_videos[name]
    with open_video(path, "pyav") as ref, open_video(path, other) as alt:
        assert alt.num_frames == ref.num_frames
        for indices in index_sets(ref.num_frames)[:3]:
            assert torch.equal(ref.get_frames(indices), alt.get_frames(indices)), f"{other} differs on {name}"


def test_variable_frame_rate_indices_follow_presentation_order(long_videos):
    spec, path = SPECS["vfr_gop90_b2"], long_videos["vfr_gop90_b2"]
    with open_video(path, "pyav") as reader, av.open(str(path)) as container:
        pts = sorted(p.pts for p in container.demux(container.streams.video[0]) if p.size > 0)
        assert reader.num_frames == len(pts)
        times = np.asarray(pts) * float(container.streams.video[0].time_base)
    assert np.allclose(times - times[0], frame_times(spec), atol=1.5e-3)  # ms time base


def test_late_window_decodes_from_the_keyframe_before_it_only(long_videos):
    path, gop = long_videos["gop30"], SPECS["gop30"].gop
    window = (15.3, 17.3)  # seconds, late in a 20 s file
    with open_video(path, "pyav") as reader:
        start, end = segment_bounds(*window, reader.fps, reader.num_frames)
        reader.get_frames(torch.arange(start, end + 1, 7))
        assert reader.frames_decoded <= (end - start + 1) + gop
    for backend in ["pyav_sequential", *OTHER_BACKENDS]:
        a, ia = load_clip(path, 8, segment=window, size=(32, 48))
        b, ib = load_clip(path, 8, backend=backend, segment=window, size=(32, 48))
        assert torch.equal(ia, ib) and torch.equal(a, b)
        assert ia.min() >= start and ia.max() <= end


def test_wrong_container_index_is_replaced_by_the_packet_index(long_videos, tmp_path):
    path = tmp_path / "copy.mp4"
    path.write_bytes(long_videos["gop250_b3"].read_bytes())
    indices = torch.tensor([100, 400, 401, 800])
    with open_video(path, "pyav_sequential") as seq:
        expected = seq.get_frames(indices)
    with open_video(path, "pyav") as reader:
        assert not reader._index.exact  # mp4: the container's own index, nothing demuxed at open
        reader._index = dataclasses.replace(reader._index, dts=reader._index.dts + 1)  # no packet matches it
        assert torch.equal(reader.get_frames(indices), expected)
        assert reader._index.exact
    assert str(path) not in seek_fallbacks()


def test_wrong_packet_index_falls_back_to_sequential_and_is_counted(long_videos, tmp_path):
    path = tmp_path / "copy.mkv"
    path.write_bytes(long_videos["gop250_b3_mkv"].read_bytes())
    indices = torch.tensor([100, 400, 401, 800])
    with open_video(path, "pyav_sequential") as seq:
        expected = seq.get_frames(indices)
    with open_video(path, "pyav") as reader:
        good = reader._index
        assert good.exact  # Matroska cues list keyframes only: the packets were indexed
        bad_pts = np.delete(good.pts, 300)  # one frame missing: frames after 300 are named one too early
        reader._index = dataclasses.replace(good, pts=np.concatenate([bad_pts, bad_pts[-1:] + 1]))
        assert torch.equal(reader.get_frames(indices), expected)
        assert torch.equal(reader.get_frames(indices), expected)  # stays sequential afterwards
    assert "disagreed with the index" in seek_fallbacks()[str(path)]


@pytest.mark.parametrize("name, count", [("gop30", 600), ("gop250_b3_mkv", 900)])
def test_packets_without_timestamps_are_read_sequentially(long_videos, tmp_path, monkeypatch, name, count):
    """A stream without a usable index (faked: no container index, the packet pass reads every packet and
    then finds no timestamps) is counted from a fresh start (Matroska declares no count) and decoded from the start."""
    import paxion.data.video.pyav as pyav_module

    path = tmp_path / f"copy{long_videos[name].suffix}"
    path.write_bytes(long_videos[name].read_bytes())
    why = "packets without presentation timestamps"
    monkeypatch.setattr(pyav_module, "index_from_container", lambda stream: None)
    monkeypatch.setattr(pyav_module, "index_from_packets", lambda c, s: (sum(1 for _ in c.demux(s)), (None, why))[1])
    with open_video(path, "pyav") as reader:
        assert reader.num_frames == count
        frames = reader.get_frames(torch.tensor([count - 10, 3]))
        assert reader.frames_decoded == count - 9  # from the start of the file up to the last wanted frame
    assert [frame_number(f) for f in frames] == [count - 10, 3]
    assert seek_fallbacks()[str(path)] == why


def test_truncated_file_with_index_up_front_raises_naming_the_file(long_videos, tmp_path):
    """mp4 with its index first (faststart) cut at 70 %: the index promises frames the file no longer holds."""
    src, full = long_videos["gop30"], tmp_path / "faststart.mp4"
    with av.open(str(src)) as i, av.open(str(full), "w", options={"movflags": "faststart"}) as o:
        stream = o.add_stream_from_template(i.streams.video[0])
        for packet in i.demux(i.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                o.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.7)])
    with open_video(cut, "pyav") as reader:
        assert reader.num_frames == 600  # what the index says
        assert frame_number(reader.get_frames(torch.tensor([10]))[0]) == 10  # the early part still decodes
    with pytest.raises(VideoDecodeError, match="cut.mp4: truncated"):
        load_clip(cut, 8)
