"""Re-encode raw videos the way Paxion's clips were prepared: 5 fps, 224x224 (stretched), H.264 mp4.

    python -m paxion.tools.preprocess_videos --src RAW_DIR --dst OUT_DIR [--fps 5 --size 224 --workers 8]

Same filter chain as the original ffmpeg command (``fps=5,scale=224:224``), run by the ffmpeg binary
when one is on PATH and otherwise through PyAV's bindings of the same filters. Output keeps the
relative folder of each input and its stem with ``.mp4`` (SSv2 ``123.webm`` -> ``123.mp4``). It is
resumable (finished outputs are skipped; partial ones are written under a temporary name) and
refuses to write into the source folder, so originals are never overwritten.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
from fractions import Fraction
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")


def _encode_ffmpeg(src: Path, tmp: Path, fps: float, size: int) -> None:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-vf", f"fps={fps},scale={size}:{size}",
           "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)]
    subprocess.run(cmd, check=True, capture_output=True)


def _encode_pyav(src: Path, tmp: Path, fps: float, size: int) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4") as out:
        in_stream = inp.streams.video[0]
        graph = av.filter.Graph()
        chain = [graph.add_buffer(template=in_stream), graph.add("fps", f"fps={fps}"),
                 graph.add("scale", f"{size}:{size}"), graph.add("format", "yuv420p"), graph.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        count = [0]

        def drain() -> None:
            while True:
                try:
                    frame = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                frame.pts, frame.time_base = count[0], Fraction(1, round(fps))  # renumber at the new rate
                count[0] += 1
                out.mux(stream.encode(frame))

        for frame in inp.decode(in_stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
        out.mux(stream.encode())


def convert(src: Path, dst: Path, fps: float = 5.0, size: int = 224, use_ffmpeg: Optional[bool] = None) -> str:
    """One file -> 'done' | 'skipped' (output already there). Raises on a broken input."""
    if dst.is_file() and dst.stat().st_size > 0:
        return "skipped"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial.mp4")
    use_ffmpeg = shutil.which("ffmpeg") is not None if use_ffmpeg is None else use_ffmpeg
    try:
        (_encode_ffmpeg if use_ffmpeg else _encode_pyav)(src, tmp, fps, size)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return "done"


def plan(src_root: Path, dst_root: Path) -> list[tuple[Path, Path]]:
    if dst_root.resolve() == src_root.resolve() or src_root.resolve() in dst_root.resolve().parents:
        raise ValueError(f"--dst {dst_root} must be outside --src {src_root}: originals are never overwritten")
    pairs = []
    for path in sorted(src_root.rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file() and not path.name.startswith("."):
            pairs.append((path, (dst_root / path.relative_to(src_root)).with_suffix(".mp4")))
    return pairs


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Re-encode videos to N fps and SxS mp4 (Paxion preprocessing).")
    parser.add_argument("--src", required=True, type=Path, help="folder of raw videos (searched recursively)")
    parser.add_argument("--dst", required=True, type=Path, help="output folder (mirrors the input folders)")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--encoder", choices=("auto", "ffmpeg", "pyav"), default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from tqdm import tqdm

    pairs = plan(args.src, args.dst)
    use_ffmpeg = None if args.encoder == "auto" else args.encoder == "ffmpeg"
    counts = {"done": 0, "skipped": 0, "failed": 0}
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = {pool.submit(convert, s, d, args.fps, args.size, use_ffmpeg): s for s, d in pairs}
        for future in tqdm(as_completed(futures), total=len(futures), unit="video"):
            try:
                counts[future.result()] += 1
            except Exception as exc:  # a broken input must not stop the other thousands
                counts["failed"] += 1
                logger.warning("failed: %s: %s", futures[future], exc)
    print(f"{len(pairs)} videos: {counts['done']} converted, {counts['skipped']} already there, "
          f"{counts['failed']} failed")


if __name__ == "__main__":
    main()
