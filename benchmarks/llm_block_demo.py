"""CPU demo: a small VideoMAE ViT with and without a frozen LLM block on SynthAction action recognition.

    python benchmarks/llm_block_demo.py [--root .cache/paxion/synthaction_actions] [--output output/llm_block_demo]

Generates SynthAction (400 / 100 / 100 clips, 20 template classes) and its VideoMAE lists when missing,
trains ``configs/train/synthaction_actions/vit_mini.yaml`` and ``vit_mini_llm.yaml`` with the same seed,
then prints trainable / frozen parameter counts and the final 2 x 3-view test Acc@1 / Acc@5 of both.
The frozen block is randomly initialised (no LLaMA-architecture weights are available offline).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"ViT": "configs/train/synthaction_actions/vit_mini.yaml",
           "ViT + frozen LLM block": "configs/train/synthaction_actions/vit_mini_llm.yaml"}


def ensure_data(root: Path) -> None:
    if (root / "SynthAction" / "videomae_lists" / "test.csv").is_file():
        return
    py = sys.executable
    subprocess.run([py, "-m", "paxion.data.synthetic", "--out", str(root), "--num-train", "400", "--num-val", "100",
                    "--num-test", "100", "--size", "64"], check=True)
    subprocess.run([py, "-m", "paxion.data.synthetic.action_lists", "--root", str(root)], check=True)


def parameter_counts(config: str, overrides: list[str]) -> dict[str, int]:
    from paxion.config import load_config, section
    from paxion.registry import registry

    cfg = load_config(ROOT / config, overrides)
    model = registry.get("model", cfg.model.arch)(section(cfg, "model"))
    return model.parameter_counts()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".cache/paxion/synthaction_actions")
    parser.add_argument("--output", default="output/llm_block_demo")
    parser.add_argument("--epochs", type=int, default=None, help="override run.max_epoch")
    args = parser.parse_args()
    ensure_data(Path(args.root))
    rows = []
    for label, config in CONFIGS.items():
        out = Path(args.output) / Path(config).stem
        overrides = [f"paths.data_root={args.root}", f"run.output_dir={out}"]
        if args.epochs:
            overrides.append(f"run.max_epoch={args.epochs}")
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        subprocess.run([sys.executable, str(ROOT / "src" / "train.py"), "--cfg-path", str(ROOT / config), *overrides],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        test = json.loads((out / "result" / "test_output.json").read_text())
        rows.append((label, parameter_counts(config, overrides), test))
    print(f"{'model':<24} {'trainable':>10} {'frozen':>8} {'test Acc@1':>10} {'test Acc@5':>10}")
    for label, counts, test in rows:
        print(f"{label:<24} {counts['trainable']:>10,} {counts['frozen']:>8,} "
              f"{test['final_top1']:>10.1f} {test['final_top5']:>10.1f}")
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads; outputs under {args.output})")


if __name__ == "__main__":
    main()
