#!/usr/bin/env bash
# Cloud TPU pod slice: runs `lkgan train` on every worker (jax.distributed.initialize() auto-detects TPU).
#   launch/tpu_pod.sh TPU_NAME ZONE --workdir gs://bucket/runs/faces256 --config=configs/paper_256.py
# Install first on all workers: pip install -e ".[tpu]" from a checkout at the same path.
set -euo pipefail
tpu=${1:?usage: $0 TPU_NAME ZONE lkgan-train-args...}
zone=${2:?usage: $0 TPU_NAME ZONE lkgan-train-args...}
shift 2
repo=${LKGAN_REPO:-~/lkgan_jax}
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
  --command "cd $repo && LKGAN_DISTRIBUTED=1 lkgan train $(printf '%q ' "$@")"
