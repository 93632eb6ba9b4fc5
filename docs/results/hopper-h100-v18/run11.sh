#!/bin/bash
# Session 20, run 11: run 10's bench in f16 (the same six kernels, validated there; no Flex). Predicted: as bf16
# within 2%: `_long` at 8k-16k 1.00-1.03 of cuDNN, full 2k 0.97-0.98.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 400 python3 scripts/hopper_check.py --kernels .device/ship20 --no-validate --bench-dtypes f16 --dtypes f16 \
  --budget-s 380 --flex none --out "$OUT/check" > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -6
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" > "$OUT/table.md" 2>&1; cat "$OUT/table.md"
