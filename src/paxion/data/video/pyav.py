"""PyAV decoding: keyframe seeking by default, sequential decoding as the reference and the fallback.

Sequential (the reference): frame ``i`` is the ``i``-th frame the decoder puts out from the start of
the file; decoding stops after the last wanted frame.

Seeking: one pass over the packets (demuxing only, no decoding) gives every frame's presentation
timestamp, and frame ``i`` is the one with the ``i``-th smallest, so the same index names the same
frame as the sequential reader. Wanted frames are grouped into runs that share a decoding start; for
each run the reader seeks to the keyframe at or before its first frame, decodes forward and stops at
its last. Only wanted frames are converted and kept, so decoding holds the returned frames plus the
decoder's own reference pictures (less than one GOP). Every decoded frame is checked against the
index: after the seek the frames must come out with exactly the timestamps the index predicts, in
order, none missing.

Fallback: a file whose packets carry no timestamps, repeat one, are marked for discarding (edit lists)
or disagree with the container's frame count, or whose decoding does not match the index, is read
sequentially instead. Such files are logged once per process and listed by :func:`seek_fallbacks`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from einops import rearrange

from paxion.data.video.backends import ClosingReader
from paxion.data.video.errors import VideoDecodeError

logger = logging.getLogger(__name__)

_FALLBACKS: dict[str, str] = {}  # path -> why seeking was not used (per process)


def seek_fallbacks() -> dict[str, str]:
    """Files this process read sequentially because their index was missing or wrong: {path: reason}."""
    return dict(_FALLBACKS)


class _IndexMismatch(Exception):
    """Seek-based decoding disagreed with the packet index; the caller falls back to sequential."""


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps and keyframes of one video stream, in ``stream.time_base`` units."""

    pts: np.ndarray  # (N,) int64, ascending: frame i's timestamp
    key_ranks: np.ndarray  # (K,) int64, ascending: frame index of every decoding start (keyframes; 0 first)
    key_seek: np.ndarray  # (K,) int64: the timestamp to seek to for each decoding start (its dts)

    def runs(self, wanted: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Group ascending frame indices into [(position in key_ranks, indices)] decoded from one start.

        A frame joins the previous run unless a keyframe lies after that run's last frame and at or
        before it: then seeking there skips decoding the frames in between.
        """
        starts = np.searchsorted(self.key_ranks, wanted, side="right") - 1  # (W,)
        runs: list[tuple[int, list[int]]] = []
        for frame, start in zip(wanted.tolist(), starts.tolist()):
            if runs and self.key_ranks[start] <= runs[-1][1][-1]:
                runs[-1][1].append(frame)
            else:
                runs.append((start, [frame]))
        return [(start, np.asarray(frames, dtype=np.int64)) for start, frames in runs]


def count_frames(container, stream) -> int:
    """The container's frame count, or failing that its non-empty packets (what decord's index gives).

    Matroska stores no decoding timestamps, so B-frame files have packets without one: they count too.
    """
    return int(stream.frames) or sum(1 for p in container.demux(stream) if p.size > 0)


def build_index(container, stream) -> tuple[Optional[FrameIndex], str]:
    """Demux every packet of ``stream`` -> (index, "") or (None, why the file cannot be seeked exactly)."""
    pts, dts, key = [], [], []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # end-of-stream marker
        if packet.pts is None:
            return None, "packets without presentation timestamps"
        if packet.is_discard:
            return None, "packets marked for discarding (edit list)"
        pts.append(packet.pts)
        dts.append(packet.pts if packet.dts is None else packet.dts)
        key.append(packet.is_keyframe)
    pts_a, dts_a, key_a = np.asarray(pts, np.int64), np.asarray(dts, np.int64), np.asarray(key, bool)
    declared = int(stream.frames)
    if declared and declared != len(pts_a):
        return None, f"{len(pts_a)} packets but the container declares {declared} frames"
    order = np.argsort(pts_a, kind="stable")
    sorted_pts = pts_a[order]
    if len(sorted_pts) == 0 or np.any(sorted_pts[1:] == sorted_pts[:-1]):
        return None, "no packets" if len(sorted_pts) == 0 else "repeated presentation timestamps"
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    key_order = np.argsort(rank[key_a])
    key_ranks, key_seek = rank[key_a][key_order], dts_a[key_a][key_order]
    if len(key_ranks) == 0 or key_ranks[0] != 0:  # decoding from the very start is always a valid start
        key_ranks = np.concatenate([[0], key_ranks])
        key_seek = np.concatenate([[dts_a.min()], key_seek])
    return FrameIndex(sorted_pts, key_ranks, key_seek), ""


def _to_tensor(found: dict[int, np.ndarray], indices: torch.Tensor) -> torch.Tensor:
    """{frame index: (H, W, C)} in the requested order, repeats included. -> uint8 (T, C, H, W)."""
    order = [found[i] for i in indices.tolist()]
    return rearrange(torch.from_numpy(np.stack(order)), "t h w c -> t c h w")


class PyAVReader(ClosingReader):
    """PyAV at native size; ``seek=True`` (default) seeks to keyframes, ``seek=False`` decodes from the start.

    Frames are the decoder's pictures converted to RGB uint8 by PyAV (no resizing). Open readers hold
    the file open; use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: Path, seek: bool = True, skip_nonref: bool = True) -> None:
        import av

        self.path, self.skip_nonref = path, skip_nonref
        self.frames_decoded = 0  # pictures the decoder has put out so far (what seeking saves)
        self._container = None
        self._index: Optional[FrameIndex] = None
        try:
            container = av.open(str(path))
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            if seek:
                self._index, why = build_index(container, stream)
                if self._index is None:
                    self._fall_back(why)
                    container.seek(0)
            self.num_frames = len(self._index.pts) if self._index is not None else count_frames(container, stream)
        except (av.FFmpegError, IndexError) as exc:
            raise VideoDecodeError(f"{path}: cannot open video: {exc}") from exc
        if self._index is None:
            container.close()
        else:
            self._container = container
        if self.num_frames == 0:
            self.close()
            raise VideoDecodeError(f"{path}: video has no frames")

    def _fall_back(self, why: str) -> None:
        key = str(self.path)
        if key not in _FALLBACKS:
            logger.warning("%s: decoding sequentially instead of seeking: %s", key, why)
            _FALLBACKS[key] = why
        self._index = None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __del__(self) -> None:
        self.close()

    def get_frames(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (T,) in [0, num_frames) -> uint8 (T, C, H, W) at native size."""
        import av

        wanted = np.unique(indices.numpy().astype(np.int64))  # (W,) ascending
        if len(wanted) == 0:
            raise ValueError(f"{self.path}: no frame indices given")
        if wanted[0] < 0 or wanted[-1] >= self.num_frames:
            raise IndexError(f"{self.path}: frame indices {wanted.tolist()} outside [0, {self.num_frames})")
        if self._index is not None:
            try:
                return _to_tensor(self._seek_decode(wanted), indices)
            except (_IndexMismatch, av.FFmpegError) as exc:
                self._fall_back(f"seek-based decoding disagreed with the index: {exc}")
                self.close()
        return _to_tensor(self._sequential_decode(wanted), indices)

    def _seek_decode(self, wanted: np.ndarray) -> dict[int, np.ndarray]:
        found: dict[int, np.ndarray] = {}
        for start, frames in self._index.runs(wanted):
            self._decode_run(start, frames, found)
        return found

    def _decode_run(self, start: int, frames: np.ndarray, found: dict[int, np.ndarray]) -> None:
        """Seek to decoding start ``start`` and decode forward until ``frames[-1]``, keeping ``frames``.

        The seek aims at the keyframe's presentation timestamp (what mp4 and Matroska indexes hold);
        when the demuxer lands after the keyframe it is retried at the keyframe's decoding timestamp,
        then at the start of the file.
        """
        index = self._index
        first = int(index.key_ranks[start])
        targets = dict.fromkeys([int(index.pts[first]), int(index.key_seek[start]), int(index.key_seek[0])])
        for target in targets:
            if self._decode_from(target, first, frames, found):
                return
        raise _IndexMismatch(f"no seek lands at or before frame {first}")

    def _decode_from(self, target: int, first: int, frames: np.ndarray, found: dict[int, np.ndarray]) -> bool:
        """Decode frames ``first..frames[-1]`` after seeking to ``target``; False when the seek landed late."""
        index, container = self._index, self._container
        stream = container.streams.video[0]
        container.seek(target, stream=stream, backward=True, any_frame=False)
        wanted, keep_pts = frames.tolist(), set(index.pts[frames].tolist())
        first_pts, landed, previous, pending = index.pts[first], False, first - 1, 0  # pending: next in wanted
        codec = stream.codec_context
        for packet in container.demux(stream):
            if self.skip_nonref:  # a picture no other picture refers to is decoded only when wanted
                codec.skip_frame = "DEFAULT" if packet.pts in keep_pts else "NONREF"
            for frame in codec.decode(packet):
                self.frames_decoded += 1
                if frame.pts is None:
                    raise _IndexMismatch("a decoded frame has no timestamp")
                if not landed:
                    if frame.pts > first_pts:
                        return False  # the demuxer went past the keyframe
                    landed = True
                if frame.pts < first_pts:
                    continue  # before the start: an open GOP's leading frames, or an earlier seek point
                rank = min(int(np.searchsorted(index.pts, frame.pts)), len(index.pts) - 1)
                gap_ok = rank > previous if self.skip_nonref else rank == previous + 1
                if not gap_ok or rank > wanted[pending] or index.pts[rank] != frame.pts:
                    raise _IndexMismatch(f"decoded timestamp {frame.pts} after frame {previous}")
                if rank == wanted[pending]:
                    found[rank] = frame.to_ndarray(format="rgb24")  # (H, W, C)
                    pending += 1
                    if pending == len(wanted):
                        return True
                previous = rank
        if not landed:
            return False  # nothing decodable after the seek point: it lay past the keyframe
        raise _IndexMismatch(f"decoding ended before frame {wanted[pending]}")

    def _sequential_decode(self, wanted: np.ndarray) -> dict[int, np.ndarray]:
        import av

        keep, last = set(wanted.tolist()), int(wanted[-1])
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for i, frame in enumerate(container.decode(stream)):
                    self.frames_decoded += 1
                    if i in keep:
                        found[i] = frame.to_ndarray(format="rgb24")
                    if i >= last:
                        break
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed: {exc}") from exc
        missing = [i for i in wanted.tolist() if i not in found]
        if missing:
            raise VideoDecodeError(f"{self.path}: truncated: frames {missing[:5]} of {self.num_frames} not decoded")
        return found
