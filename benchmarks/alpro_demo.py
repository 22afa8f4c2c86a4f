"""ALPRO in miniature on a CPU: Prompter -> pre-training with PEM -> retrieval and QA fine-tuning.

    python benchmarks/alpro_demo.py [--out output/alpro_demo] [--epochs N]

Recipe (in the stage configs; every stage 40 epochs except retrieval and QA 100; times in docs/results.md):
BERT-style init std 0.2 instead of 0.02 outside the TimeSformer and temperature init 0.3 instead of 0.07,
``model.size_overrides: {init_std: 0.2, temp_init: 0.3}``. At 0.02 a random tiny BERT gives every caption
nearly the same [CLS] (cosine 0.99997), and at 0.07 VTC first collapses both towers to constant features
and sits at ln(batch) for hundreds of steps.

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
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".cache/paxion/synthaction_alpro"
STAGES = ("alpro_prompter", "alpro_pretrain", "alpro_ret", "alpro_qa")


def run_stages(out: Path, epochs: Optional[int]) -> None:
    from paxion.data.synthetic.alpro_formats import generate_alpro
    from paxion.cli.train import main

    generate_alpro(DATA, seed=0, num_train_pairs=40, num_test_pairs=10, frames=8, size=32, workers=1)
    for stage in STAGES:
        extra = [f"run.max_epoch={epochs}"] if epochs else []  # default: each stage's own max_epoch
        main(["--cfg-path", str(REPO / f"configs/train/synthaction/{stage}.yaml"), f"paths.output_root={out}",
              f"paths.data_root={DATA}", *extra])


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
    parser.add_argument("--epochs", type=int, default=None, help="every stage's epochs (default: its config's)")
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
