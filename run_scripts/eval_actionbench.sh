#!/usr/bin/env bash
# Evaluate on ActionBench probes with torchrun; writes <output_dir>/result/{split}_output.json.
#   bash run_scripts/eval_actionbench.sh [CONFIG.yaml] [run.load_ckpt_path=CKPT] [a.b=c ...]
#   bash run_scripts/eval_actionbench.sh                     # shipped tiny model + patcher on SynthAction
if [[ $# -eq 0 && -z "${CONFIG:-}" ]]; then
  exec "${PYTHON:-python}" -m paxion.quickstart --eval-only
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" evaluate configs/eval/actionbench/synthaction/embedded_patcher.yaml "$@"
