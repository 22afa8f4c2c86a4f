#!/usr/bin/env bash
# Multi-node training under SLURM: one torchrun per node, joined through c10d rendezvous.
#   sbatch --nodes=2 --gpus-per-node=8 run_scripts/slurm_train.sh CONFIG.yaml [a.b=c ...]
#SBATCH --job-name=paxion
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
set -euo pipefail

# sbatch runs a copy of this file, so locate the checkout from the submit directory
ROOT="${PAXION_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}"
export PAXION_ROOT="$ROOT"
export NNODES="${SLURM_NNODES:-1}"
export MASTER_ADDR="${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}"
export MASTER_PORT="${MASTER_PORT:-29500}"
export RDZV_ID="${RDZV_ID:-${SLURM_JOB_ID:-paxion}}"
export NGPU="${NGPU:-${SLURM_GPUS_ON_NODE:-}}"
[[ -n "$NGPU" ]] || unset NGPU

srun --ntasks-per-node=1 bash "$ROOT/run_scripts/train.sh" "$@"
