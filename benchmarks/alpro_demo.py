"""ALPRO in miniature on a CPU: Prompter -> pre-training with PEM -> retrieval and QA fine-tuning.

    python benchmarks/alpro_demo.py [--out output/alpro_demo] [--epochs 3]

1. SynthAction in ALPRO's formats (80 training clips = 40 action/antonym twin pairs, 20 test clips) under
   .cache/paxion/synthaction_alpro (made once);
2. a tiny VTC-only Prompter, then tiny ALPRO pre-training (VTC + VTM + PEM, the frozen Prompter labelling
   random boxes against the 6 shape names), then retrieval and QA fine-tuning from it, each through the
   runner with configs/train/synthaction/alpro_*.yaml;
3. prints ALPRO's metric dicts (retrieval test split, QA test split) and one table: VTC-only ranking vs
   every pair re-scored by softmax(VTM)[1].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".cache/paxion/synthaction_alpro"
STAGES = ("alpro_prompter", "alpro_pretrain", "alpro_ret", "alpro_qa")


def run_stages(out: Path, epochs: int) -> None:
    from paxion.data.synthetic.alpro_formats import generate_alpro
    from paxion.train import main

    generate_alpro(DATA, seed=0, num_train_pairs=40, num_test_pairs=10, frames=8, size=32, workers=1)
    for stage in STAGES:
        main(["--cfg-path", str(REPO / f"configs/train/synthaction/{stage}.yaml"), f"paths.output_root={out}",
              f"paths.data_root={DATA}", f"run.max_epoch={epochs}"])


def table(out: Path) -> str:
    ret = json.loads((out / "synthaction/alpro_ret/result/test_retrieval_alpro.json").read_text())
    rows = ["| ranking (test, 20 clips, 40 captions) | t2v R1 | t2v R5 | t2v MdR | t2v MnR | v2t R1 | v2t R5 "
            "| v2t MdR |",
            "|---|---|---|---|---|---|---|---|"]
    for name, found in (("VTC only", ret["vtc_only"]), ("every pair by softmax(VTM)[1]", ret)):
        t, v = found["text2video"], found["video2text"]
        rows.append(f"| {name} | {t['r1']:.1f} | {t['r5']:.1f} | {t['medianR']:g} | {t['meanR']:.2f} | "
                    f"{v['r1']:.1f} | {v['r5']:.1f} | {v['medianR']:g} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "output/alpro_demo"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--report-only", action="store_true", help="print the results of an earlier run")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.report_only:
        run_stages(out, args.epochs)
    for name in ("alpro_ret/result/test_retrieval_alpro.json", "alpro_qa/result/test_qa_alpro.json"):
        print(name, json.dumps(json.loads((out / "synthaction" / name).read_text())))
    print(table(out))


if __name__ == "__main__":
    main()
