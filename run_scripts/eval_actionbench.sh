#!/usr/bin/env bash
# Evaluate on ActionBench probes with torchrun; writes <output_dir>/result/{split}_output.json.
#   bash run_scripts/eval_actionbench.sh [CONFIG.yaml] [run.load_ckpt_path=CKPT] [a.b=c ...]
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" evaluate configs/toy/eval.yaml "$@"
