#!/bin/bash
# Session 7, run 6: D 256 persistent at 24 / 240 registers (d256_pers24: the producer's tile claims
# spill 332 B in the producer, the KV loop is the shipped one's, 789 instructions, no spill) beside
# the shipped one-tile-per-CTA D 256; validated, memcheck + racecheck.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --flex none --budget-s 300 --out "$OUT/bench" \
  --sanitize qm_dense_prefill_sm90_v_d256_pers24_attn_bf16_hd256 > "$OUT/bench.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/bench.log" | grep -v "^\[ok\]" | tail
