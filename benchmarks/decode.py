"""Decoding long videos: sequential PyAV vs seeking PyAV vs decord (vs torchcodec when installed).

    python benchmarks/decode.py                          # 3-min 30 fps 360p files, GOP 60 and 250, 3 B-frames
    python benchmarks/decode.py --gop 250 --repeats 5 --cache-dir .cache/long_videos

Writes the test files once into ``--cache-dir`` (default ``$PAXION_CACHE_ROOT/long_videos``, else
``~/.cache/paxion/long_videos``): per GOP a long file and a 2-second file of the same settings. Then,
in one run, for each GOP:

* T frames sampled uniformly from the whole long file (T = 8 and 16), every backend;
* late 2-second windows of the long file (one starting just after a keyframe, one just before) vs the
  whole 2-second file (T frames each);
* for each: median CPU time and wall time of open + decode over ``--repeats`` runs interleaved across
  backends (sequential PyAV: one run); the speed-up over sequential PyAV and the ratio to decord are
  taken on CPU time, which a shared machine's load disturbs far less than wall time; the pictures the
  PyAV decoder put out; whether every backend returned identical frames; the peak resident-memory
  growth of one call in a fresh process (after a warm-up decode; Linux, peak reset through
  /proc/self/clear_refs) against the bound "returned frames + one GOP of RGB frames" (sequential PyAV
  is not probed: it is the slow reference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from paxion.data.synthetic.long_videos import LongVideoSpec, write_long_video
from paxion.data.video import available_backends, open_video, segment_bounds, uniform_indices, whole_clip_bounds

MIB = 1024**2


def _status_kib(field: str) -> Optional[int]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_growth(fn: Callable[[], object]) -> Optional[float]:
    """Bytes the resident set's high-water mark rose by while ``fn`` ran (None where unsupported)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    before = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    return None if before is None or peak is None else (peak - before) * 1024.0


def decode(path: Path, backend: str, window: Optional[tuple[float, float]], num_frames: int):
    """Open + pick indices + decode. -> (frames (T, C, H, W), pictures the decoder put out or None)."""
    with open_video(path, backend) as reader:
        if window is None:
            start, end = whole_clip_bounds(reader.num_frames)
        else:
            start, end = segment_bounds(*window, reader.fps, reader.num_frames)
        frames = reader.get_frames(uniform_indices(start, end, num_frames))
        return frames, getattr(reader, "frames_decoded", None)


def memory_probe(path: Path, backend: str, window, num_frames: int) -> Optional[float]:
    """Peak RSS growth of one call in a fresh process (after a warm-up decode of frame 0), in bytes."""
    cmd = [sys.executable, __file__, "--probe", str(path), backend, str(num_frames)]
    if window is not None:
        cmd += [str(window[0]), str(window[1])]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def probe(argv: list[str]) -> None:
    path, backend, num_frames = Path(argv[0]), argv[1], int(argv[2])
    window = (float(argv[3]), float(argv[4])) if len(argv) > 3 else None
    with open_video(path, backend) as reader:  # load the libraries and the codec once
        reader.get_frames(torch.tensor([0]))
    growth = peak_growth(lambda: decode(path, backend, window, num_frames))
    print("nan" if growth is None else growth)


def run_case(entries: dict[str, tuple[Path, str, Optional[tuple[float, float]]]], num_frames: int,
             repeats: int) -> dict[str, dict]:
    """Time every entry (path, backend, window) ``repeats`` times, interleaved so load swings hit all alike.

    Sequential PyAV runs once (it is the slow reference). -> {name: {wall, cpu, frames, decoded, mem}}.
    """
    wall: dict[str, list[float]] = {name: [] for name in entries}
    cpu: dict[str, list[float]] = {name: [] for name in entries}
    out: dict[str, tuple] = {}
    for rep in range(repeats):
        for name, (path, backend, window) in entries.items():
            if backend == "pyav_sequential" and rep > 0:
                continue
            w0, c0 = time.perf_counter(), time.process_time()
            out[name] = decode(path, backend, window, num_frames)
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    rows = {}
    for name, (path, backend, window) in entries.items():
        probe_it = backend != "pyav_sequential" and "2 s file" not in name
        rows[name] = {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name]),
                      "frames": out[name][0], "decoded": out[name][1],
                      "mem": memory_probe(path, backend, window, num_frames) if probe_it else None}
    return rows


