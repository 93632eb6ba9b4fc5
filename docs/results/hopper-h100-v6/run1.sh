#!/bin/bash
# Session 8, run 1: carry=pv at D 128 (a tile's last O += P V issued with the next tile's first S
# GEMM, its store after that tile's first softmax) beside the shipped D 128, bf16 + f16, validated
# (with the new Lq 1000 > Lk 100 causal case: tiles with no KV tile), memcheck + racecheck on the
# carried bf16 kernel. registry-var/ from:
#   scripts/sm90_variants.py --out registry-var --only carry128 \
#     --baseline qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_f16_hd128
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16,f16 --flex none --budget-s 400 --out "$OUT/carry" \
  --sanitize qm_dense_prefill_sm90_v_carry128_attn_bf16_hd128 > "$OUT/carry.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/carry.log" | grep -v "^\[ok\]" | tail -30
