#!/bin/bash
# Session 11, run 1: session 10's two untimed paged-prefill candidates, bf16, beside the shipped paged
# kernels and FA3's paged prefill (and cuDNN's dense SDPA) in the same run. registry-var1/ from
#   python scripts/sm90_variants.py --out registry-var1 \
#     --only pgp128,pgp256,pgpers128,pgpers64,pgpers256,pgpp128,pgpp256 \
#     --baseline qm_paged_prefill_sm90_attn_bf16_hd128,qm_paged_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd256
# Predicted against the shipped kernel of the same D (session 10's note):
#   pgp128 (lanes along one 64-column panel, 144 -> 98 copy-block instructions) +3-5%; pgp256 (224 -> 127) +5-8%;
#   pgpers* (one CTA per SM, tiles from the counter, the gathering warpgroup told each tile by its leader)
#   +2-4% at 2k, +0-2% at 16k; pgpp* (both) the sum.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var1 --dtypes bf16 --bench-dtypes bf16 --flex none \
  --lengths 2048,8192,16384 --budget-s 560 \
  --sanitize qm_paged_prefill_sm90_v_pgpp128_attn_bf16_hd128,qm_paged_prefill_sm90_v_pgpers64_attn_bf16_hd64 \
  --out "$OUT/var" > /tmp/var.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/var.log | grep -v "\[ok\]" | tail -30
cp /tmp/var.log "$OUT/"
