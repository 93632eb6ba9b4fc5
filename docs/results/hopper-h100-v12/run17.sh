#!/bin/bash
# Session 14, run 17: the shipped sm_90a kernels (dense D 64 / 128 / 256 and paged D 64 / 128 / 256,
# bf16, built at HEAD; dense SASS identical to session 13's) through hopper_check with the Timer's new
# 4M-cycle spin (run 16), every anchor under the same Timer: validation, then L 1k-16k with and without
# a mask beside cuDNN, FA3 (dense and paged) and FlexAttention. Predicted: the rows where our launch's
# enqueue had leaked into the span rise (llama3.1-405b to 1.01-1.02x); the kernel-bound misses stay
# (D 128 full 2k ~0.97, D 64 1k 0.82-0.88, D 256 1k causal ~0.93); cuDNN's own figures within 2% of
# session 13's.
# Ran at commit 2fcf317, whose Timer spun 4M cycles; the Timer went back to 1M after run 19, so
# repeating this run at HEAD times with 1M (run 20 is run 17 at 1M).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-shipped14 --dtypes bf16 --bench-dtypes bf16 --flex all \
  --lengths 1024,2048,4096,8192,16384 --budget-s 540 --out "$OUT/shipped" > "$OUT/shipped.log" 2>&1
grep -E "^\[|FAIL" "$OUT/shipped.log" | head -30
