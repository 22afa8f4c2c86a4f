#!/usr/bin/env bash
# Train with torchrun on every visible GPU (or one CPU process).
#   bash run_scripts/train.sh                                  # the embedded default (python -m paxion.quickstart)
#   bash run_scripts/train.sh configs/toy/train.yaml run.max_epoch=1
#   CONFIG=configs/toy/train.yaml NGPU=2 bash run_scripts/train.sh run.precision=bf16
#   NNODES=2 MASTER_ADDR=node0 bash run_scripts/train.sh CONFIG.yaml   # on every node
# No config and no arguments: the embedded default, which needs no checkpoint or dataset: it generates
# SynthAction, probes the shipped tiny model, trains a Knowledge Patcher and prints before/after.
if [[ $# -eq 0 && -z "${CONFIG:-}" ]]; then
  exec "${PYTHON:-python}" -m paxion.quickstart
fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" train configs/train/actionbench/synthaction/embedded_default.yaml "$@"
