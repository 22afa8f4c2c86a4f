#!/usr/bin/env bash
# Evaluate a downstream task (retrieval, multiple-choice QA) with torchrun.
#   bash run_scripts/eval_downstream_task.sh [CONFIG.yaml] [run.load_ckpt_path=CKPT] [a.b=c ...]
#   bash run_scripts/eval_downstream_task.sh                 # shipped tiny model + patcher, SynthAction retrieval
if [[ $# -eq 0 && -z "${CONFIG:-}" ]]; then
  "${PYTHON:-python}" -m paxion.quickstart --data-only
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" evaluate configs/eval/downstream/synthaction/ssv2_label_patcher.yaml "$@"
