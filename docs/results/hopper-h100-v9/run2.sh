#!/bin/bash
# Session 11, run 2: run 1 timed the persistent gathering kernels 0-10% faster than the shipped (grid) ones
# at most points, but twice at half speed (pgpers128 L 2k full 242 TFLOPS, pgpp128 L 8k causal 313), and
# ran without FA3 (the payload's install script was not carried). The same cubins again, twice over, with
# FA3's paged prefill, and each row's fastest and slowest of its 20 runs. registry-var2/: run 1's
# registry-var1/ cut to the shipped kernels, pgpers64/128/256 and pgpp128 (no rebuild).
# Predicted: if the half-speed rows were noise, both passes within 2% of run 1's other rows.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
for pass in a b; do
  bash scripts/hopper_device.sh --kernels registry-var2 --dtypes bf16 --bench-dtypes bf16 --flex none \
    --lengths 2048,8192,16384 --budget-s 280 --no-validate --out "$OUT/pass-$pass" > /tmp/pass-$pass.log 2>&1
  grep -E "FA3|FAIL|rror" /tmp/pass-$pass.log | head -5
  cp /tmp/pass-$pass.log "$OUT/"
done
