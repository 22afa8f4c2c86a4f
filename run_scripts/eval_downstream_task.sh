#!/usr/bin/env bash
# Evaluate a downstream task (retrieval, multiple-choice QA) with torchrun.
#   bash run_scripts/eval_downstream_task.sh [CONFIG.yaml] [run.load_ckpt_path=CKPT] [a.b=c ...]
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" evaluate configs/toy/eval.yaml "$@"
