#!/bin/bash
# Session 8, run 2: the shipped set (registry-sm90a/, D 256 now persistent at 24 / 240), bf16 + f16,
# all 12 kernels validated, memcheck + racecheck on dense D 256 f16 and bf16.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --bench-dtypes bf16,f16 --flex none --budget-s 520 --out "$OUT/shipped" \
  --sanitize qm_dense_prefill_sm90_attn_f16_hd256,qm_dense_prefill_sm90_attn_bf16_hd256 > "$OUT/shipped.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/shipped.log" | grep -v "^\[ok\]" | tail -30
