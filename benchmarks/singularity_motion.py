"""Single-frame vs 4-frame-temporal Singularity on SynthAction twins, where only the motion tells a
caption from its twin's (a clip and its antonym twin share objects and placement). A CPU miniature of
the paper's temporal finding; the numbers are whatever the run measures.

    python benchmarks/singularity_motion.py                       # data under .cache, ~minutes on CPU
    python benchmarks/singularity_motion.py --epochs 2 --data .cache/singularity_small --pairs 20 --test-pairs 5  # a quick look

Trains ``configs/train/synthaction/singularity_ret.yaml`` (1 frame in training, 4 concatenated at test)
and ``singularity_temporal_ret.yaml`` (4 frames, temporal embedding + temporal encoder) with the same
data, schedule and seed, then prints one table of the test split's ITC-only (``test_emb/``) and ITM
re-ranked (``test/``) recalls. ``--itm-negatives uniform`` draws the ITM negatives uniformly instead of
from the similarity softmax (at this scale the hard negatives leave the ITM head at its class prior).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from paxion.data.synthetic.singularity_formats import ANN, generate_singularity
from paxion.cli.train import main as train

REPO = Path(__file__).resolve().parents[1]
RUNS = (("1-frame (train 1 / test 4, concat)", "singularity_ret.yaml"),
        ("temporal (train 4 / test 4)", "singularity_temporal_ret.yaml"))
COLUMNS = ("test_emb/img_r1", "test_emb/txt_r1", "test_emb/r_mean", "test/img_r1", "test/txt_r1", "test/r_mean")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=".cache/paxion/synthaction_singularity")
    parser.add_argument("--output", default="output/benchmarks/singularity_motion")
    parser.add_argument("--pairs", type=int, default=150, help="training clip/twin pairs")
    parser.add_argument("--test-pairs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=None, help="override run.max_epoch of both configs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--itm-negatives", choices=("hard", "uniform"), default="hard",
                        help="ITM negatives: drawn from the similarity softmax (the configs, as the original) "
                             "or uniformly among the batch's non-positives")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    data = Path(args.data)
    if not (data / ANN / "synth_ret_test.json").is_file():
        generate_singularity(data, seed=args.seed, num_train_pairs=args.pairs,
                             num_test_pairs=args.test_pairs, frames=8, size=32, workers=1)
    rows = []
    for label, config in RUNS:
        overrides = [f"paths.data_root={data}", f"paths.output_root={args.output}", f"run.seed={args.seed}"]
        if args.epochs is not None:
            overrides.append(f"run.max_epoch={args.epochs}")
        if args.itm_negatives == "uniform":
            overrides += ["model.itm_hard_neg=false", f"run.output_dir={args.output}/{Path(config).stem}_uniform_neg"]
        start = time.perf_counter()
        results = train(["--cfg-path", str(REPO / "configs/train/synthaction" / config), *overrides])
        rows.append((label, results["test"], time.perf_counter() - start))
    print(f"\n{'model':36s} " + " ".join(f"{c:>16s}" for c in COLUMNS) + f" {'train+eval s':>12s}")
    for label, metrics, seconds in rows:
        print(f"{label:36s} " + " ".join(f"{metrics[c]:16.2f}" for c in COLUMNS) + f" {seconds:12.0f}")


if __name__ == "__main__":
    main()
