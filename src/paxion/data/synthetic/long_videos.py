"""Long synthetic videos for decoder tests and benchmarks: minutes of H.264 with chosen GOP, B-frames and timing.

Not part of SynthAction's dataset; tests and ``benchmarks/decode.py`` write them once into a cache folder:

    from paxion.data.synthetic.long_videos import LongVideoSpec, write_long_video
    write_long_video("long.mp4", LongVideoSpec(seconds=180, width=640, height=360, gop=250, bframes=3))

Every frame is distinct: a textured background slides by a frame-dependent offset and a strip of 16
black/white blocks at the top spells the frame number in binary, so a decoder that returns a
neighbouring frame is caught by comparing pixels. ``vfr=True`` writes a variable frame rate (frame
durations cycling through 1/2, 1 and 3/2 of the nominal one) in a millisecond time base.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

VFR_STEPS = (0.5, 1.0, 1.5)  # frame durations, in nominal frame periods, cycled for vfr files


@dataclass(frozen=True)
class LongVideoSpec:
    seconds: float = 30.0
    fps: int = 30
    width: int = 160
    height: int = 96
    gop: int = 250  # keyframe interval in frames (x264's default)
    bframes: int = 0  # consecutive B-frames (x264 default 3)
    vfr: bool = False
    crf: int = 23
    preset: str = "veryfast"
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    def file_name(self) -> str:
        """A name that changes with every setting, for caching."""
        return (f"long_{self.seconds:g}s_{self.fps}fps_{self.width}x{self.height}_g{self.gop}_b{self.bframes}"
                f"{'_vfr' if self.vfr else ''}_crf{self.crf}_{self.preset}_s{self.seed}.mp4")


def _texture(spec: LongVideoSpec) -> np.ndarray:
    """Blocky random texture twice the frame size, smooth enough to compress well. -> (2H, 2W, 3) uint8."""
    rng = np.random.default_rng(spec.seed)
    block = 8
    coarse = rng.integers(30, 200, size=(2 * spec.height // block + 1, 2 * spec.width // block + 1, 3),
                          dtype=np.uint8)
    return coarse.repeat(block, axis=0).repeat(block, axis=1)[: 2 * spec.height, : 2 * spec.width]


def render_frame(texture: np.ndarray, index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index``: a window of the texture moving on a slow loop, frame number in binary on top. -> (H, W, 3)."""
    dy = int(height / 2 * (1 + np.sin(index / 37.0)))
    dx = int(width / 2 * (1 + np.cos(index / 53.0)))
    frame = texture[dy : dy + height, dx : dx + width].copy()
    bits = (index >> np.arange(16)) & 1  # (16,) least significant first
    cell = max(width // 16, 1)
    strip = np.repeat(bits.astype(np.uint8) * 255, cell)[:width]  # (<= W,)
    frame[: max(height // 12, 2), : strip.shape[0]] = strip[None, :, None]
    return frame


def frame_times(spec: LongVideoSpec) -> np.ndarray:
    """Presentation time of every frame in seconds. -> (N,) float64."""
    n = spec.num_frames
    if not spec.vfr:
        return np.arange(n, dtype=np.float64) / spec.fps
    steps = np.resize(np.asarray(VFR_STEPS), n) / spec.fps
    return np.concatenate([[0.0], np.cumsum(steps[:-1])])


def write_long_video(path: str | Path, spec: LongVideoSpec = LongVideoSpec()) -> Path:
    """Encode ``spec`` to ``path`` (H.264 mp4) unless it is already there; atomic rename at the end."""
    import av

    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    texture = _texture(spec)
    millis = np.round(frame_times(spec) * 1000).astype(np.int64)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        if spec.vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {
            "preset": spec.preset,
            "crf": str(spec.crf),
            "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes={spec.bframes}",
        }
        for i in range(spec.num_frames):
            frame = av.VideoFrame.from_ndarray(render_frame(texture, i, spec.width, spec.height), format="rgb24")
            if spec.vfr:
                frame.pts, frame.time_base = int(millis[i]), Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return path
