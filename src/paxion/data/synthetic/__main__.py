"""python -m paxion.data.synthetic --out DIR --seed S [--num-train N --num-val N --num-test N --frames 8 --size 32 --fps 5]

The defaults (8 frames of 32x32) are the embedded default's clips, the shape the shipped models were trained on.
`--preset hard` writes the cluttered clips of paxion/data/synthetic/hard.py instead (its own defaults: 10-40
frames of 64x64; `--preset hard --help` lists its options).
Refuses to overwrite files in DIR that the generator did not write.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import Optional, Sequence

from paxion.data.synthetic.generate import PRESETS, OverwriteError, generate


def main(argv: Optional[Sequence[str]] = None) -> None:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--preset", choices=sorted(PRESETS), default="default")
    preset = first.parse_known_args(argv)[0].preset
    config_cls = PRESETS[preset]
    defaults = config_cls()
    parser = argparse.ArgumentParser(description="Write the SynthAction data set (mp4 clips + ActionBench-SSv2 annotations).")
    parser.add_argument("--out", required=True, help="output folder; use it as paths.data_root")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="default: the embedded default's clips; hard: cluttered, variable-length clips")
    for f in dataclasses.fields(config_cls):
        if f.name == "preset":
            continue
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        generate(out, **args)
    except (OverwriteError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    total = args["num_train"] + args["num_val"] + args["num_test"]
    print(f"wrote {total} clips to {out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
