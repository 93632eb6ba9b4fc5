#!/bin/bash
# Session 8, run 4: the shipped set after this session (registry-sm90a/: D 256 persistent at
# 24 / 240; the dense producers' KV loop no longer unrolled, which took D 256's 332 B of producer
# spills to none; the consumers' KV loops are instruction for instruction the run-2 ones), bf16 + f16,
# all 12 kernels validated, memcheck + racecheck on dense D 256 f16 and D 128 bf16.
# Predicted: the run-2 figures within noise (+-2%): the producer issues a tile's copies and waits.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --bench-dtypes bf16,f16 --flex none --budget-s 540 --out "$OUT/shipped" \
  --sanitize qm_dense_prefill_sm90_attn_f16_hd256,qm_dense_prefill_sm90_attn_bf16_hd128 > "$OUT/shipped.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/shipped.log" | grep -v "^\[ok\]" | tail -30
