#!/usr/bin/env bash
# The GPU benchmark, in one command on a machine with a GPU (for a short loan, within 10 minutes):
# cqa on native wgpu (Vulkan), weights stored and f32, decode through the fused step and through
# burn's ops; prefill at 256 and 512; a QLoRA step at 1 × 256 and 4 × 512; and PyTorch (+ PEFT)
# on CUDA beside it, in the same run. Results are JSON lines in $OUT (default bench-results/gpu).
#
#   scripts/bench-gpu.sh CQA_BINARY [MODEL]
#
# CQA_BINARY: a release `cqa` (`./x bench-gpu --pack` builds and strips it here: ~20 MB, well
# under a 64 MiB carry). MODEL: the default model's GGUF.
#
# Vulkan: the binary loads libvulkan.so.1 at run time. A bare CUDA image may have the NVIDIA driver
# but no loader: unpack the libvulkan1 .deb (apt-get download libvulkan1, dpkg -x it to /) and,
# if no driver is found, point VK_DRIVER_FILES at the NVIDIA ICD json
# (e.g. /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json). `cqa --backend wgpu info` says
# which adapter it got. The Python half needs torch with CUDA, transformers, gguf and peft.
set -uo pipefail
CQA=${1:?usage: scripts/bench-gpu.sh CQA_BINARY [MODEL]}
MODEL=${2:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${OUT:-bench-results/gpu}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
log() { printf '\n== %s\n' "$*" >&2; }
# Each part runs on its own: a failure is written down and the rest still runs.
part() {
  local name=$1; shift
  log "$name"
  if timeout "${PART_SECONDS:-150}" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"; then
    tail -n 1 "$OUT/$name.json"
  else
    echo "{\"part\": \"$name\", \"failed\": true, \"exit\": $?}" | tee "$OUT/$name.json"
    tail -n 5 "$OUT/$name.log" >&2
  fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt" >&2
part adapter "$CQA" --model "$MODEL" --backend wgpu info --json
for weights in stored f32; do
  for decode in fused ops; do
    part "cqa-wgpu-$weights-$decode" "$CQA" --model "$MODEL" --backend wgpu --weights "$weights" \
      --gpu-kernels "$decode" bench --prefill 256,512 --decode 128 --repeats 3
  done
done
part cqa-wgpu-qlora-1x256 "$CQA" --model "$MODEL" --backend wgpu bench-train --batch 1 --seq 256 --steps 3
part cqa-wgpu-qlora-4x512 "$CQA" --model "$MODEL" --backend wgpu bench-train --batch 4 --seq 512 --steps 3
part cqa-cpu "$CQA" --model "$MODEL" --backend cpu bench --prefill 256,512 --decode 64 --repeats 3
part torch-cuda "$PYTHON" tests/reference/bench_reference.py --model "$MODEL" --device cuda
part peft-cuda-1x256 "$PYTHON" tests/reference/bench_train_reference.py --model "$MODEL" --device cuda --batch 1 --seq 256
part peft-cuda-4x512 "$PYTHON" tests/reference/bench_train_reference.py --model "$MODEL" --device cuda --batch 4 --seq 512
log "results in $OUT"
