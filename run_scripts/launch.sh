#!/usr/bin/env bash
# Shared launcher for train.sh / eval_*.sh (not meant to be called directly):
#   launch.sh ENTRY DEFAULT_CONFIG [CONFIG.yaml] [a.b=c ...]
# ENTRY is train or evaluate. CONFIG comes from $CONFIG, else a first argument ending in .yaml,
# else DEFAULT_CONFIG. NGPU defaults to the visible GPUs (1 without any). NNODES>1 with MASTER_ADDR
# (and optionally MASTER_PORT, RDZV_ID) launches one node of a multi-node run through rendezvous.
# torchrun passes SIGTERM/SIGINT on to the training processes, which save latest.pth at the next step
# and stop (resume with run.resume=auto); torchrun then exits with status 1 after reporting the signal.
# torchrun runs through paxion.cli.launch, so a failed run ends with its one `error: ...` line and status
# instead of torchrun's traceback.
set -euo pipefail

ROOT="${PAXION_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ENTRY="$1"
DEFAULT_CONFIG="$2"
shift 2

if [[ -z "${CONFIG:-}" && $# -gt 0 && "$1" == *.yaml ]]; then
  CONFIG="$1"
  shift
fi
CONFIG="${CONFIG:-$DEFAULT_CONFIG}"
# configs may be named relative to the repository as well as to the working directory
if [[ ! -f "$CONFIG" && -f "$ROOT/$CONFIG" ]]; then
  CONFIG="$ROOT/$CONFIG"
fi

PYTHON="${PYTHON:-python}"
if [[ -z "${NGPU:-}" ]]; then
  NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
  [[ "$NGPU" -ge 1 ]] || NGPU=1
fi
NNODES="${NNODES:-1}"

if [[ "$NNODES" -gt 1 ]]; then
  : "${MASTER_ADDR:?set MASTER_ADDR to the address of the first node for a multi-node run}"
  LAUNCH=(--nnodes="$NNODES" --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:${MASTER_PORT:-29500}"
          --rdzv-id="${RDZV_ID:-paxion}")
else
  LAUNCH=(--standalone)
fi

export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # paxion.cli.launch from this checkout
set -x
exec "$PYTHON" -m paxion.cli.launch "${LAUNCH[@]}" --nproc-per-node="$NGPU" \
  "$ROOT/src/$ENTRY.py" --cfg-path "$CONFIG" "$@"
