#!/bin/bash
# Session 21, run 8 (H200): FlexAttention beside the shipped D 128 kernels (rescale=lazy), bf16, at the shortest and
# longest rows of the bar (B 8 x H 16 x 2k and B 1 x H 16 x 16k, causal and not), for the bar's ">= 1.1x FlexAttention"
# on this GPU. Predicted: 1.25x or more at every row (the H100 runs read 1.25-2.50x before the lazy rescale).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 230 python3 scripts/hopper_check.py --kernels .device/flex21 --no-validate --bench-dtypes bf16 --flex d128 \
  --shapes 8x16x2048,1x16x16384 --budget-s 210 --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -6
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" 2>&1 | tee "$OUT/table.md"
