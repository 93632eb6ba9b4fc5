#!/bin/bash
# Session 15, run 9: the shipped paged kernels (the gcd-aligned padding shift, run 8) validated in bf16
# and f16 (registry-var15h: build_sm90_kernels of paged_prefill_sm90.tl, both dtypes, D 64 / 128 / 256),
# memcheck and racecheck on D 64 and D 128 bf16. Run 8 timed them but checked their outputs only against
# the plain-shift kernels. Predicted: every case passes, both sanitizers clean.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var15h --dtypes bf16,f16 --no-bench --budget-s 400 \
  --sanitize qm_paged_prefill_sm90_attn_bf16_hd64,qm_paged_prefill_sm90_attn_bf16_hd128 \
  --out "$OUT/paged" > "$OUT/paged.log" 2>&1
grep -E "^\[" "$OUT/paged.log"
