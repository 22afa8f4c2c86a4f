#!/usr/bin/env bash
# Train with torchrun on every visible GPU (or one CPU process).
#   bash run_scripts/train.sh                                  # embedded default config
#   bash run_scripts/train.sh configs/toy/train.yaml run.max_epoch=1
#   CONFIG=configs/toy/train.yaml NGPU=2 bash run_scripts/train.sh run.precision=bf16
#   NNODES=2 MASTER_ADDR=node0 bash run_scripts/train.sh CONFIG.yaml   # on every node
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" train configs/toy/train.yaml "$@"
