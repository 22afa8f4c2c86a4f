"""Mean ± std of an open-vocabulary protocol over its split runs (UCF-101 / HMDB-51 / K600 splits).

    python -m paxion.tools.open_vocab_protocol OUT_split1 OUT_split2 OUT_split3 [--split test] [--output FILE]

Each argument is an evaluation output folder holding ``result/<split>_openvclip.json`` (the final line
``{"split": "test_final", "top1_acc": "xx.xx", "top5_acc": "xx.xx"}``) or that file itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from paxion.tasks.open_vocab import protocol_summary


def read_final_line(path: Path, split: str) -> dict:
    file = path if path.is_file() else path / "result" / f"{split}_openvclip.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no final line (run the evaluation config first)")
    record = json.loads(file.read_text())
    missing = [k for k in ("top1_acc", "top5_acc") if k not in record]
    if missing:
        raise KeyError(f"{file}: no {missing[0]}")
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Mean and std of top-1 / top-5 over the splits of a protocol")
    parser.add_argument("runs", nargs="+", type=Path, help="evaluation output folders (or final-line files)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", type=Path, default=None, help="write the summary JSON here")
    args = parser.parse_args(argv)
    try:
        per_split = {str(run): read_final_line(run, args.split) for run in args.runs}
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = protocol_summary(per_split)
    for name, record in per_split.items():
        print(f"{name}: top-1 {float(record['top1_acc']):.2f}  top-5 {float(record['top5_acc']):.2f}")
    print(f"mean ± std over {len(per_split)}: top-1 {summary['top1_acc_mean']:.2f} ± {summary['top1_acc_std']:.2f}  "
          f"top-5 {summary['top5_acc_mean']:.2f} ± {summary['top5_acc_std']:.2f}")
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
