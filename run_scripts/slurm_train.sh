#!/usr/bin/env bash
# Multi-node training under SLURM: one torchrun per node, joined through c10d rendezvous.
#   sbatch --nodes=2 --gpus-per-node=8 run_scripts/slurm_train.sh CONFIG.yaml [a.b=c ...]
# Preemption and time limits: SLURM sends SIGTERM to this script (120 s before the time limit with the
# --signal line below, or at preemption); the script forwards it to the training, which saves
# latest.pth at the next step boundary and exits; then the job is requeued and, started again with
# run.resume=auto in the same run.output_dir, continues from there.
# Set PAXION_REQUEUE=0 to stop instead of requeueing.
#SBATCH --job-name=paxion
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
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

STOPPING=0
on_term() {
  STOPPING=1
  echo "slurm_train.sh: SIGTERM received, asking the training to save latest.pth and stop" >&2
  kill -TERM "$SRUN_PID" 2>/dev/null || true  # srun forwards it to every task
}
trap on_term TERM

# run.resume=auto: a requeued job continues from latest.pth in run.output_dir (a fresh one starts from scratch)
srun --ntasks-per-node=1 bash "$ROOT/run_scripts/train.sh" "$@" run.resume=auto &
SRUN_PID=$!
STATUS=0
wait "$SRUN_PID" || STATUS=$?
while kill -0 "$SRUN_PID" 2>/dev/null; do  # the trap interrupted wait: wait for the real end
  STATUS=0
  wait "$SRUN_PID" || STATUS=$?
done

if [[ "$STOPPING" == 1 && "${PAXION_REQUEUE:-1}" != 0 && -n "${SLURM_JOB_ID:-}" ]]; then
  echo "slurm_train.sh: training stopped with status $STATUS; requeueing job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$STATUS"
