"""The re-encoding tool: fps and size, resumable, never writes into the source folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paxion.data.synthetic.generate import encode_mp4
from paxion.data.video import open_video
from paxion.tools.preprocess_videos import convert, plan


def test_reencode_to_fps_and_size_then_skip(tmp_path):
    frames = np.zeros((60, 40, 48, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 250, 60, dtype=np.uint8)[:, None, None]  # brightness ramp over time
    src_dir, dst_dir = tmp_path / "raw", tmp_path / "out"
    (src_dir / "a").mkdir(parents=True)
    encode_mp4(src_dir / "a" / "clip.mp4", frames, fps=30)  # 2 s at 30 fps
    pairs = plan(src_dir, dst_dir)
    assert pairs == [(src_dir / "a" / "clip.mp4", dst_dir / "a" / "clip.mp4")]
    assert convert(*pairs[0], fps=5, size=32, use_ffmpeg=False) == "done"
    reader = open_video(pairs[0][1])
    assert reader.num_frames == 10 and reader.fps == pytest.approx(5.0)
    video = reader.get_frames(torch.arange(10))
    assert video.shape == (10, 3, 32, 32)
    red = video[:, 0].float().mean((1, 2))
    assert (red[1:] > red[:-1]).all()  # frames kept in time order
    assert convert(*pairs[0], fps=5, size=32, use_ffmpeg=False) == "skipped"
    with pytest.raises(ValueError, match="outside"):
        plan(src_dir, src_dir / "converted")
