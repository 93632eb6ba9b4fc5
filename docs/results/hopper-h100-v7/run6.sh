#!/bin/bash
# Session 9, run 6: run 4 (bench: D 64's TMA store 3-6% slower than the register store) and run 5
# (traces, one launch each: the TMA-store kernels 1-2% faster, D 128's epilogue 0.80 against 1.02 us)
# disagree. The same A/B again, bf16, on the sweep and on the traces' shapes (B 8 x H 16 x 2k) beside
# the sweep's (H 32 at D 64), to see which holds.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var9 --no-validate --bench-dtypes bf16 --dtypes bf16 \
  --head-dims 64,128 --flex none --budget-s 300 --out "$OUT/sweep" > /tmp/sweep.log 2>&1
bash scripts/hopper_device.sh --kernels registry-var9 --no-validate --bench-dtypes bf16 --dtypes bf16 \
  --head-dims 64,128 --flex none --shapes 8x16x2048,8x32x2048,16x16x1024 --budget-s 200 \
  --out "$OUT/shapes" > /tmp/shapes.log 2>&1
grep -E "^\[|FAIL|rror" /tmp/sweep.log /tmp/shapes.log | grep -v "\[ok\]" | tail -20