def report(label: str, spec: LongVideoSpec, rows: dict[str, dict], num_frames: int) -> None:
    base, ref = rows.get("pyav_sequential"), rows.get("decord")
    groups: dict[bool, list[torch.Tensor]] = {}  # same file -> the frames every backend returned
    for name, r in rows.items():
        groups.setdefault("2 s file" in name, []).append(r["frames"])
    same = all(torch.equal(g[0], f) for g in groups.values() for f in g)
    bound = groups[False][0].numel() + spec.gop * spec.width * spec.height * 3
    print(f"\n{label}, T={num_frames}: identical frames from every backend: {'yes' if same else 'NO'}")
    print(f"  {'backend':<18} {'cpu ms':>8} {'wall ms':>8} {'vs sequential':>14} {'vs decord':>10} {'decoded':>8} "
          f"{'peak +MiB':>10} {'bound MiB':>10}")
    for name, r in rows.items():
        speed = f"{base['cpu'] / r['cpu']:.1f}x faster" if base else "-"
        vs_ref = f"{r['cpu'] / ref['cpu']:.2f}x" if ref else "-"
        mem = "-" if r["mem"] is None or r["mem"] != r["mem"] else f"{r['mem'] / MIB:.1f}"
        decoded = "-" if r["decoded"] is None else str(r["decoded"])
        print(f"  {name:<18} {r['cpu'] * 1000:8.1f} {r['wall'] * 1000:8.1f} {speed:>14} {vs_ref:>10} {decoded:>8} "
              f"{mem:>10} {bound / MIB:10.1f}")
    if "pyav, 2 s file" in rows:
        print(f"  pyav: window / 2 s file = {rows['pyav']['cpu'] / rows['pyav, 2 s file']['cpu']:.2f}x (cpu), "
              f"{rows['pyav']['wall'] / rows['pyav, 2 s file']['wall']:.2f}x (wall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_cache = Path(os.environ.get("PAXION_CACHE_ROOT", "~/.cache/paxion")).expanduser() / "long_videos"
    parser.add_argument("--cache-dir", type=Path, default=default_cache)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--gop", type=int, nargs="+", default=[60, 250])
    parser.add_argument("--bframes", type=int, default=3)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--window-start", type=float, nargs="+", default=[150.3, 149.9],
                        help="seconds; each window is 2 s long (150.3: just after a keyframe, 149.9: just before one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)  # internal: one memory measurement
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.probe:
        return probe(args.probe)
    backends = [b for b in ("pyav_sequential", "pyav", "decord", "torchcodec") if b in available_backends()]
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"backends: {backends}; torch {torch.__version__}; {os.cpu_count()} CPUs; {now}")
    for gop in args.gop:
        spec = LongVideoSpec(seconds=args.seconds, fps=args.fps, width=args.width, height=args.height, gop=gop,
                             bframes=args.bframes)
        short = LongVideoSpec(**{**spec.__dict__, "seconds": 2.0})
        long_path = write_long_video(args.cache_dir / spec.file_name(), spec)
        short_path = write_long_video(args.cache_dir / short.file_name(), short)
        name = f"{args.seconds:g} s {args.fps} fps {args.width}x{args.height}, GOP {gop}, {args.bframes} B-frames"
        for t in args.frames:
            report(f"uniform over {name}", spec,
                   run_case({b: (long_path, b, None) for b in backends}, t, args.repeats), t)
            for start in args.window_start:
                window = (start, start + 2.0)
                entries = {b: (long_path, b, window) for b in backends}
                entries.update({f"{b}, 2 s file": (short_path, b, None) for b in backends if b != "pyav_sequential"})
                report(f"window {window[0]:g}-{window[1]:g} s of {name}", spec, run_case(entries, t, args.repeats), t)

if __name__ == "__main__":
    main()
