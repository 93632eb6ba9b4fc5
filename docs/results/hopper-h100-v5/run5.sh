#!/bin/bash
# Session 7, run 5: FlexAttention beside the shipped D 128 kernels with the bench's Flex pass fixed
# (dynamo reset per shape: past its recompile limit it had run flex_attention eagerly, 7-14 TFLOPS).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16,f16 --flex d128 --budget-s 400 --out "$OUT/bench" \
  > "$OUT/bench.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail
