#!/usr/bin/env bash
# Runs N processes of `lkgan train` on this machine (one per local device group), e.g. to test a
# multi-host code path on one box:  launch/local_multiprocess.sh 2 --workdir runs/mp --config=configs/tiny.py
# On a CPU-only machine each process gets LKGAN_DEVICES_PER_PROCESS simulated devices.
set -euo pipefail
num_processes=${1:?usage: $0 NUM_PROCESSES lkgan-train-args...}
shift
port=${LKGAN_PORT:-12355}
pids=()
for ((i = 0; i < num_processes; i++)); do
  LKGAN_DISTRIBUTED=1 LKGAN_COORDINATOR="127.0.0.1:${port}" LKGAN_NUM_PROCESSES="$num_processes" LKGAN_PROCESS_ID="$i" \
    JAX_NUM_CPU_DEVICES="${LKGAN_DEVICES_PER_PROCESS:-2}" \
    lkgan train "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
