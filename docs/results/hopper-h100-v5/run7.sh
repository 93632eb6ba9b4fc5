#!/bin/bash
# Session 7, run 7: D 256 persistent at 32 / 240 registers (d256_pers32: 72 B of producer spill, the
# KV loop the shipped one's) beside 24 / 240 (d256_pers24, 332 B) and the shipped one-tile-per-CTA
# D 256; validated, d256_pers32 under memcheck + racecheck.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --budget-s 300 --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_d256_pers32_attn_bf16_hd256 > "$OUT/bench.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail
