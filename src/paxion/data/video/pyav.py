"""PyAV decoding: keyframe seeking by default, sequential decoding as the reference and the fallback.

Sequential (the reference): frame ``i`` is the ``i``-th frame the decoder puts out from the start of
the file; decoding stops after the last wanted frame.

Seeking: frame ``i`` is the frame with the ``i``-th smallest presentation timestamp, which is the same
frame (see :mod:`paxion.data.video.pyav_index` for how the ranks are known). Wanted frames are grouped
into runs that share a decoding start; for each run the reader seeks to the keyframe at or before its
first frame, decodes forward and stops at its last. Pictures that no other picture refers to are not
decoded unless wanted (``skip_nonref``). Only wanted frames are converted and kept, so decoding holds
the returned frames plus the decoder's own reference pictures (less than one GOP). Every decoded
frame is checked: after the seek the frames must come out in presentation order with the ranks the
index predicts, none of the wanted ones missing.

Fallback: when the container index does not match the decoded frames, the packets are indexed
instead; a file whose packets carry no timestamps, repeat one, are marked for discarding (edit lists)
or disagree with the container's frame count, or whose decoding does not match its packet index, is
read sequentially. Such files are logged once per process and listed by :func:`seek_fallbacks`.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from einops import rearrange

from paxion.data.video.backends import ClosingReader
from paxion.data.video.errors import VideoDecodeError
from paxion.data.video.pyav_index import FrameIndex, count_frames, index_from_container, index_from_packets

logger = logging.getLogger(__name__)

REORDER_SLACK = 16  # frames a packet's rank may still grow by after it is fed (decoder reordering, B-frames)
_FALLBACKS: dict[str, str] = {}  # path -> why seeking was not used (per process)


def seek_fallbacks() -> dict[str, str]:
    """Files this process read sequentially because their index was missing or wrong: {path: reason}."""
    return dict(_FALLBACKS)


class _IndexMismatch(Exception):
    """Seek-based decoding disagreed with the index."""


class _LandedLate(Exception):
    """The demuxer's seek went past the wanted keyframe; the next seek target is tried."""


class _ExactRanks:
    """Ranks from the packet index: every timestamp is known up front."""

    def __init__(self, index: FrameIndex, first: int, wanted: list[int]) -> None:
        self.pts, self.first_pts, self.landed = index.pts, index.pts[first], False
        self.wanted_pts = set(index.pts[wanted].tolist())

    def feed(self, packet) -> None:
        pass

    def may_be_wanted(self, packet, remaining: list[int]) -> bool:
        return packet.pts in self.wanted_pts

    def rank(self, pts: int) -> Optional[int]:
        """Frame index of a decoded timestamp; None before the run's start (leading or earlier frames)."""
        if not self.landed:
            if pts > self.first_pts:
                raise _LandedLate
            self.landed = True
        if pts < self.first_pts:
            return None
        rank = min(int(np.searchsorted(self.pts, pts)), len(self.pts) - 1)
        if self.pts[rank] != pts:
            raise _IndexMismatch(f"decoded timestamp {pts} is not in the index")
        return rank


class _LocalRanks:
    """Ranks from the container index: the keyframe's position plus the packets fed since, ordered by time."""

    def __init__(self, index: FrameIndex, first: int, wanted: list[int]) -> None:
        self.index, self.first = index, first
        self.base: Optional[int] = None
        self.base_pts = 0
        self.fed: list[int] = []  # sorted presentation timestamps of the packets fed since the keyframe

    @property
    def landed(self) -> bool:
        return self.base is not None

    def feed(self, packet) -> None:
        if self.base is None:
            pos = self.index.landing(packet.dts)
            if pos is None or pos > self.first:
                raise _LandedLate
            self.base, self.base_pts = pos, packet.pts
        if packet.pts is None or packet.pts < self.base_pts:
            raise _IndexMismatch("a frame decoded after the keyframe is displayed before it (open GOP)")
        bisect.insort(self.fed, packet.pts)

    def may_be_wanted(self, packet, remaining: list[int]) -> bool:
        if self.base is None or packet.pts is None:
            return True
        low = self.base + bisect.bisect_left(self.fed, packet.pts)
        nxt = bisect.bisect_left(remaining, low)
        return nxt < len(remaining) and remaining[nxt] <= low + REORDER_SLACK

    def rank(self, pts: int) -> Optional[int]:
        i = bisect.bisect_left(self.fed, pts)
        if self.base is None or i == len(self.fed) or self.fed[i] != pts:
            raise _IndexMismatch(f"decoded timestamp {pts} was never fed to the decoder")
        return self.base + i


