#!/bin/bash
# Session 16, run 12 (review): check_stagger.py now uses the validator's fp32 reference, relative L2 and
# bound (qimeng_serve.validate: bf16 1.6e-2, f16 2e-3) instead of its own copy and a max-error bound.
# The experiment rebuilt after the review (Q through tma_load_tile, one sub-tile word packing), delay
# half a sub-tile, checked in bf16 and f16. Predicted: 16 / 16 in both.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
for dt in bf16 f16; do
  timeout 120 python3 scripts/experiments/check_stagger.py --kernels .device/ab16/st-dh --dtype $dt > "$OUT/check-$dt.txt" 2>&1
  echo "check $dt rc=$?"; grep -c "^ok" "$OUT/check-$dt.txt"; grep -v "^ok" "$OUT/check-$dt.txt" | tail -5
done
