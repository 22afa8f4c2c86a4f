"""Where every frame of a video stream is, for seeking: from the container's own index or from its packets.

A frame's index is its rank in presentation order (what a sequential decoder's output count gives).
Two ways to know the ranks:

* container index (mp4/mov: one entry per sample, no reading): entries are in decoding order with
  their decoding timestamps and keyframe flags. A keyframe that starts a closed GOP is displayed after
  every frame decoded before it and before every frame decoded after it, so its rank is its position
  in decoding order. The frames after it are ranked while decoding, from the timestamps of the packets
  fed so far; a packet displayed before the keyframe it follows (an open GOP) is detected there.
* packet index (any container): one demuxing pass over every packet gives all presentation
  timestamps, ranked directly. Used when the container has no complete index (Matroska cues, MPEG-TS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

AVINDEX_KEYFRAME, AVINDEX_DISCARD_FRAME = 0x1, 0x2  # FFmpeg's AVIndexEntry flags


@dataclass(frozen=True)
class FrameIndex:
    """Decoding starts of one video stream; timestamps in ``stream.time_base`` units."""

    num_frames: int
    key_ranks: np.ndarray  # (K,) int64, ascending: frame index of every decoding start (keyframes; 0 first)
    seek_targets: tuple[tuple[int, ...], ...]  # per start: timestamps to try in turn until a seek lands on it
    pts: Optional[np.ndarray] = None  # (N,) ascending timestamps of all frames (packet index only)
    dts: Optional[np.ndarray] = None  # (N,) decoding timestamps in decoding order (container index only)
    keyframe: Optional[np.ndarray] = None  # (N,) bool, decoding order (container index only)

    @property
    def exact(self) -> bool:
        """True when every frame's timestamp is known up front (packet index)."""
        return self.pts is not None

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

    def landing(self, dts: Optional[int]) -> Optional[int]:
        """Container index: the decoding position of a keyframe packet with decoding timestamp ``dts``."""
        if dts is None or self.dts is None:
            return None
        pos = int(np.searchsorted(self.dts, dts))
        if pos < len(self.dts) and self.dts[pos] == dts and (self.keyframe[pos] or pos == 0):
            return pos
        return None


def count_frames(container, stream) -> int:
    """The container's frame count, or failing that its non-empty packets (what decord's index gives).

    Matroska stores no decoding timestamps, so B-frame files have packets without one: they count too.
    """
    return int(stream.frames) or sum(1 for p in container.demux(stream) if p.size > 0)


def index_from_container(stream) -> Optional[FrameIndex]:
    """The container index when it lists every frame exactly once (mp4/mov), else None."""
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or n != int(stream.frames):
        return None
    rows = np.array([(e.timestamp, e.flags) for e in entries], dtype=np.int64)  # (N, 2), one pass
    dts, key = rows[:, 0], (rows[:, 1] & AVINDEX_KEYFRAME) != 0
    if np.any(rows[:, 1] & AVINDEX_DISCARD_FRAME) or np.any(np.diff(dts) <= 0):
        return None
    starts = np.union1d([0], np.flatnonzero(key))  # (K,)
    # mp4 seeks by presentation time: aim just before the next keyframe's decoding time (after this
    # keyframe's presentation time), then at this keyframe's decoding time, then at the start
    nexts = np.append(dts[starts[1:]] - 1, dts[-1] + 1)
    targets = tuple(tuple(dict.fromkeys([int(a), int(dts[s]), int(dts[0])])) for a, s in zip(nexts, starts))
    return FrameIndex(n, starts.astype(np.int64), targets, dts=dts, keyframe=key)


def index_from_packets(container, stream) -> tuple[Optional[FrameIndex], str]:
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
    key_ranks, key_dts = rank[key_a][key_order], dts_a[key_a][key_order]
    if len(key_ranks) == 0 or key_ranks[0] != 0:  # decoding from the very start is always a valid start
        key_ranks = np.concatenate([[0], key_ranks])
        key_dts = np.concatenate([[dts_a.min()], key_dts])
    first = int(dts_a.min())
    targets = tuple(tuple(dict.fromkeys([int(sorted_pts[r]), int(d), first])) for r, d in zip(key_ranks, key_dts))
    return FrameIndex(len(sorted_pts), key_ranks.astype(np.int64), targets, pts=sorted_pts), ""