class _Frames:
    """The wanted frames, written into one preallocated array as they are decoded (no second copy)."""

    def __init__(self, wanted: np.ndarray) -> None:
        self.wanted = wanted  # (W,) ascending unique frame indices
        self.buf: Optional[np.ndarray] = None  # (W, H, W, C) uint8
        self.have: set[int] = set()

    def put(self, rank: int, frame) -> None:
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, C)
        if self.buf is None:
            self.buf = np.empty((len(self.wanted), *rgb.shape), dtype=np.uint8)
        self.buf[int(np.searchsorted(self.wanted, rank))] = rgb
        self.have.add(rank)

    def missing(self) -> list[int]:
        return [i for i in self.wanted.tolist() if i not in self.have]

    def to_tensor(self, indices: torch.Tensor) -> torch.Tensor:
        """In the requested order, repeats included. -> uint8 (T, C, H, W)."""
        video = torch.from_numpy(self.buf)
        slots = torch.from_numpy(np.searchsorted(self.wanted, indices.numpy()))
        if len(slots) != len(self.wanted) or not torch.equal(slots, torch.arange(len(slots))):
            video = video[slots]
        return rearrange(video, "t h w c -> t c h w")


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
                self._index = index_from_container(stream) or self._packet_index(container)
            if self._index is None:
                if seek:  # the failed packet pass moved the demuxer: count from a fresh start
                    container.close()
                    container = av.open(str(path))
                with container:
                    self.num_frames = count_frames(container, container.streams.video[0])
            else:  # one thread per decoder: data-loader workers are the parallelism, and opening costs less
                self.num_frames = self._index.num_frames
                stream.codec_context.thread_count = 1
                self._container = container
        except (av.FFmpegError, IndexError) as exc:
            raise VideoDecodeError(f"{path}: cannot open video: {exc}") from exc
        if self.num_frames == 0:
            self.close()
            raise VideoDecodeError(f"{path}: video has no frames")

    def _packet_index(self, container) -> Optional[FrameIndex]:
        container.seek(0)
        index, why = index_from_packets(container, container.streams.video[0])
        if index is None:
            self._fall_back(why)
        return index

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
        while self._index is not None:
            try:
                return self._seek_decode(wanted).to_tensor(indices)
            except (_IndexMismatch, av.FFmpegError) as exc:
                if self._index.exact:
                    self._fall_back(f"seek-based decoding disagreed with the index: {exc}")
                    self.close()
                else:  # the container index does not fit this stream: rank every packet instead
                    logger.info("%s: container index not usable (%s); indexing packets", self.path, exc)
                    self._index = self._packet_index(self._container)
        return self._sequential_decode(wanted).to_tensor(indices)

    def _seek_decode(self, wanted: np.ndarray) -> _Frames:
        found = _Frames(wanted)
        for start, frames in self._index.runs(wanted):
            for target in self._index.seek_targets[start]:
                try:
                    self._decode_from(target, int(self._index.key_ranks[start]), frames.tolist(), found)
                    break
                except _LandedLate:
                    continue
            else:
                raise _IndexMismatch(f"no seek lands at or before frame {self._index.key_ranks[start]}")
        return found

    def _decode_from(self, target: int, first: int, wanted: list[int], found: _Frames) -> None:
        """Seek to ``target``, decode forward from the keyframe at frame ``first`` and keep ``wanted``."""
        container = self._container
        stream = container.streams.video[0]
        codec = stream.codec_context
        container.seek(target, stream=stream, backward=True, any_frame=False)
        ranks = (_ExactRanks if self._index.exact else _LocalRanks)(self._index, first, wanted)
        pending, previous = 0, None  # wanted[pending] is the next frame to keep
        for packet in container.demux(stream):
            if packet.size > 0:
                ranks.feed(packet)
            if self.skip_nonref:  # a picture no other picture refers to is decoded only when wanted
                codec.skip_frame = "DEFAULT" if ranks.may_be_wanted(packet, wanted[pending:]) else "NONREF"
            for frame in codec.decode(packet):
                self.frames_decoded += 1
                if frame.pts is None:
                    raise _IndexMismatch("a decoded frame has no timestamp")
                rank = ranks.rank(frame.pts)
                if rank is None:
                    continue
                in_order = previous is None or (rank > previous if self.skip_nonref else rank == previous + 1)
                if not in_order or rank > wanted[pending]:
                    raise _IndexMismatch(f"decoded frame {rank} after frame {previous}, next wanted {wanted[pending]}")
                if rank == wanted[pending]:
                    found.put(rank, frame)
                    pending += 1
                    if pending == len(wanted):
                        return
                previous = rank
        if not ranks.landed:
            raise _LandedLate  # nothing decodable after the seek point: it lay past the keyframe
        raise _IndexMismatch(f"decoding ended before frame {wanted[pending]}")

    def _sequential_decode(self, wanted: np.ndarray) -> _Frames:
        import av

        keep, last = set(wanted.tolist()), int(wanted[-1])
        found = _Frames(wanted)
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for i, frame in enumerate(container.decode(stream)):
                    self.frames_decoded += 1
                    if i in keep:
                        found.put(i, frame)
                    if i >= last:
                        break
        except av.FFmpegError as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed: {exc}") from exc
        missing = found.missing()
        if missing:
            raise VideoDecodeError(f"{self.path}: truncated: frames {missing[:5]} of {self.num_frames} not decoded")
        return found
