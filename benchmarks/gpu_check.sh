#!/usr/bin/env bash
# The GPU check: one short command, run wherever a GPU is available (target: under 8 minutes on one H100/H200).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default: $OUT, else ./gpu_check_results
#
# 1. Installs the package unless it already imports: from the local wheel folder $WHEELS when set
#    (machines without a package index; build it elsewhere with
#    `pip download -d wheelhouse -c constraints.txt --only-binary=:all: --python-version 3.12 .`),
#    else from the index with the `cuda13` extra ($EXTRA to choose another).
# 2. Times the train step of each paper config in bfloat16 and float32 (benchmarks/train_step.py),
#    in float32 against its eager PyTorch peer where PyTorch with CUDA is installed
#    (benchmarks/step_vs_torch.py), the edit latency (benchmarks/edit_latency.py) and the FID feature
#    throughput (benchmarks/fid_throughput.py, random weights, no PyTorch).
# 3. Writes every benchmark's JSON (and its log) into OUT_DIR, plus devices.txt and summary.json.
#
# Smaller checks (e.g. the CPU smoke test): $GPU_CHECK_CONFIGS (comma-separated config names, default
# paper_64,paper_128,paper_256), $GPU_CHECK_STEPS (timed steps, default 10), $GPU_CHECK_FID_NUM (images
# per resolution, default 512), $GPU_CHECK_FID_RESOLUTIONS (default 64,256) and $GPU_CHECK_DTYPES (the train
# step's compute dtypes, default bfloat16,float32). Each benchmark has a time
# limit ($GPU_CHECK_LIMIT seconds, default 100); a failed or timed-out one is recorded, not fatal.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_results}}
mkdir -p "$out"
python=${PYTHON:-python3}
configs=${GPU_CHECK_CONFIGS:-paper_64,paper_128,paper_256}
dtypes=${GPU_CHECK_DTYPES:-bfloat16,float32}
steps=${GPU_CHECK_STEPS:-10}
limit=${GPU_CHECK_LIMIT:-100}
fid_num=${GPU_CHECK_FID_NUM:-512}
fid_resolutions=${GPU_CHECK_FID_RESOLUTIONS:-64,256}
start=$(date +%s)

if ! "$python" -c "import lkgan_jax" 2>/dev/null; then
  if [ -n "${WHEELS:-}" ]; then
    "$python" -m pip install --quiet --no-index --find-links "$WHEELS" -e . || exit 1
  else
    "$python" -m pip install --quiet -e ".[${EXTRA:-cuda13}]" || exit 1
  fi
fi
"$python" -c "import jax; print(jax.__version__, jax.devices())" > "$out/devices.txt" 2>&1

status=()
run() {  # run NAME COMMAND...: stdout's last line (the JSON) into OUT/NAME.json, the rest into OUT/NAME.log
  local name=$1; shift
  if timeout "$limit" "$@" > "$out/$name.stdout" 2> "$out/$name.log"; then
    tail -n 1 "$out/$name.stdout" > "$out/$name.json" && rm "$out/$name.stdout"
    status+=("\"$name\": \"ok\"")
  else
    status+=("\"$name\": \"failed (exit $?; see $name.log)\"")
  fi
}

for config in ${configs//,/ }; do
  for dtype in ${dtypes//,/ }; do
    run "train_step_${config}_${dtype}" "$python" benchmarks/train_step.py --config="configs/${config}.py" \
      --config.model.dtype="$dtype" --steps "$steps"
  done
done
# The train step against its eager PyTorch peer (float32, the peer on the GPU), when PyTorch with CUDA is installed.
if "$python" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  for config in ${configs//,/ }; do
    run "step_vs_torch_${config}" "$python" benchmarks/step_vs_torch.py --config="configs/${config}.py" \
      --config.model.dtype=float32 --steps "$steps" --rounds 2 --torch-device cuda
  done
else
  status+=("\"step_vs_torch\": \"skipped (no PyTorch with CUDA)\"")
fi
config_files=$(printf 'configs/%s.py,' ${configs//,/ }); config_files=${config_files%,}
run edit_latency "$python" benchmarks/edit_latency.py --configs "$config_files" --batch-sizes 1,64 --iters 20
run fid_throughput "$python" benchmarks/fid_throughput.py --resolutions "$fid_resolutions" --num "$fid_num" \
  --batch-size "$(( fid_num < 64 ? fid_num : 64 ))" --random-weights --no-torch

joined=$(IFS=,; echo "${status[*]}")
echo "{\"benchmark\": \"gpu_check\", \"seconds\": $(( $(date +%s) - start )), \"results\": {${joined}}}" > "$out/summary.json"
cat "$out/summary.json"
