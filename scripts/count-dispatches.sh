#!/usr/bin/env bash
# Dispatches the wgpu backend makes, counted from CubeCL's profiling log (one line a launch):
# a forward pass scoring 256 tokens, a decoded token (6 tokens less 2, over 4: the first decode
# step also copies the prompt's cache once), and a QLoRA training step at 1 × 256 (2 timed steps
# less 1). Counts do not depend on the machine's speed.
#
#   scripts/count-dispatches.sh CQA_BINARY [extra cqa options, e.g. --gpu-kernels ops]
set -euo pipefail
CQA=${1:?usage: scripts/count-dispatches.sh CQA_BINARY [cqa options]}
shift
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# 256 tokens of the default model's tokenizer.
TEXT=$(python3 -c "print('The lighthouse keeper counted the ships by their lights, and the lights by their colours. ' * 15)")

count() {
  : >"$LOG"
  CUBECL_DEBUG_LOG="$LOG" CUBECL_DEBUG_OPTION=profile-full "$CQA" --backend wgpu "$@" >/dev/null 2>&1
  grep -cE '^\| [0-9.]+(ms|µs|ns|s) +\|' "$LOG"
}

score=$(count "$@" score --text "$TEXT" --json)
gen2=$(count "$@" generate --prompt "The lighthouse keeper" --max-tokens 2)
gen6=$(count "$@" generate --prompt "The lighthouse keeper" --max-tokens 6)
train1=$(count "$@" bench-train --batch 1 --seq 256 --steps 1)
train2=$(count "$@" bench-train --batch 1 --seq 256 --steps 2)
echo "{\"score_256_tokens\": $score, \"decoded_token\": $(((gen6 - gen2) / 4)), \"qlora_step_1x256\": $((train2 - train1))}"
