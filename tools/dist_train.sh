#!/usr/bin/env bash
# Multi-process training with PyTorch DDP: tools/dist_train.sh CONFIG NUM_PROCESSES [train.py flags...]
# torchrun starts NUM_PROCESSES copies of tools/train.py on this machine; without GPUs they
# use the gloo backend (set by tools/train.py). Only rank 0 writes checkpoints and logs.
# Each process loads its own batches: the global batch is NUM_PROCESSES x train_dataloader.batch_size.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py flags...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
PYTHON="${PYTHON:-python}"
cd "$(dirname "$0")/.."
exec "$PYTHON" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" tools/train.py "$CONFIG" --launcher pytorch "$@"
